"""The direct kernel of the fused CPU executor: the coupling list of a program (``coupling``), the kernel
over it (``csrc/direct_program.cpp``, both its tilings: channels of the ``mul_ir`` blocks where ``mul`` is a
multiple of the SIMD width, samples otherwise) against the torch executor, autograd and torch.compile through
it, and the rule that chooses it per program (``cpu_direct.choose_kernel``)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from gaunt.bench.products import sh_irreps
from gaunt.products import GauntProduct, GridGauntProduct, VectorGauntProduct, cpu_build
from gaunt.products.coupling import Coupling, NotChannelWise, coupling
from gaunt.products.cpu_direct import blocks, choose_kernel
from gaunt.products.cpu_executor import FusedProgram, derivative_id, kernel_of
from gaunt.products.executors import cpu_runner
from gaunt.products.program import Projection, SphereProgram, Synthesis, derivative
from gaunt.products.torch_executor import TorchProgram

needs_kernel = pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def irreps_of(cls, mul: int, L: int) -> tuple[str, str, str]:
    """Feature-shape irreps up to degree L (the vector product: x2 up to 1, its output with the 1e block)."""
    if cls is VectorGauntProduct:
        return str(sh_irreps(mul, L)), str(sh_irreps(mul, 1)), f"{mul}x0e+{mul}x1o+{mul}x1e+{mul}x2e"
    return (str(sh_irreps(mul, L)),) * 3


def programs(cls, mul: int, L: int) -> list[SphereProgram]:
    """The forward program of ``cls`` and both derivative programs."""
    p = cls(*irreps_of(cls, mul, L), executor="torch").program
    return [p, derivative(p, 0), derivative(p, 1)]


def random_pair(program: SphereProgram, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, program.dims[k], generator=g, dtype=torch.float64) for k in (0, 1))


def assert_close_to(out: torch.Tensor, exact: torch.Tensor, tol: float, name: str = "") -> None:
    """``out`` equals ``exact`` to ``tol`` of the scale of ``exact`` (not vacuous: the scale is not 0)."""
    assert exact.numel() == 0 or float(exact.abs().max()) > 0
    scale = float(exact.abs().max()) if exact.numel() else 1.0
    torch.testing.assert_close(out.double(), exact, rtol=0, atol=tol * scale, msg=lambda m: f"{name}: {m}")


# ------------------------------------------------------------------------------------------- the coupling list
@pytest.mark.parametrize("cls", [GridGauntProduct, GauntProduct, VectorGauntProduct])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_coupling_list_equals_the_program(cls, L):
    for program in programs(cls, 3, L):
        c = coupling(program)
        x1, x2 = random_pair(program, 5)
        assert c.nnz > 0 and c.sizes[0] * program.mul == len(np.unique(c.positions[0]))
        assert_close_to(c.evaluate(x1, x2), TorchProgram(program).evaluate(x1, x2), 1e-12, program.name)


def test_a_perturbed_coefficient_fails_the_comparison():
    program = GridGauntProduct(*irreps_of(GridGauntProduct, 2, 1), executor="torch").program
    c = coupling(program)
    x1, x2 = random_pair(program, 5)
    exact = TorchProgram(program).evaluate(x1, x2)
    assert_close_to(c.evaluate(x1, x2), exact, 1e-12)
    coefficient = c.coefficient.copy()
    coefficient[c.nnz // 2] *= 1 + 1e-6
    perturbed = dataclasses.replace(c, coefficient=coefficient)
    with pytest.raises(AssertionError):
        assert_close_to(perturbed.evaluate(x1, x2), exact, 1e-12)


def test_the_gridgaunt_list_at_L1():
    """Per channel, L = 1: 1 x 1 -> 1, the three m of 1 x 1 -> 0 (1o x 1o is even), 0 x 1 and 1 x 0 -> 1."""
    c = coupling(GridGauntProduct(*irreps_of(GridGauntProduct, 2, 1), executor="torch").program)
    assert c.sizes == (4, 4, 4) and c.nnz == 10
    dense = c.dense()
    assert np.count_nonzero(dense[1:, 1:, 0]) == 3 and np.count_nonzero(dense[1:, 1:, 1:]) == 0
    assert np.allclose(np.diag(dense[1:, 1:, 0]), dense[1, 1, 0])  # the same for every m


@pytest.mark.parametrize("wrt", [0, 1])
def test_the_derivative_lists_are_the_permuted_list(wrt):
    program = GauntProduct(*irreps_of(GauntProduct, 2, 2), executor="torch").program
    own, permuted = coupling(derivative(program, wrt)), coupling(program).vjp(wrt)
    assert own.dims == permuted.dims and own.nnz == permuted.nnz
    for a, b in zip(own.positions, permuted.positions):
        np.testing.assert_array_equal(a, b)
    torch.testing.assert_close(torch.tensor(own.dense()), torch.tensor(permuted.dense()), rtol=0, atol=1e-13)


def in_one_channel(program: SphereProgram, change: str) -> SphereProgram:
    """``program`` with channel 1 of x1 changed: "swap" two of its positions (another layout, still channel-wise),
    "zero" one of its rows (no longer channel-uniform)."""
    s = program.syntheses[0]
    index = s.index.reshape(-1, program.mul).copy()
    rows = np.nonzero(index[:, 1] >= 0)[0]
    if change == "swap":
        index[rows[0], 1], index[rows[-1], 1] = index[rows[-1], 1], index[rows[0], 1]
    else:
        index[rows[0], 1] = -1
    syntheses = (Synthesis(s.source, index.reshape(-1), s.theta, s.phi), *program.syntheses[1:])
    return dataclasses.replace(program, syntheses=syntheses)


def test_a_program_that_is_not_channel_uniform_raises():
    program = in_one_channel(GridGauntProduct(*irreps_of(GridGauntProduct, 2, 1), executor="torch").program, "zero")
    with pytest.raises(NotChannelWise, match="zero in some channels only"):
        coupling(program)
    assert choose_kernel(program) == ("transform", None)
    with pytest.raises(NotChannelWise):
        choose_kernel(program, "direct")


@needs_kernel
def test_another_layout_of_one_channel_is_still_exact():
    """Channel 1 reading two coefficients from swapped positions: its own position map, not the mul_ir blocks."""
    program = GridGauntProduct(*irreps_of(GridGauntProduct, 16, 1), executor="torch").program
    swapped = in_one_channel(program, "swap")
    c = coupling(swapped)
    assert blocks(c.positions[0]) is None and blocks(coupling(program).positions[0]) is not None
    x1, x2 = random_pair(swapped, 19)
    exact = TorchProgram(swapped).evaluate(x1, x2)
    assert_close_to(c.evaluate(x1, x2), exact, 1e-12)
    assert_close_to(FusedProgram(swapped, "direct")(x1, x2), exact, 1e-12)
    with pytest.raises(AssertionError):  # the swap matters
        assert_close_to(TorchProgram(program).evaluate(x1, x2), exact, 1e-6)


def test_coupling_rejects_triples_outside_the_channel():
    c = coupling(GridGauntProduct(*irreps_of(GridGauntProduct, 2, 1), executor="torch").program)
    with pytest.raises(ValueError, match="outside"):
        dataclasses.replace(c, a=c.a + 4)
    assert isinstance(c, Coupling) and blocks(c.positions[0]).tolist() == [[0, 1, 0], [2, 3, 1]]


# --------------------------------------------------------------------------------------------- the kernel
@needs_kernel
@pytest.mark.parametrize("mul", [3, 16])  # 3: the sample tiles; 16: the channel blocks (float32 and float64)
@pytest.mark.parametrize("cls", [GridGauntProduct, GauntProduct, VectorGauntProduct])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_direct_kernel_equals_the_torch_executor_and_the_transform_kernel(cls, L, mul):
    for program in programs(cls, mul, L):
        runner, reference = FusedProgram(program, "direct"), TorchProgram(program)
        transform = FusedProgram(program, "transform")
        assert runner.kernel == "direct" and "kernel=direct" in repr(runner)
        assert blocks(coupling(program).positions[0]) is not None  # mul_ir; mul 3 is no multiple of 8 or 16 lanes
        for n in (37, 1, 0):
            x1, x2 = random_pair(program, n, seed=L)
            exact = reference.evaluate(x1, x2)
            for dtype, tol in TOL.items():
                out = runner(x1.to(dtype), x2.to(dtype))
                assert out.dtype == dtype and out.shape == (n, program.dims[2])
                if n:
                    assert_close_to(out, exact, tol, f"{program.name} {dtype}")
                    assert_close_to(out, transform(x1.to(dtype), x2.to(dtype)).double(), tol, "the transform kernel")


@needs_kernel
@pytest.mark.parametrize("mul", [3, 16])
def test_outputs_in_no_channel_are_zero(mul):
    """A program whose read-out leaves one output block unread: the kernel writes zeros there."""
    program = GridGauntProduct(*irreps_of(GridGauntProduct, mul, 1), executor="torch").program
    p = program.projections[0]
    read = p.read.copy()
    read[:mul] = -1  # the 0e block of every channel
    unread = dataclasses.replace(program, projections=(Projection(p.theta, p.phi, read),))
    x1, x2 = random_pair(unread, 21)
    exact = TorchProgram(unread).evaluate(x1, x2)
    assert float(exact[:, :mul].abs().max()) == 0
    for dtype, tol in TOL.items():
        out = FusedProgram(unread, "direct")(x1.to(dtype), x2.to(dtype))
        assert_close_to(out, exact, tol)
        assert float(out[:, :mul].abs().max()) == 0


def fused_product(cls, irreps, kernel: str, **kw) -> torch.nn.Module:
    product = cls(*irreps, executor="cpu_fused", **kw).double()
    for m in product.modules():
        if isinstance(m, FusedProgram):
            m.use_kernel(kernel)
    return product


@needs_kernel
@pytest.mark.parametrize("mul", [2, 8])
def test_products_broadcast_and_take_per_sample_weights(mul):
    irreps = irreps_of(GridGauntProduct, mul, 2)
    kw = dict(internal_weights=False, shared_weights=False)
    product, reference = fused_product(GridGauntProduct, irreps, "direct", **kw), GridGauntProduct(*irreps, **kw)
    reference = reference.double()
    g = torch.Generator().manual_seed(1)
    dims = product.irreps_in1.dim, product.irreps_in2.dim
    x1 = torch.randn(2, 1, dims[0], generator=g, dtype=torch.float64)
    x2 = torch.randn(3, dims[1], generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, product.weight_numel, generator=g, dtype=torch.float64)
    out = product(x1, x2, w)
    assert out.shape == (2, 3, product.irreps_out.dim)
    assert_close_to(out, reference(x1, x2, w), 1e-12)
    assert product(x1[:0, 0], x2[:0], w[:0, 0]).shape == (0, product.irreps_out.dim)


@needs_kernel
@pytest.mark.parametrize("mul", [2, 8])
def test_gradcheck_and_gradgradcheck_run_direct(mul):
    irreps = (f"{mul}x0e+{mul}x1o", f"{mul}x0e+{mul}x1o", f"{mul}x0e+{mul}x1o+{mul}x2e")
    product = fused_product(GridGauntProduct, irreps, "direct", internal_weights=False, shared_weights=True)
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(2, product.irreps_in1.dim, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(2, product.irreps_in2.dim, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(product.weight_numel, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(product, (x1, x2, w))
    assert torch.autograd.gradgradcheck(product, (x1, x2, w))
    (fused,) = [m for m in product.modules() if isinstance(m, FusedProgram)]
    first = [derivative_id(fused.program_id, wrt) for wrt in (0, 1)]
    second = [derivative_id(i, wrt) for i in first for wrt in (0, 1)]
    assert [kernel_of(i) for i in [fused.program_id, *first, *second]] == ["direct"] * 7


@needs_kernel
def test_compile_traces_the_direct_kernel_with_no_graph_break():
    torch._dynamo.reset()
    irreps = irreps_of(GridGauntProduct, 16, 1)
    product = fused_product(GridGauntProduct, irreps, "direct", internal_weights=True, weight_init="randn").float()
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(5, product.irreps_in1.dim, generator=g, requires_grad=True)
    x2 = torch.randn(5, product.irreps_in2.dim, generator=g)
    compiled = torch.compile(product, fullgraph=True, backend="aot_eager")
    out = compiled(x1, x2)
    (grad,) = torch.autograd.grad(out.square().sum(), x1)
    eager = product(x1, x2)
    (eager_grad,) = torch.autograd.grad(eager.square().sum(), x1)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ the choice
@needs_kernel
@pytest.mark.parametrize("L,kernel", [(1, "direct"), (6, "transform")])
def test_the_rule_chooses_direct_at_small_L_and_transform_at_large_L(L, kernel):
    """GridGaunt, 64 channels (the benchmark's shape): the calibrated cost estimate of ``cpu_direct``."""
    product = GridGauntProduct(*irreps_of(GridGauntProduct, 64, L), executor="cpu_fused")
    (fused,) = [m for m in product.modules() if isinstance(m, FusedProgram)]
    assert fused.kernel == kernel and f"kernel={kernel}" in repr(product)
    assert kernel_of(derivative_id(fused.program_id, 0)) == kernel


def test_the_rule_weighs_the_kernels_as_the_frame_folds_the_weights():
    """At GridGaunt L = 5 (flops / (nnz mul) = 2.04) the plain program and per-sample weights take the direct
    kernel, shared weights the transform kernel (``DIRECT_COST``: 1.8, 2.0, 3.5); products pass their mode."""
    program = GridGauntProduct(*irreps_of(GridGauntProduct, 4, 5), executor="torch").program
    assert choose_kernel(program)[0] == "direct"
    assert choose_kernel(program, weights="per_sample")[0] == "direct"
    assert choose_kernel(program, weights="shared")[0] == "transform"
    with pytest.raises(ValueError, match="weights"):
        choose_kernel(program, weights="both")


@needs_kernel
@pytest.mark.parametrize("shared", [True, False])
def test_a_product_and_its_copy_run_the_kernel_of_its_weights(shared):
    product = GridGauntProduct(*irreps_of(GridGauntProduct, 4, 5), executor="cpu_fused", shared_weights=shared)
    expected = "transform" if shared else "direct"
    for p in (product, copy.deepcopy(product)):
        fused = cpu_runner(p.frame.runner)
        assert fused.kernel == expected and fused.weights == ("shared" if shared else "per_sample")
        assert kernel_of(derivative_id(fused.program_id, 0)) == expected
    fused = cpu_runner(product.frame.runner)
    fused.use_kernel("auto")  # keeps how the frame weights the operands
    assert fused.kernel == expected
    with pytest.raises(ValueError, match="kernel must be"):
        fused.use_kernel("fast")
    assert fused.requested_kernel == "auto" and fused.kernel == expected  # a refused argument changes nothing
