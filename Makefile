# medray: `make demo` runs the main job on a fresh machine, `make test` checks it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=
STAMP := $(VENV)/.medray-installed

.PHONY: install demo test lint typecheck unit integration autoscaler bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# Embedded S3 server + local Ray, demo studies (or DATA=DIR), reference model, job.
demo: install
	$(BIN)/medray --log-level WARNING demo $(if $(DATA),--data "$(DATA)")

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not integration and not gpu and not autoscaler" -q

# The autoscaler test runs `ray stop --force`: alone, in a pytest run of its own.
test: lint typecheck
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -m "not autoscaler" -q
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -m autoscaler -q || test $$? -eq 5

bench: install
	$(BIN)/python benchmarks/batch.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
