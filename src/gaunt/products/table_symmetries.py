"""Symmetries of a sphere program's tables that the fused CPU kernels exploit (found numerically, never assumed).

A separable stage's tables on the Gauss-Legendre x uniform grid (``so3.spherical_grid``) have three:

* :func:`phi_classes`: the phi columns are ``cos(m phi)`` (even under ``p -> -p mod n_phi``) or ``sin(m phi)``
  (odd), and with an even ``n_phi`` even or odd under the half-turn ``p -> p + n_phi / 2``: the phi stage runs on
  half or a quarter of the points;
* :func:`theta_twins`: the theta tables of ``m`` and ``-m`` are equal: a pair runs as one pass over its table;
* :func:`theta_reflection`: the rings come in mirror pairs ``t <-> n_theta - 1 - t`` (``cos theta -> -cos
  theta``) and ``P_l^m(-x) = (-1)^(l + m) P_l^m(x)``: in each row every other degree is even, the others odd, and
  the theta stage runs on half the rings.

Tables without a symmetry (a user's program, random tables in the tests) run whole: the kernels are exact either
way, the symmetries only halve multiply-adds.

>>> from gaunt.products import GridGauntProduct
>>> program = GridGauntProduct("0e+1o", "0e+1o", "0e+1o", executor="torch").program
>>> s = program.syntheses[0]
>>> s.theta.shape  # rows m = -1, 0, 1; rings; degrees l = 0, 1
(3, 2, 2)
>>> phi_reflection(s.phi)[1], theta_twins(s.theta).tolist(), theta_reflection(s.theta, axis=1).tolist()
(2, [2, -1, 0], [1, 0, 1])
"""

from __future__ import annotations

import numpy as np


def _matches(moved: np.ndarray, table: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(even, odd)`` per column (reduced over ``axis``): ``moved == table``, ``moved == -table``, to 1e-12 of the
    column's own largest entry (relative per column, so a small column is not taken for symmetric; a zero column
    is both)."""
    tol = 1e-12 * np.abs(table).max(axis, initial=0.0)
    even = np.abs(moved - table).max(axis, initial=0.0) <= tol
    odd = np.abs(moved + table).max(axis, initial=0.0) <= tol
    return even, odd


def _parities(table: np.ndarray, moved: np.ndarray) -> np.ndarray | None:
    """Per column of ``table``: 1 where ``moved`` (its rows permuted by a symmetry) equals it, -1 where it is its
    negative (zero columns: 1); None where a column is neither."""
    even, odd = _matches(moved, table, 0)
    return np.where(even, 1, -1) if (even | odd).all() else None


def phi_reflection(phi: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(order, even)`` where the columns of ``phi [n_phi, R]`` are even or odd under the reflection ``p ->
    -p mod n_phi`` of the grid's phi points (cosines and sines of ``m phi``): ``order`` lists the even columns,
    then the odd ones, ``even`` counts the even ones; None where a column is neither. With it the phi stage
    runs on the ``n_phi // 2 + 1`` points ``p <= -p mod n_phi`` only: ``F[p] = E[p] + O[p]``, ``F[-p] = E[p] -
    O[p]`` (``E``, ``O``: the even and the odd columns' sums), half the multiply-adds."""
    n = phi.shape[0]
    reflection = _parities(phi, phi[(-np.arange(n)) % n])
    if reflection is None:
        return None
    even = reflection > 0
    return np.concatenate([np.flatnonzero(even), np.flatnonzero(~even)]), int(even.sum())


