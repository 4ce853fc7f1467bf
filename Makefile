# The README's two commands: `make run` and `make test`. Each creates .venv and installs the
# pinned requirements on first use; the embedded PostgreSQL and Redis start on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Celery worker processes `make run` supervises (each restarted on its own): make run WORKERS=3
WORKERS ?= 1

.PHONY: run test lint bench clean-var

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-installed: requirements.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt -c constraints.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt -c constraints.txt
	touch $@ $(VENV)/.runtime-installed

run: $(VENV)/.runtime-installed
	$(BIN)/python manage.py runstack --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean-var:
	$(BIN)/python -m config.embedded stop; rm -rf var
