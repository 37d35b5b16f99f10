"""The fused CPU executor: a sphere program in one pass over tiles of (sample, channel) columns.

``FusedProgram(program)(x1, x2)`` runs ``program`` (``program.SphereProgram``) with the C++ kernel of
``csrc/sphere_program.cpp`` (built by ``cpu_build``): per tile of W columns, the gathers, both syntheses,
the pointwise terms, the projections and the read-out, with the tile's grid values in cache. float32
and float64; other dtypes run on the reference torch executor.

It is the custom operator ``torch.ops.gaunt.cpu_sphere_program(x1, x2, program_id)`` (``torch.library``):

* the program's tables live in a process-wide registry (:func:`register_program`), keyed by an integer
  id, packed once as ``meta`` (int64: header, records, gather and read-out indices, non-zero ranges)
  and ``values`` (the tables and coefficients, per dtype);
* a fake (meta) implementation gives the output ``[n, dim_out]``, so ``torch.compile(fullgraph=True)``
  traces the op with no graph break and ``torch.export`` keeps it as one node;
* each registered program runs on one of two kernels, chosen when it is registered (``cpu_direct``):
  "transform" (``csrc/sphere_program.cpp``, the grid) or "direct" (``csrc/direct_program.cpp``, the sparse
  coupling list: cheaper at small L); the registry entry says which, the op stays one op;
* its registered autograd runs the derivative programs (``program.derivative``) with the same op, so
  backward and double backward are fused too, and differentiable (the derivatives of a derivative
  program are registered lazily, by id).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .cpu_build import unavailable
from .cpu_direct import choose_kernel, pack_direct
from .program import SphereProgram, _inverse, derivative
from .table_symmetries import orbit_weights, phi_classes, phi_points, theta_reflection, theta_twins
from .torch_executor import TorchProgram

HEADER, SYNTHESIS, PROJECTION, TERM = 9, 12, 11, 4  # int64 words per record of ``meta``


def nonzero_ranges(matrix: np.ndarray) -> np.ndarray:
    """Per row of ``matrix [..., K]``: ``[lo, hi)``, the columns from the first to the last non-zero one
    (``[0, 0)`` for a zero row); shape ``[rows, 2]`` over the flattened leading axes."""
    rows = matrix.reshape(-1, matrix.shape[-1]) != 0
    any_ = rows.any(1)
    lo = np.where(any_, rows.argmax(1), 0)
    hi = np.where(any_, rows.shape[1] - rows[:, ::-1].argmax(1), 0)
    return np.stack([lo, hi], 1)


def row_patterns(index: np.ndarray, mul: int) -> np.ndarray:
    """Per row of a gather index ``[rows, mul]``: ``(kind, start, stride)``; kind 0: every entry -1, kind 1:
    ``index[row, u] = start + u stride`` (the ``mul_ir`` layout), kind 2: anything else."""
    rows = index.reshape(-1, mul)
    start = rows[:, 0]
    stride = rows[:, 1] - rows[:, 0] if mul > 1 else np.ones_like(start)
    strided = (rows >= 0).all(1) & (rows == start[:, None] + np.arange(mul) * stride[:, None]).all(1)
    kind = np.where((rows < 0).all(1), 0, np.where(strided, 1, 2))
    return np.stack([kind, np.where(kind == 1, start, 0), np.where(kind == 1, stride, 0)], 1)


def _permute_rows(index: np.ndarray, rows: int, order: np.ndarray) -> np.ndarray:
    return index.reshape(rows, -1)[order].reshape(-1)


def _with_patterns(index: np.ndarray, mul: int) -> np.ndarray:
    return np.concatenate([index.reshape(-1), row_patterns(index, mul).reshape(-1)])


class _Packer:
    """Appends arrays to ``meta`` (int64) and ``values`` (float64), returning their offsets."""

    def __init__(self, meta_head: int) -> None:
        self.meta, self.values = [np.zeros(meta_head, np.int64)], []
        self.meta_size, self.values_size = meta_head, 0

    def ints(self, array) -> int:
        array = np.ascontiguousarray(array, dtype=np.int64).reshape(-1)
        self.meta.append(array)
        self.meta_size += array.size
        return self.meta_size - array.size

    def floats(self, array) -> int:
        array = np.ascontiguousarray(array, dtype=np.float64).reshape(-1)
        self.values.append(array)
        self.values_size += array.size
        return self.values_size - array.size


def _phi_classes(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, bounds)`` of a synthesis' phi table ``[n_phi, R]`` (:func:`phi_classes`; one class where it has no
    symmetry)."""
    found = phi_classes(phi)
    return found if found is not None else (np.arange(phi.shape[1]), np.array([0, phi.shape[1]]))


