# PainControl compendium. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PY_SOURCES := paincontrol_lib tests scripts

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

env: $(STAMP) ## Create .venv and install the pinned packages (idempotent)

repro: $(STAMP) ## Run the whole pipeline on the embedded default (dvc repro)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro --quiet

browser: ## Install Debian's chromium + chromium-driver (the study's browser tests need them)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	command -v apt-get >/dev/null || { echo "error: /usr/bin/chromium or /usr/bin/chromedriver missing and no apt-get here: install Chromium and its chromedriver as /usr/bin/chromium and /usr/bin/chromedriver"; exit 1; }; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	echo "installing chromium and chromium-driver with apt-get (for tests/test_study_browser.py)"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver \
	  || { echo "error: apt-get could not install chromium and chromium-driver (network? root?); the browser tests need /usr/bin/chromium and /usr/bin/chromedriver"; exit 1; }; \
	[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { echo "error: chromium installed but /usr/bin/chromium or /usr/bin/chromedriver still missing"; exit 1; }

test: $(STAMP) browser ## Run the test suite (tiny profile, no GPU, offline)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

identity-encoder: $(STAMP) ## Retrain SynthPain's identity encoder by steps into pretrained/identity-encoder/ (CPU: 137 min measured on a loaded 2-core machine)
	$(BIN)/python -m paincontrol_lib.model.identity_encoder --out pretrained/identity-encoder --work build/identity-encoder

identity-adapter: $(STAMP) ## Retrain the shipped generator's identity path by steps: a second in-domain encoder (it conditions, never scores) and a fresh identity adapter on it (CPU: see pretrained/tiny-synthpain/PROVENANCE.json)
	$(BIN)/python -m paincontrol_lib.model.identity_encoder --seed 31 --n_identities 600 --n_monitor 60 --frames 6 --steps 800 --out pretrained/identity-encoder-conditioning --work build/identity-encoder-conditioning
	$(BIN)/python -m paincontrol_lib.model.identity_adapter

au-readers: $(STAMP) ## Retrain the shipped pixel AU readers (scoring, guide) by steps into pretrained/au-readers/ (CPU: ~70 min a reader measured on a loaded 2-core machine)
	$(BIN)/python -m paincontrol_lib.au_reading.pixels --role scoring --out pretrained/au-readers/scoring --threads 1
	$(BIN)/python -m paincontrol_lib.au_reading.pixels --role guide --out pretrained/au-readers/guide --threads 1

bench: $(STAMP) ## Print speed benchmarks (landmarks, SynthPain rendering)
	$(BIN)/python scripts/bench.py

book: $(STAMP) ## Build the static HTML book (README, docs/, executed notebooks) into build/book/
	$(BIN)/python scripts/book.py

lab: $(STAMP) ## Start JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

lint: $(STAMP) ## Lint and check formatting with ruff
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)

format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

clean: ## Remove generated data, the book and scratch runs (reports/ is committed: git restores it)
	rm -rf data/synthpain data/landmarks data/transfer data/study data/au_estimator.npz build scratch

deps: $(STAMP) ## Regenerate dvc.yaml's library deps from the imports (check: make deps-check)
	$(BIN)/python scripts/dvc_deps.py

deps-check: $(STAMP) ## Check dvc.yaml's deps: library files the imports run, paths stages read
	$(BIN)/python scripts/dvc_deps.py --check

results: $(STAMP) ## Render the results tables of README.md and docs/ from reports/metrics (check: --check)
	$(BIN)/python scripts/results.py

inference-check: $(STAMP) ## Simulate stage 04's design: each inference's error rates (reports/metrics/inference_check.json; ~30 CPU min)
	$(BIN)/python scripts/inference_check.py

.PHONY: help env repro browser test identity-encoder identity-adapter au-readers bench book lab lint format clean deps deps-check results \
	inference-check
