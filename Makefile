# Two commands on a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-all venv clean docs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The stamp is remade whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m '' $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(BIN)/detseg demo --out runs/demo

docs: $(VENV)/.installed
	$(BIN)/python benchmarks/make_docs.py

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info
