#!/usr/bin/env bash
# Run on a machine with pip access, before a GPU run on a machine that reaches no package registry: downloads the
# wheels the GPU image lacks (CPython 3.12, manylinux x86-64, no dependencies) into .whl/ at the repository root
# (kept out of git through .git/info/exclude); carry .whl to the GPU machine, where run.sh installs it first.
# The image there already has torch, triton, e3nn, numpy, scipy, matplotlib, rich, tqdm, pytest, hypothesis, sympy.
#
#   bash benchmarks/gpu/fetch_wheels.sh            # CUDA 13 peers (cuequivariance-ops-torch-cu13)
#   CUDA_MAJOR=12 bash benchmarks/gpu/fetch_wheels.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
exclude="$(git rev-parse --git-path info/exclude)"
grep -qx "/.whl/" "$exclude" 2>/dev/null || echo "/.whl/" >> "$exclude"
mkdir -p .whl
PY="${PYTHON:-python3}"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for req in ase==3.29.0 vesin==0.6.2 cuequivariance cuequivariance-torch "cuequivariance-ops-torch-cu${CUDA_MAJOR:-13}" \
           openequivariance; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl "$req" || echo "fetch_wheels: no wheel for $req (the GPU run records it as not installed)" >&2
done
du -sh .whl
size=$(du -sm .whl | cut -f1)
[ "$size" -le 60 ] || echo "fetch_wheels: .whl is ${size} MiB; a device call carries 64 MiB in all: drop the largest" >&2
