"""What is specific to the fused CPU executor (the conformance suite runs it on every product as well):
equality with the torch executor on every product's programs and their derivative programs, on both kernels
(``test_cpu_direct.py`` has the direct kernel's own tests), the path where the kernel cannot build, threads,
and ``torch.export`` of the custom op."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from conftest import assert_equivariant

from gaunt.products import (
    EXECUTORS,
    GauntProduct,
    GridGauntProduct,
    VectorGauntProduct,
    cpu_build,
    executors,
    sphere_programs,
)
from gaunt.products.cpu_executor import FusedProgram
from gaunt.products.executors import cpu_runner
from gaunt.products.program import derivative
from gaunt.products.table_symmetries import phi_reflection, theta_twins
from gaunt.products.torch_executor import TorchProgram

pytestmark = pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")

#: mul 2 and 3 run the general gathers (tiles across samples), mul 16 and 32 the strided ones
CASES = [
    (GridGauntProduct, ("2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e+2x3o")),
    (GridGauntProduct, ("16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e+16x3o")),
    (GauntProduct, ("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e")),
    (GauntProduct, ("16x1o+16x3o", "16x0e+16x2e", "16x1o+16x3o+16x5o")),
    (VectorGauntProduct, ("2x0e+2x1o+2x2e", "2x0e+2x1o", "2x0e+2x1o+2x1e+2x2e")),
    (VectorGauntProduct, ("32x0e+32x1o+32x2e", "32x0e+32x1o", "32x0e+32x1o+32x1e+32x2e")),
]


def programs(product):
    """The forward program, both derivative programs and two second derivatives (double backward)."""
    p = product.program
    return [p, derivative(p, 0), derivative(p, 1), derivative(derivative(p, 0), 1), derivative(derivative(p, 1), 0)]


@pytest.mark.parametrize("kernel", ["transform", "direct"])
@pytest.mark.parametrize("cls,irreps", CASES, ids=[f"{c.__name__}-{i[0]}" for c, i in CASES])
def test_equals_torch_executor_on_every_program(cls, irreps, kernel):
    g = torch.Generator().manual_seed(0)
    for program in programs(cls(*irreps, executor="torch")):
        reference, runner = TorchProgram(program), FusedProgram(program, kernel)
        assert runner.kernel == kernel
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            x1 = torch.randn(37, program.dims[0], generator=g, dtype=torch.float64)
            x2 = torch.randn(37, program.dims[1], generator=g, dtype=torch.float64)
            exact = reference.evaluate(x1, x2)
            out = runner(x1.to(dtype), x2.to(dtype))
            assert out.dtype == dtype and out.shape == exact.shape
            torch.testing.assert_close(
                out.double(),
                exact,
                rtol=0,
                atol=tol * float(exact.abs().max()),
                msg=lambda m, name=program.name: f"{name}: {m}",
            )


def test_threads_give_the_same_result():
    program = GridGauntProduct("16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e").program
    runner = EXECUTORS["cpu_fused"].runner(program)
    x1, x2 = torch.randn(101, program.dims[0]), torch.randn(101, program.dims[1])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = runner(x1, x2)
        torch.set_num_threads(2)
        two = runner(x1, x2)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(one, two, rtol=0, atol=0)  # threads split whole samples: same arithmetic


def test_auto_chooses_the_fused_executor_on_cpu():
    product = GridGauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x2e")
    assert product.executor.startswith("cpu_fused")
    assert "executor=cpu_fused" in repr(product)


def test_when_the_kernel_cannot_build(monkeypatch):
    """ "auto" runs the torch executor and warns once why; asking for "cpu_fused" raises with the reason."""

    def fail() -> None:
        raise RuntimeError("no C++ compiler (test)")

    monkeypatch.setattr(cpu_build, "_status", {})
    monkeypatch.setattr(cpu_build, "_loaded", lambda: False)
    monkeypatch.setattr(cpu_build, "_build", fail)
    monkeypatch.setattr(executors, "_WARNED", set())
    irreps = ("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o")
    with pytest.warns(UserWarning, match=r"executor 'cpu_fused' cannot run here \(.*no C\+\+ compiler \(test\)"):
        product = GridGauntProduct(*irreps)
    assert product.executor.startswith("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second product does not warn again
        assert GridGauntProduct(*irreps).executor.startswith("torch")
    with pytest.raises(RuntimeError, match="'cpu_fused' was requested but cannot run here: .*no C\\+\\+ compiler"):
        GridGauntProduct(*irreps, executor="cpu_fused")


@pytest.mark.parametrize("fold", [True, False])
def test_export_keeps_the_custom_op(fold):
    """The product's op: its shared weights folded into the direct kernel (``direct_weighted``), or the program's."""
    product = GridGauntProduct(
        "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", weight_init="randn", executor="cpu_fused"
    )
    product.frame.fold_weights = fold
    x1, x2 = torch.randn(5, product.irreps_in1.dim), torch.randn(5, product.irreps_in2.dim)
    exported = torch.export.export(product, (x1, x2))
    op = "gaunt.cpu_direct_weighted" if fold else "gaunt.cpu_sphere_program"
    assert op in str(exported.graph)
    torch.testing.assert_close(exported.module()(x1, x2), product(x1, x2), rtol=1e-6, atol=1e-6)


def test_other_dtypes_run_on_the_torch_executor():
    program = GridGauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o").program
    runner = EXECUTORS["cpu_fused"].runner(program)
    x1, x2 = torch.randn(3, program.dims[0]), torch.randn(3, program.dims[1])
    out = runner(x1.bfloat16(), x2.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), runner(x1, x2), rtol=0.05, atol=0.05)


def test_forward_mode_runs_on_the_torch_executor():
    """The custom op has no forward-mode rule: inputs with tangents take the torch executor's plain ops."""
    import torch.autograd.forward_ad as fwAD

    program = GridGauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o").program
    runner = EXECUTORS["cpu_fused"].runner(program)
    x1, x2, t1 = (torch.randn(3, program.dims[0], dtype=torch.float64) for _ in range(3))
    x2 = x2[:, : program.dims[1]]
    with fwAD.dual_level():
        out = runner(fwAD.make_dual(x1, t1), x2)
        tangent = fwAD.unpack_dual(out).tangent
    torch.testing.assert_close(tangent, runner(t1, x2), rtol=1e-12, atol=1e-12)  # bilinear: d/dx1 P = P(t1, x2)


