"""What the stage scripts that time one layer on "triton" against "torch" share (``grid_messages.py``,
``many_body.py``): timing one point on both executors, the markdown table, the output files and the command
line (``--dry-run``: CPU, Triton's interpreter, tiny sizes; it checks a script and measures nothing)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXECUTOR_NAMES = ("torch", "triton")


def measure(base: dict, calls: dict, device, min_time: float, agreement: Callable[[dict], float]) -> list[dict]:
    """One record per executor of ``calls`` (name -> a call returning its result): the first call is the
    warm-up (Triton compiles there) and gives the result, then ``gaunt.bench.timing.time_call``; a failure is
    recorded, never raised. Where both ran, ``triton_vs_torch = agreement(results)`` in every record."""
    import torch

    from gaunt.bench.timing import time_call

    results, points = {}, []
    for ex, fn in calls.items():
        try:
            results[ex] = fn()
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
            points.append(dict(base, executor=ex, status="error", reason=f"{type(exc).__name__}: {exc}"[:300]))
        finally:
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()
    if len(results) == len(calls):
        difference = agreement(results)
        for point in points:
            point["triton_vs_torch"] = difference
    return points


def table(records: list[dict], size: str, cases: tuple[str, ...]) -> str:
    """Markdown: one row per (channels, ``size`` column, case), both executors' times, the speedup, the peak
    memory and the agreement."""
    rows = {}
    for r in records:
        rows.setdefault((r["channels"], r[size], cases.index(r["case"])), {})[r["executor"]] = r
    head = f"| channels | {size} | case | torch (ms) | triton (ms) | speedup | torch peak (MiB) | triton peak (MiB) |"
    lines = [head + " triton vs torch |", "|---|---|---|---|---|---|---|---|---|"]
    for (mul, value, case), by in sorted(rows.items()):
        t = {ex: by.get(ex, {}).get("time_s") for ex in EXECUTOR_NAMES}
        cell = {ex: f"{t[ex] * 1e3:.3f}" if t[ex] else by.get(ex, {}).get("status", "-") for ex in EXECUTOR_NAMES}
        peak = {ex: by.get(ex, {}).get("peak_memory_bytes") for ex in EXECUTOR_NAMES}
        mib = {ex: "-" if peak[ex] is None else f"{peak[ex] / 2**20:.0f}" for ex in EXECUTOR_NAMES}
        speed = f"{t['torch'] / t['triton']:.2f}x" if t["torch"] and t["triton"] else "-"
        diff = by.get("triton", {}).get("triton_vs_torch")
        lines.append(
            f"| {mul} | {value} | {cases[case]} | {cell['torch']} | {cell['triton']} | {speed} | {mib['torch']} | "
            f"{mib['triton']} | {'-' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


def write(records: list[dict], out: Path, stem: str, markdown: str) -> list[str]:
    """``<stem>.json`` (the records) and ``<stem>.md`` (``markdown``) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(records, indent=1))
    (out / f"{stem}.md").write_text(markdown)
    return [str(out / f"{stem}.json"), str(out / f"{stem}.md")]


def main(argv, description: str, stem: str, run: Callable, sizes: tuple[dict, dict], size: str, cases) -> int:
    """The command line of a stage script: ``run(device, sizes, dtype, budget_s, min_time) -> records`` on CUDA
    with ``sizes[0]``, or with ``--dry-run`` on the CPU with ``sizes[1]``; writes ``benchmarks/gpu-<stem>``."""
    name = stem.replace("_", "-")
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton's interpreter, tiny sizes: checks the script")
    p.add_argument("--out", default=None, help=f"results directory (default benchmarks/gpu-{name}[-dryrun])")
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
    full, tiny = sizes
    records = run(device, tiny if args.dry_run else full, torch.float32, args.budget, 0.01 if args.dry_run else 0.2)
    out = Path(args.out or ROOT / "benchmarks" / (f"gpu-{name}" + ("-dryrun" if args.dry_run else "")))
    markdown = table(records, size, cases)
    paths = write(records, out, stem, markdown)
    print(markdown)
    print("\n".join(paths))
    return 0 if all(r["status"] != "error" for r in records) else 1
