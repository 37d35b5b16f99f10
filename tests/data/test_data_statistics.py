"""gaunt.data.statistics: isolated-atom E0 (against the 3BPA/acac files' own numbers), least-squares
E0 recovery, per-element shifts, shortest pair distances, and the normalisation statistics by hand."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_numbers

from gaunt.data import (
    AtomicDataset,
    atomic_energies_from_isolated,
    atomic_energies_least_squares,
    attach_labels,
    collate,
    composition,
    element_shifts,
    fit_per_element,
    read_structures,
    shortest_distances,
    statistics,
)


def _energies_in_file(path) -> dict[int, float]:
    """E0 parsed from the raw text (independently of ASE): one-atom frames' energy= and element."""
    lines = path.read_text().splitlines()
    found = {}
    for k, line in enumerate(lines):
        if line.strip() == "1":
            energy = float(re.search(r"energy=(\S+)", lines[k + 1]).group(1))
            found[atomic_numbers[lines[k + 2].split()[0]]] = energy
    return found


def test_e0_from_3bpa_iso_atoms_equals_file(shared_data):
    path = shared_data / "3bpa" / "iso_atoms.xyz"
    e0 = atomic_energies_from_isolated(read_structures(path, require_forces=False))
    expected = _energies_in_file(path)
    assert sorted(expected) == [1, 6, 7, 8]  # test the tester: the parse found every element
    assert e0 == pytest.approx(expected, abs=1e-9)


def test_e0_from_acac_isolated_atom_tag(shared_data):
    path = shared_data / "acac" / "isolated_atoms.xyz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    structures = read_structures(path, require_forces=False)
    assert all(a.info.get("config_type") == "isolated_atom" for a in structures)
    assert atomic_energies_from_isolated(structures) == pytest.approx(_energies_in_file(path), abs=1e-9)


def test_isolated_uses_tag_and_ignores_other_structures():
    tagged = attach_labels(Atoms("Cu", positions=[[0, 0, 0]], cell=[9, 9, 9], pbc=True), energy=-1.0)
    tagged.info["config_type"] = "IsolatedAtom"
    free = attach_labels(Atoms("O"), energy=-5.0)
    mol = attach_labels(molecule("H2O"), energy=-20.0)
    assert atomic_energies_from_isolated([mol, tagged, free]) == {8: -5.0, 29: -1.0}


def test_isolated_errors():
    mol = attach_labels(molecule("H2O"), energy=-20.0)
    with pytest.raises(ValueError, match="no isolated-atom"):
        atomic_energies_from_isolated([mol])
    mol.info["config_type"] = "IsolatedAtom"
    with pytest.raises(ValueError, match="tagged 'IsolatedAtom' but has 3 atoms"):
        atomic_energies_from_isolated([mol])
    a, b = attach_labels(Atoms("H"), energy=-13.6), attach_labels(Atoms("H"), energy=-13.0)
    with pytest.raises(ValueError, match="Z=1 disagree"):
        atomic_energies_from_isolated([a, b])
    with pytest.raises(ValueError, match="structure 0 has no reference energy"):
        atomic_energies_from_isolated([Atoms("H")])


