"""Tests of the parity-complete product (odd Gaunt coefficients and VectorGauntProduct)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_equivariant, assert_matches_descriptor, random_inputs

from gaunt.products.descriptor import COUPLINGS
from gaunt.products.odd_gaunt import _odd_gaunt_quadrature, odd_gaunt_coefficients, odd_gaunt_ratio
from gaunt.products.torch_executor import TorchProgram
from gaunt.products.vector import VectorGauntProduct, vector_program
from gaunt.so3 import Irreps, clebsch_gordan, gaunt_coefficients, random_rotation, spherical_grid, wigner_d

F64 = torch.float64


def sh_irreps(mul: int, lmax: int, sign: int = 1) -> Irreps:
    return Irreps([(mul, (l, sign * (-1) ** l)) for l in range(lmax + 1)])


def both_parities(mul: int, lmax: int, sign: int = 1) -> Irreps:
    """Every output a product of sign-``sign`` expansions can reach: even irreps l >= 0, odd ones l >= 1."""
    return Irreps([(mul, (l, p * sign * (-1) ** l)) for l in range(lmax + 1) for p in (1, -1) if l > 0 or p == 1])


# ----------------------------------------------------------------------------- coefficients
def test_odd_gaunt_selection_rules_and_proportionality():
    for l1 in range(5):
        for l2 in range(5):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                raw = _odd_gaunt_quadrature(l1, l2, l3)
                c = clebsch_gordan(l1, l2, l3)
                if (l1 + l2 + l3) % 2 == 0:
                    torch.testing.assert_close(raw, torch.zeros_like(raw), atol=1e-13, rtol=0)
                    assert odd_gaunt_ratio(l1, l2, l3) == 0.0
                    continue
                # ratio constant across m: raw / C on the non-zero entries of C
                nz = c.abs() > 1e-8
                ratios = raw[nz] / c[nz]
                torch.testing.assert_close(ratios, torch.full_like(ratios, ratios[0].item()), atol=1e-12, rtol=1e-12)
                assert abs(ratios[0].item()) > 0.1  # genuinely non-zero on every odd triangle path
                torch.testing.assert_close(odd_gaunt_coefficients(l1, l2, l3), raw, atol=1e-13, rtol=0)


def test_odd_gaunt_antisymmetric_under_swap():
    for l1, l2, l3 in [(1, 1, 1), (1, 2, 2), (2, 3, 2), (3, 3, 5), (2, 4, 3)]:
        a = odd_gaunt_coefficients(l1, l2, l3)
        b = odd_gaunt_coefficients(l2, l1, l3)
        torch.testing.assert_close(a, -b.transpose(0, 1), atol=1e-14, rtol=0)
        raw = _odd_gaunt_quadrature(l1, l2, l3)
        torch.testing.assert_close(raw, -_odd_gaunt_quadrature(l2, l1, l3).transpose(0, 1), atol=1e-13, rtol=0)


def test_odd_gaunt_is_the_levi_civita_symbol_for_vectors():
    eps = torch.zeros(3, 3, 3, dtype=F64)
    for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        eps[i, j, k], eps[j, i, k] = 1.0, -1.0
    torch.testing.assert_close(odd_gaunt_coefficients(1, 1, 1), math.sqrt(3 / (4 * math.pi)) * eps, atol=1e-15, rtol=0)


def test_odd_gaunt_against_independent_e3nn_cartesian_computation():
    """Cartesian gradients by reverse-mode autograd of e3nn's harmonics, a finer grid, torch.cross."""
    o3 = pytest.importorskip("e3nn.o3")
    for l1, l2, l3 in [(1, 2, 2), (2, 2, 3), (3, 2, 4), (3, 3, 3)]:
        grid = spherical_grid(l1 + l2 + l3 + 4, dtype=F64)
        pts = grid.points.clone().requires_grad_(True)

        def grads(l):
            p = o3.spherical_harmonics(l, pts, normalize=False, normalization="integral")
            rows = [torch.autograd.grad(p[:, m].sum(), pts, retain_graph=True)[0] for m in range(2 * l + 1)]
            return torch.stack(rows, dim=1)  # [G, 2l+1, 3]

        g1, g2 = grads(l1), grads(l2)
        a, b = g1[:, :, None, :], g2[:, None, :, :]
        cross = torch.linalg.cross(a.expand(-1, -1, 2 * l2 + 1, -1), b.expand(-1, 2 * l1 + 1, -1, -1))
        h = torch.einsum("gi,gabi->gab", grid.points, cross)
        y3 = o3.spherical_harmonics(l3, grid.points, normalize=True, normalization="integral")
        expected = torch.einsum("g,gab,gc->abc", grid.weights, h, y3)
        torch.testing.assert_close(odd_gaunt_coefficients(l1, l2, l3), expected, atol=1e-12, rtol=0)


