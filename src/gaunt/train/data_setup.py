"""Everything a run needs from its files, checked before training starts: the training / validation /
test sets as ``AtomicDataset`` s, the elements, the isolated-atom energies E0 and the model config
(``avg_num_neighbors``, ``scale`` = RMS force, ``shift`` = per-element mean interaction energy fitted by
least squares over the compositions, from the training set as in mace-torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ase
import ase.data

from ..data import (
    AtomicDataset,
    atomic_energies_from_isolated,
    atomic_energies_least_squares,
    element_shifts,
    random_split,
    read_structures,
    shortest_distances,
    statistics,
)
from ..data.io import FORCES_LABEL
from ..models import PotentialConfig
from .config import TrainConfig

ISOLATED_ATOM = "IsolatedAtom"


@dataclass
class PreparedData:
    """Datasets of a run. ``tests`` maps a display name (the file's stem) to its dataset."""

    train: AtomicDataset
    valid: AtomicDataset
    tests: dict[str, AtomicDataset]
    atomic_numbers: list[int]
    atomic_energies: dict[int, float]


def _is_isolated(atoms: ase.Atoms) -> bool:
    return atoms.info.get("config_type") == ISOLATED_ATOM


def _read(path: str, config: TrainConfig, need_forces: bool, what: str) -> list[ase.Atoms]:
    """Read a file; with ``need_forces`` every configuration except isolated atoms must have forces."""
    structures = read_structures(
        path,
        energy_key=config.energy_key,
        forces_key=config.forces_key,
        stress_key=config.stress_key,
        require_forces=False,
    )
    if need_forces:
        for k, atoms in enumerate(structures):
            if FORCES_LABEL not in atoms.arrays and not _is_isolated(atoms):
                raise ValueError(
                    f"{what} file {path} config {k}: no forces under key {config.forces_key!r}, but "
                    f"forces_weight = {config.forces_weight} > 0 (fix forces_key, or set forces_weight 0 to fit "
                    "energies only)"
                )
    return structures


def _where(structures: list[ase.Atoms], place: str, found: dict[int, str] | None = None) -> dict[int, str]:
    """``{Z: "<place> configuration k"}`` for the first configuration holding each element (kept if known)."""
    found = {} if found is None else found
    for k, atoms in enumerate(structures):
        for z in sorted({int(z) for z in atoms.numbers} - set(found)):
            found[z] = f"{place} configuration {k}"
    return found


def _element(z: int) -> str:
    return f"{ase.data.chemical_symbols[z]} (Z={z})"


def _resolve_e0s(
    config: TrainConfig, train: list[ase.Atoms], isolated: list[ase.Atoms], where: dict[int, str]
) -> dict[int, float]:
    """E0 per element from the ``E0s`` setting; every element of ``where`` (element -> the file and
    configuration it first appears in) must get one, or the error names the element and that file."""
    e0s, atomic_numbers = config.E0s, sorted(where)
    if isinstance(e0s, dict):
        energies, source = dict(e0s), "the E0s dict"
    elif e0s == "isolated":
        if not isolated:
            raise ValueError(
                f"E0s='isolated' but the training file {config.train_file} has no configurations "
                f"with config_type={ISOLATED_ATOM!r}; give a file of isolated atoms or use "
                "'average'"
            )
        energies, source = atomic_energies_from_isolated(isolated), f"isolated atoms in {config.train_file}"
    elif e0s == "average":
        fitted = sorted({int(z) for atoms in train for z in atoms.numbers})
        unfit = [z for z in atomic_numbers if z not in fitted]
        if unfit:  # least squares would give them E0 = 0 (a column of zeros)
            raise ValueError(
                f"E0s='average' fits E0 on the training set, which has no {_element(unfit[0])}; it "
                f"appears in {where[unfit[0]]}: give its E0 (isolated atoms or a dict)"
            )
        energies, source = atomic_energies_least_squares(train, fitted), "a least-squares fit"
    else:
        atoms = read_structures(e0s, energy_key=config.energy_key, forces_key=config.forces_key, require_forces=False)
        energies, source = atomic_energies_from_isolated(atoms), f"isolated atoms in {e0s}"
    energies = {int(z): float(e) for z, e in energies.items()}
    missing = [z for z in atomic_numbers if z not in energies]
    if missing:
        raise ValueError(
            f"E0s: {source} gives no energy for elements Z={missing} present in the data: "
            f"{_element(missing[0])} appears in {where[missing[0]]}"
        )
    return {z: energies[z] for z in atomic_numbers}


def prepare_data(config: TrainConfig) -> PreparedData:
    """Read, split and convert the data of ``config`` (raises ``ValueError`` / ``FileNotFoundError`` naming
    the file and configuration on bad input)."""
    need_forces = config.forces_weight > 0
    structures = _read(config.train_file, config, need_forces, "training")
    isolated = [a for a in structures if _is_isolated(a)]
    train = [a for a in structures if not _is_isolated(a)]
    if not train:
        raise ValueError(f"training file {config.train_file} has no configurations besides isolated atoms")
    if config.valid_file:
        valid = [a for a in _read(config.valid_file, config, need_forces, "validation") if not _is_isolated(a)]
        if not valid:
            raise ValueError(f"validation file {config.valid_file} has no configurations besides isolated atoms")
    else:
        if len(train) < 2:
            raise ValueError(
                f"training file {config.train_file} has {len(train)} configuration: too few to split "
                "off a validation set (give valid_file)"
            )
        train_idx, valid_idx = random_split(
            len(train),
            valid_count=config.valid_count,
            valid_fraction=None if config.valid_count else config.valid_fraction,
            seed=config.seed,
        )
        train, valid = [train[i] for i in train_idx], [train[i] for i in valid_idx]
    where = _where(train, f"training file {config.train_file}")
    where = _where(
        valid,
        f"validation file {config.valid_file}"
        if config.valid_file
        else f"training file {config.train_file} (validation split)",
        where,
    )
    atomic_numbers = sorted(where)
    atomic_energies = _resolve_e0s(config, train, isolated, where)
    r_max = float(config.r_max)
    datasets = {}
    for what, items in (("training", train), ("validation", valid)):
        try:
            datasets[what] = AtomicDataset(items, r_max, atomic_numbers)
        except ValueError as err:
            raise ValueError(f"{what} set: {err}") from None
    tests = {}
    for path in config.test_files:
        name = Path(path).stem
        if name in tests or name in ("train", "valid"):
            name = f"{name}_{len(tests)}"
        atoms = [a for a in _read(path, config, False, "test") if not _is_isolated(a)]
        try:
            tests[name] = AtomicDataset(atoms, r_max, atomic_numbers)
        except ValueError as err:
            raise ValueError(f"test file {path}: {err}") from None
    return PreparedData(datasets["training"], datasets["validation"], tests, atomic_numbers, atomic_energies)


def build_model_config(config: TrainConfig, data: PreparedData) -> PotentialConfig:
    """The ``PotentialConfig`` of a fresh run: architecture from ``config``, normalisation from the training set."""
    stats = statistics(data.train, data.atomic_energies)
    rms_forces = stats.get("rms_forces")
    # no forces in the data (energy-only fit), or all zero: keep the network's output scale at 1
    scale = float(rms_forces) if rms_forces is not None and rms_forces > 1e-8 else 1.0
    return PotentialConfig(
        atomic_numbers=list(data.atomic_numbers),
        r_max=float(config.r_max),
        num_radial_basis=int(config.num_radial_basis),
        num_channels=int(config.num_channels),
        max_ell=int(config.max_ell),
        max_L=int(config.max_L),
        correlation=int(config.correlation),
        num_interactions=int(config.num_interactions),
        product=config.product,
        avg_num_neighbors=max(float(stats["avg_num_neighbors"]), 1e-3),
        atomic_energies=dict(data.atomic_energies),
        scale=scale,
        shift=element_shifts(data.train, data.atomic_energies),
        pair_repulsion=bool(config.pair_repulsion),
        pair_repulsion_distances=shortest_distances(data.train) if config.pair_repulsion else {},
    )


__all__ = ["PreparedData", "prepare_data", "build_model_config", "ISOLATED_ATOM"]
