"""The Triton executor: a sphere program as one fused kernel per launch (``triton_kernels``), a ``torch.library``
custom op with a fake implementation and autograd.

``torch.ops.gaunt.triton_sphere_program(x1 [n, dim1], x2 [n, dim2], key) -> [n, dim_out]`` runs the program
registered under ``key`` (:func:`register`: programs are plain arrays, the op takes only tensors and ints).
Its backward runs the same op on the derivative programs (``program.derivative``):

    grad_x1 = P'_1(grad_out, x2),        grad_x2 = P'_2(x1, grad_out),

registered on first use, so double backward is again this op. The op has a CUDA implementation and, when
``TRITON_INTERPRET=1`` (Triton's interpreter: the kernels run on the CPU with numpy), a CPU one, which is how
the default test suite checks the kernels without a GPU. float32 and bfloat16/float16 inputs compute in
float32 (``tl.dot`` in TF32 only where ``torch.backends.cuda.matmul.allow_tf32`` is set), float64 in float64;
the output has the inputs' dtype.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np
import torch

from . import triton_kernels
from .program import SphereProgram, derivative
from .triton_layout import KernelTables, blocks, kernel_tables

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE_TYPES = ("cuda", "cpu") if INTERPRET else ("cuda",)

_lock = threading.Lock()
_programs: list[SphereProgram] = []
_layouts: dict[int, KernelTables] = {}
_derivatives: dict[tuple[int, int], int] = {}
_tensors: dict[tuple[int, torch.device, torch.dtype], dict[str, torch.Tensor]] = {}


def register(program: SphereProgram) -> int:
    """The key under which the op runs ``program`` (the program's tables are laid out now)."""
    layout = kernel_tables(program)
    with _lock:
        _programs.append(program)
        key = len(_programs) - 1
        _layouts[key] = layout
    return key


def derivative_key(key: int, wrt: int) -> int:
    """The key of ``derivative(program, wrt)`` (registered once)."""
    if (key, wrt) not in _derivatives:
        _derivatives[(key, wrt)] = register(derivative(_programs[key], wrt))
    return _derivatives[(key, wrt)]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tables(key: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The layout of program ``key`` as tensors on ``device`` (tables in ``dtype``, indices int32), cached."""
    cache = (key, device, dtype)
    if cache not in _tensors:
        layout = _layouts[key]
        names = ("syn_index", "syn_theta", "syn_phi", "proj_phi", "proj_theta", "proj_write")
        tensors = {name: torch.as_tensor(getattr(layout, name)) for name in names}
        coefs = np.zeros((len(layout.launches), 4))  # rows of 4: every launch's pointer 16-byte aligned
        for k, (_, terms) in enumerate(layout.launches):
            coefs[k, : len(terms)] = [c for _, _, c in terms]
        tensors["coef"] = torch.as_tensor(coefs)
        _tensors[cache] = {
            name: (t if t.dtype == torch.int32 else t.to(dtype)).to(device).contiguous() for name, t in tensors.items()
        }
    return _tensors[cache]


def _precision(dtype: torch.dtype) -> str:
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and not INTERPRET
    return "tf32" if tf32 else "ieee"


def run_program(key: int, x1: torch.Tensor, x2: torch.Tensor, tile: tuple[int, int, int] | None = None) -> torch.Tensor:
    """The program ``key`` on ``x1 [n, dim1]``, ``x2 [n, dim2]`` with the kernels (no autograd). ``tile``:
    ``(BZ, BT, num_warps)`` instead of ``triton_layout.blocks`` (the tests run a GPU's tiles in the interpreter)."""
    layout, n = _layouts[key], x1.shape[0]
    dtype = _compute_dtype(x1.dtype)
    out = torch.zeros(n, layout.dims[2], dtype=dtype, device=x1.device)
    if n == 0 or not layout.launches:
        return out.to(x1.dtype)
    x1, x2 = x1.contiguous(), x2.contiguous()
    t, sizes, columns = _tables(key, x1.device, dtype), layout.sizes, n * layout.mul
    block, rings, warps = tile or blocks(sizes, columns, layout.stored_rings, INTERPRET)
    grid = (triton_kernels.triton.cdiv(columns, block),)
    with torch.cuda.device(x1.device) if x1.is_cuda else contextlib.nullcontext():  # launch on the inputs' GPU
        for k, (p, terms) in enumerate(layout.launches):
            (a0, b0, _), (a1, b1, _) = terms[0], terms[-1]
            triton_kernels.sphere_program_kernel[grid](
                x1,
                x2,
                out,
                t["syn_index"],
                t["syn_theta"],
                t["syn_phi"],
                t["proj_phi"],
                t["proj_theta"],
                t["proj_write"],
                t["coef"][k],
                columns,
                *layout.dims,
                layout.mul,
                layout.n_theta,
                layout.stored_rings,
                p,
                a0,
                b0,
                a1,
                b1,
                **sizes,
                BZ=block,
                BT=rings,
                TWO=len(terms) == 2,
                ACCUMULATE=k > 0,
                PRECISION=_precision(dtype),
                num_warps=warps,
            )
    return out.to(x1.dtype)


@torch.library.custom_op("gaunt::triton_sphere_program", mutates_args=(), device_types=DEVICE_TYPES)
def sphere_program(x1: torch.Tensor, x2: torch.Tensor, key: int) -> torch.Tensor:
    """``out [n, dim_out]`` of the registered program ``key`` (module docstring)."""
    return run_program(key, x1, x2)


@sphere_program.register_fake
def _(x1: torch.Tensor, x2: torch.Tensor, key: int) -> torch.Tensor:
    return x1.new_empty(x1.shape[0], _layouts[key].dims[2])


def _setup_context(ctx, inputs, output) -> None:
    x1, x2, key = inputs
    ctx.save_for_backward(x1, x2)
    ctx.key = key


def _backward(ctx, grad: torch.Tensor):
    """The vector-Jacobian products as the derivative programs, on this same op (differentiable again)."""
    x1, x2 = ctx.saved_tensors
    grad = grad.contiguous()
    g1 = sphere_program(grad, x2, derivative_key(ctx.key, 0)) if ctx.needs_input_grad[0] else None
    g2 = sphere_program(x1, grad, derivative_key(ctx.key, 1)) if ctx.needs_input_grad[1] else None
    return g1, g2, None


sphere_program.register_autograd(_backward, setup_context=_setup_context)


class TritonProgram(torch.nn.Module):
    """A sphere program on the Triton kernels; ``self(x1, x2)``: ``[n, dim1] x [n, dim2] -> [n, dim_out]``
    (one flat batch dimension, inputs of one dtype on one device: CUDA, or CPU under ``TRITON_INTERPRET=1``)."""

    executor = "triton"

    def __init__(self, program: SphereProgram) -> None:
        super().__init__()
        self.program, self.key = program, register(program)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return sphere_program(x1, x2, self.key)

    def __setstate__(self, state: dict) -> None:
        # the key indexes this process's registry: a copy (pickle, deepcopy, another process) registers anew
        super().__setstate__(state)
        self.key = register(self.program)

    def extra_repr(self) -> str:
        n_theta, n_phi = self.program.grid
        return f"{self.program.name}: grid {n_theta} x {n_phi}, {len(self.program.terms)} term(s), executor=triton"


__all__ = ["DEVICE_TYPES", "INTERPRET", "TritonProgram", "derivative_key", "register", "run_program", "sphere_program"]
