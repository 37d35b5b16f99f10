"""Side-by-side speed of gaunt and mace-torch: alternating fresh subprocesses, one table, one JSON file.

    .venv/bin/python benchmarks/potential/pair/pair.py [--rounds 5] [--steps 10] [--calls 30]
        [--dtypes float64,float32] [--modes step,calc,calc-nostress] [--product grid] [--json PATH]

For every mode and dtype it runs ``rounds`` times: step_gaunt.py (in this interpreter, PYTHONPATH=src), then
step_mace.py (in .venv-mace), each a new process with 1 thread, so both sides see the same load in turn
(A B A B ...). Before and after it records the load average and the single-core sgemm rate (torch.mm of
2048 x 2048 float32, 1 thread), which tell how busy and how fast the machine was. The table gives the median
time of every timed step of a side (all rounds pooled), the range of the per-run medians, and the speed-up
= mace median / gaunt median. Step = forward with forces (create_graph), weighted E/F loss, backward on the
first 5 configurations of 3BPA (135 atoms); calc = energy + forces of one 3BPA molecule through each code's
ASE calculator (mace's MACECalculator computes the stress too, even of a molecule); calc-nostress = the same,
but mace's side calls its model with compute_stress=False on mace's graph of the atoms (step_mace.py
--no-calc-stress), i.e. the same quantities as gaunt's calculator. Only this script's processes run; start it
on a quiet machine for numbers worth quoting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def sgemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    """Best of ``repeats`` single-thread float32 matrix products n x n (GFLOP/s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(threads)
    return 2 * n**3 / best / 1e9


def machine_state() -> dict:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {
        "time": datetime.now().isoformat(timespec="seconds"),
        "uptime": uptime,
        "loadavg": os.getloadavg(),
        "sgemm_gflops_1thread": round(sgemm_gflops(), 2),
    }


def run_side(command: list[str], env: dict, timeout: float) -> dict:
    """Run one side; its last stdout line is the JSON result (step_*.py's ``emit``)."""
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"pair.py: {' '.join(command)} failed (exit {proc.returncode})")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="gaunt-then-mace rounds per mode and dtype")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps per run")
    parser.add_argument("--calls", type=int, default=30, help="timed calculator calls per run")
    parser.add_argument("--calc-warmup", type=int, default=5, help="untimed calculator calls per run")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--modes", default="step,calc,calc-nostress", help="any of step, calc, calc-nostress")
    parser.add_argument("--product", default="grid", help="gaunt's product: grid | gaunt | cg")
    parser.add_argument("--mace-model", default="ScaleShiftMACE", help="or MACE")
    parser.add_argument("--gaunt-python", default=sys.executable)
    parser.add_argument("--mace-python", default=str(_mace_python()), help="default: .venv-mace of this checkout")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per subprocess")
    parser.add_argument("--json", type=Path, help="default runs/potential/pair/pair-DATE.json")
    args = parser.parse_args()
    if not Path(args.mace_python).exists():
        raise SystemExit(f"pair.py: no {args.mace_python}; create .venv-mace (benchmarks/potential/README.md)")
    dtypes, modes = args.dtypes.split(","), args.modes.split(",")
    unknown = set(modes) - {"step", "calc", "calc-nostress"}
    if unknown:
        raise SystemExit(f"pair.py: unknown modes {sorted(unknown)}")
    out_path = args.json or REPO / "runs" / "potential" / "pair" / f"pair-{datetime.now():%Y%m%d-%H%M%S}.json"

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    gaunt_env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])))
    mace_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    before = machine_state()
    print(f"before: {before['uptime']}; sgemm {before['sgemm_gflops_1thread']} GFLOP/s (1 thread)", flush=True)

    record = {
        "repo_commit": _git_head(),
        "host": platform.node(),
        "python": platform.python_version(),
        "settings": vars(args) | {"json": str(out_path)},
        "before": before,
        "runs": [],
        "summary": [],
    }
    for mode in modes:
        count, warmup = (args.steps, args.warmup) if mode == "step" else (args.calls, args.calc_warmup)
        base = ["step" if mode == "step" else "calc", "--steps", str(count), "--warmup", str(warmup)]
        mace_extra = ["--model", args.mace_model] + (["--no-calc-stress"] if mode == "calc-nostress" else [])
        for dtype in dtypes:
            sides = {
                "gaunt": (
                    [args.gaunt_python, "step_gaunt.py", *base, "--dtype", dtype, "--product", args.product],
                    gaunt_env,
                ),
                "mace": (
                    [args.mace_python, "step_mace.py", *base, "--dtype", dtype, *mace_extra],
                    mace_env,
                ),
            }
            for r in range(args.rounds):
                for name, (command, side_env) in sides.items():
                    result = run_side(command, side_env, args.timeout)
                    result.update(mode=mode, round=r, loadavg=os.getloadavg())
                    record["runs"].append(result)
                    print(
                        f"  {mode} {dtype} round {r + 1}/{args.rounds} {name}: median {result['median_s']:.4f} s"
                        f" ({result['atoms']} atoms, {result['edges']} edges)",
                        flush=True,
                    )
            record["summary"].append(_summary(record["runs"], mode, dtype))
    record["after"] = machine_state()

    print()
    print("| mode | dtype | gaunt median (s) | mace median (s) | gaunt runs (s) | mace runs (s) | mace / gaunt |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in record["summary"]:
        g, m = s["gaunt"], s["mace"]
        print(
            f"| {s['mode']} | {s['dtype']} | {g['median_s']:.4f} | {m['median_s']:.4f} | "
            f"{g['run_min_s']:.4f}-{g['run_max_s']:.4f} | {m['run_min_s']:.4f}-{m['run_max_s']:.4f} | "
            f"{s['speedup']:.2f}x |"
        )
    print()
    for when in ("before", "after"):
        state = record[when]
        print(f"{when}: {state['uptime']}; sgemm {state['sgemm_gflops_1thread']} GFLOP/s (1 thread)")
    first = {r["code"]: r for r in record["runs"]}
    print(
        f"gaunt: {first['gaunt']['model']}, {first['gaunt']['parameters']} parameters; "
        f"mace: {first['mace']['model']}, {first['mace']['parameters']} parameters"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out_path}")


def _summary(runs: list[dict], mode: str, dtype: str) -> dict:
    out = {"mode": mode, "dtype": dtype}
    for code in ("gaunt", "mace"):
        mine = [r for r in runs if r["code"] == code and r["mode"] == mode and r["dtype"] == dtype]
        medians = [r["median_s"] for r in mine]
        out[code] = {
            "median_s": statistics.median([t for r in mine for t in r["times_s"]]),
            "run_min_s": min(medians),
            "run_max_s": max(medians),
            "runs": len(mine),
            "atoms": mine[0]["atoms"],
            "edges": mine[0]["edges"],
        }
    out["speedup"] = out["mace"]["median_s"] / out["gaunt"]["median_s"]
    return out


def _mace_python() -> Path:
    """``.venv-mace/bin/python`` of this checkout, else of the main checkout (when run from a git worktree)."""
    here = REPO / ".venv-mace" / "bin" / "python"
    proc = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=REPO, capture_output=True, text=True)
    main = (REPO / proc.stdout.strip()).resolve().parent / ".venv-mace" / "bin" / "python"
    return here if here.exists() or proc.returncode != 0 or not main.exists() else main


def _git_head() -> str | None:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip() or None


if __name__ == "__main__":
    main()
