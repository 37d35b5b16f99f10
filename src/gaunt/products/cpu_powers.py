"""Power programs on the fused CPU kernel, with every derivative fused too.

``FusedPowers(program)(x)`` runs a power program (``powers.PowerProgram``: ``x [n, dim_in] -> [n, K, dim_out]``)
with the C++ kernel of ``csrc/powers.cpp`` (built by ``cpu_build``, one library with the sphere programs' kernel):
per tile of W (sample, channel) columns, the synthesis of x, the powers on the grid and one projection per power,
in cache. It is the custom operator

    torch.ops.gaunt.cpu_powers(x, ts, g, program_id) = powers(x, ts, g)

of ``power_family`` (``ts``: tangents ``[n, dim_in]``; ``g``: None or a cotangent ``[n, K, dim_out]``), a family
closed under differentiation, so its registered autograd (``power_family.family_vjp``) calls the same operator
with one more tangent: backward, double backward and higher orders all run on the one kernel. A fake
implementation gives the output's shape (``torch.compile(fullgraph=True)`` traces the op with no graph break).
Programs are packed once into a process-wide registry (:func:`register_powers`), keyed by an integer id, as
``meta`` (int64: the header and four stage records of ``csrc/powers.cpp``'s ``Layout``, the powers, the gather and
read-out indices with their row patterns, the non-zero ranges) and ``values`` (the tables, per dtype).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from .cpu_build import unavailable
from .cpu_executor import FUSED_DTYPES, _dual, _Packer, _with_patterns, nonzero_ranges
from .power_family import register_family_op
from .powers import PowerProgram, TorchPowers
from .program import _inverse

HEADER, STAGE = 9, 6  # int64 words of the header and of each stage record of ``meta``


def pack(program: PowerProgram) -> tuple[np.ndarray, np.ndarray]:
    """``(meta, values)`` of ``program`` in the layout that ``csrc/powers.cpp`` reads (its ``Layout``).

    Header: ``mul, min_dim_in, dim_out, n_theta, n_phi, K`` and the offsets of the powers, of the synthesis'
    gather index (also the scatter of the adjoint synthesis) and of the read-out's inverse (also the gather of
    the cotangent's synthesis). Then four stages ``(R, C, theta, theta ranges, phi, phi ranges)``: the synthesis
    (theta ``[R, n_theta, Lp]``, phi ``[n_phi, R]``), its adjoint (``[R, Lp, n_theta]``, ``[R, n_phi]``), the
    projection (``[R3, L3p, n_theta]``, ``[R3, n_phi]``) and its adjoint (``[R3, n_theta, L3p]``, ``[n_phi, R3]``).
    """
    s, p, mul, powers = program.synthesis, program.projection, program.mul, list(program.powers)
    if not powers or powers != sorted(set(powers)) or powers[0] < 1:
        raise ValueError(f"{program.name}: the powers must be increasing positive integers, got {powers}")
    (R, Lp), (R3, L3p), (n_theta, n_phi) = s.rows, p.rows, program.grid
    packer = _Packer(HEADER + 4 * STAGE)
    records = [
        mul,
        int(s.index.max(initial=-1)) + 1,
        len(p.read),
        n_theta,
        n_phi,
        len(powers),
        packer.ints(powers),
        packer.ints(_with_patterns(s.index, mul)),
        packer.ints(_with_patterns(_inverse(p.read, R3 * L3p * mul), mul)),
    ]
    stages = [
        (R, Lp, s.theta, s.phi),
        (R, Lp, s.theta.transpose(0, 2, 1), s.phi.T),
        (R3, L3p, p.theta, p.phi),
        (R3, L3p, p.theta.transpose(0, 2, 1), p.phi.T),
    ]
    for rows, cols, theta, phi in stages:
        records += [rows, cols, packer.floats(theta), packer.ints(nonzero_ranges(theta))]
        records += [packer.floats(phi), packer.ints(nonzero_ranges(phi))]
    meta = np.concatenate(packer.meta)
    meta[: len(records)] = records
    return meta, np.concatenate(packer.values)


@dataclass
class _Packed:
    """A registered program: its packed tables, and as tensors per dtype (made by the op's real implementation
    on first use, never under a tracing mode)."""

    program: PowerProgram
    meta: np.ndarray
    values: np.ndarray
    tensors: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def tables(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, meta)`` tensors for inputs of ``dtype``."""
        if dtype not in self.tensors:
            self.tensors[dtype] = torch.tensor(self.values, dtype=dtype), torch.tensor(self.meta)
        return self.tensors[dtype]


_REGISTRY: list[_Packed] = []
_REGISTRY_LOCK = threading.Lock()


def register_powers(program: PowerProgram) -> int:
    """Pack ``program`` once and return its id for ``torch.ops.gaunt.cpu_powers``."""
    packed = _Packed(program, *pack(program))
    with _REGISTRY_LOCK:  # the index and the append together: another thread's program never gets this id
        _REGISTRY.append(packed)
        return len(_REGISTRY) - 1


@torch.library.custom_op("gaunt::cpu_powers", mutates_args=())
def cpu_powers(x: torch.Tensor, ts: list[torch.Tensor], g: torch.Tensor | None, program_id: int) -> torch.Tensor:
    """``powers(x, ts, g)`` (``power_family``) for ``x``, ``ts [n, dim_in]``, ``g`` None or ``[n, K, dim_out]``
    (CPU, float32/float64) -> ``[n, K, dim_out]`` without ``g``, ``[n, dim_in]`` with it."""
    values, meta = _REGISTRY[program_id].tables(x.dtype)
    return torch.ops.gaunt_fused.powers(x, ts, g, values, meta)


register_family_op(cpu_powers, lambda program_id: _REGISTRY[program_id].program)


class FusedPowers(torch.nn.Module):
    """A power program on the fused kernel: ``self(x [n, dim_in]) -> [n, len(powers), dim_out]`` (the interface
    of ``powers.TorchPowers``; float32, float64; other dtypes, and inputs with forward-mode tangents, run on
    ``fallback``, the torch executor)."""

    executor = "cpu_fused"

    def __init__(self, program: PowerProgram) -> None:
        super().__init__()
        reason = unavailable()  # builds the kernel on first use
        if reason is not None:
            raise RuntimeError(f"executor 'cpu_fused' cannot run here: {reason}")
        self.program = program
        self.program_id = register_powers(program)
        self.fallback = TorchPowers(program)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in FUSED_DTYPES or (not torch.compiler.is_compiling() and _dual(x)):
            return self.fallback(x)  # plain torch ops: any dtype, forward mode
        return cpu_powers(x, [], None, self.program_id)

    def __setstate__(self, state: dict) -> None:
        # the id indexes this process's registry: a copy (pickle, deepcopy, another process) registers anew
        super().__setstate__(state)
        self.program_id = register_powers(self.program)

    def extra_repr(self) -> str:
        n_theta, n_phi = self.program.grid
        return (
            f"{self.program.name}: powers {list(self.program.powers)}, grid {n_theta} x {n_phi}, "
            f"executor=cpu_fused (program {self.program_id})"
        )


__all__ = ["FusedPowers", "cpu_powers", "pack", "register_powers"]
