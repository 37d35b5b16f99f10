"""CGProduct: equality with e3nn's o3.TensorProduct, with the descriptor oracle, equivariance,
gradients, batching, input checks and torch.compile."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_equivariant, assert_matches_descriptor, random_inputs

from gaunt.products.cg import CGProduct
from gaunt.products.path_executor import PathExecutor
from gaunt.so3 import Irreps

o3 = pytest.importorskip("e3nn.o3")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(autouse=True)
def float64_default():
    """e3nn builds its Wigner 3j buffers in the default dtype: make it float64 for 1e-10 comparisons."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _pair(in1, in2, out, instructions, **kwargs):
    """(ours, e3nn) with the same instructions, options and internal weights."""
    ref = o3.TensorProduct(in1, in2, out, instructions, **kwargs)
    ours = CGProduct(in1, in2, out, instructions, **kwargs)
    if ours.internal_weights:
        with torch.no_grad():
            ours.weight.copy_(ref.weight)
    return ours, ref


# (in1, in2, out, instructions): every mode, weighted and not, mixed multiplicities, repeated outputs
MODES_CASE = (
    "2x0e+3x1o+2x2e",
    "4x0e+2x1o+2x2e",
    "3x0e+3x1e+2x2o+2x1e+1x0e+2x3e+3x1o+2x1o",
    [
        (0, 0, 0, "uvw", True, 2.0),
        (1, 1, 1, "uvu", True),
        (1, 1, 1, "uvu", False),
        (1, 2, 2, "uvv", True),
        (1, 2, 2, "uvv", False),
        (2, 2, 3, "uuw", True),
        (2, 2, 4, "uuw", False),
        (2, 2, 5, "uuu", True),
        (2, 2, 5, "uuu", False),
        (1, 2, 2, "uvw", True, 0.5),
        (1, 0, 6, "uvu", True),
        (0, 1, 7, "uvv", False),
    ],
)


@pytest.mark.parametrize("irrep_normalization", ["component", "norm", "none"])
@pytest.mark.parametrize("path_normalization", ["element", "path", "none"])
def test_matches_e3nn_all_modes_and_normalisations(irrep_normalization, path_normalization):
    torch.manual_seed(0)
    ours, ref = _pair(*MODES_CASE, irrep_normalization=irrep_normalization, path_normalization=path_normalization)
    assert ours.weight_numel == ref.weight_numel
    x1, x2, _ = random_inputs(ours, (5,))
    torch.testing.assert_close(ours(x1, x2), ref(x1, x2), **TOL)


@pytest.mark.parametrize("weights", ["internal", "shared", "per_sample"])
def test_matches_e3nn_weight_modes(weights):
    torch.manual_seed(1)
    kwargs = {"internal": {}, "shared": dict(internal_weights=False), "per_sample": dict(shared_weights=False)}[weights]
    ours, ref = _pair(*MODES_CASE, in1_var=[1.0, 2.0, 0.5], out_var=[1.0] * 6 + [3.0, 0.5], **kwargs)
    assert ours.internal_weights == ref.internal_weights and ours.shared_weights == ref.shared_weights
    x1, x2, w = random_inputs(ours, (2, 3))
    torch.testing.assert_close(ours(x1, x2, w), ref(x1, x2, w), **TOL)
    assert_matches_descriptor(ours, x1, x2, w)


@pytest.mark.parametrize(
    "in1, in2, out",
    [
        ("3x0e+2x1o+1x2e", "2x0e+1x1o+2x2o", "2x0e+2x1o+3x1e+1x2e+2x3o"),
        ("1x0e+1x3o+1x6e", "1x2e+1x6e", "1x0e+2x3o+1x4e+1x6e+1x5o"),
        ("2x3o+1x6e", "1x4e+2x5o", "1x1o+2x6o+1x2e+1x5e"),
        pytest.param(*[Irreps.spherical_harmonics(6)] * 3, marks=pytest.mark.slow),
        ("0x1o+2x0e", "1x1o", "0x1o+1x1o"),  # zero multiplicities
    ],
)
def test_fully_connected_matches_e3nn(in1, in2, out):
    torch.manual_seed(2)
    ref = o3.FullyConnectedTensorProduct(Irreps(in1).to_e3nn(), Irreps(in2).to_e3nn(), Irreps(out).to_e3nn())
    ours = CGProduct.fully_connected(in1, in2, out)
    assert CGProduct(in1, in2, out).instructions == ours.instructions
    with torch.no_grad():
        ours.weight.copy_(ref.weight)
    x1, x2, _ = random_inputs(ours, (4,))
    torch.testing.assert_close(ours(x1, x2), ref(x1, x2), **TOL)
    assert_matches_descriptor(ours, x1, x2)


@pytest.mark.parametrize("filter_", [None, "0e+1o+2e"])
def test_channelwise_matches_e3nn_convolution(filter_):
    torch.manual_seed(3)
    in1, in2 = o3.Irreps("3x0e+2x1o+2x2e"), o3.Irreps.spherical_harmonics(3)
    # e3nn's points-convolution recipe, written out independently
    mid, instructions = [], []
    for i, (mul, ir1) in enumerate(in1):
        for j, (_, ir2) in enumerate(in2):
            for ir in ir1 * ir2:
                if filter_ is None or ir in o3.Irreps(filter_):
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir))
    mid, p, _ = o3.Irreps(mid).sort()
    instructions = [(i, j, p[k], m, t) for i, j, k, m, t in instructions]
    ref = o3.TensorProduct(in1, in2, mid, instructions, shared_weights=False, internal_weights=False)
    ours = CGProduct.channelwise(in1, in2, filter_, shared_weights=False)
    assert ours.irreps_out == mid and ours.weight_numel == ref.weight_numel
    x1, x2, w = random_inputs(ours, (6,))
    torch.testing.assert_close(ours(x1, x2, w), ref(x1, x2, w), **TOL)


