"""Gaunt convolution summed on the sphere grid: synthesis per node, projection per node, not per edge.

With ``radial_weights="edge"`` (``nn.convolution``) the node-side and output-side weights ``w1[u, l1]``,
``w3[u, l3]`` are shared by all edges; only ``w2[e, u, l2]`` depends on the edge. The Gaunt convolution

    out_i[u, l3 m3] = w3[u, l3] / n_avg  sum_{j -> i} < Y[l3 m3],  f_j[u] g_ij[u] >,
    f_j[u](s)  = sum_{l1 m1} w1[u, l1] x_j[u, l1 m1] Y[l1 m1](s)                        (node function)
    g_ij[u](s) = sum_{l2} w2[e, u, l2] sum_{m2} Yc[l2 m2](r_ij) Y[l2 m2](s)             (edge kernel)

(``Y`` orthonormal, ``Yc`` the component-normalised edge harmonics, ``< , >`` the integral over the
sphere) is linear in the messages, so the sum over neighbours can be taken on the grid *before* the
projection. On the Gauss-Legendre x uniform grid of degree L1 + L2 + L3 (exact, ``so3.grids``) with P
points:

    F = (w1 X) Y1^T                  [N, mul, P]      once per node     O(N mul L1^2 P)
    K = per l2: Yc_l2(r) Y_l2^T      [E, L2+1, P]     once per edge     O(E L2^2 P)
    G = w2 K                         [E, mul, P]                        O(E mul L2 P)
    S = sum_{j -> i} F_j * G_ij      [N, mul, P]      index_add         O(E mul P)
    out = w3 (S (W Y3))              [N, mul, (L3+1)^2] once per node   O(N mul L3^2 P)

instead of a synthesis and a projection per edge (O(E mul (L1^2 + L3^2) P)). P ~ (L1+L2+L3)^2 / 2.
The result is the same function as ``EquivariantConvolution(product="grid", radial_weights="edge")``
computed edge by edge (tested to 1e-12).

The per-edge part, ``K``, ``G`` and the sum ``S``, is the slot-1 gradient of the multilinear form of
``products.grid_messages`` (slot 0 is its transpose, slots 2 and 3 give the gradients of ``w2`` and the
edge harmonics), run by the executor of ``executor=`` (``products.GridMessages``: "auto" picks the fused
C++ kernel on CPU tensors, Triton on CUDA), so that forces and force training run fused too. The node
stages (``F`` and the projection) are matmuls of size ``[N mul, ...]``, left to torch.
"""

from __future__ import annotations

import math

import torch

from ..products import GridMessages, parse_spherical_irreps
from ..so3 import spherical_grid, spherical_harmonics


def _dense_order(irreps_layout) -> torch.Tensor:
    """For a complete ``mul x (0..L)`` layout: index into ``[..., dim]`` giving ``[..., mul, (L+1)^2]``."""
    mul, L = irreps_layout.mul, irreps_layout.lmax
    index = torch.empty(mul, (L + 1) ** 2, dtype=torch.long)
    for l in range(L + 1):  # noqa: E741
        start = irreps_layout.offsets[l]
        block = torch.arange(mul * (2 * l + 1)).reshape(mul, 2 * l + 1) + start
        index[:, l * l : (l + 1) ** 2] = block
    return index