def test_odd_gaunt_is_rotation_invariant_and_registered():
    r = random_rotation(generator=torch.Generator().manual_seed(1))
    for l1, l2, l3 in [(1, 1, 1), (2, 3, 4), (4, 4, 3)]:
        o = odd_gaunt_coefficients(l1, l2, l3)
        rotated = torch.einsum("ai,bj,ck,ijk->abc", wigner_d(l1, r), wigner_d(l2, r), wigner_d(l3, r), o)
        torch.testing.assert_close(rotated, o, atol=1e-13, rtol=0)
        torch.testing.assert_close(COUPLINGS["odd_gaunt"](l1, l2, l3, F64, torch.device("cpu")), o, atol=0, rtol=0)
    with pytest.raises(ValueError, match="non-negative"):
        odd_gaunt_coefficients(-1, 1, 1)


# ----------------------------------------------------------------------------- the product vs references
def reference(product: VectorGauntProduct, x1, x2, weight):
    """Independent dense einsum: sum over paths of w1 w2 w3 * ratio(l1, l2, l3) * C (so3.clebsch_gordan)."""
    w1, w2, w3 = product.split_weights(weight)
    mul, mul2 = product.mul, product.mul2
    batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1])
    s1, s2 = product.irreps_in1.slices(), product.irreps_in2.slices()
    (_, ir1), (_, ir2) = product.irreps_in1[0], product.irreps_in2[0]
    sign = ir1.p * ir2.p * (-1) ** (ir1.l + ir2.l)  # s1 s2: "even" outputs have parity sign (-1)^l3
    blocks = []
    for k, (_, ir3) in enumerate(product.irreps_out):
        odd = ir3.p != sign * (-1) ** ir3.l
        acc = x1.new_zeros(*batch, mul, 2 * ir3.l + 1)
        for i1, (_, ir1) in enumerate(product.irreps_in1):
            for i2, (_, ir2) in enumerate(product.irreps_in2):
                l1, l2, l3 = ir1.l, ir2.l, ir3.l
                if not abs(l1 - l2) <= l3 <= l1 + l2 or (l1 + l2 + l3) % 2 != odd:
                    continue
                c = clebsch_gordan(l1, l2, l3)
                ratio = odd_gaunt_ratio(l1, l2, l3) if odd else float((gaunt_coefficients(l1, l2, l3) * c).sum())
                a = x1[..., s1[i1]].unflatten(-1, (mul, 2 * l1 + 1))
                b = x2[..., s2[i2]].unflatten(-1, (mul2, 2 * l2 + 1))
                term = torch.einsum("...ui,...uj,ijk->...uk", a, b.expand(*b.shape[:-2], mul, -1), ratio * c)
                acc = acc + (w1[..., :, l1] * w2[..., :, l2] * w3[..., :, k])[..., None] * term
        blocks.append(acc.flatten(-2))
    return torch.cat(blocks, dim=-1)


@pytest.mark.parametrize(
    "in1, in2, out",
    [
        (sh_irreps(3, 6), sh_irreps(3, 6), both_parities(3, 6)),  # L = 6, every path of both kinds
        (sh_irreps(2, 4), sh_irreps(1, 3), both_parities(2, 5)),  # x2 broadcast over channels
        (sh_irreps(2, 3, -1), sh_irreps(2, 2), both_parities(2, 3, -1)),  # pseudo input
        ("4x1o+4x3o", "4x0o+4x2o", "4x1e+4x2e+4x3e+4x4e"),  # missing degrees, pseudo x2
    ],
)
def test_matches_dense_clebsch_gordan_reference(in1, in2, out):
    product = VectorGauntProduct(in1, in2, out, internal_weights=False, shared_weights=False)
    x1, x2, w = random_inputs(product, batch=(3,), seed=2)
    got = product(x1, x2, w)
    torch.testing.assert_close(got, reference(product, x1, x2, w), atol=1e-10, rtol=1e-10)
    assert_matches_descriptor(product, x1, x2, w)


