# Two commands for a fresh machine: `make run` (the main job) and `make test` (the suite).
# Each creates its own virtual environment in .venv and installs what it needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CAPTURES ?= ../shared/kraken-captures

.PHONY: run test bench install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench,embedded]'
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/krakenflow run

test: $(BIN)/.installed
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python bench/book_engine.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
