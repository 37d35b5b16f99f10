"""The GPU run of issue 15 in one command (``benchmarks/gpu/run.sh`` calls this): under 8 minutes on a fresh
CUDA machine, every stage with its own time limit, every failure recorded and never fatal.

Stages (``--skip STAGE`` leaves one out), results under ``benchmarks/gpu-<device>/`` (``--out``):

1. ``install``: the peers and tools that do not import yet (e3nn, cuequivariance-torch +
   cuequivariance-ops-torch-cu<CUDA major>, openequivariance, ase and vesin for training, the test tools; never
   torch, whose CUDA build is the machine's): first the wheels carried in ``.whl/`` (a machine that reaches no
   registry: ``benchmarks/gpu/fetch_wheels.sh`` fills it), then ``pip install`` with a time limit each;
   ``install.json`` says what was present, installed or failed.
2. ``tests``: the conformance suite and the Triton tests on CUDA (``GAUNT_TEST_DEVICE=cuda``, TF32 off, full
   gradcheck and gradgradcheck); ``tests.txt`` and the counts.
3. ``executors``: the sphere products on the "torch" and "triton" executors side by side (``executors.py``):
   feature shape (64/128 channels, L = 1..10, 10^4 samples) and edge shape (64 channels, 10^5 edges).
3b. ``grid_messages``: the grid messages op (slots 1 and 0, slot 1 forward + backward) on the Triton kernels
   against the torch reference (``grid_messages.py``): 10^5 edges, 5000 nodes, 32/64 channels, 32/72 points, L = 3.
3c. ``many_body``: ``GauntManyBody`` forward and forward + backward on the "triton" and "torch" executors
   (``many_body.py``): 10^4 samples, 32/64 channels, L = 2, 3, correlation 3.
3d. ``potential``: the potential's training step (RESULTS.md's model, batches of 5 and 64 molecules of 3BPA or of
   its size, float64 and float32) and one molecule's energy + forces through the ASE calculator, with the default
   executors ("auto": Triton) against every executor forced to "torch", after checking that both give the same
   energies and forces (``potential.py``, a subprocess with its own time limit: at most 80 s).
4. ``sweep``: ``gaunt bench`` (its runners and agreement checks) with the peers e3nn, cuEquivariance and
   OpenEquivariance on the same function: feature shape 64/128 channels L = 1..10, edge shape 10^5 edges.
5. ``ddp``: with two GPUs or more, one short ``torchrun --nproc_per_node 2 -m gaunt.train --distributed`` (NCCL).

``--device cpu`` is the dry run of the same code on tiny sizes (Triton in its interpreter, DDP over gloo with
``--ddp-on-cpu``); it checks the script, it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
STAGES = ("install", "tests", "executors", "grid_messages", "many_body", "potential", "sweep", "ddp")
#: what the stages need: (import name, pip requirement); torch is never installed here
PACKAGES = (
    ("numpy", "numpy==2.4.6"),
    ("scipy", "scipy==1.17.1"),
    ("rich", "rich==15.0.0"),
    ("matplotlib", "matplotlib==3.11.2"),
    ("ase", "ase==3.29.0"),
    ("vesin", "vesin==0.6.2"),
    ("tqdm", "tqdm==4.70.1"),
    ("e3nn", "e3nn==0.6.0"),
    ("pytest", "pytest==9.0.3"),
    ("hypothesis", "hypothesis==6.155.2"),
    ("sympy", "sympy==1.14.0"),
    ("triton", "triton==3.9.0"),
    ("cuequivariance_torch", "cuequivariance-torch"),
    ("cuequivariance_ops_torch", "cuequivariance-ops-torch-cu{cuda}"),
    ("openequivariance", "openequivariance"),
)
#: wheels carried to a machine without a registry (``benchmarks/gpu/fetch_wheels.sh``) and where they go
WHEELS, SITE = ROOT / ".whl", Path("/tmp/gaunt-site")
TINY = {"Ls": (1, 2), "channels": (4,), "feature_batch": 64, "edge_batch": 128, "edge_channels": (4,)}
FULL = {
    "Ls": tuple(range(1, 11)),
    "channels": (64, 128),
    "feature_batch": 10_000,
    "edge_batch": 100_000,
    "edge_channels": (64,),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: dry run on tiny sizes")
    p.add_argument("--out", default=None, help="results directory (default benchmarks/gpu-<device name>)")
    p.add_argument("--skip", nargs="*", default=[], choices=STAGES, help="stages to leave out")
    p.add_argument("--budget", type=float, default=440.0, help="seconds for the whole run (default 440)")
    p.add_argument("--ddp-on-cpu", action="store_true", help="dry run: the DDP stage over gloo on two CPU processes")
    return p.parse_args(argv)


def run_command(cmd: list[str], timeout: float, env: dict | None = None, log: Path | None = None) -> dict:
    """Run ``cmd`` with a time limit; ``{"cmd", "rc", "seconds", "tail"}`` (rc None: timed out)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=max(1.0, timeout),
            check=False,
        )
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = None, f"{exc.stdout or ''}{exc.stderr or ''}\n[timed out after {timeout:.0f} s]"
        text = text if isinstance(text, str) else str(text)
    if log is not None:
        log.write_text(text)
    return {"cmd": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - start, 1), "tail": text[-2000:]}


