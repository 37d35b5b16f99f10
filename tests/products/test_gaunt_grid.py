"""GridGauntProduct (exact spherical quadrature): the same function as GauntProduct, the Gaunt einsum
and the descriptor oracle; equivariance, gradients, batching, errors, torch.compile and float32."""
from __future__ import annotations

import pytest
import torch
from conftest import assert_blocked_matches_unblocked, assert_equivariant, assert_matches_descriptor, random_inputs
from test_gaunt_fourier import CASES, gaunt_reference, spherical

from gaunt.products.gaunt_fourier import GauntProduct
from gaunt.products.gaunt_grid import GridGauntProduct
from gaunt.so3 import grid_shape

F64 = torch.float64


def make(irreps, weights="per_sample", cls=GridGauntProduct, **kwargs):
    if weights == "internal":
        return cls(*irreps, **kwargs)
    return cls(*irreps, internal_weights=False, shared_weights=weights == "shared", **kwargs)


@pytest.mark.parametrize("irreps", CASES)
def test_matches_fourier_product_and_gaunt_einsum(irreps):
    grid, fourier = make(irreps), make(irreps, cls=GauntProduct)
    x1, x2, w = random_inputs(grid, (5,), F64, seed=1)
    out = grid(x1, x2, w)
    torch.testing.assert_close(out, fourier(x1, x2, w), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, gaunt_reference(*irreps, x1, x2, w), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("irreps", CASES[1:])
def test_matches_descriptor(irreps):
    tp = make(irreps, "shared")
    x1, x2, w = random_inputs(tp, (4,), F64, seed=2)
    assert_matches_descriptor(tp, x1, x2, w)
    assert tp.descriptor() == make(irreps, "shared", cls=GauntProduct).descriptor()


def test_grid_is_the_smallest_exact_one():
    tp = make(CASES[1])  # L1, L2, L3 = 2, 5, 4: degree 11
    assert (tp.n_theta, tp.n_phi) == grid_shape(11) == (6, 12)


def test_broken_quadrature_is_detected():
    """A grid one degree too coarse in phi breaks exactness: the comparison must notice."""
    irreps = CASES[1]
    tp = make(irreps)
    x1, x2, w = random_inputs(tp, (5,), F64, seed=1)
    phi_out = tp._phi_out.clone()
    tp._phi_out[:, -1] = 0.0  # drop one azimuth from the integration
    with pytest.raises(AssertionError):
        torch.testing.assert_close(tp(x1, x2, w), gaunt_reference(*irreps, x1, x2, w), rtol=1e-10, atol=1e-10)
    tp._phi_out.copy_(phi_out)
    torch.testing.assert_close(tp(x1, x2, w), gaunt_reference(*irreps, x1, x2, w), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("irreps", [CASES[0], CASES[2], CASES[4], CASES[5]])
def test_equivariance(irreps, dtype):
    tp = make(irreps, "internal", weight_init="randn")
    x1, x2, w = random_inputs(tp, (3,), dtype, seed=5)
    assert_equivariant(tp, x1, x2, w)


def test_equivariance_check_is_not_vacuous():
    tp = make(CASES[2], "internal", weight_init="randn")
    x1, x2, w = random_inputs(tp, (3,), F64, seed=5)
    with pytest.raises(AssertionError, match="inversion|improper"):
        assert_equivariant(tp, x1, x2, w, irreps_out=spherical(3, range(6), -1))


def test_gradcheck_and_gradgradcheck():
    tp = make(("2x0e+2x1o+2x2e", "0e+1o", "2x0e+2x1o+2x2e+2x3o"))
    x1, x2, w = random_inputs(tp, (1,), F64, seed=6)
    inputs = tuple(t.requires_grad_() for t in (x1, x2, w))
    assert torch.autograd.gradcheck(tp, inputs)
    assert torch.autograd.gradgradcheck(tp, inputs)


def test_batch_dims_broadcasting_and_empty():
    irreps = CASES[2]
    tp = make(irreps)
    x1, x2, w = random_inputs(tp, (2, 3), F64, seed=7)
    out = tp(x1, x2, w)
    assert out.shape == (2, 3, tp.irreps_out.dim) and out.is_contiguous()
    flat = tp(x1.reshape(6, -1), x2.reshape(6, -1), w.reshape(6, -1))
    torch.testing.assert_close(out, flat.reshape(2, 3, -1), rtol=1e-12, atol=1e-12)
    out = tp(x1[:, :1], x2[0], w)
    expected = gaunt_reference(*irreps, x1[:, :1].expand(2, 3, -1), x2[0].expand(2, 3, -1), w)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    assert tp(x1[:0, 0], x2[:0, 0], w[:0, 0]).shape == (0, tp.irreps_out.dim)



@pytest.mark.parametrize("weights", ["per_sample", "shared"])
def test_blocked_execution_matches_unblocked(weights):
    """Large batches run in cache-sized blocks (chunk_elements); blocks of 2 samples, uneven last one."""
    tp = make(CASES[2], weights)
    x1, x2, w = random_inputs(tp, (7,), F64, seed=10)
    assert_blocked_matches_unblocked(tp, (x1, x2, w), gaunt_reference(*CASES[2], x1, x2, w))

@pytest.mark.parametrize(
    "irreps, match",
    [
        (("2x0e+2x1o", "2x0e+2x1o", "2x0o+2x1e"), "cannot be produced"),
        (("2x0e+3x1o", "0e", "2x0e"), "unequal multiplicities"),
        (("2x0e+2x1o+2x1o", "0e", "2x0e"), "repeats degree"),
        (("3x0e", "2x0e", "3x0e"), "mul2 must equal mul1 or be 1"),
    ],
)
def test_bad_irreps(irreps, match):
    with pytest.raises(ValueError, match=match):
        GridGauntProduct(*irreps)


def test_bad_inputs():
    tp = make(("2x0e+2x1o", "0e+1o", "2x0e+2x1o"), "internal", check_finite=True)
    x1, x2, _ = random_inputs(tp, (3,), torch.float32)
    with pytest.raises(ValueError, match="last dimension"):
        tp(x1, x2[:, :-1])
    with pytest.raises(ValueError, match="NaN"):
        tp(torch.full_like(x1, float("inf")), x2)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_fullgraph_matches_eager(backend):
    tp = make(("2x0e+2x1o+2x2e", "0e+1o", "2x0e+2x1o+2x2e"), "internal", weight_init="randn")
    x1, x2, _ = random_inputs(tp, (4,), torch.float32, seed=8)
    compiled = torch.compile(tp, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(x1, x2), tp(x1, x2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("irreps", [CASES[0], CASES[2]])
def test_float32_accuracy(irreps):
    tp = make(irreps)
    x1, x2, w = random_inputs(tp, (8,), F64, seed=9)
    exact = tp(x1, x2, w)
    error = float((tp(x1.float(), x2.float(), w.float()).double() - exact).abs().max() / exact.abs().max())
    assert error <= 1e-5, error
