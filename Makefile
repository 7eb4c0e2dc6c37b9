# Two commands for a fresh machine: `make run` (the main job) and `make test` (the suite).
# Each creates its own virtual environment in .venv and installs what it needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CAPTURES ?= ../shared/kraken-captures

.PHONY: run test lint unit e2e bench install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench,embedded]'
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/krakenflow run

# the suite: lint and types first (seconds), then every test tier
test: lint
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/python -m pytest tests/unit

e2e: $(BIN)/.installed
	$(BIN)/python -m pytest tests/integration tests/e2e

bench: $(BIN)/.installed
	$(BIN)/python bench/book_engine.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
