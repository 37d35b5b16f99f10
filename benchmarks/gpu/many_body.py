"""``GauntManyBody`` (the many-body powers, ``gaunt.nn.many_body``) on the "triton" executor against "torch": agreement
and times on one device.

Per point (channels, L, case, executor): ``GauntManyBody(mul x (0e + 1o + ... + L), same, correlation)`` with one
element's weights on ``n`` random samples, either the forward (``fwd``) or the forward and the gradients of the input
and of the weights (``fwd+bwd``; Triton: the VJP member of the power family on the same kernel; torch: autograd through
its matmuls). The median time (``gaunt.bench.timing.time_call``, after a warm-up that includes Triton's compilation),
the peak memory, and the largest difference of the outputs and gradients relative to the torch executor's largest
entry, in the benchmark dtype. ``FULL``: n = 1e4, mul 32/64, L = 2, 3, correlation 3, float32 on CUDA (``driver.py``'s
stage "many_body"); ``--dry-run``: tiny sizes on the CPU in Triton's interpreter, to check the script (it measures
nothing).

    python benchmarks/gpu/many_body.py [--out DIR]       # CUDA
    python benchmarks/gpu/many_body.py --dry-run          # CPU, TRITON_INTERPRET=1, tiny sizes
"""

from __future__ import annotations

import time
from pathlib import Path

import triton_vs_torch  # benchmarks/gpu/triton_vs_torch.py (the script's own folder)
from triton_vs_torch import EXECUTOR_NAMES, measure

FULL = {"samples": 10_000, "muls": (32, 64), "Ls": (2, 3), "correlation": 3}
TINY = {"samples": 6, "muls": (2,), "Ls": (1, 2), "correlation": 3}
CASES = ("fwd", "fwd+bwd")


def module(mul: int, L: int, correlation: int, executor: str, device, dtype):
    """The same ``GauntManyBody`` (weights from one seed) on ``executor``."""
    import torch

    from gaunt.nn import GauntManyBody
    from gaunt.so3 import Irreps

    irreps = Irreps([(mul, (l, (-1) ** l)) for l in range(L + 1)])
    m = GauntManyBody(irreps, irreps, correlation, executor=executor)
    with torch.no_grad():
        w = m.weights.weight
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype))
    return m.to(device=device, dtype=dtype)


def call(m, case: str, A):
    """One call: the output, or (fwd+bwd) the output and the gradients of A and of the weights."""
    import torch

    if case == "fwd":
        with torch.no_grad():
            return (m(A),)
    a = A.detach().requires_grad_()
    out = m(a)
    return (out.detach(), *torch.autograd.grad(out, (a, m.weights.weight), torch.ones_like(out)))


def agreement(results: dict) -> float:
    """max |triton - torch| / max |torch| over every output of the case."""
    worst = 0.0
    for a, b in zip(results["triton"], results["torch"]):
        worst = max(worst, float((a.double() - b.double()).abs().max()) / max(float(b.abs().max()), 1e-300))
    return worst


def run(device, sizes: dict, dtype, budget_s: float = 90.0, min_time: float = 0.2) -> list[dict]:
    """Every (mul, L, case, executor) point; points past ``budget_s`` are recorded as skipped."""
    import torch

    start, records = time.perf_counter(), []
    for mul in sizes["muls"]:
        for L in sizes["Ls"]:
            modules = {ex: module(mul, L, sizes["correlation"], ex, device, dtype) for ex in EXECUTOR_NAMES}
            g = torch.Generator().manual_seed(1)
            A = torch.randn(sizes["samples"], modules["torch"].irreps_in.dim, generator=g, dtype=torch.float64)
            A = A.to(device=device, dtype=dtype)
            for case in CASES:
                base = {"case": case, "samples": sizes["samples"], "channels": mul, "L": L}
                base |= {"correlation": sizes["correlation"], "dtype": str(dtype).removeprefix("torch.")}
                base["device"] = str(device)
                if time.perf_counter() - start > budget_s:
                    records += [dict(base, executor=ex, status="skipped", reason="budget") for ex in EXECUTOR_NAMES]
                    continue
                calls = {ex: lambda m=m: call(m, case, A) for ex, m in modules.items()}
                points = measure(base, calls, device, min_time, agreement)
                records += points
    return records


def write(records: list[dict], out: Path, stem: str = "many_body") -> list[str]:
    """``<stem>.json`` and ``<stem>.md`` under ``out``."""
    return triton_vs_torch.write(records, out, stem, triton_vs_torch.table(records, "L", CASES))


def main(argv=None) -> int:
    description = __doc__.split("\n\n")[0]
    return triton_vs_torch.main(argv, description, "many_body", run, (FULL, TINY), "L", CASES)


if __name__ == "__main__":
    raise SystemExit(main())
