# Attention Atlas. Two set-up commands: `make run` and `make test` (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint format bench install install-dev train-dates clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Serve the app on http://$(HOST):$(PORT) with the offline default models.
run: $(VENV)/.installed
	$(PY) -m uvicorn app.main:create_app --factory --host $(HOST) --port $(PORT)

## Every test, browser tests included (headless Debian Chromium at /usr/bin/chromium).
test: $(VENV)/.installed-dev
	$(PY) -m pytest

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