def test_the_stages_with_and_without_the_symmetries_of_the_tables():
    """Products' phi tables are even/odd under phi -> -phi and run on half the points, and the theta tables of
    m and -m are equal and run as twins; random tables have neither and run whole. Both equal the torch executor,
    values and both derivative programs, float64."""
    program = GridGauntProduct("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", executor="torch").program
    order, even = phi_reflection(program.syntheses[0].phi)
    assert even == 3 and sorted(order) == list(range(5))  # cos(m phi), m = 0..2, then sin
    rng = np.random.default_rng(0)
    assert list(theta_twins(program.syntheses[0].theta)) == [4, 3, -1, 1, 0]  # m = -2..2: m and -m
    syntheses = tuple(
        dataclasses.replace(s, phi=rng.standard_normal(s.phi.shape), theta=rng.standard_normal(s.theta.shape))
        for s in program.syntheses
    )
    projections = tuple(
        dataclasses.replace(p, phi=rng.standard_normal(p.phi.shape), theta=rng.standard_normal(p.theta.shape))
        for p in program.projections
    )
    scrambled = dataclasses.replace(program, syntheses=syntheses, projections=projections)
    assert phi_reflection(scrambled.syntheses[0].phi) is None and phi_reflection(scrambled.projections[0].phi.T) is None
    assert (theta_twins(scrambled.syntheses[0].theta) == -1).all()
    g = torch.Generator().manual_seed(1)
    for prog in (program, scrambled):
        x1, x2 = (torch.randn(5, d, generator=g, dtype=torch.float64, requires_grad=True) for d in prog.dims[:2])
        cotangent = torch.randn(5, prog.dims[2], generator=g, dtype=torch.float64)
        results = []
        for runner in (FusedProgram(prog, kernel="transform"), TorchProgram(prog)):
            out = runner(x1, x2)
            results.append([out, *torch.autograd.grad(out, (x1, x2), cotangent)])
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))


@pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")
def test_float32_strided_tiles_are_equivariant():
    """float32 on the transform kernel with 16 channels (strided tiles: an irrep's rows gathered and read out by
    register shuffles, csrc/tile_blocks.h, which float64 does not use): rotations, improper rotations and
    inversion hold to float32 precision, and the output equals the torch executor's."""
    irreps = "16x0e+16x1o+16x2e+16x3o"
    torch.manual_seed(0)
    product = GridGauntProduct(irreps, irreps, irreps, executor="cpu_fused", weight_init="randn")
    cpu_runner(product.frame.runner).use_kernel("transform")
    reference = GridGauntProduct(irreps, irreps, irreps, executor="torch", weight_init="randn")
    reference.load_state_dict(product.state_dict())
    g = torch.Generator().manual_seed(1)
    x1, x2 = (torch.randn(6, product.irreps_in1.dim, generator=g) for _ in range(2))
    assert_equivariant(product, x1, x2)
    out, exact = product(x1, x2), reference.double()(x1.double(), x2.double())
    torch.testing.assert_close(out.double(), exact, rtol=0, atol=1e-5 * float(exact.abs().max()))


def reflected(phi: np.ndarray, sign: int) -> np.ndarray:
    """``phi [n_phi, R]`` made even (sign 1) or odd (-1) in every column under ``p -> -p mod n_phi``."""
    return phi + sign * phi[(-np.arange(phi.shape[0])) % phi.shape[0]]


@pytest.mark.parametrize("odd_azimuths", [False, True])
@pytest.mark.parametrize("signs", [(1, 1, 1), (-1, -1, -1), (1, -1, -1), (-1, 1, 1)])
def test_reflected_phi_stages_with_no_odd_or_no_even_rows(signs, odd_azimuths, monkeypatch):
    """Phi tables whose columns are all even or all odd (random, symmetrised): the reflected stages with an empty
    odd or even half (the products' own tables always have both) equal the torch executor, forward and both
    derivative programs, on grids of odd (the least exact grid, ``even_azimuths`` replaced) and even n_phi."""
    if odd_azimuths:
        monkeypatch.setattr(sphere_programs, "even_azimuths", lambda degree: degree + 1)
    rng = np.random.default_rng(0)
    for irreps in (("2x0e+2x1o",) * 3, ("2x1o", "2x1o", "2x0e+2x2e")):
        program = GridGauntProduct(*irreps, executor="torch").program
        assert program.grid[1] % 2 == (odd_azimuths and irreps[0] == "2x1o")  # degree 3: n_phi 4 either way
        syntheses = tuple(
            dataclasses.replace(s, phi=reflected(rng.standard_normal(s.phi.shape), sign))
            for s, sign in zip(program.syntheses, signs[:2])
        )
        projections = tuple(
            dataclasses.replace(p, phi=reflected(rng.standard_normal(p.phi.shape).T, signs[2]).T)
            for p in program.projections
        )
        changed = dataclasses.replace(program, syntheses=syntheses, projections=projections)
        halves = [phi_reflection(s.phi)[1] for s in syntheses] + [phi_reflection(p.phi.T)[1] for p in projections]
        rows = [s.phi.shape[1] for s in syntheses] + [p.phi.shape[0] for p in projections]
        assert halves == [R if sign > 0 else 0 for R, sign in zip(rows, signs)]
        for p in (changed, derivative(changed, 0), derivative(changed, 1)):
            x1, x2 = (torch.randn(37, d, dtype=torch.float64) for d in p.dims[:2])
            exact = TorchProgram(p).evaluate(x1, x2)
            out = FusedProgram(p, "transform")(x1, x2)
            # (a product of two odd fields can vanish on an even projection: then the scale is the inputs')
            torch.testing.assert_close(out, exact, rtol=0, atol=1e-12 * max(1.0, float(exact.abs().max())))