def _phi_records(packer: _Packer, phi: np.ndarray, order: np.ndarray, bounds: np.ndarray, synthesis: bool) -> list[int]:
    """``[phi, phi_range, sym, bounds]`` of a stage's phi table ``phi [n_phi, R]`` (a projection's transposed),
    its columns in ``order``: the table on the representative points (:func:`phi_points`; a synthesis' ``[points,
    R]`` with column ranges per class and point, a projection's ``[R, points]`` with row ranges, halved on the
    two-point orbits, :func:`orbit_weights`), sym = log2 of the number of classes."""
    classes = len(bounds) - 1
    points = phi_points(phi.shape[0], classes)
    table = phi[points][:, order]
    if synthesis:
        parts = [table[:, bounds[c] : bounds[c + 1]] for c in range(classes)]
        ranges = np.stack([nonzero_ranges(t) if t.size else np.zeros((len(points), 2), np.int64) for t in parts])
    else:
        table = (table * orbit_weights(phi.shape[0], classes)[:, None]).T
        ranges = nonzero_ranges(table)
    return [packer.floats(table), packer.ints(ranges), classes.bit_length() - 1, packer.ints(bounds)]


def _mirror_record(packer: _Packer, theta: np.ndarray, axis: int) -> int:
    """The offset of a stage's per-row parities of its even degrees (:func:`theta_reflection`), or -1 where its
    rings are not mirrored."""
    first = theta_reflection(theta, axis)
    return -1 if first is None else packer.ints(first)


def pack(program: SphereProgram) -> tuple[np.ndarray, np.ndarray]:
    """``(meta, values)`` of ``program``, in the layout that ``csrc/sphere_program.cpp`` reads (its ``Layout``).
    Where a phi table is even/odd under the reflection of the phi points, and on an even ``n_phi`` under the
    half-turn (:func:`phi_classes`), it is stored on the representative points only and the rows r of its stage
    are reordered class by class (with the gathers and the theta tables); where the theta tables of a stage are
    even/odd under the mirror of the rings (:func:`theta_reflection`), the parity of each row's even degrees is
    stored with them."""
    syntheses, projections, terms = program.syntheses, program.projections, program.terms
    n_theta, n_phi = program.grid
    head = HEADER + SYNTHESIS * len(syntheses) + PROJECTION * len(projections) + TERM * len(terms)
    packer = _Packer(head)
    records = [program.mul, *program.dims, n_theta, n_phi, len(syntheses), len(projections), len(terms)]
    for s in syntheses:  # theta [R, n_theta, Lp] with ranges per (r, t); phi [n_phi, R]
        R, Lp = s.rows
        order, bounds = _phi_classes(s.phi)
        theta, index = s.theta[order], _permute_rows(s.index, R, order)
        records += [s.source, R, Lp, packer.ints(_with_patterns(index, program.mul))]
        records += [packer.floats(theta), packer.ints(nonzero_ranges(theta))]
        records += _phi_records(packer, s.phi, order, bounds, synthesis=True)
        records += [packer.ints(theta_twins(theta)), _mirror_record(packer, theta, axis=1)]
    for p in projections:  # phi [R3, n_phi]; theta [R3, L3p, n_theta] with ranges per (r, l); read inverted
        R3, L3p = p.rows
        order, bounds = _phi_classes(p.phi.T)
        inverse = _permute_rows(_inverse(p.read, R3 * L3p * program.mul), R3, order)
        theta = p.theta[order]
        records += [R3, L3p, packer.ints(_with_patterns(inverse, program.mul))]
        phi = _phi_records(packer, p.phi.T, order, bounds, synthesis=False)
        records += phi[:2] + [packer.floats(theta), packer.ints(nonzero_ranges(theta))] + phi[2:]
        records += [packer.ints(theta_twins(theta)), _mirror_record(packer, theta, axis=2)]
    for t in terms:
        records += [t.a, t.b, t.projection, packer.floats([t.coefficient])]
    meta = np.concatenate(packer.meta)
    meta[:head] = records
    return meta, np.concatenate(packer.values)


