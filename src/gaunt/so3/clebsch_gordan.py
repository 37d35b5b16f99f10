"""Clebsch-Gordan coefficients in e3nn's real basis (``o3.wigner_3j`` convention), exact in float64.

Construction, per triple (l1, l2, l3):

1. Complex Condon-Shortley coefficients ``<l1 m1 l2 m2 | l3 m3>`` from Racah's formula, summed in
   extended precision (``numpy.longdouble``) from a factorial table, all (m1, m2) at once.
2. Change to the real basis of ``so3.harmonics``: with ``Y_real = U Y_complex``,
   ``U[+m] = ((-1)^m Y^m + Y^-m) / sqrt 2`` and ``U[-m] = ((-1)^m Y^m - Y^-m) / (i sqrt 2)``,

       C[a, b, c] = i^(l1 + l2 - l3) / sqrt(2 l3 + 1) * sum U1[a, m1] U2[b, m2] conj(U3[c, m3]) <l1 m1 l2 m2 | l3 m3>

   The phase ``i^(l1+l2-l3)`` makes C real and fixes e3nn's sign; ``1/sqrt(2 l3 + 1)`` gives unit
   Frobenius norm, as e3nn. U has two non-zeros per row and the complex tensor is non-zero only
   for m3 = m1 + m2, so the change of basis touches O(d1 d2) entries, not d1 d2 d3.

C is the invariant tensor: ``einsum("ai,bj,ck,ijk->abc", D1, D2, D3, C) == C`` for every rotation.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
import torch


@lru_cache(maxsize=8)
def _factorials(n: int) -> np.ndarray:
    f = np.ones(n + 1, dtype=np.longdouble)
    for i in range(1, n + 1):
        f[i] = f[i - 1] * i
    return f


def is_triangle(l1: int, l2: int, l3: int) -> bool:
    """True when |l1 - l2| <= l3 <= l1 + l2 (the coupling is allowed)."""
    return abs(l1 - l2) <= l3 <= l1 + l2


def _check_ls(*ls: int) -> None:
    for l in ls:
        if not isinstance(l, (int, np.integer)) or isinstance(l, bool) or l < 0:
            raise ValueError(f"degrees must be non-negative integers, got {ls}")


@cache
def complex_clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """Condon-Shortley ``<l1 m1 l2 m2 | l3 m3>`` as a float64 array ``[2l1+1, 2l2+1, 2l3+1]`` (index m + l)."""
    _check_ls(l1, l2, l3)
    out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    if not is_triangle(l1, l2, l3):
        return out
    f = _factorials(l1 + l2 + l3 + 1)
    m1 = np.arange(-l1, l1 + 1)[:, None]
    m2 = np.arange(-l2, l2 + 1)[None, :]
    m3 = m1 + m2
    valid = np.abs(m3) <= l3
    k = np.arange(l1 + l2 - l3 + 1)[:, None, None]
    # Racah: sum_k (-1)^k / [k! (l1+l2-l3-k)! (l1-m1-k)! (l2+m2-k)! (l3-l2+m1+k)! (l3-l1-m2+k)!]
    args = np.broadcast_arrays(k, l1 + l2 - l3 - k, l1 - m1 - k, l2 + m2 - k, l3 - l2 + m1 + k, l3 - l1 - m2 + k)
    allowed = np.all(np.stack(args) >= 0, axis=0)
    denominator = np.ones(allowed.shape, dtype=np.longdouble)
    for a in args:
        denominator = denominator * f[np.clip(a, 0, None)]
    total = np.where(allowed, np.where(k % 2 == 0, 1, -1) / denominator, 0).sum(axis=0)
    m3c = np.clip(m3, -l3, l3)
    triangle = (2 * l3 + 1) * f[l3 + l1 - l2] * f[l3 - l1 + l2] * f[l1 + l2 - l3] / f[l1 + l2 + l3 + 1]
    projections = f[l3 + m3c] * f[l3 - m3c] * f[l1 - m1] * f[l1 + m1] * f[l2 - m2] * f[l2 + m2]
    cg = np.sqrt(triangle * projections) * total
    i1, i2 = np.nonzero(valid)
    out[i1, i2, m3[valid] + l3] = cg[valid].astype(np.float64)
    return out


@cache
def _real_from_complex(l: int) -> np.ndarray:
    """Dense U (real = U complex), ``[2l+1 real index, 2l+1 complex m + l]``; two non-zeros per row."""
    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    u[l, l] = 1.0
    s = 1 / np.sqrt(2.0)
    for m in range(1, l + 1):
        u[l + m, l + m], u[l + m, l - m] = (-1) ** m * s, s
        u[l - m, l + m], u[l - m, l - m] = (-1) ** m * s / 1j, -s / 1j
    return u


@cache
def _real_clebsch_gordan_np(l1: int, l2: int, l3: int) -> np.ndarray:
    shape = (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
    if not is_triangle(l1, l2, l3):
        return np.zeros(shape)
    cg = complex_clebsch_gordan(l1, l2, l3)
    u1, u2, u3 = _real_from_complex(l1), _real_from_complex(l2), _real_from_complex(l3)
    # Real entry (a, b, c) collects complex entries (m1, m2, m1 + m2) with m1 = +-|m_a|, m2 = +-|m_b|
    # and the two real rows c = l3 +- |m1 + m2| of U3: O(d1 d2) terms instead of a dense d1 d2 d3 sum.
    a, b = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    abs_m1, abs_m2 = np.abs(a - l1), np.abs(b - l2)
    total = np.zeros(shape, dtype=complex)
    for s1 in (1, -1):
        for s2 in (1, -1):
            m1, m2 = s1 * abs_m1, s2 * abs_m2
            m3 = m1 + m2
            keep = (np.abs(m3) <= l3) & ((s1 == 1) | (abs_m1 > 0)) & ((s2 == 1) | (abs_m2 > 0))
            ka, kb, k1, k2, k3 = a[keep], b[keep], m1[keep] + l1, m2[keep] + l2, m3[keep] + l3
            value = u1[ka, k1] * u2[kb, k2] * cg[k1, k2, k3]
            for sign in (1, -1):
                c = l3 + sign * np.abs(k3 - l3)
                once = (sign == 1) | (k3 != l3)  # m3 = 0 has a single real row
                np.add.at(total, (ka[once], kb[once], c[once]), value[once] * np.conj(u3[c[once], k3[once]]))
    real = (1j ** ((l1 + l2 - l3) % 4) * total).real / np.sqrt(2 * l3 + 1)
    real[np.abs(real) < 1e-15] = 0.0  # exact zeros stay zeros (selection rules)
    return real


@cache
def _cached_torch(kind, l1: int, l2: int, l3: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(kind(l1, l2, l3), dtype=dtype, device=device)


def clebsch_gordan(
    l1: int, l2: int, l3: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """Real Clebsch-Gordan tensor ``[2l1+1, 2l2+1, 2l3+1]``, equal to e3nn's ``o3.wigner_3j``.

    Unit Frobenius norm; zero when (l1, l2, l3) violates the triangle rule. Cached per
    (l1, l2, l3, dtype, device); do not modify the returned tensor in place.

    Coupling two vectors to a scalar is their dot product, with unit Frobenius norm:

    >>> C = clebsch_gordan(1, 1, 0)
    >>> a, b = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    >>> bool(torch.allclose(torch.einsum("i,j,ijk->k", a, b, C), a @ b / 3**0.5))   # equivalent to
    True
    """
    _check_ls(l1, l2, l3)
    return _cached_torch(_real_clebsch_gordan_np, int(l1), int(l2), int(l3), dtype, torch.device(device or "cpu"))


__all__ = ["clebsch_gordan", "complex_clebsch_gordan", "is_triangle"]
