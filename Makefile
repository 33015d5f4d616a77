# The README's two commands: `make demo` and `make test`. Both work on a fresh machine with only Python:
# they create .venv, install the package into it, and run.
#
# `make test` installs the test environment from the lock of the running Python
# (requirements/test-py<major>.<minor>.txt, exact versions that passed the suite), so a new release of
# a dependency cannot turn it red. `make test-latest` resolves the newest releases pyproject.toml
# allows into .venv-latest and runs the same checks; `make lock` does that and, when it passes,
# writes what it installed as the new lock. Another Python: `make test PYTHON=python3.12`.
PYTHON ?= python3
PY := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/test-py$(PY).txt
LATEST := .venv-latest-py$(PY)
# torchattacks pins requests~=2.25.1 but imports only torch, NumPy and SciPy: installed without its
# dependencies, so that the tests run beside current mlflow and wandb (see pyproject.toml).
TORCHATTACKS := torchattacks==3.5.1

.PHONY: demo test test-latest lock lint bench clean

$(LOCK):
	@echo "No lock for Python $(PY): run 'make lock PYTHON=$(PYTHON)' to resolve, test and write $(LOCK)"; exit 1

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install whenever pyproject.toml or the lock changes.
$(VENV)/.installed-dev: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps -c $(LOCK) $(TORCHATTACKS)
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[bench]"
	touch $@

demo: $(VENV)/.installed-dev
	$(BIN)/python examples/digits.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check topo_monitor tests benchmarks examples
	$(BIN)/ruff format --check topo_monitor tests benchmarks examples

test: lint
	$(BIN)/python -m pytest

# The newest releases pyproject.toml allows, in a fresh environment of their own.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet -e ".[dev]"
	$(LATEST)/bin/python -m pip install --quiet --no-deps $(TORCHATTACKS)
	$(LATEST)/bin/ruff check topo_monitor tests benchmarks examples
	$(LATEST)/bin/ruff format --check topo_monitor tests benchmarks examples
	$(LATEST)/bin/python -m pytest

# Refresh the lock: only what passed test-latest is written.
lock: test-latest
	mkdir -p requirements
	{ echo "# make lock on $$(date -u +%F), Python $(PY): what passed make test-latest."; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable; } > $(LOCK)

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/bench_persistence.py
	$(BIN)/python benchmarks/bench_phdim.py

clean:
	rm -rf $(VENV) .venv-latest-py* .pytest_cache .ruff_cache *.egg-info
