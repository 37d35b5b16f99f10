"""Sphere programs: immutable plain arrays, and derivative programs that are the exact adjoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gaunt.products import GridGauntProduct, VectorGauntProduct, derivative
from gaunt.products.program import Projection, SphereProgram, Synthesis, Term
from gaunt.products.torch_executor import TorchProgram

F64 = torch.float64


def _programs():
    yield GridGauntProduct("2x0e+2x1o+2x2e", "2x0e+2x1o", "2x0e+2x1o+2x2e+2x3o").program
    yield VectorGauntProduct("2x0e+2x1o+2x2e", "2x0e+2x1o", "2x0e+2x1o+2x1e+2x2e").program


@pytest.mark.parametrize("program", list(_programs()), ids=lambda p: p.name)
@pytest.mark.parametrize("wrt", [0, 1])
def test_derivative_program_is_the_vjp_of_the_plain_ops(program, wrt):
    """``derivative(P, wrt)(grad, x2)`` equals autograd's vector-Jacobian product through P's plain torch
    ops (``TorchProgram.evaluate``, no custom backward involved)."""
    runner = TorchProgram(program)
    g = torch.Generator().manual_seed(wrt)
    x1, x2 = (torch.randn(4, d, generator=g, dtype=F64, requires_grad=True) for d in program.dims[:2])
    grad = torch.randn(4, program.dims[2], generator=g, dtype=F64)
    expected = torch.autograd.grad(runner.evaluate(x1, x2), (x1, x2)[wrt], grad)[0]
    d = TorchProgram(derivative(program, wrt))
    got = d.evaluate(grad, x2) if wrt == 0 else d.evaluate(x1, grad)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert d.program.dims == (
        (program.dims[2], program.dims[1], program.dims[0])
        if wrt == 0
        else (program.dims[0], program.dims[2], program.dims[1])
    )


@pytest.mark.parametrize("program", list(_programs()), ids=lambda p: p.name)
def test_derivative_of_the_derivative_is_the_program(program):
    """d/d(grad) of the VJP program (inputs ``(grad, x2)``) is the original program again, same sizes."""
    twice = derivative(derivative(program, 0), 0)
    assert twice.dims == program.dims and len(twice.terms) == len(program.terms)
    g = torch.Generator().manual_seed(5)
    x1, x2 = (torch.randn(3, d, generator=g, dtype=F64) for d in program.dims[:2])
    torch.testing.assert_close(
        TorchProgram(twice).evaluate(x1, x2), TorchProgram(program).evaluate(x1, x2), rtol=1e-12, atol=1e-12
    )


def test_a_wrong_adjoint_is_detected():
    """The VJP comparison is not vacuous: a derivative program with one term's sign flipped fails it."""
    program = list(_programs())[1]  # the vector program has a -1 term
    d = derivative(program, 0)
    broken = dataclasses.replace(
        d, terms=tuple(dataclasses.replace(t, coefficient=abs(t.coefficient)) for t in d.terms)
    )
    runner = TorchProgram(program)
    x1, x2 = (torch.randn(3, n, dtype=F64, requires_grad=True) for n in program.dims[:2])
    grad = torch.randn(3, program.dims[2], dtype=F64)
    expected = torch.autograd.grad(runner.evaluate(x1, x2), x1, grad)[0]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(TorchProgram(broken).evaluate(grad, x2), expected, rtol=1e-12, atol=1e-12)


def test_programs_are_immutable_plain_arrays():
    program = next(_programs())
    assert all(isinstance(s.theta, np.ndarray) and not s.theta.flags.writeable for s in program.syntheses)
    with pytest.raises(ValueError):
        program.syntheses[0].theta[0, 0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        program.mul = 3
    assert program.flops_per_sample() > 0


def test_inconsistent_programs_are_refused():
    theta, phi = np.zeros((3, 2, 2)), np.zeros((4, 3))
    s0 = Synthesis(0, np.zeros(6, dtype=np.int64), theta, phi)  # reads position 0 six times
    s1 = Synthesis(1, np.arange(6), theta, phi)
    p = Projection(np.zeros((3, 2, 2)), np.zeros((3, 4)), np.arange(6))
    program = SphereProgram(1, (6, 6, 6), (s0, s1), (p,), (Term(0, 1, 0),))
    with pytest.raises(ValueError, match="injective"):
        derivative(program, 0)
    with pytest.raises(ValueError, match="wrt must be 0 or 1"):
        derivative(program, 2)
    with pytest.raises(ValueError, match="must multiply a field of x1 by a field of x2"):
        SphereProgram(1, (6, 6, 6), (s0, s1), (p,), (Term(1, 0, 0),))
    with pytest.raises(ValueError, match="one grid"):
        SphereProgram(1, (6, 6, 6), (s0, Synthesis(1, np.arange(6), theta, np.zeros((5, 3)))), (p,), ())
