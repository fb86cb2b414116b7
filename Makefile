# One place for the commands a developer and CI run. Everything installs itself into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Byte-compiled modules go under .state/ (not next to the sources), and are written even where
# the environment says not to: every pytest worker would otherwise compile everything again.
export PYTHONPYCACHEPREFIX := $(CURDIR)/.state/pycache
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run protos test lint typecheck unit bench bench-collector bench-email bench-ledger clean

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) scripts/install-venv
	touch $(STAMP)

install: $(STAMP)

## The main job: the embedded system on the example replay file, offline (scripts/demo).
run: install
	scripts/demo

## Regenerate the checked-in gRPC code from proto/.
protos: install
	scripts/gen-protos

## The whole test suite, as CI runs it: lint, types, unit and integration tests against the
## real servers of scripts/dev-services (started if needed; `scripts/dev-services stop` ends them).
test: lint typecheck
	scripts/dev-services start
	. .state/services.env && $(BIN)/python -m pytest -n 2 --dist worksteal

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	scripts/gen-protos --check

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

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache .hypothesis
