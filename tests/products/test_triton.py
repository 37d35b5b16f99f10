"""The Triton executor: kernels equal to the torch executor on programs and their derivatives, dtypes, the GPU's
tiles, the custom op's registrations, and what happens without triton. On the CPU the kernels run in Triton's
interpreter (``TRITON_INTERPRET=1``, set by ``tests/conftest.py``); the conformance suite runs the products on it.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from conformance import DEVICE

from gaunt.products import EXECUTORS, GauntProduct, GridGauntProduct, VectorGauntProduct
from gaunt.products.executors import PREFERENCE, resolve_executor
from gaunt.products.program import Projection, SphereProgram, Synthesis, Term, derivative
from gaunt.products.torch_executor import TorchProgram
from gaunt.products.triton_layout import blocks, kernel_tables

REASON = EXECUTORS["triton"].unavailable()
needs_triton = pytest.mark.skipif(
    REASON is not None or DEVICE not in EXECUTORS["triton"].devices,
    reason=f"Triton executor: {REASON or 'not on ' + DEVICE}",
)

PRODUCTS = {
    "grid": lambda: GridGauntProduct("2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e+2x3o", executor="torch"),
    "torus": lambda: GauntProduct("2x0e+2x1o+2x2e", "2x0e+2x1o", "2x0e+2x1o+2x2e", executor="torch"),
    "vector": lambda: VectorGauntProduct("2x0e+2x1o+2x2e", "2x0e+2x1o", "2x0e+2x1o+2x1e+2x2e", executor="torch"),
}


def programs(name: str) -> dict[str, SphereProgram]:
    """A product's program, its two derivatives and one second derivative (inputs (x1, g), g the cotangent)."""
    p = PRODUCTS[name]().program
    return {
        "P": p,
        "dP/dx1": derivative(p, 0),
        "dP/dx2": derivative(p, 1),
        "d2P/dx1dx2": derivative(derivative(p, 0), 1),
    }


def inputs(program: SphereProgram, n: int, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=g, dtype=torch.float64).to(DEVICE, dtype) for d in program.dims[:2])


def reference(program: SphereProgram) -> TorchProgram:
    return TorchProgram(program).to(DEVICE)


def assert_close_to_scale(actual, expected, tol: float) -> None:
    """Equal to ``tol`` times the largest entry of ``expected`` (non-vacuously)."""
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(actual.double(), expected.double(), rtol=0, atol=tol * scale)


@needs_triton
@pytest.mark.parametrize("name", sorted(PRODUCTS))
def test_programs_and_derivatives_equal_torch_executor(name):
    """Forward, backward and double-backward programs: float64 to 1e-12, float32 to 1e-5 of the scale."""
    from gaunt.products.triton_executor import TritonProgram

    for label, program in programs(name).items():
        x1, x2 = inputs(program, 3)
        expected = reference(program)(x1, x2)
        assert_close_to_scale(TritonProgram(program)(x1, x2), expected, 1e-12)
        out32 = TritonProgram(program)(x1.float(), x2.float())
        assert out32.dtype == torch.float32, label
        assert_close_to_scale(out32, expected, 1e-5)


@needs_triton
def test_bfloat16_inputs_accumulate_in_float32():
    """bfloat16 in and out; the sums in float32: the error of the bfloat16 output rounding, not of the sums."""
    from gaunt.products.triton_executor import TritonProgram

    program = programs("grid")["P"]
    x1, x2 = (x.bfloat16() for x in inputs(program, 4))
    out = TritonProgram(program)(x1, x2)
    assert out.dtype == torch.bfloat16
    expected = reference(program)(x1.double(), x2.double())  # the same (rounded) inputs, exactly
    assert_close_to_scale(out, expected, 2**-8)


@needs_triton
@pytest.mark.parametrize("name", ["grid", "vector"])
def test_gpu_tiles_in_the_interpreter(name):
    """The GPU's tiles (16 columns, one ring a step): several instances, a ragged last one, two-term launches."""
    from gaunt.products.triton_executor import register, run_program

    program = programs(name)["P"]
    x1, x2 = inputs(program, 11)  # 22 columns: two instances of 16
    assert blocks(kernel_tables(program).sizes, 22, 8, interpret=False) == (64, 1, 16)
    out = run_program(register(program), x1, x2, tile=(16, 1, 4))
    assert_close_to_scale(out, reference(program)(x1, x2), 1e-12)


