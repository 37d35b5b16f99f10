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
from functools import lru_cache

import torch

from ..so3 import Irreps, clebsch_gordan, is_triangle, spherical_grid, spherical_harmonics
from ._spherical_irreps import gather, parse_spherical_irreps
from .base import TensorProduct
from .descriptor import COUPLINGS, Path, ProductDescriptor, register_coupling

_OWNER = "VectorGauntProduct"


# ----------------------------------------------------------------------------- coefficients
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


@lru_cache(maxsize=None)
def odd_gaunt_ratio(l1: int, l2: int, l3: int) -> float:
    """The number r with ``O[l1, l2, l3] = r * clebsch_gordan(l1, l2, l3)`` (0 unless odd and triangle).

    Since C has unit Frobenius norm, ``r = <O, C>``, computed from the exact quadrature in float64.
    """
    if (l1 + l2 + l3) % 2 == 0 or not is_triangle(l1, l2, l3):
        return 0.0
    return float((_odd_gaunt_quadrature(l1, l2, l3) * clebsch_gordan(l1, l2, l3)).sum())


@lru_cache(maxsize=None)
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


def _dense_table(lmax: int) -> torch.Tensor:
    """``[2L+1 (m), L+1 (l)]`` dense harmonic index ``l^2 + l + m``, -1 where ``l < |m|``."""
    m = torch.arange(-lmax, lmax + 1)[:, None]
    l = torch.arange(lmax + 1)[None, :]
    return torch.where(l >= m.abs(), l * l + l + m, -1)


