# `make run` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The real OpenID provider the sign-in tests run (panva/oidc-provider on Node 20+), from the committed lock file.
IDP := tests/support/idp
IDP_INSTALLED := $(IDP)/node_modules/.package-lock.json

.PHONY: run test lint settings-docs bench-ingest clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: $(INSTALLED)
	$(BIN)/switchboard dev

$(IDP_INSTALLED): $(IDP)/package.json $(IDP)/package-lock.json
	npm ci --prefix $(IDP) --no-audit --no-fund

test: $(INSTALLED) $(IDP_INSTALLED)
	$(BIN)/python -m pytest -q --durations=25

lint: $(INSTALLED)
	$(BIN)/ruff check service workers tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The settings table in docs/running.md and deploy/env.example, from service/settings.py.
settings-docs: $(INSTALLED)
	$(BIN)/python -m service.settings_docs

bench-ingest: $(INSTALLED)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache $(IDP)/node_modules
