"""The Gaunt tensor product evaluated on a spherical quadrature grid (same function as ``GauntProduct``).

    z[u, l3, m3] = w3[u, l3] * integral over S^2 of f1_u f2_u Y[l3 m3],
    f1_u = sum_{l1 m1} w1[u, l1] x1[u, l1, m1] Y[l1 m1],   f2_u likewise

The integrand is a spherical polynomial of degree L1 + L2 + L3, so the Gauss-Legendre x uniform grid
``so3.spherical_grid(L1 + L2 + L3)`` (n_theta = D//2 + 1 nodes in cos(theta), n_phi = D + 1 azimuths,
D = L1 + L2 + L3) integrates it exactly. The harmonics separate, ``Y[l m] = Theta[l |m|](theta) A_m(phi)``
with ``A_m = cos(m phi), 1, sin(|m| phi)`` for m > 0, = 0, < 0, so every stage is a small matmul:

    evaluate   g[m, i]  = sum_l x[l, m] Theta[l |m|](theta_i)          batched over m: (2L+1)(L+1) n_theta
               f[j, i]  = sum_m A_m(phi_j) g[m, i]                      one matmul:      (2L+1) n_theta n_phi
    multiply   h = f1 f2 on the grid
    integrate  c[m, i]  = sum_j (2 pi / n_phi) A_m(phi_j) h[j, i]       one matmul:      (2L3+1) n_theta n_phi
               z[l, m]  = sum_i wGL_i Theta[l |m|](theta_i) c[m, i]     batched over m:  (2L3+1)(L3+1) n_theta

Cost per channel O(L^3) multiply-adds (real arithmetic only); channels and batch entries form the long
side of every matmul. Accepted irreps, weights and ``descriptor()`` are those of ``GauntProduct``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..so3 import spherical_grid, spherical_harmonics
from ._spherical_irreps import SphereFunctionProduct


def _theta_factors(lmax: int, theta: np.ndarray) -> np.ndarray:
    """``T[m + lmax, i, l] = Theta[l |m|](theta_i)`` (zero for l < |m|), shape [2L+1, n_theta, L+1]."""
    points = torch.as_tensor(np.stack([np.zeros_like(theta), np.cos(theta), np.sin(theta)], -1))
    y = spherical_harmonics(lmax, points, normalize=False).numpy()  # phi = 0: A_m = 1 for m >= 0
    out = np.zeros((2 * lmax + 1, len(theta), lmax + 1))
    for m in range(-lmax, lmax + 1):
        for l in range(abs(m), lmax + 1):  # noqa: E741
            out[m + lmax, :, l] = y[:, l * l + l + abs(m)]
    return out


def _phi_factors(lmax: int, phi: np.ndarray) -> np.ndarray:
    """``A[m + lmax, j] = A_m(phi_j)``, shape [2L+1, n_phi]."""
    m = np.arange(-lmax, lmax + 1)[:, None]
    return np.where(m > 0, np.cos(m * phi), np.where(m < 0, np.sin(-m * phi), 1.0))


def _table(lmax: int) -> np.ndarray:
    """Gather table ``[2L+1 (m), L+1 (l)]`` of dense indices l^2 + l + m (-1 where l < |m|)."""
    m = np.arange(-lmax, lmax + 1)[:, None]
    l = np.arange(lmax + 1)[None, :]  # noqa: E741
    return np.where(l >= np.abs(m), l * l + l + m, -1)


class GridGauntProduct(SphereFunctionProduct):
    """Gaunt tensor product by exact quadrature: ``[..., in1.dim] x [..., in2.dim] -> [..., out.dim]``.

    Same signature, accepted irreps (``mul x (l, s (-1)^l)``, increasing l, one mul; mul2 = mul1 or 1;
    s_out = s1 s2), factorised weights ``w1, w2, w3`` (``weight_numel = mul (L1 + L2 + L3 + 3)``,
    internal ones by default) and results as ``gaunt_fourier.GauntProduct``; see the module docstring.
    """

    def __init__(self, irreps_in1, irreps_in2, irreps_out, internal_weights: bool | None = None,
                 shared_weights: bool | None = None, weight_init: str = "ones", check_finite: bool = False) -> None:  # fmt: skip
        super().__init__(irreps_in1, irreps_in2, irreps_out, internal_weights, shared_weights, weight_init, check_finite)
        in1, in2, out = self.layouts
        grid = spherical_grid(in1.lmax + in2.lmax + out.lmax)
        theta, phi = grid.theta.numpy(), grid.phi.numpy()
        self.n_theta, self.n_phi = len(theta), len(phi)
        self._grid_points = self.n_theta * self.n_phi
        w_theta = grid.weights.numpy().reshape(self.n_theta, self.n_phi).sum(1) / (2 * math.pi)  # Gauss-Legendre
        L3 = out.lmax
        lm = np.arange((L3 + 1) ** 2)
        l = np.floor(np.sqrt(lm)).astype(np.int64)  # noqa: E741
        self._register_tables(_table(in1.lmax), _table(in2.lmax), (2 * L3 + 1, L3 + 1), [lm - l * l - l + L3, l], np.ones(len(lm)))
        as_t = torch.as_tensor
        self.register_buffer("_theta1", as_t(_theta_factors(in1.lmax, theta)), persistent=False)
        self.register_buffer("_theta2", as_t(_theta_factors(in2.lmax, theta)), persistent=False)
        self.register_buffer("_phi1", as_t(_phi_factors(in1.lmax, phi).T.copy()), persistent=False)  # [n_phi, M1]
        self.register_buffer("_phi2", as_t(_phi_factors(in2.lmax, phi).T.copy()), persistent=False)
        # integration: azimuthal weight 2 pi / n_phi on A, Gauss-Legendre weights on Theta, transposed
        self.register_buffer("_phi_out", as_t(_phi_factors(L3, phi) * (2 * math.pi / self.n_phi)), persistent=False)
        theta_out = _theta_factors(L3, theta) * w_theta[None, :, None]  # [M3, n_theta, L3+1]
        self.register_buffer("_theta_out", as_t(theta_out.transpose(0, 2, 1).copy()), persistent=False)

    def _to_grid(self, X: torch.Tensor, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``X [2L+1, L+1, *rest]`` -> samples ``[n_phi, n_theta, *rest]``."""
        M, Lp = X.shape[:2]
        g = torch.bmm(theta.to(X.dtype), X.reshape(M, Lp, -1))  # [M, n_theta, Z]
        f = phi.to(X.dtype) @ g.reshape(M, -1)  # [n_phi, n_theta * Z]
        return f.reshape(self.n_phi, self.n_theta, *X.shape[2:])

    def _sphere_product(self, X1: torch.Tensor, X2: torch.Tensor) -> torch.Tensor:
        h = self._to_grid(X1, self._theta1, self._phi1) * self._to_grid(X2, self._theta2, self._phi2)
        c = self._phi_out.to(h.dtype) @ h.reshape(self.n_phi, -1)  # [M3, n_theta * Z]
        M3 = c.shape[0]
        z = torch.bmm(self._theta_out.to(h.dtype), c.reshape(M3, self.n_theta, -1))  # [M3, L3+1, Z]
        return z.reshape(M3, z.shape[1], *h.shape[2:])  # [m + L3, l, mul, *batch]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", grid {self.n_theta} x {self.n_phi}"


__all__ = ["GridGauntProduct"]
