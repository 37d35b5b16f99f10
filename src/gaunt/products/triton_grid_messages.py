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
  of a CSR matrix, no host synchronisation); one program owns a node, a block of channels and a block of points,
  keeps a ``[BU, BP]`` accumulator in registers over the node's edges and stores it once: no atomics, and the
  sums run in the same order on every call (deterministic). ``k`` is summed column by column (no reduction
  across threads; the rows of ``y2`` do not depend on the edge).
* slots 2 and 3, ``_edge_kernel``: one program per edge with every channel, the points in chunks of ``BP`` (both
  sums split over p), ``h[u, p] = f[senders[e], u, p] s[receivers[e], u, p]`` in registers, then

      slot 2:  out[e, u, l]  = sum_p h[u, p] k[e, l, p]                                   [E, mul, L+1]
      slot 3:  out[e, l m]   = sum_p y2[p, l m] sum_u w[e, u, l] h[u, p]                  [E, (L+1)^2]

Tiles (:func:`blocks`) are chosen from ptxas' register counts for sm_90
(``tests/products/triton_grid_messages_aot.py``), not from timings: no GPU has run these kernels yet.

float32 and bfloat16 inputs compute in float32, float64 in float64 (the ``y2`` table is passed in the compute
dtype, and the kernels read their dtype from it and store in it); the output has the inputs' dtype. The op runs on
CUDA, and on the CPU when ``TRITON_INTERPRET=1`` (Triton's interpreter: how the tests check the kernels without a
GPU).
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
def _k_row(y_ptr, y2t_ptr, e, p, pm, P, l: tl.constexpr, L1: tl.constexpr, dt: tl.constexpr):
    """``k[e, l, p] = sum_m y[e, l m] y2[p, l m]`` ``[BP]``, column by column (``y2t``: ``y2`` transposed,
    ``[(L+1)^2, P]``; its rows are the same for every edge: they stay in cache)."""
    k = tl.load(y_ptr + e * (L1 * L1) + l * l).to(dt) * tl.load(y2t_ptr + (l * l) * P + p, mask=pm, other=0.0)
    for m in tl.static_range(1, 2 * l + 1):
        column = tl.load(y2t_ptr + (l * l + m) * P + p, mask=pm, other=0.0)
        k += tl.load(y_ptr + e * (L1 * L1) + l * l + m).to(dt) * column
    return k


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
    BU: tl.constexpr,
    BP: tl.constexpr,
):
    """Node n = program 0, channels u of block program 1, points p of block program 2:
    ``out[n, u, p] = sum_{i in row n} src[oth[i], u, p] g[e, u, p]``, ``e = order[i]`` (the edges sorted by
    destination; ``oth`` already in that order)."""
    dt = y2t_ptr.dtype.element_ty
    n = tl.program_id(0).to(tl.int64)
    u = tl.program_id(1) * BU + tl.arange(0, BU)
    p = tl.program_id(2) * BP + tl.arange(0, BP)
    um, pm = u < MUL, p < P
    tile = um[:, None] & pm[None, :]
    offsets = u[:, None] * P + p[None, :]  # int32 within a node's [MUL, P] row; the rows' starts in int64
    acc = tl.full([BU, BP], 0, dt)  # (tl.zeros is a nested jit call: slow in the interpreter)
    for i in range(tl.load(rowptr_ptr + n), tl.load(rowptr_ptr + n + 1)):
        e = tl.load(order_ptr + i).to(tl.int64)
        o = tl.load(oth_ptr + i).to(tl.int64)
        inside = tl.where((o >= 0) & (o < num_nodes), tile, False)  # (tile & scalar: int32 in the interpreter)
        x = tl.load(src_ptr + o * (MUL * P) + offsets, mask=inside, other=0.0).to(dt)
        g = tl.full([BU, BP], 0, dt)
        for l in tl.static_range(L1):  # g[u, p] = sum_l w[e, u, l] k[e, l, p]
            wl = tl.load(w_ptr + e * (MUL * L1) + u * L1 + l, mask=um, other=0.0).to(dt)
            g += wl[:, None] * _k_row(y_ptr, y2t_ptr, e, p, pm, P, l, L1, dt)[None, :]
        acc += x * g
    tl.store(out_ptr + n * (MUL * P) + offsets, acc, mask=tile)


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
    BJ: tl.constexpr,
    BL: tl.constexpr,
    BU: tl.constexpr,
    BP: tl.constexpr,
):
    """Edge e = program 0, every channel (``BU >= MUL``), the points in chunks of ``BP`` (both sums split over p):
    slot 2 ``out[e, u, l] = sum_p h[u, p] k[e, l, p]``, slot 3 ``out[e, l m] = sum_p y2[p, l m] q[l, p]`` with
    ``q[l, p] = sum_u w[e, u, l] h[u, p]``."""
    dt = y2t_ptr.dtype.element_ty
    e = tl.program_id(0).to(tl.int64)
    u = tl.arange(0, BU)
    j = tl.arange(0, BJ)
    ls = tl.arange(0, BL)
    um = u < MUL
    a = tl.load(senders_ptr + e).to(tl.int64)
    b = tl.load(receivers_ptr + e).to(tl.int64)
    a_in, b_in = (a >= 0) & (a < num_nodes), (b >= 0) & (b < num_nodes)
    if SLOT == 2:
        out = tl.full([BU, BL], 0, dt)
    else:
        w_tile = um[:, None] & (ls < L1)[None, :]
        wu = tl.load(w_ptr + e * (MUL * L1) + u[:, None] * L1 + ls[None, :], mask=w_tile, other=0.0).to(dt)
        out = tl.full([BJ, BP], 0, dt)  # out[e, j] = sum over the points of this, at the end
    for p0 in range(0, P, BP):
        p = p0 + tl.arange(0, BP)
        pm = p < P
        tile = um[:, None] & pm[None, :]
        offsets = u[:, None] * P + p[None, :]  # int32 within a node's [MUL, P] row; the rows' starts in int64
        # (tl.where, not tile & scalar: that is int32 in the interpreter)
        fa = tl.load(f_ptr + a * (MUL * P) + offsets, mask=tl.where(a_in, tile, False), other=0.0)
        sb = tl.load(s_ptr + b * (MUL * P) + offsets, mask=tl.where(b_in, tile, False), other=0.0)
        h = fa.to(dt) * sb.to(dt)  # h[u, p] = f[senders[e], u, p] s[receivers[e], u, p]
        if SLOT == 2:
            for l in tl.static_range(L1):  # out[e, u, l] += sum_p h[u, p] k[e, l, p]
                column = tl.reduce(h * _k_row(y_ptr, y2t_ptr, e, p, pm, P, l, L1, dt)[None, :], 1, _SUM)  # [BU]
                out += tl.where(ls[None, :] == l, column[:, None], 0.0)
        else:
            qj = tl.full([BJ, BP], 0, dt)  # qj[l m, p] = q[l, p] = sum_u w[e, u, l] h[u, p]
            for l in tl.static_range(L1):
                wl = tl.reduce(tl.where(ls[None, :] == l, wu, 0.0), 1, _SUM)  # w[e, :, l]
                q = tl.reduce(wl[:, None] * h, 0, _SUM)  # [BP]
                qj = tl.where(((j >= l * l) & (j < (l + 1) * (l + 1)))[:, None], q[None, :], qj)
            y2_tile = (j < L1 * L1)[:, None] & pm[None, :]
            out += tl.load(y2t_ptr + j[:, None] * P + p[None, :], mask=y2_tile, other=0.0) * qj  # y2[p, l m] q[l, p]
    if SLOT == 2:
        tl.store(out_ptr + e * (MUL * L1) + u[:, None] * L1 + ls[None, :], out, mask=um[:, None] & (ls < L1)[None, :])
    else:
        tl.store(out_ptr + e * (L1 * L1) + j, tl.reduce(out, 1, _SUM), mask=j < L1 * L1)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, n))


