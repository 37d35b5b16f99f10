"""Symmetries of a sphere program's tables that the fused CPU kernels exploit (found numerically, never assumed).

A separable stage's tables on the Gauss-Legendre x uniform grid (``so3.spherical_grid``) have three:

* :func:`phi_reflection`: the phi columns are ``cos(m phi)`` (even under ``p -> -p mod n_phi``) or ``sin(m phi)``
  (odd): the phi stage runs on half the points;
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


def _tolerance(table: np.ndarray) -> float:
    return 1e-12 * max(1.0, float(np.abs(table).max())) if table.size else 1e-12


def phi_reflection(phi: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(order, even)`` where the columns of ``phi [n_phi, R]`` are even or odd under the reflection ``p ->
    -p mod n_phi`` of the grid's phi points (cosines and sines of ``m phi``): ``order`` lists the even columns,
    then the odd ones, ``even`` counts the even ones; None where a column is neither. With it the phi stage
    runs on the ``n_phi // 2 + 1`` points ``p <= -p mod n_phi`` only: ``F[p] = E[p] + O[p]``, ``F[-p] = E[p] -
    O[p]`` (``E``, ``O``: the even and the odd columns' sums), half the multiply-adds."""
    n = phi.shape[0]
    reflected = phi[(-np.arange(n)) % n]
    tol = _tolerance(phi)
    even = np.abs(reflected - phi).max(0) <= tol
    odd = np.abs(reflected + phi).max(0) <= tol
    if not (even | odd).all():
        return None
    return np.concatenate([np.flatnonzero(even), np.flatnonzero(~even)]), int(even.sum())


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
    tol = _tolerance(theta)
    even = np.abs(mirrored - tables).max(-1, initial=0.0) <= tol
    odd = np.abs(mirrored + tables).max(-1, initial=0.0) <= tol
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


__all__ = ["phi_reflection", "theta_reflection", "theta_twins"]
