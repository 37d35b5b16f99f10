"""Calibrates ``cpu_direct.DIRECT_COST``: the direct and the transform kernel on the same programs.

    PYTHONPATH=src python benchmarks/fused_cpu/calibrate.py --L 1 2 3 4 5 6

For the Gaunt programs (GridGaunt and the torus Gaunt, feature shape ``64x0e + ... + 64xL``) and their
derivative wrt x1: CPU seconds per sample of ``FusedProgram`` forced onto each kernel (float32, 1 thread,
minimum of ``--repeats`` calls after a warm-up), and per unit of each kernel's cost model: per triple
(``nnz * mul``, direct) and per multiply-add (``flops_per_sample``, transform). Their ratio is the time of
a triple in transform multiply-adds; the suggested ``DIRECT_COST`` is its median over L >= ``--fit-from``
(at small L both kernels are dominated by fixed per-sample costs and the direct one wins by far anyway).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from gaunt.bench.products import sh_irreps
from gaunt.products import GauntProduct, GridGauntProduct
from gaunt.products.coupling import coupling
from gaunt.products.cpu_direct import DIRECT_COST
from gaunt.products.cpu_executor import FusedProgram
from gaunt.products.program import derivative


def cpu_time(call, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        call()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--mul", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2000, help="per call, L <= 3 (half that above)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fit-from", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; DIRECT_COST now {DIRECT_COST}")
    ratios = []
    for cls in (GridGauntProduct, GauntProduct):
        for L in args.L:
            irreps = sh_irreps(args.mul, L)
            forward = cls(irreps, irreps, irreps, executor="torch").program
            for program in (forward, derivative(forward, 0)):
                n = args.samples if L <= 3 else args.samples // 2
                g = torch.Generator().manual_seed(L)
                x1, x2 = (torch.randn(n, program.dims[k], generator=g) for k in (0, 1))
                direct, transform = (FusedProgram(program, kernel) for kernel in ("direct", "transform"))
                t_direct = cpu_time(lambda: direct(x1, x2), args.repeats) / n
                t_transform = cpu_time(lambda: transform(x1, x2), args.repeats) / n
                c = coupling(program)
                per_triple = t_direct / (c.nnz * c.mul)
                per_flop = t_transform / program.flops_per_sample()
                if L >= args.fit_from:
                    ratios.append(per_triple / per_flop)
                print(
                    f"{program.name:17s} L={L} nnz={c.nnz:5d}: direct {t_direct * 1e9:8.0f} ns/sample "
                    f"({per_triple * 1e12:6.1f} ps/triple), transform {t_transform * 1e9:8.0f} ns/sample "
                    f"({per_flop * 1e12:6.1f} ps/multiply-add); triple / multiply-add {per_triple / per_flop:5.2f}, "
                    f"transform / direct {t_transform / t_direct:5.2f}",
                    flush=True,
                )
    print(f"suggested DIRECT_COST (median over L >= {args.fit_from}): {statistics.median(ratios):.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
