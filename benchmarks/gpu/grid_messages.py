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

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FULL = {"nodes": 5_000, "edges": 100_000, "muls": (32, 64), "points": (32, 72), "degrees": 4}
TINY = {"nodes": 5, "edges": 12, "muls": (2, 3), "points": (5, 7), "degrees": 2}
CASES = ("slot 1", "slot 0", "slot 1 fwd+bwd")
EXECUTOR_NAMES = ("torch", "triton")


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
    import torch

    from gaunt.bench.timing import time_call
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
                results, points = {}, []
                for ex in EXECUTOR_NAMES:
                    try:
                        runner = grid_messages_runner(ex)
                        results[ex] = call(runner, case, x)  # also the warm-up (Triton compiles here)
                        timing = time_call(
                            lambda runner=runner: call(runner, case, x),
                            device,
                            min_time=min_time,
                            max_time=5 * min_time,
                        )
                        points.append(
                            dict(
                                base,
                                executor=ex,
                                status="ok",
                                time_s=timing.median_s,
                                repeats=timing.repeats,
                                warmup_s=timing.warmup_s,
                                peak_memory_bytes=timing.peak_memory_bytes,
                            )
                        )
                    except Exception as exc:  # noqa: BLE001 - a failure is a result (recorded), never the end
                        points.append(
                            dict(base, executor=ex, status="error", reason=f"{type(exc).__name__}: {exc}"[:300])
                        )
                    finally:
                        if torch.device(device).type == "cuda":
                            torch.cuda.empty_cache()
                if len(results) == 2:
                    difference = agreement(results)
                    for point in points:
                        point["triton_vs_torch"] = difference
                records += points
    return records


def table(records: list[dict]) -> str:
    """Markdown: one row per (channels, points, case), both executors' times, the speedup and the agreement."""
    rows = {}
    for r in records:
        rows.setdefault((r["channels"], r["points"], CASES.index(r["case"])), {})[r["executor"]] = r
    head = "| channels | points | case | torch (ms) | triton (ms) | speedup | torch peak (MiB) | triton peak (MiB) |"
    lines = [head + " triton vs torch |", "|---|---|---|---|---|---|---|---|---|"]
    for (mul, P, case), by in sorted(rows.items()):
        t = {ex: by.get(ex, {}).get("time_s") for ex in EXECUTOR_NAMES}
        cell = {ex: f"{t[ex] * 1e3:.3f}" if t[ex] else by.get(ex, {}).get("status", "-") for ex in EXECUTOR_NAMES}
        peak = {ex: by.get(ex, {}).get("peak_memory_bytes") for ex in EXECUTOR_NAMES}
        mib = {ex: "-" if peak[ex] is None else f"{peak[ex] / 2**20:.0f}" for ex in EXECUTOR_NAMES}
        speed = f"{t['torch'] / t['triton']:.2f}x" if t["torch"] and t["triton"] else "-"
        diff = by.get("triton", {}).get("triton_vs_torch")
        lines.append(
            f"| {mul} | {P} | {CASES[case]} | {cell['torch']} | {cell['triton']} | {speed} | {mib['torch']} | "
            f"{mib['triton']} | {'-' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


def write(records: list[dict], out: Path, stem: str = "grid_messages") -> list[str]:
    """``<stem>.json`` and ``<stem>.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(records, indent=1))
    (out / f"{stem}.md").write_text(table(records))
    return [str(out / f"{stem}.json"), str(out / f"{stem}.md")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton's interpreter, tiny sizes: checks the script")
    p.add_argument("--out", default=None, help="results directory (default benchmarks/gpu-grid-messages[-dryrun])")
    p.add_argument("--budget", type=float, default=90.0, help="seconds for the timings (default 90)")
    args = p.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before gaunt / triton are imported: kernels on the CPU
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    records = run(device, TINY if args.dry_run else FULL, torch.float32, args.budget, 0.01 if args.dry_run else 0.2)
    out = Path(args.out or ROOT / "benchmarks" / ("gpu-grid-messages" + ("-dryrun" if args.dry_run else "")))
    paths = write(records, out)
    print(table(records))
    print("\n".join(paths))
    return 0 if all(r["status"] != "error" for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
