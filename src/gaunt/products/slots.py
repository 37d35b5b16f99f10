"""The backward of a multilinear form's gradients ("slots"), written once.

A form ``T(a_0, ..., a_{k-1})`` linear in each argument has the gradients ``slot_j = dT/da_j``. The
vector-Jacobian product of ``slot_s`` with respect to ``a_j`` for a cotangent ``c`` is ``slot_j`` evaluated with
``a_s`` replaced by ``c`` (the derivative of ``dT/da_s`` in the direction of ``a_j``, contracted with ``c``, is
``dT/da_j`` at ``a_s = c``). So one kernel that computes every slot is closed under differentiation: its
backward, double backward and so on are calls of the same kernel (``grid_messages``, ``direct_weighted``;
``scaled_weights`` runs the same rule with its slots in pairs).

>>> import torch
>>> def slot(j, given):  # T(a, b) = sum a * b: slot 0 = b, slot 1 = a
...     return given[1 - j]
>>> a, b, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), torch.tensor([5.0, 6.0])
>>> slot_vjps([a, b], {0: c}, (False, True), slot)  # d(c . slot_0)/db = c
[None, tensor([5., 6.])]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def slot_vjps(
    args: Sequence[torch.Tensor | None],
    cotangents: dict[int, torch.Tensor | None],
    needs: Sequence[bool],
    slot: Callable[[int, list], torch.Tensor],
) -> list[torch.Tensor | None]:
    """The gradients of the arguments ``args`` for the cotangents of some slots (slot -> cotangent; None:
    none): argument j's is the sum, over the slots s != j, of ``slot(j, given)`` where ``given`` is ``args``
    with the cotangent of s in place s and None in place j. ``needs[j]``: argument j's gradient is wanted."""
    grads: list[torch.Tensor | None] = [None] * len(args)
    for s, c in cotangents.items():
        if c is None:
            continue
        for j in range(len(args)):
            if j != s and needs[j]:
                given = [c if i == s else None if i == j else a for i, a in enumerate(args)]
                term = slot(j, given)
                grads[j] = term if grads[j] is None else grads[j] + term
    return grads


__all__ = ["slot_vjps"]
