"""Layer normalisation for irreps features (the idea of EquiformerV2's
``EquivariantLayerNormArraySphericalHarmonics``, written for general irreps).

Channels are grouped by irrep type ``ir = (l, p)`` (all blocks of one type together, so
``"8x1o+8x1o"`` and ``"16x1o"`` normalise alike). With ``c = 1..M`` the channels of the type and
``m = -l..l`` the components, each sample is normalised as

* even scalars ``0e`` (invariant): standard layer norm over the M channels,

      y_c = gamma_c (x_c - mu) / sqrt(var + eps) + beta_c,    mu = mean_c x_c,  var = mean_c (x_c - mu)^2

* every other type (``l > 0``, and the pseudoscalar ``0o``): no mean subtraction (a mean of
  vectors is not invariant and a bias would break equivariance), divide by the root mean square
  component ("component" normalisation, so unit-variance components give RMS 1):

      y_c = gamma_c x_c / sqrt(s + eps),    s = 1/(M (2l+1)) sum_c sum_m x_{c m}^2 = mean_c |x_c|^2 / (2l+1)

  ``s`` is rotation invariant and the map is x times an invariant, hence equivariant.

``gamma`` (``weight [irreps.num_irreps]``, ones) and ``beta`` (``bias [number of 0e channels]``, zeros) are
learnable when ``affine=True``; ``weight`` follows the channel order of ``irreps`` (block by block),
``bias`` that of the ``0e`` channels. ``eps`` inside the square roots keeps gradients finite at zero.

Shapes ``[..., irreps.dim] -> [..., irreps.dim]``; cost O(irreps.dim) per sample.
"""

from __future__ import annotations

import numpy as np
import torch

from ..so3 import Irrep, Irreps
from .linear import IrrepTypeGroups, check_features

_SCALAR = Irrep(0, 1)


class EquivariantLayerNorm(torch.nn.Module):
    """Equivariant layer norm ``[..., irreps.dim] -> [..., irreps.dim]`` (formula in the module docstring)."""

    def __init__(self, irreps, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.irreps_in = self.irreps_out = Irreps(irreps)
        if not eps > 0:
            raise ValueError(f"EquivariantLayerNorm: eps must be > 0, got {eps}")
        self.eps, self.affine = float(eps), bool(affine)
        self.groups = IrrepTypeGroups(self.irreps_in)
        # Channel numbers (position in the flat [num_irreps] weight) of each type's rows, in group order.
        firsts = np.cumsum([0] + [mul for mul, _ in self.irreps_in])[:-1]
        for k, blocks in enumerate(self.groups.blocks):
            rows = [firsts[i] + torch.arange(self.irreps_in[i].mul) for i in blocks]
            self.register_buffer(f"_channels_{k}", torch.cat(rows), persistent=False)
        self.num_scalars = self.irreps_in.count(_SCALAR)
        if affine:
            self.weight = torch.nn.Parameter(torch.ones(self.irreps_in.num_irreps))
            self.bias = torch.nn.Parameter(torch.zeros(self.num_scalars))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., irreps.dim]`` -> ``[..., irreps.dim]``."""
        check_features("EquivariantLayerNorm", x, self.irreps_in)
        out = []
        for k, (ir, xk) in enumerate(zip(self.groups.types, self.groups.gather(x))):  # xk [..., M, 2l+1]
            if ir == _SCALAR:
                mu = xk.mean(dim=-2, keepdim=True)
                xk = xk - mu
                s = (xk * xk).mean(dim=-2, keepdim=True)
            else:
                s = (xk * xk).mean(dim=(-2, -1), keepdim=True)
            yk = xk * torch.rsqrt(s + self.eps)
            if self.affine:
                yk = yk * self.weight[getattr(self, f"_channels_{k}")].to(x.dtype)[:, None]
                if ir == _SCALAR:
                    yk = yk + self.bias.to(x.dtype)[:, None]
            out.append(yk)
        return self.groups.scatter(out, x.shape[:-1], x)

    def extra_repr(self) -> str:
        return f"{self.irreps_in}, eps={self.eps}, affine={self.affine}"


__all__ = ["EquivariantLayerNorm"]
