"""gaunt.data.synthetic: EMT labels are consistent (energy recomputed, forces = -dE/dx and stress =
(1/V) dE/d(strain) by finite differences, with test-the-tester cases), determinism, compositions,
isolated atoms, and errors. Short trajectories keep this fast."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.calculators.emt import EMT

from gaunt.data import (
    AtomicDataset,
    atomic_energies_from_isolated,
    atomic_energies_least_squares,
    emt_dataset,
)

FAST = dict(equilibration_steps=5, sample_interval=2)


@pytest.fixture(scope="module")
def clusters():
    return emt_dataset(4, seed=0, include_isolated=True, **FAST)


def _emt_energy(atoms, positions=None, cell=None) -> float:
    probe = atoms.copy()
    if cell is not None:
        probe.set_cell(cell, scale_atoms=False)
    if positions is not None:
        probe.positions = positions
    probe.calc = EMT()
    return float(probe.get_potential_energy())


def _force_mismatch(atoms, forces, components, h=1e-4) -> float:
    """max |F + dE/dx| over ``components`` (atom, axis) with a central difference of the EMT energy."""
    worst = 0.0
    for atom, axis in components:
        plus, minus = atoms.positions.copy(), atoms.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        derivative = (_emt_energy(atoms, plus) - _emt_energy(atoms, minus)) / (2 * h)
        worst = max(worst, abs(forces[atom, axis] + derivative))
    return worst


def test_structure_of_the_dataset(clusters):
    md, isolated = clusters[:4], clusters[4:]
    assert [a.info["config_type"] for a in md] == ["emt_300K", "emt_300K", "emt_1000K", "emt_1000K"]
    assert [a.get_chemical_formula() for a in md] == ["Au9Cu29", "Au29Cu9", "Au9Cu29", "Au29Cu9"]
    assert all(len(a) == 38 and not a.pbc.any() and a.calc is None for a in md)
    assert [(a.get_chemical_formula(), a.info["config_type"]) for a in isolated] == [
        ("Cu", "IsolatedAtom"),
        ("Au", "IsolatedAtom"),
    ]
    dataset = AtomicDataset(clusters, r_max=4.0, atomic_numbers=[29, 79])
    assert dataset[0].energy is not None and dataset[0].forces.shape == (38, 3)
    assert dataset[4].num_edges == 0


def test_energy_and_forces_are_emt_and_forces_are_minus_gradient(clusters):
    atoms = clusters[2]  # a 1000 K configuration
    assert atoms.info["gaunt_energy"] == pytest.approx(_emt_energy(atoms), abs=1e-10)
    forces = atoms.arrays["gaunt_forces"]
    assert np.abs(forces).max() > 0.1  # test the tester: forces are not trivially zero
    rng = np.random.default_rng(0)
    components = list(zip(rng.choice(38, size=8, replace=False).tolist(), rng.integers(3, size=8).tolist()))
    assert _force_mismatch(atoms, forces, components) < 1e-5
    # test the tester: a perturbation of 1e-3 eV/A in one checked component is detected
    perturbed = forces.copy()
    perturbed[components[3]] += 1e-3
    assert _force_mismatch(atoms, perturbed, components) > 5e-4


def test_periodic_stress_is_strain_derivative():
    (atoms,) = emt_dataset(1, seed=1, elements=("Cu",), temperatures=(500.0,), periodic=True, **FAST)
    assert len(atoms) == 32 and atoms.pbc.all()
    stress = atoms.info["gaunt_stress"]
    assert stress.shape == (3, 3) and np.allclose(stress, stress.T)
    volume, h = atoms.get_volume(), 1e-5

    def strained_energy(a: int, b: int, eps: float) -> float:
        strain = np.eye(3)
        strain[a, b] += eps / 2
        strain[b, a] += eps / 2
        return _emt_energy(atoms, atoms.positions @ strain, atoms.cell[:] @ strain)

    for a, b in [(0, 0), (1, 2)]:
        derivative = (strained_energy(a, b, h) - strained_energy(a, b, -h)) / (2 * h * volume)
        assert stress[a, b] == pytest.approx(derivative, abs=1e-6)
        if (a, b) == (0, 0):
            # test the tester: the component is large enough that a sign error would fail
            assert abs(-stress[a, b] - derivative) > 1e-3


def test_deterministic_in_seed():
    a = emt_dataset(2, seed=5, temperatures=(300.0,), **FAST)
    b = emt_dataset(2, seed=5, temperatures=(300.0,), **FAST)
    c = emt_dataset(2, seed=6, temperatures=(300.0,), **FAST)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
        assert x.info["gaunt_energy"] == y.info["gaunt_energy"]
    assert not np.allclose(a[0].positions, c[0].positions)


def test_reference_energies_from_emt_data(clusters):
    assert atomic_energies_from_isolated(clusters) == {29: pytest.approx(3.51), 79: pytest.approx(3.8)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # distinct compositions: full rank, no warning
        fitted = atomic_energies_least_squares(clusters[:4], atomic_numbers=[29, 79])
    assert set(fitted) == {29, 79}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(n_configs=0), "n_configs"),
        (dict(n_configs=2, elements=("Fe",)), "elements must be among"),
        (dict(n_configs=2, temperatures=()), "positive temperatures"),
        (dict(n_configs=2, temperatures=(-5.0,)), "positive temperatures"),
        (dict(n_configs=2, sample_interval=0), "sample_interval"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        emt_dataset(**kwargs)
