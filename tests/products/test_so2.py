"""SO2Product (eSCN edge-frame product) == channel-wise CG product of x1 with Y(edge), float64 to 1e-10."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_equivariant
from e3nn import o3

from gaunt.products.cg import CGProduct
from gaunt.products.descriptor import dense_product
from gaunt.products.so2 import EdgeWigner, SO2Product, edge_frame
from gaunt.so3 import Irreps, spherical_harmonics, wigner_d

F64 = torch.float64
Y_AXIS = torch.tensor([0.0, 1.0, 0.0], dtype=F64)


def reachable_out(irreps_in1: str, lmax_edge: int) -> Irreps:
    """Every (mul1, ir_out) reachable from irreps_in1 x Y(edge), sorted and de-duplicated."""
    blocks = {
        (mul, ir_out)
        for mul, ir in Irreps(irreps_in1)
        for _, ir2 in Irreps.spherical_harmonics(lmax_edge)
        for ir_out in ir * ir2
    }
    return Irreps(sorted(blocks, key=lambda b: (b[1].l, b[1].p, b[0])))


def special_edges() -> torch.Tensor:
    """Edges on and near the poles +-y, on the chart boundary n_y = 0, and random ones (random lengths)."""
    g = torch.Generator().manual_seed(7)
    special = torch.tensor(
        [
            [0.0, 1.0, 0.0],
            [0.0, -1.0, 0.0],
            [0.0, 2.5, 0.0],
            [1e-9, 1.0, -2e-9],
            [3e-8, -1.0, 1e-12],
            [1e-13, -1.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.6, 0.0, -0.8],
            [0.3, 1e-15, 0.2],
            [0.3, -1e-15, 0.2],
        ],
        dtype=F64,
    )
    return torch.cat([special, 3 * torch.randn(6, 3, generator=g, dtype=F64)])


def e3nn_reference(product: SO2Product) -> torch.nn.Module:
    """e3nn's TensorProduct with the same uvu instructions (built in float64 so its CG are exact)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        return o3.TensorProduct(
            product.irreps_in1.to_e3nn(),
            product.irreps_edge.to_e3nn(),
            product.irreps_out.to_e3nn(),
            product.instructions,
            internal_weights=False,
            shared_weights=True,
        )
    finally:
        torch.set_default_dtype(old)


CONFIGS = [
    ("2x0e+3x1o+2x2e", 3),
    ("1x0e+2x1o+1x2e+1x3o+1x4e+1x5o+1x6e", 2),  # node L = 6, edge L = 2
    ("2x0e+1x1e+2x1o+1x2o", 6),  # node L = 2 (both parities), edge L = 6
    ("2x6o+1x4e+3x1e", 5),
]


@pytest.mark.parametrize("irreps_in1,lmax_edge", CONFIGS)
def test_matches_cg_product_and_dense_oracle(irreps_in1: str, lmax_edge: int) -> None:
    """Against CGProduct and the plain-einsum oracle on so3.clebsch_gordan (float64, L up to 6)."""
    torch.manual_seed(0)
    product = SO2Product(irreps_in1, reachable_out(irreps_in1, lmax_edge), lmax_edge, internal_weights=False)
    edges = special_edges()
    x1 = torch.randn(len(edges), product.irreps_in1.dim, dtype=F64)
    w = torch.randn(product.weight_numel, dtype=F64)
    out = product(x1, edges, w)
    y = spherical_harmonics(lmax_edge, edges, normalization="component")
    cg = CGProduct(
        product.irreps_in1, product.irreps_edge, product.irreps_out, product.instructions, internal_weights=False
    )
    torch.testing.assert_close(out, cg(x1, y, w), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        out, dense_product(product.descriptor(), x1, product.edge_harmonics(edges), w), rtol=1e-10, atol=1e-10
    )
    assert out.abs().max() > 0.1


@pytest.mark.parametrize(
    "irreps_in1,lmax_edge", [CONFIGS[0]] + [pytest.param(*c, marks=pytest.mark.slow) for c in CONFIGS[1:]]
)
def test_matches_e3nn(irreps_in1: str, lmax_edge: int) -> None:
    """Against e3nn's o3.TensorProduct with the same uvu instructions (the large ones are slow to build)."""
    torch.manual_seed(0)
    product = SO2Product(irreps_in1, reachable_out(irreps_in1, lmax_edge), lmax_edge, internal_weights=False)
    edges = special_edges()
    x1 = torch.randn(len(edges), product.irreps_in1.dim, dtype=F64)
    w = torch.randn(product.weight_numel, dtype=F64)
    y = spherical_harmonics(lmax_edge, edges, normalization="component")
    torch.testing.assert_close(product(x1, edges, w), e3nn_reference(product)(x1, y, w), rtol=1e-10, atol=1e-10)


