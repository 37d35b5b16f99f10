"""The Triton executor of the grid messages (``grid_messages``: the form T, its four slots, the autograd).

``torch.ops.gaunt.triton_grid_messages(slot, f, s, w, y, y2, senders, receivers, num_nodes)`` returns what
``grid_messages.reference`` returns, from two kernels that never write anything of size ``[E, mul, P]``.
Shapes: ``f, s [N, mul, P]`` (node functions on the grid), ``w [E, mul, L+1]``, ``y [E, (L+1)^2]``,
``y2 [P, (L+1)^2]``, ``senders, receivers [E]``; the argument in the computed slot is ``None``. With

    k[e, l, p] = sum_m y[e, l m] y2[p, l m],        g[e, u, p] = sum_l w[e, u, l] k[e, l, p],

* slots 0 and 1, ``_node_kernel``: a sum over the edges into each node. Slot 1 gathers ``f`` at the senders and
  sums into the receivers, slot 0 gathers ``s`` at the receivers and sums into the senders:

      out[n, u, p] = sum_{e: dst[e] = n} src[oth[e], u, p] g[e, u, p]                     [N, mul, P]

  The wrapper sorts the edges by destination on the device (a stable sort and ``searchsorted``: row pointers
  of a CSR matrix, no host synchronisation); one program owns a node and a block of channels, keeps a
  ``[BU, BP]`` accumulator in registers over the node's edges and stores it once: no atomics, and the sums
  run in the same order on every call (deterministic).
* slots 2 and 3, ``_edge_kernel``: one program per edge, ``h[u, p] = f[senders[e], u, p] s[receivers[e], u, p]``
  in registers, then

      slot 2:  out[e, u, l]  = sum_p h[u, p] k[e, l, p]                                   [E, mul, L+1]
      slot 3:  out[e, l m]   = sum_p y2[p, l m] sum_u w[e, u, l] h[u, p]                  [E, (L+1)^2]

float32 and bfloat16 inputs compute in float32, float64 in float64 (the ``y2`` table is passed in the compute
dtype, and the kernels read their dtype from it); the output has the inputs' dtype. The op runs on CUDA, and on
the CPU when ``TRITON_INTERPRET=1`` (Triton's interpreter: how the tests check the kernels without a GPU).
Edges whose gathered node is outside ``[0, num_nodes)`` contribute nothing (the loads are masked, and nothing
is checked on the host, which would synchronise); ``reference`` raises instead.
"""

from __future__ import annotations

import contextlib

import torch

from .grid_messages import SLOTS, check, define_op, degrees
from .triton_kernels import _SUM, INTERPRET, _device, triton

tl = triton.language


@_device
def _k_row(y_ptr, y2t_ptr, e, l, m, p, pm, P, L1: tl.constexpr, dt):
    """``k[e, l, p] = sum_m y[e, l m] y2[p, l m]`` ``[BP]`` (``y2t``: ``y2`` transposed, ``[(L+1)^2, P]``)."""
    mm = m < 2 * l + 1
    yl = tl.load(y_ptr + e * (L1 * L1) + l * l + m, mask=mm, other=0.0).to(dt)  # [BM]
    y2l = tl.load(y2t_ptr + (l * l + m[:, None]) * P + p[None, :], mask=mm[:, None] & pm[None, :], other=0.0)
    return tl.reduce(yl[:, None] * y2l, 0, _SUM)


