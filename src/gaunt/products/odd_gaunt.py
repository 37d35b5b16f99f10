"""Odd Gaunt coefficients: the coupling of the parity-complete product's curl paths (l1 + l2 + l3 odd).

    O[l1 m1, l2 m2, l3 m3] = integral over S^2 of Y[l3 m3](s) s . (grad P[l1 m1] x grad P[l2 m2])(s)

with ``P[l m](x) = |x|^l Y[l m](x / |x|)`` the solid harmonics (see ``vector`` for where it comes from).
The integrand is a polynomial of degree ``l1 + l2 + l3 - 1``, so a quadrature grid exact for that degree
computes it exactly; it equals ``ratio(l1, l2, l3) * C`` with ``C`` the real Clebsch-Gordan tensor,
non-zero exactly for odd ``l1 + l2 + l3`` within the triangle, and antisymmetric under swapping the
inputs. For ``l1 = l2 = l3 = 1``: ``O[a, b, c] = sqrt(3 / (4 pi)) eps[a, b, c]`` (the cross product).
Registered as the coupling kind ``"odd_gaunt"`` of ``descriptor``.
"""

from __future__ import annotations

import math
from functools import cache

import torch

from ..so3 import clebsch_gordan, is_triangle, spherical_grid, spherical_harmonics
from .descriptor import COUPLINGS, register_coupling


def tangent_frame(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit tangent vectors ``(e_theta, e_phi)`` ``[G, 3]`` at unit ``points`` ``[G, 3]`` (y polar axis).

    With ``s = (sin t sin p, cos t, sin t cos p)``: ``e_theta = ds/dt = (cos t sin p, -sin t, cos t cos p)``,
    ``e_phi = (ds/dp) / sin t = (cos p, 0, -sin p)``; ``e_theta x e_phi = s``. Undefined at the poles
    (Gauss-Legendre nodes never sit there).
    """
    x, y, z = points.unbind(-1)
    rho = torch.sqrt(x * x + z * z)  # sin(theta)
    sin_p, cos_p = x / rho, z / rho
    e_theta = torch.stack([y * sin_p, -rho, y * cos_p], dim=-1)
    e_phi = torch.stack([cos_p, torch.zeros_like(x), -sin_p], dim=-1)
    return e_theta, e_phi


def solid_harmonic_gradient(lmax: int, points: torch.Tensor) -> torch.Tensor:
    """Cartesian gradients of the solid harmonics: ``[..., 3] -> [..., 3 (x, y, z), (lmax+1)^2]``.

    ``grad P[l]`` is a vector of degree-(l-1) solid harmonics and the map ``P[l] -> grad P[l]`` is
    equivariant from degree l to ``(l-1) x 1``, a space of such maps of dimension one, so

        d_i P[l m](x) = kappa_l sum_m' C[l-1 m', 1 i, l m] P[l-1 m'](x)

    with ``C = so3.clebsch_gordan(l-1, 1, l)`` (in e3nn's basis the l = 1 index i is the Cartesian
    component x, y, z). ``kappa_l`` follows from the pole ``x = y-axis``, m = 0, where homogeneity gives
    ``d_y P[l 0] = l P[l 0] = l sqrt((2l+1) / (4 pi))`` and ``P[l-1 m'] = sqrt((2l-1) / (4 pi)) delta_m'0``:
    ``kappa_l = l sqrt((2l+1) / (2l-1)) / C[l-1 0, 1 y, l 0]``. Exact (no differentiation of the recursion).
    """
    p = spherical_harmonics(max(lmax - 1, 0), points, normalize=False)
    blocks = [points.new_zeros(points.shape[:-1] + (3, 1))]
    for l in range(1, lmax + 1):
        c = clebsch_gordan(l - 1, 1, l, dtype=torch.float64)
        kappa = l * math.sqrt((2 * l + 1) / (2 * l - 1)) / float(c[l - 1, 1, l])
        blocks.append(torch.einsum("...a,aic->...ic", p[..., (l - 1) ** 2 : l * l], (kappa * c).to(points.dtype)))
    return torch.cat(blocks, dim=-1)


def _tangential_gradients(lmax: int, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(e_theta . grad P, e_phi . grad P)`` at unit ``points`` ``[G, 3]``: two ``[G, (lmax+1)^2]``."""
    grad = solid_harmonic_gradient(lmax, points)
    e_theta, e_phi = tangent_frame(points)
    return torch.einsum("gi,gik->gk", e_theta, grad), torch.einsum("gi,gik->gk", e_phi, grad)


def _odd_gaunt_quadrature(l1: int, l2: int, l3: int) -> torch.Tensor:
    """``O[l1, l2, l3]`` by direct quadrature (float64, ``[2l1+1, 2l2+1, 2l3+1]``), no symmetry used."""
    grid = spherical_grid(max(l1 + l2 + l3 - 1, 0), dtype=torch.float64)
    lmax = max(l1, l2, l3)
    d_theta, d_phi = _tangential_gradients(lmax, grid.points)
    y = spherical_harmonics(lmax, grid.points)
    b1, b2, b3 = (slice(l * l, (l + 1) ** 2) for l in (l1, l2, l3))
    # h[g, a, b] = dtheta P_a dphi P_b - dphi P_a dtheta P_b  (= s . grad P_a x grad P_b)
    h = d_theta[:, b1, None] * d_phi[:, None, b2] - d_phi[:, b1, None] * d_theta[:, None, b2]
    return torch.einsum("g,gab,gc->abc", grid.weights, h, y[:, b3])


@cache
def odd_gaunt_ratio(l1: int, l2: int, l3: int) -> float:
    """The number r with ``O[l1, l2, l3] = r * clebsch_gordan(l1, l2, l3)`` (0 unless odd and triangle).

    Since C has unit Frobenius norm, ``r = <O, C>``, computed from the exact quadrature in float64.
    """
    if (l1 + l2 + l3) % 2 == 0 or not is_triangle(l1, l2, l3):
        return 0.0
    return float((_odd_gaunt_quadrature(l1, l2, l3) * clebsch_gordan(l1, l2, l3)).sum())


@cache
def _odd_gaunt_cached(l1: int, l2: int, l3: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return (odd_gaunt_ratio(l1, l2, l3) * clebsch_gordan(l1, l2, l3)).to(dtype=dtype, device=device)


def odd_gaunt_coefficients(
    l1: int, l2: int, l3: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """Odd Gaunt tensor ``O[l1, l2, l3]`` ``[2l1+1, 2l2+1, 2l3+1]`` (module docstring), exact in float64.

    Returned as ``ratio * C`` so that selection-rule zeros are exact. Cached per (ls, dtype, device);
    do not modify the result in place.
    """
    for l in (l1, l2, l3):
        if not isinstance(l, int) or isinstance(l, bool) or l < 0:
            raise ValueError(f"degrees must be non-negative integers, got {(l1, l2, l3)}")
    return _odd_gaunt_cached(l1, l2, l3, dtype, torch.device(device or "cpu"))


def _odd_gaunt_coupling(l1: int, l2: int, l3: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return odd_gaunt_coefficients(l1, l2, l3, dtype=dtype, device=device)


if COUPLINGS.get("odd_gaunt") is None:  # idempotent under module reloads
    register_coupling("odd_gaunt", _odd_gaunt_coupling)


__all__ = ["odd_gaunt_coefficients", "odd_gaunt_ratio", "tangent_frame", "solid_harmonic_gradient"]