@pytest.mark.parametrize(
    "in1, in2, out",
    [
        (sh_irreps(2, 6), sh_irreps(2, 6), both_parities(2, 6)),
        (sh_irreps(3, 4), sh_irreps(1, 5, -1), both_parities(3, 5, -1)),
    ],
)
def test_matches_cg_product_with_equivalent_weights(in1, in2, out):
    cg = pytest.importorskip("gaunt.products.cg")
    product = VectorGauntProduct(in1, in2, out, internal_weights=False)
    d = product.descriptor()
    instructions = [(p.i_in1, p.i_in2, p.i_out, p.mode, True) for p in d.paths]
    oracle = cg.CGProduct(
        d.irreps_in1,
        d.irreps_in2,
        d.irreps_out,
        instructions,
        irrep_normalization="none",
        path_normalization="none",
        internal_weights=False,
    )
    x1, x2, w = random_inputs(product, batch=(5,), seed=3)
    # CG path weight = (Gaunt or odd-Gaunt ratio) * w1 w2 w3
    ratios = []
    for p in d.paths:
        (_, ir1), (_, ir2), (_, ir3) = d.irreps(p)
        r = float((d.coupling_tensor(p) * clebsch_gordan(ir1.l, ir2.l, ir3.l)).sum())
        ratios.append(torch.full((d.path_weight_numel(p),), r, dtype=F64))
    cg_weight = product.path_weights(w) * torch.cat(ratios)
    torch.testing.assert_close(product(x1, x2, w), oracle(x1, x2, cg_weight), atol=1e-10, rtol=1e-10)


def test_grid_degree_is_needed():
    """Test the tester: one degree coarser than ``L1 + L2 + L3`` aliases and breaks the reference check."""
    in1, in2, out = sh_irreps(2, 3), sh_irreps(2, 2), both_parities(2, 3)
    product = VectorGauntProduct(in1, in2, out, internal_weights=False)
    assert product.grid_degree == 3 + 2 + 3
    x1, x2, w = random_inputs(product, seed=13)
    expected = reference(product, x1, x2, w)
    torch.testing.assert_close(product(x1, x2, w), expected, atol=1e-12, rtol=1e-12)
    odd = [ir.p != (-1) ** ir.l for _, ir in product.irreps_out]
    coarse = vector_program(product.layouts, product.irreps_out, odd, degree=product.grid_degree - 1)
    product.frame.runner = TorchProgram(coarse)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(product(x1, x2, w), expected, atol=1e-6, rtol=1e-6)
    # an output set whose top degree holds only the curl field needs one degree less
    assert VectorGauntProduct(in1, in2, "2x0e+2x1e+2x3e", internal_weights=False).grid_degree == 3 + 2 + 3 - 1


def test_cross_product():
    product = VectorGauntProduct("1x1o", "1x1o", "1x1e", internal_weights=False)
    g = torch.Generator().manual_seed(4)
    x1, x2 = torch.randn(7, 3, generator=g, dtype=F64), torch.randn(7, 3, generator=g, dtype=F64)
    out = product(x1, x2, torch.ones(product.weight_numel, dtype=F64))
    torch.testing.assert_close(out, math.sqrt(3 / (4 * math.pi)) * torch.linalg.cross(x1, x2), atol=1e-14, rtol=0)
    # the Gaunt part of the same product sees nothing antisymmetric: 1o x 1o -> 1e needs the curl field
    assert [p.coupling for p in product.descriptor().paths] == ["odd_gaunt"]


