"""Where the direct kernel stops beating the transform kernel, per way of weighting: whole product steps.

    PYTHONPATH=src python benchmarks/fused_cpu/crossover.py --shape feature --L 3 4 5 6 --batch 10000
    PYTHONPATH=src python benchmarks/fused_cpu/crossover.py --shape edge --L 4 5 6 7 --batch 20000

GridGaunt product as ``gaunt bench`` builds it (feature: 64 channels, weights shared by the batch; edge: 16
channels, the edge harmonics as x2, per-edge weights), float32, one torch thread; one step = forward plus the
gradients of x1, x2 and the weights, the weights folded as the frame folds them (``FactorisedFrame.folds``).
Each L runs both kernels (``FusedProgram.use_kernel``), minimum process CPU time of ``--repeats`` steps after a
warm-up, and prints ``flops / (nnz mul)`` (the quantity of the rule of ``products/cpu_direct.py``): the kernels
tie where it equals ``DIRECT_COST[weights]``.
"""

from __future__ import annotations

import argparse
import os

import torch

from gaunt.bench.products import build_product, make_inputs
from gaunt.bench.timing import time_call
from gaunt.products.coupling import coupling
from gaunt.products.executors import cpu_runner


def step_time(shape: str, L: int, batch: int, kernel: str, repeats: int) -> tuple[float, float]:
    """(minimum CPU seconds of a step, flops / (nnz mul)) with the program on ``kernel``."""
    mul = 64 if shape == "feature" else 16
    product = build_product("GridGauntProduct", shape, L, mul, shared_weights=shape == "feature").float()
    fused = cpu_runner(product.frame.runner)
    fused.use_kernel(kernel)
    g = torch.Generator().manual_seed(L)
    ins = make_inputs(product, shape, batch, torch.float32, "cpu", g)
    x1, x2 = ins["x1"].requires_grad_(), ins["x2"].requires_grad_()
    per_sample = (batch,) if shape == "edge" else ()
    w = torch.randn(*per_sample, product.weight_numel, generator=g).requires_grad_()
    cotangent = torch.randn(batch, product.irreps_out.dim, generator=g)
    leaves = [x1, x2, w]

    def step():
        torch.autograd.grad(product(x1, x2, w), leaves, cotangent)

    timing = time_call(step, min_time=0.0, min_repeats=repeats, max_repeats=repeats)  # a warm-up call, then these
    c = coupling(fused.program)
    return min(timing.cpu_times_s), fused.program.flops_per_sample() / (c.nnz * c.mul)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("feature", "edge"), default="feature")
    parser.add_argument("--L", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.shape}, batch {args.batch}, load average {os.getloadavg()[0]:.2f}")
    print("| L | flops / (nnz mul) | direct (ms) | transform (ms) | transform / direct |")
    print("|---|---|---|---|---|")
    for L in args.L:
        direct, ratio = step_time(args.shape, L, args.batch, "direct", args.repeats)
        transform, _ = step_time(args.shape, L, args.batch, "transform", args.repeats)
        print(f"| {L} | {ratio:.2f} | {1e3 * direct:.1f} | {1e3 * transform:.1f} | {transform / direct:.2f} |")


if __name__ == "__main__":
    main()
