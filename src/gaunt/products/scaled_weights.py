"""Factorised weights read as per-position scales around the kernels of "cpu_fused": a product as one
multilinear form.

A product with factorised weights (``sphere_frame``) computes ``out = s3 * P(s1 * x1, s2 * x2)`` with a scale
per position ``k`` of each operand read from a weight tensor by an index,

    s_i[n, k] = w_i[n, index_i[k]]     (w_i [numel]: shared by the batch; [n, numel]: per sample)

(``out_sign`` is folded in as ``w3 -> cat(w3, -w3)`` with the index of the negative positions moved by
``numel``). Summed against a cotangent ``g`` this is the form

    T(x1, x2, g, w1, w2, w3) = sum_n sum_k g[n, k] s3[n, k] P(s1 * x1, s2 * x2)[n, k],

linear in each of its six arguments. Its gradients (the *slots*) come in three pairs, each pair one run of
the kernel that runs the program or a derivative program (``P'_1(g, x2)``, ``P'_2(x1, g)``:
``program.derivative``; "transform" or "direct", ``csrc/scaled_weights.cpp``):

    pair 0:  slot 0 = dT/dx1 = s1 * v,    slot 3 = dT/dw1 = sum_{k -> w1} x1 * v,    v = P'_1(s3 * g, s2 * x2)
    pair 1:  slot 1 = dT/dx2 = s2 * v,    slot 4 = dT/dw2 = sum_{k -> w2} x2 * v,    v = P'_2(s1 * x1, s3 * g)
    pair 2:  slot 2 = dT/dg  = s3 * v,    slot 5 = dT/dw3 = sum_{k -> w3} g * v,     v = P(s1 * x1, s2 * x2)

(the sums over the positions ``k`` that read one weight, and over the batch where the weight is shared).
Slot 2 is the product. The vector-Jacobian product of slot i's gradient with respect to argument j, for the
cotangent c, is slot j's gradient with argument i replaced by c (as for ``direct_weighted`` and
``grid_messages``), so every derivative of every order runs on the same kernels; the pairs that a backward
needs run once each. The kernel scales the operands of a cache-sized block of samples, runs the program on
it, and scales or sums the result: no weighted copy of an input, no elementwise pass over the batch for the
weights or their gradients. On the direct kernel with the products' own tables (``mul`` a multiple of the SIMD
width: :func:`runs_on_columns`), the scales are vectors of the kernel's channel rows instead, and no block is
copied at all (``csrc/scaled_columns.h``).

A one-channel x2 read by every channel (the frame's copy index ``copy2``) is read through the index inside the
kernel: the program's x2 is ``x2[:, copy2]``, and slot 1 is summed back over the channels by the same index.

A first-order backward with one weight (``w1 = w2``, and ``w3`` the same or its ``cat(w, -w)``) and no graph of
it runs the three pairs in one call (:func:`scaled_weights_grads`): one gradient of the weight, added into by
every pair (``w3``'s apart where it is its own), no sum of three afterwards; on the channel rows, every pair on
each group of samples while their rows are in cache.

:class:`ScaledWeights` holds the tables of one frame; ``sphere_frame.FactorisedFrame`` decides when it runs.
"""

from __future__ import annotations

import numpy as np
import torch

from .cpu_executor import derivative_id, kernel_of, program_tables

ARGS = ("x1", "x2", "g", "w1", "w2", "w3")  # the arguments of T, in slot order

# pair p: the program (None: the product's own, else the derivative with respect to this operand), its two
# operands and the read-out position, as argument numbers (batch tensors 0-2; the weights of argument i: i + 3)
PAIRS = ((0, (2, 1), 0), (1, (0, 2), 1), (None, (0, 1), 2))


def _program_id(program_id: int, pair: int) -> int:
    wrt = PAIRS[pair][0]
    return program_id if wrt is None else derivative_id(program_id, wrt)


