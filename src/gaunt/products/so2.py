"""eSCN's edge-aligned "SO(2) convolution" (Passaro & Zitnick 2023) of node features with an edge.

``SO2Product(irreps_in1, irreps_out, lmax_edge)`` is called as ``product(x1, edge_vectors, weight)``
with ``x1: [..., irreps_in1.dim]`` and ``edge_vectors: [..., 3]`` (only the direction is used), and
returns ``[..., irreps_out.dim]``. It computes *exactly* the channel-wise Clebsch-Gordan product of
x1 with the edge's spherical harmonics ``Y = so3.spherical_harmonics(lmax_edge, edge, "component")``
(irreps ``0e + 1o + 2e + ...``): for every input block ``u x l1``, every edge degree l2 and every
output block of the same multiplicity with ``l3`` allowed by the triangle and parity rules, one
``uvu`` path with one weight per (path, channel) and e3nn's normalisation (``descriptor()`` lists
them; equal to ``CGProduct`` / e3nn's ``o3.TensorProduct`` with these instructions).

Algorithm. Let ``R_e`` be a rotation taking the edge direction n onto the polar axis +y of e3nn's
harmonics. By invariance of the CG tensor,

    out = D(R_e)^T  f( D(R_e) x1,  Y(+y) ),        Y_l2(+y) = sqrt(2 l2 + 1) e_{m=0}.

In the edge frame only the m2 = 0 column of each CG tensor survives, and ``C[m1, 0, m3]`` vanishes
unless ``|m1| = |m3|`` (real basis: diagonal for even l1+l2+l3, antisymmetric in +-m for odd), so
the product is a linear map that is block diagonal in |m| -- at most two inputs per output
component. Summed over l2 with the weights this is the "SO(2) convolution"

    x'_out[u, l3, +-m] = sum_{l1, s=+-} K_u[(l1, s m) -> (l3, +-m)] x'_1[u, l1, s m],
    K_u = sum_{l2} w_{l1 l2 l3}[u] c_path sqrt(2 l2 + 1) C^{l1 l2 l3}[., m2=0, .],

stored as a sparse list of (input component, output component) pairs built once from
``so3.clebsch_gordan``. The rotation ``R_e`` and its Wigner blocks come from ``EdgeWigner`` (two
Euler angles, sparse turns about y and a constant matrix per degree; robust at the poles +-y).
Cost per edge: forming ``D_l(R_e)`` O(L^4) (independent of the multiplicities), then per channel two
rotations O(L^3) and the SO(2) map O(L^3) -- instead of O(L^6) for a dense CG contraction.

Zero-length edges have no direction: with ``check_finite=True`` they raise ``ValueError``; without
it (no device sync) their outputs are NaN.
"""

from __future__ import annotations

import math

import torch

from ..so3 import Irreps, clebsch_gordan, spherical_harmonics, wigner_d
from .base import TensorProduct
from .cg import CGProduct
from .descriptor import ProductDescriptor


