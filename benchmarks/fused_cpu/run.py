"""Fused CPU executor against the torch executor and e3nn, forward+backward, in one process.

    PYTHONPATH=src python benchmarks/fused_cpu/run.py --L 1 2 4 6 --batch 10000 --out benchmarks/fused_cpu

``--kernels direct transform`` runs "cpu_fused" once per kernel of ``cpu_executor.FusedProgram`` (every
program and derivative program of the product forced onto it; rows "cpu_fused:direct", ...); by default
"cpu_fused" chooses per program ("auto") and the row says which kernel ran the forward program.
``--unfolded`` adds the row "cpu_fused:unfolded": the shared weights applied per position around the
program (``FactorisedFrame.fold_weights = False``) instead of folded into the direct kernel.

Feature shape (``mul x 0e + ... + mul x L``, both inputs and the output), external shared weights,
float32, one call = forward plus the gradients of x1, x2 and the weights (``torch.autograd.grad`` with a
fixed random cotangent). Per point: the minimum over ``--repeats`` calls after one warm-up call, in CPU
seconds of this process (``time.process_time``: with one thread it is the wall time the call would take
on an idle core; this machine is shared, see the load printed) and in wall seconds. e3nn runs at
``--e3nn-batch`` where given for that L (it is slow); ratios are taken at the same batch. FLOPs are the
multiply-adds of the forward and both derivative programs (``SphereProgram.flops_per_sample``) x 2; the
single-core sgemm figure is ``torch.mm`` of two 2048 x 2048 float32 matrices, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from gaunt.bench.products import canonical, peer_runner, sh_irreps
from gaunt.products import PRODUCTS
from gaunt.products.cpu_executor import FusedProgram
from gaunt.products.program import derivative

PRODUCT_NAMES = {"GridGauntProduct": "grid", "GauntProduct": "gaunt"}


def timed(call, repeats: int) -> tuple[float, float]:
    """``(cpu seconds, wall seconds)``: the minima over ``repeats`` calls after one warm-up call."""
    call()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall)


def sgemm_gflops(repeats: int = 5) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    cpu, _ = timed(lambda: a @ b, repeats)
    return 2 * 2048**3 / cpu / 1e9


def step(forward, inputs: list[torch.Tensor], cotangent: torch.Tensor):
    def call():
        out = forward(*inputs)
        torch.autograd.grad(out, inputs, cotangent)

    return call


def step_flops(program) -> int:
    """FLOPs per sample of forward + both derivative programs (2 per multiply-add)."""
    return 2 * sum(p.flops_per_sample() for p in (program, derivative(program, 0), derivative(program, 1)))


def kernels_of(product, kernel: str | None) -> str:
    """Force the fused programs of ``product`` onto ``kernel`` (None: keep "auto"); the forward kernels used."""
    fused = [m for m in product.modules() if isinstance(m, FusedProgram)]
    for m in fused:
        if kernel is not None:
            m.use_kernel(kernel)
    return ",".join(sorted({m.kernel for m in fused}))


def measure(name: str, L: int, mul: int, batch: int, executors, repeats: int) -> list[dict]:
    """Our product on each executor (and "e3nn") at ``batch``: one row per executor ("cpu_fused:direct"
    forces a kernel of the fused executor)."""
    irreps = sh_irreps(mul, L)
    g = torch.Generator().manual_seed(L)
    x1, x2 = (torch.randn(batch, mul * (L + 1) ** 2, generator=g) for _ in range(2))
    rows = []
    for executor in executors:
        base, _, kernel = executor.partition(":")
        unfolded = kernel == "unfolded"
        kernel = "" if unfolded else kernel
        product = PRODUCTS[PRODUCT_NAMES[name]].build(
            irreps,
            irreps,
            irreps,
            internal_weights=False,
            shared_weights=True,
            executor=base if base != "e3nn" else "torch",
        )
        kernels = kernels_of(product, kernel or None) if base == "cpu_fused" else ""
        if hasattr(product, "frame"):
            product.frame.fold_weights = not unfolded
            folds = product.frame.folded is not None and not unfolded and kernels.startswith("direct")
            kernels += ", folded" if folds else ""  # the weights fold into the direct kernel only
        w64 = torch.randn(product.weight_numel, generator=g, dtype=torch.float64)
        cotangent = torch.randn(batch, product.irreps_out.dim, generator=g)
        if executor == "e3nn":
            d, perm = canonical(product.descriptor())
            runner = peer_runner("e3nn", product, d, perm, torch.float32, "cpu")
            weight = runner.weights(w64).requires_grad_()
            forward = lambda a, b, w, f=runner.forward: f({"x1": a, "x2": b}, w)
        else:
            weight = w64.float().requires_grad_()
            forward = product.float()
        inputs = [x1.clone().requires_grad_(), x2.clone().requires_grad_(), weight]
        cpu, wall = timed(step(forward, inputs, cotangent), repeats)
        flops = step_flops(product.program) * batch
        rows.append(
            {
                "product": name,
                "L": L,
                "batch": batch,
                "executor": executor,
                "kernel": kernels,
                "cpu_s": cpu,
                "wall_s": wall,
                "gflops": flops / cpu / 1e9,
            }
        )
        print(
            f"{name:17s} L={L} batch={batch:6d} {executor:20s} cpu {cpu * 1e3:9.1f} ms  wall {wall * 1e3:9.1f} ms"
            f"  {flops / cpu / 1e9:6.1f} GFLOP/s  {kernels}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--e3nn-batch", type=str, default="6:1000", help="L:batch pairs, comma separated")
    parser.add_argument("--mul", type=int, default=64)
    parser.add_argument("--products", nargs="+", default=["GridGauntProduct", "GauntProduct"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kernels", nargs="*", default=[], help="cpu_fused kernels to force: direct, transform")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch executor")
    parser.add_argument("--unfolded", action="store_true", help="also cpu_fused with the weights not folded")
    parser.add_argument("--threads-check", type=int, default=6, help="L of the 2-thread vs 1-thread run (0: none)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    e3nn_batch = {int(k): int(v) for k, v in (p.split(":") for p in args.e3nn_batch.split(",") if p)}
    load = [os.getloadavg()[0]]
    sgemm = sgemm_gflops()
    print(f"sgemm 2048^2 float32, 1 thread: {sgemm:.1f} GFLOP/s; load average {load[0]:.2f} on {os.cpu_count()} cores")
    rows = []
    for L in args.L:
        for name in args.products:
            eb = e3nn_batch.get(L, args.batch)
            ours = ([] if args.no_torch else ["torch"]) + ["cpu_fused"] + [f"cpu_fused:{k}" for k in args.kernels]
            ours += ["cpu_fused:unfolded"] if args.unfolded else []
            executors = ours + (["e3nn"] if eb == args.batch and name == args.products[0] else [])
            rows += measure(name, L, args.mul, args.batch, executors, args.repeats)
            if eb != args.batch and name == args.products[0]:
                rows += measure(name, L, args.mul, eb, ours + ["e3nn"], max(1, args.repeats - 1))
    threads = []
    if args.threads_check:
        for n in (1, 2):
            torch.set_num_threads(n)
            row = measure(args.products[0], args.threads_check, args.mul, args.batch, ["cpu_fused"], args.repeats)[0]
            threads.append({**row, "threads": n})
    load.append(os.getloadavg()[0])
    print(f"load average at the end {load[1]:.2f}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {"sgemm_gflops": sgemm, "load": load, "rows": rows, "threads": threads, "torch": torch.__version__}
        (args.out / "fused_cpu.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
