"""The frame around a sphere program: factorised weights, broadcasting, blocks of samples.

A product of sphere functions with factorised weights computes

    out[k] = w_out[k] * P(w_in1 * x1, w_in2 * x2)[k]

where ``P`` is a bilinear sphere program (``program``) and the weights of every position are read from
the flat weight vector by index tables (``w_in1[j] = weight[index1[j]]``, ...). This module does that,
the broadcasting of batch dimensions, the copy of a one-channel x2 to every channel, and the split of
large batches into cache-sized blocks (outside ``torch.compile``); the program runs on its executor.

Where the program runs on "cpu_fused", the weights are folded into its kernel instead, with no elementwise
pass over the batch: as coefficients where the program runs on the direct kernel and the weights are shared
(``direct_weighted``: one ``[nnz, mul]`` table of per-channel coefficients), else as scales of the kernel's
operands and result (``scaled_weights``: per row of the direct kernel's channel columns, else per cache-sized
block of samples), the one-channel x2 then read through its copy index inside the kernel (no copy is made);
:meth:`FactorisedFrame.folds` says how.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .executors import TILES_ITS_BATCH, cpu_runner

FOLD_DTYPES = (torch.float32, torch.float64)  # those of the direct kernel


def _buffer(module: torch.nn.Module, name: str, array) -> None:
    module.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array)), persistent=False)


class FactorisedFrame(torch.nn.Module):
    """``frame(x1, x2, weight, per_sample)``: ``[..., dim1] x [..., dim2] -> [..., dim_out]``.

    ``weight_index = (index1 [dim2c], index2 [dim2c], index3 [dim_out])`` into the flat weight;
    ``copy_index [dim2c]``: positions of x2 that give the program's x2 (None: x2 as it is);
    ``out_sign [dim_out]`` (None: +1); ``runner``: the program on its executor;
    ``grid_points``: values per channel and sample on the program's grid (sets the block size);
    ``shared_weights``: how the product is called (per_sample False or True), for the kernel choice of "auto".
    ``folded``: the program's folded tables (``direct_weighted.FoldedWeights``) where the runner runs CPU
    tensors on "cpu_fused" and the program is channel-uniform, else None; ``fold_weights = False`` (on the
    instance) turns the folded path off.
    """

    #: run the folded path where :meth:`folds` allows it (False: always the per-position weights)
    fold_weights: bool = True

    #: Outside torch.compile, batches run in blocks of about this many grid values (mul * samples * grid
    #: points): the torch executor's stages are memory-bound, and cache-sized blocks cut cache misses. None: no
    #: blocks (the default where every executor of the runner tiles the batch itself: ``TILES_ITS_BATCH``).
    chunk_elements: int | None = 1 << 20

    def __init__(
        self,
        runner: torch.nn.Module,
        weight_index,
        copy_index=None,
        out_sign=None,
        mul: int = 1,
        grid_points: int = 1,
        shared_weights: bool = True,
    ) -> None:
        super().__init__()
        self.runner, self.mul, self.grid_points = runner, mul, grid_points
        if set(getattr(runner, "chosen", ("torch",))) <= TILES_ITS_BATCH:
            self.chunk_elements = None
        for k, index in enumerate(weight_index, start=1):
            _buffer(self, f"_w{k}_index", np.asarray(index, dtype=np.int64))
        self.copies = copy_index is not None
        _buffer(self, "_copy_index", np.asarray(copy_index if self.copies else [], dtype=np.int64))
        self.signed = out_sign is not None
        _buffer(self, "_out_sign", np.asarray(out_sign if self.signed else [], dtype=np.float64))
        self.folded = self.scaled = None
        fused = cpu_runner(runner)
        if getattr(fused, "executor", None) == "cpu_fused":
            from .direct_weighted import fold  # imported on use: they register their custom ops
            from .scaled_weights import ScaledWeights

            # "auto" weighs the kernels with the weights folded as this frame folds them (cpu_direct.DIRECT_COST)
            # (registered again, with its tables: a frame is made once per product)
            fused.use_kernel(fused.requested_kernel, "shared" if shared_weights else "per_sample")

            self.folded = fold(fused.program, weight_index, out_sign)
            self.scaled = ScaledWeights(weight_index, out_sign)

    def folds(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, per_sample: bool) -> str | None:
        """How this call folds the weights into the kernel, or None (per-position weights in torch ops):
        "coefficients" (``direct_weighted``: the program runs on the direct kernel, has folded tables and the
        weights are shared) or "scales" (``scaled_weights``: any other call on "cpu_fused"). Folding needs the
        runner to run CPU tensors on "cpu_fused", ``fold_weights`` on, and float32/float64 CPU inputs with no
        forward-mode tangents (the custom ops have no forward-mode rule)."""
        if self.scaled is None or not self.fold_weights:
            return None
        if x1.device.type != "cpu" or x1.dtype not in FOLD_DTYPES:
            return None
        if not torch.compiler.is_compiling() and any(fwAD.unpack_dual(t).tangent is not None for t in (x1, x2, weight)):
            return None
        fused = cpu_runner(self.runner)  # the runner may have been replaced since the frame was made
        if getattr(fused, "executor", None) != "cpu_fused":
            return None
        direct = fused.kernel == "direct"
        return "coefficients" if direct and self.folded is not None and not per_sample else "scales"

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, per_sample: bool) -> torch.Tensor:
        batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], weight.shape[:-1] if per_sample else ())
        n = math.prod(batch)
        folds = self.folds(x1, x2, weight, per_sample)
        x1 = x1.expand(*batch, -1).reshape(n, x1.shape[-1])
        x2 = x2.expand(*batch, -1).reshape(n, x2.shape[-1])
        if n == 0:  # empty batch (zero-size matmuls are rejected by some backends); graph kept connected
            return x1.new_zeros(*batch, len(self._w3_index)) + 0 * (x1.sum() + x2.sum() + weight.sum())
        if folds == "scales":  # one op: the weights as scales of the operands and the result, the copy as a read
            if per_sample:
                weight = weight.expand(*batch, -1).reshape(n, weight.shape[-1])
            copy2 = self._copy_index if self.copies else None
            out = self.scaled(cpu_runner(self.runner), x1, x2, weight, copy2)
            return out.reshape(*batch, len(self._w3_index))
        if self.copies:  # one channel of x2 to every channel, before the per-channel weights w2[u, l]
            x2 = x2.index_select(-1, self._copy_index)
        if folds == "coefficients":  # one op: the weights as per-channel coefficients of the coupling list
            return self.folded(x1, x2, weight).reshape(*batch, len(self._w3_index))
        ws = [weight[..., self._w1_index], weight[..., self._w2_index], weight[..., self._w3_index]]
        if self.signed:
            ws[2] = ws[2] * self._out_sign.to(ws[2].dtype)
        rows = n if torch.compiler.is_compiling() else min(n, self.block_rows())
        if per_sample:
            ws = [w.expand(*batch, -1).reshape(n, w.shape[-1]) for w in ws]
        if rows == n:  # one block: no split (its backward is a copy of the whole gradient, a cat)
            return (self.runner(x1 * ws[0], x2 * ws[1]) * ws[2]).reshape(*batch, len(self._w3_index))
        if per_sample:
            w1, w2, w3 = (w.split(rows) for w in ws)
        else:
            w1, w2, w3 = ([w] * math.ceil(n / rows) for w in ws)
        outs = [
            self.runner(a * wa, b * wb) * wc for a, b, wa, wb, wc in zip(x1.split(rows), x2.split(rows), w1, w2, w3)
        ]
        return torch.cat(outs).reshape(*batch, len(self._w3_index))

    def extra_repr(self) -> str:
        if self.scaled is None or not self.fold_weights:
            return "weights: per position"
        if getattr(cpu_runner(self.runner), "kernel", None) == "direct" and self.folded is not None:
            return "weights: folded, as coefficients of the direct kernel (shared) or as scales (per sample)"
        return "weights: folded, as scales of the kernel's operands and result"

    def block_rows(self) -> int:
        """Samples per block: about ``chunk_elements`` grid values per block (0 or None: no blocks)."""
        if not self.chunk_elements:
            return 1 << 62
        return max(1, self.chunk_elements // (self.mul * self.grid_points))


def copy_channels_index(in2, mul: int) -> np.ndarray:
    """Positions of a one-channel ``in2`` layout read by its ``mul``-channel copy (``mul_ir`` order)."""
    index = []
    for (_, ir), sl in zip(in2.irreps, in2.irreps.slices()):
        for _ in range(mul):
            index += range(sl.start, sl.start + ir.dim)
    return np.array(index, dtype=np.int64)


def factorised_weight_index(layouts, offsets: tuple[int, int, int]) -> list[np.ndarray]:
    """Per position of (x1, x2 with mul channels, out): the index ``offset + u (L+1) + l`` of ``w[u, l]``."""
    return [offset + layout.weight_index() for layout, offset in zip(layouts, offsets)]


__all__ = ["FactorisedFrame", "copy_channels_index", "factorised_weight_index"]
