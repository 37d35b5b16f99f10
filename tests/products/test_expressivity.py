"""Tests of the interactability / expressivity measures (kept to L <= 2 for speed)."""

from __future__ import annotations

import pytest
import torch

from gaunt.products import expressivity as ex
from gaunt.products.descriptor import dense_product
from gaunt.so3 import Irrep

F64 = torch.float64


def odd_couplings(lmax: int) -> frozenset:
    allowed = ex.allowed_couplings(ex.sh_irreps(lmax), ex.sh_irreps(lmax), ex.full_output_irreps(lmax))
    return frozenset(c for c in allowed if (c.ir1.l + c.ir2.l + c.ir_out.l) % 2)


def product_or_skip(name: str, lmax: int):
    if name not in ex.available_products([name]):
        pytest.skip(f"{name} not available")
    return ex.build_product(name, lmax)


def test_reference_space_counts_against_e3nn():
    o3 = pytest.importorskip("e3nn.o3")
    assert len(ex.allowed_couplings("0e+1o", "0e+1o", "0e+1o+1e")) == 5
    for lmax, mul in [(1, 1), (2, 1), (3, 1), (2, 2)]:
        in1, out = ex.sh_irreps(lmax, mul), ex.full_output_irreps(lmax, mul)
        # e3nn's fully connected product has one weight per (u, v, w) of every allowed path
        tp = o3.FullyConnectedTensorProduct(in1.to_e3nn(), in1.to_e3nn(), out.to_e3nn())
        assert ex.equivariant_dimension(in1, in1, out) == tp.weight_numel
    dims = [ex.equivariant_dimension(ex.sh_irreps(L), ex.sh_irreps(L), ex.full_output_irreps(L)) for L in (1, 2)]
    assert dims == [5, 15]


def test_bilinear_tensor_matches_descriptor_oracle():
    product = product_or_skip("cg", 2)
    w = torch.randn(product.weight_numel, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = ex.bilinear_tensor(product, w)
    d1, d2 = product.irreps_in1.dim, product.irreps_in2.dim
    x1 = torch.eye(d1, dtype=F64)[:, None, :].expand(d1, d2, d1)
    x2 = torch.eye(d2, dtype=F64)[None].expand(d1, d2, d2)
    torch.testing.assert_close(t, dense_product(product.descriptor(), x1, x2, w), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("lmax", [1, 2])
def test_cg_is_full(lmax):
    product = product_or_skip("cg", lmax)
    row = ex.measure(product, "cg", lmax)
    assert row.reachable == row.total and row.missing == ()
    assert row.rank == row.full_dimension == row.weight_dimension


@pytest.mark.parametrize("name", ["grid", "gaunt"])
@pytest.mark.parametrize("lmax", [1, 2])
def test_gaunt_misses_exactly_the_odd_paths(name, lmax):
    product = product_or_skip(name, lmax)
    row = ex.measure(product, name, lmax)
    assert frozenset(row.missing) == odd_couplings(lmax)
    assert row.rank == row.full_dimension - len(odd_couplings(lmax))
    assert row.weight_dimension == 3 * lmax + 1  # w1 w2 w3 per degree, minus the two rescalings
    if lmax == 1:
        assert row.missing == (ex.Coupling(Irrep("1o"), Irrep("1o"), Irrep("1e")),)


@pytest.mark.parametrize("lmax", [1, 2])
def test_parity_complete_product_recovers_all_paths(lmax):
    product = product_or_skip("vector", lmax)
    row = ex.measure(product, "vector", lmax)
    assert row.missing == () and row.reachable == row.total
    assert row.rank == row.full_dimension
    assert row.weight_dimension == 4 * lmax + 1  # 2 (L+1) input + (2L+1) output weights, minus 2


def test_edge_product_is_measured_through_its_harmonics():
    product = product_or_skip("so2", 2)
    reached = ex.reachable_paths(product)
    assert reached == ex.allowed_couplings(ex.sh_irreps(2), ex.sh_irreps(2), ex.full_output_irreps(2))
    assert ex.bilinear_rank(product) == 15


def test_internal_weights_are_probed_without_being_changed():
    vector = pytest.importorskip("gaunt.products.vector")
    product = vector.VectorGauntProduct(ex.sh_irreps(1), ex.sh_irreps(1), ex.full_output_irreps(1))
    before = product.weight.detach().clone()
    assert ex.bilinear_rank(product) == 5
    assert ex.weight_dimension(product) == 5
    torch.testing.assert_close(product.weight.detach(), before, atol=0, rtol=0)


def test_the_tester_one_path_forced_to_zero_lowers_rank():
    cg = pytest.importorskip("gaunt.products.cg")

    class Crippled(cg.CGProduct):
        """The full CG product with the weight of path ``1o x 1o -> 1e`` forced to zero."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            mask = torch.ones(self.weight_numel, dtype=F64)
            d = self.descriptor()
            for path, sl in zip(d.paths, d.weight_slices()):
                if tuple(str(m.ir) for m in d.irreps(path)) == ("1o", "1o", "1e"):
                    mask[sl] = 0.0
            assert mask.sum() == self.weight_numel - 1
            self.register_buffer("mask", mask, persistent=False)

        def _forward(self, x1, x2, weight):
            return super()._forward(x1, x2, weight * self.mask.to(weight.dtype))

    lmax = 2
    full = cg.CGProduct(ex.sh_irreps(lmax), ex.sh_irreps(lmax), ex.full_output_irreps(lmax), internal_weights=False)
    crippled = Crippled(ex.sh_irreps(lmax), ex.sh_irreps(lmax), ex.full_output_irreps(lmax), internal_weights=False)
    assert ex.bilinear_rank(full) == 15
    assert ex.bilinear_rank(crippled) == 14
    lost = ex.reachable_paths(full) - ex.reachable_paths(crippled)
    assert lost == {ex.Coupling(Irrep("1o"), Irrep("1o"), Irrep("1e"))}


def test_table_and_entry_point(capsys):
    names = [n for n in ("cg", "grid", "vector") if n in ex.available_products()]
    if not names:
        pytest.skip("no product available")
    rows = ex.expressivity_table(L_values=(1,), products=names)
    assert [r.product for r in rows] == names and all(r.L == 1 for r in rows)
    text = ex.format_table(rows)
    assert text.splitlines()[0].split()[:2] == ["product", "L"]
    for r in rows:
        assert f"{r.rank} / {r.full_dimension}" in text
    if "grid" in names:
        assert "grid at L=1 misses: 1o x 1o -> 1e" in text
    ex.main(["--L", "1", "--products", names[0]])
    out = capsys.readouterr().out
    assert names[0] in out and "expressivity" in out
