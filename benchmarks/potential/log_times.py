"""Time per training step and per epoch of a mace_run_train run (standard library only).

Reads an output folder of run_mace.sh:
  results/*_train.txt   one JSON object per line; mace logs every optimiser step as
                        {"mode": "opt", "epoch": k, "time": s} (forward + loss + backward + step + EMA,
                        collation excluded) and every validation as {"mode": "eval", "time": s, ...}
  train.out             mace's log with time stamps ("YYYY-MM-DD HH:MM:SS.mmm INFO: ...")
  train_start           wall-clock start (epoch seconds) written by run_mace.sh just before mace starts

Reports: steps, median / mean / 10th and 90th percentile step time (first ``--warmup`` steps left out),
epochs completed (validated and checkpointed), mean epoch wall time, set-up time (process start to
"Started training": imports, data reading, neighbour lists, statistics, model build) and the training
time behind the newest checkpoint (start of the budget to the log line of the last validated epoch),
which is what an equal-budget comparison should quote, since mace only checkpoints at epoch ends.

usage: python benchmarks/potential/log_times.py OUT_DIR [--batch-size 5] [--warmup 5] [--json timing.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: (.*)$")


def _log_events(path: Path) -> list[tuple[float, str]]:
    """(epoch seconds, message) for every time-stamped INFO line of a mace log."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        m = STAMP.match(line)
        if m:
            events.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp(), m.group(2)))
    return events


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summarise(out: Path, batch_size: int, warmup: int) -> dict:
    """Timing summary of one run folder (see module docstring); times in seconds.

    Raises ``FileNotFoundError`` when the folder lacks mace's results file or log.
    """
    results = sorted((out / "results").glob("*_train.txt"))
    if not results:
        raise FileNotFoundError(f"{out}/results/*_train.txt not found (did mace_run_train start?)")
    rows = [json.loads(line) for line in results[0].read_text().splitlines() if line.strip()]
    steps = [r["time"] for r in rows if r.get("mode") == "opt"]
    evals = [r for r in rows if r.get("mode") == "eval" and r.get("epoch") is not None]
    timed = steps[warmup:] if len(steps) > warmup else steps
    summary: dict = {
        "folder": str(out),
        "batch_size": batch_size,
        "steps": len(steps),
        "steps_timed": len(timed),
        "warmup_steps_skipped": len(steps) - len(timed),
        "epochs_completed": len(evals),
    }
    if timed:
        summary.update(
            step_median_s=statistics.median(timed),
            step_mean_s=statistics.fmean(timed),
            step_p10_s=_percentile(timed, 0.1),
            step_p90_s=_percentile(timed, 0.9),
        )
    if evals:
        summary["valid_eval_mean_s"] = statistics.fmean(r["time"] for r in evals)
        last = evals[-1]
        summary["last_epoch_valid_rmse_e_mev_per_atom"] = 1000.0 * last["rmse_e_per_atom"]
        summary["last_epoch_valid_rmse_f_mev_per_a"] = 1000.0 * last["rmse_f"]
    log = out / "train.out"
    if not log.is_file():
        raise FileNotFoundError(f"{log} not found")
    events = _log_events(log)
    start_file = out / "train_start"
    t0 = float(start_file.read_text()) if start_file.is_file() else (events[0][0] if events else None)
    started = [t for t, msg in events if msg.startswith("Started training")]
    epochs = [(t, msg) for t, msg in events if re.match(r"Epoch \d+:", msg)]
    if t0 is not None and started:
        summary["setup_s"] = started[0] - t0
    if started and len(epochs) >= 1:
        # Epoch 0 also pays the initial validation; later gaps are one epoch of training + validation.
        gaps = [b[0] - a[0] for a, b in zip(epochs, epochs[1:])]
        summary["epoch_wall_mean_s"] = statistics.fmean(gaps) if gaps else epochs[0][0] - started[0]
    if t0 is not None and epochs:
        summary["train_time_to_last_checkpoint_s"] = epochs[-1][0] - t0
    end_file = out / "train_end"
    if t0 is not None and end_file.is_file():
        summary["budget_used_s"] = float(end_file.read_text()) - t0
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="time per step / epoch of a mace_run_train run")
    p.add_argument("out", type=Path, help="output folder of run_mace.sh")
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the step statistics")
    p.add_argument("--json", type=Path, help="also write the summary here")
    args = p.parse_args(argv)
    s = summarise(args.out, args.batch_size, args.warmup)
    for key, value in s.items():
        print(f"  {key:38s} {value:.3f}" if isinstance(value, float) else f"  {key:38s} {value}")
    if args.json:
        args.json.write_text(json.dumps(s, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