def test_per_sample_and_internal_weights() -> None:
    torch.manual_seed(1)
    irreps_in1, lmax_edge = "2x0e+2x1o+1x2e", 2
    irreps_out = reachable_out(irreps_in1, lmax_edge)
    per_sample = SO2Product(irreps_in1, irreps_out, lmax_edge, shared_weights=False)
    edges = special_edges()
    x1 = torch.randn(len(edges), per_sample.irreps_in1.dim, dtype=F64)
    w = torch.randn(len(edges), per_sample.weight_numel, dtype=F64)
    cg = CGProduct(
        per_sample.irreps_in1, per_sample.irreps_edge, irreps_out, per_sample.instructions, shared_weights=False
    )
    y = spherical_harmonics(lmax_edge, edges, normalization="component")
    torch.testing.assert_close(per_sample(x1, edges, w), cg(x1, y, w), rtol=1e-10, atol=1e-10)

    internal = SO2Product(irreps_in1, irreps_out, lmax_edge).to(F64)
    assert internal.internal_weights and internal.weight.shape == (internal.weight_numel,)
    expected = dense_product(internal.descriptor(), x1, y, internal.weight)
    torch.testing.assert_close(internal(x1, edges), expected, rtol=1e-10, atol=1e-10)


def test_broken_kernel_is_detected() -> None:
    """Test-the-tester: flipping one SO(2) coefficient must break the equality with e3nn."""
    product = SO2Product("1x1o+1x2e", reachable_out("1x1o+1x2e", 2), 2, internal_weights=False)
    torch.manual_seed(2)
    edges = special_edges()
    x1 = torch.randn(len(edges), product.irreps_in1.dim, dtype=F64)
    w = torch.randn(product.weight_numel, dtype=F64)
    product.entry_value[3] *= -1
    y = spherical_harmonics(2, edges, normalization="component")
    with pytest.raises(AssertionError):
        torch.testing.assert_close(product(x1, edges, w), e3nn_reference(product)(x1, y, w), rtol=1e-10, atol=1e-10)


def test_edge_frame_takes_edges_to_y_and_wigner_blocks_are_exact() -> None:
    n = special_edges()
    n = n / n.norm(dim=-1, keepdim=True)
    r = edge_frame(n)
    torch.testing.assert_close(torch.einsum("...ij,...j->...i", r, n), Y_AXIS.expand_as(n), rtol=0, atol=1e-14)
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3, dtype=F64).expand_as(r), rtol=0, atol=1e-14)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(len(n), dtype=F64), rtol=0, atol=1e-14)
    blocks = EdgeWigner(6)(n)
    for l, block in enumerate(blocks):  # D_l(R_e) against the independent quadrature of so3.wigner_d
        torch.testing.assert_close(block, wigner_d(l, r), rtol=0, atol=1e-13)


