"""The derivatives of a power program, as one family of operations closed under differentiation.

For a power program (``powers.PowerProgram``: synthesis ``Synth``, projection ``Proj``, powers K) and an input
``x [n, dim_in]`` read per (sample, channel) as a field ``f = Synth(x)`` on the grid, let ``T_i = Synth(t_i)``
for tangents ``t_i [n, dim_in]``, ``G_k = Proj^T(g[:, k])`` for a cotangent ``g [n, |K|, dim_out]``, and let
``c(k, d) = k! / (k - d)!`` (0 for k < d). The family is

    powers(x, ts, None)[:, k] = Proj( c(k, d) f^(k-d) prod_i T_i )               [n, |K|, dim_out],  d = len(ts)
    powers(x, ts, g)          = Synth^T( sum_k c(k, d) f^(k-d) prod_i T_i G_k )   [n, dim_in],        d = len(ts) + 1

so ``powers(x, [], None)`` is the program's forward, ``powers(x, [t], None)`` its Jacobian-vector product,
``powers(x, [], g)`` its vector-Jacobian product, and in general ``powers(x, ts, g)`` is the d-th derivative
of ``<g, forward(x)>`` in the directions ``ts`` (multilinear in ts and g). Differentiating a member gives
members again (:func:`family_vjp`), with the list of tangents one longer per order:

* no g (output ``[n, |K|, dim_out]``), cotangent ``c``: ``grad t_i = powers(x, ts without t_i, c)``,
  ``grad x = powers(x, ts, c)``;
* with g (output ``[n, dim_in]``), cotangent ``h``: ``grad t_i = powers(x, ts with t_i replaced by h, g)``,
  ``grad g = powers(x, ts + [h], None)``, ``grad x = powers(x, ts + [h], g)``.

So backward, double backward and every higher order run on one kernel (``cpu_powers``). This module is the
reference: :func:`powers_reference` evaluates a member with plain torch ops (no autograd involved), and
:func:`family_vjp` is the rule above for any implementation of the family.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .powers import PowerProgram
from .program import Projection, Synthesis, adjoint_of_projection, adjoint_of_synthesis


def coefficient(k: int, d: int) -> int:
    """``c(k, d) = k! / (k - d)!``: the d-th derivative of ``f^k`` is ``c(k, d) f^(k-d)`` (0 for k < d)."""
    return math.perm(k, d) if k >= d else 0


def derivative_order(ts: Sequence[torch.Tensor], g: torch.Tensor | None) -> int:
    """``d``: how many derivatives with respect to x a member takes (``len(ts)``, plus one with a cotangent)."""
    return len(ts) + (g is not None)


def _table(array, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A program's (read-only numpy) table as a new tensor on ``like``'s device (in ``like``'s dtype by default)."""
    return torch.tensor(array, dtype=dtype or like.dtype, device=like.device)


def synthesize(s: Synthesis, x: torch.Tensor) -> torch.Tensor:
    """``x [n, dim] -> F [n_phi, n_theta, mul * n]``: ``F = s.phi (s.theta @_R gather(x, s.index))`` (column
    ``u n + sample``; gather entries -1 read zero)."""
    (R, Lp), n = s.rows, x.shape[0]
    rows = torch.cat([x.T, x.new_zeros(1, n)])  # index -1 reads the zero row
    X = rows[_table(s.index, x, torch.int64)].view(R, Lp, -1)  # [R, Lp, mul * n]
    G = torch.bmm(_table(s.theta, x), X)  # [R, n_theta, mul * n]
    F = _table(s.phi, x) @ G.view(R, -1)
    return F.view(s.phi.shape[0], s.theta.shape[1], -1)


def project(p: Projection, h: torch.Tensor, n: int) -> torch.Tensor:
    """``H [n_phi, n_theta, mul * n] -> [n, len(p.read)]``: ``Y = p.theta @_R (p.phi H)``, read out by ``p.read``
    (entries -1 read zero)."""
    R3, _ = p.rows
    if n == 0:  # an empty batch: nothing to read (the reshapes below need n > 0)
        return h.new_zeros(0, len(p.read))
    C = _table(p.phi, h) @ h.reshape(h.shape[0], -1)  # [R3, n_theta * Z]
    Y = torch.bmm(_table(p.theta, h), C.view(R3, h.shape[1], -1))
    rows = torch.cat([Y.reshape(-1, n), Y.new_zeros(1, n)])  # [R3 * L3p * mul + 1, n]
    return rows[_table(p.read, h, torch.int64)].T


