# The two commands of the README: `make run` and `make test`. Both set up everything themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NLR    := $(BIN)/nlr --config config/demo.yaml

.PHONY: run test lint install axe bench clean

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

test: lint axe
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# axe-core, pinned, for the browser tests' accessibility checks (tests/browser_helpers.py). Without npm
# they skip and say so (CI installs npm and requires them).
AXE_VERSION := 4.14.1
AXE_DIR     := .cache/axe-core
axe:
	@if grep -qs '"version": "$(AXE_VERSION)"' $(AXE_DIR)/node_modules/axe-core/package.json; then :; \
	elif command -v npm >/dev/null; then \
	  npm install --prefix $(AXE_DIR) --no-save --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION); \
	else echo "npm not found: the axe-core checks of the browser tests will skip"; fi

bench: install
	$(BIN)/python bench/register.py
	$(BIN)/python bench/sip2.py
	$(BIN)/python bench/ncip.py
	$(BIN)/python bench/web.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis .cache test-artifacts
