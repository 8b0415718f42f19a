# deflect - the targets the README names.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
HOME_DIR ?= $(or $(DEFLECT_HOME),./deflect-home)
STAMP   := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test bench lint format demo clean

install: $(STAMP)

# torch is pinned and installed first so pip takes the CPU build on this machine
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,bench]"
	touch $(STAMP)

# the demo's intents that must always reach a person
DEMO_ENV := DEFLECT_HOME=$(HOME_DIR) DEFLECT_NEVER_DEFLECT=account_compromised,billing_dispute \
	DEFLECT_INTENT_ARTICLES=examples/intent_articles.json

demo: install
	$(DEMO_ENV) $(BIN)/deflect ingest examples/helpcenter
	$(DEMO_ENV) $(BIN)/deflect train examples/intents.csv --oos-label out_of_scope --promote

run: demo
	$(DEMO_ENV) $(BIN)/deflect serve --host 127.0.0.1 --port 8000

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) deflect-home .pytest_cache