def test_descriptor_couplings_follow_parity():
    product = VectorGauntProduct(sh_irreps(1, 2), sh_irreps(1, 2), both_parities(1, 2))
    d = product.descriptor()
    for p in d.paths:
        (_, ir1), (_, ir2), (_, ir3) = d.irreps(p)
        assert p.coupling == ("odd_gaunt" if (ir1.l + ir2.l + ir3.l) % 2 else "gaunt")
    odd = sorted(tuple(mul_ir.ir.l for mul_ir in d.irreps(p)) for p in d.paths if p.coupling == "odd_gaunt")
    assert odd == [(1, 1, 1), (1, 2, 2), (2, 1, 2), (2, 2, 1)]


def test_equals_grid_gaunt_product_on_even_outputs():
    grid_module = pytest.importorskip("gaunt.products.gaunt_grid")
    in1, in2, out = sh_irreps(3, 3), sh_irreps(3, 2), sh_irreps(3, 4)
    ours = VectorGauntProduct(in1, in2, out, internal_weights=False)
    theirs = grid_module.GridGauntProduct(in1, in2, out, internal_weights=False)
    assert ours.weight_numel == theirs.weight_numel  # w3 per irrep == per degree when only one parity
    x1, x2, w = random_inputs(ours, batch=(4,), seed=5)
    torch.testing.assert_close(ours(x1, x2, w), theirs(x1, x2, w), atol=1e-12, rtol=1e-12)


# ----------------------------------------------------------------------------- symmetry
def test_equivariance_check_catches_a_parity_bug():
    """Test the tester: declaring the curl output 1e as 1o must fail under inversion only."""
    product = VectorGauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x1o+2x1e", internal_weights=False)
    x1, x2, w = random_inputs(product, seed=7)
    assert_equivariant(product, x1, x2, w)
    with pytest.raises(AssertionError, match="inversion|improper"):
        assert_equivariant(product, x1, x2, w, irreps_out="2x1o+2x1o")


# ----------------------------------------------------------------------------- autograd, shapes, compile


def test_internal_weights_start_at_one_and_are_the_only_state():
    product = VectorGauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x1e")
    assert product.internal_weights and product.weight_numel == 2 * 2 + 2 * 2 + 2 * 1
    torch.testing.assert_close(product.weight.detach(), torch.ones(product.weight_numel), atol=0, rtol=0)
    assert list(product.state_dict()) == ["weight"]
    x1, x2, _ = random_inputs(product, seed=10, dtype=torch.float32)
    assert_matches_descriptor(product, x1, x2, None, atol=1e-5, rtol=1e-5)


def test_bad_input_raises():
    good = ("2x0e+2x1o", "2x0e+2x1o", "2x1e")
    with pytest.raises(ValueError, match="mixes parities"):
        VectorGauntProduct("2x0e+2x1e", *good[1:])
    with pytest.raises(ValueError, match="not sorted"):
        VectorGauntProduct("2x1o+2x0e", *good[1:])
    with pytest.raises(ValueError, match="mul"):
        VectorGauntProduct("2x0e+2x1o", "3x0e+3x1o", "2x1e")
    with pytest.raises(ValueError, match="no path .* reaches output irrep 0o"):
        VectorGauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x0o+2x1e")
    with pytest.raises(ValueError, match="no path .* reaches output irrep 3o"):
        VectorGauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x1e+2x3o")
    with pytest.raises(ValueError, match="repeats an irrep"):
        VectorGauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x1e+2x1e")
    with pytest.raises(ValueError, match="multiplicity 2"):
        VectorGauntProduct("2x0e+2x1o", "2x0e+2x1o", "3x1e")
    with pytest.raises(ValueError, match="empty"):
        VectorGauntProduct("2x0e+2x1o", "2x0e+2x1o", "")
    product = VectorGauntProduct(*good, internal_weights=False, check_finite=True)
    x1, x2, w = random_inputs(product, seed=11)
    with pytest.raises(ValueError, match="last dimension"):
        product(x1[..., :-1], x2, w)
    with pytest.raises(TypeError, match="dtype"):
        product(x1, x2.float(), w)
    with pytest.raises(ValueError, match="device"):
        product(x1, x2.to("meta"), w)
    with pytest.raises(ValueError, match="weight"):
        product(x1, x2, w[:-1])
    bad = x1.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        product(bad, x2, w)