@torch.library.custom_op("gaunt::cpu_scaled_weights", mutates_args=())
def scaled_weights(
    pair: int,
    batch: bool,
    weight: bool,
    x1: torch.Tensor,
    x2: torch.Tensor,
    g: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    index1: torch.Tensor,
    index2: torch.Tensor,
    index3: torch.Tensor,
    program_id: int,
    copy2: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slots ``pair`` (if ``batch``; else an empty ``[0, dim]``) and ``pair + 3`` (if ``weight``; else an empty
    ``[0]``) of T (module docstring) for ``x1 [n, dim1]``, ``x2 [n, dim2]``, ``g [n, dim_out]``, weights ``w_i
    [numel_i]`` or ``[n, numel_i]`` and indices ``index_i [dim_i]`` (int64), on the kernel that runs the
    registered program ``program_id`` (``cpu_executor.register_program``) or its derivative program. The
    value of argument ``pair`` is read only for slot ``pair + 3`` (the sum against it), that of its weight only
    for slot ``pair`` (the read-out scale). ``copy2 [dim2]`` (int64; None: none): the program's x2 is
    ``x2[:, copy2]`` (a one-channel x2 read by every channel), its slot summed back by ``copy2``."""
    args, index, copies = (x1, x2, g, w1, w2, w3), (index1, index2, index3), (None, copy2, None)
    _, (a, b), o = PAIRS[pair]
    kernel, values, meta = program_tables(_program_id(program_id, pair), x1.dtype)
    r = args[o] if weight else None
    (wa, ia), (wb, ib), (wo, io) = ((args[i + 3], index[i]) for i in (a, b, o))  # the weights of each operand
    ca, cb, co = (copies[i] for i in (a, b, o))
    out, grad, _ = torch.ops.gaunt_fused.scaled_weights(
        args[a],
        args[b],
        wa,
        ia,
        wb,
        ib,
        wo,
        io,
        ca,
        cb,
        co,
        args[o].shape[1],
        r,
        batch,
        False,
        values,
        meta,
        kernel == "direct",
    )
    return out, grad


@scaled_weights.register_fake
def _fake(pair, batch, weight, x1, x2, g, w1, w2, w3, index1, index2, index3, program_id, copy2=None):
    x, w = (x1, x2, g)[pair], (w1, w2, w3)[pair]
    return x.new_empty((x.shape[0] if batch else 0, x.shape[1])), w.new_empty(w.shape if weight else (0,))


def _setup_context(ctx, inputs, output) -> None:
    pair, batch, weight, *args, index1, index2, index3, program_id, copy2 = inputs
    ctx.pair, ctx.batch, ctx.weight, ctx.program_id = pair, batch, weight, program_id
    ctx.save_for_backward(*args, index1, index2, index3, copy2)
    ctx.set_materialize_grads(False)  # an output that is not used gets no tensor of zeros


def slot_gradients(args: list, cotangents: dict[int, torch.Tensor], needs, index, program_id: int, copy2=None) -> list:
    """The gradients of the six arguments for the cotangents of some slots (slot -> cotangent): argument j's
    sums, over those slots s != j, slot j with the cotangent of s in the place of argument s (module
    docstring); the two slots of one pair run as one kernel call. ``needs[j]``: argument j's is wanted."""
    grads = [None] * 6
    for s, c in cotangents.items():
        given = [c if i == s else a for i, a in enumerate(args)]
        for p in range(3):
            batch, weight = needs[p] and p != s, needs[p + 3] and p + 3 != s
            if not (batch or weight):
                continue
            out = scaled_weights(p, batch, weight, *given, *index, program_id, copy2)
            for j, term, wanted in ((p, out[0], batch), (p + 3, out[1], weight)):
                if wanted:
                    grads[j] = term if grads[j] is None else grads[j] + term
    return grads


def _backward(ctx, grad_batch: torch.Tensor, grad_weight: torch.Tensor):
    *args, index1, index2, index3, copy2 = ctx.saved_tensors
    cotangents = {}
    if ctx.batch and grad_batch is not None:
        cotangents[ctx.pair] = grad_batch
    if ctx.weight and grad_weight is not None:
        cotangents[ctx.pair + 3] = grad_weight
    needs = ctx.needs_input_grad[3:9]
    grads = slot_gradients(list(args), cotangents, needs, (index1, index2, index3), ctx.program_id, copy2)
    return None, None, None, *grads, None, None, None, None, None


scaled_weights.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("gaunt::cpu_scaled_weights_product", mutates_args=())
def scaled_weights_product(
    x1: torch.Tensor,
    x2: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    index1: torch.Tensor,
    index2: torch.Tensor,
    index3: torch.Tensor,
    program_id: int,
    keep: bool,
    copy2: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The product (slot 2), ``[n, dim_out]``, and, if ``keep``, ``v = P(s1 * x1, s2 * x2)`` ``[n, dim_out]``
    (else ``[0, dim_out]``; not differentiable: kept where the program runs on the transform kernel, whose rerun
    for the weight gradient costs three transforms). Its backward runs the three pairs in one call of
    :func:`scaled_weights_grads` (with v, the third is a sum of ``g * v``) where one weight is read by the scales
    of x1 and x2 (``w3`` that one or its own) and no graph is made of the backward, else pairs 0 and 1 and (for
    w3) pair 2 as :func:`scaled_weights` ops. ``copy2``: as for :func:`scaled_weights`."""
    kernel, values, meta = program_tables(program_id, x1.dtype)
    out, _, v = torch.ops.gaunt_fused.scaled_weights(
        x1,
        x2,
        w1,
        index1,
        w2,
        index2,
        w3,
        index3,
        None,
        copy2,
        None,
        index3.shape[0],
        None,
        True,
        keep,
        values,
        meta,
        kernel == "direct",
    )
    return out, v


@scaled_weights_product.register_fake
def _product_fake(x1, x2, w1, w2, w3, index1, index2, index3, program_id, keep, copy2=None):
    dim = index3.shape[0]
    return x1.new_empty((x1.shape[0], dim)), x1.new_empty((x1.shape[0] if keep else 0, dim))


def _setup_product(ctx, inputs, output) -> None:
    *args, program_id, keep, copy2 = inputs
    ctx.program_id, ctx.keep = program_id, keep
    ctx.one_weight = args[2] is args[3]  # w1 = w2: their weight sums add into one gradient (and w3's, if it is w1)
    ctx.own_w3 = args[4] is not args[2]  # w3 = cat(w, -w): an output sign
    ctx.save_for_backward(*args, copy2, output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no [n, dim_out] of zeros for v's cotangent


def _product_backward(ctx, grad: torch.Tensor | None, _):
    if grad is None:
        return (None,) * 11
    x1, x2, w1, w2, w3, index1, index2, index3, copy2, v = ctx.saved_tensors
    needs = ctx.needs_input_grad
    index = (index1, index2, index3)
    if ctx.one_weight and not torch.is_grad_enabled():  # one call, one weight gradient (no graph of it is made)
        wants = (needs[0], needs[1], any(needs[2:5]))
        kept, own = (v if ctx.keep else None), (w3 if ctx.own_w3 else None)
        dx1, dx2, dw, dw3 = scaled_weights_grads(x1, x2, grad, w1, *index, ctx.program_id, *wants, copy2, kept, own)
        dw3 = dw3 if wants[2] and ctx.own_w3 else None
        return (
            (dx1 if wants[0] else None),
            (dx2 if wants[1] else None),
            (dw if wants[2] else None),
            None,
            dw3,
            *(None,) * 6,
        )
    args = [x1, x2, None, w1, w2, w3]
    grads = slot_gradients(args, {2: grad}, [*needs[:2], False, *needs[2:5]], index, ctx.program_id, copy2)
    return *grads[:2], *grads[3:], None, None, None, None, None, None


scaled_weights_product.register_autograd(_product_backward, setup_context=_setup_product)


@torch.library.custom_op("gaunt::cpu_scaled_weights_grads", mutates_args=())
def scaled_weights_grads(
    x1: torch.Tensor,
    x2: torch.Tensor,
    g: torch.Tensor,
    w: torch.Tensor,
    index1: torch.Tensor,
    index2: torch.Tensor,
    index3: torch.Tensor,
    program_id: int,
    want_x1: bool,
    want_x2: bool,
    want_w: bool,
    copy2: torch.Tensor | None = None,
    v: torch.Tensor | None = None,
    w3: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dx1, dx2, dw, dw3)``: slots 0, 1 and the sum of slots 3, 4, 5 of T (module docstring) with ``w1 = w2 =
    w3 = w``, each where wanted (else ``[0, dim]`` / ``[0]``), in one call: the three pairs run one after the
    other, their weight sums added into one gradient (no gradient per pair, no sum of them afterwards). ``w3``
    (an output sign folded as ``cat(w, -w)``): the output's own weight; slot 5 is then ``dw3`` and ``dw`` the sum
    of slots 3 and 4 (``dw3`` is ``[0]`` where ``w3`` is None). ``v``: the product's ``P(s1 * x1, s2 * x2)``
    kept by the forward (:func:`scaled_weights_product`), whose sum against g replaces the third pair. Not
    differentiable (used where no graph of the backward is made)."""
    tables = [program_tables(_program_id(program_id, pair), x1.dtype) for pair in range(3)]
    roles = [i for _, (a, b), o in PAIRS for i in (a, b, o)]
    return torch.ops.gaunt_fused.scaled_weights_grads(
        x1,
        x2,
        g,
        w,
        w3,
        index1,
        index2,
        index3,
        copy2,
        v,
        want_x1,
        want_x2,
        want_w,
        roles,
        [values for _, values, _ in tables],
        [meta for _, _, meta in tables],
        [int(kernel == "direct") for kernel, _, _ in tables],
    )


@scaled_weights_grads.register_fake
def _grads_fake(
    x1, x2, g, w, index1, index2, index3, program_id, want_x1, want_x2, want_w, copy2=None, v=None, w3=None
):
    return (
        x1.new_empty((x1.shape[0] if want_x1 else 0, x1.shape[1])),
        x2.new_empty((x2.shape[0] if want_x2 else 0, x2.shape[1])),
        w.new_empty(w.shape if want_w else (0,)),
        w.new_empty(w3.shape if want_w and w3 is not None else (0,)),
    )


def runs_on_columns(program_id: int, dtype: torch.dtype, index, copy2: torch.Tensor | None = None) -> bool:
    """Whether the product of ``program_id`` (and its derivative programs, which share its layouts) with these
    indices ``(index1, index2, index3)`` and ``copy2`` runs on the direct kernel's channel columns with the
    weights as per-row scales (``csrc/scaled_columns.h``: the products' own tables on the direct kernel with
    ``mul`` a multiple of the SIMD width), rather than on blocks of scaled samples."""
    kernel, _, meta = program_tables(program_id, dtype)
    columns = torch.ops.gaunt_fused.scaled_weights_columns
    return kernel == "direct" and columns(meta, *index, None, copy2, None, dtype == torch.float64)


def shared_syntheses(program_id: int, dtype: torch.dtype) -> int:
    """How many syntheses the joint first-order backward (:func:`scaled_weights_grads`) of ``program_id`` takes
    from its first pair's run instead of rerunning them in the second (``csrc/shared_passes.h``: on the transform
    kernel, the synthesis of ``s3 * g`` that ``P'_1`` and ``P'_2`` both make; 0 on the direct kernel)."""
    tables = [program_tables(_program_id(program_id, pair), dtype) for pair in range(2)]
    roles = [i for _, operands, _ in PAIRS[:2] for i in operands]
    if any(kernel != "transform" for kernel, _, _ in tables):
        return 0
    return torch.ops.gaunt_fused.scaled_weights_shared(
        roles, [values for _, values, _ in tables], [meta for _, _, meta in tables], dtype == torch.float64
    )


class ScaledWeights(torch.nn.Module):
    """The folded product of one frame, on the kernel that runs its program: ``self(fused, x1, x2, weight,
    copy2=None)``: ``[n, dim1] x [n, dim2] x ([numel] or [n, numel]) -> [n, dim_out]`` for the program of
    ``fused`` (a ``cpu_executor.FusedProgram``, read on every call: a copied module registers its program anew);
    ``copy2``: the program's x2 is ``x2[:, copy2]`` (read in the kernel: no copy is made).

    ``weight_index = (index1, index2, index3)``: the frame's index of each position into the weight;
    ``out_sign [dim_out]`` (None: +1)."""

    def __init__(self, weight_index, out_sign=None) -> None:
        super().__init__()
        index = [np.asarray(i, dtype=np.int64) for i in weight_index]
        if out_sign is not None and not np.isin(np.asarray(out_sign), (-1, 1)).all():
            raise ValueError("ScaledWeights: out_sign must be +1 or -1 at every position")
        self.negative = out_sign is not None and bool((np.asarray(out_sign) < 0).any())
        if self.negative:  # s3 = w3[index] * sign == cat(w3, -w3)[index + numel (sign < 0)], numel added per call
            self.register_buffer("_negative", torch.as_tensor(np.asarray(out_sign) < 0), persistent=False)
        for k, i in enumerate(index, start=1):
            self.register_buffer(f"_index{k}", torch.as_tensor(i), persistent=False)

    def forward(
        self, fused: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, copy2=None
    ) -> torch.Tensor:
        w3, index3 = weight, self._index3
        if self.negative:
            w3 = torch.cat([weight, -weight], dim=-1)
            index3 = index3 + self._negative * weight.shape[-1]
        index = (self._index1, self._index2, index3)
        # v kept for the weight gradient where rerunning the program costs transforms (not on the direct kernel)
        keep = torch.is_grad_enabled() and weight.requires_grad and kernel_of(fused.program_id) != "direct"
        return scaled_weights_product(x1, x2, weight, weight, w3, *index, fused.program_id, keep, copy2)[0]


__all__ = [
    "ARGS",
    "PAIRS",
    "ScaledWeights",
    "runs_on_columns",
    "slot_gradients",
    "scaled_weights",
    "scaled_weights_product",
    "scaled_weights_grads",
]