def _synthetic(e0: dict[int, float], n: int, noise: float, seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    structures = []
    for _ in range(n):
        numbers = rng.choice(sorted(e0), size=int(rng.integers(3, 12)))
        atoms = Atoms(numbers=numbers, positions=rng.normal(size=(len(numbers), 3)) * 3)
        energy = sum(e0[int(z)] for z in numbers) + noise * rng.normal() * len(numbers)
        structures.append(attach_labels(atoms, energy=energy))
    return structures


def test_least_squares_recovers_known_e0():
    e0 = {1: -13.6, 6: -1029.5, 8: -2042.0, 29: -3.7}
    fitted = atomic_energies_least_squares(_synthetic(e0, 40, noise=1e-3, seed=0), atomic_numbers=e0)
    assert fitted == pytest.approx(e0, abs=1e-2)
    exact = atomic_energies_least_squares(_synthetic(e0, 40, noise=0.0, seed=1), atomic_numbers=e0)
    assert exact == pytest.approx(e0, abs=1e-8)


def test_least_squares_warns_when_rank_deficient_and_checks_elements():
    same = [attach_labels(molecule("H2O"), energy=-100.0 + 0.01 * k) for k in range(5)]
    with pytest.warns(UserWarning, match="rank 1 < 2 elements"):
        fitted = atomic_energies_least_squares(same, atomic_numbers=[1, 8])
    assert 2 * fitted[1] + fitted[8] == pytest.approx(-99.98, abs=1e-9)  # still reproduces the mean energy
    with pytest.raises(ValueError, match="Z=8, not in atomic_numbers"):
        atomic_energies_least_squares(same, atomic_numbers=[1])
    with pytest.raises(ValueError, match="no structures"):
        atomic_energies_least_squares([], atomic_numbers=[1])


def _labelled_set(r_max: float) -> tuple[list[Atoms], dict[int, float]]:
    rng = np.random.default_rng(3)
    frames = [molecule("CH3CH2OH"), molecule("H2O"), bulk("Cu", "fcc", a=3.6) * (2, 1, 1), Atoms("O")]
    e0 = {1: -1.0, 6: -2.0, 8: -3.0, 29: -0.5}
    for atoms in frames:
        atoms.rattle(0.05, seed=4)
        attach_labels(atoms, energy=float(rng.normal() * 5), forces=rng.normal(size=(len(atoms), 3)))
    return frames, e0


def _neighbour_count(atoms: Atoms, r_max: float, brute_force_pairs) -> int:
    return len(brute_force_pairs(atoms.positions, atoms.cell[:], atoms.pbc, r_max))


def test_statistics_by_hand(brute_force_pairs):
    frames, e0 = _labelled_set(r_max=3.0)
    stats = statistics(AtomicDataset(frames, r_max=3.0), e0)
    per_atom = [(a.info["gaunt_energy"] - sum(e0[int(z)] for z in a.numbers)) / len(a) for a in frames]
    forces = np.concatenate([a.arrays["gaunt_forces"] for a in frames])
    edges = sum(_neighbour_count(a, 3.0, brute_force_pairs) for a in frames)
    atoms = sum(len(a) for a in frames)
    assert edges > atoms  # test the tester: a real graph, not an empty one
    assert stats["mean_interaction_energy_per_atom"] == pytest.approx(np.mean(per_atom), rel=1e-12)
    assert stats["rms_forces"] == pytest.approx(np.sqrt(np.mean(forces**2)), rel=1e-12)
    assert stats["avg_num_neighbors"] == pytest.approx(edges / atoms, rel=1e-12)


def test_statistics_of_batches_equal_statistics_of_single_graphs():
    frames, e0 = _labelled_set(r_max=3.0)
    dataset = AtomicDataset(frames, r_max=3.0)
    batched = statistics([collate([dataset[0], dataset[1]]), collate([dataset[2], dataset[3]])], e0)
    single = statistics(dataset, e0)
    assert batched == pytest.approx(single, rel=1e-12)


def test_statistics_errors():
    frames, e0 = _labelled_set(r_max=3.0)
    dataset = AtomicDataset(frames, r_max=3.0)
    with pytest.raises(ValueError, match=r"no entry for Z=\[29\]"):
        statistics(dataset, {z: e for z, e in e0.items() if z != 29})
    with pytest.raises(ValueError, match="empty dataset"):
        statistics([], e0)
    no_forces = [attach_labels(molecule("H2O"), energy=-1.0)]
    with pytest.raises(ValueError, match="no graph has force labels"):
        statistics(AtomicDataset(no_forces, r_max=3.0), e0)
    with pytest.raises(ValueError, match="graph 0 has no energy"):
        statistics(AtomicDataset([molecule("H2O")], r_max=3.0), e0)


def _two_compositions(shifts: dict[int, float], e0: dict[int, float], noise: float) -> list[Atoms]:
    """Cu-rich and Au-rich clusters with E = sum_i (E0 + shift)[Z_i] + noise."""
    rng, frames = np.random.default_rng(5), []
    for numbers in ([29] * 5 + [79] * 2, [29] * 2 + [79] * 5):
        for _ in range(4):
            atoms = Atoms(numbers=numbers, positions=rng.uniform(0, 6, (7, 3)))
            energy = sum(e0[z] + shifts[z] for z in numbers) + noise * rng.normal()
            frames.append(attach_labels(atoms, energy=float(energy)))
    return frames


def test_element_shifts_fit_each_element():
    """Two compositions of two elements: the per-element mean interaction energy is recovered (a single
    shift would leave a constant error per composition), and the mean per-composition residual is zero."""
    e0, shifts = {29: -3.0, 79: -1.0}, {29: -0.9, 79: -0.2}
    frames = _two_compositions(shifts, e0, noise=0.0)
    fitted = element_shifts(AtomicDataset(frames, r_max=3.0), e0)
    assert fitted == pytest.approx(shifts, abs=1e-10)
    noisy = _two_compositions(shifts, e0, noise=0.05)
    fitted = element_shifts(AtomicDataset(noisy, r_max=3.0), e0)
    residual = [a.info["gaunt_energy"] - sum(e0[z] + fitted[z] for z in a.numbers) for a in noisy]
    assert abs(np.mean(residual[:4])) < 1e-10 and abs(np.mean(residual[4:])) < 1e-10


def test_element_shifts_of_one_composition_are_the_mean():
    """Every structure the same molecule (3BPA): the elements cannot be told apart; each gets the mean
    interaction energy per atom, with no warning."""
    frames = [attach_labels(molecule("H2O"), energy=-10.0 + 0.03 * k) for k in range(5)]
    e0 = {1: -1.0, 8: -5.0}
    mean = np.mean([(a.info["gaunt_energy"] + 7.0) / 3 for a in frames])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = element_shifts(AtomicDataset(frames, r_max=3.0), e0)
    assert fitted == pytest.approx({1: mean, 8: mean}, abs=1e-12)


def test_fit_per_element_and_composition():
    counts = np.array([[5.0, 2.0, 0.0], [2.0, 5.0, 0.0]])
    s = fit_per_element(counts, counts @ np.array([0.3, -0.7, 0.0]))
    assert s[:2] == pytest.approx([0.3, -0.7], abs=1e-12)
    assert s[2] == pytest.approx(np.mean((counts @ [0.3, -0.7, 0.0]) / 7))  # absent element: the mean
    dataset = AtomicDataset([molecule("CH3CH2OH"), molecule("H2O")], r_max=3.0)
    batch = collate([dataset[0], dataset[1]])
    assert composition(batch, [1, 6, 8]).tolist() == [[6, 2, 1], [2, 0, 1]]
    with pytest.raises(ValueError, match=r"no entry for Z=\[8\]"):
        composition(batch, [1, 6])


def test_shortest_distances_by_hand():
    water, cu = molecule("H2O"), bulk("Cu", "fcc", a=3.6)
    found = shortest_distances(AtomicDataset([water, cu], r_max=3.0))
    d = water.get_all_distances()
    assert found == pytest.approx({"1-1": d[1, 2], "1-8": min(d[0, 1], d[0, 2]), "29-29": 3.6 / np.sqrt(2)})
    assert shortest_distances(AtomicDataset([molecule("H2O")], r_max=0.5)) == {}  # no pair inside the cutoff
