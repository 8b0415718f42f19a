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
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

demo: install
	DEFLECT_HOME=$(HOME_DIR) $(BIN)/deflect ingest examples/helpcenter

run: demo
	DEFLECT_HOME=$(HOME_DIR) $(BIN)/deflect serve --host 127.0.0.1 --port 8000

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
