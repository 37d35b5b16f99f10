"""What is specific to the Gaunt products (GauntProduct with both transforms, GridGauntProduct): the same
function as an independent Gaunt einsum (``so3.gaunt_coefficients``) and as the CG product on the Gaunt paths,
the grids and folds, weights and errors. Equivariance, gradients, batching, blocks, compile and float32 are
the conformance suite's (``test_conformance.py``)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_inputs

from gaunt.products.cg import CGProduct
from gaunt.products.gaunt_fourier import TRANSFORMS, GauntProduct
from gaunt.products.gaunt_grid import GridGauntProduct
from gaunt.so3 import Irreps, clebsch_gordan, gaunt_coefficients, grid_shape

F64 = torch.float64


def spherical(mul: int, degrees, sign: int = 1) -> str:
    """``mul x l`` blocks with parity sign (-1)^l, e.g. spherical(3, range(3)) = '3x0e+3x1o+3x2e'."""
    return "+".join(f"{mul}x{l}{'e' if sign * (-1) ** l == 1 else 'o'}" for l in degrees)


# (irreps_in1, irreps_in2, irreps_out): L up to 6, L1 != L2 != L3, mul 1 and 3, x2 broadcast (mul 1),
# pseudo inputs (sign -1), missing degrees
CASES = [
    (spherical(3, range(7)), spherical(3, range(7)), spherical(3, range(7))),
    (spherical(1, range(3)), spherical(1, range(6)), spherical(1, range(5))),
    (spherical(3, range(4)), spherical(1, range(7)), spherical(3, range(6))),
    (spherical(3, range(6)), spherical(1, range(2)), spherical(3, range(3))),
    (spherical(3, [1, 3], -1), spherical(3, [0, 2]), spherical(3, [1, 2, 5], -1)),  # degree 2 unreached: zero
    (spherical(2, range(2)), spherical(2, range(2)), spherical(2, range(6))),  # L3 > L1 + L2: degrees 3..5 zero
    (spherical(2, range(2), -1), spherical(1, range(3), -1), spherical(2, range(4))),
]


def gaunt_reference(irreps1, irreps2, irreps_out, x1, x2, weight) -> torch.Tensor:
    """z[u, l3] = w3[u, l3] sum_{l1 l2} w1[u, l1] w2[u, l2] G[l1, l2, l3] x1[u, l1] x2[u|0, l2], by einsum."""
    irreps1, irreps2, irreps_out = Irreps(irreps1), Irreps(irreps2), Irreps(irreps_out)
    mul = irreps1[0].mul
    sizes = [mul * (irreps.lmax + 1) for irreps in (irreps1, irreps2, irreps_out)]
    w1, w2, w3 = (w.unflatten(-1, (mul, -1)) for w in weight.split(sizes, dim=-1))
    batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], weight.shape[:-1])
    blocks = []
    for (m3, ir3), s3 in zip(irreps_out, irreps_out.slices()):
        acc = x1.new_zeros(*batch, m3, ir3.dim)
        for (m1, ir1), s1 in zip(irreps1, irreps1.slices()):
            for (m2, ir2), s2 in zip(irreps2, irreps2.slices()):
                if (ir1.l + ir2.l + ir3.l) % 2 or not abs(ir1.l - ir2.l) <= ir3.l <= ir1.l + ir2.l:
                    continue
                a = x1[..., s1].unflatten(-1, (m1, ir1.dim)) * w1[..., ir1.l, None]
                b = x2[..., s2].unflatten(-1, (m2, ir2.dim)) * w2[..., ir2.l, None]
                acc = acc + torch.einsum("...ui,...uj,ijk->...uk", a, b, gaunt_coefficients(ir1.l, ir2.l, ir3.l))
        blocks.append((acc * w3[..., ir3.l, None]).flatten(-2))
    return torch.cat(blocks, dim=-1)


#: the three executions of the Gaunt function: (class, options)
VARIANTS = [(GauntProduct, {"transform": "dft"}), (GauntProduct, {"transform": "fft"}), (GridGauntProduct, {})]
IDS = ["dft", "fft", "grid"]


def make(irreps, weights="per_sample", cls=GauntProduct, **kwargs):
    if weights == "internal":
        return cls(*irreps, **kwargs)
    return cls(*irreps, internal_weights=False, shared_weights=weights == "shared", **kwargs)


@pytest.mark.parametrize("cls,options", VARIANTS, ids=IDS)
@pytest.mark.parametrize("irreps", CASES)
def test_matches_gaunt_einsum(irreps, cls, options):
    tp = make(irreps, cls=cls, **options)
    x1, x2, w = random_inputs(tp, (5,), F64, seed=1)
    torch.testing.assert_close(tp(x1, x2, w), gaunt_reference(*irreps, x1, x2, w), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("irreps", CASES)
def test_descriptor_lists_the_gaunt_paths(irreps):
    d = make(irreps).descriptor()
    assert d == make(irreps, cls=GridGauntProduct).descriptor()
    assert all(p.coupling == "gaunt" and p.coefficient == 1.0 for p in d.paths)
    assert all(p.mode == ("uuu" if d.irreps_in2[0].mul == d.irreps_in1[0].mul else "uvu") for p in d.paths)
    assert all((ir1.l + ir2.l + ir3.l) % 2 == 0 for (_, ir1), (_, ir2), (_, ir3) in map(d.irreps, d.paths))


@pytest.mark.parametrize("irreps", CASES)
def test_matches_cg_product(irreps):
    """CGProduct on the Gaunt paths with weights w1 w2 w3 * (Gaunt / CG ratio) / its own normalisation."""
    tp = make(irreps)
    x1, x2, w = random_inputs(tp, (3,), F64, seed=3)
    d = tp.descriptor()
    cg = CGProduct(
        *irreps,
        [(p.i_in1, p.i_in2, p.i_out, p.mode, True) for p in d.paths],
        internal_weights=False,
        shared_weights=False,
    )
    scale = []
    for p, q in zip(d.paths, cg.descriptor().paths):
        ls = [ir.l for _, ir in d.irreps(p)]
        ratio = float((gaunt_coefficients(*ls) * clebsch_gordan(*ls)).sum())  # C has unit norm: G = ratio C
        scale += [ratio / q.coefficient] * d.path_weight_numel(p)
    w_cg = tp.path_weights(w) * torch.tensor(scale, dtype=F64)
    torch.testing.assert_close(tp(x1, x2, w), cg(x1, x2, w_cg), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_broken_reference_is_detected(transform):
    """The comparisons above are not vacuous: changing one output-degree weight must be caught."""
    irreps = CASES[2]
    tp = make(irreps, transform=transform)
    x1, x2, w = random_inputs(tp, (5,), F64, seed=1)
    broken = w.clone()
    broken[..., -1] += 0.5  # w3[mul-1, L3]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(tp(x1, x2, w), gaunt_reference(*irreps, x1, x2, broken), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("irreps", CASES)
def test_dft_and_fft_transforms_agree(irreps):
    """The folded DFT matrices and torch.fft compute the same function (to rounding)."""
    dft, fft = make(irreps), make(irreps, transform="fft")
    assert dft.transform == "dft" and fft.transform == "fft"
    x1, x2, w = random_inputs(dft, (6,), F64, seed=11)
    torch.testing.assert_close(dft(x1, x2, w), fft(x1, x2, w), rtol=1e-12, atol=1e-12)


def test_dft_keeps_half_the_rings_and_the_fold_matters():
    """transform="dft" computes n_u // 2 + 1 of the n_u torus rings; the others are folded in with the sign
    (-1)^k. Without the folded rings (projection on the kept rings only) the result is wrong."""
    irreps = CASES[1]
    tp = make(irreps, executor="torch")  # the test edits the torch executor's tables
    assert tp.n_theta == tp.n_u // 2 + 1 and "transform=dft" in repr(tp)
    x1, x2, w = random_inputs(tp, (5,), F64, seed=12)
    expected = gaunt_reference(*irreps, x1, x2, w)
    torch.testing.assert_close(tp(x1, x2, w), expected, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        tp.frame.runner.runner._p0_theta[..., 1:] *= 0.5  # each folded ring counted once instead of twice
    with pytest.raises(AssertionError):
        torch.testing.assert_close(tp(x1, x2, w), expected, rtol=1e-10, atol=1e-10)


def test_bad_transform():
    with pytest.raises(ValueError, match="transform must be one of"):
        GauntProduct("0e", "0e", "0e", transform="fftw")


def test_internal_weights_default_to_ones():
    irreps = CASES[3]
    tp = GauntProduct(*irreps)
    assert tp.internal_weights and tp.weight.shape == (3 * (5 + 1 + 2 + 3),)
    torch.testing.assert_close(tp.weight, torch.ones_like(tp.weight), rtol=0, atol=0)
    x1, x2, _ = random_inputs(tp, (4,), F64, seed=4)
    ones = torch.ones(tp.weight_numel, dtype=F64)
    torch.testing.assert_close(tp(x1, x2), gaunt_reference(*irreps, x1, x2, ones), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tp.path_weights(), torch.ones(tp.descriptor().weight_numel), rtol=0, atol=0)
    randn = GauntProduct(*irreps, weight_init="randn")
    assert not torch.equal(randn.weight, torch.ones_like(randn.weight))
    assert list(tp.state_dict()) == ["weight"]  # index tables and matrices are non-persistent buffers


def test_grid_is_the_smallest_exact_one():
    tp = make(CASES[1], cls=GridGauntProduct)  # L1, L2, L3 = 2, 5, 4: degree 11
    assert (tp.n_theta, tp.n_phi) == grid_shape(11) == (6, 12)


def test_broken_quadrature_is_detected():
    """A grid one degree too coarse in phi breaks exactness: the comparison must notice."""
    irreps = CASES[1]
    tp = make(irreps, cls=GridGauntProduct, executor="torch")  # the test edits the torch executor's tables
    x1, x2, w = random_inputs(tp, (5,), F64, seed=1)
    phi_out = tp.frame.runner.runner._p0_phi
    saved = phi_out.clone()
    phi_out[:, -1] = 0.0  # drop one azimuth from the integration
    with pytest.raises(AssertionError):
        torch.testing.assert_close(tp(x1, x2, w), gaunt_reference(*irreps, x1, x2, w), rtol=1e-10, atol=1e-10)
    phi_out.copy_(saved)
    torch.testing.assert_close(tp(x1, x2, w), gaunt_reference(*irreps, x1, x2, w), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "irreps, match",
    [
        (("2x0e+2x1o", "2x0e+2x1o", "2x0o+2x1e"), "cannot be produced.*0e, never 0o"),
        (("2x0o+2x1e", "2x0e", "2x0o+2x1e+2x2o"), None),  # valid: pseudo x ordinary -> pseudo
        (("2x0e+3x1o", "0e", "2x0e"), "unequal multiplicities"),
        (("2x0e+2x1o+2x1o", "0e", "2x0e"), "repeats degree l=1"),
        (("2x1o+2x0e", "0e", "2x0e"), "not sorted"),
        (("2x0e+2x1e", "0e", "2x0e"), "mixes parities"),
        (("3x0e", "2x0e", "3x0e"), "mul2 must equal mul1 or be 1"),
        (("3x0e", "0e", "2x0e"), "has mul 2"),
        (("", "0e", "0e"), "empty"),
        (("0x0e", "0e", "0e"), "zero multiplicity"),
        (("2x0e", "2x0e", "2x1o"), "no path .* reaches the output degrees \\[1\\]"),
        (("2x0e+2x1o", "2x0e+2x1o", "2x3o+2x4e"), "reaches the output degrees \\[3, 4\\]"),
        (("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x3o"), None),  # valid: degree 3 unreached, exactly zero
    ],
)
@pytest.mark.parametrize("cls", [GauntProduct, GridGauntProduct])
def test_bad_irreps(irreps, match, cls):
    if match is None:
        cls(*irreps)
        return
    with pytest.raises(ValueError, match=match):
        cls(*irreps)


def test_bad_inputs():
    tp = make(("2x0e+2x1o", "0e+1o", "2x0e+2x1o"), "internal", check_finite=True)
    x1, x2, _ = random_inputs(tp, (3,), torch.float32)
    with pytest.raises(ValueError, match="last dimension"):
        tp(x1[:, :-1], x2)
    with pytest.raises(TypeError, match="dtype"):
        tp(x1.double(), x2)
    with pytest.raises(ValueError, match="NaN"):
        tp(x1, torch.full_like(x2, float("nan")))
    with pytest.raises(ValueError, match="weight_init"):
        GauntProduct("0e", "0e", "0e", weight_init="zeros")
    with pytest.raises(ValueError, match="external"):
        make(("0e", "0e", "0e"), "shared").path_weights()
