"""Tiny labelled data for the training tests: 6-atom Cu/Au octahedra, randomly distorted, labelled by
ASE's EMT (milliseconds to generate, fast to train on), written as extended XYZ with the labels under
non-default keys (REF_energy / REF_forces) so the key flags are exercised."""

from __future__ import annotations

from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT

from gaunt.train import TrainConfig

OCTAHEDRON = 1.8 * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)


def make_clusters(n: int, seed: int, isolated: bool = True, forces: bool = True) -> list[ase.Atoms]:
    """``n`` distorted Cu/Au octahedra (+ one IsolatedAtom per element) with EMT labels."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        symbols = ["Au" if rng.random() < 0.3 else "Cu" for _ in range(6)]
        atoms = ase.Atoms(symbols, positions=OCTAHEDRON + rng.normal(scale=0.12, size=(6, 3)))
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        if forces:
            atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        out.append(atoms)
    if isolated:
        for symbol in ("Cu", "Au"):
            atoms = ase.Atoms(symbol, positions=[[0.0, 0.0, 0.0]])
            atoms.calc = EMT()
            atoms.info["REF_energy"] = atoms.get_potential_energy()
            atoms.info["config_type"] = "IsolatedAtom"
            atoms.calc = None
            out.append(atoms)
    return out


def write_clusters(path: Path, n: int, seed: int, **kw) -> Path:
    ase.io.write(path, make_clusters(n, seed, **kw), format="extxyz")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train_data")
    write_clusters(d / "train.xyz", 16, seed=0)
    write_clusters(d / "test.xyz", 6, seed=1, isolated=False)
    write_clusters(d / "no_forces.xyz", 6, seed=2, forces=False)
    (d / "empty.xyz").write_text("")
    return d


def tiny_config(data_dir: Path, work_dir: Path, **overrides) -> TrainConfig:
    """A seconds-long run: 4 channels, L = 1, one interaction, 12 train / 4 valid configurations."""
    values = dict(
        train_file=str(data_dir / "train.xyz"),
        work_dir=str(work_dir),
        name="tiny",
        valid_count=4,
        E0s="isolated",
        energy_key="REF_energy",
        forces_key="REF_forces",
        r_max=4.0,
        num_radial_basis=4,
        num_channels=4,
        max_L=1,
        max_ell=1,
        correlation=2,
        num_interactions=1,
        batch_size=4,
        valid_batch_size=8,
        max_num_epochs=3,
        lr=0.02,
        ema_decay=0.5,
        forces_weight=10.0,
        seed=7,
        progress=False,
        plot=False,
        default_dtype="float64",
    )
    values.update(overrides)
    return TrainConfig(**values)


#: the model and data flags of ``tiny_config`` on the command line
TINY_FLAGS = (
    "name",
    "valid_count",
    "E0s",
    "energy_key",
    "forces_key",
    "r_max",
    "num_radial_basis",
    "num_channels",
    "max_L",
    "max_ell",
    "correlation",
    "num_interactions",
    "batch_size",
)


def tiny_cli_flags(config: TrainConfig, names=TINY_FLAGS) -> list[str]:
    """``["--name", "tiny", "--valid_count", "4", ...]``: fields ``names`` of ``config`` as ``gaunt train`` flags."""
    return [item for name in names for item in (f"--{name}", str(getattr(config, name)))]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every training test runs on one thread (tests/conftest.py)."""
