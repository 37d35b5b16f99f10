"""A small labelled dataset generated on the fly (no download): metal structures from Langevin MD with
ASE's effective-medium theory (EMT) potential, labelled with EMT energies, forces (and stress)."""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.cluster import Octahedron
from ase.data import atomic_numbers as symbol_to_z
from ase.data import reference_states
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

from .io import attach_labels

EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
"""Elements ASE's EMT calculator parametrises."""


def _template(elements: Sequence[str], enriched: int, periodic: bool, rng: np.random.Generator) -> ase.Atoms:
    """A 38-atom truncated-octahedron fcc cluster, or a periodic 2x2x2 cubic fcc cell (32 atoms), whose
    sites hold ``elements`` in the ratio 3:1:1:... with ``elements[enriched]`` the majority, placed at
    random; lattice constant = mean of the elements' fcc lattice constants."""
    a = float(np.mean([reference_states[symbol_to_z[s]]["a"] for s in elements]))
    if periodic:
        atoms = bulk(elements[0], "fcc", a=a, cubic=True).repeat((2, 2, 2))
    else:
        atoms = Octahedron(elements[0], length=4, cutoff=1, latticeconstant=a)
        atoms.cell[:] = 0.0
        atoms.pbc = False
    if len(elements) > 1:
        # fixed, distinct compositions per trajectory keep the least-squares E0 problem full rank
        weights = np.ones(len(elements))
        weights[enriched] = 3.0
        counts = np.floor(weights / weights.sum() * len(atoms)).astype(int)
        counts[enriched] += len(atoms) - counts.sum()
        symbols = np.repeat(np.asarray(elements), counts)
        atoms.symbols = rng.permutation(symbols).tolist()
    return atoms


def _labelled_copy(atoms: ase.Atoms, periodic: bool) -> ase.Atoms:
    copy = atoms.copy()  # a plain structure: no calculator ...
    copy.arrays.pop("momenta", None)  # ... and no MD velocities
    stress = atoms.get_stress(voigt=True) if periodic else None
    return attach_labels(copy, atoms.get_potential_energy(), atoms.get_forces(), stress)


def emt_dataset(
    n_configs: int,
    seed: int = 0,
    temperatures: Sequence[float] = (300.0, 1000.0),
    elements: Sequence[str] = ("Cu", "Au"),
    periodic: bool = False,
    sample_interval: int = 5,
    equilibration_steps: int = 40,
    timestep_fs: float = 2.0,
    friction_per_fs: float = 0.02,
    include_isolated: bool = False,
) -> list[ase.Atoms]:
    """``n_configs`` labelled structures from Langevin MD with EMT, split evenly over trajectories.

    There is one trajectory per (temperature, element) pair, each from a fresh template (38-atom
    cluster, or a periodic 32-atom cell when ``periodic``) enriched 3:1 in that element, so the
    compositions differ (per-element reference energies are identifiable by least squares) and do not
    correlate with temperature. Configurations come trajectory by trajectory, temperatures outermost.
    Each trajectory runs ``equilibration_steps`` before its first sample and ``sample_interval`` steps
    between samples (EMT costs ~20 ms per step for 38 atoms: ~0.1 s per configuration). Labels are attached as by
    ``read_structures`` (``gaunt_energy`` eV, ``gaunt_forces`` eV/A, ``gaunt_stress`` eV/A^3 when
    periodic); ``info["config_type"] = "emt_<T>K"`` and ``info["temperature_K"]``. Deterministic in
    ``seed``.

    Args:
        include_isolated: also append one single-atom structure per element (``config_type =
            "IsolatedAtom"``, EMT energy of the free atom) for ``atomic_energies_from_isolated``.

    Raises:
        ValueError: ``n_configs < 1``, no temperatures, a non-positive temperature/step count, or an
            element EMT does not know.
    """
    if int(n_configs) < 1:
        raise ValueError(f"emt_dataset: n_configs must be >= 1, got {n_configs}")
    if len(temperatures) == 0 or any(float(t) <= 0 for t in temperatures):
        raise ValueError(f"emt_dataset: need positive temperatures in K, got {list(temperatures)}")
    if int(sample_interval) < 1 or int(equilibration_steps) < 0:
        raise ValueError("emt_dataset: sample_interval must be >= 1 and equilibration_steps >= 0")
    unknown = [s for s in elements if s not in EMT_ELEMENTS]
    if not elements or unknown:
        raise ValueError(f"emt_dataset: elements must be among {EMT_ELEMENTS}, got {list(elements)}")

    rng = np.random.default_rng(int(seed))
    trajectories = [(float(t), e) for t in temperatures for e in range(len(elements))]
    counts = [len(range(k, int(n_configs), len(trajectories))) for k in range(len(trajectories))]
    structures: list[ase.Atoms] = []
    for (temperature, enriched), count in zip(trajectories, counts):
        if count == 0:
            continue
        atoms = _template(elements, enriched, periodic, rng)
        atoms.calc = EMT()
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
        if not periodic:
            ZeroRotation(atoms)
        # fixcm=False: the centre of mass may diffuse, which is harmless (ASE deprecates fixcm=True)
        dynamics = Langevin(
            atoms,
            timestep=timestep_fs * units.fs,
            temperature_K=temperature,
            friction=friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
        dynamics.run(int(equilibration_steps))
        for _ in range(count):
            dynamics.run(int(sample_interval))
            sample = _labelled_copy(atoms, periodic)
            sample.info.update(config_type=f"emt_{temperature:g}K", temperature_K=temperature)
            structures.append(sample)
    if include_isolated:
        for symbol in dict.fromkeys(elements):
            free = ase.Atoms(symbol, positions=[[0.0, 0.0, 0.0]])
            free.calc = EMT()
            sample = _labelled_copy(free, periodic=False)
            sample.info["config_type"] = "IsolatedAtom"
            structures.append(sample)
    return structures
