#!/usr/bin/env bash
# Everything that needs a CUDA device, in one go (`make check-gpu`): the CUDA tests, then the GPU
# benchmark in fp16 (with a profile) and bf16, each writing its RESULTS.md section. Runs on the
# interpreter named by GPU_PY (default python3) with the source tree on PYTHONPATH, no install.
set -u
cd "$(dirname "$0")/.."
PY=${GPU_PY:-python3}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" || exit 1
status=0
$PY -m pytest -q -rs -p no:cacheprovider tests/test_rope.py tests/test_torch_driver.py tests/test_stream.py \
    tests/test_backend.py -k "cuda or gpu or detect or rope" || status=1
$PY -m benchmarks.gpu --precision fp16 --profile --write || status=1
$PY -m benchmarks.gpu --precision bf16 --write || status=1
exit $status