def phi_classes(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(order, bounds)``: the columns of ``phi [n_phi, R]`` grouped by their parities under the reflection
    ``p -> -p`` and, where ``n_phi`` is even, the half-turn ``p -> p + n_phi / 2`` (``(-1)^m``): ``order`` lists
    the columns class by class, class k being ``order[bounds[k]:bounds[k + 1]]``. Two classes (E, O: the
    reflection only, :func:`phi_reflection`) or four (EE, EO, OE, OO: reflection, half-turn); None where a column
    is not even or odd under the reflection. With four, the phi stage runs on the ``n_phi // 4 + 1`` points ``p <=
    n_phi / 4``, a quarter of the multiply-adds (``csrc/reflected.h``)."""
    n = phi.shape[0]
    reflection = _parities(phi, phi[(-np.arange(n)) % n])
    if reflection is None:
        return None
    half_turn = _parities(phi, phi[(np.arange(n) + n // 2) % n]) if n % 2 == 0 else None
    key = (reflection < 0).astype(np.int64)
    if half_turn is not None:
        key = 2 * key + (half_turn < 0)
    classes = 2 if half_turn is None else 4
    order = np.argsort(key, kind="stable")
    return order, np.searchsorted(key[order], np.arange(classes + 1))


def phi_points(n_phi: int, classes: int) -> np.ndarray:
    """The representative points of a phi stage with ``classes`` (1, 2, 4; :func:`phi_classes`): all, those
    with ``p <= -p mod n_phi``, those with ``p <= n_phi / 4``."""
    return np.arange({1: n_phi, 2: n_phi // 2 + 1, 4: n_phi // 4 + 1}[classes])


def orbit_weights(n_phi: int, classes: int) -> np.ndarray:
    """Per representative point: 1, or 1/2 where its orbit under the four symmetries has two points only (p = 0,
    p = n_phi / 4): a projection's four-class combinations count those twice (``csrc/reflected.h``)."""
    points = phi_points(n_phi, classes)
    if classes < 4:
        return np.ones(len(points))
    orbit = np.stack([points, -points % n_phi, (points + n_phi // 2) % n_phi, (-points - n_phi // 2) % n_phi])
    distinct = np.array([len(set(column)) for column in orbit.T])
    return np.where(distinct == 4, 1.0, 0.5)


def theta_twins(theta: np.ndarray) -> np.ndarray:
    """``twin [R]``: for each row r of a stage, another row whose theta table ``theta[r]`` is the same (the
    tables of m and -m), paired once each way, or -1; the kernel runs a pair's two matrix-vector products as one
    pass over the table."""
    twin = -np.ones(len(theta), dtype=np.int64)
    for r in range(len(theta)):
        if twin[r] >= 0:
            continue
        for q in range(r + 1, len(theta)):
            if twin[q] < 0 and np.array_equal(theta[r], theta[q]):
                twin[r], twin[q] = q, r
                break
    return twin


def theta_reflection(theta: np.ndarray, axis: int) -> np.ndarray | None:
    """``first [R]``: per row r of a stage's theta tables ``theta [R, ...]`` (the rings along ``axis``, 1 for a
    synthesis ``[R, n_theta, Lp]``, 2 for a projection ``[R, L3p, n_theta]``), the parity of the degrees l whose
    table is even under the mirror ``t -> n_theta - 1 - t`` of the rings, all others being odd (``l + m``
    even: even); None where a row is not so split. With it a synthesis computes, on the first ``(n_theta + 1)
    // 2`` rings, ``E`` from the even degrees and ``O`` from the odd ones, ``G[t] = E + O``, ``G[n_theta - 1 -
    t] = E - O`` (the odd ones vanish on a middle ring); a projection reads ``G[t] +- G[n_theta - 1 - t]``:
    half the multiply-adds."""
    tables = np.moveaxis(theta, axis, -1)  # [R, degrees, rings]
    mirrored = tables[..., ::-1]
    even, odd = _matches(mirrored, tables, -1)
    degrees = np.arange(tables.shape[1])
    first = np.zeros(len(tables), np.int64)
    for r in range(len(tables)):
        # a non-zero even degree fixes the row's parity, else a non-zero odd one
        strict_even, strict_odd = np.flatnonzero(even[r] & ~odd[r]), np.flatnonzero(odd[r] & ~even[r])
        first[r] = strict_even[0] % 2 if strict_even.size else (strict_odd[0] + 1) % 2 if strict_odd.size else 0
        in_class = degrees % 2 == first[r]
        if not (even[r][in_class].all() and odd[r][~in_class].all()):
            return None
    return first


__all__ = ["orbit_weights", "phi_classes", "phi_points", "phi_reflection", "theta_reflection", "theta_twins"]