def powers_reference(
    program: PowerProgram, x: torch.Tensor, ts: Sequence[torch.Tensor] = (), g: torch.Tensor | None = None
) -> torch.Tensor:
    """The member ``powers(x, ts, g)`` of the family (module docstring), with plain torch ops.

    ``x`` and every ``t_i``: ``[n, dim_in]``; ``g``: None or ``[n, len(program.powers), dim_out]``. Returns
    ``[n, len(program.powers), dim_out]`` without ``g``, ``[n, dim_in]`` with it."""
    n, dim_in, d = x.shape[0], x.shape[1], derivative_order(ts, g)
    f = synthesize(program.synthesis, x)
    product = None  # prod_i T_i (None: the empty product, 1)
    for t in ts:
        field = synthesize(program.synthesis, t)
        product = field if product is None else product * field

    def term(k: int) -> torch.Tensor:  # c(k, d) f^(k-d) prod_i T_i
        out = coefficient(k, d) * f.pow(k - d)
        return out if product is None else out * product

    if g is None:
        fields = [term(k) if k >= d else torch.zeros_like(f) for k in program.powers]
        return torch.stack([project(program.projection, h, n) for h in fields], dim=1)
    cotangent = adjoint_of_projection(program.projection, program.mul, 0)  # Proj^T as a synthesis
    h = torch.zeros_like(f)
    for q, k in enumerate(program.powers):
        if k >= d:
            h = h + term(k) * synthesize(cotangent, g[:, q])
    return project(adjoint_of_synthesis(program.synthesis, dim_in), h, n)


#: an implementation of the family: ``(x, ts, g) -> powers(x, ts, g)``
Member = Callable[[torch.Tensor, Sequence[torch.Tensor], "torch.Tensor | None"], torch.Tensor]


def family_vjp(
    member: Member,
    x: torch.Tensor,
    ts: Sequence[torch.Tensor],
    g: torch.Tensor | None,
    cotangent: torch.Tensor,
    needs: tuple[bool, Sequence[bool], bool] | None = None,
) -> tuple[torch.Tensor | None, list[torch.Tensor | None], torch.Tensor | None]:
    """``(grad x, [grad t_i], grad g)`` of ``<cotangent, member(x, ts, g)>``, as members (module docstring).

    ``needs = (x, [t_i], g)`` says which gradients to compute (default: all; None where not needed, and for
    ``g`` when the member has none)."""
    ts = list(ts)
    need_x, need_ts, need_g = needs if needs is not None else (True, [True] * len(ts), g is not None)
    if g is None:  # output [n, K, dim_out]: the cotangent becomes the member's g
        grad_x = member(x, ts, cotangent) if need_x else None
        grad_ts = [member(x, ts[:i] + ts[i + 1 :], cotangent) if need else None for i, need in enumerate(need_ts)]
        return grad_x, grad_ts, None
    grad_x = member(x, [*ts, cotangent], g) if need_x else None  # output [n, dim_in]: the cotangent is a tangent
    grad_ts = [member(x, ts[:i] + [cotangent] + ts[i + 1 :], g) if need else None for i, need in enumerate(need_ts)]
    grad_g = member(x, [*ts, cotangent], None) if need_g else None
    return grad_x, grad_ts, grad_g


def register_family_op(op, program_of: Callable[[int], PowerProgram]) -> None:
    """Give a custom op ``op(x, ts, g, program_id)`` that computes the family's members (``cpu_powers``,
    ``triton_powers``) its fake implementation (the output shape from ``program_of(program_id)``) and its
    autograd: :func:`family_vjp` with the op itself as the member, so every derivative order runs on it."""

    @op.register_fake
    def _fake(x: torch.Tensor, ts: list[torch.Tensor], g: torch.Tensor | None, program_id: int) -> torch.Tensor:
        if g is not None:
            return x.new_empty(x.shape)
        program = program_of(program_id)
        return x.new_empty((x.shape[0], len(program.powers), len(program.projection.read)))

    def setup_context(ctx, inputs, output) -> None:
        x, ts, g, program_id = inputs
        ctx.save_for_backward(x, g, *ts)
        ctx.program_id = program_id

    def backward(ctx, cotangent: torch.Tensor):
        x, g, *ts = ctx.saved_tensors
        need_x, need_ts, need_g, _ = ctx.needs_input_grad

        def member(x: torch.Tensor, ts: Sequence[torch.Tensor], g: torch.Tensor | None) -> torch.Tensor:
            return op(x, list(ts), g, ctx.program_id)

        needs = (need_x, need_ts, need_g and g is not None)
        grad_x, grad_ts, grad_g = family_vjp(member, x, ts, g, cotangent.contiguous(), needs)
        return grad_x, grad_ts, grad_g, None

    op.register_autograd(backward, setup_context=setup_context)


__all__ = [
    "coefficient",
    "derivative_order",
    "family_vjp",
    "powers_reference",
    "project",
    "register_family_op",
    "synthesize",
]
