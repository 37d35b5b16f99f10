"""Equivariant linear layer: channel mixing within each irrep type (e3nn ``o3.Linear`` semantics).

For every irrep type ``ir = (l, p)`` present in both ``irreps_in`` and ``irreps_out``, gather all
``M_in(ir)`` input channels of that type (from every block of ``irreps_in`` carrying it) and write

    y[v, m] = 1/sqrt(M_in(ir)) * sum_u W_ir[u, v] x[u, m]  (+ b[v] for biased 0e outputs)

with ``m = -l..l`` untouched (Schur's lemma: the only equivariant maps between copies of one irrep
are multiples of the identity). ``1/sqrt(fan_in)`` is e3nn's ``path_normalization="element"``:
unit-variance weights and inputs give unit-variance outputs. Output irreps with no input of the same
type are zero (or their bias).

Weights are stored exactly as e3nn stores them, so a state copied from (or into) ``e3nn.o3.Linear``
gives the same map: the flat ``weight [weight_numel]`` is the concatenation over the pairs
``(i_in, i_out)`` of blocks with equal irreps (``i_in`` outer, ``i_out`` inner) of ``[mul_in, mul_out]``
row-major matrices; ``bias [bias_numel]`` concatenates the ``mul`` biases of each biased output block.

Execution: one gather of the weight into a dense ``W_ir [M_in, M_out]`` and one matmul per irrep
*type* (blocks of the same type are merged), so the cost is ``sum_ir batch (2l+1) M_in M_out``
flops, no loop over channels or over block pairs.

This module also holds :func:`check_features` and :class:`IrrepTypeGroups`, shared by the other
layers of ``gaunt.nn``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..so3 import Irrep, Irreps


def check_features(owner: str, x: torch.Tensor, irreps: Irreps, label: str = "x") -> None:
    """Raise a ``TypeError`` / ``ValueError`` naming ``owner`` unless ``x`` is a float ``[..., irreps.dim]`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: {label} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] != irreps.dim:
        raise ValueError(
            f"{owner}: {label} has shape {tuple(x.shape)} but irreps {irreps} need a last dimension of {irreps.dim}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{owner}: {label} must be floating point, got {x.dtype}")


class IrrepTypeGroups(torch.nn.Module):
    """Channels of ``irreps`` grouped by irrep type: ``gather`` ``[..., dim] -> {ir: [..., M(ir), 2l+1]}``
    and ``scatter`` (its inverse) ``{ir: [..., M(ir), 2l+1]} -> [..., dim]``.

    ``types`` lists the irrep types in order of first appearance, ``muls[k]`` the total multiplicity
    ``M`` of ``types[k]``. A type held by a single block is read by a view (no copy); several blocks
    of one type are read by one ``index_select``. Index tables are non-persistent buffers.
    """

    def __init__(self, irreps: Irreps) -> None:
        super().__init__()
        self.irreps = Irreps(irreps)
        types: list[Irrep] = []
        blocks: dict[Irrep, list[int]] = {}
        for i, (mul, ir) in enumerate(self.irreps):
            if mul == 0:
                continue
            if ir not in blocks:
                types.append(ir)
                blocks[ir] = []
            blocks[ir].append(i)
        self.types = tuple(types)
        self.muls = tuple(sum(self.irreps[i].mul for i in blocks[ir]) for ir in types)
        self.blocks = tuple(tuple(blocks[ir]) for ir in types)
        slices = self.irreps.slices()
        self._views: list[slice | None] = []
        for k, ir in enumerate(types):
            if len(blocks[ir]) == 1:
                self._views.append(slices[blocks[ir][0]])
            else:
                self._views.append(None)
                index = torch.cat([torch.arange(slices[i].start, slices[i].stop) for i in blocks[ir]])
                self.register_buffer(f"_index_{k}", index, persistent=False)
        # For scatter: output block i is rows [start, start + mul) of its type's [M, 2l+1] group.
        self._rows: list[tuple[int, int, int]] = []  # (type k, row start, mul) per nonempty block, in order
        seen = dict.fromkeys(range(len(types)), 0)
        index_of = {ir: k for k, ir in enumerate(types)}
        for mul, ir in self.irreps:
            if mul == 0:
                continue
            k = index_of[ir]
            self._rows.append((k, seen[k], mul))
            seen[k] += mul

    def gather(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x [..., dim]`` -> list over ``types`` of ``[..., M, 2l+1]``."""
        out = []
        for k, ir in enumerate(self.types):
            view = self._views[k]
            if view is not None:
                part = x[..., view]
            else:
                part = torch.index_select(x, -1, getattr(self, f"_index_{k}"))
            out.append(part.unflatten(-1, (self.muls[k], ir.dim)))
        return out

    def scatter(self, groups: Sequence[torch.Tensor], batch: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`gather`: list over ``types`` of ``[..., M, 2l+1]`` -> ``[*batch, dim]``."""
        if len(self.types) == 1 and len(self._rows) == 1:
            return groups[0].flatten(-2).expand(*batch, self.irreps.dim)
        pieces = []
        for k, start, mul in self._rows:
            g = groups[k]
            part = g if (start == 0 and mul == g.shape[-2]) else g[..., start : start + mul, :]
            pieces.append(part.flatten(-2).expand(*batch, mul * self.types[k].dim))
        if not pieces:
            return like.new_zeros(*batch, self.irreps.dim)
        return torch.cat(pieces, dim=-1)


class Linear(torch.nn.Module):
    """Equivariant linear map ``[..., irreps_in.dim] -> [..., irreps_out.dim]`` (see module docstring).

    Args:
        irreps_in, irreps_out: input and output irreps (any order, repeated types allowed).
        internal_weights: keep ``weight`` (and ``bias``) as parameters. Default: True unless
            ``shared_weights=False`` (e3nn's rule).
        shared_weights: one weight for the whole batch (``[weight_numel]``); False: per-sample
            weights ``[..., weight_numel]`` broadcasting with the batch (needs external weights).
        biases: ``True`` gives a bias to every ``0e`` output block; a list of bools, one per output
            block, chooses (only ``0e`` blocks may have one).

    Call ``linear(x, weight=None, bias=None)``; ``weight`` / ``bias`` are required when the weights
    are external. Internal weights start as ``N(0, 1)``, biases as 0 (as e3nn).

    Cost: ``batch * sum_ir (2l+1) M_in(ir) M_out(ir)`` multiply-adds, i.e. ``O(L^2 mul^2)`` per sample
    for irreps up to degree L with ``mul`` channels each.
    """

    def __init__(
        self,
        irreps_in,
        irreps_out,
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        biases: bool | Sequence[bool] = False,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_out = Irreps(irreps_out)
        if shared_weights is False and internal_weights is None:
            internal_weights = False
        shared_weights = True if shared_weights is None else bool(shared_weights)
        internal_weights = True if internal_weights is None else bool(internal_weights)
        if internal_weights and not shared_weights:
            raise ValueError("Linear: internal_weights=True requires shared_weights=True")
        self.internal_weights, self.shared_weights = internal_weights, shared_weights

        if isinstance(biases, bool):
            biases = [biases and ir.is_scalar() for _, ir in self.irreps_out]
        biases = [bool(b) for b in biases]
        if len(biases) != len(self.irreps_out):
            raise ValueError(
                f"Linear: biases has {len(biases)} entries but irreps_out {self.irreps_out} "
                f"has {len(self.irreps_out)} blocks"
            )
        for b, (mul, ir) in zip(biases, self.irreps_out):
            if b and not ir.is_scalar():
                raise ValueError(
                    f"Linear: a bias on output irrep {ir} would break equivariance; only 0e outputs may have one"
                )
        self.biases = tuple(biases)

        self.groups_in = IrrepTypeGroups(self.irreps_in)
        self.groups_out = IrrepTypeGroups(self.irreps_out)
        # Flat weight offsets of every (i_in, i_out) pair with equal irreps, in e3nn's order.
        offsets: dict[tuple[int, int], int] = {}
        n = 0
        for i_in, (mul_in, ir_in) in enumerate(self.irreps_in):
            for i_out, (mul_out, ir_out) in enumerate(self.irreps_out):
                if ir_in == ir_out:
                    offsets[(i_in, i_out)] = n
                    n += mul_in * mul_out
        self.weight_numel = n
        # Per output type: the input type it reads, the index of W_ir [M_in, M_out] into the flat weight, 1/sqrt(M_in).
        self._paths: list[tuple[int, int, float]] = []  # (k_in, k_out, scale)
        in_types = {ir: k for k, ir in enumerate(self.groups_in.types)}
        for k_out, ir in enumerate(self.groups_out.types):
            if ir not in in_types:
                continue
            k_in = in_types[ir]
            rows = []
            for i_in in self.groups_in.blocks[k_in]:
                mul_in = self.irreps_in[i_in].mul
                cols = []
                for i_out in self.groups_out.blocks[k_out]:
                    mul_out = self.irreps_out[i_out].mul
                    start = offsets[(i_in, i_out)]
                    cols.append(torch.arange(start, start + mul_in * mul_out).reshape(mul_in, mul_out))
                rows.append(torch.cat(cols, dim=1))
            self.register_buffer(f"_windex_{k_out}", torch.cat(rows, dim=0), persistent=False)
            self._paths.append((k_in, k_out, 1.0 / math.sqrt(self.groups_in.muls[k_in])))
        # Bias: flat [bias_numel]; _bias_index[i] is the bias entry of output feature i (bias_numel: none).
        bias_index, n_bias = [], 0
        for b, (mul, ir) in zip(self.biases, self.irreps_out):
            bias_index.append(torch.arange(n_bias, n_bias + mul) if b else torch.full((mul * ir.dim,), -1))
            n_bias += mul if b else 0
        bias_index = torch.cat([torch.zeros(0, dtype=torch.long)] + bias_index)
        self.bias_numel = n_bias
        self.register_buffer("_bias_index", torch.where(bias_index < 0, n_bias, bias_index), persistent=False)

        if internal_weights:
            self.weight = torch.nn.Parameter(torch.randn(self.weight_numel))
            if self.bias_numel:
                self.bias = torch.nn.Parameter(torch.zeros(self.bias_numel))
            else:  # no empty parameter: it would never get a gradient (DistributedDataParallel waits for it)
                self.register_buffer("bias", torch.empty(0), persistent=False)
        else:
            self.register_buffer("weight", torch.empty(0), persistent=False)
            self.register_buffer("bias", torch.empty(0), persistent=False)

    def _check(self, label: str, t: torch.Tensor | None, numel: int, x: torch.Tensor) -> torch.Tensor:
        if t is None:
            if not self.internal_weights and numel > 0:
                raise ValueError(f"Linear: the weights are external; pass {label} of size [..., {numel}]")
            return (self.weight if label == "weight" else self.bias).to(x.dtype)
        if self.internal_weights:
            raise ValueError(
                f"Linear: the weights are internal; do not pass {label} (or build with internal_weights=False)"
            )
        if t.dim() == 0 or t.shape[-1] != numel:
            raise ValueError(f"Linear: {label} has shape {tuple(t.shape)}, expected [..., {numel}]")
        if self.shared_weights and t.dim() != 1:
            raise ValueError(f"Linear: shared {label} must have shape [{numel}], got {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"Linear: {label} is on {t.device} but x is on {x.device}")
        return t.to(x.dtype)

    def forward(
        self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [..., irreps_in.dim]`` -> ``[..., irreps_out.dim]`` (batch broadcast with per-sample weights)."""
        check_features("Linear", x, self.irreps_in)
        weight = self._check("weight", weight, self.weight_numel, x)
        bias = self._check("bias", bias, self.bias_numel, x)
        batch = list(x.shape[:-1])
        for t in (weight, bias):
            if t.dim() > 1:
                batch = list(torch.broadcast_shapes(tuple(batch), t.shape[:-1]))
        xs = self.groups_in.gather(x)
        ys: list[torch.Tensor | None] = [None] * len(self.groups_out.types)
        for k_in, k_out, scale in self._paths:
            w = weight[..., getattr(self, f"_windex_{k_out}")] * scale  # [(...), M_in, M_out]
            xk = xs[k_in]  # [..., M_in, 2l+1]
            if w.dim() == 2:  # shared: one GEMM with the batch folded into the rows
                ys[k_out] = (xk.transpose(-1, -2) @ w).transpose(-1, -2)
            else:
                ys[k_out] = w.transpose(-1, -2) @ xk
        for k, ir in enumerate(self.groups_out.types):
            if ys[k] is None:
                ys[k] = x.new_zeros(self.groups_out.muls[k], ir.dim)
        out = self.groups_out.scatter(ys, batch, x)
        if self.bias_numel:  # spread [..., bias_numel] over the 0e features (a zero slot elsewhere)
            out = out + torch.nn.functional.pad(bias, (0, 1))[..., self._bias_index]
        return out

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, weight_numel={self.weight_numel}, bias_numel={self.bias_numel}"


__all__ = ["Linear", "IrrepTypeGroups", "check_features"]