def test_so2_map_is_block_diagonal_in_abs_m() -> None:
    product = SO2Product("2x1o+1x3e", reachable_out("2x1o+1x3e", 4), 4)

    def abs_m(index: torch.Tensor, irreps: Irreps) -> torch.Tensor:
        m = torch.empty(irreps.dim, dtype=torch.long)
        for (mul, ir), sl in zip(irreps, irreps.slices()):
            m[sl] = (torch.arange(ir.dim) - ir.l).abs().repeat(mul)
        return m[index]

    torch.testing.assert_close(
        abs_m(product.block_in, product.irreps_in1), abs_m(product.block_out, product.irreps_out)
    )
    assert product.block_in.numel() < product.irreps_in1.dim * product.irreps_out.dim / 4  # sparse, not dense


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_equivariance_including_inversion(dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    product = SO2Product("2x0e+2x1o+1x2e+1x3o", reachable_out("2x0e+2x1o+1x2e+1x3o", 3), 3, internal_weights=False)
    edges = special_edges().to(dtype)
    x1 = torch.randn(len(edges), product.irreps_in1.dim, dtype=dtype)
    w = torch.randn(product.weight_numel, dtype=dtype)
    worst = assert_equivariant(product, x1, edges, w)
    assert worst <= (1e-12 if dtype == F64 else 1e-5)


def test_equivariance_check_catches_a_wrong_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test-the-tester: an edge frame that ignores the edge direction is not equivariant."""
    torch.manual_seed(4)
    product = SO2Product("1x0e+1x1o+1x2e", reachable_out("1x0e+1x1o+1x2e", 2), 2, internal_weights=False)

    def identity_frame(n: torch.Tensor) -> list[torch.Tensor]:
        return [torch.eye(2 * l + 1, dtype=n.dtype).expand(*n.shape[:-1], -1, -1) for l in range(product.lmax_rot + 1)]

    monkeypatch.setattr(product.edge_wigner, "forward", identity_frame)
    edges = torch.randn(5, 3, dtype=F64)
    x1 = torch.randn(5, product.irreps_in1.dim, dtype=F64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(product, x1, edges, torch.randn(product.weight_numel, dtype=F64))


def test_gradients_at_the_poles_match_the_reference() -> None:
    """d/d(edge) is exact on the poles +-y and the chart boundary n_y = 0 (no NaN, no chart artefact)."""
    torch.manual_seed(5)
    product = SO2Product("1x0e+1x1o+1x2e", reachable_out("1x0e+1x1o+1x2e", 3), 3, internal_weights=False)
    edges = special_edges()
    x1 = torch.randn(len(edges), product.irreps_in1.dim, dtype=F64)
    w = torch.randn(product.weight_numel, dtype=F64)
    probe = torch.randn(len(edges), product.irreps_out.dim, dtype=F64)

    def grad(fn):
        e = edges.clone().requires_grad_(True)
        (fn(e) * probe).sum().backward()
        return e.grad

    got = grad(lambda e: product(x1, e, w))
    expected = grad(lambda e: dense_product(product.descriptor(), x1, product.edge_harmonics(e), w))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_bad_inputs_raise_clear_errors() -> None:
    product = SO2Product("1x0e+1x1o", reachable_out("1x0e+1x1o", 1), 1, internal_weights=False)
    x1 = torch.randn(2, product.irreps_in1.dim, dtype=F64)
    edges = torch.randn(2, 3, dtype=F64)
    w = torch.randn(product.weight_numel, dtype=F64)
    with pytest.raises(ValueError, match="edge_vectors must have shape"):
        product(x1, torch.randn(2, 4, dtype=F64), w)
    with pytest.raises(ValueError, match="edge_vectors must have shape"):
        product(x1, torch.tensor(1.0, dtype=F64), w)
    with pytest.raises(ValueError, match="x1 has shape"):
        product(torch.randn(2, 5, dtype=F64), edges, w)
    with pytest.raises(TypeError, match="dtype mismatch"):
        product(x1, edges.float(), w)
    with pytest.raises(ValueError, match="device mismatch"):
        product(x1, edges.to("meta"), w)
    with pytest.raises(ValueError, match="weight has shape"):
        product(x1, edges, w[:-1])
    with pytest.raises(ValueError, match="cannot be reached"):  # parity: 0e x Y_l -> l^(-1)^l only
        SO2Product("1x0e", "1x0o", 2)
    with pytest.raises(ValueError, match="cannot be reached"):  # multiplicity must match the input block
        SO2Product("2x0e", "3x1o", 1)
    with pytest.raises(ValueError, match="lmax_edge"):
        SO2Product("1x0e", "1x0e", -1)


def test_zero_length_edges() -> None:
    """Documented: zero-length edges raise with check_finite=True, and give NaN (no device sync) otherwise."""
    irreps_out = reachable_out("1x0e+1x1o", 1)
    edges = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    x1 = torch.randn(2, 4, dtype=F64)
    checked = SO2Product("1x0e+1x1o", irreps_out, 1, internal_weights=False, check_finite=True)
    w = torch.randn(checked.weight_numel, dtype=F64)
    with pytest.raises(ValueError, match="zero-length edge"):
        checked(x1, edges, w)
    with pytest.raises(ValueError, match="NaN or inf"):
        checked(x1, torch.full((2, 3), float("nan"), dtype=F64), w)
    unchecked = SO2Product("1x0e+1x1o", irreps_out, 1, internal_weights=False)
    out = unchecked(x1, edges, w)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()
