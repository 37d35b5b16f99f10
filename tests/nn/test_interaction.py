"""Tests of ``gaunt.nn.interaction.FeatureInteraction`` and of the product switch ``products.registry.make_product``."""

from __future__ import annotations

import logging

import pytest
import torch

from gaunt.nn.interaction import FeatureInteraction
from gaunt.products import make_product
from gaunt.products.descriptor import dense_product
from gaunt.so3 import Irreps

torch.manual_seed(0)

IN = "3x0e+3x1o+3x2e"
OUT = "3x0e+3x1o+3x2e+3x3o"
PRODUCTS = ["gaunt", "grid", "vector", "cg"]


def sphere(mul: int, lmax: int, sign: int = 1) -> Irreps:
    return Irreps([(mul, (l, sign * (-1) ** l)) for l in range(lmax + 1)])


def layer(product: str, irreps_in=IN, irreps_out=OUT, **kw) -> FeatureInteraction:
    torch.manual_seed(1)
    m = FeatureInteraction(irreps_in, irreps_out, product=product, **kw).double()
    with torch.no_grad():  # random weights, so that no path hides behind a weight of one
        m.product.weight.normal_()
    return m


# ----------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("product", PRODUCTS)
def test_self_interaction_matches_descriptor_oracle(product, features):
    m = layer(product)
    x = features(IN, 5)
    expected = dense_product(m.descriptor(), x, x, m.path_weights())
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("product", ["gaunt", "grid"])
def test_high_degree_matches_oracle(product, features):
    irreps_in, irreps_out = sphere(2, 6), sphere(2, 6)
    m = layer(product, irreps_in, irreps_out)
    x = features(irreps_in, 3)
    expected = dense_product(m.descriptor(), x, x, m.path_weights())
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("irreps_in2", ["3x0e+3x1o", "1x0e+1x1o+1x2e"])
def test_two_features_match_oracle(product, irreps_in2, features):
    m = layer(product, irreps_in2=irreps_in2)
    if product == "cg":  # channel-wise: 'uuu' for equal multiplicities, 'uvu' for a broadcast second input
        assert {p.mode for p in m.descriptor().paths} == {"uvu" if irreps_in2.startswith("1x") else "uuu"}
    x, y = features(IN, 4, seed=1), features(irreps_in2, 4, seed=2)
    expected = dense_product(m.descriptor(), x, y, m.path_weights())
    torch.testing.assert_close(m(x, y), expected, rtol=1e-10, atol=1e-10)


def test_gaunt_and_grid_agree_and_cg_has_the_same_paths(features):
    gaunt, grid, cg = layer("gaunt"), layer("grid"), layer("cg")
    grid.load_state_dict(gaunt.state_dict())
    x = features(IN, 6)
    torch.testing.assert_close(gaunt(x), grid(x), rtol=1e-10, atol=1e-10)
    triples = lambda m: {
        (
            m.irreps_in[p.i_in1].ir.l,
            m.irreps_in2[p.i_in2].ir.l,  # noqa: E731
            m.irreps_out[p.i_out].ir.l,
        )
        for p in m.descriptor().paths
    }
    assert triples(cg) == triples(gaunt)  # sphere-function irreps: parity leaves exactly the Gaunt paths
    assert triples(layer("vector")) == triples(gaunt)  # outputs of one sign: no odd paths requested


