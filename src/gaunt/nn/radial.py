"""Radial (distance) features of edges: Bessel basis, smooth polynomial cutoff, radial MLP.

These act on invariant scalars (interatomic distances r = |r_ij|), so they are trivially O(3)
invariant; the MLP turns the basis into per-edge weights for a tensor product.

* :class:`BesselBasis` (DimeNet / NequIP / MACE):

      e_n(r) = sqrt(2 / r_max) sin(n pi r / r_max) / r,     n = 1 .. num_basis

  the l = 0 eigenfunctions of the Laplacian in a ball of radius r_max vanishing at the wall,
  orthonormal with weight r^2 on [0, r_max]. Written as ``w_n S(w_n r)`` with ``w_n = n pi / r_max``
  and ``S(t) = sin(t)/t`` evaluated by its Taylor series near 0, so it is smooth at r = 0, where
  ``e_n -> sqrt(2 / r_max) n pi / r_max``, with finite gradients of every order. ``trainable=True``
  learns the w_n.

* :class:`PolynomialCutoff` (NequIP / MACE envelope), with x = r / r_max:

      u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)   for x < 1,   0 for x >= 1

  u(0) = 1 and u = 1 - O(x^p) near 0 (flat to order p - 1); at x = 1, u, u' and u'' vanish, so the
  envelope (and any basis multiplied by it) is twice continuously differentiable across r_max (the
  third derivative jumps from -p (p+1)(p+2) / r_max^3 to 0): u = -(x - 1)^3 q(x), q(1) = p(p+1)(p+2)/6.

* :class:`RadialMLP`: ``in -> hidden[0] -> ... -> out`` dense layers, activation between them,
  none after the last (standard ``torch.nn.Linear`` layers). Initialised to preserve the second
  moment (as e3nn's ``FullyConnectedNet``): ``W ~ N(0, g^2 / fan_in)``, biases 0, with ``g = 1`` for the
  first layer and ``g = 1 / sqrt(E[act(z)^2])``, z ~ N(0, 1), after an activation (1.68 for SiLU).
  Without it (torch's default uniform init) each layer shrinks the weights ~3x, and a Gaunt product,
  whose per-edge weight is a product of three MLP outputs, starts ~10^4 times too small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch


def _check_distances(owner: str, r: torch.Tensor) -> None:
    if not isinstance(r, torch.Tensor):
        raise TypeError(f"{owner}: r must be a torch.Tensor of distances, got {type(r).__name__}")
    if not r.is_floating_point():
        raise TypeError(f"{owner}: r must be floating point, got {r.dtype}")


def _sin_over_x(t: torch.Tensor) -> torch.Tensor:
    """sin(t)/t with every derivative finite at t = 0: the Taylor series 1 - t^2/6 + t^4/120 for |t| < 1e-2
    (truncation error t^6/5040 < 2e-16), sin(t)/t elsewhere on a guarded argument (torch.sinc's second
    derivative is NaN at 0)."""
    small = t.abs() < 1e-2
    t_safe = torch.where(small, torch.ones_like(t), t)
    t2 = t * t
    return torch.where(small, 1.0 - t2 / 6.0 * (1.0 - t2 / 20.0), torch.sin(t_safe) / t_safe)


class BesselBasis(torch.nn.Module):
    """``r [...] -> [..., num_basis]``: ``sqrt(2/r_max) sin(n pi r / r_max) / r`` (see module docstring)."""

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = False) -> None:
        super().__init__()
        if not r_max > 0:
            raise ValueError(f"BesselBasis: r_max must be > 0, got {r_max}")
        if not isinstance(num_basis, int) or num_basis < 1:
            raise ValueError(f"BesselBasis: num_basis must be a positive integer, got {num_basis!r}")
        self.r_max, self.num_basis = float(r_max), num_basis
        self.prefactor = math.sqrt(2.0 / self.r_max)
        w = torch.arange(1, num_basis + 1, dtype=torch.float64) * (math.pi / self.r_max)
        if trainable:  # a parameter in the default dtype (cast it with .double() for float64 work)
            self.frequencies = torch.nn.Parameter(w.to(torch.get_default_dtype()))
        else:
            self.register_buffer("frequencies", w)  # float64, cast to r's dtype per call

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        _check_distances("BesselBasis", r)
        w = self.frequencies.to(r.dtype)
        return self.prefactor * w * _sin_over_x(r[..., None] * w)  # = prefactor sin(w r) / r

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, num_basis={self.num_basis}"


class PolynomialCutoff(torch.nn.Module):
    """``r [...] -> [...]``: the polynomial envelope ``u(r / r_max)``, 0 for r >= r_max (module docstring). O(1)."""

    def __init__(self, r_max: float, p: int = 6) -> None:
        super().__init__()
        if not r_max > 0:
            raise ValueError(f"PolynomialCutoff: r_max must be > 0, got {r_max}")
        if not isinstance(p, int) or p < 1:
            raise ValueError(f"PolynomialCutoff: p must be a positive integer, got {p!r}")
        self.r_max, self.p = float(r_max), p

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        _check_distances("PolynomialCutoff", r)
        p = self.p
        x = r / self.r_max
        # Evaluate only on x < 1 (x clamped there), so the discarded branch cannot leak inf/NaN gradients.
        inside = x < 1.0
        xs = torch.where(inside, x, torch.zeros_like(x))
        xp = xs.pow(p)
        u = 1.0 - xp * ((p + 1) * (p + 2) / 2 - p * (p + 2) * xs + p * (p + 1) / 2 * xs * xs)
        return torch.where(inside, u, torch.zeros_like(u))

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, p={self.p}"


class RadialMLP(torch.nn.Module):
    """Plain MLP ``[..., in_features] -> [..., out_features]`` producing per-edge tensor-product weights.

    ``hidden`` lists the hidden widths; ``activation`` is a module class (instantiated per layer) or a
    callable; ``bias`` applies to every ``torch.nn.Linear``. Cost O(sum of consecutive width products).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: type[torch.nn.Module] | Callable[[torch.Tensor], torch.Tensor] = torch.nn.SiLU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden, out_features]
        if any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"RadialMLP: every width must be a positive integer, got {widths}")
        self.in_features, self.out_features = in_features, out_features
        layers: list[torch.nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(torch.nn.Linear(a, b, bias=bias))
            if i < len(widths) - 2:
                act = activation() if isinstance(activation, type) else activation
                layers.append(act if isinstance(act, torch.nn.Module) else _Lambda(act))
        self.layers = torch.nn.Sequential(*layers)
        with torch.no_grad():
            gain = 1.0
            for layer in self.layers:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.normal_(0.0, gain / math.sqrt(layer.in_features))
                    if layer.bias is not None:
                        layer.bias.zero_()
                else:
                    gain = _second_moment_gain(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[-1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"RadialMLP: input has shape {shape}, expected [..., {self.in_features}]")
        return self.layers(x)


def _second_moment_gain(activation: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """``1 / sqrt(E[act(z)^2])`` for z ~ N(0, 1), by 64-point Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)  # weight exp(-z^2 / 2)
    values = activation(torch.as_tensor(nodes, dtype=torch.float64)).detach().numpy()
    moment = float(np.sum(weights * values**2) / math.sqrt(2 * math.pi))
    return 1.0 / math.sqrt(moment) if moment > 0 else 1.0


class _Lambda(torch.nn.Module):
    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


__all__ = ["BesselBasis", "PolynomialCutoff", "RadialMLP"]
