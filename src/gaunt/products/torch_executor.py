"""The reference executor: runs a :class:`~gaunt.products.program.SphereProgram` with torch matmuls.

Data live as ``[rows, batch]`` inside (one row per (m, l, channel); the batch is the long, innermost side
of every matmul): a transpose and a row gather in, the separable stages of the program, a row gather and
a transpose out. Backward and double backward run the derivative programs (``program.derivative``) on
this same executor, through :class:`_ProgramFunction`; under ``torch.compile`` the plain ops are traced
instead (the compiled graph derives its own backward).
"""

from __future__ import annotations

import numpy as np
import torch

from .program import SphereProgram, derivative


def _row_gather_tables(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``index`` with -1 entries -> (index with 0 there, the rows to zero)."""
    index = np.asarray(index)
    return torch.as_tensor(np.where(index >= 0, index, 0)), torch.as_tensor(np.nonzero(index < 0)[0])


def _gather(src: torch.Tensor, index: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    out = src.index_select(0, index)
    if len(zero):
        out = out.index_fill(0, zero, 0)
    return out


class TorchProgram(torch.nn.Module):
    """A sphere program with its tables as (non-persistent) buffers; ``self(x1, x2)``: ``[n, dim1] x [n, dim2]
    -> [n, dim_out]`` (one flat batch dimension; tables are float64 and cast to the input dtype)."""

    executor = "torch"

    def __init__(self, program: SphereProgram) -> None:
        super().__init__()
        self.program = program
        for k, s in enumerate(program.syntheses):
            index, zero = _row_gather_tables(s.index)
            self._buffers_from(f"s{k}", index=index, zero=zero, theta=s.theta, phi=s.phi)
        for k, p in enumerate(program.projections):
            index, zero = _row_gather_tables(p.read)
            self._buffers_from(f"p{k}", index=index, zero=zero, theta=p.theta, phi=p.phi)
        self._derivatives: dict[tuple[int, torch.device], TorchProgram] = {}

    def _buffers_from(self, prefix: str, **arrays) -> None:
        for name, value in arrays.items():
            tensor = torch.tensor(value) if isinstance(value, np.ndarray) else value
            self.register_buffer(f"_{prefix}_{name}", tensor, persistent=False)

    def _table(self, prefix: str, name: str) -> torch.Tensor:
        return getattr(self, f"_{prefix}_{name}")

    def derivative(self, wrt: int, device: torch.device) -> TorchProgram:
        """The executor of ``derivative(program, wrt)`` on ``device`` (built once, then cached)."""
        key = (wrt, device)
        if key not in self._derivatives:
            self._derivatives[key] = TorchProgram(derivative(self.program, wrt)).to(device)
        return self._derivatives[key]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self.evaluate(x1, x2)
        return _ProgramFunction.apply(x1, x2, self)

    def evaluate(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The program on ``[n, dim]`` inputs with plain torch ops (module docstring of ``program``)."""
        program, n = self.program, x1.shape[0]
        dtype, mul = x1.dtype, program.mul
        n_theta, n_phi = program.grid
        rows = (x1.T.contiguous(), x2.T.contiguous())  # [dim, n]: gathers read contiguous rows
        fields = []
        for k, s in enumerate(program.syntheses):
            R, Lp = s.rows
            X = _gather(rows[s.source], self._table(f"s{k}", "index"), self._table(f"s{k}", "zero"))
            g = torch.bmm(self._table(f"s{k}", "theta").to(dtype), X.view(R, Lp, mul * n))  # [R, n_theta, Z]
            fields.append(self._table(f"s{k}", "phi").to(dtype) @ g.view(R, n_theta * mul * n))  # [n_phi, ...]
        out = None
        for k, p in enumerate(program.projections):
            h = None
            for t in program.terms:
                if t.projection == k:
                    term = fields[t.a] * fields[t.b]
                    term = term if t.coefficient == 1.0 else term * t.coefficient
                    h = term if h is None else h + term
            R3, L3p = p.rows
            c = self._table(f"p{k}", "phi").to(dtype) @ h  # [R3, n_theta * Z]
            y = torch.bmm(self._table(f"p{k}", "theta").to(dtype), c.view(R3, n_theta, mul * n))  # [R3, L3p, Z]
            y = _gather(y.view(R3 * L3p * mul, n), self._table(f"p{k}", "index"), self._table(f"p{k}", "zero"))
            out = y if out is None else out + y
        return out.T.contiguous()

    def extra_repr(self) -> str:
        n_theta, n_phi = self.program.grid
        return f"{self.program.name}: grid {n_theta} x {n_phi}, {len(self.program.terms)} term(s), executor=torch"


class _ProgramFunction(torch.autograd.Function):
    """``out = P(x1, x2)`` with the vector-Jacobian products run as the derivative programs (so they are
    themselves differentiable: double backward runs programs too)."""

    @staticmethod
    def forward(ctx, x1, x2, runner):  # noqa: D102
        ctx.save_for_backward(x1, x2)
        ctx.runner = runner
        return runner.evaluate(x1, x2)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x1, x2 = ctx.saved_tensors
        runner, grad = ctx.runner, grad.contiguous()
        g1 = g2 = None
        if ctx.needs_input_grad[0]:
            g1 = runner.derivative(0, grad.device)(grad, x2)
        if ctx.needs_input_grad[1]:
            g2 = runner.derivative(1, grad.device)(x1, grad)
        return g1, g2, None


__all__ = ["TorchProgram"]
