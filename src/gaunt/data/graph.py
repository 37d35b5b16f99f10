"""``AtomicGraph``: a batch of atomic structures as one disjoint graph (the model's input type).

Conventions (those of ASE and MACE):

* ``edge_index [2, E]``: row 0 = sender j (the neighbour), row 1 = receiver i (the centre atom);
  every pair within the cutoff appears in both directions; no self-edges at zero shift.
* ``cell_shifts [E, 3]``: integer lattice translations S (stored as floats) such that the edge vector is
  ``r_ij = positions[j] - positions[i] + S @ cell[batch[i]]`` (Angstrom). Zero for non-periodic structures.
  Keeping S (not S @ cell) lets the model differentiate through the cell for the stress.
* ``cell [B, 3, 3]``: lattice vectors as rows (ASE); zeros for a structure without a cell.
* Units: Angstrom, eV, eV/A, stress in eV/A^3 with ASE's sign convention (``stress = (1/V) dE/d(strain)``,
  positive under tension).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

_FLOAT_FIELDS = ("positions", "cell_shifts", "cell", "energy", "forces", "stress")


@dataclass(frozen=True)
class AtomicGraph:
    """One or more structures (``B`` graphs, ``N`` atoms, ``E`` directed edges in total).

    Attributes:
        positions: ``[N, 3]`` Cartesian positions.
        atomic_numbers: ``[N]`` int64.
        edge_index: ``[2, E]`` int64 (senders; receivers).
        cell_shifts: ``[E, 3]`` integer lattice shifts (float dtype), see the module docstring.
        cell: ``[B, 3, 3]``.
        pbc: ``[B, 3]`` bool.
        batch: ``[N]`` int64, the structure each atom belongs to.
        num_atoms: ``[B]`` int64.
        energy: ``[B]`` reference total energies, or None.
        forces: ``[N, 3]`` reference forces, or None.
        stress: ``[B, 3, 3]`` reference stress, or None.
    """

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    edge_index: torch.Tensor
    cell_shifts: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    num_atoms: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> AtomicGraph:
        """Move every tensor to ``device``; cast the floating fields (positions, shifts, cell, labels) to ``dtype``."""
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            cast = dtype if (dtype is not None and f.name in _FLOAT_FIELDS) else None
            changes[f.name] = value.to(device=device, dtype=cast)
        return replace(self, **changes)

    def edge_vectors(self, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None) -> torch.Tensor:
        """``r_ij = positions[j] - positions[i] + S @ cell[batch[i]]`` ``[E, 3]`` (optionally with
        ``positions``/``cell`` replaced, e.g. by strained copies that require grad)."""
        positions = self.positions if positions is None else positions
        cell = self.cell if cell is None else cell
        sender, receiver = self.edge_index[0], self.edge_index[1]
        shifts = torch.einsum("ek,ekc->ec", self.cell_shifts, cell[self.batch[receiver]])
        vectors = positions[sender] - positions[receiver] + shifts
        _check_nonzero_edges(self, vectors)
        return vectors


def _check_nonzero_edges(graph: AtomicGraph, vectors: torch.Tensor) -> None:
    """A zero-length edge has no direction: its spherical harmonics, and so the energy and forces, would be NaN.
    ``atoms_to_graph`` never builds one (it refuses atoms closer than ``MIN_DISTANCE``); a graph built by
    hand can, and this names the edge instead of letting NaN through."""
    if vectors.numel() == 0 or torch.compiler.is_compiling():
        return
    zero = torch.linalg.vector_norm(vectors.detach(), dim=-1) == 0
    if bool(zero.any()):
        k = int(torch.nonzero(zero)[0, 0])
        j, i = int(graph.edge_index[0, k]), int(graph.edge_index[1, k])
        shift = [float(v) for v in graph.cell_shifts[k]]
        raise ValueError(
            f"AtomicGraph: edge {k} (sender atom {j} -> receiver atom {i}, cell shift {shift}) has zero "
            f"length ({int(zero.sum())} such edges): two atoms at the same position or a self-edge; "
            "the edge direction is undefined"
        )


def collate(graphs: Sequence[AtomicGraph]) -> AtomicGraph:
    """Concatenate graphs into one batch (node indices of later graphs offset; labels kept only if all have them)."""
    if len(graphs) == 0:
        raise ValueError("collate: no graphs to batch (empty list)")
    offsets = torch.cumsum(torch.tensor([0] + [g.num_nodes for g in graphs[:-1]]), 0)
    graph_offsets = torch.cumsum(torch.tensor([0] + [g.num_graphs for g in graphs[:-1]]), 0)

    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(g, name) for g in graphs]
        return None if any(v is None for v in values) else torch.cat(values)

    return AtomicGraph(
        positions=cat("positions"),
        atomic_numbers=cat("atomic_numbers"),
        edge_index=torch.cat([g.edge_index + int(o) for g, o in zip(graphs, offsets)], dim=1),
        cell_shifts=cat("cell_shifts"),
        cell=cat("cell"),
        pbc=cat("pbc"),
        batch=torch.cat([g.batch + int(o) for g, o in zip(graphs, graph_offsets)]),
        num_atoms=cat("num_atoms"),
        energy=cat("energy"),
        forces=cat("forces"),
        stress=cat("stress"),
    )


__all__ = ["AtomicGraph", "collate"]
