"""Fixtures for the ``gaunt.data`` tests.

* ``shared_data``: the directory of the benchmark files (``<repo>/../shared/data``); tests using it are
  skipped with a clear reason when it is absent; ``bpa_train``: 3BPA ``train_300K.xyz`` read once.
* ``brute_force_pairs(positions, cell, pbc, r_max)``: the set of ``(i, j, S0, S1, S2)`` with
  ``|pos[j] - pos[i] + S @ cell| < r_max`` found by looping over every atom pair and every lattice
  shift in a box large enough for the cutoff: the O(N^2) reference for the neighbour list.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


def _brute_force_pairs(positions, cell, pbc, r_max: float) -> set[tuple[int, ...]]:
    positions, cell = np.asarray(positions, dtype=float), np.asarray(cell, dtype=float)
    ranges = []
    for axis in range(3):
        if pbc[axis]:
            # distance between the lattice planes spanned by the other two vectors bounds the shift needed
            normal = np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3])
            spacing = abs(cell[axis] @ normal) / np.linalg.norm(normal)
            extent = np.ptp(positions @ normal / np.linalg.norm(normal))
            n = int(np.ceil((r_max + extent) / spacing)) + 1
            ranges.append(range(-n, n + 1))
        else:
            ranges.append(range(1))
    pairs = set()
    for shift in itertools.product(*ranges):
        offset = np.asarray(shift, dtype=float) @ cell
        d = np.linalg.norm(positions[None, :, :] - positions[:, None, :] + offset, axis=-1)  # [i, j]
        for i, j in zip(*np.nonzero(d < r_max)):
            if i != j or any(shift):
                pairs.add((int(i), int(j), *shift))
    return pairs


@pytest.fixture
def brute_force_pairs():
    return _brute_force_pairs


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "3bpa").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA.resolve()} (expected ../shared/data next to the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bpa_train(shared_data):
    """The 500 3BPA training structures read once per session (do not modify them)."""
    from gaunt.data import read_structures

    return read_structures(shared_data / "3bpa" / "train_300K.xyz")
