"""The reference executor: runs a :class:`~gaunt.products.program.SphereProgram` with torch matmuls.

Data live as ``[rows, batch]`` inside (one row per (m, l, channel); the batch is the long, innermost side
of every matmul): a transpose and a row gather in, the separable stages of the program, a row gather and
a transpose out (``row_ops``: their adjoints are gathers and transposes too).

Two ways to differentiate (``backward=``), the same numbers:

* ``"autograd"`` (executor "torch"): autograd through these ops; it keeps the synthesised fields for the
  backward pass, so a forward+backward step costs the three transforms of the forward and three more.
* ``"programs"`` (executor "torch_programs"): backward and double backward run the derivative programs
  (``program.derivative``) through :class:`_ProgramFunction`, storing only the inputs. This is how the
  fused executors differentiate; here it checks that scheme on the reference ops.

Under ``torch.compile`` the plain ops are traced (the compiled graph derives its own backward).
"""

from __future__ import annotations

import numpy as np
import torch

from .program import SphereProgram, derivative
from .row_ops import gather_rows, gather_tables, transpose

TABLES = ("index", "zero", "inverse", "inverse_zero")


class TorchProgram(torch.nn.Module):
    """A sphere program with its tables as (non-persistent) buffers; ``self(x1, x2)``: ``[n, dim1] x [n, dim2]
    -> [n, dim_out]`` (one flat batch dimension; tables are float64 and cast to the input dtype)."""

    def __init__(self, program: SphereProgram, backward: str = "autograd") -> None:
        super().__init__()
        if backward not in ("autograd", "programs"):
            raise ValueError(f"TorchProgram: backward must be 'autograd' or 'programs', got {backward!r}")
        self.program, self.backward = program, backward
        self.executor = "torch" if backward == "autograd" else "torch_programs"
        sizes = [program.dims[s.source] for s in program.syntheses]
        for k, (s, size) in enumerate(zip(program.syntheses, sizes)):
            tables = gather_tables(s.index, s.index >= 0, size)  # rows (r, l, u) <- input positions
            self._buffers_from(f"s{k}", theta=s.theta, phi=s.phi, **dict(zip(TABLES, tables)))
        for k, p in enumerate(program.projections):
            tables = gather_tables(p.read, p.read >= 0, int(np.prod(p.rows)) * program.mul)
            self._buffers_from(f"p{k}", theta=p.theta, phi=p.phi, **dict(zip(TABLES, tables)))
        self._derivatives: dict[tuple[int, torch.device], TorchProgram] = {}
        # per stage, the names of its buffers (looked up per call: the module may have moved device/dtype)
        self._synthesis_names = [
            tuple(f"_s{k}_{n}" for n in (*TABLES, "theta", "phi")) for k in range(len(program.syntheses))
        ]
        self._projection_names = [
            tuple(f"_p{k}_{n}" for n in (*TABLES, "theta", "phi")) for k in range(len(program.projections))
        ]
        self._terms_of = [[t for t in program.terms if t.projection == k] for k in range(len(program.projections))]

    def _buffers_from(self, prefix: str, **arrays) -> None:
        for name, value in arrays.items():
            tensor = torch.tensor(value) if isinstance(value, np.ndarray) else value
            self.register_buffer(f"_{prefix}_{name}", tensor, persistent=False)

    def derivative(self, wrt: int, device: torch.device) -> TorchProgram:
        """The executor of ``derivative(program, wrt)`` on ``device`` (built once, then cached)."""
        key = (wrt, device)
        if key not in self._derivatives:
            self._derivatives[key] = TorchProgram(derivative(self.program, wrt), self.backward).to(device)
        return self._derivatives[key]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if self.backward == "autograd" or torch.compiler.is_compiling():
            return self.evaluate(x1, x2)
        return _ProgramFunction.apply(x1, x2, self)

    def evaluate(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The program on ``[n, dim]`` inputs with plain torch ops (module docstring of ``program``)."""
        program, n = self.program, x1.shape[0]
        dtype, mul = x1.dtype, program.mul
        n_theta, n_phi = program.grid
        rows = (transpose(x1), transpose(x2))  # [dim, n]: gathers read contiguous rows
        fields = []
        for s, names in zip(program.syntheses, self._synthesis_names):
            R, Lp = s.rows
            *tables, theta, phi = (getattr(self, name) for name in names)
            X = gather_rows(rows[s.source], tables)
            g = torch.bmm(theta.to(dtype), X.view(R, Lp, mul * n))  # [R, n_theta, Z]
            fields.append(phi.to(dtype) @ g.view(R, n_theta * mul * n))  # [n_phi, n_theta * Z]
        out = None
        for p, names, terms in zip(program.projections, self._projection_names, self._terms_of):
            h = None
            for t in terms:
                term = fields[t.a] * fields[t.b]
                term = term if t.coefficient == 1.0 else term * t.coefficient
                h = term if h is None else h + term
            R3, L3p = p.rows
            *tables, theta, phi = (getattr(self, name) for name in names)
            c = phi.to(dtype) @ h  # [R3, n_theta * Z]
            y = torch.bmm(theta.to(dtype), c.view(R3, n_theta, mul * n))  # [R3, L3p, Z]
            y = gather_rows(y.view(R3 * L3p * mul, n), tuple(tables))
            out = y if out is None else out + y
        return transpose(out)

    def extra_repr(self) -> str:
        n_theta, n_phi = self.program.grid
        terms = len(self.program.terms)
        return f"{self.program.name}: grid {n_theta} x {n_phi}, {terms} term(s), executor={self.executor}"


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


def program_backward_runner(program: SphereProgram) -> TorchProgram:
    """The "torch_programs" executor: torch ops, backward and double backward as derivative programs."""
    return TorchProgram(program, backward="programs")


__all__ = ["TorchProgram", "program_backward_runner"]
