"""Atomic-structure data for interatomic potentials: reading labelled structures, radius graphs,
datasets and batching, splits, reference energies and normalisation statistics, and a synthetic
EMT dataset.

Typical use::

    structures = read_structures("train.xyz")                   # labels under atoms.info/arrays["gaunt_*"]
    e0 = atomic_energies_from_isolated(read_structures("iso_atoms.xyz", require_forces=False))
    train_idx, valid_idx = random_split(len(structures), valid_fraction=0.1, seed=0)
    dataset = AtomicDataset([structures[k] for k in train_idx], r_max=5.0, atomic_numbers=e0)
    stats = statistics(dataset, e0)
    for batch in make_loader(dataset, batch_size=8, shuffle=True, seed=0):  # collated AtomicGraph
        ...
"""

from .dataset import AtomicDataset, make_loader
from .graph import AtomicGraph, collate
from .io import (
    ENERGY_LABEL,
    FORCES_LABEL,
    SOURCE_LABEL,
    STRESS_LABEL,
    attach_labels,
    read_atoms,
    read_structures,
    voigt_to_matrix,
)
from .neighbors import MIN_DISTANCE, atoms_to_graph, neighbor_list
from .split import random_split
from .statistics import (
    atomic_energies_from_isolated,
    atomic_energies_least_squares,
    composition,
    element_shifts,
    fit_per_element,
    shortest_distances,
    statistics,
)
from .synthetic import EMT_ELEMENTS, emt_dataset

__all__ = [
    "AtomicGraph",
    "collate",
    "read_structures",
    "read_atoms",
    "attach_labels",
    "voigt_to_matrix",
    "ENERGY_LABEL",
    "FORCES_LABEL",
    "STRESS_LABEL",
    "SOURCE_LABEL",
    "atoms_to_graph",
    "neighbor_list",
    "MIN_DISTANCE",
    "AtomicDataset",
    "make_loader",
    "random_split",
    "atomic_energies_from_isolated",
    "atomic_energies_least_squares",
    "element_shifts",
    "statistics",
    "composition",
    "fit_per_element",
    "shortest_distances",
    "emt_dataset",
    "EMT_ELEMENTS",
]
