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

DEMO_ENV := DEFLECT_HOME=$(HOME_DIR)
PORT ?= 8000

# the demo in English, Traditional Chinese, Simplified Chinese and Indonesian: one index (the
# encoder is chosen from the articles' languages) and one intent model
LANGS   := zh-tw zh-cn id
DEMO_KB := examples/helpcenter $(foreach l,$(LANGS),examples/$(l)/helpcenter)
DEMO_INTENTS := examples/intents.csv $(foreach l,$(LANGS),examples/$(l)/intents.csv)

# the demo's policy goes into the data home's settings file (deflect.toml), so that serve,
# suggest, simulate and report all read it: the intents that must always reach a person, and
# the articles linked to intents, and inbound e-mail's queues by intent
# ingest makes no new version when nothing changed; the model is trained again only when the
# labeled intents changed (the stamp in the data home is newer than them)
demo: install
	$(DEMO_ENV) $(BIN)/deflect ingest $(DEMO_KB)
	$(MAKE) --no-print-directory $(HOME_DIR)/.demo-model
	$(DEMO_ENV) $(BIN)/deflect config set never_deflect account_compromised,billing_dispute
	$(DEMO_ENV) $(BIN)/deflect config set intent_articles examples/intent_articles.json
	$(DEMO_ENV) $(BIN)/deflect config set mail_queues examples/mail/queues.json

$(HOME_DIR)/.demo-model: $(DEMO_INTENTS)
	$(DEMO_ENV) $(BIN)/deflect train $(DEMO_INTENTS) --oos-label out_of_scope --promote
	touch $@

# the demo mailbox is replayed into the service once (a message already recorded is skipped):
# acknowledgements land in $(HOME_DIR)/mail/outbox, the e-mail figures in the report
RUN_ENV := $(DEMO_ENV) DEFLECT_PUBLIC_URL=http://127.0.0.1:$(PORT)

run: demo
	$(RUN_ENV) $(BIN)/deflect mail triage examples/mail/demo.mbox --deliver >/dev/null
	$(RUN_ENV) $(BIN)/deflect mail status
	$(RUN_ENV) $(BIN)/deflect serve --host 127.0.0.1 --port $(PORT)

test: install
	$(BIN)/python -m pytest -q

# wrk (Debian's) drives the HTTP benchmarks; without it they fall back to bench/loadgen.py
bench: install
	command -v wrk >/dev/null 2>&1 || (apt-get install -y -q wrk >/dev/null 2>&1) || echo "bench: wrk not installed"
	$(BIN)/python -m bench.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) deflect-home .pytest_cache
