"""gaunt.data.split: random_split is reproducible, disjoint, complete, honours count/fraction, errors."""

from __future__ import annotations

import pytest

from gaunt.data import random_split


def test_reproducible_disjoint_and_complete():
    train, valid = random_split(50, valid_count=7, seed=1)
    assert (train, valid) == random_split(50, valid_count=7, seed=1)
    assert len(valid) == 7 and len(train) == 43
    assert not set(train) & set(valid) and sorted(train + valid) == list(range(50))
    assert train == sorted(train) and valid == sorted(valid)
    # test the tester: another seed gives another split
    assert random_split(50, valid_count=7, seed=2)[1] != valid


def test_fraction_rounds_and_keeps_both_parts_non_empty():
    assert len(random_split(100, valid_fraction=0.1)[1]) == 10
    assert len(random_split(10, valid_fraction=0.01)[1]) == 1  # rounds to 0, clamped to 1
    assert len(random_split(10, valid_fraction=0.99)[0]) == 1  # rounds to 10, clamped to n - 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(n=1, valid_count=1), "at least 2"),
        (dict(n=10), "exactly one"),
        (dict(n=10, valid_count=2, valid_fraction=0.2), "exactly one"),
        (dict(n=10, valid_count=0), r"\[1, 9\]"),
        (dict(n=10, valid_count=10), r"\[1, 9\]"),
        (dict(n=10, valid_fraction=1.0), r"\(0, 1\)"),
        (dict(n=10, valid_fraction=0.0), r"\(0, 1\)"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_split(**kwargs)


def test_seed_and_fraction_are_keyword_only():
    with pytest.raises(TypeError):
        random_split(10, 2, 0)  # a positional seed is refused, not read as valid_fraction
    assert random_split(10, 2, seed=0) == random_split(10, valid_count=2, seed=0)
