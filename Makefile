# Two commands for a fresh machine: `make run` (the main job) and `make test` (the suite).
# Each creates its own virtual environment in .venv and installs what it needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CAPTURES ?= ../shared/kraken-captures

.PHONY: run test lint unit e2e bench install clean

# the Rust toolchain for the native book core (native/): on PATH, or where rustup puts it
CARGO ?= $(shell command -v cargo 2>/dev/null || ls $(HOME)/.cargo/bin/cargo 2>/dev/null)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench,embedded]'
	touch $@

# the native book core, built when a Rust toolchain is there (else the pure-Python engine runs alone)
$(BIN)/.native: $(BIN)/.installed native/Cargo.toml native/src/lib.rs
ifneq ($(CARGO),)
	@echo "building the native book core (native/, Rust) with $(CARGO)"
	PATH="$(dir $(CARGO)):$$PATH" $(BIN)/pip install --quiet ./native
else
	@echo "no Rust toolchain (cargo): the book core stays pure Python (install rustup to build native/)"
endif
	touch $@

install: $(BIN)/.native

run: $(BIN)/.native
	$(BIN)/krakenflow run

# the suite: lint and types first (seconds), then every test tier
test: lint
	$(BIN)/python -m pytest

lint: $(BIN)/.native
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: $(BIN)/.native
	$(BIN)/python -m pytest tests/unit

e2e: $(BIN)/.native
	$(BIN)/python -m pytest tests/integration tests/e2e

bench: $(BIN)/.native
	$(BIN)/python bench/book_engine.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
