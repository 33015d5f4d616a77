# The README's two commands: `make demo` and `make test`. Both work on a fresh machine with only Python:
# they create .venv, install the package into it, and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install whenever pyproject.toml changes.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@

demo: $(VENV)/.installed-dev
	$(BIN)/python examples/digits.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check topo_monitor tests benchmarks examples
	$(BIN)/ruff format --check topo_monitor tests benchmarks examples

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/bench_persistence.py
	$(BIN)/python benchmarks/bench_phdim.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
