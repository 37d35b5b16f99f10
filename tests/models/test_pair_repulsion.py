"""ZBL pair repulsion (``pair_repulsion=True``): the formula, smoothness at its cutoff, conservative forces,
and a repulsive wall on dimers below the shortest distance of the training data (synthetic data always;
3BPA and acac where the data is present)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import ase.data
import ase.io
import numpy as np
import pytest
import torch
from potential_helpers import ELEMENTS, finite_difference_forces, hessian, molecule_graph, random_molecule, tiny_model
from torch.testing import assert_close

from gaunt.models import GauntPotential
from gaunt.models.pair import wall_failures, zbl_energy

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


def test_zbl_formula_by_hand() -> None:
    """V(r) = 14.399645 Z1 Z2 / r phi(r / a), a = 0.46850 / (Z1^0.23 + Z2^0.23), written out for C-O at 0.7 A."""
    a = 0.46850 / (6**0.23 + 8**0.23)
    x = 0.7 / a
    phi = (
        0.18175 * math.exp(-3.19980 * x)
        + 0.50986 * math.exp(-0.94229 * x)
        + 0.28022 * math.exp(-0.40290 * x)
        + 0.02817 * math.exp(-0.20162 * x)
    )
    expected = 14.399645 * 48 / 0.7 * phi
    value = zbl_energy(torch.tensor([0.7], dtype=torch.float64), torch.tensor([6]), torch.tensor([8]))
    assert float(value) == pytest.approx(expected, rel=1e-12)
    assert 10.0 < expected < 100.0  # tens of eV: a wall, not a perturbation


def _dimer(model: GauntPotential, z1: int, z2: int, r: float) -> tuple[float, float]:
    """Energy and the force on atom 2 along the bond of a dimer at distance r."""
    positions = torch.tensor([[0.0, 0.0, 0.0], [r, 0.0, 0.0]], dtype=torch.float64)
    out = model(molecule_graph(positions, torch.tensor([z1, z2]), model.config.r_max))
    return float(out["energy"].detach()), float(out["forces"].detach()[1, 0])


def test_zbl_is_smooth_at_its_cutoff() -> None:
    """Energy and force continuous where a pair crosses r_c = max(covalent radii sum, recorded distance)."""
    for distances, (z1, z2) in (({}, (6, 8)), ({"1-1": 1.6}, (1, 1))):
        model = tiny_model("grid", pair_repulsion=True, pair_repulsion_distances=distances)
        cutoff = max(float(ase.data.covalent_radii[z1] + ase.data.covalent_radii[z2]), distances.get(f"{z1}-{z2}", 0))
        assert float(model.pair_repulsion.cutoff[ELEMENTS.index(z1), ELEMENTS.index(z2)]) == pytest.approx(cutoff)
        (e_in, f_in), (e_out, f_out) = _dimer(model, z1, z2, cutoff - 1e-7), _dimer(model, z1, z2, cutoff + 1e-7)
        assert abs(e_in - e_out) < 1e-6 and abs(f_in - f_out) < 1e-5
        plain = replace(model.config, pair_repulsion=False)
        torch.manual_seed(0)
        base = GauntPotential(plain).double()
        base.load_state_dict(model.state_dict())
        wall = _dimer(model, z1, z2, 0.6 * cutoff)[0] - _dimer(base, z1, z2, 0.6 * cutoff)[0]
        assert wall > 0.5  # inside r_c the repulsion is on (eV)
        assert _dimer(model, z1, z2, cutoff + 0.1)[0] == _dimer(base, z1, z2, cutoff + 0.1)[0]  # and off outside


def _compressed_molecule() -> torch.Tensor:
    """A 5-atom molecule with two pairs inside their ZBL cutoff (0.8 A), so the repulsion's forces are tested."""
    graph = random_molecule(n=5, seed=2)
    positions = graph.positions.clone()
    positions[1] = positions[0] + torch.tensor([0.8, 0.1, 0.0], dtype=torch.float64)
    positions[3] = positions[2] + torch.tensor([0.0, 0.5, 0.6], dtype=torch.float64)
    return replace(graph, positions=positions)


