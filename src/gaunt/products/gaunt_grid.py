"""The Gaunt tensor product evaluated on a spherical quadrature grid (same function as ``GauntProduct``).

    z[u, l3, m3] = w3[u, l3] * integral over S^2 of f1_u f2_u Y[l3 m3],
    f1_u = sum_{l1 m1} w1[u, l1] x1[u, l1, m1] Y[l1 m1],   f2_u likewise

The integrand is a spherical polynomial of degree L1 + L2 + L3, so the Gauss-Legendre x uniform grid
``so3.spherical_grid(L1 + L2 + L3)`` (n_theta = D//2 + 1 nodes in cos(theta), n_phi = D + 1 azimuths rounded up to
an even number, D = L1 + L2 + L3) integrates it exactly (the even n_phi gives the phi tables the half-turn symmetry
that the fused kernels use: ``sphere_programs.even_azimuths``). The harmonics separate, so sampling and integration
are two small matmuls each: the program is ``sphere_programs.grid_gaunt_program``. Cost per channel O(L^3)
multiply-adds (real arithmetic only); channels and batch entries form the long side of every matmul.
"""

from __future__ import annotations

from .gaunt_fourier import GauntProduct


class GridGauntProduct(GauntProduct):
    """Gaunt tensor product by exact quadrature: ``[..., in1.dim] x [..., in2.dim] -> [..., out.dim]``.

    Same signature, accepted irreps, factorised weights (``weight_numel = mul (L1 + L2 + L3 + 3)``),
    executors and results as ``GauntProduct``; only the program's grid differs (module docstring), so
    ``transform`` is not an option here.

    >>> import torch
    >>> a = GridGauntProduct("0e+1o", "0e+1o", "0e+1o+2e").double()
    >>> b = GauntProduct("0e+1o", "0e+1o", "0e+1o+2e").double()
    >>> x1, x2 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    >>> bool(torch.allclose(a(x1, x2), b(x1, x2), atol=1e-12))   # the same function
    True
    """

    _grid = "quadrature"

    def __init__(
        self,
        irreps_in1,
        irreps_in2,
        irreps_out,
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        weight_init: str = "ones",
        check_finite: bool = False,
        executor: str = "auto",
    ) -> None:
        super().__init__(
            irreps_in1,
            irreps_in2,
            irreps_out,
            internal_weights,
            shared_weights,
            weight_init,
            check_finite,
            executor=executor,
        )


__all__ = ["GridGauntProduct"]
