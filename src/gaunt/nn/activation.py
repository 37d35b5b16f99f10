"""Equivariant nonlinearities on irreps: gates and norm-based activations (e3nn semantics).

* :class:`NormalizedActivation` -- ``phi(x) = c f(x)`` with ``c = E[f(z)^2]^(-1/2)``, z ~ N(0, 1), so
  unit-variance inputs give unit second moment (e3nn's ``normalize2mom``); also finds the parity of f.
* :class:`Gate` -- scalars go through activations; every other irrep is multiplied by an activated
  scalar "gate" of its own (e3nn ``nn.Gate``).
* :class:`NormActivation` -- every irrep copy is rescaled by ``f(|x| + b) / |x|`` (e3nn ``nn.NormActivation``).

Why these are equivariant: a scalar ``0e`` is invariant, so any function of it is; a pseudoscalar
``0o`` flips sign under inversion, so only an odd f (output ``0o``) or an even f (output ``0e``) keeps
a definite parity. Multiplying an irrep by an invariant (a ``0e`` gate or a function of its norm)
commutes with ``D(R)``; a ``0o`` gate flips the parity of what it gates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..so3 import Irreps
from .linear import check_features

Activation = Callable[[torch.Tensor], torch.Tensor] | None


def _as_float64(f: Callable, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return f(torch.as_tensor(x, dtype=torch.float64)).to(torch.float64).numpy()


def second_moment(f: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """``E[f(z)^2]`` for ``z ~ N(0, 1)``, by composite 16-point Gauss-Legendre quadrature on panels of width
    1/8 over [-12, 12] (the Gaussian tail beyond is < 1e-31). Panel edges fall on every multiple of 1/8,
    so the kinks of relu, hardtanh (+-1), relu6 (6) or hardswish (+-3) are integrated exactly; for a
    function smooth on each panel the error is at float64 rounding (e3nn's Monte-Carlo estimate with
    10^6 samples has a relative error of ~1e-3)."""
    nodes, weights = np.polynomial.legendre.leggauss(16)
    edges = np.arange(-96, 97) / 8.0
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    z = (mid[:, None] + half[:, None] * nodes[None, :]).ravel()
    w = (half[:, None] * weights[None, :]).ravel() * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return float(np.sum(w * _as_float64(f, z) ** 2))


def activation_parity(f: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """+1 if f is even, -1 if odd, 0 if neither (tested on 256 points of [0, 10], relative tolerance 1e-9)."""
    x = np.linspace(0.0, 10.0, 256)
    a, b = _as_float64(f, x), _as_float64(f, -x)
    tol = 1e-9 * max(float(np.abs(a).max()), 1e-30)
    if np.abs(a - b).max() <= tol:
        return 1
    if np.abs(a + b).max() <= tol:
        return -1
    return 0


class NormalizedActivation(torch.nn.Module):
    """``phi(x) = c f(x)`` elementwise, ``c = E[f(z)^2]^(-1/2)`` (:func:`second_moment`) or 1 if ``normalize=False``.

    Attributes: ``constant`` (c, a python float) and ``parity`` (+1 even, -1 odd, 0 neither).
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], normalize: bool = True) -> None:
        super().__init__()
        self.f = f
        self.constant = second_moment(f) ** -0.5 if normalize else 1.0
        self.parity = activation_parity(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.f(x)
        return y if abs(self.constant - 1.0) < 1e-12 else y * self.constant

    def extra_repr(self) -> str:
        return f"constant={self.constant:.12g}, parity={self.parity}"


class _ScalarActivations(torch.nn.Module):
    """Activations on scalar blocks: ``[..., irreps.dim] -> [..., irreps_out.dim]`` (same dim; ``0o`` may
    become ``0e``)."""

    def __init__(self, owner: str, label: str, irreps: Irreps, acts: Sequence[Activation], normalize: bool) -> None:
        super().__init__()
        acts = list(acts)
        if len(acts) != len(irreps):
            raise ValueError(
                f"{owner}: {label} {irreps} has {len(irreps)} blocks but {len(acts)} activations were given"
            )
        self.acts = torch.nn.ModuleList()
        out, self._segments = [], []
        start = 0
        for (mul, ir), f in zip(irreps, acts):
            if ir.l != 0:
                raise ValueError(f"{owner}: {label} must be scalars (l = 0), got irrep {ir}")
            act = None if f is None else NormalizedActivation(f, normalize)
            p = ir.p
            if act is not None and ir.p == -1:
                if act.parity == 0:
                    raise ValueError(
                        f"{owner}: {label} has pseudoscalar {ir} but its activation is neither even nor odd, "
                        f"which would break parity; use an odd (tanh) or even (abs) function"
                    )
                p = act.parity
            out.append((mul, (0, p)))
            self._segments.append((start, mul, len(self.acts) if act is not None else -1))
            if act is not None:
                self.acts.append(act)
            start += mul
        self.irreps_out = Irreps(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(k < 0 for _, _, k in self._segments):
            return x
        pieces = []
        for start, mul, k in self._segments:
            part = x[..., start : start + mul]
            pieces.append(part if k < 0 else self.acts[k](part))
        return torch.cat(pieces, dim=-1) if pieces else x


def _elementwise_gated_irreps(gated: Irreps, gates: Irreps) -> Irreps:
    """Irreps of ``gated * gate`` channel by channel: blocks split where gate parities change; parity p_gated p_gate."""
    gated, gates = list(gated.simplify()), list(gates.simplify())
    out, i, j = [], 0, 0
    mul_a, mul_b = (gated[0].mul if gated else 0), (gates[0].mul if gates else 0)
    while i < len(gated) and j < len(gates):
        n = min(mul_a, mul_b)
        ir_a, ir_b = gated[i].ir, gates[j].ir
        out.append((n, (ir_a.l, ir_a.p * ir_b.p)))
        mul_a, mul_b = mul_a - n, mul_b - n
        if mul_a == 0:
            i += 1
            mul_a = gated[i].mul if i < len(gated) else 0
        if mul_b == 0:
            j += 1
            mul_b = gates[j].mul if j < len(gates) else 0
    return Irreps(out)


class Gate(torch.nn.Module):
    """Gate nonlinearity (e3nn ``nn.Gate``):  ``out = [act_s(s)] + [act_g(g_k) v_k for k]``.

    Args:
        irreps_scalars, act_scalars: scalar blocks and one activation (or None) per block.
        irreps_gates, act_gates: scalar gate blocks and one activation per block.
        irreps_gated: the irreps being gated, ``irreps_gated.num_irreps == irreps_gates.num_irreps``;
            the k-th gate multiplies the k-th irrep copy.
        normalize_act: wrap every activation as :class:`NormalizedActivation` (e3nn always does, with a
            Monte-Carlo estimate of the constant; see :func:`second_moment`: the two differ by ~1e-3
            relative unless e3nn's ``cst`` is set to ours).

    Input layout is e3nn's: ``irreps_in = sorted(scalars + gates + gated)``, simplified (a stable sort by
    irrep, so among ``0e`` channels the scalars come before the gates). Output:
    ``irreps_out = act(irreps_scalars) + gated irreps`` (a ``0o`` gate flips the gated parity).
    Shapes ``[..., irreps_in.dim] -> [..., irreps_out.dim]``; cost O(irreps.dim) per sample.
    """

    def __init__(
        self,
        irreps_scalars,
        act_scalars: Sequence[Activation],
        irreps_gates,
        act_gates: Sequence[Activation],
        irreps_gated,
        normalize_act: bool = True,
    ) -> None:
        super().__init__()
        scalars, gates, gated = Irreps(irreps_scalars), Irreps(irreps_gates), Irreps(irreps_gated)
        if gates.num_irreps != gated.num_irreps:
            raise ValueError(
                f"Gate: irreps_gated {gated} has {gated.num_irreps} irreps but irreps_gates {gates} has "
                f"{gates.num_irreps} gates; they must match one to one"
            )
        self.act_scalars = _ScalarActivations("Gate", "irreps_scalars", scalars, act_scalars, normalize_act)
        self.act_gates = _ScalarActivations("Gate", "irreps_gates", gates, act_gates, normalize_act)
        self.irreps_scalars, self.irreps_gates, self.irreps_gated = scalars, gates, gated
        self._dims = (scalars.dim, gates.dim, gated.dim)

        # Input permutation: sorted layout -> [scalars | gates | gated] in concatenation order.
        parts = scalars.simplify() + gates.simplify() + gated.simplify()
        sorted_irreps, p, _ = parts.sort()
        starts = [sl.start for sl in sorted_irreps.slices()]
        empty = [torch.zeros(0, dtype=torch.long)]
        index = torch.cat(empty + [torch.arange(starts[p[k]], starts[p[k]] + parts[k].dim) for k in range(len(parts))])
        self.irreps_in = sorted_irreps.simplify()
        self._identity = bool(torch.equal(index, torch.arange(parts.dim)))
        self.register_buffer("_perm", index, persistent=False)
        # Gate k multiplies every component of gated irrep copy k.
        gate_of = torch.cat(empty + [torch.arange(mul).repeat_interleave(ir.dim) for mul, ir in gated])
        offsets = np.cumsum([0] + [mul for mul, _ in gated])[:-1]
        gate_of += torch.as_tensor(np.repeat(offsets, [mul * ir.dim for mul, ir in gated]), dtype=torch.long)
        self.register_buffer("_gate_of", gate_of, persistent=False)
        self.irreps_out = self.act_scalars.irreps_out + _elementwise_gated_irreps(gated, self.act_gates.irreps_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., irreps_in.dim]`` -> ``[..., irreps_out.dim]``."""
        check_features("Gate", x, self.irreps_in)
        if not self._identity:
            x = torch.index_select(x, -1, self._perm)
        ns, ng, _ = self._dims
        scalars = self.act_scalars(x[..., :ns])
        if ng == 0:
            return scalars
        gates = self.act_gates(x[..., ns : ns + ng])
        gated = x[..., ns + ng :] * torch.index_select(gates, -1, self._gate_of)
        return torch.cat([scalars, gated], dim=-1)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}"


class NormActivation(torch.nn.Module):
    """Norm nonlinearity (e3nn ``nn.NormActivation``): each irrep copy ``x_c`` (any l, p) becomes

        y_c = f(n_c + b_c) / n_c * x_c,    n_c = sqrt(max(|x_c|^2, epsilon^2))

    (``y_c = f(n_c + b_c) x_c`` with ``normalize=False``). The clamp (``epsilon = 1e-8``, e3nn's default)
    makes values and gradients finite at ``x_c = 0``: there ``y = 0`` and ``dy/dx = f(epsilon + b)/epsilon``
    (``f(epsilon + b)`` without normalisation; e3nn's ``normalize=False`` gives NaN gradients there).
    ``f`` is used as given (no second-moment normalisation, as e3nn). ``bias``: learnable ``b``, one per
    irrep copy (``[irreps.num_irreps]``), initialised to zero.

    Shapes ``[..., irreps.dim] -> [..., irreps.dim]``, ``irreps_out == irreps``; cost O(irreps.dim).
    """

    def __init__(
        self,
        irreps,
        activation: Callable[[torch.Tensor], torch.Tensor],
        bias: bool = True,
        normalize: bool = True,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__()
        self.irreps_in = self.irreps_out = Irreps(irreps)
        if not epsilon > 0:
            raise ValueError(f"NormActivation: epsilon must be > 0, got {epsilon}")
        self.activation, self.normalize, self.epsilon = activation, bool(normalize), float(epsilon)
        self.bias = torch.nn.Parameter(torch.zeros(self.irreps_in.num_irreps)) if bias else None
        # _channel[i]: the irrep copy c (0 .. num_irreps-1) that feature i belongs to.
        firsts = np.cumsum([0] + [mul for mul, _ in self.irreps_in])[:-1]
        channel = [f + torch.arange(mul).repeat_interleave(ir.dim) for f, (mul, ir) in zip(firsts, self.irreps_in)]
        self.register_buffer("_channel", torch.cat([torch.zeros(0, dtype=torch.long)] + channel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., irreps.dim]`` -> ``[..., irreps.dim]``."""
        check_features("NormActivation", x, self.irreps_in)
        num = self.irreps_in.num_irreps
        sq = x.new_zeros(*x.shape[:-1], num).index_add(-1, self._channel, x * x)  # |x_c|^2
        norm = sq.clamp_min(self.epsilon**2).sqrt()
        arg = norm if self.bias is None else norm + self.bias.to(x.dtype)
        scale = self.activation(arg)
        if self.normalize:
            scale = scale / norm
        return x * torch.index_select(scale, -1, self._channel)

    def extra_repr(self) -> str:
        return f"{self.irreps_in}, normalize={self.normalize}, epsilon={self.epsilon}"


__all__ = ["Gate", "NormActivation", "NormalizedActivation", "second_moment", "activation_parity"]
