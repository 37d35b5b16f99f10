"""Pointwise nonlinearity on the sphere: S2 activation.

Channel ``u`` of the input is read as the coefficients of a function on the unit sphere in the
orthonormal ("integral") real harmonics of ``gaunt.so3`` (e3nn basis, polar axis y),

    f_u(s) = sum_{l, m} x[u, l, m] Y_lm(s),

and the layer returns the harmonic coefficients, up to ``lmax_out``, of ``phi(f_u)``:

    y[u, l, m] = integral over S^2 of phi(f_u(s)) Y_lm(s) ds  ~=  sum_g w_g phi(f_u(s_g)) Y_lm(s_g)

on the Gauss-Legendre x uniform grid ``so3.spherical_grid(resolution)`` (G ~ resolution^2 / 2 points).

Exactness and equivariance. Rotating the input rotates f, hence phi(f), and the exact integral
commutes with rotations. The quadrature is exact when the integrand phi(f) Y_lm is a polynomial of
degree <= resolution, i.e. when phi is a polynomial of degree k and ``resolution >= k lmax_in + lmax_out``:
then the layer is exactly equivariant (to rounding). For the identity it is the exact projection
onto degrees <= lmax_out as soon as ``resolution >= lmax_in + lmax_out`` (the minimum accepted). For a
smooth non-polynomial phi (tanh, SiLU) the aliasing error, and with it the equivariance error,
decays geometrically with the resolution, more slowly for larger inputs (f is sharper) and larger
lmax_in (f has amplitude ~ (lmax_in + 1) / sqrt(4 pi) for unit-variance coefficients). Measured in
float64, 4 channels of unit-variance coefficients, lmax_out = lmax_in, worst over 3 random rotations
of max |f(D x) - D f(x)| / max |f(x)| ("dflt": the default resolution, given first):

    lmax  phi    dflt        24      32      48      64      96
    2     tanh   26: 4e-5    8e-5    4e-6    2e-8    1e-10   1e-14
    2     silu   26: 1e-7    3e-7    3e-9    2e-13   4e-15   9e-15
    4     tanh   44: 2e-3    2e-2    8e-3    7e-4    2e-4    8e-6
    4     silu   44: 3e-5    2e-3    3e-4    2e-5    6e-7    2e-9
    6     tanh   62: 3e-3    9e-2    4e-2    9e-3    3e-3    5e-4
    6     silu   62: 1e-4    2e-2    6e-3    7e-4    1e-4    3e-6

(relu-like kinks converge only algebraically: 5e-4 at 96 for lmax 4). The default resolution is
``8 lmax_in + lmax_out + 8``; raise it where equivariance matters more than cost. Inversion is always exact:
the grid has an even number of azimuths, so it is symmetric under s -> -s.

Parity. Input irreps are ``mul x (l, s (-1)^l)`` with one sign s for all blocks (degrees in increasing
order, any subset of 0..lmax_in, all with the same ``mul``). s = +1 (ordinary, ``0e+1o+2e..``: under inversion
f(r) -> f(-r)) works with any phi; s = -1 (pseudo, ``0o+1e+2o..``: f(r) -> -f(-r)) needs
an odd phi (output pseudo) or an even phi (output ordinary); anything else raises, naming the irrep.
Output irreps: ``mul x (l, s_out (-1)^l)`` for l = 0..lmax_out, e3nn ``mul_ir`` layout.

Shapes ``[..., irreps_in.dim] -> [..., irreps_out.dim]``. Cost per sample and channel: two dense
matmuls, ``G ((lmax_in+1)^2 + (lmax_out+1)^2)`` multiply-adds plus G activations, O(L^4) at the
default resolution. phi is applied as given (no second-moment normalisation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..so3 import Irreps, spherical_grid, spherical_harmonics
from .activation import activation_parity
from .linear import check_features

_KIND = {1: "ordinary, p = (-1)^l", -1: "pseudo, p = -(-1)^l"}


def _parse(irreps: Irreps) -> tuple[int, int, tuple[int, ...]]:
    """(mul, sign s, degrees) of ``mul x (l, s(-1)^l)`` irreps; ``ValueError`` naming the offending irrep."""
    where = f"S2Activation: irreps {irreps}"
    if irreps.num_irreps == 0:
        raise ValueError(f"{where} is empty; expected channels of a sphere function such as '4x0e+4x1o+4x2e'")
    mul0, ir0 = irreps[0]
    sign = ir0.p * (-1) ** ir0.l
    degrees: list[int] = []
    for mul, ir in irreps:
        if mul != mul0:
            raise ValueError(
                f"{where}: block {mul}x{ir} has multiplicity {mul} but {mul0}x{ir0} has {mul0}; "
                f"every degree needs the same number of channels"
            )
        if degrees and ir.l <= degrees[-1]:
            raise ValueError(f"{where}: irrep {ir} repeats or is out of order; list each degree l once, increasing")
        if ir.p * (-1) ** ir.l != sign:
            raise ValueError(
                f"{where}: irrep {ir} has parity {ir.p:+d} but the first block {ir0} is {_KIND[sign]}, which needs "
                f"p = {sign * (-1) ** ir.l:+d} at l = {ir.l}; a sphere function needs one sign s with p = s (-1)^l"
            )
        degrees.append(ir.l)
    return mul0, sign, tuple(degrees)


class S2Activation(torch.nn.Module):
    """``phi`` applied pointwise to each channel's sphere function (see module docstring).

    Args:
        irreps: ``mul x (l, s (-1)^l)`` blocks, degrees increasing, one sign s.
        activation: elementwise phi.
        lmax_out: output degree (default: the input's lmax).
        resolution: polynomial degree integrated exactly by the grid, ``>= lmax_in + lmax_out``
            (default ``8 lmax_in + lmax_out + 8``).
    """

    def __init__(
        self,
        irreps,
        activation: Callable[[torch.Tensor], torch.Tensor],
        lmax_out: int | None = None,
        resolution: int | None = None,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps)
        mul, sign, degrees = _parse(self.irreps_in)
        lmax_in = degrees[-1]
        lmax_out = lmax_in if lmax_out is None else lmax_out
        if not isinstance(lmax_out, int) or lmax_out < 0:
            raise ValueError(f"S2Activation: lmax_out must be a non-negative integer, got {lmax_out!r}")
        if sign == -1:
            parity = activation_parity(activation)
            if parity == 0:
                raise ValueError(
                    f"S2Activation: irreps {self.irreps_in} are pseudo (irrep {self.irreps_in[0].ir} has p = -(-1)^l) "
                    f"and need an odd or even activation, but the activation is neither"
                )
            sign = -1 if parity == -1 else 1
        resolution = 8 * lmax_in + lmax_out + 8 if resolution is None else resolution
        if not isinstance(resolution, int) or resolution < lmax_in + lmax_out:
            raise ValueError(
                f"S2Activation: resolution must be an integer >= lmax_in + lmax_out = {lmax_in + lmax_out} "
                f"(else even the identity is aliased), got {resolution!r}"
            )
        self.activation, self.mul, self.lmax_in, self.lmax_out = activation, mul, lmax_in, lmax_out
        self.resolution = resolution
        self.irreps_out = Irreps([(mul, (l, sign * (-1) ** l)) for l in range(lmax_out + 1)])

        # Grid: n_theta Gauss-Legendre nodes, an even number of azimuths (inversion maps the grid to itself).
        n_theta, n_phi = resolution // 2 + 1, resolution + 1 + (resolution + 1) % 2
        grid = spherical_grid(resolution, dtype=torch.float64, n_theta=n_theta, n_phi=n_phi)
        self.grid_size = grid.weights.numel()
        y = spherical_harmonics(max(lmax_in, lmax_out), grid.points)  # [G, (L+1)^2], orthonormal
        lm_in = torch.cat([torch.arange(l * l, (l + 1) ** 2) for l in degrees])  # present input components
        self.register_buffer("_to_grid", y[:, lm_in].T.contiguous(), persistent=False)  # [K_in, G], float64
        from_grid = grid.weights[:, None] * y[:, : (lmax_out + 1) ** 2]  # [G, K_out]
        self.register_buffer("_from_grid", from_grid.contiguous(), persistent=False)  # float64, cast per call
        # Layout maps. Input: [..., dim] -> [..., mul, K_in]; output: [..., mul * K_out] (u, lm) -> mul_ir order.
        k_in, k_out = lm_in.numel(), (lmax_out + 1) ** 2
        index_in = torch.empty(mul, k_in, dtype=torch.long)
        col = 0
        for l, sl in zip(degrees, self.irreps_in.slices()):
            d = 2 * l + 1
            index_in[:, col : col + d] = sl.start + torch.arange(mul * d).reshape(mul, d)
            col += d
        self.register_buffer("_index_in", index_in.reshape(-1), persistent=False)
        u = torch.arange(mul)[:, None]
        index_out = [(u * k_out + l * l + torch.arange(2 * l + 1)).reshape(-1) for l in range(lmax_out + 1)]
        self.register_buffer("_index_out", torch.cat(index_out), persistent=False)
        self._k_in = k_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., irreps_in.dim]`` -> ``[..., irreps_out.dim]``."""
        check_features("S2Activation", x, self.irreps_in)
        to_grid, from_grid = self._to_grid.to(x.dtype), self._from_grid.to(x.dtype)
        coeffs = torch.index_select(x, -1, self._index_in).unflatten(-1, (self.mul, self._k_in))  # [..., mul, K_in]
        values = self.activation(coeffs @ to_grid)  # [..., mul, G]: phi(f_u(s_g))
        y = (values @ from_grid).flatten(-2)  # [..., mul * K_out]
        return torch.index_select(y, -1, self._index_out)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, resolution={self.resolution}, grid points={self.grid_size}"


__all__ = ["S2Activation"]
