"""``steps`` forward+backward calls of GridGauntProduct (feature shape, float32), for instruction counts:

    GAUNT_CPU_FLAGS="-O3 -march=x86-64-v3 -ffp-contract=fast" PYTHONPATH=src \\
        valgrind --tool=callgrind --callgrind-out-file=cg.out python benchmarks/fused_cpu/step.py cpu_fused 6 256 3

(valgrind runs no AVX-512, hence the AVX2 build). The instructions of one step are the difference between
the counts with ``steps`` = 3 and 1, over 2 (setup and first-call work cancel out).
"""

from __future__ import annotations

import sys

import torch

from gaunt.bench.products import sh_irreps
from gaunt.products import PRODUCTS


def main(executor: str, L: int, batch: int, steps: int, mul: int = 64) -> None:
    torch.set_num_threads(1)
    irreps = sh_irreps(mul, L)
    product = PRODUCTS["grid"].build(
        irreps, irreps, irreps, internal_weights=False, shared_weights=True, executor=executor
    )
    g = torch.Generator().manual_seed(0)
    inputs = [
        torch.randn(batch, product.irreps_in1.dim, generator=g).requires_grad_(),
        torch.randn(batch, product.irreps_in2.dim, generator=g).requires_grad_(),
        torch.randn(product.weight_numel, generator=g).requires_grad_(),
    ]
    cotangent = torch.randn(batch, product.irreps_out.dim, generator=g)
    for _ in range(steps):
        torch.autograd.grad(product(*inputs), inputs, cotangent)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
