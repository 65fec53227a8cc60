# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test deps lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The seed's local demo: `busy` ticks until `work` signals exit.
demo: $(STAMP)
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sh examples/local-demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict

# Debian packages the tests use (Go for the wire-compatibility tests), installed only when missing.
deps:
	sh scripts/install-test-deps.sh

pytest: $(STAMP) deps
	$(PY) -m pytest $(PYTEST_ARGS)

# Every check: lint, types, then the tests.
test: lint typecheck pytest

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
