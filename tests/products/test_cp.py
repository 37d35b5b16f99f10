"""CPProduct: low-rank CP approximation of the CG product; exact at full rank, measurable error below."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_equivariant, random_inputs

from gaunt.products.cg import CGProduct
from gaunt.products.cp import CPProduct, cp_decomposition, cp_rank_sweep, exact_rank
from gaunt.products.descriptor import dense_product
from gaunt.so3 import clebsch_gordan

F64 = torch.float64
FULL = 10_000  # above every exact rank used here

FULLY_CONNECTED = [
    ("2x0e+3x1o+2x2e", "1x0e+2x1o+1x2e", "2x0e+2x1o+3x1e+1x2e+2x2o+1x3o"),
    ("1x0e+1x3o+1x6e", "1x2e+1x4e", "1x1o+1x3o+1x4e+1x6e+2x5o"),  # L up to 6
]


@pytest.mark.parametrize("irreps_in1,irreps_in2,irreps_out", FULLY_CONNECTED)
def test_full_rank_equals_cg_product(irreps_in1: str, irreps_in2: str, irreps_out: str) -> None:
    product = CPProduct(irreps_in1, irreps_in2, irreps_out, FULL, internal_weights=False)
    cg = CGProduct(irreps_in1, irreps_in2, irreps_out, internal_weights=False)
    x1, x2, w = random_inputs(product, batch=(6,), seed=1)
    out = product(x1, x2, w)
    torch.testing.assert_close(out, cg(x1, x2, w), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, dense_product(product.descriptor(), x1, x2, w), rtol=1e-10, atol=1e-10)
    assert product.decomposition_error < 1e-13 and out.abs().max() > 0.1
    assert product.full_rank == max(product.path_ranks)  # at full rank every path uses its exact decomposition


def test_full_rank_matches_e3nn_fully_connected() -> None:
    from e3nn import o3

    irreps_in1, irreps_in2, irreps_out = FULLY_CONNECTED[0]
    product = CPProduct(irreps_in1, irreps_in2, irreps_out, FULL, internal_weights=False)
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        reference = o3.FullyConnectedTensorProduct(irreps_in1, irreps_in2, irreps_out, internal_weights=False)
    finally:
        torch.set_default_dtype(old)
    x1, x2, w = random_inputs(product, batch=(5,), seed=2)
    torch.testing.assert_close(product(x1, x2, w), reference(x1, x2, w), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shared", [True, False])
def test_full_rank_every_mode_and_channelwise(shared: bool) -> None:
    irreps_in1, irreps_in2, irreps_out = "2x1o+2x2e", "2x1o+1x0e", "2x1e+2x2e+1x1o+2x2o+2x1o"
    instructions = [
        (0, 0, 0, "uvu", True),
        (1, 0, 3, "uvv", True),
        (0, 0, 1, "uuw", True),
        (1, 0, 4, "uuu", True),
        (0, 1, 2, "uvw", True),
        (1, 1, 1, "uvu", False),
        (0, 0, 0, "uuu", False, 0.5),
    ]
    product = CPProduct(
        irreps_in1, irreps_in2, irreps_out, FULL, instructions, shared_weights=shared, internal_weights=False
    )
    cg = CGProduct(irreps_in1, irreps_in2, irreps_out, instructions, shared_weights=shared, internal_weights=False)
    x1, x2, w = random_inputs(product, batch=(4,), seed=3)
    torch.testing.assert_close(product(x1, x2, w), cg(x1, x2, w), rtol=1e-10, atol=1e-10)

    channelwise = CPProduct.channelwise("2x0e+2x1o+1x2e", "1x0e+1x1o+1x2e", FULL, internal_weights=False)
    reference = CGProduct.channelwise("2x0e+2x1o+1x2e", "1x0e+1x1o+1x2e", internal_weights=False)
    assert channelwise.irreps_out == reference.irreps_out
    x1, x2, w = random_inputs(channelwise, batch=(4,), seed=4)
    torch.testing.assert_close(channelwise(x1, x2, w), reference(x1, x2, w), rtol=1e-10, atol=1e-10)


def test_error_decreases_with_rank_and_equivariance_error_is_measured() -> None:
    irreps = ("1x0e+1x1o+1x2e", "1x0e+1x1o+1x2e", "1x0e+1x1o+1x1e+1x2e")
    full = CPProduct(*irreps, FULL).full_rank
    rows = cp_rank_sweep(*irreps, ranks=[1, 2, 3, 5, 8, 12, full], n_samples=8)
    errors = [row[1] for row in rows]
    for low, high in zip(errors, errors[1:]):
        assert high <= low + 1e-12, f"decomposition error increased with rank: {errors}"
    assert errors[0] > 0.3 and errors[-1] < 1e-13
    # test-the-tester: a low rank is visibly not equivariant; full rank is, to rounding
    assert rows[0][2] > 1e-2 and rows[1][2] > 1e-2
    assert rows[-1][2] < 1e-12


def test_low_rank_fails_the_shared_equivariance_check() -> None:
    product = CPProduct("1x1o+1x2e", "1x1o+1x2e", "1x1e+1x2e", 2, internal_weights=False)
    x1, x2, w = random_inputs(product, batch=(3,), seed=5)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(product, x1, x2, w)
    exact = CPProduct("1x1o+1x2e", "1x1o+1x2e", "1x1e+1x2e", FULL, internal_weights=False)
    assert assert_equivariant(exact, x1, x2, w) <= 1e-12


def test_cp_decomposition_recovers_a_low_rank_tensor_and_is_deterministic() -> None:
    g = torch.Generator().manual_seed(6)
    a, b, c = (torch.randn(d, 2, generator=g, dtype=F64) for d in (4, 5, 6))
    tensor = torch.einsum("ir,jr,kr->ijk", a, b, c)
    fa, fb, fc, error = cp_decomposition(tensor, 2)
    assert error < 1e-8
    torch.testing.assert_close(torch.einsum("ir,jr,kr->ijk", fa, fb, fc), tensor, rtol=0, atol=1e-7)
    again = cp_decomposition(tensor, 2)
    torch.testing.assert_close(again[0], fa, rtol=0, atol=0)
    # the exact slice-SVD rank of C(1,1,0) (a scaled identity) is 3; of the cross product C(1,1,1), 6
    assert exact_rank(clebsch_gordan(1, 1, 0)) == 3 and exact_rank(clebsch_gordan(1, 1, 1)) == 6
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        cp_decomposition(tensor, 0)


def test_gradcheck_and_gradgradcheck() -> None:
    product = CPProduct("1x0e+2x1o", "1x1o+1x2e", "1x1e+2x1o+1x2o", 3, internal_weights=False)
    x1, x2, w = random_inputs(product, batch=(2,), seed=7)
    inputs = tuple(t.requires_grad_(True) for t in (x1, x2, w))
    assert torch.autograd.gradcheck(product, inputs)
    assert torch.autograd.gradgradcheck(product, inputs)


def test_batch_dims_broadcasting_empty_batch_and_per_sample_weights() -> None:
    product = CPProduct("2x0e+1x1o", "1x1o", "2x1o+1x0e+1x1e", 2, internal_weights=False)
    x1, x2, w = random_inputs(product, batch=(2, 3), seed=8)
    out = product(x1, x2, w)
    assert out.shape == (2, 3, product.irreps_out.dim)
    torch.testing.assert_close(
        out.reshape(6, -1), product(x1.reshape(6, -1), x2.reshape(6, -1), w), rtol=1e-12, atol=1e-12
    )
    out = product(x1[0], x2[:, :1], w)  # [3, d1] with [2, 1, d2]
    assert out.shape == (2, 3, product.irreps_out.dim)
    torch.testing.assert_close(out[1, 2], product(x1[0, 2], x2[1, 0], w), rtol=1e-12, atol=1e-12)
    empty = product(x1[:0, 0], x2[:0, 0], w)
    assert empty.shape == (0, product.irreps_out.dim)

    per_sample = CPProduct("2x0e+1x1o", "1x1o", "2x1o+1x0e+1x1e", 2, shared_weights=False)
    ws = torch.randn(2, 3, product.weight_numel, dtype=F64)
    out = per_sample(x1, x2, ws)
    expected = torch.stack([product(x1[1, k], x2[1, k], ws[1, k]) for k in range(3)])
    torch.testing.assert_close(out[1], expected, rtol=1e-12, atol=1e-12)


def test_internal_weights_and_float32() -> None:
    product = CPProduct("2x0e+1x1o", "1x1o", "2x1o+1x0e", 3)
    assert product.internal_weights and product.weight.shape == (product.weight_numel,)
    x1, x2, _ = random_inputs(product, batch=(4,), seed=9)
    expected = product(x1, x2).detach()
    got = product(x1.float(), x2.float()).detach()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    assert 0.0 <= product.equivariance_error(4) < 10.0


def test_bad_inputs_raise_clear_errors() -> None:
    for rank in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="rank must be a positive integer"):
            CPProduct("1x1o", "1x1o", "1x0e", rank)
    with pytest.raises(ValueError, match="violates"):
        CPProduct("1x1o", "1x1o", "1x0o", 2, instructions=[(0, 0, 0, "uvw", True)])
    product = CPProduct("1x1o", "1x1o", "1x0e+1x1e", 2, internal_weights=False, check_finite=True)
    x1, x2, w = random_inputs(product, batch=(2,), seed=10)
    with pytest.raises(ValueError, match="x1 has shape"):
        product(x1[..., :2], x2, w)
    with pytest.raises(TypeError, match="dtype mismatch"):
        product(x1, x2.float(), w)
    with pytest.raises(ValueError, match="NaN or inf"):
        product(x1, torch.full_like(x2, float("nan")), w)
    with pytest.raises(ValueError, match="weight has shape"):
        product(x1, x2, w[:-1])


def test_torch_compile_matches_eager() -> None:
    product = CPProduct("1x0e+1x1o", "1x1o", "1x1o+1x1e", 2, internal_weights=False)
    x1, x2, w = random_inputs(product, batch=(5,), seed=11)
    compiled = torch.compile(product, fullgraph=True)
    torch.testing.assert_close(compiled(x1, x2, w), product(x1, x2, w), rtol=1e-12, atol=1e-12)
