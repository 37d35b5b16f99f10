"""Power programs: the projections of the powers of one sphere function (MACE-style many-body features).

For channel u of an input read as a function on the sphere, ``f_u = sum_{l m} x[u, l, m] Y[l m]``
(weights applied outside), a power program computes, for every power k in ``powers``,

    y[k, u, l3, m3] = integral over S^2 of Y[l3 m3] f_u^k

with one synthesis (the tables of ``sphere_programs``), pointwise powers on the grid and one projection
per power. ``f^k Y[l3]`` has degree k L + L3, so the grid of degree ``max(powers) L + L3`` is exact; on the
2D Fourier torus (``kind="torus"``) f^k is a sphere function too, so the folded half-ring tables hold.
Run by :class:`TorchPowers` (autograd derives backward and double backward through its torch ops) or by
``cpu_powers.FusedPowers`` (one fused C++ kernel for the forward and every derivative, ``power_family``) or by
``triton_powers.TritonPowers`` (the same family on one fused Triton kernel: CUDA, or the CPU under the interpreter);
``power_runners.RUNNERS`` is the table that ``executors.build_runner(program, executor, RUNNERS)`` chooses from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..so3 import spherical_grid
from .fourier_tables import azimuth_matrices, folded_projection, folded_synthesis
from .program import Projection, Synthesis
from .sphere_irreps import SphericalIrreps
from .sphere_programs import gather_index, m_table, phi_factors, read_index, theta_factors


@dataclass(frozen=True, eq=False)
class PowerProgram:
    """``x [n, dim_in] -> y [n, len(powers), dim_out]`` (module docstring). ``projection.read`` maps output
    positions to rows of ``[R3, L3p, mul]``."""

    mul: int
    powers: tuple[int, ...]
    synthesis: Synthesis
    projection: Projection
    name: str = "powers"

    @property
    def grid(self) -> tuple[int, int]:
        return self.synthesis.theta.shape[1], self.synthesis.phi.shape[0]


def power_program(layout_in: SphericalIrreps, layout_out: SphericalIrreps, powers, kind: str = "grid") -> PowerProgram:
    """The program of the powers ``powers`` of ``layout_in`` projected onto ``layout_out`` on the exact
    quadrature grid (``kind="grid"``) or on half the rings of the 2D Fourier torus (``kind="torus"``)."""
    L, L3, kmax = layout_in.lmax, layout_out.lmax, max(powers)
    if kind == "grid":
        grid = spherical_grid(kmax * L + L3)
        theta, phi = grid.theta.numpy(), grid.phi.numpy()
        n_theta, n_phi = len(theta), len(phi)
        w_theta = grid.weights.numpy().reshape(n_theta, n_phi).sum(1) / (2 * math.pi)  # Gauss-Legendre
        tables_in = (theta_factors(L, theta), phi_factors(L, phi).T)
        phi_out = phi_factors(L3, phi) * (2 * math.pi / n_phi)
        theta_out = (theta_factors(L3, theta) * w_theta[None, :, None]).transpose(0, 2, 1)
    elif kind == "torus":  # u exact for f^kmax (2 kmax L + 1), v alias-free for |v| <= L3
        n_u, n_v = 2 * kmax * L + 1, max(kmax * L + L3 + 1, 2 * max(L, L3) + 1)
        tables_in = (folded_synthesis(L, n_u), azimuth_matrices(L, n_v, out=False))
        phi_out, theta_out = azimuth_matrices(L3, n_v, out=True), folded_projection(L3, kmax * L, n_u)
    else:
        raise ValueError(f"power_program: kind must be 'grid' or 'torus', got {kind!r}")
    synthesis = Synthesis(0, gather_index(layout_in, m_table(L)), *tables_in)
    read = read_index(layout_out, lambda l, m: m + L3, lambda l, m: l, (2 * L3 + 1, L3 + 1))
    return PowerProgram(layout_in.mul, tuple(powers), synthesis, Projection(theta_out, phi_out, read), f"{kind}_powers")


class TorchPowers(torch.nn.Module):
    """A power program on torch ops: ``self(x [n, dim_in]) -> [n, len(powers), dim_out]``."""

    executor = "torch"

    def __init__(self, program: PowerProgram) -> None:
        super().__init__()
        self.program = program
        s, p = program.synthesis, program.projection
        for name, value in (
            ("index", np.where(s.index >= 0, s.index, 0)),
            ("zero", np.nonzero(s.index < 0)[0]),
            ("theta_in", s.theta),
            ("phi_in", s.phi),
            ("phi_out", p.phi),
            ("theta_out", p.theta),
            ("read", p.read),
        ):
            self.register_buffer(f"_{name}", torch.tensor(value), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        program, n, dtype = self.program, x.shape[0], x.dtype
        (R, Lp), (R3, L3p), mul = program.synthesis.rows, program.projection.rows, program.mul
        n_theta, n_phi = program.grid
        X = x.T.contiguous().index_select(0, self._index)
        if len(self._zero):
            X = X.index_fill(0, self._zero, 0)
        g = torch.bmm(self._theta_in.to(dtype), X.view(R, Lp, mul * n))  # [R, n_theta, Z]
        f = (self._phi_in.to(dtype) @ g.view(R, -1)).view(n_phi, n_theta, mul * n)  # [n_phi, n_theta, Z]
        fields, p = [], f
        for k in range(1, max(program.powers) + 1):
            p = p if k == 1 else p * f
            if k in program.powers:
                fields.append(p)
        h = torch.stack(fields, dim=2)  # [n_phi, n_theta, K, Z]
        c = self._phi_out.to(dtype) @ h.view(n_phi, -1)  # [R3, n_theta * K * Z]
        K = len(fields)
        y = torch.bmm(self._theta_out.to(dtype), c.view(R3, n_theta, K * mul * n))  # [R3, L3p, K * Z]
        y = y.view(R3, L3p, K, mul, n).movedim(2, 0).reshape(K, R3 * L3p * mul, n)
        return y[:, self._read].permute(2, 0, 1)  # [n, K, dim_out]

    def extra_repr(self) -> str:
        n_theta, n_phi = self.program.grid
        return f"{self.program.name}: powers {list(self.program.powers)}, grid {n_theta} x {n_phi}, executor=torch"


__all__ = ["PowerProgram", "power_program", "TorchPowers"]
