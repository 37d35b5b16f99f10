"""Grid messages: the per-edge part of the grid-summed Gaunt convolution, as one multilinear form.

The convolution summed on the grid (``nn.grid_convolution``) sends, along every edge ``e = (j -> i)``,
the node function ``f_j`` (sampled on the grid, ``[mul, P]``) times the edge kernel ``g_e``, and sums the
messages per receiving node on the grid:

    s_i[u, p]   = sum_{e: receivers[e] = i}  f[senders[e], u, p] * g[e, u, p]                      (1)
    g[e, u, p]  = sum_l w[e, u, l] k[e, l, p],     k[e, l, p] = sum_m y[e, l m] y2[p, l m]

(``y [E, (L+1)^2]``: the edge harmonics; ``y2 [P, (L+1)^2]``: the harmonics at the grid points, a
constant table; ``w [E, mul, L+1]``: the per-edge weights of each degree). (1) is the gradient, with
respect to ``s``, of the scalar form

    T(f, s, w, y) = sum_e sum_{u, p} f[senders[e], u, p] s[receivers[e], u, p] g[e, u, p],

which is linear in each of its four arguments. So every derivative of (1), to any order, is a gradient
of T with respect to one argument (a *slot*) with the others given:

    slot 0 (f):  sum_{e: senders[e] = j} s[receivers[e]] * g[e]                      [N, mul, P]
    slot 1 (s):  (1)                                                                 [N, mul, P]
    slot 2 (w):  sum_p h[e, u, p] k[e, l, p],     h[e] = f[senders[e]] * s[receivers[e]]  [E, mul, L+1]
    slot 3 (y):  sum_p y2[p, l m] sum_u w[e, u, l] h[e, u, p]                         [E, (L+1)^2]

and the vector-Jacobian product of slot k's gradient with respect to argument j, for the cotangent c, is
slot j's gradient with argument k replaced by c (T is linear in each argument, and the derivative of
``dT/da_k`` in the direction of ``a_j`` contracted with ``c`` is ``dT/da_j`` at ``a_k = c``). One kernel
with four slots is thus closed under differentiation: forces (a first derivative) and force training (a
second) run on it. The argument in the computed slot is ``None``.

Executors (``grid_messages_runners``; names as in ``executors.EXECUTORS``): "torch" (:func:`reference`,
autograd through torch ops), "torch_programs" (the reference as a custom op with the slot-swapping
autograd: the scheme of the fused executors, checked on the reference), "cpu_fused"
(``torch.ops.gaunt.cpu_grid_messages``, the C++ kernel of ``csrc/grid_messages.cpp``: per edge, ``k``,
``g`` and the product stay in cache, nothing of size ``[E, mul, P]`` is written) and "triton"
(``torch.ops.gaunt.triton_grid_messages``).

Example: slot 1 equals the sum of messages written out

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> N, E, mul, P, L = 3, 4, 2, 5, 1
>>> f = torch.randn(N, mul, P, generator=g, dtype=torch.float64)
>>> w = torch.randn(E, mul, L + 1, generator=g, dtype=torch.float64)
>>> y = torch.randn(E, (L + 1) ** 2, generator=g, dtype=torch.float64)
>>> y2 = torch.randn(P, (L + 1) ** 2, generator=g, dtype=torch.float64)
>>> senders, receivers = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 0, 0, 2])
>>> s = reference(1, f, None, w, y, y2, senders, receivers, N)
>>> k = torch.stack([y[:, :1] @ y2[:, :1].T, y[:, 1:] @ y2[:, 1:].T], dim=1)      # [E, L+1, P]
>>> messages = f[senders] * torch.einsum("eul,elp->eup", w, k)
>>> torch.allclose(s, torch.zeros(N, mul, P, dtype=torch.float64).index_add(0, receivers, messages))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .slots import slot_vjps

SLOTS = ("f", "s", "w", "y")  # the arguments of T, in slot order


def degrees(y2: torch.Tensor) -> int:
    """``L + 1`` from the table ``y2 [P, (L+1)^2]``."""
    n = math.isqrt(y2.shape[1])
    if n * n != y2.shape[1]:
        raise ValueError(f"grid messages: y2 has {y2.shape[1]} columns, not (L+1)^2")
    return n


def edge_kernel(y: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """``k[e, l, p] = sum_m y[e, l m] y2[p, l m]`` ``[E, L+1, P]``."""
    blocks = [y[:, l * l : (l + 1) ** 2] @ y2[:, l * l : (l + 1) ** 2].T for l in range(degrees(y2))]  # noqa: E741
    return torch.stack(blocks, dim=1)


def reference(
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
    """The gradient of T with respect to ``SLOTS[slot]`` (module docstring), in plain torch ops (the
    "torch" executor, differentiable by autograd). The argument in ``slot`` is ignored (pass ``None``)."""
    if slot in (0, 1):  # a sum over edges into nodes; the other node tensor is gathered
        k = edge_kernel(y, y2)
        g = torch.einsum("eul,elp->eup", w, k)
        gathered, scatter = (s[receivers], senders) if slot == 0 else (f[senders], receivers)
        out = g.new_zeros(num_nodes, *g.shape[1:])
        return out.index_add(0, scatter, gathered * g)
    h = f[senders] * s[receivers]  # [E, mul, P]
    if slot == 2:
        return torch.einsum("eup,elp->eul", h, edge_kernel(y, y2))
    if slot == 3:
        q = torch.einsum("eul,eup->elp", w, h)  # [E, L+1, P]
        L1 = degrees(y2)
        return torch.cat([q[:, l] @ y2[:, l * l : (l + 1) ** 2] for l in range(L1)], dim=1)  # noqa: E741
    raise ValueError(f"grid messages: slot must be 0..3, got {slot!r}")


def output_shape(slot: int, args, y2: torch.Tensor, senders: torch.Tensor, num_nodes: int) -> tuple[int, ...]:
    """The shape of slot ``slot``'s gradient (``args = (f, s, w, y)``, one of them ``None``)."""
    mul = next(a.shape[1] for a in args[:3] if a is not None)
    E, P, L1 = senders.shape[0], y2.shape[0], degrees(y2)
    return ((num_nodes, mul, P), (num_nodes, mul, P), (E, mul, L1), (E, L1 * L1))[slot]


