# One place for the commands a developer and CI run. Everything installs itself into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Byte-compiled modules go under .state/ (not next to the sources), and are written even where
# the environment says not to: every pytest worker would otherwise compile everything again.
export PYTHONPYCACHEPREFIX := $(CURDIR)/.state/pycache
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run run-distributed protos test lint check-compose typecheck unit bench bench-collector bench-email bench-ledger bench-pipeline bench-api clean

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) scripts/install-venv
	touch $(STAMP)

install: $(STAMP)

## The main job: the embedded system on the example replay file, offline (scripts/demo).
run: install
	scripts/demo

## The distributed system on this machine until Ctrl-C: dev-services (MariaDB, Kafka, Mailpit)
## and every role as its own process under honcho (Procfile), on examples/prices.csv.
run-distributed: install
	scripts/run-distributed

## Regenerate the checked-in gRPC code from proto/.
protos: install
	scripts/gen-protos

## The whole test suite, as CI runs it: lint, types, unit and integration tests against the
## real servers of scripts/dev-services (started if needed; `scripts/dev-services stop` ends them).
## Meanwhile the image's install step is checked (scripts/check-compose --install: 1-2 min,
## mostly downloads, so it runs while the services start, not while the tests run).
test: lint typecheck
	mkdir -p .state
	$(BIN)/python scripts/check-compose --install >.state/check-compose.log 2>&1 & check=$$!; \
	  scripts/dev-services start; started=$$?; \
	  wait $$check; checked=$$?; cat .state/check-compose.log; \
	  test $$started -eq 0 && test $$checked -eq 0
	. .state/services.env && $(BIN)/python -m pytest -n 2 --dist worksteal

lint: install
	$(BIN)/ruff check src tests bench compose scripts/check-compose scripts/k8s-manifests
	$(BIN)/ruff format --check src tests bench compose scripts/check-compose scripts/k8s-manifests
	scripts/gen-protos --check
	$(BIN)/python scripts/check-compose --config
	$(BIN)/python scripts/k8s-manifests --check
	scripts/check-prometheus

## compose/ without Docker: the compose file (also in lint) and the image's install step.
check-compose: install
	$(BIN)/python scripts/check-compose

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest tests/unit -q -n 2 --dist worksteal

bench: install
	$(BIN)/python -m bench.alert_engine

bench-collector: install
	$(BIN)/python -m bench.collector

bench-email: install
	$(BIN)/python -m bench.email

bench-ledger: install
	scripts/dev-services start
	. .state/services.env && $(BIN)/python -m bench.ledger

## The whole pipeline, every role a process on MariaDB and the Kafka cluster (bench/pipeline.py).
bench-pipeline: install
	scripts/dev-services start
	. .state/services.env && $(BIN)/python -m bench.pipeline

## The gRPC API under load with ghz: the embedded run (SQLite) and the API roles (bench/api.py).
bench-api: install
	scripts/dev-services start
	. .state/services.env && $(BIN)/python -m bench.api

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache .hypothesis