@triton.jit(do_not_specialize=["num_nodes"])
def _node_kernel(
    src_ptr,
    oth_ptr,
    order_ptr,
    rowptr_ptr,
    w_ptr,
    y_ptr,
    y2t_ptr,
    out_ptr,
    num_nodes,
    MUL,
    P,
    L1: tl.constexpr,
    BM: tl.constexpr,
    BU: tl.constexpr,
    BP: tl.constexpr,
):
    """Node n = program 0, channels of block program 1: ``out[n, u, p] = sum_{i in row n} src[oth[i], u, p] g[e, u, p]``
    with ``e = order[i]`` (the edges sorted by destination; ``oth`` already in that order)."""
    dt = y2t_ptr.dtype.element_ty
    n = tl.program_id(0).to(tl.int64)
    u = tl.program_id(1).to(tl.int64) * BU + tl.arange(0, BU)
    p = tl.arange(0, BP)
    m = tl.arange(0, BM)
    um, pm = u < MUL, p < P
    tile = um[:, None] & pm[None, :]
    acc = tl.full([BU, BP], 0, dt)  # (tl.zeros is a nested jit call: slow in the interpreter)
    for i in range(tl.load(rowptr_ptr + n), tl.load(rowptr_ptr + n + 1)):
        e = tl.load(order_ptr + i).to(tl.int64)
        j = tl.load(oth_ptr + i).to(tl.int64)
        g = tl.full([BU, BP], 0, dt)
        for l in tl.static_range(L1):  # g[u, p] = sum_l w[e, u, l] k[e, l, p]
            k = _k_row(y_ptr, y2t_ptr, e, l, m, p, pm, P, L1, dt)
            wl = tl.load(w_ptr + (e * MUL + u) * L1 + l, mask=um, other=0.0).to(dt)
            g += wl[:, None] * k[None, :]
        inside = tl.where((j >= 0) & (j < num_nodes), tile, False)  # (tile & scalar: int32 in the interpreter)
        x = tl.load(src_ptr + (j * MUL + u[:, None]) * P + p[None, :], mask=inside, other=0.0).to(dt)
        acc += x * g
    tl.store(out_ptr + (n * MUL + u[:, None]) * P + p[None, :], acc.to(out_ptr.dtype.element_ty), mask=tile)


@triton.jit(do_not_specialize=["num_nodes"])
def _edge_kernel(
    f_ptr,
    s_ptr,
    w_ptr,
    y_ptr,
    senders_ptr,
    receivers_ptr,
    y2t_ptr,
    out_ptr,
    num_nodes,
    MUL,
    P,
    SLOT: tl.constexpr,
    L1: tl.constexpr,
    BM: tl.constexpr,
    BU: tl.constexpr,
    BP: tl.constexpr,
):
    """Edge e = program 0 (all channels: ``BU >= MUL``): slot 2 ``out[e, u, l] = sum_p h[u, p] k[e, l, p]``, slot 3
    ``out[e, l m] = sum_p y2[p, l m] q[l, p]`` with ``q[l, p] = sum_u w[e, u, l] h[u, p]``."""
    dt = y2t_ptr.dtype.element_ty
    e = tl.program_id(0).to(tl.int64)
    u = tl.arange(0, BU).to(tl.int64)
    p = tl.arange(0, BP)
    m = tl.arange(0, BM)
    um, pm = u < MUL, p < P
    tile = um[:, None] & pm[None, :]
    a = tl.load(senders_ptr + e).to(tl.int64)
    b = tl.load(receivers_ptr + e).to(tl.int64)
    fa_mask = tl.where((a >= 0) & (a < num_nodes), tile, False)  # (tile & scalar: int32 in the interpreter)
    sb_mask = tl.where((b >= 0) & (b < num_nodes), tile, False)
    fa = tl.load(f_ptr + (a * MUL + u[:, None]) * P + p[None, :], mask=fa_mask, other=0.0)
    sb = tl.load(s_ptr + (b * MUL + u[:, None]) * P + p[None, :], mask=sb_mask, other=0.0)
    h = fa.to(dt) * sb.to(dt)  # h[u, p] = f[senders[e], u, p] s[receivers[e], u, p]
    for l in tl.static_range(L1):
        if SLOT == 2:  # out[e, u, l] = sum_p h[u, p] k[e, l, p]
            k = _k_row(y_ptr, y2t_ptr, e, l, m, p, pm, P, L1, dt)
            out = tl.reduce(h * k[None, :], 1, _SUM)
            tl.store(out_ptr + (e * MUL + u) * L1 + l, out.to(out_ptr.dtype.element_ty), mask=um)
        else:  # q[p] = sum_u w[e, u, l] h[u, p];  out[e, l m] = sum_p y2[p, l m] q[p]
            wl = tl.load(w_ptr + (e * MUL + u) * L1 + l, mask=um, other=0.0).to(dt)
            q = tl.reduce(wl[:, None] * h, 0, _SUM)
            mm = m < 2 * l + 1
            y2l = tl.load(y2t_ptr + (l * l + m[:, None]) * P + p[None, :], mask=mm[:, None] & pm[None, :], other=0.0)
            out = tl.reduce(y2l * q[None, :], 1, _SUM)
            tl.store(out_ptr + e * (L1 * L1) + l * l + m, out.to(out_ptr.dtype.element_ty), mask=mm)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, n))