def define_op(name: str, kernel: Callable[..., torch.Tensor]):
    """Register ``kernel(slot, f, s, w, y, y2, senders, receivers, num_nodes)`` as the custom op ``name``
    with its fake implementation and the slot-swapping autograd of the module docstring (so its derivatives
    of every order run on the same kernel). ``y2`` is a constant of the op: it gets no gradient
    (``GridMessages`` refuses a ``y2`` that requires one). Returns the op."""

    def grid_messages(
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
        return kernel(slot, f, s, w, y, y2, senders, receivers, num_nodes)

    op = torch.library.custom_op(name, grid_messages, mutates_args=())

    @op.register_fake
    def _fake(slot, f, s, w, y, y2, senders, receivers, num_nodes):
        args = (f, s, w, y)
        like = next(a for a in args if a is not None)
        return like.new_empty(output_shape(slot, args, y2, senders, num_nodes))

    def setup_context(ctx, inputs, output) -> None:
        slot, f, s, w, y, y2, senders, receivers, num_nodes = inputs
        ctx.slot, ctx.num_nodes = slot, num_nodes
        ctx.save_for_backward(f, s, w, y, y2, senders, receivers)

    def backward(ctx, grad: torch.Tensor):
        f, s, w, y, y2, senders, receivers = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:5]
        grads = slot_vjps(
            [f, s, w, y], {ctx.slot: grad}, needs, lambda j, given: op(j, *given, y2, senders, receivers, ctx.num_nodes)
        )
        return None, *grads, None, None, None, None

    op.register_autograd(backward, setup_context=setup_context)
    return op


def check(f, s, w, y, y2: torch.Tensor, senders: torch.Tensor, receivers: torch.Tensor, num_nodes: int) -> None:
    """Shapes, dtypes and index ranges of the arguments (``None`` allowed); raises ``ValueError``."""
    E, P, L1 = senders.shape[0], y2.shape[0], degrees(y2)
    if senders.shape != (E,) or receivers.shape != (E,):
        raise ValueError(f"grid messages: senders {tuple(senders.shape)} and receivers must be [E]")
    expected = {"f": (num_nodes, None, P), "s": (num_nodes, None, P), "w": (E, None, L1), "y": (E, L1 * L1)}
    for name, a in zip(SLOTS, (f, s, w, y)):
        if a is None:
            continue
        want = expected[name]
        if a.dim() != len(want) or any(n is not None and n != m for n, m in zip(want, a.shape)):
            raise ValueError(f"grid messages: {name} has shape {tuple(a.shape)}, expected {want} (None: any)")
        if a.dtype != y2.dtype:
            raise ValueError(f"grid messages: {name} is {a.dtype}, y2 is {y2.dtype}")


__all__ = [
    "SLOTS",
    "check",
    "define_op",
    "degrees",
    "edge_kernel",
    "output_shape",
    "reference",
]
