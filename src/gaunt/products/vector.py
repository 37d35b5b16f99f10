"""A parity-complete grid product: the Gaunt paths plus the antisymmetric ("odd") paths.

The Gaunt product multiplies two functions on the sphere, ``f1 f2``, and so only produces the paths
with ``l1 + l2 + l3`` even (``f1 f2`` has the parity of its factors). The missing paths, ``l1 + l2 + l3``
odd (the cross product ``1o x 1o -> 1e`` is the smallest), come from a second, pseudo-scalar field
built from the gradients of the same two functions (the "surface curl" / vector-spherical-harmonic
idea of The Price of Freedom, Xie et al. 2025):

    h(s) = s . (grad f1(s) x grad f2(s))            (s on the unit sphere)

where ``f = sum_lm c[l m] P[l m]`` is extended off the sphere with the solid harmonics
``P[l m](x) = |x|^l Y[l m](x / |x|)`` (homogeneous polynomials). Only the tangential parts of the
gradients enter, so with the right-handed tangent frame ``(e_theta, e_phi)`` (``e_theta x e_phi = s``)

    h = (e_theta . grad f1)(e_phi . grad f2) - (e_phi . grad f1)(e_theta . grad f2).

Under inversion ``h`` picks up an extra sign, so projecting it on ``Y[l3]`` couples exactly the paths
with ``l1 + l2 + l3`` odd. The invariant coupling tensor ("odd Gaunt" coefficients)

    O[l1 m1, l2 m2, l3 m3] = integral over S^2 of Y[l3 m3](s) s . (grad P[l1 m1] x grad P[l2 m2])(s)

is a polynomial integrand of degree ``l1 + l2 + l3 - 1``, so a quadrature grid exact for that degree
computes it exactly; it equals ``ratio(l1, l2, l3) * C`` with ``C`` the real Clebsch-Gordan tensor
(``so3.clebsch_gordan``), non-zero exactly for odd ``l1 + l2 + l3`` within the triangle, and it is
antisymmetric under swapping the inputs: ``O[l1, l2, l3][a, b, c] = -O[l2, l1, l3][b, a, c]``.
For ``l1 = l2 = l3 = 1``: ``O[a, b, c] = sqrt(3 / (4 pi)) eps[a, b, c]`` (the cross product).

Harmonics use the orthonormal ("integral") normalisation throughout, so the even paths carry exactly
the Gaunt coefficients ``so3.gaunt_coefficients`` and the odd ones exactly ``O`` (coefficient 1 in
:meth:`VectorGauntProduct.descriptor`). Cost: O(L^3) per channel, like the grid Gaunt product.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..so3 import Irreps, is_triangle, spherical_grid, spherical_harmonics
from .base import TensorProduct
from .descriptor import Path, ProductDescriptor
from .executors import build_runner
from .odd_gaunt import odd_gaunt_coefficients, odd_gaunt_ratio, solid_harmonic_gradient, tangent_frame
from .program import Projection, SphereProgram, Synthesis, Term
from .sphere_frame import FactorisedFrame, copy_channels_index
from .sphere_irreps import SphericalIrreps, parse_spherical_irreps
from .sphere_programs import even_azimuths, gather_index, m_table

_OWNER = "VectorGauntProduct"


# ----------------------------------------------------------------------------- irreps rules
def _parse_output(out: Irreps, mul: int, sign: int) -> list[bool]:
    """Validate the output irreps of a parity-complete product; return, per irrep, whether it is "odd".

    Accepted: every block ``mul x (l3, p3)`` with the product's ``mul``, sorted by degree, each irrep at
    most once, and ``p3 = sign (-1)^l3`` ("even" irrep, Gaunt paths) or ``-sign (-1)^l3`` ("odd" irrep,
    curl paths), where ``sign = s1 s2``.
    """
    where = f"{_OWNER}: irreps_out = {out}"
    if len(out) == 0:
        raise ValueError(f"{where} is empty")
    if any(m != mul for m, _ in out):
        raise ValueError(f"{where} must have multiplicity {mul} (that of irreps_in1) in every block")
    irreps = [ir for _, ir in out]
    if len(set(irreps)) != len(irreps):
        raise ValueError(f"{where} repeats an irrep; each (l, p) may appear at most once")
    if [ir.l for ir in irreps] != sorted(ir.l for ir in irreps):
        raise ValueError(f"{where} is not sorted by degree; list the degrees in increasing l")
    return [ir.p == -sign * (-1) ** ir.l for ir in irreps]


# ----------------------------------------------------------------------------- separable tables
# On the grid, Y[l m](theta, phi) = Theta[l |m|](theta) A_m(phi) with A_m = cos(m phi), 1, sin(|m| phi)
# for m > 0, = 0, < 0, so the three fields of f = sum c[l m] P[l m] separate as well:
#     f                 = sum_m A_m(phi)  sum_l Theta[l |m|](theta)            c[l m]
#     e_theta . grad f  = sum_m A_m(phi)  sum_l Theta'[l |m|](theta)           c[l m]
#     e_phi . grad f    = sum_m A_m'(phi) sum_l Theta[l |m|](theta) / sin(th)  c[l m]
# (e_phi . grad = (1 / sin theta) d/dphi on the sphere), each a batched matmul over m then one matmul.
def _theta_tables(lmax: int, theta: torch.Tensor) -> torch.Tensor:
    """``T[m + lmax, field, i, l]``: Theta, Theta' and Theta / sin(theta) at ``theta_i``, ``[2L+1, 3, n, L+1]``."""
    sin, cos = torch.sin(theta), torch.cos(theta)
    points = torch.stack([torch.zeros_like(theta), cos, sin], dim=-1)  # phi = 0, where A_m = 1 for m >= 0
    value = spherical_harmonics(lmax, points, normalize=False)  # |points| = 1
    e_theta = torch.stack([torch.zeros_like(theta), -sin, cos], dim=-1)
    derivative = torch.einsum("gi,gik->gk", e_theta, solid_harmonic_gradient(lmax, points))
    fields = torch.stack([value, derivative, value / sin[:, None]], dim=0)  # [3, n, K]
    out = theta.new_zeros(2 * lmax + 1, 3, len(theta), lmax + 1)
    for m in range(-lmax, lmax + 1):
        for l in range(abs(m), lmax + 1):
            out[m + lmax, :, :, l] = fields[:, :, l * l + l + abs(m)]
    return out


