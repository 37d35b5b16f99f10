"""Executor shared by the sphere products whose grid separates into rings x azimuths.

The harmonics separate, ``Y[l m](theta, phi) = Theta[l |m|](theta) A_m(phi)``, so a function with
coefficients ``x[l, m]`` is sampled on ``n_theta`` rings x ``n_phi`` azimuths in two small matmuls,
and a product of two such functions is projected back in two more:

    evaluate   g[m, i]  = sum_l theta_in[m, i, l] x[l, m]        batched over m:  (2L+1)(L+1) n_theta
               f[j, i]  = sum_m phi_in[j, m] g[m, i]              one matmul:      (2L+1) n_theta n_phi
    multiply   h = f1 f2 on the grid
    integrate  c[m, i]  = sum_j phi_out[m, j] h[j, i]             one matmul:      (2L3+1) n_theta n_phi
               z[l, m]  = sum_i theta_out[m, l, i] c[m, i]        batched over m:  (2L3+1)(L3+1) n_theta

(rows m = -L..L; ``m_table``). Channels and batch entries form the long side of every matmul.
The subclass chooses the grid and the matrices: ``GridGauntProduct`` uses Gauss-Legendre rings and
their weights, ``GauntProduct`` the rings of the 2D Fourier basis' torus, with the Fourier transforms
folded into the matrices. Only the matrices differ; this code runs both.
"""
from __future__ import annotations

import numpy as np
import torch

from ..so3 import spherical_harmonics
from ._spherical_irreps import SphereFunctionProduct


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


def sample(X: torch.Tensor, theta_in: torch.Tensor, phi_in: torch.Tensor) -> torch.Tensor:
    """Evaluate: coefficients ``X [2L+1 (m), L+1 (l), *rest]`` -> samples ``[n_phi, n_theta, *rest]``."""
    M, Lp = X.shape[:2]
    g = torch.bmm(theta_in.to(X.dtype), X.reshape(M, Lp, -1))  # [M, n_theta, Z]: sum over l
    f = phi_in.to(X.dtype) @ g.reshape(M, -1)  # [n_phi, n_theta * Z]: sum over m
    return f.reshape(phi_in.shape[0], theta_in.shape[1], *X.shape[2:])


def integrate(h: torch.Tensor, phi_out: torch.Tensor, theta_out: torch.Tensor) -> torch.Tensor:
    """Integrate: samples ``h [n_phi, n_theta, *rest]`` -> coefficients ``[2L3+1 (m), L3+1 (l), *rest]``."""
    c = phi_out.to(h.dtype) @ h.reshape(h.shape[0], -1)  # [M3, n_theta * Z]: sum over phi
    M3 = c.shape[0]
    z = torch.bmm(theta_out.to(h.dtype), c.reshape(M3, h.shape[1], -1))  # [M3, L3+1, Z]: sum over theta
    return z.reshape(M3, z.shape[1], *h.shape[2:])


def m_table(lmax: int) -> np.ndarray:
    """Gather table ``[2L+1 (m), L+1 (l)]`` of dense indices l^2 + l + m (-1 where l < |m|)."""
    m = np.arange(-lmax, lmax + 1)[:, None]
    l = np.arange(lmax + 1)[None, :]  # noqa: E741
    return np.where(l >= np.abs(m), l * l + l + m, -1)


class SeparableSphereProduct(SphereFunctionProduct):
    """``SphereFunctionProduct`` whose ``_sphere_product`` is the four matmuls of the module docstring."""

    def _register_separable(self, theta_in1: np.ndarray, phi_in1: np.ndarray, theta_in2: np.ndarray,
                            phi_in2: np.ndarray, phi_out: np.ndarray, theta_out: np.ndarray) -> None:  # fmt: skip
        """Shapes: ``theta_in [2L+1, n_theta, L+1]``, ``phi_in [n_phi, 2L+1]`` per input,
        ``phi_out [2L3+1, n_phi]``, ``theta_out [2L3+1, L3+1, n_theta]`` (float64 arrays)."""
        in1, in2, out = self.layouts
        L3 = out.lmax
        assert theta_in1.shape[1] == theta_in2.shape[1] == theta_out.shape[2], "one set of rings"
        assert phi_in1.shape[0] == phi_in2.shape[0] == phi_out.shape[1], "one set of azimuths"
        self.n_theta, self.n_phi = theta_in1.shape[1], phi_in1.shape[0]
        self._grid_points = self.n_theta * self.n_phi
        lm = np.arange((L3 + 1) ** 2)
        l = np.floor(np.sqrt(lm)).astype(np.int64)  # noqa: E741
        self._register_tables(m_table(in1.lmax), m_table(in2.lmax), (2 * L3 + 1, L3 + 1), [lm - l * l - l + L3, l],
                              np.ones(len(lm)))  # fmt: skip
        for name, array in (("theta1", theta_in1), ("phi1", phi_in1), ("theta2", theta_in2), ("phi2", phi_in2),
                            ("phi_out", phi_out), ("theta_out", theta_out)):  # fmt: skip
            self.register_buffer(f"_{name}", torch.as_tensor(np.ascontiguousarray(array)), persistent=False)

    def _sphere_product(self, X1: torch.Tensor, X2: torch.Tensor) -> torch.Tensor:
        h = sample(X1, self._theta1, self._phi1) * sample(X2, self._theta2, self._phi2)
        return integrate(h, self._phi_out, self._theta_out)  # [m + L3, l, mul, *batch]


__all__ = ["SeparableSphereProduct", "sample", "integrate", "m_table", "theta_factors", "phi_factors"]
