"""The Gaunt product of node features with edge harmonics, computed in the edge frame ("gaunt_z").

See :class:`EdgeAlignedGauntProduct`. What it computes is an :class:`EdgeAlignedProgram` (plain arrays:
gather tables, per-order synthesis, the edge function's tables, the projection and the read-out), built by
:func:`edge_aligned_program`; the module runs it with torch ops (rotations by ``so2.EdgeWigner``), and
autograd derives its backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..so3 import Irreps, fourier_basis, spherical_harmonics
from .base import TensorProduct
from .fourier_tables import half_spectrum_projection, half_spectrum_synthesis
from .gaunt_fourier import GauntProduct
from .so2 import EdgeWigner
from .sphere_irreps import check_spherical_product, require_paths, split_weights
from .sphere_programs import theta_factors

METHODS = ("dft", "direct", "quadrature")


@dataclass(frozen=True, eq=False)
class EdgeAlignedProgram:
    """Tables of the edge-frame product: ``index [2K, L1+1, mul]`` (input positions, ``dim`` = zero) and
    ``windex`` (w1 positions) by (row, degree, channel); ``synthesis [2K, N, L1+1]`` (or the half-spectrum
    synthesis for "direct"), ``edge [N, L2+1]``, ``projection [2K, L3+1, N]`` (or ``[K, 2(L3+1), 2(2U+1)]``),
    ``read [(L3+1)^2]`` (dense (l3, m3) -> row of z', the last row zero)."""

    method: str
    index: np.ndarray
    windex: np.ndarray
    synthesis: np.ndarray
    edge: np.ndarray
    projection: np.ndarray
    read: np.ndarray


def edge_aligned_program(layouts, method: str) -> EdgeAlignedProgram:
    """The tables of :class:`EdgeAlignedGauntProduct` (its docstring) for ``layouts = (in1, edge, out)``."""
    in1, in2, out = layouts
    mul = in1.mul
    L1, L2, L3 = in1.lmax, in2.lmax, out.lmax
    K = min(L1, L3) + 1  # orders k = 0..K-1 (the product keeps |m|)
    U = L1 + L2  # u range of the product
    c = np.sqrt(2 * np.arange(L2 + 1) + 1)  # Y_l2(+y) = sqrt(2 l2 + 1) at m = 0 (component normalisation)
    if method == "direct":  # Fourier coefficients: rows k (Re F[u, k]) and K + k (Im F[u, k])
        table, synthesis = half_spectrum_synthesis(L1, K)  # [2K, L1+1], [2K, 2L1+1, L1+1]
        edge = fourier_basis(L2).synthesis[:, 0, :].real.numpy().T * c  # F2[u'] = sum_l2 (w2 c p)[l2 0 u']
        projection = half_spectrum_projection(L3, U, K)  # [K, 2 (L3+1), 2 (2U+1)]
        rows = [(k, (L3 + 1 if m < 0 else 0) + l) for l in range(L3 + 1) for m in range(-l, l + 1) for k in [abs(m)]]
        width = 2 * (L3 + 1)  # z' [K, 2 (L3+1)]: x[l, +k], then x[l, -k]
    else:  # samples in theta: rows k (m = +k) and K + k (m = -k) share Theta[l k]
        ck = np.where(np.arange(L3 + 1) == 0, 2 * np.pi, np.pi)[:, None, None]  # integral of A_m^2 over phi
        if method == "dft":  # N = 2U + 1 equispaced points of the circle
            theta = 2 * np.pi * np.arange(2 * U + 1) / (2 * U + 1)
            # P_k[l3, j] = c_k / N sum_u theta_int[l3 k u] exp(-i u theta_j)
            P = fourier_basis(L3, U).projection.numpy()  # [L3+1, L3+1 (k), 2U+1]
            P_k = np.einsum("lku,uj->klj", P, np.exp(-1j * np.outer(np.arange(-U, U + 1), theta))) / len(theta)
            assert np.abs(P_k.imag).max() < 1e-12
            P_k = ck * P_k.real
        else:  # "quadrature": Gauss-Legendre in cos(theta), exact for degree L1 + L2 + L3
            x, w = np.polynomial.legendre.leggauss((L1 + L2 + L3) // 2 + 1)
            theta = np.arccos(x)
        T = theta_factors(max(L1, L2, L3), theta)[max(L1, L2, L3) :]  # [k >= 0, N, l]
        if method == "quadrature":
            P_k = ck * w[None, None, :] * T[: L3 + 1, :, : L3 + 1].transpose(0, 2, 1)  # [k, l3, N]
        m_row = np.concatenate([np.arange(K), -np.arange(K)])  # order of each row (row K: m = -0, unused)
        l = np.arange(L1 + 1)  # noqa: E741
        table = np.where(
            (l[None] >= np.abs(m_row)[:, None]) & ((m_row != 0) | (np.arange(2 * K) < K))[:, None],
            l * l + l + m_row[:, None],
            -1,
        )
        synthesis = T[np.abs(m_row)][:, :, : L1 + 1]  # [2K, N, L1+1]
        edge = T[0][:, : L2 + 1] * c  # f2(theta_j) = sum_l2 w2 c Theta[l2 0](theta_j)
        projection = P_k[np.abs(m_row)]  # [2K, L3+1, N]
        rows = [(k if m >= 0 else K + k, l) for l in range(L3 + 1) for m in range(-l, l + 1) for k in [abs(m)]]
        width = L3 + 1  # z' [2K, L3+1]
    zero_slot = projection.shape[0] * width  # read-out of dense (l3, m3) from z' (+ a zero slot for |m3| >= K)
    read = [
        r * width + col if abs(m) < K else zero_slot
        for (r, col), m in zip(rows, [m for l in range(L3 + 1) for m in range(-l, l + 1)])
    ]
    index = np.moveaxis(in1.gather_index(table), 0, -1)  # [2K, L1+1, mul] into x' (zero slot: absent)
    windex = np.arange(mul) * (L1 + 1) + np.broadcast_to(np.arange(L1 + 1), table.shape)[..., None]
    return EdgeAlignedProgram(method, index, windex, synthesis, edge, projection, np.array(read, dtype=np.int64))


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous (CPU ``bmm`` falls back to a
    per-matrix loop on the transposed gradients of the row gathers below, far slower)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad.contiguous()


class EdgeAlignedGauntProduct(TensorProduct):
    """Gaunt product of node features with edge harmonics, computed in the edge frame ("gaunt_z").

    Called as ``product(x1, edge_vectors, weight)`` with ``x1 [..., irreps_in1.dim]`` and
    ``edge_vectors [..., 3]`` (direction only); returns ``[..., irreps_out.dim]`` equal to
    ``GauntProduct(irreps_in1, irreps_edge, irreps_out)(x1, Y(edge), weight)`` with
    ``Y = spherical_harmonics(lmax_edge, edge, "component")`` and the same factorised weights
    ``w1 [mul, L1+1], w2 [mul, L2+1], w3 [mul, L3+1]`` (``weight_numel = mul (L1 + L2 + L3 + 3)``).

    Algorithm (Gaunt paper, efficient equivariant convolution). Let ``R_e`` turn the edge onto the
    polar axis +y (``so2.EdgeWigner``, robust at +-y). Then ``Y(R_e r) = Y(+y)`` has m = 0 only, so
    the edge function ``f2 = sum_l2 w2[l2] sqrt(2 l2 + 1) Y[l2 0]`` does not depend on phi and its
    2D Fourier coefficients live in the single column v = 0. The 2D convolution of the Gaunt product
    collapses to one 1D convolution in u per column v of the (rotated) node function f1:

        x'  = D(R_e) x1                                            (rotate into the edge frame)
        F1[u, v] = sum_l w1[l] x'[l, +-v] p[l |v| u] (/2, /2i)     (synthesis, columns |v| <= min(L1, L3))
        H[u, v]  = sum_u' F1[u - u', v] F2[u', 0]                  (1D convolution in u, per column)
        z'[l3, m] = w3[l3] * projection of H onto Y[l3 m]          (only columns v = +-m)
        out = D(R_e)^T z'                                          (rotate back)

    f2 has m = 0, so the product keeps m: column v of f1 only feeds the output orders m = +-v.
    ``method`` says how the 1D convolutions are evaluated (same result to float64 rounding):

    * ``"direct"``: literally as written, on the Fourier coefficients (``conv1d`` with one kernel F2
      per edge and channel), then the projection of the half spectrum (cost ~4 + 8 + 8 L^3).
    * ``"dft"`` (default): by the convolution theorem on the N = 2 (L1 + L2) + 1 equispaced samples
      theta_j = 2 pi j / N of the circle (exact: the product has |u| <= L1 + L2). The DFTs fold into
      the synthesis and the projection, which become real matrices per order k,
      ``s_+-(theta_j) = sum_l Theta[l k](theta_j) w1 x'[l, +-k]`` and
      ``z'[l3, +-k] = sum_j P_k[l3, j] s_+-(theta_j) f2(theta_j)``, ``P_k = c_k Re DFT^-1(theta integrals)``:
      two batched matmuls and one pointwise product (cost ~2 x 8 L^3 multiply-adds, no convolution loop).
    * ``"quadrature"``: the same per-order products and projections, on n = (L1 + L2 + L3) // 2 + 1
      Gauss-Legendre nodes in cos(theta) instead of the N ~ 2.7 n equispaced ones (the integrand of the
      projection, ``Theta[l1 k] Theta[l2 0] Theta[l3 k] sin(theta)``, is a polynomial of degree
      L1 + L2 + L3 in cos(theta)): ``P_k[l3, i] = c_k w_i Theta[l3 k](theta_i)``. The fastest on CPU.

    Cost per edge and channel, L1 = L2 = L3 = L: rotations 2 sum_l (2l+1)^2 ~ (8/3) L^3 plus the above,
    O(L^3); the Wigner blocks cost O(L^4) per edge, shared by the channels. Zero-length edges have no
    direction (NaN output; ``check_finite=True`` raises).
    """

    takes_edge_vectors = True

    def __init__(
        self,
        irreps_in1,
        lmax_edge: int,
        irreps_out,
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        weight_init: str = "ones",
        method: str = "dft",
        check_finite: bool = False,
    ) -> None:
        owner = "EdgeAlignedGauntProduct"
        if not isinstance(lmax_edge, int) or isinstance(lmax_edge, bool) or lmax_edge < 0:
            raise ValueError(f"{owner}: lmax_edge must be a non-negative integer, got {lmax_edge!r}")
        if method not in METHODS:
            raise ValueError(f"{owner}: method must be 'dft', 'direct' or 'quadrature', got {method!r}")
        irreps_edge = Irreps.spherical_harmonics(lmax_edge)
        in1, in2, out = check_spherical_product(irreps_in1, irreps_edge, irreps_out, owner)
        numel = in1.mul * (in1.lmax + in2.lmax + out.lmax + 3)
        super().__init__(in1.irreps, "1x1o", out.irreps, numel, internal_weights, shared_weights, check_finite)
        require_paths((in1, in2, out), owner)
        self.init_weight(weight_init)
        self.irreps_edge, self.lmax_edge, self.layouts, self.mul = irreps_edge, lmax_edge, (in1, in2, out), in1.mul
        self.method = method
        # the same function, for descriptor() / path_weights() (no weights of its own)
        self.reference = GauntProduct(in1.irreps, irreps_edge, out.irreps, internal_weights=False, shared_weights=True)
        self.edge_wigner = EdgeWigner(max(in1.lmax, out.lmax))
        self.executor = "torch"
        self.program = edge_aligned_program(self.layouts, method)
        for name in ("index", "windex", "synthesis", "edge", "projection", "read"):
            value = np.ascontiguousarray(getattr(self.program, name))
            self.register_buffer(f"_{name}", torch.as_tensor(value), persistent=False)

    # ---------------------------------------------------------------------- description
    def descriptor(self):
        """The Gaunt paths of ``GauntProduct(irreps_in1, irreps_edge, irreps_out)``; its second input is
        ``edge_harmonics(edge_vectors)``."""
        return self.reference.descriptor()

    def path_weights(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Factorised weights -> per-path weights ``w1 w2 w3`` (as ``GauntProduct.path_weights``)."""
        if weight is None:
            if not self.internal_weights:
                raise ValueError("EdgeAlignedGauntProduct: weights are external; pass weight to path_weights")
            weight = self.weight
        return self.reference.path_weights(weight)

    def edge_harmonics(self, edge_vectors: torch.Tensor) -> torch.Tensor:
        """``Y(edge) [..., irreps_edge.dim]`` (component normalisation): the second input of ``descriptor()``."""
        return spherical_harmonics(self.lmax_edge, edge_vectors, normalization="component")

    # ---------------------------------------------------------------------- forward
    def forward(self, x1: torch.Tensor, edge_vectors: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``x1 [..., irreps_in1.dim]``, ``edge_vectors [..., 3]`` -> ``[..., irreps_out.dim]``."""
        weight = self._check_inputs(x1, edge_vectors, weight)
        if self.check_finite and not torch.compiler.is_compiling() and edge_vectors.numel() > 0:
            if bool((torch.linalg.vector_norm(edge_vectors, dim=-1) == 0).any()):
                raise ValueError("EdgeAlignedGauntProduct: zero-length edge vector (its direction is undefined)")
        return self._forward(x1, edge_vectors, weight)

    def _forward(self, x1: torch.Tensor, edge_vectors: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        in1, in2, out = self.layouts
        per_sample = not self.shared_weights
        batch = torch.broadcast_shapes(x1.shape[:-1], edge_vectors.shape[:-1], weight.shape[:-1] if per_sample else ())
        n = math.prod(batch)
        x1 = x1.expand(*batch, -1).reshape(n, in1.dim)
        edge = edge_vectors.expand(*batch, -1).reshape(n, 3)
        weight = weight.expand(*batch, -1).reshape(n, self.weight_numel) if per_sample else weight.expand(n, -1)
        if n == 0:  # empty batch: nothing to do (conv1d rejects zero groups)
            return x1.new_zeros(*batch, out.dim) + 0 * (x1.sum() + edge.sum() + weight.sum())
        w1, w2, w3 = split_weights(weight, self.layouts, self.mul)  # [n, mul, L+1]
        wigner = self.edge_wigner(edge / torch.linalg.vector_norm(edge, dim=-1, keepdim=True))

        # 1. into the edge frame: x'[u] = D_l(R_e) x[u] per block
        x_rot = torch.cat(
            [
                (x1[:, sl].unflatten(-1, (mul, ir.dim)) @ wigner[ir.l].transpose(-1, -2)).flatten(-2)
                for (mul, ir), sl in zip(self.irreps_in1, self.irreps_in1.slices())
            ],
            dim=-1,
        )
        # 2. weighted coefficients w1[l] x'[l, m] by row (order k, sign) -> synthesis A [2K, n_u or N, Z], Z = (mul, n)
        # (gathers read rows of contiguous [dim, n] copies: ~5x faster than strided columns)
        x_rows = torch.nn.functional.pad(_ContiguousGrad.apply(x_rot), (0, 1)).T.contiguous()  # [dim + zero slot, n]
        X = x_rows[self._index] * w1.flatten(-2).T.contiguous()[self._windex]  # [2K, L1+1, mul, n]
        A = torch.bmm(self._synthesis.to(X.dtype), X.flatten(2))
        # 3. the edge function (coefficients F2[u'] or samples f2(theta_j)), real: [n_y or N, Z]
        F2 = self._edge.to(X.dtype) @ w2.permute(2, 1, 0).reshape(in2.lmax + 1, -1)
        # 4. 1D convolution in u of every column with F2, and projection onto Y[l3, +-k]
        if self.method == "direct":
            H = _convolve_columns(A, F2)  # [2K, 2U+1, Z]: Re H, then Im H
            K = H.shape[0] // 2
            z = torch.bmm(
                self._projection.to(H.dtype), H.unflatten(0, (2, K)).transpose(0, 1).reshape(K, -1, H.shape[-1])
            )
        else:
            z = torch.bmm(self._projection.to(A.dtype), A * F2)  # convolution theorem: pointwise on the samples
        z = torch.cat([z.reshape(-1, self.mul, n), z.new_zeros(1, self.mul, n)])  # [rows + zero slot, mul, n]
        z = z[self._read]  # dense z'[l3 m3] [(L3+1)^2, mul, n]
        # 5. weights w3, then back to the lab frame: out[u] = D_l3^T z'[u], per output block
        pieces = []
        for mul, ir in self.irreps_out:
            l3 = ir.l
            block = z[l3 * l3 : (l3 + 1) ** 2].permute(2, 1, 0) * w3[:, :, l3, None]  # [n, mul, 2l+1]
            pieces.append((block.contiguous() @ wigner[l3]).flatten(-2))  # (bmm is slow on permuted strides)
        return torch.cat(pieces, dim=-1).reshape(*batch, out.dim)

    def extra_repr(self) -> str:
        return (
            f"{self.irreps_in1} x Y(edge, lmax={self.lmax_edge}) -> {self.irreps_out}, "
            f"weight_numel={self.weight_numel}, method={self.method!r}"
        )


def _convolve_columns(A: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    """Full 1D linear convolution over the second dimension: ``H[s, i, z] = sum_j A[s, i - j, z] F[j, z]``.

    ``A [S, n_a, Z]``, ``F [n_f, Z]`` (one kernel per z) -> ``[S, n_a + n_f - 1, Z]``; centred inputs give
    a centred output. A depthwise ``conv1d`` (cross-correlation, hence the flipped kernel).
    """
    n_f, Z = F.shape
    out = torch.nn.functional.conv1d(A.permute(0, 2, 1), F.T.flip(-1).unsqueeze(1), padding=n_f - 1, groups=Z)
    return out.permute(0, 2, 1)


__all__ = ["EdgeAlignedGauntProduct", "EdgeAlignedProgram", "edge_aligned_program"]
