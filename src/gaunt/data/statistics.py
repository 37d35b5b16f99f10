"""Per-element reference energies ``E0`` and the dataset statistics a potential is normalised with.

The model predicts ``E = sum_i (E0[Z_i] + shift[Z_i]) + scale * (interaction energy)``; ``E0`` removes the
(huge, composition-only) atomic part of DFT total energies, ``element_shifts`` fits the per-element mean
interaction energy by least squares over the compositions of the training set (what a network trained
mostly on forces would take long to learn: its absence is a constant error per composition), and
``statistics`` gives ``scale`` and the neighbour-sum normalisation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence

import ase
import numpy as np
import torch

from .graph import AtomicGraph
from .io import ENERGY_LABEL

_ISOLATED_TAGS = {"isolatedatom"}
_DUPLICATE_TOLERANCE = 1e-6  # eV: repeated isolated-atom entries must agree to this


def _is_isolated(atoms: ase.Atoms) -> bool:
    tag = str(atoms.info.get("config_type", "")).replace("_", "").replace("-", "").lower()
    return tag in _ISOLATED_TAGS or len(atoms) == 1


def _energy(atoms: ase.Atoms, k: int) -> float:
    if ENERGY_LABEL not in atoms.info:
        raise ValueError(
            f"structure {k} has no reference energy (info[{ENERGY_LABEL!r}]); read it with read_structures"
        )
    return float(atoms.info[ENERGY_LABEL])


def atomic_energies_from_isolated(structures: Sequence[ase.Atoms]) -> dict[int, float]:
    """``E0`` (eV) per atomic number from the isolated-atom configurations among ``structures``.

    A structure counts as isolated if ``info["config_type"]`` is ``IsolatedAtom`` (also spelled
    ``isolated_atom``) or it has exactly one atom; others are ignored. Repeated entries for one element
    must agree within 1e-6 eV.

    Raises:
        ValueError: no isolated atoms, an ``IsolatedAtom`` structure with several atoms, a missing
            energy label, or contradictory repeated entries.
    """
    energies: dict[int, float] = {}
    for k, atoms in enumerate(structures):
        if not _is_isolated(atoms):
            continue
        if len(atoms) != 1:
            raise ValueError(f"structure {k} is tagged {atoms.info['config_type']!r} but has {len(atoms)} atoms")
        z, e = int(atoms.numbers[0]), _energy(atoms, k)
        if z in energies and abs(energies[z] - e) > _DUPLICATE_TOLERANCE:
            raise ValueError(f"isolated-atom energies for Z={z} disagree: {energies[z]} vs {e} eV (structure {k})")
        energies[z] = e
    if not energies:
        raise ValueError("atomic_energies_from_isolated: no isolated-atom structures (1 atom or IsolatedAtom)")
    return dict(sorted(energies.items()))


def atomic_energies_least_squares(structures: Sequence[ase.Atoms], atomic_numbers: Iterable[int]) -> dict[int, float]:
    """``E0`` (eV) per element minimising ``sum_s (E_s - sum_Z n_{s,Z} E0[Z])^2`` over ``structures``.

    If the composition matrix is rank deficient (e.g. every structure has the same composition, as in
    single-molecule datasets), the ``E0`` are not unique: the minimum-norm solution is returned with a
    ``UserWarning``. It still reproduces the mean energy, which is what a reference energy needs to do.

    Raises:
        ValueError: no structures, an element outside ``atomic_numbers``, or a missing energy label.
    """
    elements = sorted({int(z) for z in atomic_numbers})
    if len(structures) == 0:
        raise ValueError("atomic_energies_least_squares: no structures")
    column = {z: c for c, z in enumerate(elements)}
    counts = np.zeros((len(structures), len(elements)))
    energies = np.zeros(len(structures))
    for k, atoms in enumerate(structures):
        for z in atoms.numbers:
            if int(z) not in column:
                raise ValueError(f"structure {k} contains Z={int(z)}, not in atomic_numbers {elements}")
            counts[k, column[int(z)]] += 1
        energies[k] = _energy(atoms, k)
    solution, _, rank, _ = np.linalg.lstsq(counts, energies, rcond=None)
    if rank < len(elements):
        warnings.warn(
            f"atomic_energies_least_squares: the composition matrix has rank {rank} < {len(elements)} elements, "
            "so E0 is not unique; returning the minimum-norm solution (consider isolated-atom energies)",
            UserWarning,
            stacklevel=2,
        )
    return {z: float(solution[column[z]]) for z in elements}


def composition(graph: AtomicGraph, elements: Sequence[int]) -> np.ndarray:
    """Element counts of each structure of ``graph`` ``[num_graphs, len(elements)]`` (ValueError naming an
    element outside ``elements``)."""
    column = {int(z): c for c, z in enumerate(elements)}
    numbers = [int(z) for z in graph.atomic_numbers.tolist()]
    unknown = sorted(set(numbers) - set(column))
    if unknown:
        raise ValueError(f"atomic_energies has no entry for Z={unknown}")
    counts = np.zeros((graph.num_graphs, len(column)))
    np.add.at(counts, (graph.batch.cpu().numpy(), [column[z] for z in numbers]), 1.0)
    return counts


def fit_per_element(counts: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Per-element energies ``s`` (eV/atom) minimising ``sum_k (residuals_k - counts_k . s)^2``, written
    ``s = m + d``: ``m`` the mean of ``residuals_k / N_k`` and ``d`` the minimum-norm least-squares correction.

    Where the compositions do not tell the elements apart (every structure the same molecule, as in 3BPA),
    ``d = 0`` along the unresolved directions and ``s`` is the mean per atom (MACE's single shift); with
    enough distinct compositions it is the exact least-squares fit, and the per-composition mean of what
    is left is zero whenever the distinct compositions are linearly independent (e.g. two compositions of
    two elements). Elements absent from ``counts`` get ``m``. Rank deficiency is expected: no warning.
    """
    sizes = counts.sum(axis=1)
    mean = float(np.mean(residuals / sizes))
    correction = np.linalg.lstsq(counts, residuals - mean * sizes, rcond=None)[0]
    return mean + np.where(counts.sum(axis=0) > 0, correction, 0.0)


