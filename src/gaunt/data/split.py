"""Reproducible train/validation splits of ``n`` structures."""

from __future__ import annotations

import numpy as np


def random_split(
    n: int,
    valid_count: int | None = None,
    *,
    valid_fraction: float | None = None,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` at random into disjoint training and validation indices.

    Give exactly one of ``valid_count`` (number of validation structures) or ``valid_fraction``
    (``0 < f < 1``; the count is ``round(f * n)``, at least 1 and at most ``n - 1``). The same
    ``(n, count, seed)`` always gives the same split; both parts are non-empty. ``valid_fraction`` and
    ``seed`` are keyword-only so that a positional seed cannot be taken for a fraction.

    Returns:
        ``(train_indices, valid_indices)``, each a sorted ``list[int]``; together they cover ``range(n)``.

    Raises:
        ValueError: ``n < 2``, neither or both of count/fraction, or a count/fraction leaving one part empty.
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"random_split: need at least 2 structures to split, got n={n}")
    if (valid_count is None) == (valid_fraction is None):
        raise ValueError("random_split: give exactly one of valid_count or valid_fraction")
    if valid_fraction is not None:
        if not 0.0 < float(valid_fraction) < 1.0:
            raise ValueError(f"random_split: valid_fraction must lie in (0, 1), got {valid_fraction}")
        count = min(max(round(float(valid_fraction) * n), 1), n - 1)
    else:
        count = int(valid_count)
        if not 1 <= count <= n - 1:
            raise ValueError(f"random_split: valid_count must lie in [1, n-1] = [1, {n - 1}], got {valid_count}")
    permutation = np.random.default_rng(int(seed)).permutation(n)
    return sorted(permutation[count:].tolist()), sorted(permutation[:count].tolist())