def _warps(elements: int) -> int:
    """Warps for a program whose largest register tile has ``elements`` entries (~32 of them a thread)."""
    return max(1, min(8, elements // 1024))


def blocks(slot: int, mul: int, P: int) -> tuple[int, int, int]:
    """``(BU, BP, num_warps)``: all of P; the node kernel in blocks of channels (a ``[BU, BP]`` accumulator of at most
    4096 entries on a GPU, every channel in the interpreter, where fewer programs run faster); the edge kernel
    every channel (slot 3 sums over them)."""
    BP, BU = _pow2(P), _pow2(mul)
    if slot in (0, 1) and not INTERPRET:
        BU = min(BU, max(1, 4096 // BP))
    return BU, BP, _warps(BU * BP)


def run(slot, f, s, w, y, y2, senders, receivers, num_nodes, block_u: int | None = None) -> torch.Tensor:
    """Slot ``slot``'s gradient of T with the kernels (no autograd). ``block_u``: the node kernel's channels per
    program instead of :func:`blocks`' (the tests run several blocks in the interpreter)."""
    if slot not in (0, 1, 2, 3):
        raise ValueError(f"grid messages: slot must be 0..3, got {slot!r}")
    args = [f, s, w, y]
    args[slot] = None
    missing = [SLOTS[i] for i in range(4) if i != slot and args[i] is None]
    if missing:
        raise ValueError(f"grid messages: slot {slot} needs {', '.join(missing)}")
    f, s, w, y = args
    check(f, s, w, y, y2, senders, receivers, num_nodes)
    muls = {a.shape[1] for a in args[:3] if a is not None}
    if len(muls) > 1:
        raise ValueError(f"grid messages: f, s and w disagree on mul: {sorted(muls)}")
    if senders.dtype not in (torch.int32, torch.int64) or receivers.dtype != senders.dtype:
        raise ValueError(f"grid messages: senders and receivers must be int32 or int64, got {senders.dtype}")
    device = y2.device
    if any(t.device != device for t in (*(a for a in args if a is not None), senders, receivers)):
        raise ValueError(f"grid messages: every tensor must be on {device}")
    if device.type != "cuda" and not INTERPRET:
        raise ValueError(
            f"grid messages: the Triton kernels run on CUDA (or the CPU with TRITON_INTERPRET=1), not {device}"
        )

    (mul,), E, P, L1 = muls, senders.shape[0], y2.shape[0], degrees(y2)
    shape = ((num_nodes, mul, P), (num_nodes, mul, P), (E, mul, L1), (E, L1 * L1))[slot]
    if E == 0 or 0 in shape:  # nothing to launch (an empty tensor's pointer may be null)
        return torch.zeros(shape, dtype=y2.dtype, device=device)
    out = torch.empty(shape, dtype=y2.dtype, device=device)  # every entry stored by the kernel
    compute = torch.float64 if y2.dtype == torch.float64 else torch.float32
    y2t = y2.t().to(compute).contiguous()  # [(L+1)^2, P]: rows along p, in the compute dtype
    f, s, w, y = (None if a is None else a.contiguous() for a in (f, s, w, y))
    BU, BP, warps = blocks(slot, mul, P)
    BM = _pow2(2 * L1 - 1)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        if slot in (0, 1):
            src, dst, oth = (s, senders, receivers) if slot == 0 else (f, receivers, senders)
            sorted_dst, order = torch.sort(dst, stable=True)
            nodes = torch.arange(num_nodes + 1, device=device, dtype=sorted_dst.dtype)
            rowptr = torch.searchsorted(sorted_dst, nodes)  # edges of node n: order[rowptr[n]:rowptr[n + 1]]
            BU = block_u or BU
            grid = (num_nodes, triton.cdiv(mul, BU))
            _node_kernel[grid](
                src, oth[order], order, rowptr, w, y, y2t, out, num_nodes, mul, P, L1, BM, BU, BP, num_warps=warps
            )
        else:
            dummy = y2t  # the slot's own argument is not read: any pointer
            _edge_kernel[(E,)](
                f,
                s,
                dummy if w is None else w,
                dummy if y is None else y,
                senders,
                receivers,
                y2t,
                out,
                num_nodes,
                mul,
                P,
                slot,
                L1,
                BM,
                BU,
                BP,
                num_warps=warps,
            )
    return out


def _kernel(slot, f, s, w, y, y2, senders, receivers, num_nodes) -> torch.Tensor:
    return run(slot, f, s, w, y, y2, senders, receivers, num_nodes)


grid_messages = define_op("gaunt::triton_grid_messages", _kernel)

__all__ = ["blocks", "grid_messages", "run"]
