"""The fused CPU kernel of the grid messages (``grid_messages.py``): ``torch.ops.gaunt.cpu_grid_messages``.

``grid_messages(slot, f, s, w, y, y2, senders, receivers, num_nodes)`` is the gradient of the form

    T(f, s, w, y) = sum_e sum_{u, p} f[senders[e], u, p] s[receivers[e], u, p] g[e, u, p],
    g[e, u, p] = sum_l w[e, u, l] k[e, l, p],   k[e, l, p] = sum_m y[e, l m] y2[p, l m],

with respect to slot ``slot`` (0: f, 1: s, 2: w, 3: y; that argument is ``None``), the same numbers as
``grid_messages.reference``, computed by the C++ kernel of ``csrc/grid_messages.cpp`` (built by
``cpu_build``) in one pass: per edge, ``k``, ``g`` and ``h = f[senders] * s[receivers]`` stay in cache and
nothing of size ``[E, mul, P]`` is written to memory.

Layout: ``f, s [N, mul, P]``, ``w [E, mul, L+1]``, ``y [E, (L+1)^2]``, ``y2 [P, (L+1)^2]`` (float32 or
float64, one dtype, accumulated in it), ``senders, receivers [E]`` (int64; other integer dtypes are
converted). Non-contiguous inputs are made contiguous by the kernel. Edges may come in any order and repeat.

Threading (``at::parallel_for``, ``torch.set_num_threads``): slots 0 and 1 (sums into nodes) sort the edges
by destination node (counting sort) and split the nodes between threads in shares balanced by edges, each
node's ``[mul, P]`` row accumulated in a thread-local buffer and written once, so no two threads write one
row and the result does not depend on the number of threads; slots 2 and 3 (one output row per edge) split
the edges.

The op comes from ``grid_messages.define_op``: a fake implementation (``torch.compile(fullgraph=True)``
traces it as one node) and the slot-swapping autograd, so every derivative order runs on this kernel.
"""

from __future__ import annotations

import torch

from . import cpu_build
from .grid_messages import check, define_op


def _kernel(
    slot: int,
    f: torch.Tensor | None,
    s: torch.Tensor | None,
    w: torch.Tensor | None,
    y: torch.Tensor | None,
    y2: torch.Tensor,
    senders: torch.Tensor,
    receivers: torch.Tensor,
    num_nodes: int,
) -> torch.Tensor:
    reason = cpu_build.unavailable()  # builds the library on first use
    if reason is not None:
        raise RuntimeError(f"grid messages: executor 'cpu_fused' cannot run here: {reason}")
    check(f, s, w, y, y2, senders, receivers, num_nodes)
    return torch.ops.gaunt_fused.grid_messages(slot, f, s, w, y, y2, senders.long(), receivers.long(), num_nodes)


grid_messages = define_op("gaunt::cpu_grid_messages", _kernel)

__all__ = ["grid_messages"]