def element_shifts(dataset: Iterable[AtomicGraph], atomic_energies: Mapping[int, float]) -> dict[int, float]:
    """Per-element mean interaction energy (eV/atom): ``shift`` minimising
    ``sum_s (E_s - sum_Z n_{s,Z} (E0[Z] + shift[Z]))^2`` over the structures of ``dataset``
    (:func:`fit_per_element`: the mean interaction energy per atom where the compositions cannot tell
    the elements apart, the least-squares fit where they can).

    Raises:
        ValueError: empty dataset, a graph without energy, or an element missing from ``atomic_energies``.
    """
    elements = sorted(int(z) for z in atomic_energies)
    e0 = np.array([float(atomic_energies[z]) for z in elements])
    counts, residuals = [], []
    for k, graph in enumerate(dataset):
        if graph.energy is None:
            raise ValueError(f"element_shifts: graph {k} has no energy label")
        try:
            block = composition(graph, elements)
        except ValueError as err:
            raise ValueError(f"element_shifts: {err} (graph {k})") from None
        counts.append(block)
        residuals.append(graph.energy.double().cpu().numpy() - block @ e0)
    if not counts:
        raise ValueError("element_shifts: empty dataset")
    shifts = fit_per_element(np.concatenate(counts), np.concatenate(residuals))
    return {z: float(s) for z, s in zip(elements, shifts)}


def shortest_distances(dataset: Iterable[AtomicGraph]) -> dict[str, float]:
    """Shortest distance (A) of each element pair within the graphs' cutoff: ``{"Z1-Z2": r}`` with Z1 <= Z2
    (pairs never closer than the cutoff are absent). ``gaunt.models.pair`` switches its repulsion off there."""
    best: dict[tuple[int, int], float] = {}
    for graph in dataset:
        if graph.num_edges == 0:
            continue
        lengths = torch.linalg.vector_norm(graph.edge_vectors(), dim=-1).double()
        z = graph.atomic_numbers[graph.edge_index]  # [2, E]
        low, high = torch.minimum(z[0], z[1]), torch.maximum(z[0], z[1])
        for pair in torch.unique(torch.stack([low, high], 1), dim=0).tolist():
            mask = (low == pair[0]) & (high == pair[1])
            r = float(lengths[mask].min())
            best[tuple(pair)] = min(r, best.get(tuple(pair), r))
    return {f"{a}-{b}": r for (a, b), r in sorted(best.items())}


def statistics(dataset: Iterable[AtomicGraph], atomic_energies: Mapping[int, float]) -> dict[str, float]:
    """Normalisation statistics of labelled graphs (an ``AtomicDataset`` or any iterable of graphs/batches).

    Returns:
        ``mean_interaction_energy_per_atom`` (eV/atom): mean over structures of
        ``(E - sum_i E0[Z_i]) / N``; ``rms_forces`` (eV/A): ``sqrt(mean of F_{i,a}^2)`` over every
        atom and Cartesian component; ``avg_num_neighbors``: directed edges / atoms, i.e. the mean
        in-degree of the radius graph.

    Raises:
        ValueError: empty dataset, a graph without energy, no force labels at all, or an element
            missing from ``atomic_energies``.
    """
    e0 = {int(z): float(e) for z, e in atomic_energies.items()}
    per_atom: list[torch.Tensor] = []
    force_sq, force_count, edges, nodes = 0.0, 0, 0, 0
    for k, graph in enumerate(dataset):
        if graph.energy is None:
            raise ValueError(f"statistics: graph {k} has no energy label")
        missing = sorted({int(z) for z in graph.atomic_numbers.tolist()} - set(e0))
        if missing:
            raise ValueError(f"statistics: atomic_energies has no entry for Z={missing} (graph {k})")
        node_e0 = torch.tensor([e0[int(z)] for z in graph.atomic_numbers.tolist()], dtype=torch.float64)
        reference = torch.zeros(graph.num_graphs, dtype=torch.float64).index_add_(0, graph.batch, node_e0)
        per_atom.append((graph.energy.double() - reference) / graph.num_atoms.double())
        if graph.forces is not None:
            force_sq += float(graph.forces.double().square().sum())
            force_count += graph.forces.numel()
        edges += graph.num_edges
        nodes += graph.num_nodes
    if nodes == 0:
        raise ValueError("statistics: empty dataset")
    if force_count == 0:
        raise ValueError("statistics: no graph has force labels, rms_forces is undefined")
    return {
        "mean_interaction_energy_per_atom": float(torch.cat(per_atom).mean()),
        "rms_forces": (force_sq / force_count) ** 0.5,
        "avg_num_neighbors": edges / nodes,
    }
