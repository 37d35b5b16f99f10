"""Tests of ``gaunt.nn.many_body``: MACE-style products A^k, the CG chain and the Gaunt powers."""

from __future__ import annotations

import logging

import pytest
import torch

from gaunt.nn.many_body import CGManyBody, GauntManyBody, ManyBodyProduct
from gaunt.products import cpu_build
from gaunt.products.descriptor import dense_product
from gaunt.so3 import Irreps

torch.manual_seed(0)


def sphere(mul: int, lmax: int, sign: int = 1) -> Irreps:
    return Irreps([(mul, (l, sign * (-1) ** l)) for l in range(lmax + 1)])


def randomise(m: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def species_for(n: int, num_elements: int | None, seed: int = 2):
    if num_elements is None:
        return None
    return torch.randint(0, num_elements, (n,), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- Gaunt == CG reference (must-show)
CASES = [  # irreps_in, irreps_out, correlation, num_elements
    (sphere(3, 2), sphere(3, 2), 1, None),
    (sphere(3, 2), sphere(3, 2), 2, 3),
    (sphere(3, 2), sphere(3, 2), 3, None),
    (sphere(2, 1), sphere(2, 2), 4, 2),
    (sphere(2, 3), sphere(2, 4), 3, None),
    (sphere(2, 2), "2x0e", 4, None),  # invariant output (MACE's energy channel)
    ("2x0e+2x2e", "2x0e+2x2e+2x4e", 3, None),  # missing degrees
    (sphere(2, 1, -1), sphere(2, 1, -1), 3, 2),  # pseudo input: odd powers only
    (sphere(2, 1, -1), sphere(2, 2), 4, None),  # pseudo input, ordinary output: even powers only
]


@pytest.mark.parametrize("method", ["grid", "fourier"])
@pytest.mark.parametrize("irreps_in, irreps_out, nu, num_elements", CASES)
def test_gaunt_powers_equal_the_cg_chain_with_gaunt_paths(method, irreps_in, irreps_out, nu, num_elements):
    gaunt = randomise(GauntManyBody(irreps_in, irreps_out, nu, num_elements, method=method).double())
    reference = gaunt.cg_reference()
    assert reference.paths == "gaunt" and len(reference.chain) == max(gaunt.powers)
    A = torch.randn(6, gaunt.irreps_in.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    species = species_for(6, num_elements)
    out = gaunt(A, species).detach()
    assert out.abs().max() > 1e-3
    torch.testing.assert_close(out, reference(A, species), rtol=1e-10, atol=1e-10 * float(out.abs().max()))


def test_grid_and_fourier_agree_at_high_degree():
    grid = randomise(GauntManyBody(sphere(2, 4), sphere(2, 4), 3, method="grid").double())
    fourier = GauntManyBody(sphere(2, 4), sphere(2, 4), 3, method="fourier").double()
    fourier.load_state_dict(grid.state_dict())
    A = torch.randn(4, grid.irreps_in.dim, dtype=torch.float64)
    torch.testing.assert_close(grid(A), fourier(A), rtol=1e-10, atol=1e-10)


def test_gaunt_is_the_pointwise_power_of_the_sphere_function():
    """B = w3 <Y, f^nu>, checked on its own: f sampled on a fine random point set, power, least squares."""
    m = GauntManyBody("1x0e+1x1o+1x2e", "1x0e+1x1o+1x2e+1x3o+1x4e+1x5o+1x6e", 3).double()
    with torch.no_grad():  # w1 = 1, w3 = 1 on the cube only
        m.weights.weight.copy_(torch.cat([torch.ones(3), torch.zeros(14), torch.ones(7)]).double()[None])
    A = torch.randn(1, 9, dtype=torch.float64)
    points = torch.nn.functional.normalize(torch.randn(400, 3, dtype=torch.float64), dim=-1)
    from gaunt.so3 import spherical_harmonics

    Y = spherical_harmonics(6, points)  # orthonormal, [P, 49]
    f = Y[:, :9] @ A[0]
    coefficients = torch.linalg.lstsq(Y, (f**3)[:, None]).solution[:, 0]  # f^3 has degree 6: exact fit
    torch.testing.assert_close(m(A)[0], coefficients, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- the CG chain itself
def test_cg_chain_against_dense_oracle():
    """nu = 3: B = W1 A + W2 T2 + W3 T3 with T_k = CG(T_{k-1}, A), each step re-done with ``dense_product``."""
    m = randomise(CGManyBody(sphere(2, 1), sphere(2, 2), 3).double())
    A = torch.randn(5, m.irreps_in.dim, dtype=torch.float64)
    w = m.weights.weight[0].split(m._sizes)
    T, expected = A, 0.0
    for k, irreps_k in enumerate(m.chain):
        if k > 0:
            T = dense_product(m.steps[k - 1].descriptor(), T, A, w[k - 1])
        where = {ir: sl for (_, ir), sl in zip(irreps_k, irreps_k.slices())}
        blocks = [j for j, (_, ir) in enumerate(m.irreps_out) if ir in where]
        W = w[len(m.steps) + k].reshape(m.mul, len(blocks))
        pieces = []
        for j, ((mul, ir), sl) in enumerate(zip(m.irreps_out, m.irreps_out.slices())):
            if j in blocks:
                block = T[:, where[ir]].reshape(-1, mul, ir.dim) * W[:, blocks.index(j), None]
            else:
                block = torch.zeros(T.shape[0], mul, ir.dim, dtype=T.dtype)
            pieces.append(block.flatten(1))
        expected = expected + torch.cat(pieces, -1)
    torch.testing.assert_close(m(A), expected, rtol=1e-10, atol=1e-10)


def test_cg_chain_structure_and_truncation():
    full = CGManyBody(sphere(2, 2), sphere(2, 1), 3)
    assert [c.lmax for c in full.chain] == [2, 3, 1]  # l_2 <= min(2 L, L_out + L): exact truncation
    assert any(ir.p != (-1) ** ir.l for _, ir in full.chain[1])  # "all" paths keep pseudo irreps (1o x 1o -> 1e)
    gaunt = CGManyBody(sphere(2, 2), sphere(2, 1), 3, paths="gaunt")
    assert all(ir.p == (-1) ** ir.l for _, ir in gaunt.chain[1])
    assert all((p.i_in1 + 0) >= 0 for s in gaunt.steps for p in s.descriptor().paths)
    capped = CGManyBody(sphere(2, 2), sphere(2, 1), 3, lmax_hidden=1)
    assert capped.chain[1].lmax == 1


# ----------------------------------------------------------------------------- symmetry and autograd
@pytest.mark.parametrize("product", ["cg", "grid", "gaunt"])
@pytest.mark.parametrize("nu", [2, 3])
def test_equivariance(product, nu, check_equivariant):
    irreps_in, irreps_out = sphere(2, 2), sphere(2, 3)
    m = randomise(ManyBodyProduct(irreps_in, irreps_out, nu, product=product, num_elements=2).double())
    A = torch.randn(4, irreps_in.dim, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0])
    check_equivariant(lambda a: m(a, species), A, irreps_in, irreps_out)


def test_equivariance_float32_and_pseudo(check_equivariant):
    m = ManyBodyProduct(sphere(4, 2, -1), sphere(4, 2, -1), 3, product="grid")
    check_equivariant(m, torch.randn(5, m.irreps_in.dim), m.irreps_in, m.irreps_out)


@pytest.mark.parametrize("product", ["cg", "grid", "gaunt"])
def test_gradcheck_and_gradgradcheck(product):
    m = randomise(ManyBodyProduct("1x0e+1x1o", "1x0e+1x1o", 3, product=product).double())
    A = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (A,))
    assert torch.autograd.gradgradcheck(m, (A,))
    m(A).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in m.parameters())


# ----------------------------------------------------------------------------- shapes and elements
@pytest.mark.parametrize("product", ["cg", "grid", "gaunt"])
def test_batch_dimensions_empty_batch_and_species(product):
    m = randomise(ManyBodyProduct(sphere(2, 1), sphere(2, 1), 3, product=product, num_elements=3).double())
    A = torch.randn(2, 3, m.irreps_in.dim, dtype=torch.float64)
    species = torch.tensor([[0, 1, 2], [2, 2, 0]])
    out = m(A, species)
    torch.testing.assert_close(out, m(A.reshape(6, -1), species.reshape(6)).reshape(2, 3, -1), rtol=1e-12, atol=1e-12)
    one_hot = torch.nn.functional.one_hot(species, 3).double()
    torch.testing.assert_close(m(A, one_hot), out, rtol=1e-12, atol=1e-12)
    assert m(A[0, :0], species[0, :0]).shape == (0, m.irreps_out.dim)
    same = ManyBodyProduct(sphere(2, 1), sphere(2, 1), 3, product=product).double()
    assert same(A).shape == out.shape and same(A[0, :0]).shape == (0, m.irreps_out.dim)


def test_per_element_weights_differ():
    m = randomise(ManyBodyProduct(sphere(2, 1), sphere(2, 1), 2, product="grid", num_elements=2).double())
    A = torch.randn(1, m.irreps_in.dim, dtype=torch.float64).expand(2, -1)
    out = m(A, torch.tensor([0, 1]))
    assert (out[0] - out[1]).abs().max() > 1e-3


# ----------------------------------------------------------------------------- errors and the switch
def test_bad_inputs_raise():
    m = ManyBodyProduct(sphere(2, 1), sphere(2, 1), 2, product="grid", num_elements=3)
    A = torch.randn(4, m.irreps_in.dim)
    with pytest.raises(ValueError, match="need species"):
        m(A)
    with pytest.raises(IndexError, match="species out of range"):
        m(A, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="species has shape"):
        m(A, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="A has shape"):
        m(A[:, :-1], torch.tensor([0, 1, 2, 0]))
    shared = ManyBodyProduct(sphere(2, 1), sphere(2, 1), 2, product="cg")
    with pytest.raises(ValueError, match="species given"):
        shared(A, torch.tensor([0, 1, 2, 0]))


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="mixes parities"):
        ManyBodyProduct("2x0e+2x1e", "2x0e", 2, product="grid")  # no silent fallback to CG
    with pytest.raises(ValueError, match="multiplicity"):
        ManyBodyProduct(sphere(2, 1), sphere(3, 1), 2, product="gaunt")
    with pytest.raises(ValueError, match="correlation"):
        ManyBodyProduct(sphere(2, 1), sphere(2, 1), 0, product="grid")
    with pytest.raises(ValueError, match="not reached"):
        ManyBodyProduct("2x0e+2x2e", "2x1o", 3, product="grid")  # even degrees only: f^k never has l = 1
    with pytest.raises(ValueError, match="not reached"):
        ManyBodyProduct("2x0e+2x2e", "2x1o", 3, product="cg", paths="gaunt")
    with pytest.raises(ValueError, match="sign"):
        ManyBodyProduct(sphere(2, 1), sphere(2, 1, -1), 4, product="grid")  # f^k is never pseudo
    with pytest.raises(ValueError, match="one non-zero multiplicity"):
        ManyBodyProduct("2x0e+3x1o", "2x0e", 2, product="cg")
    with pytest.raises(ValueError, match="unknown product"):
        ManyBodyProduct(sphere(2, 1), sphere(2, 1), 2, product="so2")


