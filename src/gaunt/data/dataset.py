"""``AtomicDataset`` (precomputed radius graphs) and a ``DataLoader`` that yields collated batches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import ase
import torch
from ase.data import chemical_symbols
from torch.utils.data import DataLoader, Dataset, Sampler

from .graph import AtomicGraph, collate
from .io import SOURCE_LABEL
from .neighbors import atoms_to_graph


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"


def _name(k: int, atoms: ase.Atoms) -> str:
    """``structure k`` and, for structures from ``read_structures``, the file and index they came from (after
    a shuffled split, ``k`` alone does not tell the user which configuration of which file to fix)."""
    source = atoms.info.get(SOURCE_LABEL)
    return f"structure {k}" if source is None else f"structure {k} ({source})"


class AtomicDataset(Dataset):
    """Structures converted once to ``AtomicGraph`` (``B = 1`` each) with cutoff ``r_max``.

    Args:
        structures: ``ase.Atoms`` with labels attached by ``read_structures`` (or ``attach_labels``);
            unlabelled structures are allowed (their graphs carry ``energy=None``).
        r_max: cutoff radius in Angstrom.
        atomic_numbers: the elements the model knows. When given, a structure with any other element
            raises ``ValueError`` naming the elements and the first structure containing them.
        dtype: floating dtype of the stored graphs.

    Attributes:
        graphs: ``list[AtomicGraph]``; ``dataset[k]`` is ``graphs[k]``.
        r_max: the cutoff.
        atomic_numbers: sorted tuple of the given elements, or of the elements present if none given.
    """

    def __init__(
        self,
        structures: Sequence[ase.Atoms],
        r_max: float,
        atomic_numbers: Iterable[int] | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if len(structures) == 0:
            raise ValueError("AtomicDataset: no structures given")
        present = sorted({int(z) for atoms in structures for z in atoms.numbers})
        if atomic_numbers is not None:
            allowed = sorted({int(z) for z in atomic_numbers})
            unknown = sorted(set(present) - set(allowed))
            if unknown:
                first = next(k for k, a in enumerate(structures) if set(int(z) for z in a.numbers) & set(unknown))
                raise ValueError(
                    f"AtomicDataset: unknown elements {[_symbol(z) for z in unknown]} (Z={unknown}) not in "
                    f"atomic_numbers {allowed}; first found in {_name(first, structures[first])}"
                )
            self.atomic_numbers: tuple[int, ...] = tuple(allowed)
        else:
            self.atomic_numbers = tuple(present)
        self.r_max = float(r_max)
        self.graphs: list[AtomicGraph] = []
        for k, atoms in enumerate(structures):
            try:
                self.graphs.append(atoms_to_graph(atoms, self.r_max, dtype=dtype))
            except ValueError as err:
                raise ValueError(f"AtomicDataset: {_name(k, atoms)}: {err}") from None

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> AtomicGraph:
        return self.graphs[index]


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    sampler: Sampler | Iterable[int] | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` whose batches are collated ``AtomicGraph`` s.

    Args:
        dataset: an ``AtomicDataset`` (or any dataset of ``AtomicGraph``, e.g. a ``Subset``).
        batch_size: structures per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: reshuffle every epoch, reproducibly from ``seed`` (the same sequence of epochs for the
            same seed).
        seed: seed of the shuffling generator.
        sampler: a sampler (e.g. ``DistributedSampler``, which shuffles itself: call its
            ``set_epoch``) or an explicit list of indices, used instead of ``shuffle``.
        drop_last: drop a final incomplete batch.

    Raises:
        ValueError: ``batch_size < 1`` or both ``sampler`` and ``shuffle=True`` given.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if sampler is not None and shuffle:
        raise ValueError("make_loader: give either sampler or shuffle=True, not both (the sampler decides the order)")
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        sampler=sampler,
        generator=generator,
        collate_fn=collate,
        num_workers=0,
        drop_last=drop_last,
    )