def device_slug(device: str) -> str:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    return "cpu-dryrun"


def stage_install(out: Path, remaining: float, device: str) -> dict:
    """Carried wheels (``.whl/``) first, then pip install what still does not import (``--retries 0``: an offline
    machine fails fast)."""
    import importlib.util

    import torch

    report, deadline = {}, time.perf_counter() + min(120.0, 0.3 * remaining)
    wheels = sorted(str(p) for p in WHEELS.glob("*.whl"))
    if wheels:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--upgrade",
            "--target",
            str(SITE),
            *wheels,
        ]
        report["carried wheels"] = {"status": "installed", **run_command(cmd, 90.0)}
        report["carried wheels"]["status"] = "installed" if report["carried wheels"]["rc"] == 0 else "failed"
        sys.path.insert(0, str(SITE))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(SITE), os.environ["PYTHONPATH"]])
        importlib.invalidate_caches()
    cuda = (torch.version.cuda or "12").split(".")[0]
    for module, requirement in PACKAGES:
        requirement = requirement.format(cuda=cuda)
        left = deadline - time.perf_counter()
        if importlib.util.find_spec(module) is not None:
            report[requirement] = {"status": "present"}
            continue
        if device != "cuda" and module.startswith(("cuequivariance", "openequivariance")):
            report[requirement] = {"status": "skipped", "reason": "dry run on CPU"}
            continue
        if left < 5:
            report[requirement] = {"status": "skipped", "reason": "install stage budget spent"}
            continue
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--retries", "0", "--timeout", "15", requirement]
        result = run_command(cmd, min(90.0, left))
        report[requirement] = {"status": "installed" if result["rc"] == 0 else "failed", **result}
    (out / "install.json").write_text(json.dumps(report, indent=1))
    return {"packages": {k: v["status"] for k, v in report.items()}}


def stage_tests(out: Path, remaining: float, device: str) -> dict:
    files = [
        "tests/products/test_conformance.py",
        "tests/products/test_triton.py",
        "tests/products/test_triton_grid_messages.py",
        "tests/products/test_triton_powers.py",
    ]
    env = {"GAUNT_TEST_DEVICE": device}
    if device == "cuda":
        env["TRITON_INTERPRET"] = "0"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    if device != "cuda":  # the dry run: only the Triton entries, the rest is the default suite's
        cmd += ["-k", "triton and not gradients"]
    result = run_command(cmd, min(150.0, remaining), env, out / "tests.txt")
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", result["tail"])}
    return {"rc": result["rc"], "seconds": result["seconds"], "counts": counts}


def stage_executors(out: Path, remaining: float, device: str, sizes: dict) -> dict:
    import executors  # benchmarks/gpu/executors.py
    import torch

    budget = min(120.0, remaining) / 2
    records = executors.run(
        device, sizes["Ls"], sizes["channels"], sizes["feature_batch"], torch.float32, "feature", budget_s=budget
    )
    records += executors.run(
        device, sizes["Ls"], sizes["edge_channels"], sizes["edge_batch"], torch.float32, "edge", budget_s=budget
    )
    paths = executors.write(records, out)
    status = {}
    for r in records:
        status[r["status"]] = status.get(r["status"], 0) + 1
    return {"points": status, "files": paths}


def stage_grid_messages(out: Path, remaining: float, device: str) -> dict:
    import grid_messages  # benchmarks/gpu/grid_messages.py
    import torch

    sizes, min_time = (grid_messages.FULL, 0.2) if device == "cuda" else (grid_messages.TINY, 0.01)
    records = grid_messages.run(device, sizes, torch.float32, budget_s=min(90.0, 0.25 * remaining), min_time=min_time)
    paths = grid_messages.write(records, out)
    status = {}
    for r in records:
        status[r["status"]] = status.get(r["status"], 0) + 1
    return {"points": status, "files": paths}


