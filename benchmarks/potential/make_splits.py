"""Write the train / validation / test files for the potential comparison of issue 7 (3BPA and acac).

Both codes (gaunt and mace-torch) train on exactly the files written here, so the splits are
identical by construction. Depends on ase (and numpy, which ase needs) only, so it runs in any of the
project's virtual environments.

Splits:
  3bpa  train = 450 of ``train_300K.xyz``, valid = the other 50 (seeded random split, seed 1);
        test  = the configurations of ``train_mixedT.xyz`` that are not in ``train_300K.xyz``
                (same atomic numbers and every coordinate within ``--tol`` Angstrom);
        E0s from ``iso_atoms.xyz`` (single-atom configurations, no config_type in that file).
  acac  train = ``train_300K.xyz`` less 50 validation configurations (seed 1);
        test  = ``test_MD_300K.xyz`` and ``test_MD_600K.xyz``;
        E0s from ``isolated_atoms.xyz``.

Labels are written as ``REF_energy`` (info, eV) and ``REF_forces`` (arrays, eV/A), with no ASE
calculator attached: mace-torch >= 0.3.10 treats the keys ``energy``/``forces`` as unsafe (it
rewrites them, and ``mace_eval_configs`` detaches the calculator that holds them, dropping the
reference from its output). Train with ``--energy_key REF_energy --forces_key REF_forces`` in both codes.

The validation split uses the same rule as ``gaunt.data.random_split(n, valid_count, seed)``:
``numpy.random.default_rng(seed).permutation(n)``, the first ``valid_count`` entries are validation.

Usage:
  python benchmarks/potential/make_splits.py [--data-dir ../shared/data] [--out runs/potential/splits]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import ase
import ase.io
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = Path("runs") / "potential" / "splits"
ENERGY_KEY = "REF_energy"
FORCES_KEY = "REF_forces"
VALID_COUNT = 50
SEED = 1


def read_labelled(path: Path) -> list[ase.Atoms]:
    """Read every configuration of an extended-XYZ file and move its labels to the REF_ keys.

    Returns atoms with ``info["REF_energy"]`` (float, eV) and ``arrays["REF_forces"]`` ([N, 3], eV/A)
    and no calculator. Raises ``ValueError`` naming the file and index if a label is missing or not finite.
    """
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    frames = ase.io.read(path, index=":")
    if not frames:
        raise ValueError(f"{path}: no configurations")
    out = []
    for i, atoms in enumerate(frames):
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        energy = atoms.info.pop("energy", results.get("energy"))
        forces = atoms.arrays.pop("forces", results.get("forces"))
        if energy is None or forces is None:
            raise ValueError(f"{path} config {i}: missing energy or forces")
        forces = np.asarray(forces, dtype=np.float64)
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            raise ValueError(f"{path} config {i}: energy or forces not finite")
        atoms.calc = None
        atoms.info[ENERGY_KEY] = float(energy)
        atoms.arrays[FORCES_KEY] = forces
        out.append(atoms)
    return out


def isolated_energies(path: Path) -> dict[int, float]:
    """Isolated-atom energies (eV) keyed by atomic number from every one-atom configuration in ``path``.

    Raises ``ValueError`` if the file has no one-atom configuration or lists an element twice with
    different energies.
    """
    energies: dict[int, float] = {}
    for i, atoms in enumerate(ase.io.read(path, index=":")):
        if len(atoms) != 1:
            continue
        z = int(atoms.numbers[0])
        e = atoms.info.get("energy", atoms.calc.results.get("energy") if atoms.calc is not None else None)
        if e is None:
            raise ValueError(f"{path} config {i}: isolated atom Z={z} has no energy")
        if z in energies and abs(energies[z] - float(e)) > 1e-9:
            raise ValueError(f"{path}: element Z={z} listed twice with different energies")
        energies[z] = float(e)
    if not energies:
        raise ValueError(f"{path}: no single-atom configurations")
    return energies


def random_split(n: int, valid_count: int, seed: int) -> tuple[list[int], list[int]]:
    """(train, valid) sorted index lists; same rule as ``gaunt.data.random_split``."""
    if not 1 <= valid_count <= n - 1:
        raise ValueError(f"valid_count must lie in [1, {n - 1}], got {valid_count}")
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[valid_count:].tolist()), sorted(perm[:valid_count].tolist())


def nearest_match(candidate: ase.Atoms, pool: list[ase.Atoms]) -> float:
    """Smallest max-abs coordinate difference (Angstrom) between ``candidate`` and any ``pool`` member
    with the same atomic numbers in the same order; ``inf`` when none has them."""
    best = np.inf
    for other in pool:
        if len(other) == len(candidate) and np.array_equal(other.numbers, candidate.numbers):
            best = min(best, float(np.max(np.abs(other.positions - candidate.positions))))
    return best


def check_elements(name: str, frames: list[ase.Atoms], e0s: dict[int, float]) -> list[int]:
    """Atomic numbers present in ``frames`` but missing from ``e0s`` (empty when complete)."""
    present = sorted({int(z) for atoms in frames for z in atoms.numbers})
    missing = [z for z in present if z not in e0s]
    print(f"  {name}: elements {present}; E0s for {sorted(e0s)}; missing {missing or 'none'}")
    return missing


def write(path: Path, frames: list[ase.Atoms]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, frames, format="extxyz")
    print(f"  wrote {path} ({len(frames)} configs, {sum(len(a) for a in frames)} atoms)")


def write_e0s(out: Path, e0s: dict[int, float]) -> None:
    """``e0s.json`` ({"Z": eV}, the format ``mace_run_train --E0s file.json`` reads) and
    ``isolated_atoms.xyz`` (config_type=IsolatedAtom, REF_energy) for codes that read structures."""
    (out / "e0s.json").write_text(json.dumps({str(z): e for z, e in sorted(e0s.items())}, indent=1) + "\n")
    atoms = []
    for z, e in sorted(e0s.items()):
        a = ase.Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]], pbc=False)
        a.info["config_type"] = "IsolatedAtom"
        a.info[ENERGY_KEY] = e
        a.arrays[FORCES_KEY] = np.zeros((1, 3))
        atoms.append(a)
    write(out / "isolated_atoms.xyz", atoms)


def make_3bpa(data: Path, out: Path, tol: float) -> dict:
    print("3bpa:")
    full = read_labelled(data / "3bpa" / "train_300K.xyz")
    mixed = read_labelled(data / "3bpa" / "train_mixedT.xyz")
    e0s = isolated_energies(data / "3bpa" / "iso_atoms.xyz")
    tr, va = random_split(len(full), VALID_COUNT, SEED)
    distances = np.array([nearest_match(a, full) for a in mixed])
    duplicate = distances <= tol
    test = [a for a, dup in zip(mixed, duplicate) if not dup]
    # Duplicates should also agree in their labels; a mismatch means the tolerance matched wrongly.
    for a, d in zip(mixed, duplicate):
        if d:
            j = int(
                np.argmin([np.max(np.abs(b.positions - a.positions)) if len(b) == len(a) else np.inf for b in full])
            )
            if abs(full[j].info[ENERGY_KEY] - a.info[ENERGY_KEY]) > 1e-6:
                raise ValueError("3bpa: a positional duplicate has a different energy; tolerance too loose?")
    non_dup = distances[~duplicate]
    print(
        f"  train_mixedT: {len(mixed)} configs, {int(duplicate.sum())} also in train_300K (tol {tol} A), "
        f"{len(test)} remain; nearest distance among the remaining: {non_dup.min():.3f} A"
    )
    missing = check_elements("3bpa", full + test, e0s)
    d = out / "3bpa"
    write(d / "train.xyz", [full[i] for i in tr])
    write(d / "valid.xyz", [full[i] for i in va])
    write(d / "test_mixedT_not300K.xyz", test)
    write_e0s(d, e0s)
    return {
        "train": len(tr),
        "valid": len(va),
        "test_mixedT_not300K": len(test),
        "mixedT_total": len(mixed),
        "mixedT_duplicates_of_300K": int(duplicate.sum()),
        "min_distance_remaining_A": float(non_dup.min()),
        "valid_indices": va,
        "e0s": {str(z): e for z, e in sorted(e0s.items())},
        "elements_without_e0": missing,
    }


def make_acac(data: Path, out: Path) -> dict:
    print("acac:")
    full = read_labelled(data / "acac" / "train_300K.xyz")
    tests = {name: read_labelled(data / "acac" / f"{name}.xyz") for name in ("test_MD_300K", "test_MD_600K")}
    e0s = isolated_energies(data / "acac" / "isolated_atoms.xyz")
    tr, va = random_split(len(full), VALID_COUNT, SEED)
    missing = check_elements("acac", full + [a for t in tests.values() for a in t], e0s)
    d = out / "acac"
    write(d / "train.xyz", [full[i] for i in tr])
    write(d / "valid.xyz", [full[i] for i in va])
    for name, frames in tests.items():
        write(d / f"{name}.xyz", frames)
    write_e0s(d, e0s)
    return {
        "train": len(tr),
        "valid": len(va),
        **{n: len(f) for n, f in tests.items()},
        "valid_indices": va,
        "e0s": {str(z): e for z, e in sorted(e0s.items())},
        "elements_without_e0": missing,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder holding 3bpa/ and acac/")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (outside the tracked repo)")
    p.add_argument("--tol", type=float, default=1e-5, help="max coordinate difference (A) for 'same config'")
    args = p.parse_args(argv)
    out = args.out.resolve()
    # The data are not ours to redistribute: refuse to write anywhere in the repo except the ignored runs/.
    if out.is_relative_to(REPO) and not out.is_relative_to(REPO / "runs"):
        p.error(f"--out {out} is inside the repository; use a folder under runs/ (gitignored) or outside")
    summary = {
        "seed": SEED,
        "valid_count": VALID_COUNT,
        "energy_key": ENERGY_KEY,
        "forces_key": FORCES_KEY,
        "tol_A": args.tol,
        "data_dir": str(args.data_dir.resolve()),
        "3bpa": make_3bpa(args.data_dir, out, args.tol),
        "acac": make_acac(args.data_dir, out),
    }
    (out / "splits.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"summary: {out / 'splits.json'}")
    return 1 if summary["3bpa"]["elements_without_e0"] or summary["acac"]["elements_without_e0"] else 0


if __name__ == "__main__":
    sys.exit(main())
