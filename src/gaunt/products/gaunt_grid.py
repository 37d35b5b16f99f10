"""The Gaunt tensor product evaluated on a spherical quadrature grid (same function as ``GauntProduct``).

    z[u, l3, m3] = w3[u, l3] * integral over S^2 of f1_u f2_u Y[l3 m3],
    f1_u = sum_{l1 m1} w1[u, l1] x1[u, l1, m1] Y[l1 m1],   f2_u likewise

The integrand is a spherical polynomial of degree L1 + L2 + L3, so the Gauss-Legendre x uniform grid
``so3.spherical_grid(L1 + L2 + L3)`` (n_theta = D//2 + 1 nodes in cos(theta), n_phi = D + 1 azimuths,
D = L1 + L2 + L3) integrates it exactly. The harmonics separate, ``Y[l m] = Theta[l |m|](theta) A_m(phi)``
with ``A_m = cos(m phi), 1, sin(|m| phi)`` for m > 0, = 0, < 0, so sampling and integration are two
small matmuls each (``_separable``): ``theta_in = Theta[l |m|](theta_i)``, ``phi_in = A_m(phi_j)``,
``phi_out = (2 pi / n_phi) A_m(phi_j)``, ``theta_out = wGL_i Theta[l |m|](theta_i)``.

Cost per channel O(L^3) multiply-adds (real arithmetic only); channels and batch entries form the long
side of every matmul. Accepted irreps, weights and ``descriptor()`` are those of ``GauntProduct``.
"""
from __future__ import annotations

import math

from ..so3 import spherical_grid
from ._separable import SeparableSphereProduct, phi_factors, theta_factors


class GridGauntProduct(SeparableSphereProduct):
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
        n_theta, n_phi = len(theta), len(phi)
        w_theta = grid.weights.numpy().reshape(n_theta, n_phi).sum(1) / (2 * math.pi)  # Gauss-Legendre
        L3 = out.lmax
        # integration: azimuthal weight 2 pi / n_phi on A, Gauss-Legendre weights on Theta (transposed)
        self._register_separable(
            theta_factors(in1.lmax, theta), phi_factors(in1.lmax, phi).T,
            theta_factors(in2.lmax, theta), phi_factors(in2.lmax, phi).T,
            phi_factors(L3, phi) * (2 * math.pi / n_phi),
            (theta_factors(L3, theta) * w_theta[None, :, None]).transpose(0, 2, 1))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", grid {self.n_theta} x {self.n_phi}"


__all__ = ["GridGauntProduct"]
