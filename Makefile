# AlphaPulse — `make dev` to run it, `make test` to check it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
DAGSTER_PORT ?= 3000
API_PORT     ?= 8000
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export ALPHAPULSE_DATABASE_URL ?= sqlite:///$(CURDIR)/.alphapulse/alphapulse.db
# one "planned" event per asset per run, not one per asset and day (README, Environment)
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= true
# every other ALPHAPULSE_* variable: unset means its embedded default (README, Environment)

.PHONY: install dev demo test lint format typecheck migrations bench bench-webhooks bench-desk screenshots reset clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.dev.yaml $@

## dev: install, migrate, load the sample candles, start Dagster (:3000) and the API (:8000);
## Ctrl+C stops both (scripts/dev_supervisor.py)
dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/alphapulse db upgrade
	$(BIN)/alphapulse import-candles data/sample
	$(PY) scripts/dev_supervisor.py --bin $(BIN) --dagster-port $(DAGSTER_PORT) --api-port $(API_PORT)

## demo: headless — every asset once, replay the sample webhooks, one sync, health report
demo: install
	$(BIN)/alphapulse demo

## screenshots: the README's pictures of the desk (docs/desk-*.png; needs /usr/bin/chromium)
screenshots: install
	$(PY) scripts/desk_screenshots.py

## test: lint + type check, then the whole suite (real Postgres and Redis when available)
test: install lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## migrations: regenerate 0001_initial from tables.py (before the first release only)
migrations: install
	$(PY) -m alphapulse_dagster.db.regenerate_initial
	$(BIN)/ruff format alphapulse_dagster/db/migrations/versions

bench: install
	$(PY) bench/bench_signals.py

## bench-desk: All Signals with 100,000 signals in Postgres, in chromium; page weight
bench-desk: install
	flock /tmp/bench.lock $(PY) bench/bench_desk.py

## bench-webhooks: webhook ingest on loopback with Postgres (needs wrk), see bench/RESULTS.md
bench-webhooks: install
	$(PY) bench/bench_webhooks.py

## reset: forget the desk's data and Dagster's run history (keeps .venv); make dev starts fresh
reset:
	rm -rf .alphapulse .dagster_home
	@echo "reset: removed .alphapulse/ (the desk's database, spool) and .dagster_home/ (runs, schedules); kept .venv/"

## clean: reset + the tool caches; keeps .venv
clean: reset
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	@echo "clean: kept .venv/ (the installed environment); remove it with: rm -rf .venv"