@needs_triton
def test_gradients_and_double_gradients_equal_torch_executor():
    """The op's autograd (derivative programs on the same op) gives torch's first and second derivatives."""
    from gaunt.products.triton_executor import TritonProgram

    program = programs("vector")["P"]
    results = []
    for runner in (reference(program), TritonProgram(program)):
        x1, x2 = (x.requires_grad_() for x in inputs(program, 3, seed=1))
        g = torch.randn(3, program.dims[2], generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(DEVICE)
        out = runner(x1, x2)
        g1, g2 = torch.autograd.grad((out * g).sum(), (x1, x2), create_graph=True)
        h1, h2 = torch.autograd.grad((g1.square().sum() + (g2 * x2).sum()), (x1, x2))
        results.append((out, g1, g2, h1, h2))
    for actual, expected in zip(results[1], results[0]):
        assert_close_to_scale(actual.detach(), expected.detach(), 1e-12)


@needs_triton
def test_custom_op_registrations():
    """Schema, fake (meta) implementation, autograd registration and dispatch: ``torch.library.opcheck``."""
    from gaunt.products.triton_executor import register

    program = programs("grid")["P"]
    x1, x2 = (x.requires_grad_() for x in inputs(program, 2))
    torch.library.opcheck(torch.ops.gaunt.triton_sphere_program.default, (x1, x2, register(program)))


@pytest.mark.skipif(REASON is not None and "CUDA" not in REASON, reason=f"Triton executor: {REASON}")
def test_kernel_compiles_for_sm90():
    """The compiled path (not the interpreter's): every dtype and launch kind through ptxas for sm_90, no GPU needed."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("triton_aot.py")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    result = subprocess.run(
        [sys.executable, str(script), "90"], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["program"], r["dtype"], r["launch"]) for r in records] == [
        ("grid_gaunt", "fp64", 0),
        ("vector_gaunt", "fp32", 0),
        ("vector_gaunt", "fp32", 1),
        ("grid_gaunt", "bf16", 0),
    ]
    assert all(r["shared"] < 100 * 1024 for r in records)


def test_registration_and_preference():
    """ "triton" runs on CUDA (and the CPU under the interpreter); "auto" prefers it on CUDA, never on the CPU."""
    interpret = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    assert EXECUTORS["triton"].devices == (("cuda", "cpu") if interpret else ("cuda",))
    assert PREFERENCE["cuda"] == ("triton", "torch")
    assert "triton" not in PREFERENCE["cpu"]
    assert resolve_executor("auto", "cpu") != "triton"


def test_without_triton(monkeypatch):
    """Without triton: "auto" keeps torch on every device, ``executor="triton"`` raises with the reason."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a))
    assert EXECUTORS["triton"].unavailable() == "triton is not installed (pip install gaunt-tp[gpu])"
    assert resolve_executor("auto", "cuda") == "torch"
    with pytest.raises(RuntimeError, match="'triton' was requested but cannot run here: triton is not installed"):
        GridGauntProduct("0e+1o", "0e+1o", "0e+1o", executor="triton")


def test_kernel_tables_layout():
    """Padding to powers of two (>= 16 where tl.dot meets them), launches of up to two terms per projection."""
    tables = kernel_tables(programs("vector")["P"])
    sizes = tables.sizes
    assert all(v & (v - 1) == 0 for v in sizes.values()) and min(sizes["RS"], sizes["R3"], sizes["NP"]) >= 16
    assert [len(terms) for _, terms in tables.launches] == [1, 2]  # even: f1 f2; odd: t1 p2 - p1 t2
    assert [c for _, _, c in tables.launches[1][1]] == [1.0, -1.0]
    written = tables.proj_write[tables.proj_write >= 0]
    assert len(np.unique(written)) == len(written)


def test_non_injective_read_is_refused():
    s = Synthesis(0, [0], np.ones((1, 1, 1)), np.ones((1, 1)))
    s2 = Synthesis(1, [0], np.ones((1, 1, 1)), np.ones((1, 1)))
    p = Projection(np.ones((1, 1, 1)), np.ones((1, 1)), [0, 0])  # one row read into two outputs
    program = SphereProgram(1, (1, 1, 2), (s, s2), (p,), (Term(0, 1, 0),))
    with pytest.raises(ValueError, match="injective"):
        kernel_tables(program)