def test_auto_logs_its_choice(caplog):
    with caplog.at_level(logging.INFO, logger="gaunt.nn"):
        assert ManyBodyProduct(sphere(2, 1), sphere(2, 1), 2, product="auto").chosen == "grid"
        assert ManyBodyProduct("2x0e+2x1e", "2x0e+2x1e", 2, product="auto").chosen == "cg"
    assert "chose 'grid'" in caplog.text and "chose 'cg'" in caplog.text


@pytest.mark.slow  # ~15 s of compilation on 2 cores
@pytest.mark.parametrize("product", ["cg", "grid"])
def test_compile_matches_eager(product):
    m = randomise(ManyBodyProduct(sphere(2, 1), sphere(2, 1), 3, product=product, num_elements=2).double())
    A, species = torch.randn(5, m.irreps_in.dim, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    compiled = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(compiled(A, species), m(A, species), rtol=1e-12, atol=1e-12)


def test_reference_comparison_is_not_vacuous():
    """A wrong weight in the CG reference must be detected by the comparison above."""
    gaunt = randomise(GauntManyBody(sphere(2, 2), sphere(2, 2), 3).double())
    reference = gaunt.cg_reference()
    with torch.no_grad():
        reference.weights.weight[0, 0] += 0.1  # one path weight of the first chain step
    A = torch.randn(4, gaunt.irreps_in.dim, dtype=torch.float64)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(gaunt(A), reference(A), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- executors of the power program
@pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")
@pytest.mark.parametrize("method", ["grid", "fourier"])
def test_fused_executor_equals_torch_with_gradients(method):
    """GauntManyBody on the fused power kernel == on torch ops: output, gradients, and the forces-like double
    backward (create_graph, then backward to the weights)."""
    torch_ = randomise(GauntManyBody(sphere(4, 2), sphere(4, 1), 3, num_elements=2, method=method, executor="torch"))
    fused = GauntManyBody(sphere(4, 2), sphere(4, 1), 3, num_elements=2, method=method, executor="cpu_fused")
    fused.load_state_dict(torch_.state_dict())
    assert (torch_.executor, fused.executor) == ("torch", "cpu_fused") and "executor=cpu_fused" in repr(fused)
    assert GauntManyBody(sphere(2, 1), sphere(2, 1), 2).executor == "cpu_fused"  # "auto" on CPU
    A = torch.randn(7, torch_.irreps_in.dim, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    results = []
    for m in (torch_.double(), fused.double()):
        a = A.clone().requires_grad_()
        out = m(a, species)
        (forces,) = torch.autograd.grad(out.square().sum(), a, create_graph=True)
        forces.square().sum().backward()
        results.append([t.detach() for t in (out, forces, a.grad, m.weights.weight.grad)])
    for got, expected in zip(results[1], results[0]):
        assert expected.abs().max() > 1e-3
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10 * float(expected.abs().max()))


def test_named_executor_is_checked():
    with pytest.raises(ValueError, match="unknown executor 'torch_programs'"):  # no such runner for power programs
        GauntManyBody(sphere(2, 1), sphere(2, 1), 2, executor="torch_programs")
    assert GauntManyBody(sphere(2, 1), sphere(2, 1), 2, executor="torch").executor == "torch"


@pytest.mark.parametrize("executor", ["torch", "cpu_fused", "triton"])
@pytest.mark.parametrize("method", ["grid", "fourier"])
def test_equivariance_on_every_executor(executor, method, check_equivariant):
    """The power programs on each executor (the fused C++ and Triton kernels included): rotation, improper
    rotation and inversion, float64, 1e-12 of the output scale (``check_equivariant``)."""
    from gaunt.products.executors import EXECUTORS

    if EXECUTORS[executor].unavailable() is not None:
        pytest.skip(f"{executor}: {EXECUTORS[executor].unavailable()}")
    irreps_in, irreps_out = sphere(2, 2), sphere(2, 2)
    m = randomise(GauntManyBody(irreps_in, irreps_out, 3, num_elements=2, method=method, executor=executor).double())
    assert m.executor == executor
    species = torch.tensor([0, 1, 1])
    check_equivariant(
        lambda a: m(a, species), torch.randn(3, irreps_in.dim, dtype=torch.float64), irreps_in, irreps_out
    )
