"""Small structures and models for the potential tests (graphs built by brute force, independent of gaunt.data)."""

from __future__ import annotations

from dataclasses import replace

import torch

from gaunt.data.graph import AtomicGraph
from gaunt.models import GauntPotential, PotentialConfig

ELEMENTS = [1, 6, 7, 8]


def molecule_graph(positions: torch.Tensor, numbers: torch.Tensor, r_max: float) -> AtomicGraph:
    """Non-periodic graph with every ordered pair closer than ``r_max`` (O(N^2), for tests)."""
    n = len(positions)
    pairs = [
        (j, i) for i in range(n) for j in range(n) if i != j and float((positions[j] - positions[i]).norm()) < r_max
    ]
    edge_index = torch.tensor(pairs, dtype=torch.long).T if pairs else torch.zeros(2, 0, dtype=torch.long)
    return AtomicGraph(
        positions=positions,
        atomic_numbers=numbers,
        edge_index=edge_index,
        cell_shifts=torch.zeros(edge_index.shape[1], 3, dtype=positions.dtype),
        cell=torch.zeros(1, 3, 3, dtype=positions.dtype),
        pbc=torch.zeros(1, 3, dtype=torch.bool),
        batch=torch.zeros(n, dtype=torch.long),
        num_atoms=torch.tensor([n]),
    )


def random_molecule(n: int = 7, seed: int = 0, r_max: float = 4.0) -> AtomicGraph:
    g = torch.Generator().manual_seed(seed)
    positions = torch.randn(n, 3, dtype=torch.float64, generator=g) * 1.3
    numbers = torch.tensor(ELEMENTS)[torch.randint(0, len(ELEMENTS), (n,), generator=g)]
    return molecule_graph(positions, numbers, r_max)


def tiny_model(product: str, seed: int = 0, **kw) -> GauntPotential:
    torch.manual_seed(seed)
    config = dict(
        atomic_numbers=ELEMENTS,
        product=product,
        r_max=4.0,
        num_radial_basis=4,
        num_channels=4,
        max_ell=2,
        max_L=1,
        correlation=3,
        num_interactions=2,
        radial_hidden=[8],
        avg_num_neighbors=4.0,
        atomic_energies={1: -13.6, 6: -1029.0, 7: -1485.0, 8: -2042.0},
        scale=0.7,
        shift=0.1,
    )
    config.update(kw)
    return GauntPotential(PotentialConfig(**config)).double()


def finite_difference_forces(model: GauntPotential, graph: AtomicGraph, h: float = 1e-5) -> torch.Tensor:
    """``-dE/dx`` by central differences of the energy, one coordinate at a time, ``[atoms, 3]``."""
    numeric = torch.zeros_like(graph.positions)
    for a in range(graph.num_nodes):
        for c in range(3):
            step = torch.zeros_like(graph.positions)
            step[a, c] = h
            plus = model(replace(graph, positions=graph.positions + step), compute_forces=False)["energy"]
            minus = model(replace(graph, positions=graph.positions - step), compute_forces=False)["energy"]
            numeric[a, c] = -(plus - minus).item() / (2 * h)
    return numeric


def hessian(model: GauntPotential, graph: AtomicGraph) -> torch.Tensor:
    """``d^2E/dx^2`` ``[3 atoms, 3 atoms]``: each row the gradient of one minus force (double backward)."""
    positions = graph.positions.clone().requires_grad_(True)
    flat = model(replace(graph, positions=positions), create_graph=True)["forces"].reshape(-1)
    rows = [torch.autograd.grad(-flat[k], positions, retain_graph=True)[0].reshape(-1) for k in range(flat.numel())]
    return torch.stack(rows)
