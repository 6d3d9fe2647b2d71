# The two commands of the README: `make run` and `make test`. Both set up everything themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NLR    := $(BIN)/nlr --config config/demo.yaml

.PHONY: run test lint install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(NLR) init
	$(NLR) demo
	$(NLR) serve

# Lint first: ruff and mypy are configured in pyproject.toml; a finding fails `make test`.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy gateway protocols

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/register.py
	$(BIN)/python bench/sip2.py
	$(BIN)/python bench/ncip.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