class EdgeWigner(torch.nn.Module):
    """Wigner blocks ``D_l(R_e)``, l = 0..lmax, of a rotation ``R_e`` taking each edge direction onto +y.

    With e3nn's Euler convention ``R = R_y(alpha) R_x(beta) R_y(gamma)`` and a unit vector
    ``n = (sin b sin a, cos b, sin b cos a) = R_y(a) R_x(b) y``, the rotation ``R_e = R_x(-b) R_y(-a)``
    takes n to y, and

        D_l(R_e) = J_l Z_l(-b) J_l Z_l(-a),    Z_l(t)[m] x = cos(m t) x_m - sin(m t) x_{-m},

    where ``Z_l(t) = D_l(R_y(t))`` is sparse (y is the polar axis: it only mixes +-m) and
    ``J_l = D_l(P)`` for the fixed half turn ``P: (x, y, z) -> (y, x, -z)``, which conjugates a turn
    about y into the same turn about x (``R_x(t) = P R_y(t) P``). Two constant dense products per l:
    O(l^3) per edge, no quadrature, no angles (only ``cos, sin`` of multiples, by complex powers).

    Charts: a and b need ``rho = sqrt(n_x^2 + n_z^2) > 0``. Edges with ``|n_y| > 1/sqrt 2`` are first
    mapped by P (``m = P n`` has ``|m_y| = |n_x| < 1/sqrt 2``) and use ``R_e = R(m) P``, i.e. an extra
    factor ``J_l`` on the right. Then ``rho >= 1/sqrt 2`` always: no NaN at +-y, smooth (twice
    differentiable) within each chart, and the product does not depend on the chart (any R_e with
    ``R_e n = y`` gives the same result), so its gradients are exact everywhere.
    """

    def __init__(self, lmax: int) -> None:
        super().__init__()
        self.lmax = lmax
        half_turn = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
        for l in range(lmax + 1):
            self.register_buffer(f"j{l}", wigner_d(l, half_turn), persistent=False)  # J_l = D_l(P)
        m = torch.arange(-lmax, lmax + 1)
        self.register_buffer("abs_m", m.abs(), persistent=False)
        self.register_buffer("sign_m", m.sign().to(torch.float64), persistent=False)

    def _multiples(self, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos(m t), sin(m t)`` for m = -lmax..lmax, ``[..., 2 lmax + 1]``, from ``(c, s) = (cos t, sin t)``
        by the recursion ``cos (k+1)t + i sin (k+1)t = (cos kt + i sin kt)(c + i s)``."""
        cos_k, sin_k = [torch.ones_like(c)], [torch.zeros_like(c)]
        for _ in range(self.lmax):
            cos_prev, sin_prev = cos_k[-1], sin_k[-1]
            cos_k.append(cos_prev * c - sin_prev * s)
            sin_k.append(sin_prev * c + cos_prev * s)
        cos_k, sin_k = torch.stack(cos_k, dim=-1), torch.stack(sin_k, dim=-1)
        return cos_k[..., self.abs_m], sin_k[..., self.abs_m] * self.sign_m.to(c.dtype)

    def forward(self, directions: torch.Tensor) -> list[torch.Tensor]:
        """Unit vectors ``[..., 3]`` -> ``[D_0(R_e), ..., D_lmax(R_e)]``, each ``[..., 2l+1, 2l+1]``."""
        x, y, z = directions.unbind(-1)
        polar = y.abs() > 2**-0.5  # chart B: use m = P n = (y, x, -z)
        mx, my, mz = torch.where(polar, y, x), torch.where(polar, x, y), torch.where(polar, -z, z)
        rho = torch.sqrt(mx * mx + mz * mz)  # >= 1/sqrt(2)
        cos_a, sin_a = self._multiples(mz / rho, mx / rho)  # azimuth a of m about y
        cos_b, sin_b = self._multiples(my, rho)  # polar angle b of m from y
        blocks = []
        for l in range(self.lmax + 1):
            j = getattr(self, f"j{l}").to(directions.dtype)
            sl = slice(self.lmax - l, self.lmax + l + 1)
            ca, sa, cb, sb = cos_a[..., sl, None], sin_a[..., sl, None], cos_b[..., sl, None], sin_b[..., sl, None]
            eye = torch.eye(2 * l + 1, dtype=directions.dtype, device=directions.device)
            # Z(-t) X = cos(m t) X[m] + sin(m t) X[-m]  (rows), applied to I (chart A) or J (chart B)
            right = torch.where(polar[..., None, None], ca * j + sa * j.flip(0), ca * eye + sa * eye.flip(0))
            left = j @ right
            blocks.append(j @ (cb * left + sb * left.flip(-2)))
        return blocks


def edge_frame(directions: torch.Tensor) -> torch.Tensor:
    """The rotation ``R_e [..., 3, 3]`` used by ``SO2Product`` (``R_e n = y``): ``D_1`` of ``EdgeWigner``
    (e3nn's l = 1 basis is (x, y, z), so ``D_1(R) = R``)."""
    return EdgeWigner(1).to(directions.device)(directions)[1]


def so2_instructions(irreps_in1: Irreps, irreps_edge: Irreps, irreps_out: Irreps) -> list[tuple]:
    """Every allowed channel-wise path ``(i1, i2, i_out, "uvu", True)``: ``ir_out in ir1 x ir2`` and
    ``mul_out == mul1``, ordered by i1, then i2, then i_out."""
    return [
        (i1, i2, i_out, "uvu", True)
        for i1, (mul1, ir1) in enumerate(irreps_in1)
        for i2, (_, ir2) in enumerate(irreps_edge)
        for i_out, (mul_out, ir_out) in enumerate(irreps_out)
        if ir_out in ir1 * ir2 and mul_out == mul1
    ]


class SO2Product(TensorProduct):
    """Channel-wise CG product of node features with edge harmonics, evaluated in the edge frame.

    Args:
        irreps_in1: node-feature irreps (x1 is ``[..., irreps_in1.dim]``).
        irreps_out: output irreps; each block needs the multiplicity of the input blocks feeding it
            and must be reachable by at least one path.
        lmax_edge: largest degree of the edge harmonics (``irreps_edge = 0e + 1o + ... + lmax_edge``).
        irrep_normalization, path_normalization: as e3nn / ``CGProduct`` (defaults "component", "element").
        internal_weights, shared_weights, check_finite: see ``base.TensorProduct``; ``check_finite``
            also rejects zero-length edges.

    Weights ``[weight_numel]`` (or ``[..., weight_numel]``): one per (path, channel), paths in
    ``self.instructions`` order, i.e. e3nn's flat layout for these ``uvu`` instructions.
    """

    takes_edge_vectors = True
    executor = "torch"

    def __init__(
        self,
        irreps_in1,
        irreps_out,
        lmax_edge: int,
        irrep_normalization: str = "component",
        path_normalization: str = "element",
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        check_finite: bool = False,
    ) -> None:
        if not isinstance(lmax_edge, int) or isinstance(lmax_edge, bool) or lmax_edge < 0:
            raise ValueError(f"SO2Product: lmax_edge must be a non-negative integer, got {lmax_edge!r}")
        irreps_in1, irreps_out = Irreps(irreps_in1), Irreps(irreps_out)
        irreps_edge = Irreps.spherical_harmonics(lmax_edge)
        instructions = so2_instructions(irreps_in1, irreps_edge, irreps_out)
        reached = {ins[2] for ins in instructions}
        missing = [f"{mul}x{ir}" for i, (mul, ir) in enumerate(irreps_out) if mul > 0 and i not in reached]
        if missing:
            raise ValueError(
                f"SO2Product: output irreps {missing} cannot be reached from {irreps_in1} x {irreps_edge} "
                "(triangle/parity rule, or no input block of the same multiplicity)"
            )
        if not instructions:
            raise ValueError(f"SO2Product: no path from {irreps_in1} x {irreps_edge} to {irreps_out} (empty irreps?)")
        # The exact function: e3nn's channel-wise CG product with the edge harmonics as second input.
        self._descriptor = CGProduct(
            irreps_in1,
            irreps_edge,
            irreps_out,
            instructions,
            irrep_normalization=irrep_normalization,
            path_normalization=path_normalization,
            internal_weights=False,
            shared_weights=True,
        ).descriptor()
        super().__init__(
            irreps_in1,
            "1x1o",
            irreps_out,
            self._descriptor.weight_numel,
            internal_weights,
            shared_weights,
            check_finite,
        )
        self.lmax_edge = lmax_edge
        self.irreps_edge = irreps_edge
        self.instructions = instructions
        self._build_so2_map()
        self.lmax_rot = max([ir.l for _, ir in irreps_in1] + [ir.l for _, ir in irreps_out])
        self.edge_wigner = EdgeWigner(self.lmax_rot)

    # ------------------------------------------------------------------ construction
    def _build_so2_map(self) -> None:
        """Sparse edge-frame map: entries e = (path, channel, m-pair) grouped into blocks b = unique
        (input component, output component); ``kernel[b] = sum_{e in b} w[entry_weight[e]] entry_value[e]``."""
        d = self._descriptor
        s1, so = self.irreps_in1.slices(), self.irreps_out.slices()
        pieces = []  # (input index, output index, weight index, value) per entry
        for path, wslice in zip(d.paths, d.weight_slices()):
            (mul, ir1), (_, ir2), (_, ir3) = d.irreps(path)
            l1, l2, l3 = ir1.l, ir2.l, ir3.l
            # Y_l2(+y) = sqrt(2 l2 + 1) at m2 = 0 (component normalisation): keep the C[:, m2=0, :] slice
            k = path.coefficient * math.sqrt(2 * l2 + 1) * clebsch_gordan(l1, l2, l3)[:, l2, :]
            i, o = torch.nonzero(k.abs() > 1e-13, as_tuple=True)
            if not bool(((i - l1).abs() == (o - l3).abs()).all()):  # pragma: no cover - a bug in so3 would show here
                raise AssertionError(f"CG({l1},{l2},{l3})[:, m2=0, :] is not block diagonal in |m|")
            u = torch.arange(mul)[:, None]
            pieces.append(
                (
                    (s1[path.i_in1].start + u * ir1.dim + i).reshape(-1),
                    (so[path.i_out].start + u * ir3.dim + o).reshape(-1),
                    (wslice.start + u).expand(-1, len(i)).reshape(-1),  # uvu weight (mul1, mul2 = 1): index u
                    k[i, o].expand(mul, -1).reshape(-1),
                )
            )
        ins, outs, ws, vals = (torch.cat(t) for t in zip(*pieces))
        keys, block = torch.unique(ins * self.irreps_out.dim + outs, return_inverse=True)
        self.register_buffer("entry_weight", ws, persistent=False)
        self.register_buffer("entry_value", vals.to(torch.float64), persistent=False)
        self.register_buffer("entry_block", block, persistent=False)
        self.register_buffer("block_in", keys // self.irreps_out.dim, persistent=False)
        self.register_buffer("block_out", keys % self.irreps_out.dim, persistent=False)

    # ------------------------------------------------------------------ description
    def descriptor(self) -> ProductDescriptor:
        """The equivalent channel-wise CG paths, with the edge harmonics ``irreps_edge`` as second input."""
        return self._descriptor

    def edge_harmonics(self, edge_vectors: torch.Tensor) -> torch.Tensor:
        """``Y(edge) [..., irreps_edge.dim]``: the second input of ``descriptor()`` (component normalisation)."""
        return spherical_harmonics(self.lmax_edge, edge_vectors, normalization="component")

    # ------------------------------------------------------------------ forward
    def forward(self, x1: torch.Tensor, edge_vectors: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``x1 [..., irreps_in1.dim]``, ``edge_vectors [..., 3]`` -> ``[..., irreps_out.dim]``."""
        if not isinstance(edge_vectors, torch.Tensor) or edge_vectors.dim() == 0 or edge_vectors.shape[-1] != 3:
            shape = tuple(edge_vectors.shape) if isinstance(edge_vectors, torch.Tensor) else type(edge_vectors).__name__
            raise ValueError(f"SO2Product: edge_vectors must have shape [..., 3], got {shape}")
        weight = self._check_inputs(x1, edge_vectors, weight)
        if self.check_finite and not torch.compiler.is_compiling() and edge_vectors.numel() > 0:
            if bool((torch.linalg.vector_norm(edge_vectors, dim=-1) == 0).any()):
                raise ValueError("SO2Product: zero-length edge vector (its direction is undefined)")
        return self._forward(x1, edge_vectors, weight)

    def _forward(self, x1: torch.Tensor, edge_vectors: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        n = edge_vectors / torch.linalg.vector_norm(edge_vectors, dim=-1, keepdim=True)
        wigner = self.edge_wigner(n)  # D_l(R_e): [..., 2l+1, 2l+1], R_e n = +y

        # 1. into the edge frame, per block: x'[u] = D_l1 x[u]  ([..., mul, 2l+1] @ D^T)
        x_rot = torch.cat(
            [
                (x1[..., sl].unflatten(-1, (mul, ir.dim)) @ wigner[ir.l].transpose(-1, -2)).flatten(-2)
                for (mul, ir), sl in zip(self.irreps_in1, self.irreps_in1.slices())
            ],
            dim=-1,
        )

        # 2. SO(2) convolution: kernel per (input, output) component pair, summed over l2 and paths
        assert weight is not None  # weight_numel > 0: every output block has a path
        values = weight.index_select(-1, self.entry_weight) * self.entry_value.to(x1.dtype)
        kernel = values.new_zeros(values.shape[:-1] + self.block_in.shape).index_add(-1, self.entry_block, values)
        terms = x_rot.index_select(-1, self.block_in) * kernel  # (index_select: much faster than x[..., idx])
        out_rot = terms.new_zeros(terms.shape[:-1] + (self.irreps_out.dim,)).index_add(-1, self.block_out, terms)

        # 3. back to the lab frame: out[u] = D_l3^T out'[u]
        return torch.cat(
            [
                (out_rot[..., sl].unflatten(-1, (mul, ir.dim)) @ wigner[ir.l]).flatten(-2)
                for (mul, ir), sl in zip(self.irreps_out, self.irreps_out.slices())
            ],
            dim=-1,
        )

    def extra_repr(self) -> str:
        edge = f"Y(edge, lmax={self.lmax_edge})"
        return f"{self.irreps_in1} x {edge} -> {self.irreps_out}, weight_numel={self.weight_numel}"


__all__ = ["SO2Product", "EdgeWigner", "edge_frame", "so2_instructions"]