@dataclass
class _Entry:
    """A registered program: its kernel ("direct" or "transform"), that kernel's packed tables as numpy
    arrays, as tensors per dtype (made by the op's real implementation on first use, never under a tracing
    mode), the kernel asked for (``cpu_direct.KERNELS``) and how the operands are weighted (``cpu_direct.WEIGHTS``),
    both inherited by the derivatives, and the ids of its derivatives."""

    program: SphereProgram
    kernel: str
    meta: np.ndarray
    values: np.ndarray
    requested: str = "auto"
    weights: str | None = None
    tensors: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    derivatives: dict[int, int] = field(default_factory=dict)

    def tables(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, meta)`` tensors for inputs of ``dtype``."""
        if dtype not in self.tensors:
            self.tensors[dtype] = torch.tensor(self.values, dtype=dtype), torch.tensor(self.meta)
        return self.tensors[dtype]


_REGISTRY: list[_Entry] = []
_REGISTRY_LOCK = threading.Lock()


def register_program(program: SphereProgram, kernel: str = "auto", weights: str | None = None) -> int:
    """Choose the kernel of ``program`` (``cpu_direct.choose_kernel``; ``kernel`` "auto", "direct" or
    "transform"; ``weights``: None, "shared", "per_sample"), pack its tables once and return its id for
    ``torch.ops.gaunt.cpu_sphere_program``."""
    chosen, c = choose_kernel(program, kernel, weights)
    tables = pack_direct(c) if chosen == "direct" else pack(program)
    with _REGISTRY_LOCK:  # the index and the append together: another thread's program never gets this id
        _REGISTRY.append(_Entry(program, chosen, *tables, requested=kernel, weights=weights))
        return len(_REGISTRY) - 1


def kernel_of(program_id: int) -> str:
    """The kernel ("direct" or "transform") that runs a registered program."""
    return _REGISTRY[program_id].kernel


def program_tables(program_id: int, dtype: torch.dtype) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``(kernel, values, meta)`` of a registered program: the kernel that runs it ("direct" or "transform")
    and its packed tables for inputs of ``dtype``."""
    entry = _REGISTRY[program_id]
    return entry.kernel, *entry.tables(dtype)


def derivative_id(program_id: int, wrt: int) -> int:
    """The id of ``derivative(program, wrt)`` (registered on first use)."""
    entry = _REGISTRY[program_id]
    if wrt not in entry.derivatives:
        entry.derivatives[wrt] = register_program(derivative(entry.program, wrt), entry.requested, entry.weights)
    return entry.derivatives[wrt]


@torch.library.custom_op("gaunt::cpu_sphere_program", mutates_args=())
def sphere_program(x1: torch.Tensor, x2: torch.Tensor, program_id: int) -> torch.Tensor:
    """``program(x1, x2)`` for ``x1 [n, dim1]``, ``x2 [n, dim2]`` (CPU, float32/float64) -> ``[n, dim_out]``."""
    entry = _REGISTRY[program_id]
    values, meta = entry.tables(x1.dtype)
    if entry.kernel == "direct":
        return torch.ops.gaunt_fused.direct(x1, x2, values, meta)
    return torch.ops.gaunt_fused.run(x1, x2, values, meta)


@sphere_program.register_fake
def _sphere_program_fake(x1: torch.Tensor, x2: torch.Tensor, program_id: int) -> torch.Tensor:
    return x1.new_empty((x1.shape[0], _REGISTRY[program_id].program.dims[2]))