def _phi_tables(lmax: int, phi: torch.Tensor) -> torch.Tensor:
    """``A[field, j, m + lmax]``: ``A_m(phi_j)`` (field 0) and ``dA_m / dphi`` (field 1), ``[2, n_phi, 2L+1]``."""
    m = torch.arange(-lmax, lmax + 1, dtype=phi.dtype)
    angle = phi[:, None] * m.abs()
    a = torch.where(m > 0, torch.cos(angle), torch.where(m < 0, torch.sin(angle), torch.ones_like(angle)))
    zero = torch.zeros_like(angle)
    da = torch.where(m > 0, -m * torch.sin(angle), torch.where(m < 0, m.abs() * torch.cos(angle), zero))
    return torch.stack([a, da], dim=0)


def vector_grid_degree(layouts: tuple[SphericalIrreps, SphericalIrreps], out: Irreps, odd_out: list[bool]) -> int:
    """The degree the grid must integrate exactly: ``L1 + L2 + l3 - [out irrep odd]``, maximised over the outputs
    (every (l1, l2) pair is in the fields, so a coarser grid aliases the pairs that are not paths into garbage)."""
    in1, in2 = layouts
    return max(in1.lmax + in2.lmax + ir.l - odd for (_, ir), odd in zip(out, odd_out))


def vector_program(
    layouts: tuple[SphericalIrreps, SphericalIrreps], out: Irreps, odd_out: list[bool], degree: int | None = None
) -> SphereProgram:
    """The sphere program of the parity-complete product (class docstring): fields f, t = e_theta . grad f and
    p = e_phi . grad f of both inputs (x2 with the channels of x1), the terms ``f1 f2`` (even projection)
    and ``t1 p2 - p1 t2`` (odd projection), on a grid exact for ``degree`` (default :func:`vector_grid_degree`)."""
    in1, in2 = layouts
    degree = vector_grid_degree(layouts, out, odd_out) if degree is None else degree
    grid = spherical_grid(degree, dtype=torch.float64, n_phi=even_azimuths(degree))  # (for the fused kernels)
    n_theta, n_phi = len(grid.theta), len(grid.phi)
    fields = {"f": (0, 0), "t": (1, 0), "p": (2, 1)}  # name -> (theta field, phi field)
    names = (["f"] if not all(odd_out) else []) + (["t", "p"] if any(odd_out) else [])
    syntheses = []
    for source, layout in enumerate(layouts):
        theta, phi = _theta_tables(layout.lmax, grid.theta).numpy(), _phi_tables(layout.lmax, grid.phi).numpy()
        index = gather_index(layout, m_table(layout.lmax))
        syntheses += [Synthesis(source, index, theta[:, fields[f][0]], phi[fields[f][1]]) for f in names]
    L3 = max(ir.l for _, ir in out)
    w_theta = grid.weights.reshape(n_theta, n_phi).sum(1).numpy() / (2 * math.pi)  # Gauss-Legendre weights
    phi_out = _phi_tables(L3, grid.phi)[0].numpy().T * (2 * math.pi / n_phi)  # [M3, n_phi]
    theta_out = (_theta_tables(L3, grid.theta)[:, 0].numpy() * w_theta[None, :, None]).transpose(0, 2, 1)
    mul, projections, terms = in1.mul, [], []
    at = {f: k for k, f in enumerate(names)}
    for odd in (False, True):
        if odd not in odd_out:
            continue
        read = [
            ((m + L3) * (L3 + 1) + ir.l) * mul + u if o == odd else -1
            for (_, ir), o in zip(out, odd_out)
            for u in range(mul)
            for m in range(-ir.l, ir.l + 1)
        ]
        projections.append(Projection(theta_out, phi_out, read))
        p, n = len(projections) - 1, len(names)
        if odd:  # h = s . (grad f1 x grad f2) = t1 p2 - p1 t2
            terms += [Term(at["t"], n + at["p"], p, 1.0), Term(at["p"], n + at["t"], p, -1.0)]
        else:
            terms.append(Term(at["f"], n + at["f"], p, 1.0))
    dims = (in1.dim, in2.dim, out.dim)
    return SphereProgram(mul, dims, syntheses, projections, terms, "vector_gaunt")


