# Entry points for people and CI. Every target installs first (idempotent: instant when up to date).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install browser run repro test test-slow bench lint
install:
	@scripts/install.sh

## Chromium for the serving page's browser test (Debian packages; a no-op when present).
browser:
	@scripts/install_browser.sh

## The main job on the embedded defaults (simulate a shop, load it, summarise).
run: install
	$(BIN)/retention run

## The DVC pipeline (load -> validate -> features -> train x2 -> evaluate) on params.yaml.
repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

## The default test suite (under 10 minutes on 2 cores): pyproject's addopts deselect the
## `slow` and `integration` markers.
test: install browser
	$(BIN)/python -m pytest

## What `test` leaves out: Airflow DAG runs, the native service stack, DVC and multi-minute
## pipelines (`slow or integration`). CI runs both targets.
test-slow: install browser
	$(BIN)/python -m pytest -m "slow or integration"

bench: install
	$(BIN)/python benchmarks/simulator_throughput.py
	$(BIN)/python benchmarks/feature_materialisation.py
	$(BIN)/python benchmarks/model_quality.py --data ../shared/data
	$(BIN)/python benchmarks/return_ceiling.py --data ../shared/data
	$(BIN)/python benchmarks/campaign_scoring.py
	$(BIN)/python benchmarks/campaign_scoring.py --sharded
	$(BIN)/python benchmarks/serving_load.py

## Lint, format check, type check (mypy: files and strictness in pyproject.toml), import layers, and
## dvc.lock against the code and params in the tree (scripts/check_dvc_lock.py: hashes only, seconds).
lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/lint-imports \
		&& $(BIN)/python scripts/check_dvc_lock.py
