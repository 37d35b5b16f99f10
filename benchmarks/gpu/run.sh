#!/usr/bin/env bash
# The GPU run of issue 15 in one command, under 8 minutes on a fresh CUDA machine (stages and outputs:
# benchmarks/gpu/driver.py). Results: benchmarks/gpu-<device name>/ (README.md, run.json, tables, plots).
#
#   bash benchmarks/gpu/run.sh                   # CUDA: install, tests on CUDA, executors, potential, gaunt bench sweep, DDP
#   bash benchmarks/gpu/run.sh --device cpu      # dry run on tiny sizes (Triton's interpreter): checks the script
#   bash benchmarks/gpu/run.sh --skip install    # any stage can be left out (install tests executors grid_messages many_body potential sweep ddp)
#
# PYTHON picks the interpreter (default: python3, which must have torch with CUDA; torch is never installed here).
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=INT --kill-after=5 475 "$PYTHON" benchmarks/gpu/driver.py "$@"