def test_zbl_forces_are_conservative() -> None:
    """Finite differences and a symmetric Hessian (float64) with the repulsion active on two pairs."""
    model = tiny_model("grid", pair_repulsion=True)
    graph = _compressed_molecule()
    graph = molecule_graph(graph.positions, graph.atomic_numbers, model.config.r_max)
    zbl = model.pair_repulsion(
        model.z_to_index[graph.atomic_numbers], graph.edge_index, torch.linalg.vector_norm(graph.edge_vectors(), dim=-1)
    )
    assert float(zbl.sum()) > 1.0  # the repulsion is on (not vacuous)
    forces = model(graph)["forces"].detach()
    assert_close(forces, finite_difference_forces(model, graph), rtol=1e-6, atol=1e-6)
    second = hessian(model, graph)
    assert_close(second, second.T, rtol=1e-10, atol=1e-9)


def synthetic_molecules(count: int = 12, seed: int = 0) -> list[ase.Atoms]:
    """Small H/C/N/O molecules (ASE's g2 geometries: methanol, methylamine, hydrazine, nitromethane, ...), rattled
    by 0.05 A and labelled by ASE's EMT scaled by 1/4 (EMT's RMS force on them is ~4 eV/A, DFT's on 3BPA ~1
    eV/A): molecule-like training data that needs no download."""
    from ase.build import molecule
    from ase.calculators.emt import EMT

    names = ("CH3OH", "H3CNH2", "HCOOH", "CH3CN", "CH3CONH2", "N2H4", "CH3NO2")
    out = []
    for k in range(count):
        atoms = molecule(names[k % len(names)])
        atoms.rattle(0.05, seed=seed + k)
        atoms.calc = EMT()
        atoms.info["energy"], atoms.arrays["forces"] = atoms.get_potential_energy() / 4, atoms.get_forces() / 4
        atoms.calc = None
        out.append(atoms)
    return out


def model_for_training(train_file: Path, e0s: str, seed: int = 0, **overrides) -> GauntPotential:
    """The model ``gaunt train --pair_repulsion`` starts from on ``train_file`` (untrained weights, statistics
    and recorded shortest distances from the data)."""
    from gaunt.train import TrainConfig
    from gaunt.train.data_setup import build_model_config, prepare_data

    values = dict(
        train_file=str(train_file),
        E0s=e0s,
        valid_count=2,
        pair_repulsion=True,
        num_channels=8,
        max_L=1,
        max_ell=2,
        correlation=2,
    )
    config = TrainConfig(**{**values, **overrides})
    torch.manual_seed(seed)
    return GauntPotential(build_model_config(config, prepare_data(config))).double()


def shortest_in_file(path: Path) -> float:
    """The shortest interatomic distance over every configuration of an extended XYZ file (A)."""
    return min(float(np.min(a.get_all_distances()[np.triu_indices(len(a), 1)])) for a in ase.io.read(path, ":"))


def test_wall_on_synthetic_dimers(tmp_path) -> None:
    """Every dimer of a model set up for training on synthetic molecules rises monotonically below the
    data's shortest distance; without the repulsion it does not (no download needed)."""
    ase.io.write(tmp_path / "train.xyz", synthetic_molecules(), format="extxyz")
    below = shortest_in_file(tmp_path / "train.xyz")
    assert 0.8 < below < 1.1  # an X-H bond
    for seed in (0, 1, 2):
        assert wall_failures(model_for_training(tmp_path / "train.xyz", "average", seed), below) == [], seed
    plain = model_for_training(tmp_path / "train.xyz", "average", pair_repulsion=False)
    assert wall_failures(plain, below) != []  # test the tester: no wall without the repulsion


@pytest.mark.parametrize(
    "name, train, e0s", [("3bpa", "train_300K.xyz", "iso_atoms.xyz"), ("acac", "train_300K.xyz", "isolated_atoms.xyz")]
)
def test_wall_on_real_dimers(tmp_path, name, train, e0s) -> None:
    """A model set up for training on a few real configurations (``pair_repulsion``) has a repulsive wall on
    every dimer of its elements (C-C, C-H, O-O, H-H, ...) below the file's shortest distance."""
    path = DATA / name / train
    if not path.exists():
        pytest.skip(f"{name} data not found at {path}")
    ase.io.write(tmp_path / "few.xyz", ase.io.read(path, ":12"), format="extxyz")
    below = shortest_in_file(path)
    assert 0.8 < below < 1.0  # an N-H or O-H bond at its shortest
    for seed in (0, 1):
        assert wall_failures(model_for_training(tmp_path / "few.xyz", str(DATA / name / e0s), seed), below) == []
