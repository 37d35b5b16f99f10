"""Every product equals the e3nn TensorProduct built from its descriptor (e3nn as independent oracle)."""

import pytest
import torch

from gaunt.products.cg import CGProduct
from gaunt.products.e3nn_interop import coupling_ratio, to_e3nn
from gaunt.products.gaunt_fourier import GauntProduct
from gaunt.products.gaunt_grid import GridGauntProduct
from gaunt.so3 import Irreps

SH = Irreps.spherical_harmonics


def _cases():
    yield "cg", CGProduct("2x0e+1x1o+2x2e", "0e+1o+1e", "1x0e+2x1o+1x1e+2x2e")
    for cls in (GauntProduct, GridGauntProduct):
        yield cls.__name__, cls("3x0e+3x1o+3x2e+3x3o", "3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e+3x3o+3x4e")
        yield cls.__name__ + "-edge", cls("2x0e+2x1o+2x2e", SH(2), "2x0e+2x1o+2x2e+2x3o")


@pytest.mark.parametrize("name,product", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_product_equals_e3nn(name, product):
    torch.manual_seed(0)
    product = product.double()
    x1 = torch.randn(5, product.irreps_in1.dim, dtype=torch.float64)
    x2 = torch.randn(5, product.irreps_in2.dim, dtype=torch.float64)
    if product.internal_weights:
        with torch.no_grad():
            product.weight.normal_()
    tp, scale = to_e3nn(product.descriptor())
    tp = tp.double()
    ours = product(x1, x2)
    ref = tp(x1, x2, scale * product.path_weights())
    assert ours.abs().max() > 1e-3  # not vacuous
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-10)


def test_ratio_of_gaunt_and_rejects_non_invariant():
    assert abs(coupling_ratio("cg", 2, 3, 4) - 1.0) < 1e-14
    from gaunt.products.descriptor import COUPLINGS

    COUPLINGS["_broken"] = lambda l1, l2, l3, dtype, device: torch.ones(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1, dtype=dtype)
    try:
        with pytest.raises(ValueError, match="not proportional"):
            coupling_ratio("_broken", 1, 1, 1)
    finally:
        del COUPLINGS["_broken"]
