"""Sphere programs of the Gaunt products: which grid, which tables (what to compute, no torch state).

Both Gaunt programs compute, per channel u (weights applied outside the program),

    z[u, l3, m3] = integral over S^2 of f1_u f2_u Y[l3 m3],   f_u = sum_{l m} x[u, l, m] Y[l m],

with the separable harmonics ``Y[l m] = Theta[l |m|](theta) A_m(phi)``, ``A_m = cos(m phi), 1, sin(|m| phi)``
for m > 0, = 0, < 0. They differ only in the grid:

* :func:`grid_gaunt_program`: the Gauss-Legendre x uniform grid of degree L1 + L2 + L3 (exact quadrature);
  ``theta_in = Theta[l |m|](theta_i)``, ``phi_in = A_m(phi_j)``, ``phi_out = (2 pi / n_phi) A_m(phi_j)``,
  ``theta_out = wGL_i Theta[l |m|](theta_i)``.
* :func:`torus_gaunt_program`: the rings of the 2D Fourier basis' torus, with the Fourier transforms folded
  into the tables (``fourier_tables``), on half the rings (L1 + L2 + 1 of them).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..so3 import spherical_grid, spherical_harmonics
from .fourier_tables import azimuth_matrices, folded_projection, folded_synthesis
from .program import Projection, SphereProgram, Synthesis, Term
from .sphere_irreps import SphericalIrreps


def theta_factors(lmax: int, theta: np.ndarray) -> np.ndarray:
    """``T[m + lmax, i, l] = Theta[l |m|](theta_i)`` (zero for l < |m|), shape [2L+1, n_theta, L+1]: the theta
    factor of ``Y[l m] = Theta[l |m|](theta) A_m(phi)``; for theta in (pi, 2 pi) its continuation on the torus
    (the point at phi = 0 with sin(theta) < 0), as in ``so3.fourier``."""
    points = torch.as_tensor(np.stack([np.zeros_like(theta), np.cos(theta), np.sin(theta)], -1))
    y = spherical_harmonics(lmax, points, normalize=False).numpy()  # phi = 0: A_m = 1 for m >= 0
    out = np.zeros((2 * lmax + 1, len(theta), lmax + 1))
    for m in range(-lmax, lmax + 1):
        for l in range(abs(m), lmax + 1):  # noqa: E741
            out[m + lmax, :, l] = y[:, l * l + l + abs(m)]
    return out


def phi_factors(lmax: int, phi: np.ndarray) -> np.ndarray:
    """``A[m + lmax, j] = A_m(phi_j)`` = cos(m phi), 1, sin(|m| phi) for m > 0, = 0, < 0; shape [2L+1, n_phi]."""
    m = np.arange(-lmax, lmax + 1)[:, None]
    return np.where(m > 0, np.cos(m * phi), np.where(m < 0, np.sin(-m * phi), 1.0))


def m_table(lmax: int) -> np.ndarray:
    """Gather table ``[2L+1 (m), L+1 (l)]`` of dense indices l^2 + l + m (-1 where l < |m|)."""
    m = np.arange(-lmax, lmax + 1)[:, None]
    l = np.arange(lmax + 1)[None, :]  # noqa: E741
    return np.where(l >= np.abs(m), l * l + l + m, -1)


def gather_index(layout: SphericalIrreps, table: np.ndarray) -> np.ndarray:
    """Input positions of rows ``(r, l, u)`` (row-major, ``table [R, Lp]`` of dense lm, -1 zero), -1 for zero."""
    index = np.moveaxis(layout.gather_index(table), 0, -1).reshape(-1)  # [R * Lp * mul]
    return np.where(index < layout.dim, index, -1)


def read_index(out: SphericalIrreps, m_row, l_col, rows: tuple[int, int], keep=None) -> np.ndarray:
    """Output position -> flat row of ``Y [R3, L3p, mul]`` (``mul_ir``: block l, channel u, order m).

    ``m_row(l, m)`` and ``l_col(l, m)`` give the row and column of coefficient (l, m); ``keep(l)`` (optional)
    says whether degree l is read from this projection at all (-1 where not).
    """
    R3, L3p = rows
    read = []
    for l in out.degrees:  # noqa: E741
        for u in range(out.mul):
            for m in range(-l, l + 1):
                ok = keep is None or keep(l)
                read.append((m_row(l, m) * L3p + l_col(l, m)) * out.mul + u if ok else -1)
    return np.array(read, dtype=np.int64)


def separable_program(layouts, tables_in1, tables_in2, phi_out, theta_out, name: str) -> SphereProgram:
    """One product term: ``tables_in = (theta [2L+1, n_theta, L+1], phi [n_phi, 2L+1])`` per input (rows m,
    columns l of ``m_table``), projection ``phi_out [2L3+1, n_phi]``, ``theta_out [2L3+1, L3+1, n_theta]``."""
    in1, in2, out = layouts
    L3 = out.lmax
    s1 = Synthesis(0, gather_index(in1, m_table(in1.lmax)), *tables_in1)
    s2 = Synthesis(1, gather_index(in2, m_table(in2.lmax)), *tables_in2)
    read = read_index(out, lambda l, m: m + L3, lambda l, m: l, (2 * L3 + 1, L3 + 1))
    projection = Projection(theta_out, phi_out, read)
    return SphereProgram(in1.mul, (in1.dim, in2.dim, out.dim), (s1, s2), (projection,), (Term(0, 1, 0),), name)


def even_azimuths(degree: int) -> int:
    """The number of azimuths of a program's grid exact for ``degree``: the least even one >= degree + 1. With an
    even ``n_phi`` the phi tables are even or odd under the half-turn ``p -> p + n_phi / 2`` as well as under the
    reflection, and the fused CPU kernels run the phi stage on a quarter of the points (``table_symmetries``)
    instead of half: one azimuth more (where degree + 1 is odd) for about a third fewer multiply-adds there."""
    return degree + 1 + (degree + 1) % 2


def grid_gaunt_program(layouts: tuple[SphericalIrreps, ...]) -> SphereProgram:
    """The Gaunt product on the exact Gauss-Legendre x uniform grid (module docstring). ``layouts``: the two
    inputs (x2 with the channels of x1) and the output."""
    in1, in2, out = layouts
    degree = in1.lmax + in2.lmax + out.lmax
    grid = spherical_grid(degree, n_phi=even_azimuths(degree))
    theta, phi = grid.theta.numpy(), grid.phi.numpy()
    n_theta, n_phi = len(theta), len(phi)
    w_theta = grid.weights.numpy().reshape(n_theta, n_phi).sum(1) / (2 * math.pi)  # Gauss-Legendre weights
    L3 = out.lmax
    # integration: azimuthal weight 2 pi / n_phi on A, Gauss-Legendre weights on Theta (transposed)
    return separable_program(
        layouts,
        (theta_factors(in1.lmax, theta), phi_factors(in1.lmax, phi).T),
        (theta_factors(in2.lmax, theta), phi_factors(in2.lmax, phi).T),
        phi_factors(L3, phi) * (2 * math.pi / n_phi),
        (theta_factors(L3, theta) * w_theta[None, :, None]).transpose(0, 2, 1),
        "grid_gaunt",
    )


def torus_size(layouts: tuple[SphericalIrreps, ...]) -> tuple[int, int]:
    """``(n_u, n_v)`` of the 2D Fourier method: the u convolution exact, v exact up to L3 (``gaunt_fourier``)."""
    L1, L2, L3 = (layout.lmax for layout in layouts)
    return 2 * (L1 + L2) + 1, max(L1 + L2 + L3 + 1, 2 * max(L1, L2, L3) + 1)


def torus_gaunt_program(layouts: tuple[SphericalIrreps, ...]) -> SphereProgram:
    """The Gaunt product in the 2D Fourier basis with folded DFT tables on half the torus rings."""
    in1, in2, out = layouts
    n_u, n_v = torus_size(layouts)
    return separable_program(
        layouts,
        (folded_synthesis(in1.lmax, n_u), azimuth_matrices(in1.lmax, n_v, out=False)),
        (folded_synthesis(in2.lmax, n_u), azimuth_matrices(in2.lmax, n_v, out=False)),
        azimuth_matrices(out.lmax, n_v, out=True),
        folded_projection(out.lmax, in1.lmax + in2.lmax, n_u),
        "torus_gaunt",
    )


__all__ = [
    "theta_factors",
    "phi_factors",
    "m_table",
    "gather_index",
    "read_index",
    "separable_program",
    "grid_gaunt_program",
    "torus_gaunt_program",
    "torus_size",
]
