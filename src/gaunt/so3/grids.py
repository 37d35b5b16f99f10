"""Spherical quadrature: Gauss-Legendre in cos(theta) times a uniform grid in phi.

A grid built for ``degree`` D integrates every polynomial on the sphere of total degree <= D exactly
(to float64 rounding). Gauss-Legendre with n nodes is exact for polynomials in cos(theta) of degree
<= 2n - 1, and M equispaced azimuths are exact for trigonometric polynomials of degree <= M - 1, so
``n = floor(D / 2) + 1`` and ``M = D + 1`` suffice. The product of harmonics of degrees l1, l2, l3 has
degree l1 + l2 + l3: that is the degree a grid Gaunt product needs.

Coordinates follow e3nn's frame (polar axis y): ``x = sin(theta) sin(phi)``, ``y = cos(theta)``,
``z = sin(theta) cos(phi)``. The weights sum to 4 pi (integral over the unit sphere).
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
import torch


class SphericalGrid(NamedTuple):
    """A product quadrature grid. ``points`` [n_theta * n_phi, 3], ``weights`` [n_theta * n_phi].

    Points are ordered theta-major: index ``i * n_phi + j`` is (theta_i, phi_j).
    """

    points: torch.Tensor
    weights: torch.Tensor
    theta: torch.Tensor  # [n_theta], polar angles in (0, pi)
    phi: torch.Tensor  # [n_phi], azimuths 2 pi j / n_phi
    degree: int


def grid_shape(degree: int) -> tuple[int, int]:
    """(n_theta, n_phi) of the smallest grid that is exact for spherical polynomials of ``degree``."""
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    return degree // 2 + 1, degree + 1


@cache
def _grid_float64(degree: int, n_theta: int, n_phi: int) -> tuple[np.ndarray, ...]:
    cos_theta, w_theta = np.polynomial.legendre.leggauss(n_theta)
    theta = np.arccos(cos_theta)
    phi = 2.0 * np.pi * np.arange(n_phi) / n_phi
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, None))
    x = np.outer(sin_theta, np.sin(phi))
    y = np.outer(cos_theta, np.ones_like(phi))
    z = np.outer(sin_theta, np.cos(phi))
    points = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    weights = np.outer(w_theta, np.full(n_phi, 2.0 * np.pi / n_phi)).reshape(-1)
    return points, weights, theta, phi


@cache
def spherical_grid(
    degree: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    n_theta: int | None = None,
    n_phi: int | None = None,
) -> SphericalGrid:
    """The Gauss-Legendre x uniform grid exact for spherical polynomials of total degree ``degree``.

    ``n_theta`` / ``n_phi`` may be given to use a finer grid than the minimum; a coarser one raises.
    Nodes are computed in float64 and cached once per (degree, shape, dtype, device).

    >>> grid = spherical_grid(4)
    >>> grid.points.shape, round(float(grid.weights.sum()), 12) == round(4 * torch.pi, 12)
    (torch.Size([15, 3]), True)
    """
    min_theta, min_phi = grid_shape(degree)
    n_theta = min_theta if n_theta is None else n_theta
    n_phi = min_phi if n_phi is None else n_phi
    if n_theta < min_theta or n_phi < min_phi:
        raise ValueError(
            f"a grid of {n_theta} x {n_phi} is not exact for degree {degree}: needs at least {min_theta} x {min_phi}"
        )
    points, weights, theta, phi = _grid_float64(degree, n_theta, n_phi)
    as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    return SphericalGrid(as_t(points), as_t(weights), as_t(theta), as_t(phi), degree)


def exactness_degree(n_theta: int, n_phi: int) -> int:
    """Largest total degree integrated exactly by an n_theta x n_phi product grid."""
    return min(2 * n_theta - 1, n_phi - 1)


__all__ = ["SphericalGrid", "spherical_grid", "grid_shape", "exactness_degree"]
