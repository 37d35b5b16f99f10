"""The potential's training step on one device with the default executors ("auto": Triton's fused kernels on CUDA)
against every executor forced to "torch": agreement, executors used, and times.

The model is RESULTS.md's ``GauntPotential`` (32 channels, max_L 1, max_ell 3, correlation 3, 2 interactions,
r_max 5 A, 8 radial basis functions, product "grid"; no E0s, so that the energies compared are the network's). Two
models with one state dict: "auto" (the executors ``executors.PREFERENCE`` picks for the device: "triton" then
"torch" on CUDA) and "torch" (``PREFERENCE[device] = ("torch",)`` while the model is built and called; each runner
resolves once per device type and keeps its choice).
On CUDA, ``PREFERENCE["cpu"] = ("torch",)`` throughout: the CPU choice plays no part, and it keeps the C++ kernels
from being compiled at model construction.

Per dtype (float64 first, then float32):

* ``check``: energies and forces of both models on the first batch (relative to the largest entry; float64 must agree
  to ``TOLERANCE``), and the gradients of the training loss with respect to the parameters;
* ``step``: the training step of ``pair/step_gaunt.py`` (forward with forces, create_graph, loss 1 * mean(((E -
  E_ref) / N)^2) + 100 * mean((F - F_ref)^2), backward to the parameters; no optimiser step) on a batch of 5 and of
  64 molecules: median time (``gaunt.bench.timing.time_call``, after a warm-up that includes Triton's compilation),
  peak memory, and the executors each model's runners resolved for the device;
* ``calc``: energy + forces of one molecule through ``GauntCalculator`` (neighbour list on the CPU, new positions at
  every call), as an ASE user would call it.

Molecules: 3BPA's ``train_300K.xyz`` (first 64 configurations) where ``../shared/data/3bpa`` exists (``--data``), else
random molecules of 3BPA's composition (C12H12N2O, 27 atoms, ~17 neighbours within 5 A). Points past the time
budget are recorded as skipped; the JSON is rewritten after every point, so a run stopped from outside keeps what it
measured. ``--dry-run``: tiny model and molecules on the CPU, Triton in its interpreter (``PREFERENCE["cpu"]`` is
CUDA's), to check the script (it measures nothing).

    python benchmarks/gpu/potential.py [--out DIR] [--budget 75]     # CUDA
    python benchmarks/gpu/potential.py --dry-run                      # CPU, TRITON_INTERPRET=1, tiny sizes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_DIRS = (ROOT.parent / "shared" / "data" / "3bpa", ROOT / "shared" / "data" / "3bpa")
#: RESULTS.md's model
MODEL = {
    "num_channels": 32,
    "max_L": 1,
    "max_ell": 3,
    "correlation": 3,
    "num_interactions": 2,
    "r_max": 5.0,
    "num_radial_basis": 8,
    "product": "grid",
}
FULL = {
    "model": MODEL,
    "batches": (5, 64),
    "atoms": None,  # whole molecules
    "dtypes": ("float64", "float32"),
    "timing": {"min_time": 0.3, "max_time": 1.5, "min_repeats": 3, "max_repeats": 25},
}
TINY = {
    "model": dict(MODEL, num_channels=2, max_ell=1, correlation=2, num_radial_basis=2, radial_hidden=[4, 4]),
    "batches": (1, 2),
    "atoms": 3,  # molecules cut to their first 3 atoms (Triton's interpreter is slow)
    "dtypes": ("float64", "float32"),
    "timing": {"min_time": 0.0, "max_time": 0.0, "min_repeats": 1, "max_repeats": 1},
}
EXECUTOR_NAMES = ("auto", "torch")
TOLERANCE = {"float64": 1e-8}  # energies and forces of "auto" vs "torch", relative to the largest entry
ENERGY_WEIGHT, FORCES_WEIGHT = 1.0, 100.0  # as pair/step_gaunt.py (run_gaunt.sh: --energy_weight 1 --forces_weight 100)
COMPOSITION = ["C"] * 12 + ["H"] * 12 + ["N"] * 2 + ["O"]  # 3BPA, C12H12N2O


# ----------------------------------------------------------------------------- molecules
def random_molecule(rng, n: int = 27):
    """A random molecule of 3BPA's composition (the first ``n`` symbols): each atom 1.0-1.5 A from a random earlier
    one and at least 1.8 A from every other (3BPA's neighbour count within 5 A: ~17 per atom)."""
    import ase
    import numpy as np

    symbols = [COMPOSITION[i % len(COMPOSITION)] for i in range(n)]
    positions = np.zeros((1, 3))
    for _ in range(100_000):
        if len(positions) == n:
            break
        direction = rng.normal(size=3)
        parent = int(rng.integers(len(positions)))
        candidate = positions[parent] + direction / np.linalg.norm(direction) * rng.uniform(1.0, 1.5)
        others = np.delete(positions, parent, axis=0)
        if len(others) == 0 or np.linalg.norm(others - candidate, axis=1).min() >= 1.8:
            positions = np.vstack([positions, candidate])
    if len(positions) != n:
        raise RuntimeError(f"random_molecule: placed {len(positions)} of {n} atoms")
    return ase.Atoms(symbols, positions=positions)


def molecules(count: int, atoms: int | None, data: Path | None) -> tuple[list, str]:
    """``count`` molecules with ``info["REF_energy"]`` and ``arrays["REF_forces"]``: 3BPA's first configurations
    (cut to their first ``atoms`` atoms if given) when ``data`` is a directory, else random ones; and the source."""
    import ase.io
    import numpy as np

    if data is not None and (data / "train_300K.xyz").exists():
        frames = ase.io.read(data / "train_300K.xyz", index=f":{count}")
        for a in frames:
            energy, forces = a.get_potential_energy(), a.get_forces()
            a.calc = None
            a.info["REF_energy"], a.arrays["REF_forces"] = float(energy), np.asarray(forces, dtype=np.float64)
        source = f"3BPA {data / 'train_300K.xyz'}"
    else:
        rng = np.random.default_rng(0)
        frames = [random_molecule(rng) for _ in range(count)]
        for a in frames:  # labels of no physical meaning: the loss has the training step's form
            a.info["REF_energy"], a.arrays["REF_forces"] = 0.0, rng.normal(size=(len(a), 3))
        source = "random molecules of 3BPA's composition (C12H12N2O, 27 atoms)"
    if atoms is not None:
        frames = [a[:atoms] for a in frames]  # labels kept as they are: only the loss's form matters here
        source += f", cut to {atoms} atoms"
    return frames, source


def batch(frames: list, r_max: float, dtype, device) -> dict:
    """The collated graph of ``frames`` and its labels (energies ``[B]``, atom counts ``[B]``, forces ``[N, 3]``)."""
    import numpy as np
    import torch

    from gaunt.data import atoms_to_graph, collate

    graph = collate([atoms_to_graph(a, r_max, dtype) for a in frames]).to(device)

    def tensor(x):
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

    return {
        "graph": graph,
        "energies": tensor([a.info["REF_energy"] for a in frames]),
        "sizes": tensor([len(a) for a in frames]),
        "forces": tensor(np.concatenate([a.arrays["REF_forces"] for a in frames])),
    }


# ----------------------------------------------------------------------------- models and executors
@contextlib.contextmanager
def preference(device_type: str, executor: str):
    """``executor`` "torch": every "auto" runner resolved inside resolves to "torch" for ``device_type``."""
    from gaunt.products import executors

    saved = executors.PREFERENCE.get(device_type)
    if executor == "torch":
        executors.PREFERENCE[device_type] = ("torch",)
    try:
        yield
    finally:
        if saved is None:
            executors.PREFERENCE.pop(device_type, None)
        else:
            executors.PREFERENCE[device_type] = saved


def build(config, executor: str, state: dict | None, device, dtype):
    """A ``GauntPotential`` of ``config`` built under ``preference(executor)`` (``state``: its state dict)."""
    import torch

    from gaunt.models import GauntPotential

    with preference(torch.device(device).type, executor):
        model = GauntPotential(config)
        if state is not None:
            model.load_state_dict(state)
        return model.to(device=device, dtype=dtype).train()


_GRID_MESSAGE_OPS = {"triton_grid_messages": "triton", "cpu_grid_messages": "cpu_fused", "torch_grid_messages": "torch"}


def executors_ran(model, device_type: str) -> dict[str, int]:
    """How many of ``model``'s runners resolved to each executor for ``device_type`` tensors (after a call): "auto"
    runners of the products and powers (``AutoRunner``), named ones (``CheckedRunner``) and the grid messages."""
    from gaunt.products import grid_messages
    from gaunt.products.executors import AutoRunner, CheckedRunner

    ran = Counter()
    for m in model.modules():
        if isinstance(m, AutoRunner) and device_type in m._by_device:
            ran[m._by_device[device_type].executor] += 1
        elif isinstance(m, CheckedRunner):
            ran[m.executor] += 1
        for value in vars(m).values():
            if isinstance(value, grid_messages.GridMessages) and device_type in value._by_device:
                fn = value._by_device[device_type]
                name = "torch" if fn is grid_messages.reference else None
                name = name or next((n for k, n in _GRID_MESSAGE_OPS.items() if k in repr(fn)), repr(fn))
                ran[f"{name} (grid messages)"] += 1
    return dict(sorted(ran.items()))


def executors_declared(model) -> dict[str, int]:
    """The ``executor`` attributes of ``model``'s modules (products: the CPU choice, "cpu (cpu), cuda (cuda)" where
    the device types differ)."""
    names = Counter(m.executor for m in model.modules() if isinstance(getattr(m, "executor", None), str))
    return dict(sorted(names.items()))


def loss(model, b: dict):
    out = model(b["graph"])  # training mode: forces with create_graph
    value = ENERGY_WEIGHT * ((out["energy"] - b["energies"]) / b["sizes"]).square().mean()
    return value + FORCES_WEIGHT * (out["forces"] - b["forces"]).square().mean()


def step(model, b: dict) -> None:
    """One training step without the optimiser: loss, backward, gradients dropped."""
    loss(model, b).backward()
    for p in model.parameters():
        p.grad = None


def relative(a, b) -> float:
    """max |a - b| / max |b| (float64)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-300)


def check(models: dict, b: dict, dtype_name: str) -> dict:
    """Energies, forces and loss gradients of "auto" against "torch" on one batch."""
    import torch

    device_type = b["graph"].positions.device.type
    results = {}
    for ex, model in models.items():
        with preference(device_type, ex):
            out = model(b["graph"], create_graph=False)
            params = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss(model, b), params)
        results[ex] = (out["energy"], out["forces"], torch.cat([g.reshape(-1) for g in grads]))
    energy, forces, gradients = (relative(a, t) for a, t in zip(results["auto"], results["torch"]))
    tolerance = TOLERANCE.get(dtype_name)
    record = {"energy_rel": energy, "forces_rel": forces, "gradients_rel": gradients, "tolerance": tolerance}
    record["agree"] = None if tolerance is None else bool(max(energy, forces) <= tolerance)
    record["status"] = "ok" if record["agree"] is not False else "disagree"
    return record


def calculator_call(model, frame, device):
    """A function that moves one atom by 1e-4 A and asks ``GauntCalculator(model=model)`` for the forces."""
    from gaunt.calculator import GauntCalculator

    atoms = frame.copy()
    atoms.calc = GauntCalculator(model=model, device=str(device))

    def call():
        atoms.positions[0, 0] += 1e-4
        return atoms.get_forces()

    return call


# ----------------------------------------------------------------------------- the run
def run(device, sizes: dict, data: Path | None, budget_s: float, out: Path | None = None) -> dict:
    """Every (dtype, case, executor) point; a point that would start past ``budget_s`` (estimated from the previous
    one) is recorded as skipped. With ``out``, ``potential.{json,md}`` are rewritten after every point."""
    import torch

    from gaunt.data import atoms_to_graph
    from gaunt.models import PotentialConfig

    start, device_type = time.perf_counter(), torch.device(device).type
    frames, source = molecules(max(sizes["batches"]), sizes["atoms"], data)
    first = atoms_to_graph(frames[0], sizes["model"]["r_max"])
    meta = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(0) if device_type == "cuda" else "cpu (dry run)",
        "torch": torch.__version__,
        "data": source,
        "model": sizes["model"],
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "preference": executor_preference(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
    }
    report = {"meta": meta, "records": []}
    records = report["records"]
    last = 0.0  # seconds of the previous point: the estimate of the next one

    def save():
        meta["elapsed_s"] = round(time.perf_counter() - start, 1)
        if out is not None:
            write(report, out)

    for dtype_name in sizes["dtypes"]:
        dtype = getattr(torch, dtype_name)
        batches = {n: batch(frames[:n], sizes["model"]["r_max"], dtype, device) for n in sizes["batches"]}
        small = batches[sizes["batches"][0]]
        config = PotentialConfig(  # no E0s: the energies compared are the network's alone
            atomic_numbers=[1, 6, 7, 8],
            avg_num_neighbors=small["graph"].num_edges / small["graph"].num_nodes,
            **sizes["model"],
        )
        models: dict = {}
        points = [("check", sizes["batches"][0])] + [("step", n) for n in sizes["batches"]] + [("calc", 1)]
        for case, n in points:
            b = batches.get(n)
            atoms, edges = (b["graph"].num_nodes, b["graph"].num_edges) if b else (len(frames[0]), first.num_edges)
            base = {"case": case, "dtype": dtype_name, "molecules": n, "atoms": atoms, "edges": edges}
            t0 = time.perf_counter()
            if t0 - start + last > budget_s:
                records.append(dict(base, status="skipped", reason="budget"))
                save()
                continue
            try:
                if not models:  # the same state dict in both (seeded: the same model in every run)
                    torch.manual_seed(0)
                    models["auto"] = build(config, "auto", None, device, dtype)
                    models["torch"] = build(config, "torch", models["auto"].state_dict(), device, dtype)
                if case == "check":
                    records.append(dict(base, **check(models, b, dtype_name)))
                else:
                    for ex in EXECUTOR_NAMES:
                        records.append(time_point(case, ex, models, b, frames[0], config, device, dtype, base, sizes))
                        save()
                        if device_type == "cuda":
                            torch.cuda.empty_cache()
            except Exception as exc:  # noqa: BLE001 - a failure is a result (recorded), never the end
                records.append(dict(base, status="error", reason=f"{type(exc).__name__}: {exc}"[:300]))
            last = time.perf_counter() - t0
            save()
        del models, batches
        if device_type == "cuda":
            torch.cuda.empty_cache()
    save()
    return report


def time_point(case, ex, models, b, frame, config, device, dtype, base, sizes) -> dict:
    """The timing of one case on one executor (a failure is recorded)."""
    import torch

    from gaunt.bench.timing import time_call

    device_type = torch.device(device).type
    try:
        with preference(device_type, ex):
            if case == "step":
                model = models[ex]
                fn = lambda: step(model, b)  # noqa: E731
            else:  # a fresh copy: the calculator puts its model in eval mode and freezes the parameters
                model = build(config, ex, models["auto"].state_dict(), device, dtype)
                fn = calculator_call(model, frame, device)
            timing = time_call(fn, device, **sizes["timing"])
            ran = executors_ran(model, device_type)
            declared = executors_declared(model)
        point = dict(base, executor=ex, status="ok", time_s=timing.median_s, repeats=timing.repeats)
        point |= {"warmup_s": timing.warmup_s, "peak_memory_bytes": timing.peak_memory_bytes}
        point |= {"executors_ran": ran, "executors_declared": declared}
        if ex == "torch" and any(not name.startswith("torch") for name in ran):
            point |= {"status": "error", "reason": f"the torch model ran {ran}"}
        return point
    except Exception as exc:  # noqa: BLE001 - a failure is a result (recorded), never the end
        return dict(base, executor=ex, status="error", reason=f"{type(exc).__name__}: {exc}"[:300])


def executor_preference() -> dict:
    from gaunt.products import executors

    return {k: list(v) for k, v in executors.PREFERENCE.items()}


# ----------------------------------------------------------------------------- report
CASE_NAMES = {"step": "training step", "calc": "calculator E+F"}


def short(ran: dict | None) -> str:
    return ", ".join(f"{k} x{v}" for k, v in (ran or {}).items()) or "-"


def table(report: dict) -> str:
    """Markdown: the agreement per dtype, then one row per (dtype, case, molecules) with both executors' times."""
    records = report["records"]
    lines = [
        f"{report['meta']['device_name']}, torch {report['meta']['torch']}. Data: {report['meta']['data']}; model "
        f"{json.dumps(report['meta']['model'])}.",
        "",
        "| dtype | molecules | energy rel | forces rel | loss gradients rel | tolerance | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r["case"] != "check":
            continue
        cells = [f"{r[k]:.1e}" if isinstance(r.get(k), float) else "-" for k in ("energy_rel", "forces_rel")]
        cells.append(f"{r['gradients_rel']:.1e}" if isinstance(r.get("gradients_rel"), float) else "-")
        tol = r.get("tolerance")
        lines.append(
            f"| {r['dtype']} | {r['molecules']} | {' | '.join(cells)} | {'-' if tol is None else f'{tol:.0e}'} | "
            f"{r['status']}{' (' + r['reason'] + ')' if r.get('reason') else ''} |"
        )
    rows: dict = {}
    for r in records:
        if r["case"] in CASE_NAMES:
            rows.setdefault((r["dtype"], r["case"], r["molecules"]), {})[r.get("executor", "auto")] = r
    lines += [
        "",
        "| dtype | case | molecules | atoms | edges | auto (ms) | torch (ms) | speedup | auto peak (MiB) | "
        "torch peak (MiB) | auto executors on the device |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dtype, case, n), by in rows.items():
        t = {ex: by.get(ex, {}).get("time_s") for ex in EXECUTOR_NAMES}
        cell = {ex: f"{t[ex] * 1e3:.2f}" if t[ex] else by.get(ex, {}).get("status", "-") for ex in EXECUTOR_NAMES}
        peak = {ex: by.get(ex, {}).get("peak_memory_bytes") for ex in EXECUTOR_NAMES}
        mib = {ex: "-" if peak[ex] is None else f"{peak[ex] / 2**20:.0f}" for ex in EXECUTOR_NAMES}
        speed = f"{t['torch'] / t['auto']:.2f}x" if t["torch"] and t["auto"] else "-"
        any_r, ran = next(iter(by.values())), short(by.get("auto", {}).get("executors_ran"))
        lines.append(
            f"| {dtype} | {CASE_NAMES[case]} | {n} | {any_r['atoms']} | {any_r['edges']} | {cell['auto']} | "
            f"{cell['torch']} | {speed} | {mib['auto']} | {mib['torch']} | {ran} |"
        )
    errors = [r for r in records if r["status"] == "error"]
    if errors:
        lines += ["", "Errors:", ""] + [
            f"- {r['dtype']} {r['case']} {r.get('executor', '')}: {r['reason']}" for r in errors
        ]
    return "\n".join(lines) + "\n"


def write(report: dict, out: Path, stem: str = "potential") -> list[str]:
    """``<stem>.json`` and ``<stem>.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (out / f"{stem}.md").write_text(table(report))
    return [str(out / f"{stem}.json"), str(out / f"{stem}.md")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton's interpreter, tiny sizes: checks the script")
    p.add_argument("--out", default=None, help="results directory (default benchmarks/gpu-potential[-dryrun])")
    p.add_argument("--budget", type=float, default=75.0, help="seconds for the whole run (default 75)")
    p.add_argument("--data", type=Path, default=None, help="3BPA directory (default ../shared/data/3bpa if present)")
    args = p.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before gaunt / triton are imported: kernels on the CPU
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from gaunt.products import executors

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    if device == "cuda":
        executors.PREFERENCE["cpu"] = ("torch",)  # the CPU choice plays no part (no C++ build at construction)
    else:
        executors.PREFERENCE["cpu"] = executors.PREFERENCE["cuda"]  # the dry run takes CUDA's choices on the CPU
    data = args.data or next((d for d in DATA_DIRS if (d / "train_300K.xyz").exists()), None)
    out = Path(args.out or ROOT / "benchmarks" / ("gpu-potential" + ("-dryrun" if args.dry_run else "")))
    report = run(device, TINY if args.dry_run else FULL, data, args.budget, out)
    paths = write(report, out)
    print(table(report))
    print("\n".join(paths))
    return 0 if all(r["status"] not in ("error", "disagree") for r in report["records"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
