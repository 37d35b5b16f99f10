"""Shared by ``step_gaunt.py`` and ``step_mace.py`` (each runs in its own virtual environment, so this file
uses only the standard library, numpy and ase): command line, the 3BPA batch, its statistics, the timing
loops and the JSON line both scripts print.

The configuration is RESULTS.md's: r_max 5 A, 8 Bessel functions, 32 channels, max_L 1, max_ell 3,
correlation 3, 2 interactions, a batch of the first 5 configurations of 3BPA's ``train_300K.xyz``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import ase.io
import numpy as np
from ase.neighborlist import neighbor_list

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "3bpa"
R_MAX = 5.0
ENERGY_WEIGHT, FORCES_WEIGHT = 1.0, 100.0  # run_mace.sh / run_gaunt.sh: --energy_weight 1 --forces_weight 100
SIZE = {"num_radial_basis": 8, "num_channels": 32, "max_L": 1, "max_ell": 3, "correlation": 3, "num_interactions": 2}


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("mode", choices=["step", "calc"], help="training step on the batch, or ASE calculator")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (or calculator calls)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (or calls) first")
    parser.add_argument("--batch", type=int, default=5, help="configurations in the batch (first N of the file)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train_300K.xyz and iso_atoms.xyz")
    parser.add_argument("--seed", type=int, default=1)
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def read_batch(data: Path, count: int) -> list[ase.Atoms]:
    """The first ``count`` configurations, labels copied to ``info["REF_energy"]`` / ``arrays["REF_forces"]``
    (ase reads ``energy=`` / ``forces`` of the file into a calculator) and the calculator dropped."""
    frames = ase.io.read(data / "train_300K.xyz", index=f":{count}")
    for atoms in frames:
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info["REF_energy"] = float(energy)
        atoms.arrays["REF_forces"] = np.asarray(forces, dtype=np.float64)
    return frames


def read_e0s(data: Path) -> dict[int, float]:
    """Isolated-atom energies ``{Z: eV}`` of ``iso_atoms.xyz``."""
    return {int(a.numbers[0]): float(a.get_potential_energy()) for a in ase.io.read(data / "iso_atoms.xyz", ":")}


def batch_statistics(frames: list[ase.Atoms], e0s: dict[int, float]) -> dict:
    """Normalisation from the batch itself, with the trainers' definitions: ``avg_num_neighbors`` = mean
    neighbour count within R_MAX, ``scale`` = RMS force component, ``shift`` = mean (E - sum E0) / N."""
    counts = np.concatenate([np.bincount(neighbor_list("i", a, R_MAX), minlength=len(a)) for a in frames])
    forces = np.concatenate([a.arrays["REF_forces"] for a in frames])
    per_atom = [(a.info["REF_energy"] - sum(e0s[int(z)] for z in a.numbers)) / len(a) for a in frames]
    return {
        "avg_num_neighbors": float(counts.mean()),
        "edges": int(counts.sum()),
        "scale": float(np.sqrt(np.mean(forces**2))),
        "shift": float(np.mean(per_atom)),
    }


def labels(frames: list[ase.Atoms]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference energies ``[B]``, atom counts ``[B]`` and forces ``[N, 3]`` of the batch, in its atom order."""
    energies = np.array([a.info["REF_energy"] for a in frames])
    sizes = np.array([len(a) for a in frames], dtype=np.float64)
    return energies, sizes, np.concatenate([a.arrays["REF_forces"] for a in frames])


def time_calls(call: Callable[[], None], warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def calculator_calls(atoms: ase.Atoms, warmup: int, steps: int) -> list[float]:
    """Energy + forces of ``atoms`` (calculator attached) with new positions at every call (no cached result)."""

    def call() -> None:
        atoms.positions[0, 0] += 1e-4
        atoms.get_forces()

    return time_calls(call, warmup, steps)


def emit(result: dict) -> None:
    """The result as the last line of stdout (``pair.py`` reads that line)."""
    result["median_s"] = statistics.median(result["times_s"])
    print(json.dumps(result))