def _warps(elements: int) -> int:
    """Warps for a program whose register tiles have ``elements`` entries: 8 of them a thread (ptxas, sm_90, tiles
    of 2048: the node kernel ~110 registers in float32, ~176 in float64; 16 a thread take 167 and 254)."""
    return max(1, min(8, elements // 256))


def blocks(slot: int, mul: int, P: int) -> tuple[int, int, int]:
    """``(BU, BP, num_warps)`` on a GPU: ``[BU, BP]`` tiles of at most 2048 entries, BP at most 32 points; the node
    kernel in blocks of channels and points (grid axes 1 and 2), the edge kernel with every channel (slot 3 sums
    over them) and a loop over chunks of points. In the interpreter, where fewer and larger programs run faster:
    every channel and every point."""
    BU, BP = _pow2(mul), _pow2(P)
    if not INTERPRET:
        BP = min(BP, 32) if slot in (0, 1) else max(1, min(BP, 32, 2048 // BU))
        BU = min(BU, max(1, 2048 // BP)) if slot in (0, 1) else BU
    return BU, BP, _warps(BU * BP)


def run(slot, f, s, w, y, y2, senders, receivers, num_nodes, tile: tuple[int, int] | None = None) -> torch.Tensor:
    """Slot ``slot``'s gradient of T with the kernels (no autograd). ``tile``: ``(BU, BP)`` instead of :func:`blocks`'
    (powers of two; the edge kernel takes only BP: the tests run a GPU's blocks and chunks in the interpreter)."""
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
    compute = torch.float64 if y2.dtype == torch.float64 else torch.float32
    # every entry stored by the kernel, in the compute dtype: bfloat16 is rounded by torch (to nearest; the
    # interpreter's float32 -> bfloat16 cast in a kernel truncates)
    out = torch.empty(shape, dtype=compute, device=device)
    y2t = y2.t().to(compute).contiguous()  # [(L+1)^2, P]: rows along p, in the compute dtype
    f, s, w, y = (None if a is None else a.contiguous() for a in (f, s, w, y))
    senders, receivers = senders.contiguous(), receivers.contiguous()
    BU, BP, warps = blocks(slot, mul, P)
    if tile is not None:
        BU, BP = (tile[0] if slot in (0, 1) else BU), tile[1]
    BJ = _pow2(L1 * L1)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        if slot in (0, 1):
            src, dst, oth = (s, senders, receivers) if slot == 0 else (f, receivers, senders)
            sorted_dst, order = torch.sort(dst, stable=True)
            nodes = torch.arange(num_nodes + 1, device=device, dtype=sorted_dst.dtype)
            rowptr = torch.searchsorted(sorted_dst, nodes)  # edges of node n: order[rowptr[n]:rowptr[n + 1]]
            grid = (num_nodes, triton.cdiv(mul, BU), triton.cdiv(P, BP))
            _node_kernel[grid](
                src, oth[order], order, rowptr, w, y, y2t, out, num_nodes, mul, P, L1, BU, BP, num_warps=warps
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
                BJ,
                _pow2(L1),
                BU,
                BP,
                num_warps=warps,
            )
    return out.to(y2.dtype)


def _kernel(slot, f, s, w, y, y2, senders, receivers, num_nodes) -> torch.Tensor:
    return run(slot, f, s, w, y, y2, senders, receivers, num_nodes)


grid_messages = define_op("gaunt::triton_grid_messages", _kernel)

__all__ = ["blocks", "grid_messages", "run"]
