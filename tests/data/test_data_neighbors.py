"""gaunt.data.neighbors: radius graphs against a brute-force O(N^2) search (molecule, small periodic
cells with repeated images, mixed pbc, atoms outside the cell), the edge-vector convention, labels,
and each bad input's error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from gaunt.data import MIN_DISTANCE, atoms_to_graph, attach_labels


def _graph_pairs(graph) -> set[tuple[int, ...]]:
    j, i = graph.edge_index.tolist()
    shifts = graph.cell_shifts.round().long().tolist()
    return {(a, b, *s) for a, b, s in zip(i, j, shifts)}


def _assert_matches_brute_force(atoms, r_max, brute_force_pairs) -> set:
    graph = atoms_to_graph(atoms, r_max)
    expected = brute_force_pairs(atoms.positions, atoms.cell[:], atoms.pbc, r_max)
    got = _graph_pairs(graph)
    assert got == expected, f"missing {sorted(expected - got)[:5]}, extra {sorted(got - expected)[:5]}"
    assert graph.num_edges == len(expected)  # no duplicated edges either
    # shifts are integers and the edge vectors are the brute-force ones
    torch.testing.assert_close(graph.cell_shifts, graph.cell_shifts.round())
    j, i = graph.edge_index
    s = graph.cell_shifts.numpy()
    reference = atoms.positions[j] - atoms.positions[i] + s @ atoms.cell[:]
    torch.testing.assert_close(graph.edge_vectors(), torch.as_tensor(reference))
    assert float(graph.edge_vectors().norm(dim=1).max()) < r_max
    return expected


def test_molecule_from_3bpa_matches_brute_force(bpa_train, brute_force_pairs):
    atoms = bpa_train[0]
    assert not atoms.pbc.any()
    pairs = _assert_matches_brute_force(atoms, 4.0, brute_force_pairs)
    assert len(pairs) > 2 * len(atoms)  # a non-trivial graph


def test_molecule_matches_brute_force_without_data(brute_force_pairs):
    atoms = molecule("CH3CH2OH")
    atoms.cell = [5.0, 5.0, 5.0]  # a cell on a non-periodic structure must be ignored
    pairs = _assert_matches_brute_force(atoms, 2.2, brute_force_pairs)
    assert all(p[2:] == (0, 0, 0) for p in pairs) and len(pairs) > 0


@pytest.mark.parametrize("r_max", [3.0, 5.5])
def test_periodic_cell_with_repeated_images_matches_brute_force(r_max, brute_force_pairs):
    atoms = bulk("Cu", "fcc", a=3.6) * (1, 1, 2)  # 2 atoms, primitive vectors 2.55 A: r_max > half the cell
    atoms.rattle(0.05, seed=1)
    pairs = _assert_matches_brute_force(atoms, r_max, brute_force_pairs)
    # test the tester: images repeat, so an atom neighbours its own images and several images of the other
    assert any(i == j for i, j, *_ in pairs)
    assert len({p[2:] for p in pairs if p[:2] == (0, 1)}) > 1


def test_triclinic_cell_and_positions_outside_it(brute_force_pairs):
    rng = np.random.default_rng(0)
    cell = np.array([[4.0, 0.0, 0.0], [1.3, 3.7, 0.0], [0.6, -0.9, 4.4]])
    atoms = Atoms("Cu4", scaled_positions=rng.random((4, 3)), cell=cell, pbc=True)
    atoms.positions[1] += 2 * cell[0] - cell[2]  # unwrapped position: shifts must compensate
    _assert_matches_brute_force(atoms, 4.5, brute_force_pairs)


@pytest.mark.parametrize("pbc", [(True, False, False), (True, True, False), (False, True, True)])
def test_mixed_pbc_matches_brute_force(pbc, brute_force_pairs):
    rng = np.random.default_rng(1)
    cell = np.array([[3.0, 0.0, 0.0], [0.8, 3.2, 0.0], [0.3, 0.2, 6.0]])
    atoms = Atoms("Cu5", scaled_positions=rng.random((5, 3)), cell=cell, pbc=pbc)
    pairs = _assert_matches_brute_force(atoms, 4.0, brute_force_pairs)
    shifts = np.array([p[2:] for p in pairs])
    assert np.all(shifts[:, ~np.asarray(pbc)] == 0)  # no images along non-periodic axes ...
    assert np.any(shifts[:, np.asarray(pbc)] != 0)  # ... but some along periodic ones


def test_edge_vector_convention_and_directions():
    atoms = Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.9]])
    graph = atoms_to_graph(atoms, 2.0)
    assert graph.edge_index.tolist() == [[1, 0], [0, 1]]  # (sender j; receiver i), both directions
    # receiver 0 sees sender 1 at +z: r_ij = pos[j] - pos[i]
    expected = torch.tensor([[0.0, 0.0, 0.9], [0.0, 0.0, -0.9]], dtype=torch.float64)
    torch.testing.assert_close(graph.edge_vectors(), expected)
    # periodic: a 1-atom chain along x has neighbours at +-a through the shifts, r = S @ cell
    chain = Atoms("H", positions=[[0.1, 0.0, 0.0]], cell=[1.5, 10.0, 10.0], pbc=(True, False, False))
    g = atoms_to_graph(chain, 2.0)
    assert sorted(g.cell_shifts[:, 0].tolist()) == [-1.0, 1.0]
    torch.testing.assert_close(g.edge_vectors()[:, 0], 1.5 * g.cell_shifts[:, 0])


def test_graph_fields_dtype_and_labels():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    attach_labels(atoms, energy=-1.5, forces=np.ones((4, 3)), stress=[1, 2, 3, 4, 5, 6])
    graph = atoms_to_graph(atoms, 3.0, dtype=torch.float32)
    assert graph.positions.dtype == graph.cell.dtype == graph.cell_shifts.dtype == torch.float32
    assert graph.edge_index.dtype == graph.batch.dtype == graph.num_atoms.dtype == torch.int64
    assert graph.cell.shape == (1, 3, 3) and graph.pbc.tolist() == [[True, True, True]]
    assert graph.num_atoms.tolist() == [4] and graph.batch.tolist() == [0, 0, 0, 0]
    assert graph.energy.tolist() == [-1.5] and graph.forces.shape == (4, 3)
    torch.testing.assert_close(graph.stress[0], torch.tensor([[1.0, 6, 5], [6, 2, 4], [5, 4, 3]], dtype=torch.float32))
    unlabelled = atoms_to_graph(bulk("Cu"), 3.0)
    assert unlabelled.energy is None and unlabelled.forces is None and unlabelled.stress is None


def test_single_atom_gives_zero_edges():
    graph = atoms_to_graph(Atoms("C", positions=[[0.0, 0.0, 0.0]]), 5.0)
    assert graph.num_nodes == 1 and graph.num_edges == 0
    assert graph.edge_index.shape == (2, 0) and graph.cell_shifts.shape == (0, 3)
    assert graph.edge_vectors().shape == (0, 3)


def test_atoms_too_close_raise():
    atoms = Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.05]])
    with pytest.raises(ValueError, match=r"atoms 0 and 1 .* closer than 0.1"):
        atoms_to_graph(atoms, 3.0)
    # just above the threshold is accepted (test the tester: the check is not over-eager)
    atoms.positions[1, 2] = MIN_DISTANCE * 1.01
    assert atoms_to_graph(atoms, 3.0).num_edges == 2
    # a periodic image too close: a tiny cell
    tiny = Atoms("H", positions=[[0, 0, 0]], cell=[0.05, 5, 5], pbc=True)
    with pytest.raises(ValueError, match="closer than"):
        atoms_to_graph(tiny, 3.0)


def test_nan_positions_raise():
    atoms = molecule("H2O")
    atoms.positions[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(atoms \[1\]\)"):
        atoms_to_graph(atoms, 3.0)


def test_bad_cell_cutoff_and_empty_raise():
    flat = Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=[[2, 0, 0], [4, 0, 0], [0, 0, 3]], pbc=True)
    with pytest.raises(ValueError, match="linearly dependent"):
        atoms_to_graph(flat, 3.0)
    no_cell = Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], pbc=True)
    with pytest.raises(ValueError, match="zero or linearly"):
        atoms_to_graph(no_cell, 3.0)
    for r_max in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="r_max"):
            atoms_to_graph(molecule("H2O"), r_max)
    with pytest.raises(ValueError, match="no atoms"):
        atoms_to_graph(Atoms(), 3.0)