def stage_many_body(out: Path, remaining: float, device: str) -> dict:
    import many_body  # benchmarks/gpu/many_body.py
    import torch

    sizes, min_time = (many_body.FULL, 0.2) if device == "cuda" else (many_body.TINY, 0.01)
    records = many_body.run(device, sizes, torch.float32, budget_s=min(60.0, 0.2 * remaining), min_time=min_time)
    paths = many_body.write(records, out)
    status = {}
    for r in records:
        status[r["status"]] = status.get(r["status"], 0) + 1
    return {"points": status, "files": paths}


def stage_potential(out: Path, remaining: float, device: str) -> dict:
    """``potential.py`` as a subprocess (the executors' preferences it sets stay there) with a time limit: its own
    budget ends 15 s before the limit (imports, the last point); it rewrites ``potential.json`` after every point, so
    a run stopped at the limit keeps what it measured."""
    limit = min(80.0, 0.3 * remaining) if device == "cuda" else min(300.0, remaining)  # the interpreter is slow
    if limit < 25:
        return {"status": "skipped", "reason": f"budget ({limit:.0f} s left for it)"}
    cmd = [sys.executable, "benchmarks/gpu/potential.py", "--out", str(out), "--budget", f"{max(limit - 15, 5):.0f}"]
    env = {"TRITON_INTERPRET": "0"} if device == "cuda" else {}
    if device != "cuda":
        cmd.append("--dry-run")
    result = run_command(cmd, limit, env, out / "potential.txt")
    report = {"rc": result["rc"], "seconds": result["seconds"], "limit_s": round(limit)}
    if (out / "potential.json").exists():
        records = json.loads((out / "potential.json").read_text())["records"]
        status = {}
        for r in records:
            status[r["status"]] = status.get(r["status"], 0) + 1
        report["points"] = status
        report["agree"] = {r["dtype"]: r.get("agree") for r in records if r["case"] == "check"}
        report["files"] = [str(out / "potential.json"), str(out / "potential.md")]
    return report


def stage_sweep(out: Path, remaining: float, device: str, sizes: dict) -> dict:
    """``gaunt bench`` twice (feature, edge) with its own total budgets, as a subprocess each."""
    Ls = ",".join(map(str, sizes["Ls"]))
    common = [
        "--device",
        device,
        "--L",
        Ls,
        "--dtype",
        "float32",
        "--direction",
        "fwd+bwd",
        "--min-time",
        "0.2",
        "--products",
        "GridGauntProduct",
        "GauntProduct",
        "--peers",
        "e3nn",
        "cuequivariance",
        "openequivariance",
        "--build-budget",
        "20",
        "--point-budget",
        "10",
    ]
    runs = {
        "feature": [
            "--shapes",
            "feature",
            "--channels",
            *map(str, sizes["channels"]),
            "--batch",
            str(sizes["feature_batch"]),
        ],
        "edge": [
            "--shapes",
            "edge",
            "--channels",
            *map(str, sizes["edge_channels"]),
            "--batch",
            str(sizes["edge_batch"]),
        ],
    }
    shares = {"feature": 0.6, "edge": 0.4}
    report = {}
    for shape, extra in runs.items():
        total = max(10.0, (min(200.0, remaining) * shares[shape]) - 20)
        cmd = [
            sys.executable,
            "-m",
            "gaunt.bench",
            *common,
            *extra,
            "--total-budget",
            f"{total:.0f}",
            "--out",
            str(out / f"sweep-{shape}"),
        ]
        result = run_command(cmd, total + 60, log=out / f"sweep-{shape}.txt")
        report[shape] = {"rc": result["rc"], "seconds": result["seconds"]}
    return report


def stage_ddp(out: Path, remaining: float, device: str, on_cpu: bool) -> dict:
    """Two processes, one epoch of a small potential on EMT data: NCCL on two GPUs (gloo on CPU if asked)."""
    import torch

    if device == "cuda" and torch.cuda.device_count() < 2:
        return {"status": "skipped", "reason": f"{torch.cuda.device_count()} GPU(s): DDP needs two"}
    if device != "cuda" and not on_cpu:
        return {"status": "skipped", "reason": "dry run (--ddp-on-cpu runs it over gloo)"}
    data = out / "ddp" / "emt.xyz"
    write_emt(data, 12)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "gaunt.train",
        "--train_file",
        str(data),
        "--distributed",
        "--device",
        device,
        "--max_num_epochs",
        "1",
        "--num_channels",
        "16",
        "--max_L",
        "1",
        "--max_ell",
        "2",
        "--correlation",
        "2",
        "--num_interactions",
        "1",
        "--product",
        "grid",
        "--batch_size",
        "2",
        "--work_dir",
        str(out / "ddp"),
        "--name",
        "ddp",
        "--overwrite",
        "--no-progress",
        "--no-plot",
        "--E0s",
        "average",
    ]
    result = run_command(cmd, min(150.0, remaining), log=out / "ddp.txt")
    return {"status": "ok" if result["rc"] == 0 else "failed", "rc": result["rc"], "seconds": result["seconds"]}