# ----------------------------------------------------------------------------- the product
class VectorGauntProduct(TensorProduct):
    """Parity-complete channel-wise grid product ``[..., in1.dim] x [..., in2.dim] -> [..., out.dim]``.

    Per channel u, with ``P`` the solid harmonics and ``Y`` the orthonormal harmonics:

        f1_u = sum_l w1[u, l] sum_m x1[u, l, m] P[l m]         (f2_u likewise, from x2[u] or x2[0])
        out[u, k, m3] = w3[u, k] * integral over S^2 of Y[l_k m3] * F_k
        F_k = f1_u f2_u                              if out[k] has parity  s1 s2 (-1)^l_k   ("even" irrep)
        F_k = s . (grad f1_u x grad f2_u)            if out[k] has parity -s1 s2 (-1)^l_k   ("odd" irrep)

    which is the sum over paths of ``w1 w2 w3 * G`` (Gaunt coefficients, l1 + l2 + l3 even) or
    ``w1 w2 w3 * O`` (odd Gaunt coefficients, l1 + l2 + l3 odd); see :meth:`descriptor`. With
    ``x1 = x2 = 1o`` vectors and the odd irrep ``1e``: ``out = w1 w2 w3 sqrt(3/(4 pi)) (x1 x x2)``.

    Irreps: the inputs follow the Gaunt products' rules (``_spherical_irreps``): ``irreps_in1`` =
    ``mul x (l, s1 (-1)^l)``, degrees increasing, each at most once; ``irreps_in2`` likewise with sign
    s2 and multiplicity ``mul`` or 1 (then shared by all channels, e.g. edge harmonics). ``irreps_out``
    = ``mul x (l3, p3)`` sorted by degree, each irrep at most once, where, unlike the Gaunt products,
    a degree may appear with both parities ``p3 = +-s1 s2 (-1)^l3``; every output irrep must be
    reached by at least one path. Anything else raises ``ValueError``.

    Weights: flat ``[..., weight_numel]`` = ``w1 [mul, L1+1]``, ``w2 [mul, L2+1]`` (per input degree,
    as the Gaunt products; absent degrees keep an unused weight) and ``w3 [mul, len(irreps_out)]``
    (per output irrep, so the two parities of a degree have separate weights), concatenated in that
    order, each flattened row-major. Internal weights (the default) start at one, as the Gaunt products.

    Execution, O(L^3) per channel like ``GridGauntProduct``: one grid exact for degree
    ``L1 + L2 + l3 - [out[k] odd]`` (max over k); the separable tables above turn synthesis of the
    three fields (f, e_theta . grad f, e_phi . grad f) into one batched matmul over m and one over the
    field, the pointwise products give ``f1 f2`` and ``h = t1 p2 - p1 t2``, and the projection onto
    ``Y[l3]`` is one matmul over phi and one batched matmul over m. Channel and batch dimensions are
    the long side of every matmul; all tables are float64 buffers cast to the input dtype.
    """

    def __init__(
        self,
        irreps_in1,
        irreps_in2,
        irreps_out,
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        check_finite: bool = False,
    ) -> None:
        sph1 = parse_spherical_irreps(irreps_in1, "irreps_in1", _OWNER)
        sph2 = parse_spherical_irreps(irreps_in2, "irreps_in2", _OWNER)
        if sph2.mul not in (sph1.mul, 1):
            raise ValueError(f"{_OWNER}: irreps_in2 = {sph2.irreps} has mul {sph2.mul}; it must equal irreps_in1's "
                             f"({sph1.mul}) or be 1 (broadcast over channels)")  # fmt: skip
        out = Irreps(irreps_out)
        mul = sph1.mul
        odd_out = _parse_output(out, mul, sph1.sign * sph2.sign)
        all_paths: list[tuple[int, int, int, bool]] = []  # (i1, i2, i_out, odd) in descriptor order
        for k, ((_, ir), odd) in enumerate(zip(out, odd_out)):
            paths = [(i1, i2, k, odd) for i1, l1 in enumerate(sph1.degrees) for i2, l2 in enumerate(sph2.degrees)
                     if is_triangle(l1, l2, ir.l) and (l1 + l2 + ir.l) % 2 == odd]  # fmt: skip
            if not paths:
                raise ValueError(f"{_OWNER}: no path {sph1.irreps} x {sph2.irreps} reaches output irrep {ir}")
            all_paths += paths
        self._split = (mul * (sph1.lmax + 1), mul * (sph2.lmax + 1), mul * len(out))
        super().__init__(sph1.irreps, sph2.irreps, out, sum(self._split),
                         internal_weights, shared_weights, check_finite)  # fmt: skip
        if self.internal_weights:
            with torch.no_grad():
                self.weight.fill_(1.0)
        self.layouts = (sph1, sph2)
        self.mul, self.mul2 = mul, sph2.mul
        self._paths = all_paths
        # every (l1, l2) pair is in the fields, so the grid must be exact for L1 + L2 + l3 - [odd]
        # (a coarser grid would alias the pairs that are not paths into non-zero garbage)
        self.grid_degree = max(sph1.lmax + sph2.lmax + ir.l - odd for (_, ir), odd in zip(out, odd_out))
        self._fields = [f for f, used in ((0, not all(odd_out)), (1, any(odd_out))) if used]  # 0: f1 f2, 1: h
        self._build_tables([ir.l for _, ir in out], odd_out)

    def _build_tables(self, ls_out: list[int], odd_out: list[bool]) -> None:
        grid = spherical_grid(self.grid_degree, dtype=torch.float64)
        n_theta, n_phi = len(grid.theta), len(grid.phi)
        self.n_theta, self.n_phi = n_theta, n_phi
        need_curl = 1 in self._fields
        n_synth = 3 if need_curl else 1  # fields synthesised per input: f (and e_theta / e_phi . grad f)
        for i, layout in enumerate(self.layouts, start=1):
            table = _dense_table(layout.lmax)
            index = torch.as_tensor(layout.gather_index(table.numpy()))  # [mul, M, Lp], absent -> zero slot
            degree = torch.arange(layout.lmax + 1)[None, :]  # column l of the table has degree l
            windex = torch.arange(self.mul)[:, None, None] * (layout.lmax + 1) + degree  # [mul, 1, Lp] into w[u, l]
            windex = windex.expand(-1, table.shape[0], -1)  # [mul, M, Lp]
            self.register_buffer(f"_index{i}", index.permute(1, 2, 0).contiguous(), persistent=False)  # [M, Lp, mul]
            self.register_buffer(f"_windex{i}", windex.permute(1, 2, 0).contiguous(), persistent=False)
            theta = _theta_tables(layout.lmax, grid.theta)[:, :n_synth]  # [M, F, n_theta, Lp]
            self.register_buffer(f"_theta{i}", theta.flatten(1, 2), persistent=False)  # [M, F n_theta, Lp]
            phi = _phi_tables(layout.lmax, grid.phi)  # [2, n_phi, M]: A, A'
            self.register_buffer(f"_phi{i}", phi[[0, 0, 1][:n_synth]], persistent=False)  # [F, n_phi, M]
        # projection integral Y[l m] F = sum_i wGL_i Theta[l |m|](theta_i) sum_j (2 pi / n_phi) A_m(phi_j) F_ij
        l3max = max(ls_out)
        w_theta = grid.weights.reshape(n_theta, n_phi).sum(1) / (2 * math.pi)  # Gauss-Legendre weights
        self.register_buffer("_phi_out", _phi_tables(l3max, grid.phi)[0].T * (2 * math.pi / n_phi), persistent=False)
        theta_out = _theta_tables(l3max, grid.theta)[:, 0] * w_theta[None, :, None]  # [M3, n_theta, L3+1]
        self.register_buffer("_theta_out", theta_out.transpose(1, 2).contiguous(), persistent=False)
        # read-out: output position (k, u, m) <- Y[m + L3, l_k, field_k, u], times w3[u, k]
        rows = [(m + l3max, l, self._fields.index(int(odd)), u, u * len(ls_out) + k)
                for k, (l, odd) in enumerate(zip(ls_out, odd_out)) for u in range(self.mul) for m in range(-l, l + 1)]
        for d, name in enumerate(("_out_m", "_out_l", "_out_field", "_out_u", "_out_windex")):
            self.register_buffer(name, torch.tensor([r[d] for r in rows], dtype=torch.long), persistent=False)

    # ----------------------------------------------------------------- weights and description
    def split_weights(self, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[..., weight_numel] -> (w1 [..., mul, L1+1], w2 [..., mul, L2+1], w3 [..., mul, len(out)])``."""
        if weight is None:
            if not self.internal_weights:
                raise ValueError(f"{_OWNER}: weights are external; pass weight")
            weight = self.weight
        parts = torch.split(weight, self._split, dim=-1)
        return tuple(p.unflatten(-1, (self.mul, -1)) for p in parts)  # type: ignore[return-value]

    def descriptor(self) -> ProductDescriptor:
        """One weighted path per (i1, i2, i_out): coupling ``"gaunt"`` (even sum) or ``"odd_gaunt"`` (odd
        sum), coefficient 1, mode ``uuu`` (``uvu`` when ``irreps_in2`` has multiplicity 1)."""
        mode = "uuu" if self.mul2 == self.mul else "uvu"
        paths = tuple(Path(i1, i2, k, mode, True, 1.0, "odd_gaunt" if odd else "gaunt")
                      for i1, i2, k, odd in self._paths)  # fmt: skip
        return ProductDescriptor(self.irreps_in1, self.irreps_in2, self.irreps_out, paths)

    def path_weights(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Per-path weights ``w1[u, l1] w2[u, l2] w3[u, i_out]`` in descriptor order:
        ``[..., weight_numel] -> [..., descriptor().weight_numel]`` (each path ``[mul]``, or ``[mul, 1]`` for uvu)."""
        w1, w2, w3 = self.split_weights(weight)
        ls1, ls2 = self.layouts[0].degrees, self.layouts[1].degrees
        return torch.cat([w1[..., ls1[i1]] * w2[..., ls2[i2]] * w3[..., k] for i1, i2, k, _ in self._paths], dim=-1)

    # ----------------------------------------------------------------- forward
    def _synthesis(self, x: torch.Tensor, w: torch.Tensor, i: int) -> torch.Tensor:
        """Input ``x [*b, dim]`` weighted by ``w [*bw, mul, L+1]`` -> its F fields on the grid
        ``[F, n_phi, n_theta, mul, *b']`` (F = 3: f, e_theta . grad f, e_phi . grad f; or F = 1: f)."""
        index, windex = getattr(self, f"_index{i}"), getattr(self, f"_windex{i}")
        X = gather(x, index, True)  # [M, Lp, mul_x, *b]
        X = X * w.flatten(-2).movedim(-1, 0)[windex]  # c[l, m] = w[u, l] x[u, l, m]: [M, Lp, mul, *b']
        theta, phi = getattr(self, f"_theta{i}").to(X.dtype), getattr(self, f"_phi{i}").to(X.dtype)
        M, Lp, rest = X.shape[0], X.shape[1], X.shape[2:]
        g = torch.bmm(theta, X.reshape(M, Lp, -1))  # [M, F n_theta, Z]: sum over l
        F = phi.shape[0]
        g = g.unflatten(1, (F, self.n_theta)).transpose(0, 1).reshape(F, M, -1)  # [F, M, n_theta Z]
        return torch.bmm(phi, g).reshape(F, self.n_phi, self.n_theta, *rest)  # sum over m

    def _forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        per_sample = not self.shared_weights
        batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], weight.shape[:-1] if per_sample else ())
        n = len(batch)
        x1 = x1.reshape((1,) * (n + 1 - x1.dim()) + x1.shape)  # same rank, so batch dimensions align
        x2 = x2.reshape((1,) * (n + 1 - x2.dim()) + x2.shape)
        weight = weight.reshape((1,) * (n + 1 - weight.dim()) + weight.shape)
        w1, w2, w3 = self.split_weights(weight)
        a = self._synthesis(x1, w1, 1)  # [F, n_phi, n_theta, mul, *b]
        b = self._synthesis(x2, w2, 2)
        products = []
        if 0 in self._fields:  # f1 f2
            products.append(a[0] * b[0])
        if 1 in self._fields:  # h = s . (grad f1 x grad f2) = t1 p2 - p1 t2, t = e_theta . grad f, p = e_phi . grad f
            products.append(a[1] * b[2] - a[2] * b[1])
        h = torch.stack(products, dim=0)  # [Fo, n_phi, n_theta, mul, *b'']
        c = self._phi_out.to(h.dtype) @ h.movedim(1, 0).reshape(self.n_phi, -1)  # [M3, Fo n_theta Z]
        c = c.unflatten(1, (len(products), self.n_theta, -1)).transpose(1, 2).reshape(c.shape[0], self.n_theta, -1)
        y = torch.bmm(self._theta_out.to(h.dtype), c)  # [M3, L3+1, Fo Z]
        y = y.reshape(*y.shape[:2], len(products), *h.shape[3:])  # [M3, L3+1, Fo, mul, *b'']
        out = y[self._out_m, self._out_l, self._out_field, self._out_u]  # [out.dim, *b'']
        scale = w3.flatten(-2).movedim(-1, 0)[self._out_windex]  # [out.dim, *bw]
        return (out * scale).movedim(0, -1).expand(*batch, -1).contiguous()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", grid {self.n_theta} x {self.n_phi} (degree {self.grid_degree})"


__all__ = [
    "VectorGauntProduct", "odd_gaunt_coefficients", "odd_gaunt_ratio", "tangent_frame", "solid_harmonic_gradient",
]  # fmt: skip
