"""Real Gaunt coefficients: integrals over the sphere of products of three real harmonics.

    G[l1 m1, l2 m2, l3 m3] = integral over S^2 of Y[l1 m1] Y[l2 m2] Y[l3 m3]

with the orthonormal ("integral") harmonics of ``so3.harmonics``. G is an invariant tensor, so it is
the real Clebsch-Gordan tensor C times one number per triple. That number follows from the m = 0
entries, where the harmonics are Legendre polynomials, ``Y[l 0] = sqrt((2l+1)/(4 pi)) P_l(cos theta)``:

    G[l1 0, l2 0, l3 0] = sqrt((2l1+1)(2l2+1)(2l3+1) / (4 pi)) * (l1 l2 l3; 0 0 0)^2
    G = G[l1 0, l2 0, l3 0] / C[l1 0, l2 0, l3 0] * C

G vanishes unless l1 + l2 + l3 is even (parity), which is why a Gaunt product cannot produce the
antisymmetric paths (e.g. the cross product 1o x 1o -> 1e).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch

from .clebsch_gordan import _check_ls, _real_clebsch_gordan_np, is_triangle


def wigner_3j_zero(l1: int, l2: int, l3: int) -> float:
    """``(l1 l2 l3; 0 0 0)`` from its closed form, in exact integer arithmetic up to one sqrt."""
    s = l1 + l2 + l3
    if s % 2 or not is_triangle(l1, l2, l3):
        return 0.0
    g = s // 2
    f = math.factorial
    num = f(g) * f(g)  # squared value: Delta * (g! / ((g-l1)!(g-l2)!(g-l3)!))^2
    den = (f(g - l1) * f(g - l2) * f(g - l3)) ** 2
    delta_num = f(s - 2 * l1) * f(s - 2 * l2) * f(s - 2 * l3)
    delta_den = f(s + 1)
    from fractions import Fraction

    square = Fraction(num * delta_num, den * delta_den)
    return (-1) ** g * math.sqrt(square)


def _gaunt_np(l1: int, l2: int, l3: int) -> np.ndarray:
    c = _real_clebsch_gordan_np(l1, l2, l3)
    w = wigner_3j_zero(l1, l2, l3)
    if w == 0.0:
        return np.zeros_like(c)
    g000 = math.sqrt((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1) / (4 * math.pi)) * w * w
    return g000 / c[l1, l2, l3] * c


@cache
def _gaunt_torch(l1: int, l2: int, l3: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(_gaunt_np(l1, l2, l3), dtype=dtype, device=device)


def gaunt_coefficients(
    l1: int, l2: int, l3: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """Real Gaunt tensor ``[2l1+1, 2l2+1, 2l3+1]`` for orthonormal harmonics (see module doc).

    Cached per (l1, l2, l3, dtype, device); do not modify the returned tensor in place.

    The integral of three orthonormal harmonics, checked by exact quadrature:

    >>> from gaunt.so3 import spherical_grid, spherical_harmonics
    >>> grid = spherical_grid(6)
    >>> Y = spherical_harmonics(2, grid.points)
    >>> G = torch.einsum("g,gi,gj,gk->ijk", grid.weights, Y[:, 1:4], Y[:, 4:9], Y[:, 1:4])   # l = 1, 2, 1
    >>> bool(torch.allclose(gaunt_coefficients(1, 2, 1), G))   # equivalent to
    True
    """
    _check_ls(l1, l2, l3)
    return _gaunt_torch(int(l1), int(l2), int(l3), dtype, torch.device(device or "cpu"))


__all__ = ["gaunt_coefficients", "wigner_3j_zero"]
