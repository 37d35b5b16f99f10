"""ProductDescriptor validation, the coupling registry and the dense_product oracle."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_equivariant

from gaunt.products.descriptor import COUPLINGS, Path, ProductDescriptor, dense_product, register_coupling
from gaunt.so3 import Irreps, clebsch_gordan, gaunt_coefficients

e3nn_o3 = pytest.importorskip("e3nn.o3")


@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


class _Dense(torch.nn.Module):
    """dense_product as a module (for the equivariance helper)."""

    def __init__(self, d: ProductDescriptor, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.d, self.w = d, weight
        self.irreps_in1, self.irreps_in2, self.irreps_out = d.irreps_in1, d.irreps_in2, d.irreps_out

    def forward(self, x1, x2, weight=None):
        return dense_product(self.d, x1, x2, self.w if weight is None else weight)


ALL_MODES = [
    (0, 0, 0, "uvw", True),
    (1, 1, 1, "uvu", True),
    (1, 1, 1, "uvu", False),
    (1, 2, 2, "uvv", True),
    (1, 2, 2, "uvv", False),
    (2, 2, 3, "uuw", True),
    (2, 2, 4, "uuw", False),
    (2, 2, 5, "uuu", True),
    (2, 2, 5, "uuu", False),
    (1, 2, 2, "uvw", True),
]
GAUNT_PATHS = [(0, 0, 0, "uvw", True), (2, 2, 4, "uuw", True), (1, 2, 6, "uvv", True), (1, 1, 4, "uvw", True)]
IN1, IN2, OUT = "2x0e+3x1o+2x2e", "4x0e+2x1o+2x2e", "3x0e+3x1e+2x2o+2x1e+1x0e+2x3e+2x1o"


def _descriptor(coupling="cg", instructions=ALL_MODES, coefficient=0.7) -> ProductDescriptor:
    paths = tuple(
        Path(*ins, coefficient=coefficient + 0.1 * k, coupling=coupling) for k, ins in enumerate(instructions)
    )
    return ProductDescriptor(Irreps(IN1), Irreps(IN2), Irreps(OUT), paths)


def test_weight_shapes_and_numel():
    d = _descriptor()
    shapes = [d.path_weight_shape(p) for p in d.paths]
    assert shapes == [(2, 4, 3), (3, 2), (), (3, 2), (), (2, 2), (), (2,), (), (3, 2, 2)]
    assert d.weight_numel == 24 + 6 + 6 + 4 + 2 + 12
    slices = d.weight_slices()
    assert slices[0] == slice(0, 24) and slices[2] is None and slices[-1] == slice(42, 54)


def test_coupling_tensors():
    d = _descriptor()
    torch.testing.assert_close(d.coupling_tensor(d.paths[1]), clebsch_gordan(1, 1, 1), rtol=0, atol=0)
    g = _descriptor("gaunt", [(2, 2, 4, "uuw", True)])
    torch.testing.assert_close(
        g.coupling_tensor(g.paths[0], torch.float32), gaunt_coefficients(2, 2, 0, torch.float32), rtol=0, atol=0
    )


@pytest.mark.parametrize(
    "instruction, message",
    [
        ((5, 0, 0, "uvw", True), "out of range"),
        ((0, 0, 0, "uvuv", True), "unsupported mode"),
        ((0, 0, 5, "uvw", True), "triangle"),
        ((0, 1, 1, "uvw", True), "parity"),
        ((0, 0, 0, "uvu", True), "do not fit"),
        ((0, 0, 0, "uvw", False), "needs weights"),
        ((2, 2, 3, "uuw", False), "multiplicity 1"),
    ],
)
def test_invalid_paths_raise(instruction, message):
    with pytest.raises(ValueError, match=message):
        _descriptor(instructions=[instruction])


def test_unknown_coupling_and_registry():
    with pytest.raises(ValueError, match="unknown coupling"):
        _descriptor("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_coupling("cg", lambda *a: None)


def test_dense_product_matches_e3nn_all_modes(float64_default):
    """Independent reference: e3nn with the same instructions; coefficients taken from e3nn's own
    normalised instructions (so this does not rely on CGProduct's normalisation)."""
    torch.manual_seed(0)
    ref = e3nn_o3.TensorProduct(IN1, IN2, OUT, ALL_MODES, path_normalization="path")
    paths = tuple(Path(*ins, coefficient=e.path_weight) for ins, e in zip(ALL_MODES, ref.instructions))
    d = ProductDescriptor(Irreps(IN1), Irreps(IN2), Irreps(OUT), paths)
    assert d.weight_numel == ref.weight_numel
    x1, x2 = torch.randn(6, d.irreps_in1.dim), torch.randn(6, d.irreps_in2.dim)
    torch.testing.assert_close(dense_product(d, x1, x2, ref.weight), ref(x1, x2), rtol=1e-10, atol=1e-10)
    shared = e3nn_o3.TensorProduct(IN1, IN2, OUT, ALL_MODES, shared_weights=False, path_normalization="path")
    w = torch.randn(6, d.weight_numel)
    torch.testing.assert_close(dense_product(d, x1, x2, w), shared(x1, x2, w), rtol=1e-10, atol=1e-10)


def test_dense_product_gaunt_is_scaled_cg():
    torch.manual_seed(1)
    ins = GAUNT_PATHS
    cg, ga = _descriptor("cg", ins, 1.0), _descriptor("gaunt", ins, 1.0)
    x1 = torch.randn(3, cg.irreps_in1.dim, dtype=torch.float64)
    x2 = torch.randn(3, cg.irreps_in2.dim, dtype=torch.float64)
    w = torch.randn(cg.weight_numel, dtype=torch.float64)
    # Gaunt = r * CG with r = <G, C> (C has unit norm): rescaling each CG path by r gives the same result
    ratios = [float((ga.coupling_tensor(p) * cg.coupling_tensor(q)).sum()) for p, q in zip(ga.paths, cg.paths)]
    assert all(abs(r) > 1e-3 for r in ratios)  # all chosen paths have a non-zero Gaunt part
    scaled = ProductDescriptor(
        cg.irreps_in1,
        cg.irreps_in2,
        cg.irreps_out,
        tuple(Path(*ins[k], coefficient=r * (1.0 + 0.1 * k)) for k, r in enumerate(ratios)),
    )
    torch.testing.assert_close(dense_product(ga, x1, x2, w), dense_product(scaled, x1, x2, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("coupling", ["cg", "gaunt"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dense_product_equivariant(coupling, dtype):
    torch.manual_seed(2)
    d = _descriptor(coupling, ALL_MODES + GAUNT_PATHS)  # Gaunt vanishes on odd l1+l2+l3, CG does not
    w = torch.randn(4, d.weight_numel, dtype=dtype)
    x1, x2 = torch.randn(4, d.irreps_in1.dim, dtype=dtype), torch.randn(4, d.irreps_in2.dim, dtype=dtype)
    assert_equivariant(_Dense(d, w), x1, x2)


def test_dense_product_broadcasting_and_empty():
    torch.manual_seed(3)
    d = _descriptor()
    x1 = torch.randn(2, 1, d.irreps_in1.dim, dtype=torch.float64)
    x2 = torch.randn(3, d.irreps_in2.dim, dtype=torch.float64)
    w = torch.randn(d.weight_numel, dtype=torch.float64)
    out = dense_product(d, x1, x2, w)
    assert out.shape == (2, 3, d.irreps_out.dim)
    torch.testing.assert_close(out[1, 2], dense_product(d, x1[1, 0], x2[2], w), rtol=1e-12, atol=1e-12)
    empty = dense_product(d, x1[:0, 0], x2[:0], w)
    assert empty.shape == (0, d.irreps_out.dim)
    with pytest.raises(ValueError, match="needs weight"):
        dense_product(d, x1, x2, None)
    with pytest.raises(ValueError, match="do not fit"):
        dense_product(d, x2, x1, w)


def test_equivariance_helper_rejects_broken_coupling():
    """Test-the-tester: one perturbed CG entry must make assert_equivariant fail."""
    broken = clebsch_gordan(1, 2, 2).clone()
    broken[0, 1, 2] += 0.05
    register_coupling("_test_broken", lambda l1, l2, l3, dtype, device: broken.to(dtype))
    try:
        torch.manual_seed(4)
        d = _descriptor("_test_broken", [(1, 2, 2, "uvv", True)])
        w = torch.randn(d.weight_numel, dtype=torch.float64)
        x1 = torch.randn(3, d.irreps_in1.dim, dtype=torch.float64)
        x2 = torch.randn(3, d.irreps_in2.dim, dtype=torch.float64)
        with pytest.raises(AssertionError, match="not equivariant"):
            assert_equivariant(_Dense(d, w), x1, x2)
        # and an identically zero output is refused instead of passing vacuously
        with pytest.raises(AssertionError, match="vacuously"):
            assert_equivariant(_Dense(d, torch.zeros_like(w)), x1, x2)
    finally:
        del COUPLINGS["_test_broken"]
