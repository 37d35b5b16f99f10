"""Layout changes between e3nn's ``[batch, dim]`` and the executors' ``[rows, batch]``, with cheap adjoints.

The torch executor runs every stage of a sphere program as a matmul whose long side is the batch, so their data
live as ``[rows, batch]`` (one row per (m, l, channel)). Getting there is a transpose and a row gather
in which every source row is used at most once (a permutation plus zero rows for padding). Written as
plain indexing, autograd would scatter-add the gradient back (``index_put_`` with accumulate, a large
share of a grid product's step in a profile); the adjoint of an injective gather is itself a gather, which these
functions use. Both are linear, and their backward calls the same functions, so double backward works.
"""

from __future__ import annotations

import numpy as np
import torch


class RowGather(torch.autograd.Function):
    """``out[r] = src[index[r]]`` for every row r, then rows ``zero`` set to 0. See :func:`gather_tables`."""

    @staticmethod
    def forward(ctx, src, index, zero, inverse, inverse_zero):  # noqa: D102
        ctx.tables, ctx.adjoint_tables = (index, zero), (inverse, inverse_zero, index, zero)
        return RowGather._gather(src, index, zero)

    @staticmethod
    def _gather(src: torch.Tensor, index: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        out = src.index_select(0, index)
        if len(zero):
            out.index_fill_(0, zero, 0)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return RowGather.apply(grad, *ctx.adjoint_tables), None, None, None, None

    @staticmethod
    def jvp(ctx, tangent, *_):  # noqa: D102  (linear: the tangent is gathered alike; forward-mode AD)
        return RowGather._gather(tangent, *ctx.tables)


def gather_tables(index: np.ndarray, valid: np.ndarray, n_src: int) -> tuple[torch.Tensor, ...]:
    """Tables for :class:`RowGather`: output row r reads source row ``index[r]`` where ``valid[r]``, else 0.

    Raises ``ValueError`` if a source row would be read twice (the adjoint gather needs an injective
    map). Returns ``(index, zero, inverse, inverse_zero)`` as int64 tensors, the last two describing
    the adjoint: source row k reads gradient row ``inverse[k]``, or 0 for the rows ``inverse_zero``
    that no output reads.
    """
    index = np.where(valid, np.asarray(index, dtype=np.int64), 0)
    rows = np.nonzero(valid)[0]
    if len(np.unique(index[rows])) != len(rows):
        raise ValueError("gather_tables: a source row is read twice; the adjoint gather needs an injective map")
    inverse = np.zeros(n_src, dtype=np.int64)
    inverse[index[rows]] = rows
    used = np.zeros(n_src, dtype=bool)
    used[index[rows]] = True
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return as_t(index), as_t(np.nonzero(~valid)[0]), as_t(inverse), as_t(np.nonzero(~used)[0])


class Transpose(torch.autograd.Function):
    """``[n, k] -> [k, n]`` contiguous, forward and backward (torch copies a transposed 2-D tensor in
    cache-sized tiles; a transposed view left to later ops is read with large strides instead)."""

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return x.T.contiguous()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return Transpose.apply(grad)

    @staticmethod
    def jvp(ctx, tangent):  # noqa: D102
        return tangent.T.contiguous()


def gather_rows(src: torch.Tensor, tables: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """:class:`RowGather` with ``tables`` from :func:`gather_tables`. Under ``torch.compile`` the plain ops
    (dynamo cannot trace a Function with a custom jvp; the compiled graph gets its own backward)."""
    if torch.compiler.is_compiling():
        return RowGather._gather(src, tables[0], tables[1])
    return RowGather.apply(src, *tables)


def transpose(x: torch.Tensor) -> torch.Tensor:
    """:class:`Transpose` (plain ``x.T.contiguous()`` under ``torch.compile``)."""
    return x.T.contiguous() if torch.compiler.is_compiling() else Transpose.apply(x)


__all__ = ["RowGather", "gather_tables", "Transpose", "gather_rows", "transpose"]
