"""The grid messages (``gaunt.products.grid_messages``) on the "triton" executor against ``reference`` ("torch"):
agreement and times on one device.

Cases, on a random graph (uniform senders and receivers) of ``E`` edges and ``N`` nodes, ``L + 1`` degrees:

* ``slot 1``: the messages summed into the receivers, ``[N, mul, P]`` (the forward of the grid convolution);
* ``slot 0``: the sum into the senders (the gradient of slot 1 with respect to ``f``);
* ``slot 1 fwd+bwd``: slot 1 and the gradients of ``f``, ``w`` and ``y`` (Triton: slots 1, 0, 2 and 3 on the
  kernels; torch: autograd through the reference, which writes ``[E, mul, P]`` tensors).

Per point: the median time (``gaunt.bench.timing.time_call``, after a warm-up that includes Triton's compilation),
the peak memory, and the largest difference between the executors' outputs (and gradients) relative to the
reference's largest entry, in the benchmark dtype. ``FULL``: E = 1e5, N = 5e3, mul 32/64, P 32/72, L + 1 = 4,
float32 on CUDA (``driver.py``'s stage "grid_messages"); ``--dry-run``: tiny sizes on the CPU in Triton's
interpreter, to check the script (it measures nothing).

    python benchmarks/gpu/grid_messages.py [--out DIR]       # CUDA
    python benchmarks/gpu/grid_messages.py --dry-run          # CPU, TRITON_INTERPRET=1, tiny sizes
"""

from __future__ import annotations

import time
from pathlib import Path

import triton_vs_torch  # benchmarks/gpu/triton_vs_torch.py (the script's own folder)
from triton_vs_torch import EXECUTOR_NAMES, measure

FULL = {"nodes": 5_000, "edges": 100_000, "muls": (32, 64), "points": (32, 72), "degrees": 4}
TINY = {"nodes": 5, "edges": 12, "muls": (2, 3), "points": (5, 7), "degrees": 2}
CASES = ("slot 1", "slot 0", "slot 1 fwd+bwd")


def problem(nodes: int, edges: int, mul: int, P: int, L1: int, dtype, device, seed: int = 0) -> dict:
    """Random inputs of every slot and a random graph (as a batch of molecules would give: unsorted edges)."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)

    senders, receivers = torch.randint(0, nodes, (2, edges), generator=g).to(device)
    return {
        "f": rand(nodes, mul, P),
        "s": rand(nodes, mul, P),
        "w": rand(edges, mul, L1),
        "y": rand(edges, L1 * L1),
        "y2": rand(P, L1 * L1) / L1,
        "senders": senders,
        "receivers": receivers,
        "num_nodes": nodes,
        "cotangent": rand(nodes, mul, P),
    }


def call(runner, case: str, x: dict):
    """One call of ``case``: the output, or (for fwd+bwd) the output and the gradients of f, w and y."""
    import torch

    graph = (x["y2"], x["senders"], x["receivers"], x["num_nodes"])
    if case == "slot 0":
        return (runner(0, None, x["s"], x["w"], x["y"], *graph),)
    if case == "slot 1":
        return (runner(1, x["f"], None, x["w"], x["y"], *graph),)
    f, w, y = (x[k].detach().requires_grad_() for k in ("f", "w", "y"))
    out = runner(1, f, None, w, y, *graph)
    return (out.detach(), *torch.autograd.grad(out, (f, w, y), x["cotangent"]))


def agreement(results: dict) -> float:
    """max |triton - torch| / max |torch| over every output of the case."""
    worst = 0.0
    for a, b in zip(results["triton"], results["torch"]):
        worst = max(worst, float((a.double() - b.double()).abs().max()) / max(float(b.abs().max()), 1e-300))
    return worst


def run(device, sizes: dict, dtype, budget_s: float = 90.0, min_time: float = 0.2) -> list[dict]:
    """Every (mul, P, case, executor) point; points past ``budget_s`` are recorded as skipped."""

    from gaunt.products.grid_messages_runners import grid_messages_runner

    start, records = time.perf_counter(), []
    for mul in sizes["muls"]:
        for P in sizes["points"]:
            x = problem(sizes["nodes"], sizes["edges"], mul, P, sizes["degrees"], dtype, device)
            for case in CASES:
                base = {
                    "case": case,
                    "nodes": sizes["nodes"],
                    "edges": sizes["edges"],
                    "channels": mul,
                    "points": P,
                    "degrees": sizes["degrees"],
                    "dtype": str(dtype).removeprefix("torch."),
                    "device": str(device),
                }
                if time.perf_counter() - start > budget_s:
                    records += [dict(base, executor=ex, status="skipped", reason="budget") for ex in EXECUTOR_NAMES]
                    continue
                calls = {ex: lambda ex=ex: call(grid_messages_runner(ex), case, x) for ex in EXECUTOR_NAMES}
                points = measure(base, calls, device, min_time, agreement)
                records += points
    return records


def write(records: list[dict], out: Path, stem: str = "grid_messages") -> list[str]:
    """``<stem>.json`` and ``<stem>.md`` under ``out``."""
    return triton_vs_torch.write(records, out, stem, triton_vs_torch.table(records, "points", CASES))


def main(argv=None) -> int:
    description = __doc__.split("\n\n")[0]
    return triton_vs_torch.main(argv, description, "grid_messages", run, (FULL, TINY), "points", CASES)


if __name__ == "__main__":
    raise SystemExit(main())