class VectorGauntProduct(TensorProduct):
    """Parity-complete channel-wise grid product ``[..., in1.dim] x [..., in2.dim] -> [..., out.dim]``.

    Per channel u, with ``P`` the solid harmonics and ``Y`` the orthonormal harmonics:

        f1_u = sum_l w1[u, l] sum_m x1[u, l, m] P[l m]         (f2_u likewise, from x2[u] or x2[0])
        out[u, k, m3] = w3[u, k] * integral over S^2 of Y[l_k m3] * F_k
        F_k = f1_u f2_u                              if out[k] has parity  s1 s2 (-1)^l_k   ("even" irrep)
        F_k = s . (grad f1_u x grad f2_u)            if out[k] has parity -s1 s2 (-1)^l_k   ("odd" irrep)

    which is the sum over paths of ``w1 w2 w3 * G`` (Gaunt coefficients, l1 + l2 + l3 even) or
    ``w1 w2 w3 * O`` (odd Gaunt coefficients, ``odd_gaunt``, l1 + l2 + l3 odd); see :meth:`descriptor`.
    With ``x1 = x2 = 1o`` vectors and the odd irrep ``1e``: ``out = w1 w2 w3 sqrt(3/(4 pi)) (x1 x x2)``.

    Irreps: the inputs follow the Gaunt products' rules (``sphere_irreps``): ``irreps_in1`` =
    ``mul x (l, s1 (-1)^l)``, degrees increasing, each at most once; ``irreps_in2`` likewise with sign
    s2 and multiplicity ``mul`` or 1 (then shared by all channels, e.g. edge harmonics). ``irreps_out``
    = ``mul x (l3, p3)`` sorted by degree, each irrep at most once, where, unlike the Gaunt products,
    a degree may appear with both parities ``p3 = +-s1 s2 (-1)^l3``; every output irrep must be
    reached by at least one path. Anything else raises ``ValueError``.

    Weights: flat ``[..., weight_numel]`` = ``w1 [mul, L1+1]``, ``w2 [mul, L2+1]`` (per input degree,
    as the Gaunt products; absent degrees keep an unused weight) and ``w3 [mul, len(irreps_out)]``
    (per output irrep, so the two parities of a degree have separate weights), concatenated in that
    order, each flattened row-major. Internal weights (the default) start at one, as the Gaunt products.

    Execution: the sphere program :func:`vector_program` (O(L^3) per channel like ``GridGauntProduct``)
    on ``executor`` ("auto": the fastest available, named in ``self.executor``).

    >>> import torch
    >>> tp = VectorGauntProduct("1o", "1o", "1e").double()
    >>> a, b = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    >>> bool(torch.allclose(tp(a, b), (3 / (4 * torch.pi)) ** 0.5 * torch.linalg.cross(a, b)))  # equivalent to
    True
    """

    def __init__(
        self,
        irreps_in1,
        irreps_in2,
        irreps_out,
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        check_finite: bool = False,
        executor: str = "auto",
    ) -> None:
        sph1 = parse_spherical_irreps(irreps_in1, "irreps_in1", _OWNER)
        sph2 = parse_spherical_irreps(irreps_in2, "irreps_in2", _OWNER)
        if sph2.mul not in (sph1.mul, 1):
            raise ValueError(
                f"{_OWNER}: irreps_in2 = {sph2.irreps} has mul {sph2.mul}; it must equal irreps_in1's "
                f"({sph1.mul}) or be 1 (broadcast over channels)"
            )
        out, mul = Irreps(irreps_out), sph1.mul
        odd_out = _parse_output(out, mul, sph1.sign * sph2.sign)
        self._paths = _paths(sph1, sph2, out, odd_out)
        self._split = (mul * (sph1.lmax + 1), mul * (sph2.lmax + 1), mul * len(out))
        super().__init__(
            sph1.irreps, sph2.irreps, out, sum(self._split), internal_weights, shared_weights, check_finite
        )
        self.init_weight("ones")
        self.layouts, self.mul, self.mul2 = (sph1, sph2), mul, sph2.mul
        channels = (
            sph2
            if sph2.mul == mul
            else parse_spherical_irreps("+".join(f"{mul}x{ir}" for _, ir in sph2.irreps), "irreps_in2", _OWNER)
        )
        self.grid_degree = vector_grid_degree((sph1, channels), out, odd_out)
        self.program = vector_program((sph1, channels), out, odd_out, self.grid_degree)
        self.n_theta, self.n_phi = self.program.grid
        runner = build_runner(self.program, executor)
        self.executor = runner.executor
        w3 = [
            self._split[0] + self._split[1] + u * len(out) + k
            for k, (_, ir) in enumerate(out)
            for u in range(mul)
            for _ in range(ir.dim)
        ]
        weight_index = (sph1.weight_index(), self._split[0] + channels.weight_index(), np.array(w3))
        copy = None if channels is sph2 else copy_channels_index(sph2, mul)
        points = self.n_theta * self.n_phi
        self.frame = FactorisedFrame(runner, weight_index, copy, None, mul, points, self.shared_weights)

    def split_weights(self, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[..., weight_numel] -> (w1 [..., mul, L1+1], w2 [..., mul, L2+1], w3 [..., mul, len(out)])``."""
        parts = torch.split(self.weight_or_internal(weight), self._split, dim=-1)
        return tuple(p.unflatten(-1, (self.mul, -1)) for p in parts)  # type: ignore[return-value]

    def descriptor(self) -> ProductDescriptor:
        """One weighted path per (i1, i2, i_out): coupling ``"gaunt"`` (even sum) or ``"odd_gaunt"`` (odd
        sum), coefficient 1, mode ``uuu`` (``uvu`` when ``irreps_in2`` has multiplicity 1)."""
        mode = "uuu" if self.mul2 == self.mul else "uvu"
        paths = tuple(
            Path(i1, i2, k, mode, True, 1.0, "odd_gaunt" if odd else "gaunt") for i1, i2, k, odd in self._paths
        )
        return ProductDescriptor(self.irreps_in1, self.irreps_in2, self.irreps_out, paths)

    def path_weights(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Per-path weights ``w1[u, l1] w2[u, l2] w3[u, i_out]`` in descriptor order:
        ``[..., weight_numel] -> [..., descriptor().weight_numel]`` (each path ``[mul]``, or ``[mul, 1]`` for uvu)."""
        w1, w2, w3 = self.split_weights(weight)
        ls1, ls2 = self.layouts[0].degrees, self.layouts[1].degrees
        return torch.cat([w1[..., ls1[i1]] * w2[..., ls2[i2]] * w3[..., k] for i1, i2, k, _ in self._paths], dim=-1)

    def _forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.frame(x1, x2, weight, not self.shared_weights)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", grid {self.n_theta} x {self.n_phi}, executor={self.executor}"


def _paths(sph1: SphericalIrreps, sph2: SphericalIrreps, out: Irreps, odd_out: list[bool]) -> list[tuple]:
    """``(i1, i2, i_out, odd)`` in descriptor order; raises when an output irrep is reached by no path."""
    all_paths = []
    for k, ((_, ir), odd) in enumerate(zip(out, odd_out)):
        paths = [
            (i1, i2, k, odd)
            for i1, l1 in enumerate(sph1.degrees)
            for i2, l2 in enumerate(sph2.degrees)
            if is_triangle(l1, l2, ir.l) and (l1 + l2 + ir.l) % 2 == odd
        ]
        if not paths:
            raise ValueError(f"{_OWNER}: no path {sph1.irreps} x {sph2.irreps} reaches output irrep {ir}")
        all_paths += paths
    return all_paths


__all__ = [
    "VectorGauntProduct",
    "vector_program",
    "vector_grid_degree",
    "odd_gaunt_coefficients",
    "odd_gaunt_ratio",
    "tangent_frame",
    "solid_harmonic_gradient",
]
