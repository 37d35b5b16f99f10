"""``gaunt quickstart``: the main job on a fresh machine, with no download.

1. Generate a small labelled dataset with ASE's EMT calculator: Langevin MD of a Cu/Au cluster at
   300 K and 1000 K (``gaunt.data.emt_dataset``), plus the free atoms for the reference energies.
2. Train a small Gaunt-product potential for a few minutes on CPU (``gaunt.train``) and print the
   energy and force RMSE on the train, validation and test sets, and the mean energy error of each
   composition (the per-element energies are fitted by least squares: no constant error per composition).
3. Run a short NVE molecular dynamics with the trained model (``GauntCalculator``) and print the drift.

Every output goes to ``--work_dir`` (default ``runs/quickstart``); a rerun replaces the previous quickstart there
(its data files are regenerated too, so its run is not one a user would want to keep apart).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ase.io


def add_quickstart_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work_dir", default="runs/quickstart")
    parser.add_argument("--num_configs", type=int, default=160, help="EMT configurations (train + valid + test)")
    parser.add_argument("--max_time", type=float, default=3.0, help="training budget in minutes")
    parser.add_argument("--product", default="grid", choices=["cg", "gaunt", "grid", "auto"])
    parser.add_argument("--md_steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)


def _write(path: Path, structures: list) -> None:
    """Extended XYZ with the labels under the keys ``energy`` / ``forces`` (as ``gaunt train`` reads them)."""
    from .data import ENERGY_LABEL, FORCES_LABEL

    out = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.info["energy"] = atoms.info.pop(ENERGY_LABEL)
        atoms.arrays["forces"] = atoms.arrays.pop(FORCES_LABEL)
        out.append(atoms)
    ase.io.write(path, out, format="extxyz")


def quickstart_main(args: argparse.Namespace) -> int:
    """``gaunt quickstart`` with parsed flags."""
    run_quickstart(
        args.work_dir,
        num_configs=args.num_configs,
        max_time=args.max_time,
        product=args.product,
        md_steps=args.md_steps,
        seed=args.seed,
    )
    return 0


def run_quickstart(
    work_dir: str | Path,
    num_configs: int = 160,
    max_time: float = 3.0,
    product: str = "grid",
    md_steps: int = 200,
    seed: int = 0,
    num_channels: int = 16,
    max_ell: int = 2,
    equilibration_steps: int = 40,
    sample_interval: int = 5,
) -> dict:
    """The main job (module docstring); the keyword arguments after ``seed`` shrink it for tests. Returns
    ``train``'s results with ``"composition_bias"``: per composition of the test set, the mean energy error
    (meV/atom)."""
    import numpy as np

    from .calculator import GauntCalculator
    from .data import emt_dataset
    from .md import run_md
    from .train import TrainConfig, train

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"[1/3] EMT dataset: {num_configs} configurations of a 38-atom Cu/Au cluster (300 K and 1000 K MD)")
    structures = emt_dataset(
        num_configs,
        seed=seed,
        temperatures=(300.0, 1000.0),
        include_isolated=True,
        equilibration_steps=equilibration_steps,
        sample_interval=sample_interval,
    )
    isolated = [a for a in structures if a.info.get("config_type") == "IsolatedAtom"]
    configs = [a for a in structures if a.info.get("config_type") != "IsolatedAtom"]
    order = np.random.default_rng(seed).permutation(len(configs))
    n_test = max(1, len(configs) // 5)
    test = [configs[k] for k in order[:n_test]]
    train_set = [configs[k] for k in order[n_test:]]
    _write(work / "emt_train.xyz", train_set + isolated)
    _write(work / "emt_test.xyz", test)
    print(
        f"      {len(train_set)} train (+ {len(isolated)} isolated atoms), {len(test)} test "
        f"-> {work}/emt_*.xyz ({time.perf_counter() - start:.0f} s)"
    )

    print(f"[2/3] training a {product!r} model for {max_time} min on CPU")
    # a few hundred steps only: EMA decay 0.9 (not 0.99), or the evaluated weights lag far behind the trained ones
    config = TrainConfig(
        train_file=str(work / "emt_train.xyz"),
        test_files=[str(work / "emt_test.xyz")],
        name="emt",
        work_dir=str(work),
        E0s="isolated",
        valid_fraction=0.1,
        r_max=5.0,
        num_channels=num_channels,
        max_L=1,
        max_ell=max_ell,
        correlation=3,
        num_interactions=2,
        product=product,
        batch_size=5,
        max_num_epochs=1000,
        max_time=max_time,
        lr=0.01,
        forces_weight=100.0,
        ema_decay=0.9,
        seed=seed,
        default_dtype="float64",
        progress=False,
        overwrite=True,
    )
    results = train(config)
    model_path = Path(results["model_path"])
    calc = GauntCalculator(model_path)
    results["composition_bias"] = composition_bias(calc, test)
    print("      mean energy error per composition of the test set (per-element energies fitted by least squares):")
    for formula, (count, bias, spread) in results["composition_bias"].items():
        print(f"      {formula:>10}  {count:4d} configs  {bias:+8.2f} meV/atom  (std {spread:.2f})")

    print(f"[3/3] NVE molecular dynamics with the trained model: {md_steps} steps of 1 fs at 300 K")
    atoms = test[0].copy()
    atoms.calc = calc
    record = run_md(atoms, md_steps, timestep_fs=1.0, temperature_K=300.0, log_every=max(1, md_steps // 10))
    for t, epot, etot, temp in zip(record.time_fs, record.potential, record.total, record.temperature):
        print(f"      t = {t:6.1f} fs   E_pot/N = {epot:9.5f} eV   E_tot/N = {etot:9.5f} eV   T = {temp:6.1f} K")
    print(f"      energy drift: {record.max_drift:.2e} eV/atom over {record.time_fs[-1]:.0f} fs")
    print(f"done in {time.perf_counter() - start:.0f} s; model: {model_path}")
    return results


def composition_bias(calc, structures: list) -> dict[str, tuple[int, float, float]]:
    """Per chemical formula: (configurations, mean and std of the energy error in meV/atom) of ``calc`` on
    ``structures`` (labels as ``emt_dataset`` attaches them)."""
    import numpy as np

    from .data import ENERGY_LABEL

    errors: dict[str, list[float]] = {}
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calc
        error = (atoms.get_potential_energy() - atoms.info[ENERGY_LABEL]) / len(atoms)
        errors.setdefault(atoms.get_chemical_formula(), []).append(1000.0 * error)
    return {k: (len(v), float(np.mean(v)), float(np.std(v))) for k, v in sorted(errors.items())}


__all__ = ["add_quickstart_arguments", "quickstart_main", "run_quickstart", "composition_bias"]