def write_emt(path: Path, n: int) -> None:
    """``n`` EMT configurations as extended XYZ with ``energy`` / ``forces`` (as ``gaunt train`` reads them)."""
    import ase.io

    from gaunt.data import ENERGY_LABEL, FORCES_LABEL, emt_dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    structures = []
    for atoms in emt_dataset(n, seed=0):
        atoms = atoms.copy()
        atoms.info["energy"] = atoms.info.pop(ENERGY_LABEL)
        atoms.arrays["forces"] = atoms.arrays.pop(FORCES_LABEL)
        structures.append(atoms)
    ase.io.write(path, structures, format="extxyz")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before gaunt / triton are imported: kernels on the CPU
    start = time.perf_counter()
    out = Path(args.out) if args.out else ROOT / "benchmarks" / f"gpu-{device_slug(args.device)}"
    out.mkdir(parents=True, exist_ok=True)
    sizes = FULL if args.device == "cuda" else TINY
    summary = {"device": args.device, "argv": sys.argv[1:], "stages": {}}
    for stage in STAGES:
        remaining = args.budget - (time.perf_counter() - start)
        if stage in args.skip or remaining < 15:
            summary["stages"][stage] = {"status": "skipped", "reason": "--skip" if stage in args.skip else "budget"}
            continue
        t0 = time.perf_counter()
        print(f"[{time.perf_counter() - start:5.0f} s] {stage} ...", flush=True)
        try:
            result = run_stage(stage, out, remaining, args, sizes)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded; the next stage still runs
            result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
        result["stage_seconds"] = round(time.perf_counter() - t0, 1)
        summary["stages"][stage] = result
        print(f"        {json.dumps(result)[:300]}", flush=True)
        (out / "run.json").write_text(json.dumps(dict(summary, elapsed_s=time.perf_counter() - start), indent=1))
    summary["elapsed_s"] = round(time.perf_counter() - start, 1)
    summary["machine"] = machine(args.device)
    (out / "run.json").write_text(json.dumps(summary, indent=1))
    (out / "README.md").write_text(report_markdown(summary, out))
    print(f"done in {summary['elapsed_s']:.0f} s: {out}")
    return 0


def run_stage(stage: str, out: Path, remaining: float, args, sizes: dict) -> dict:
    if stage == "install":
        return stage_install(out, remaining, args.device)
    if stage == "tests":
        return stage_tests(out, remaining, args.device)
    if stage == "executors":
        return stage_executors(out, remaining, args.device, sizes)
    if stage == "grid_messages":
        return stage_grid_messages(out, remaining, args.device)
    if stage == "many_body":
        return stage_many_body(out, remaining, args.device)
    if stage == "potential":
        return stage_potential(out, remaining, args.device)
    if stage == "sweep":
        return stage_sweep(out, remaining, args.device, sizes)
    return stage_ddp(out, remaining, args.device, args.ddp_on_cpu)


def machine(device: str) -> dict:
    from gaunt.bench.timing import machine_info

    info = machine_info(device)
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def report_markdown(summary: dict, out: Path) -> str:
    """README.md of the results: what ran, for how long, and the tables."""
    command = f"`bash benchmarks/gpu/run.sh {' '.join(summary['argv'])}`"
    lines = [
        f"# GPU run on {summary['machine'].get('device_name', summary['device'])}",
        "",
        f"{command}: {summary['elapsed_s']:.0f} s, {time.strftime('%Y-%m-%d')}.",
        "",
        "| stage | result | seconds |",
        "|---|---|---|",
    ]
    for stage, result in summary["stages"].items():
        brief = {k: v for k, v in result.items() if k not in ("stage_seconds", "files")}
        lines.append(f"| {stage} | `{json.dumps(brief)[:200]}` | {result.get('stage_seconds', '-')} |")
    for name, title in (
        ("executors.md", "Executors: torch vs triton, fwd+bwd float32"),
        ("grid_messages.md", "Grid messages: torch reference vs triton kernels, float32"),
        ("many_body.md", "GauntManyBody: torch vs triton executors, float32"),
        ("potential.md", "Potential: training step and calculator, auto (triton) vs torch executors"),
        ("sweep-feature/summary.md", "gaunt bench, feature shape"),
        ("sweep-edge/summary.md", "gaunt bench, edge shape"),
    ):
        if (out / name).exists():
            lines += ["", f"## {title}", "", (out / name).read_text()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
