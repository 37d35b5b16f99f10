"""Radius graphs of single structures (``ase.Atoms`` -> ``AtomicGraph``) with ``vesin`` neighbour lists.

Periodic, non-periodic and mixed boundary conditions (e.g. a slab periodic in x and y only) are all
supported; vesin handles mixed ``pbc`` itself and returns every periodic image within the cutoff, also
when the cutoff exceeds half the cell (an atom can then neighbour several images of the same atom,
or its own images).
"""

from __future__ import annotations

import math

import ase
import numpy as np
import torch
import vesin

from .graph import AtomicGraph
from .io import ENERGY_LABEL, FORCES_LABEL, STRESS_LABEL

MIN_DISTANCE = 0.1
"""Pairs closer than this (Angstrom) are rejected as unphysical (duplicated atoms, wrong units)."""

MAX_NEIGHBORS = 2000
"""Most neighbours per atom (on average) a periodic structure may have within the cutoff. Dense solids have
about 80 within 6 A and fewer than 1300 within 12 A; more means a cell far too small for its atoms (wrong
units, a typo in the cell), where every atom sees thousands of its own images, the neighbour list grows
without bound and a model meets sums it was never trained on (2e22 eV for one atom in a 0.5 A cell)."""


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, j, S)`` with ``|pos[j] - pos[i] + S @ cell| < r_max``, both directions,
    no self-pair at zero shift.

    Args:
        positions: ``[N, 3]`` Angstrom.
        cell: ``[3, 3]`` lattice vectors as rows (ignored where ``pbc`` is False).
        pbc: ``[3]`` bool.
        r_max: cutoff radius in Angstrom.

    Returns:
        ``(centres i [E], neighbours j [E], shifts S [E, 3])`` as int64 arrays, sorted by ``(i, j, S)`` so
        the edge order is reproducible.

    Raises:
        ValueError: non-finite positions, a non-positive cutoff, or a cell whose periodic lattice
            vectors are degenerate (zero or linearly dependent).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.ascontiguousarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if not (math.isfinite(r_max) and r_max > 0):
        raise ValueError(f"r_max must be a positive finite cutoff in Angstrom, got {r_max}")
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape [N, 3], got {positions.shape}")
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
        raise ValueError(f"positions contain NaN or inf (atoms {bad[:10].tolist()})")
    if pbc.any():
        periodic_vectors = cell[pbc]
        if not np.all(np.isfinite(cell)) or np.linalg.matrix_rank(periodic_vectors) < int(pbc.sum()):
            raise ValueError(
                f"the lattice vectors of the periodic directions (pbc={pbc.tolist()}) are zero or linearly "
                f"dependent: cell={cell.tolist()}"
            )
        _check_image_count(len(positions), periodic_vectors, r_max)
        box = cell
    else:
        box = np.zeros((3, 3))  # vesin ignores the box without periodicity; a zero box avoids checks on it
    calculator = vesin.NeighborList(cutoff=float(r_max), full_list=True, n_threads=1)
    i, j, shifts = calculator.compute(points=positions, box=box, periodic=pbc, quantities="ijS", copy=True)
    i, j, shifts = i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64).reshape(-1, 3)
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    return i[order], j[order], shifts[order]


def _check_image_count(num_atoms: int, periodic_vectors: np.ndarray, r_max: float) -> None:
    """Refuse a periodic cell whose atoms would each have more than ``MAX_NEIGHBORS`` neighbours.

    The estimate is the count of lattice points within ``r_max`` (the sphere's volume over the cell's volume
    for 3 periodic directions, the disc's area over the cell's area for 2, ``2 r_max`` over the length
    for 1): the number of periodic images of one atom, exact in the limit that matters here (cell much
    smaller than the cutoff). With 3 periodic directions every atom of the cell has that many images, so
    the estimate is multiplied by the number of atoms; with 1 or 2 the cell also holds vacuum, so only an
    atom's own images count. Checked before the neighbour list is built, which it would otherwise explode.
    """
    d = len(periodic_vectors)
    measure = float(np.sqrt(abs(np.linalg.det(periodic_vectors @ periodic_vectors.T))))  # length / area / volume
    ball = {1: 2.0 * r_max, 2: math.pi * r_max**2, 3: 4.0 / 3.0 * math.pi * r_max**3}[d]
    estimate = ball / measure * (num_atoms if d == 3 else 1)
    if estimate > MAX_NEIGHBORS:
        raise ValueError(
            f"the periodic cell is far smaller than the cutoff r_max = {r_max:g} A: every atom would have about "
            f"{estimate:.3g} neighbours (its periodic images; limit {MAX_NEIGHBORS}, a dense solid has about 80 "
            f"within 6 A); check the cell and its units: cell={np.round(periodic_vectors, 4).tolist()}"
        )


def _check_min_distance(positions: np.ndarray, cell: np.ndarray, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> None:
    if i.size == 0:
        return
    distances = np.linalg.norm(positions[j] - positions[i] + s @ cell, axis=1)
    k = int(np.argmin(distances))
    if distances[k] < MIN_DISTANCE:
        raise ValueError(
            f"atoms {i[k]} and {j[k]} (cell shift {s[k].tolist()}) are {distances[k]:.4g} A apart, closer than "
            f"{MIN_DISTANCE} A: duplicated atoms or positions not in Angstrom?"
        )


def atoms_to_graph(atoms: ase.Atoms, r_max: float, dtype: torch.dtype = torch.float64) -> AtomicGraph:
    """The radius graph of one structure (``B = 1``) with its ``gaunt_*`` labels (see ``read_structures``).

    Edges follow ``AtomicGraph``'s convention: ``edge_index = [senders j; receivers i]`` and
    ``r_ij = pos[j] - pos[i] + S @ cell``. A single atom (or atoms farther apart than ``r_max``) gives a
    graph with zero edges; that is allowed (isolated-atom reference configurations).

    Args:
        atoms: the structure; ``atoms.cell``/``atoms.pbc`` give the periodicity.
        r_max: cutoff radius in Angstrom.
        dtype: floating dtype of positions, cell, shifts and labels.

    Raises:
        ValueError: empty structure, NaN/inf positions, two atoms closer than ``MIN_DISTANCE`` (0.1 A;
            only pairs within ``r_max`` are examined), degenerate periodic cell, bad cutoff.
    """
    n = len(atoms)
    if n == 0:
        raise ValueError("atoms_to_graph: the structure has no atoms")
    positions = np.asarray(atoms.positions, dtype=np.float64)
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    i, j, s = neighbor_list(positions, cell, pbc, r_max)
    _check_min_distance(positions, cell, i, j, s)

    def tensor(x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(dtype)

    energy = atoms.info.get(ENERGY_LABEL)
    forces = atoms.arrays.get(FORCES_LABEL)
    stress = atoms.info.get(STRESS_LABEL)
    return AtomicGraph(
        positions=tensor(positions),
        atomic_numbers=torch.as_tensor(np.asarray(atoms.numbers, dtype=np.int64)),
        edge_index=torch.as_tensor(np.stack([j, i])),
        cell_shifts=tensor(s),
        cell=tensor(cell).unsqueeze(0),
        pbc=torch.as_tensor(pbc).unsqueeze(0),
        batch=torch.zeros(n, dtype=torch.int64),
        num_atoms=torch.tensor([n], dtype=torch.int64),
        energy=None if energy is None else tensor([energy]),
        forces=None if forces is None else tensor(forces).reshape(n, 3),
        stress=None if stress is None else tensor(stress).reshape(1, 3, 3),
    )
