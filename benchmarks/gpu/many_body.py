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

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FULL = {"samples": 10_000, "muls": (32, 64), "Ls": (2, 3), "correlation": 3}
TINY = {"samples": 6, "muls": (2,), "Ls": (1, 2), "correlation": 3}
CASES = ("fwd", "fwd+bwd")
EXECUTOR_NAMES = ("torch", "triton")


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

    from gaunt.bench.timing import time_call

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
                results, points = {}, []
                for ex, m in modules.items():
                    try:
                        results[ex] = call(m, case, A)  # also the warm-up (Triton compiles here)
                        fn = lambda m=m: call(m, case, A)  # noqa: E731
                        timing = time_call(fn, device, min_time=min_time, max_time=5 * min_time)
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
    """Markdown: one row per (channels, L, case), both executors' times, the speedup and the agreement."""
    rows = {}
    for r in records:
        rows.setdefault((r["channels"], r["L"], CASES.index(r["case"])), {})[r["executor"]] = r
    head = "| channels | L | case | torch (ms) | triton (ms) | speedup | torch peak (MiB) | triton peak (MiB) |"
    lines = [head + " triton vs torch |", "|---|---|---|---|---|---|---|---|---|"]
    for (mul, L, case), by in sorted(rows.items()):
        t = {ex: by.get(ex, {}).get("time_s") for ex in EXECUTOR_NAMES}
        cell = {ex: f"{t[ex] * 1e3:.3f}" if t[ex] else by.get(ex, {}).get("status", "-") for ex in EXECUTOR_NAMES}
        peak = {ex: by.get(ex, {}).get("peak_memory_bytes") for ex in EXECUTOR_NAMES}
        mib = {ex: "-" if peak[ex] is None else f"{peak[ex] / 2**20:.0f}" for ex in EXECUTOR_NAMES}
        speed = f"{t['torch'] / t['triton']:.2f}x" if t["torch"] and t["triton"] else "-"
        diff = by.get("triton", {}).get("triton_vs_torch")
        lines.append(
            f"| {mul} | {L} | {CASES[case]} | {cell['torch']} | {cell['triton']} | {speed} | {mib['torch']} | "
            f"{mib['triton']} | {'-' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


def write(records: list[dict], out: Path, stem: str = "many_body") -> list[str]:
    """``<stem>.json`` and ``<stem>.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(records, indent=1))
    (out / f"{stem}.md").write_text(table(records))
    return [str(out / f"{stem}.json"), str(out / f"{stem}.md")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton's interpreter, tiny sizes: checks the script")
    p.add_argument("--out", default=None, help="results directory (default benchmarks/gpu-many-body[-dryrun])")
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
    out = Path(args.out or ROOT / "benchmarks" / ("gpu-many-body" + ("-dryrun" if args.dry_run else "")))
    paths = write(records, out)
    print(table(records))
    print("\n".join(paths))
    return 0 if all(r["status"] != "error" for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
