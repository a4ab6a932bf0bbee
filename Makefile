# pod5-reactor: every target creates the venv it needs on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint fmt demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/reactor demo

lint: $(STAMP)
	$(BIN)/ruff check reactor tests
	$(BIN)/ruff format --check reactor tests
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format reactor tests
	$(BIN)/ruff check --fix reactor tests

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