class GridConvolution(torch.nn.Module):
    """Executor of the grid-summed Gaunt convolution (module docstring).

    ``irreps_node = mul x (0..L1)``, ``irreps_out = mul x (0..L3)`` (complete, one sign each), edge
    harmonics to ``lmax_edge``. Call with ``x [N, node.dim]``, ``edge_index [2, E]``, ``edge_sh [E,
    (L2+1)^2]`` (component normalised), ``w1 [mul, L1+1]``, ``w2 [E, mul, L2+1]``, ``w3 [mul, L3+1]``;
    returns the un-normalised sum ``[N, out.dim]``. ``executor``: of the per-edge sum (module docstring);
    ``self.executor`` names the choice for CPU tensors.
    """

    def __init__(self, irreps_node, lmax_edge: int, irreps_out, executor: str = "auto") -> None:
        super().__init__()
        owner = "GridConvolution"
        self.node = parse_spherical_irreps(irreps_node, "irreps_node", owner)
        self.out = parse_spherical_irreps(irreps_out, "irreps_out", owner)
        if not (self.node.complete and self.out.complete) or self.node.mul != self.out.mul:
            raise ValueError(
                f"{owner}: needs complete mul x (0..L) irreps of one mul, got {self.node.irreps} -> {self.out.irreps}"
            )
        L1, L2, L3 = self.node.lmax, lmax_edge, self.out.lmax
        self.lmax_edge = L2
        grid = spherical_grid(L1 + L2 + L3)
        points, weights = grid.points, grid.weights
        self.register_buffer(
            "_y1", spherical_harmonics(L1, points, "integral").T.contiguous(), persistent=False
        )  # [(L1+1)^2, P]
        self.register_buffer("_y2", spherical_harmonics(L2, points, "integral"), persistent=False)  # [P, (L2+1)^2]
        self.register_buffer(
            "_y3w", (spherical_harmonics(L3, points, "integral") * weights[:, None]).contiguous(), persistent=False
        )  # [P, (L3+1)^2]
        self.register_buffer("_in_index", _dense_order(self.node), persistent=False)
        out_index = _dense_order(self.out)  # output position -> (u, l3 m3): invert the gather
        inverse = torch.empty(self.out.dim, dtype=torch.long)
        inverse[out_index.reshape(-1)] = torch.arange(out_index.numel())
        self.register_buffer("_out_index", inverse, persistent=False)
        self.register_buffer(
            "_deg1", torch.repeat_interleave(torch.arange(L1 + 1), 2 * torch.arange(L1 + 1) + 1), persistent=False
        )
        self.register_buffer(
            "_deg3", torch.repeat_interleave(torch.arange(L3 + 1), 2 * torch.arange(L3 + 1) + 1), persistent=False
        )
        self.num_points = points.shape[0]
        self.messages = GridMessages(executor)
        self.executor = self.messages.executor

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        w1: torch.Tensor,
        w2: torch.Tensor,
        w3: torch.Tensor,
    ) -> torch.Tensor:
        N, dtype = x.shape[0], x.dtype
        if self.node.lmax == 0 and self.out.lmax <= self.lmax_edge:
            return self._scalar_nodes(x, edge_index, edge_sh, w1, w2, w3)
        X = x[:, self._in_index] * w1[:, self._deg1]  # [N, mul, (L1+1)^2]
        F = X @ self._y1.to(dtype)  # [N, mul, P]
        # S[i] = sum_{e: j -> i} F[j] * (w2 K)[e]: slot 1 of the grid-messages form
        y2 = self._y2.to(dtype)
        S = self.messages(1, F, None, w2, edge_sh, y2, edge_index[0], edge_index[1], N)  # [N, mul, P]
        Z = (S @ self._y3w.to(dtype)) * w3[:, self._deg3]  # [N, mul, (L3+1)^2]
        return Z.flatten(1)[:, self._out_index]  # (flatten: reshape(N, -1) fails at N = 0)

    def _scalar_nodes(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        w1: torch.Tensor,
        w2: torch.Tensor,
        w3: torch.Tensor,
    ) -> torch.Tensor:
        """Scalar node features (L1 = 0, e.g. a potential's first block): f_j = w1 x_j Y00 is constant on the
        sphere, so projecting f_j g_ij onto Y[l3 m3] just reads g_ij's own coefficient (orthonormality):

            out_i[u, l3 m3] = w3[u, l3] w1[u, 0] / sqrt(4 pi) sum_{j -> i} x_j[u] w2[e, u, l3] Yc[l3 m3](r_ij)

        (needs L3 <= L2): no grid. The sum is the grid-messages form on an "identity grid" of (L3+1)^2 points,
        ``y2 = I``: then ``k[e, l3, p] = Yc[e, p]`` for p in degree l3's block, and slot 1 with the node function
        ``f[j, u, p] = x_j[u]`` (constant in p) is the sum above, on the same executor as the grid path."""
        N, L3 = x.shape[0], self.out.lmax
        n = (L3 + 1) ** 2
        f = x[:, :, None].expand(N, x.shape[1], n)  # x: [N, mul] (mul x 0e), the same value at every "point"
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        w2, sh = w2[:, :, : L3 + 1], edge_sh[:, :n]
        S = self.messages(1, f, None, w2, sh, eye, edge_index[0], edge_index[1], N)  # [N, mul, (L3+1)^2]
        Z = S * (w3[:, self._deg3] * w1[:, :1] / math.sqrt(4 * math.pi))
        return Z.flatten(1)[:, self._out_index]


__all__ = ["GridConvolution"]
