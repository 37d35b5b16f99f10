"""Executor of path descriptors: any ``ProductDescriptor`` (any coupling kind), equal to ``dense_product``.

``CGProduct`` runs on it, and any product that can state its paths can too (the descriptor is what it
computes, this module is how). See :class:`PathExecutor` for the grouping of paths into matmuls.
"""

from __future__ import annotations

import math

import torch

from .descriptor import ProductDescriptor


class PathExecutor(torch.nn.Module):
    """Fast evaluation of any :class:`ProductDescriptor` (any coupling kind), equal to ``dense_product``.

    Paths are grouped by input pair and family, ``(i_in1, i_in2, "uv" | "uu")``; the couplings
    ``coefficient * C`` of a group are concatenated along the output index into ``C_cat[i, j, K]``,
    precomputed once (one flat float64 buffer, cast to the input dtype per call). Per group, one
    contraction gives all its paths at once,

        "uv" paths (uvw, uvu, uvv):  T[z, u, v, K] = sum_ij C_cat[i, j, K] x1[z, u, i] x2[z, v, j]
        "uu" paths (uuw, uuu):       T[z, u, K]    = sum_ij C_cat[i, j, K] x1[z, u, i] x2[z, u, j]

    either as the outer products ``x1_i x2_j`` times ``C_cat`` flattened to ``[K, i*j]`` (one matmul,
    result stored K-major ``T[K, z, ...]``; used for "uu" and when u or v is 1), or, for "uv" with
    both multiplicities > 1, as ``(x1 @ C_cat)`` followed by a batched matmul with x2 (``T[z, u, K, v]``).
    Each path then contracts its slice ``T[k0:k1]`` with its weights in one einsum. No channel loops.
    """

    executor = "torch"

    def __init__(self, descriptor: ProductDescriptor, per_sample_weights: bool) -> None:
        super().__init__()
        d = self.descriptor = descriptor
        self.per_sample_weights = per_sample_weights
        zw = "z" if per_sample_weights else ""
        groups: dict[tuple[int, int, str], list] = {}
        for path, wslice in zip(d.paths, d.weight_slices()):
            (mul1, _), (mul2, _), (mul3, _) = d.irreps(path)
            if mul1 * mul2 * mul3 > 0:  # empty paths contribute nothing (and own no weights)
                groups.setdefault((path.i_in1, path.i_in2, path.mode[:2]), []).append((path, wslice))
        tensors, offset, self._groups = [], 0, []
        for (i1, i2, family), members in groups.items():
            (mul1, ir1), (mul2, ir2) = d.irreps_in1[i1], d.irreps_in2[i2]
            c = torch.cat([p.coefficient * d.coupling_tensor(p, torch.float64) for p, _ in members], dim=2)
            if family == "uu":
                layout = "kzu"
            else:
                layout = "kzuv" if mul1 == 1 or mul2 == 1 else "zukv"
            if layout == "zukv":
                c = c.permute(0, 2, 1).reshape(ir1.dim, -1)  # [i, (K j)]
            else:
                c = c.reshape(ir1.dim * ir2.dim, -1).T  # [K, (i j)]
            paths, k0 = [], 0
            for p, wslice in members:
                k = d.irreps_out[p.i_out].ir.dim
                w = None if wslice is None else (wslice.start, wslice.stop, d.path_weight_shape(p))
                eq = _weight_equation(layout, p.mode, p.has_weight, zw)
                paths.append((p.i_out, k0, k, d.irreps_out[p.i_out].mul, eq, w))
                k0 += k
            self._groups.append((i1, i2, layout, offset, tuple(c.shape), (mul1, ir1.dim, mul2, ir2.dim, k0), paths))
            tensors.append(c.reshape(-1))
            offset += c.numel()
        flat = torch.cat(tensors) if tensors else torch.zeros(0, dtype=torch.float64)
        self.register_buffer("coupling_coefficients", flat, persistent=False)
        self._slices1, self._slices2 = d.irreps_in1.slices(), d.irreps_in2.slices()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """``x1 [..., in1.dim]``, ``x2 [..., in2.dim]``, weight ``[n]`` (shared) or ``[..., n]`` (per
        sample, as built) -> ``[..., out.dim]``; inputs are assumed checked (see ``TensorProduct``)."""
        d = self.descriptor
        per_sample = weight is not None and self.per_sample_weights
        shapes = [x1.shape[:-1], x2.shape[:-1]] + ([weight.shape[:-1]] if per_sample else [])
        batch = torch.broadcast_shapes(*shapes)
        z = math.prod(batch)
        x1 = x1.expand(*batch, -1).reshape(z, d.irreps_in1.dim)
        x2 = x2.expand(*batch, -1).reshape(z, d.irreps_in2.dim)
        if per_sample:
            weight = weight.expand(*batch, -1).reshape(z, weight.shape[-1])
        coefficients = self.coupling_coefficients.to(dtype=x1.dtype)
        s1, s2 = self._slices1, self._slices2
        n_out = len(d.irreps_out)
        k_major: list[torch.Tensor | None] = [None] * n_out  # partial outputs [k, z, mul]
        z_major: list[torch.Tensor | None] = [None] * n_out  # partial outputs [z, mul, k]
        for i1, i2, layout, offset, cshape, (u, i, v, j, big_k), paths in self._groups:
            a = x1[:, s1[i1]].reshape(z, u, i)
            b = x2[:, s2[i2]].reshape(z, v, j)
            c = coefficients[offset : offset + cshape[0] * cshape[1]].reshape(cshape)
            if layout == "kzu":  # outer[z, u, i, j] = x1[z, u, i] x2[z, u, j]; T = C @ outer
                t = (c @ (a.unsqueeze(-1) * b.unsqueeze(-2)).reshape(z * u, i * j).T).reshape(big_k, z, u)
            elif layout == "kzuv":  # outer[z, u, v, i, j] = x1[z, u, i] x2[z, v, j]; T = C @ outer
                outer = a[:, :, None, :, None] * b[:, None, :, None, :]
                t = (c @ outer.reshape(z * u * v, i * j).T).reshape(big_k, z, u, v)
            else:  # "zukv": (x1 @ C)[z, u, K, j], then a batched matmul with x2[z, v, j]
                t = ((a.reshape(z * u, i) @ c).reshape(z, u * big_k, j) @ b.transpose(1, 2)).reshape(z, u, big_k, v)
            for i_out, k0, k, mul_out, eq, w in paths:
                operands = [t[k0 : k0 + k] if layout[0] == "k" else t[:, :, k0 : k0 + k]]
                if w is not None:
                    wp = weight[..., w[0] : w[1]]
                    operands.append(wp.reshape(*wp.shape[:-1], *w[2]))
                term = torch.einsum(eq, *operands)
                acc = k_major if layout[0] == "k" else z_major
                term = term.reshape((k, z, mul_out) if layout[0] == "k" else (z, mul_out, k))
                acc[i_out] = term if acc[i_out] is None else acc[i_out] + term
        pieces = []
        for ko, zo, mul_ir in zip(k_major, z_major, d.irreps_out):
            piece = x1.new_zeros(z, mul_ir.mul, mul_ir.ir.dim) if zo is None else zo
            pieces.append((piece if ko is None else piece + ko.permute(1, 2, 0)).reshape(z, mul_ir.dim))
        out = torch.cat(pieces, dim=-1) if pieces else x1.new_zeros(z, 0)
        return out.reshape(*batch, d.irreps_out.dim)


def _weight_equation(layout: str, mode: str, has_weight: bool, zw: str) -> str:
    """einsum contracting a group slice (``layout`` kzuv, zukv or kzu) with one path's weights,
    giving ``[k, z, mul_out]`` (k-major layouts) or ``[z, mul_out, k]`` ("zukv")."""
    weight, free = {"uvw": ("uvw", "w"), "uvu": ("uv", "u"), "uvv": ("uv", "v"), "uuw": ("uw", "w"), "uuu": ("u", "u")}[
        mode
    ]
    if not has_weight and mode == "uuw":
        free = ""  # unweighted uuw sums u into a single output channel
    out = f"kz{free}" if layout[0] == "k" else f"z{free}k"
    return f"{layout},{zw}{weight}->{out}" if has_weight else f"{layout}->{out}"


__all__ = ["PathExecutor"]