def _setup_context(ctx, inputs, output) -> None:
    x1, x2, program_id = inputs
    ctx.save_for_backward(x1, x2)
    ctx.program_id = program_id


def _backward(ctx, grad: torch.Tensor):
    """``grad_x1 = P'_1(grad, x2)``, ``grad_x2 = P'_2(x1, grad)``: the derivative programs, on this op."""
    x1, x2 = ctx.saved_tensors
    g1 = g2 = None
    if ctx.needs_input_grad[0]:
        g1 = sphere_program(grad, x2, derivative_id(ctx.program_id, 0))
    if ctx.needs_input_grad[1]:
        g2 = sphere_program(x1, grad, derivative_id(ctx.program_id, 1))
    return g1, g2, None


sphere_program.register_autograd(_backward, setup_context=_setup_context)

FUSED_DTYPES = (torch.float32, torch.float64)
KEEP = object()  # ``FusedProgram.use_kernel``: keep how the operands are weighted


def _dual(*tensors: torch.Tensor) -> bool:
    """Whether a tensor carries a forward-mode tangent (the custom op has no forward-mode rule)."""
    return any(fwAD.unpack_dual(t).tangent is not None for t in tensors)


class FusedProgram(torch.nn.Module):
    """A sphere program on the fused kernels; ``self(x1, x2)``: ``[n, dim1] x [n, dim2] -> [n, dim_out]``
    (float32, float64; other dtypes, and inputs with forward-mode tangents, run on ``fallback``, the torch
    executor). ``kernel``: "auto" (the cheaper one, ``cpu_direct.choose_kernel``), "direct" or "transform",
    for the program and its derivative programs; the attribute ``kernel`` says which runs the program. A
    product's frame tells "auto" how the operands are weighted (``use_kernel(kernel, weights)``)."""

    executor = "cpu_fused"

    def __init__(self, program: SphereProgram, kernel: str = "auto") -> None:
        super().__init__()
        reason = unavailable()  # builds the kernel on first use
        if reason is not None:
            raise RuntimeError(f"executor 'cpu_fused' cannot run here: {reason}")
        self.program = program
        self.use_kernel(kernel, None)
        self.fallback = TorchProgram(program)

    def use_kernel(self, kernel: str, weights: str | None | object = KEEP) -> None:
        """Register the program (again) with ``kernel`` ("auto", "direct", "transform") for operands weighted as
        ``weights`` (``cpu_direct.WEIGHTS``: what "auto" weighs; ``KEEP``: as before); later calls run it."""
        weights = getattr(self, "weights", None) if weights is KEEP else weights
        self.program_id = register_program(self.program, kernel, weights)  # raises on a bad argument: nothing set
        self.requested_kernel, self.weights = kernel, weights
        self._kernel = kernel_of(self.program_id)  # kept here: torch.compile reads it with no registry guard

    def __setstate__(self, state: dict) -> None:
        # the id indexes this process's registry: a copy (pickle, deepcopy, another process) registers anew
        super().__setstate__(state)
        self.use_kernel(self.requested_kernel, self.__dict__.get("weights"))

    @property
    def kernel(self) -> str:
        """The kernel that runs the program: "direct" or "transform"."""
        return self._kernel

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if x1.dtype not in FUSED_DTYPES:
            return self.fallback(x1, x2)
        if not torch.compiler.is_compiling() and _dual(x1, x2):
            return self.fallback.evaluate(x1, x2)  # plain torch ops: forward mode runs through them
        return sphere_program(x1, x2, self.program_id)

    def extra_repr(self) -> str:
        n_theta, n_phi = self.program.grid
        return (
            f"{self.program.name}: grid {n_theta} x {n_phi}, {len(self.program.terms)} term(s), "
            f"executor=cpu_fused (program {self.program_id}, kernel={self.kernel})"
        )


__all__ = [
    "FusedProgram",
    "derivative_id",
    "kernel_of",
    "nonzero_ranges",
    "pack",
    "register_program",
    "sphere_program",
    "program_tables",
]