def test_descriptor_coefficients_are_e3nn_path_weights():
    ours, ref = _pair(*MODES_CASE, path_normalization="path")
    d = ours.descriptor()
    assert [p.coupling for p in d.paths] == ["cg"] * len(ref.instructions)
    assert [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight) for p in d.paths] == [
        (i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight) for i in ref.instructions
    ]
    torch.testing.assert_close(
        torch.tensor([p.coefficient for p in d.paths]),
        torch.tensor([i.path_weight for i in ref.instructions]),
        rtol=1e-14,
        atol=0,
    )
    assert d.weight_numel == ours.weight_numel
    views = ours.weight_views()
    assert [tuple(v.shape) if v is not None else () for v in views] == [d.path_weight_shape(p) for p in d.paths]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", ["modes", "fully_connected"])
def test_equivariance(dtype, case):
    torch.manual_seed(4)
    if case == "modes":
        tp = CGProduct(*MODES_CASE, shared_weights=False)
    else:
        tp = CGProduct.fully_connected("2x0e+2x1o+1x2e+1x3o", "1x0o+1x1e+1x2o", "2x0e+2x0o+2x1o+2x1e+2x2e+1x3e+1x4o")
    x1, x2, w = random_inputs(tp, (3,), dtype)
    assert_equivariant(tp, x1, x2, w)


def test_equivariance_helper_rejects_perturbed_coefficient():
    """Test-the-tester: a CG product with one coefficient nudged must fail the equivariance check."""
    torch.manual_seed(5)
    tp = CGProduct("2x1o+1x2e", "1x1o+1x2e", "2x1e+1x2o+1x2e")
    x1, x2, _ = random_inputs(tp, (3,))
    assert_equivariant(tp, x1, x2)  # intact: passes
    with torch.no_grad():
        tp.runner.coupling_coefficients[7] += 0.05
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(tp, x1, x2)


def test_state_dict_and_device_moves():
    tp = CGProduct("1x1o", "1x1o", "1x0e+1x1e")
    assert set(tp.state_dict()) == {"weight"}  # coefficients are non-persistent buffers
    assert tp.runner.coupling_coefficients.dtype == torch.float64
    meta = CGProduct("1x1o", "1x1o", "1x0e+1x1e").to("meta")
    assert meta.runner.coupling_coefficients.device.type == "meta"


def test_bad_inputs_raise():
    tp = CGProduct("2x1o", "1x1o", "1x0e+1x1e", shared_weights=False, check_finite=True)
    x1, x2, w = random_inputs(tp, (3,))
    with pytest.raises(ValueError, match="x1 has shape"):
        tp(x1[:, :5], x2, w)
    with pytest.raises(ValueError, match="x2 has shape"):
        tp(x1, x1, w)
    with pytest.raises(TypeError, match="dtype mismatch"):
        tp(x1, x2.float(), w)
    with pytest.raises(ValueError, match="device mismatch"):
        tp(x1, x2.to("meta"), w)
    with pytest.raises(ValueError, match="weight has shape"):
        tp(x1, x2, w[:, :-1])
    with pytest.raises(ValueError, match="does not broadcast"):
        tp(x1, x2, w[:2])
    with pytest.raises(ValueError, match="external weights"):
        tp(x1, x2)
    bad = x1.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tp(bad, x2, w)
    shared = CGProduct("2x1o", "1x1o", "1x0e+1x1e", internal_weights=False)
    with pytest.raises(ValueError, match="shared weights"):
        shared(x1, x2, w)
    with pytest.raises(ValueError, match="weights are internal"):
        CGProduct("2x1o", "1x1o", "1x0e")(x1, x2, w[0, :2])


@pytest.mark.parametrize(
    "instructions, kwargs, message",
    [
        ([(0, 0, 1, "uvw", True)], {}, "parity"),
        ([(0, 0, 0, "uvuv", True)], {}, "unsupported mode"),
        ([(0, 0, 2, "uvw", True)], {}, "out of range"),
        ([(0, 0, 0, "uvw", True, -1.0)], {}, "path_weight"),
        ([(0, 0, 0)], {}, "must be"),
        (None, dict(irrep_normalization="unit"), "irrep_normalization"),
        (None, dict(path_normalization="fan"), "path_normalization"),
        (None, dict(in1_var=[1.0, 2.0]), "in1_var"),
    ],
)
def test_bad_construction_raises(instructions, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CGProduct("2x1o", "1x1o", "1x0e+1x0o", instructions, **kwargs)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("coupling", ["cg", "gaunt"])
def test_path_executor_matches_dense_product_for_any_descriptor(per_sample, coupling):
    """The executor is generic: any coupling kind, any coefficients, every mode and layout."""
    from gaunt.products.descriptor import Path, ProductDescriptor, dense_product

    torch.manual_seed(9)
    in1, in2, out, instructions = MODES_CASE
    paths = tuple(Path(*ins[:5], coefficient=0.3 + 0.2 * n, coupling=coupling) for n, ins in enumerate(instructions))
    d = ProductDescriptor(Irreps(in1), Irreps(in2), Irreps(out), paths)
    executor = PathExecutor(d, per_sample_weights=per_sample)
    x1 = torch.randn(2, 3, d.irreps_in1.dim)
    x2 = torch.randn(3, d.irreps_in2.dim)
    w = torch.randn(*((2, 3) if per_sample else ()), d.weight_numel)
    torch.testing.assert_close(executor(x1, x2, w), dense_product(d, x1, x2, w), **TOL)
