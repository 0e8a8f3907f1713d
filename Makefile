# The two commands: `make run` serves the demo, `make test` runs the suite.
# Each sets itself up: virtual environment, install, schema.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test install install-dev clean

# `make run` needs only the runtime; `make test` and the slow checks add the development tools.
$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --requirement requirements.txt
	touch $(BIN)/activate

$(VENV)/.dev-installed: $(BIN)/activate requirements-dev.txt
	$(BIN)/pip install --quiet --requirement requirements-dev.txt
	touch $(VENV)/.dev-installed

install: $(BIN)/activate

install-dev: $(VENV)/.dev-installed

run: install
	$(BIN)/flask --app app demo --base-url http://localhost:$(PORT)
	PORT=$(PORT) $(BIN)/gunicorn app:app --config gunicorn.conf.py

test: install-dev
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache chatstore.db chatstore.db-wal chatstore.db-shm

# Slow checks, never part of `make test`.
.PHONY: bench
bench: install-dev
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/fairness.py

# Instructions per request against the floor, under valgrind (deterministic, unlike wrk's req/s).
.PHONY: instructions
instructions: install-dev
	command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind)
	$(BIN)/python bench/instructions.py

# Webhook delivery: PATCH-to-receiver latency, changes per second of a 100,000-chat sync, the cost to PATCH throughput.
.PHONY: bench-webhooks
bench-webhooks: install-dev
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/webhooks.py

.PHONY: soak
soak: install-dev
	$(BIN)/python bench/soak.py

# Slow and idle clients, a 200-connection keep-alive mixed load, and the noisy-neighbour probe, against the Procfile's gunicorn.
.PHONY: hostile
hostile: install-dev
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/hostile.py
	$(BIN)/python bench/fairness.py

.PHONY: fuzz
FUZZ_SECONDS ?= 180
fuzz: install-dev
	$(BIN)/pip install --quiet --requirement requirements-fuzz.txt
	$(BIN)/python bench/fuzz.py --max-time $(FUZZ_SECONDS)
