"""Shared per-channel weights folded into the direct CPU kernel: a product as one multilinear form.

A product with factorised weights (``sphere_frame``) computes ``out = w3 * P(w1 * x1, w2 * x2)``; where P
runs on the direct kernel it is a coupling list (``coupling.Coupling``: triples ``t = (a_t, b_t, c_t)``,
coefficients ``k_t``, position maps ``pos1, pos2, pos_out [mul, k]``). With weights shared by the batch the
product is the gradient, with respect to ``g``, of the form

    T(x1, x2, g, C) = sum_n sum_u sum_t k_t C[t, u] x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]] g[n, pos_out[u, c_t]]

with per-channel coefficients ``C [nnz, mul]``

    C[t, u] = w1[pos1[u, a_t]] w2[pos2[u, b_t]] w3[pos_out[u, c_t]],    w_k = weight[index_k]   (2)

(``index_k``: the frame's weight index of each position; ``out_sign``, where the frame has one, is folded
into ``k_t``). T is linear in each of its four arguments, so every derivative of the product, to any order,
is the gradient of T with respect to one argument (a *slot*) with the others given:

    slot 0 (x1):  dT/dx1 = the vjp list of x1 (``Coupling.vjp(0)``) on (g, x2) with C           [n, dim1]
    slot 1 (x2):  dT/dx2 = the vjp list of x2 on (x1, g) with C                                [n, dim2]
    slot 2 (g):   dT/dg  = the product: the list on (x1, x2) with C                            [n, dim_out]
    slot 3 (C):   dT/dC[t, u] = k_t sum_n x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]] g[n, pos_out[u, c_t]]  [nnz, mul]

and the vector-Jacobian product of slot i's gradient with respect to argument j, for the cotangent v, is slot
j's gradient with argument i replaced by v (as for ``grid_messages``). The op ``gaunt::cpu_direct_weighted``
computes the slots on the C++ kernels of ``csrc/direct_weighted.cpp`` (slots 0-2 ``direct_weighted``, slot 3
``direct_reduce``) and differentiates by this rule, so backward and double backward run on it too. The backward
of the product (slot 2) needs slots 0, 1 and 3 with the same (x1, x2, g, C): where it needs all three,
``gaunt::cpu_direct_weighted_backward`` computes them in one pass over the rows of x1, x2 and g
(``direct_backward``), differentiated by the same rule. The map (2) from the weight vector to C stays in torch
ops, and the weight gradient comes from slot 3 through it by autograd. Instead of four elementwise passes over
``[n, dim]`` tensors for the weights (and their sums over the batch for the weight gradients), one
``[nnz, mul]`` table per call.

:class:`FoldedWeights` holds the tables of one product; ``sphere_frame.FactorisedFrame`` decides when it runs.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import torch

from .coupling import Coupling, NotChannelWise, coupling
from .cpu_direct import pack_direct
from .slots import slot_vjps

SLOTS = ("x1", "x2", "g", "coefficients")  # the arguments of T, in slot order


@dataclasses.dataclass(eq=False)
class _Folded:
    """A registered coupling list: per slot 0..2 the packed list (``cpu_direct.pack_direct``: ``meta`` int64
    tensor, coefficients ``k`` float64), ``rows`` (the program's triple behind each of its triples) and the
    coefficients as tensors per dtype (made on first use by the op's real implementation)."""

    coupling: Coupling
    meta: tuple[torch.Tensor, ...]
    rows: tuple[torch.Tensor, ...]
    values: tuple[np.ndarray, ...]
    tensors: dict[tuple[int, torch.dtype], torch.Tensor] = dataclasses.field(default_factory=dict)

    def coefficients(self, slot: int, dtype: torch.dtype) -> torch.Tensor:
        """``k`` of slot ``slot``'s list (slot 3: that of slot 2) in ``dtype``."""
        slot = min(slot, 2)
        if (slot, dtype) not in self.tensors:
            self.tensors[slot, dtype] = torch.tensor(self.values[slot], dtype=dtype)
        return self.tensors[slot, dtype]


_FOLDED: list[_Folded] = []
_FOLDED_LOCK = threading.Lock()


def register_folded(c: Coupling) -> int:
    """Pack the lists of the slots of ``c`` (its vjp lists for x1 and x2, itself for the output) once and
    return their id for ``torch.ops.gaunt.cpu_direct_weighted``."""
    lists = (c.vjp(0), c.vjp(1), c)
    orders = (c.vjp_order(0), c.vjp_order(1), np.arange(c.nnz))
    packed = [pack_direct(lst) for lst in lists]
    meta = tuple(torch.tensor(m) for m, _ in packed)
    rows = tuple(torch.tensor(order, dtype=torch.int64) for order in orders)
    folded = _Folded(c, meta, rows, tuple(values for _, values in packed))
    with _FOLDED_LOCK:  # the index and the append together: another thread's list never gets this id
        _FOLDED.append(folded)
        return len(_FOLDED) - 1


@torch.library.custom_op("gaunt::cpu_direct_weighted", mutates_args=())
def direct_weighted(
    slot: int,
    x1: torch.Tensor | None,
    x2: torch.Tensor | None,
    g: torch.Tensor | None,
    coefficients: torch.Tensor | None,
    folded_id: int,
) -> torch.Tensor:
    """The gradient of T with respect to ``SLOTS[slot]`` (module docstring) for ``x1 [n, dim1]``, ``x2 [n,
    dim2]``, ``g [n, dim_out]``, ``coefficients [nnz, mul]`` (CPU, float32/float64; the argument in ``slot``
    is None) of the registered list ``folded_id``."""
    entry = _FOLDED[folded_id]
    like = next(t for t in (x1, x2, g) if t is not None)
    k = entry.coefficients(slot, like.dtype)
    if slot == 3:
        return torch.ops.gaunt_fused.direct_reduce(x1, x2, g, k, entry.meta[2])
    a, b = ((g, x2), (x1, g), (x1, x2))[slot]
    return torch.ops.gaunt_fused.direct_weighted(a, b, coefficients, k, entry.rows[slot], entry.meta[slot])


@direct_weighted.register_fake
def _direct_weighted_fake(slot, x1, x2, g, coefficients, folded_id):
    c = _FOLDED[folded_id].coupling
    like = next(t for t in (x1, x2, g) if t is not None)
    return like.new_empty((c.nnz, c.mul) if slot == 3 else (like.shape[0], c.dims[slot]))


def _setup_context(ctx, inputs, output) -> None:
    slot, x1, x2, g, coefficients, folded_id = inputs
    ctx.slot, ctx.folded_id = slot, folded_id
    ctx.save_for_backward(x1, x2, g, coefficients)


def _slot_vjps(args: list, cotangents: dict[int, torch.Tensor | None], needs, folded_id: int) -> list:
    """The gradients of the arguments ``args`` (x1, x2, g, C) for the cotangents of the slots ``cotangents``
    (``slots.slot_vjps``, each slot on this op)."""
    return slot_vjps(args, cotangents, needs, lambda j, given: direct_weighted(j, *given, folded_id))


def _backward(ctx, grad: torch.Tensor):
    args = list(ctx.saved_tensors)
    needs = ctx.needs_input_grad[1:5]
    if ctx.slot == 2 and needs[0] and needs[1] and needs[3]:  # the product's gradients in one pass
        x1, x2, _, coefficients = args
        g1, g2, gc = direct_weighted_backward(x1, x2, grad, coefficients, ctx.folded_id)
        return None, g1, g2, None, gc, None
    return None, *_slot_vjps(args, {ctx.slot: grad}, needs, ctx.folded_id), None


direct_weighted.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("gaunt::cpu_direct_weighted_backward", mutates_args=())
def direct_weighted_backward(
    x1: torch.Tensor, x2: torch.Tensor, g: torch.Tensor, coefficients: torch.Tensor, folded_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dT/dx1 [n, dim1], dT/dx2 [n, dim2], dT/dC [nnz, mul])``: slots 0, 1 and 3 at once (module docstring)."""
    entry = _FOLDED[folded_id]
    values = [entry.coefficients(slot, x1.dtype) for slot in range(3)]
    rows, meta = list(entry.rows[:2]), list(entry.meta)
    return torch.ops.gaunt_fused.direct_backward(x1, x2, g, coefficients, values, rows, meta)


@direct_weighted_backward.register_fake
def _direct_weighted_backward_fake(x1, x2, g, coefficients, folded_id):
    return x1.new_empty(x1.shape), x2.new_empty(x2.shape), coefficients.new_empty(coefficients.shape)


def _setup_backward_context(ctx, inputs, output) -> None:
    *args, ctx.folded_id = inputs
    ctx.save_for_backward(*args)


def _backward_backward(ctx, v1, v2, vc):
    """The outputs are slots 0, 1 and 3 of T: their cotangents go through :func:`_slot_vjps`."""
    args = list(ctx.saved_tensors)
    return *_slot_vjps(args, {0: v1, 1: v2, 3: vc}, ctx.needs_input_grad[:4], ctx.folded_id), None


direct_weighted_backward.register_autograd(_backward_backward, setup_context=_setup_backward_context)


class FoldedWeights(torch.nn.Module):
    """The folded product of one frame: ``self(x1, x2, weight)``: ``[n, dim1] x [n, dim2] x [numel] ->
    [n, dim_out]`` with C from (2) of the module docstring (``self.coefficients(weight)``, ``[nnz, mul]``)."""

    def __init__(self, c: Coupling, weight_index) -> None:
        super().__init__()
        index = [np.asarray(w)[pos[:, triple].T] for w, pos, triple in zip(weight_index, c.positions, (c.a, c.b, c.c))]
        self.register_buffer("_index", torch.as_tensor(np.stack(index)), persistent=False)  # [3, nnz, mul]
        self.nnz, self.mul, self.coupling = c.nnz, c.mul, c
        self.folded_id = register_folded(c)

    def __setstate__(self, state: dict) -> None:
        # the id indexes this process's registry: a copy (pickle, deepcopy, another process) registers anew
        super().__setstate__(state)
        self.folded_id = register_folded(self.coupling)

    def coefficients(self, weight: torch.Tensor) -> torch.Tensor:
        """``C[t, u] = w1 w2 w3`` (2): ``[numel] -> [nnz, mul]``, differentiable (torch ops)."""
        w = weight[self._index]
        return w[0] * w[1] * w[2]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return direct_weighted(2, x1, x2, None, self.coefficients(weight), self.folded_id)

    def extra_repr(self) -> str:
        return f"coefficients [{self.nnz}, {self.mul}] (list {self.folded_id})"


def fold(program, weight_index, out_sign=None) -> FoldedWeights | None:
    """The :class:`FoldedWeights` of a frame's ``program`` with the weight index ``(index1, index2, index3)``
    and ``out_sign`` (None: +1), or None where the program is not channel-uniform (no coupling list) or its
    sign differs between the channels of one output coefficient."""
    try:
        c = coupling(program)
    except NotChannelWise:
        return None
    if out_sign is not None:
        sign = np.asarray(out_sign)[c.positions[2]]  # [mul, k3]
        if (sign != sign[:1]).any():
            return None
        c = dataclasses.replace(c, coefficient=c.coefficient * sign[0, c.c])
    return FoldedWeights(c, weight_index)


__all__ = ["SLOTS", "FoldedWeights", "direct_weighted", "direct_weighted_backward", "fold", "register_folded"]