def test_vector_product_adds_the_odd_paths(features):
    m = layer("vector", "2x1o", "2x1e")  # the cross product: x x x = 0, so use two features
    m2 = layer("vector", "2x1o", "2x1e", irreps_in2="2x1o")
    x, y = features("2x1o", 3, seed=1), features("2x1o", 3, seed=2)
    assert {p.coupling for p in m2.descriptor().paths} == {"odd_gaunt"}
    torch.testing.assert_close(m(x), torch.zeros_like(m(x)), atol=1e-12, rtol=0)  # antisymmetric: x x x = 0
    out = m2(x, y)
    assert out.abs().max() > 1e-3
    torch.testing.assert_close(out, dense_product(m2.descriptor(), x, y, m2.path_weights()), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- symmetry and autograd
@pytest.mark.parametrize("product", PRODUCTS)
def test_equivariance(product, features, check_equivariant):
    m = layer(product)
    check_equivariant(m, features(IN, 4), IN, OUT)


@pytest.mark.parametrize("product", ["gaunt", "cg"])
def test_equivariance_two_features_pseudo_sign(product, features, check_equivariant):
    irreps_in, irreps_in2, irreps_out = "2x0o+2x1e+2x2o", "2x0e+2x1o", "2x0o+2x1e+2x2o+2x3e"
    m = layer(product, irreps_in, irreps_out, irreps_in2=irreps_in2)
    both = Irreps(irreps_in) + Irreps(irreps_in2)
    d1 = Irreps(irreps_in).dim
    check_equivariant(lambda z: m(z[..., :d1], z[..., d1:]), features(both, 4), both, irreps_out)


def test_equivariance_float32(features, check_equivariant):
    m = layer("grid").float()
    check_equivariant(m, features(IN, 4, dtype=torch.float32), IN, OUT)


@pytest.mark.parametrize("product", PRODUCTS)
def test_gradcheck_and_gradgradcheck(product, features):
    m = layer(product, "1x0e+1x1o", "1x0e+1x1o+1x2e")
    x = features("1x0e+1x1o", 2).requires_grad_()
    assert torch.autograd.gradcheck(m, (x,))
    assert torch.autograd.gradgradcheck(m, (x,))
    m(x).pow(2).sum().backward()
    assert m.product.weight.grad is not None and m.product.weight.grad.abs().max() > 0


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("product", PRODUCTS)
def test_batch_dimensions_and_empty_batch(product, features):
    m = layer(product)
    x = features(IN, 2, 3)
    torch.testing.assert_close(m(x), m(x.reshape(6, -1)).reshape(2, 3, -1), rtol=1e-12, atol=1e-12)
    empty = m(features(IN, 0))
    assert empty.shape == (0, Irreps(OUT).dim)


# ----------------------------------------------------------------------------- errors and the switch
def test_bad_inputs_raise(features):
    m = layer("grid")
    with pytest.raises(ValueError, match="x has shape"):
        m(features("3x0e", 4))
    with pytest.raises(ValueError, match="self-interaction"):
        m(features(IN, 4), features(IN, 4))
    two = layer("grid", irreps_in2="3x0e+3x1o")
    with pytest.raises(ValueError, match="pass the second feature"):
        two(features(IN, 4))
    with pytest.raises(ValueError, match="y has shape"):
        two(features(IN, 4), features(IN, 4))


@pytest.mark.parametrize("product", ["gaunt", "grid", "vector"])
def test_gaunt_products_reject_non_sphere_irreps(product):
    with pytest.raises(ValueError, match=f"make_product\\('{product}'\\).*mixes parities"):
        FeatureInteraction("4x0e+4x1e", "4x0e", product=product)  # 1e is not (-1)^l: mixed parity signs
    with pytest.raises(ValueError, match="unequal multiplicities"):
        FeatureInteraction("8x0e+4x1o", "8x0e", product=product)  # never a silent fallback to CG
    # the same irreps are fine for the channel-wise CG product
    assert FeatureInteraction("4x0e+4x1e", "4x0e+4x1e", product="cg").chosen == "cg"


def test_unknown_or_edge_products_raise():
    with pytest.raises(ValueError, match="unknown product"):
        FeatureInteraction(IN, OUT, product="fft")
    for name in ("so2", "gaunt_z"):
        with pytest.raises(ValueError, match="edge vectors"):
            FeatureInteraction(IN, OUT, product=name)


def test_auto_logs_and_records_its_choice(caplog):
    with caplog.at_level(logging.INFO, logger="gaunt"):
        assert FeatureInteraction(IN, OUT, product="auto").chosen == "grid"
        assert FeatureInteraction("4x0e+4x1e", "4x0e+4x1e", product="auto").chosen == "cg"
    assert "chose 'grid'" in caplog.text and "chose 'cg'" in caplog.text


def test_make_product_switch():
    edge = Irreps.spherical_harmonics(2)
    for name in ("cg", "gaunt", "grid", "vector", "so2", "gaunt_z"):
        p = make_product(name, IN, edge, OUT)
        assert p.chosen == name
    with pytest.raises(ValueError, match="edge harmonics"):
        make_product("so2", IN, "2x0e+2x1o", OUT)
    with pytest.raises(ValueError, match="no channel-wise path reaches"):
        make_product("cg", "3x0e", "3x0e", "3x1o")
    full = make_product("cg", "2x0e+2x1o", "3x0e", "4x1o", connection="full")
    assert {p.mode for p in full.descriptor().paths} == {"uvw"}
    with pytest.raises(ValueError, match="unknown product"):
        make_product("nope", IN, IN, OUT)


@pytest.mark.slow  # ~15 s of compilation on 2 cores
def test_compile_matches_eager(features):
    m = layer("grid", "2x0e+2x1o", "2x0e+2x1o+2x2e")
    x = features("2x0e+2x1o", 5)
    compiled = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(compiled(x), m(x), rtol=1e-12, atol=1e-12)
