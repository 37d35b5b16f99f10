"""The registry is the one list of products: a product registered there (one module, one entry) is picked
up by the conformance suite, ``gaunt check``, ``gaunt bench`` and the layers with nothing else edited."""

from __future__ import annotations

import pytest
import torch
from conformance import CHECKS

from gaunt import checks
from gaunt.bench import products as bench_products
from gaunt.nn import EquivariantConvolution
from gaunt.products import PRODUCTS, GridGauntProduct, ProductSpec, make_product


class FinerGridGauntProduct(GridGauntProduct):
    """A new product for the test: the Gaunt function on the exact grid, with weights that start random."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, weight_init="randn", **kwargs)


@pytest.fixture
def registered(monkeypatch):
    spec = ProductSpec(
        "grid_test",
        FinerGridGauntProduct,
        "test product",
        "sphere",
        False,
        "factorised",
        "gaunt",
        bench_name="FinerGridGauntProduct",
    )
    monkeypatch.setitem(PRODUCTS, "grid_test", spec)
    return spec


def test_a_registered_product_passes_the_conformance_suite(registered, float64_default):
    for check in CHECKS.values():
        check(registered, "torch")


def test_a_registered_product_is_in_gaunt_check(registered):
    entries = dict(checks.all_entries(lmax=1))
    assert "grid_test" in entries and "EquivariantConvolution[grid_test]" in entries
    result = entries["grid_test"]()
    assert result.passed() and result.oracle is not None and result.oracle < 1e-12


def test_a_registered_product_is_in_gaunt_bench(registered):
    assert "FinerGridGauntProduct" in bench_products.benched_products()["feature"]
    product = bench_products.build_product("FinerGridGauntProduct", "feature", 1, 2)
    assert (
        isinstance(product, FinerGridGauntProduct) and bench_products.product_name(product) == "FinerGridGauntProduct"
    )


def test_a_registered_product_builds_layers(registered):
    assert make_product("grid_test", "2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o").chosen == "grid_test"
    conv = EquivariantConvolution("2x0e+2x1o", 1, "2x0e+2x1o", radial=4, product="grid_test")
    x, vectors = torch.randn(3, 8), torch.randn(4, 3)
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]])
    assert conv(x, edge_index, vectors, torch.randn(4, 4)).shape == (3, 8)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown product 'nope'"):
        make_product("nope", "0e", "0e", "0e")
    with pytest.raises(ValueError, match="unknown product"):
        EquivariantConvolution("2x0e", 1, "2x0e", radial=4, product="nope")
