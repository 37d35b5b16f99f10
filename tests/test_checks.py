"""Tests of ``gaunt check``: every product and layer passes, and the checker catches deliberately broken
modules (wrong rotation, ignored parity, missing gradient, wrong second derivative, vacuous output)."""

import pytest
import torch

from gaunt import checks
from gaunt.checks import check_module, register_check, run_checks
from gaunt.nn import EquivariantConvolution, Gate, NormActivation
from gaunt.nn.convolution import CONVOLUTION_PRODUCTS
from gaunt.products import PRODUCTS

LAYERS = (
    [
        "Linear",
        "Gate",
        "NormActivation",
        "S2Activation",
        "EquivariantLayerNorm",
        "FeatureInteraction[gaunt]",
        "FeatureInteraction[cg]",
        "BesselBasis",
        "RadialMLP",
    ]
    + [f"EquivariantConvolution[{p}]" for p in CONVOLUTION_PRODUCTS if p != "auto"]
    + [f"ManyBodyProduct[{p},nu=3]" for p in ("cg", "grid", "gaunt")]
)
NODE = "2x0e+2x1o+2x2e"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def all_results():
    results, ok = run_checks(lmax=1)
    return {r.name: r for r in results}, ok


def test_all_registered_checks_pass(all_results):
    results, ok = all_results
    assert ok, [r for r in results.values() if not r.passed()]
    assert set(PRODUCTS) <= set(results)
    assert set(LAYERS) <= set(results), sorted(set(LAYERS) - set(results))


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_passes(all_results, name):
    r = all_results[0][name]
    assert set(r.errors) == set(checks.ELEMENTS) and max(r.errors.values()) == r.equivariance
    assert r.equivariance < 1e-12 and r.gradcheck and r.gradgradcheck, r


# ----------------------------------------------------------------------------- the checker's own checks
def _graph():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 18, generator=g, dtype=torch.float64)
    positions = 1.2 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    edge_index = torch.tensor(checks._EDGES)
    return x, positions, edge_index


def _convolution(product="grid", irreps=NODE):
    torch.manual_seed(0)
    return EquivariantConvolution(irreps, 2, irreps, radial=4, product=product, hidden=(8,)).double()


def _conv_fn(conv, edge_index, transform=lambda v: v, detach_radial=False):
    radial = checks._radial_features()

    def fn(x, positions):
        vectors = positions[edge_index[0]] - positions[edge_index[1]]
        r = torch.linalg.vector_norm(vectors, dim=-1)
        return conv(x, edge_index, transform(vectors), radial(r.detach() if detach_radial else r))

    return fn


def test_convolution_with_wrongly_rotated_edges_is_detected():
    # a classic bug: edge vectors passed in e3nn's (y, z, x) order where (x, y, z) is expected
    x, positions, edge_index = _graph()
    conv = _convolution()
    fine = check_module(
        "fine", _conv_fn(conv, edge_index), [NODE, "1o"], NODE, inputs=[x, positions], fast_gradcheck=True
    )
    assert fine.passed() and fine.equivariance < 1e-12
    broken = check_module(
        "yzx",
        _conv_fn(conv, edge_index, lambda v: v[..., [1, 2, 0]]),
        [NODE, "1o"],
        NODE,
        inputs=[x, positions],
        fast_gradcheck=True,
    )
    assert broken.errors["rotation"] > 1e-2 and not broken.passed()
    assert broken.errors["inversion"] < 1e-12  # only a rotation can catch it: the check needs all three elements


def test_convolution_ignoring_the_parity_of_its_input_is_detected():
    # built for 1o node features but fed (declared) 1e ones: proper rotations cannot tell, the inversion can
    x, positions, edge_index = _graph()
    fn = _conv_fn(_convolution(), edge_index)
    result = check_module("parity", fn, ["2x0e+2x1e+2x2e", "1o"], NODE, inputs=[x, positions], fast_gradcheck=True)
    assert result.errors["rotation"] < 1e-12 and result.errors["inversion"] > 1e-2 and not result.passed()


def test_gate_forgetting_the_parity_flip_is_detected():
    # a 0o gate turns the gated 1o into 1e; a layer that declared 1o (ignoring parity) must fail
    gate = Gate("1x0e", [torch.tanh], "1x0o", [torch.tanh], "1x1o").double()
    assert str(gate.irreps_out) == "1x0e+1x1e"
    good = check_module("gate", gate, [gate.irreps_in], gate.irreps_out, fast_gradcheck=True)
    assert good.passed()
    bad = check_module("gate", gate, [gate.irreps_in], "1x0e+1x1o", fast_gradcheck=True)
    assert bad.errors["rotation"] < 1e-12 and bad.errors["inversion"] > 1e-2 and not bad.passed()


def test_convolution_with_a_missing_force_term_is_detected():
    # distances detached: the radial part of the forces is lost; values (and equivariance) are unchanged
    _, positions, edge_index = _graph()
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)  # invariant features: small
    torch.manual_seed(0)
    conv = EquivariantConvolution("2x0e", 2, NODE, radial=4, product="gaunt_z", hidden=(8,)).double()
    fn = _conv_fn(conv, edge_index, detach_radial=True)
    result = check_module("detached", fn, ["2x0e", "1o"], NODE, inputs=[x, positions], fast_gradcheck=True)
    assert result.equivariance < 1e-12 and not result.gradcheck and not result.passed()


class _SiLUFirstOrderOnly(torch.autograd.Function):
    """silu whose backward is right but not differentiable (computed from detached values)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.silu(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x.detach())
        return grad * (s * (1 + x.detach() * (1 - s)))


def test_wrong_second_derivative_is_detected():
    layer = NormActivation("2x0e+1x1o+1x2e", _SiLUFirstOrderOnly.apply).double()
    for fast in (False, True):
        result = check_module("once", layer, [layer.irreps_in], layer.irreps_out, fast_gradcheck=fast)
        assert result.equivariance < 1e-12 and result.gradcheck and not result.gradgradcheck and not result.passed()


def test_registered_broken_check_fails_the_run(monkeypatch, capsys):
    monkeypatch.setattr(checks, "REGISTRY", {})
    conv = _convolution()
    x, positions, edge_index = _graph()
    register_check(
        "broken-conv",
        lambda: check_module(
            "broken-conv",
            _conv_fn(conv, edge_index, lambda v: v[..., [1, 2, 0]]),
            [NODE, "1o"],
            NODE,
            inputs=[x, positions],
            fast_gradcheck=True,
        ),
    )
    results, ok = run_checks(only=["broken-conv"])
    assert [r.name for r in results] == ["broken-conv"] and not ok
    assert checks.main(["--only", "broken-conv"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert checks.main(["--only", "RadialMLP", "Bessel*"]) == 0
    out = capsys.readouterr().out
    assert "RadialMLP" in out and "BesselBasis" in out and "all checks passed" in out
    assert checks.main(["--only", "no-such-layer"]) == 2


def test_run_checks_restores_the_thread_count():
    before = torch.get_num_threads()
    run_checks(only=["BesselBasis"], threads=1)
    assert torch.get_num_threads() == before


def test_bad_explicit_inputs_raise():
    x, positions, _ = _graph()
    with pytest.raises(ValueError, match="does not match"):
        check_module("m", lambda a, b: a, [NODE, "1o"], NODE, inputs=[x, positions.float()])
    with pytest.raises(ValueError, match="2 inputs given for 1"):
        check_module("m", lambda a: a, [NODE], NODE, inputs=[x, positions])


def test_detects_a_non_equivariant_module():
    # test the tester: reading the y component as if it were a scalar breaks equivariance
    fn = lambda x: torch.cat([x[:, 2:3], x[:, 1:4]], dim=-1)  # noqa: E731
    result = check_module("broken", fn, ["0e+1o"], "0e+1o")
    assert result.equivariance > 1e-3
    ok = lambda x: torch.cat([x[:, :1] * 2, x[:, 1:4]], dim=-1)  # noqa: E731
    assert check_module("fine", ok, ["0e+1o"], "0e+1o").equivariance < 1e-14


def test_positions_are_1o():
    # the l = 1 basis is Cartesian (x, y, z): a vector is its own 1o irrep, a permuted one is not
    norm = lambda v: torch.cat([torch.linalg.vector_norm(v, dim=-1, keepdim=True), v], dim=-1)  # noqa: E731
    assert check_module("xyz", norm, ["1o"], "0e+1o").equivariance < 1e-14
    yzx = lambda v: torch.cat([torch.linalg.vector_norm(v, dim=-1, keepdim=True), v[:, [1, 2, 0]]], dim=-1)  # noqa: E731
    assert check_module("yzx", yzx, ["1o"], "0e+1o").equivariance > 1e-3


def test_detects_wrong_parity_and_vacuous_output():
    flip = lambda x: x  # noqa: E731  # declared 1o -> 1e: wrong under inversion
    assert check_module("parity", flip, ["1o"], "1e").equivariance > 1.0
    with pytest.raises(AssertionError, match="vacuous"):
        check_module("zero", lambda x: 0 * x, ["1o"], "1o")


def test_detects_wrong_gradient():
    class BadGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g  # should be 2 g

    result = check_module("badgrad", BadGrad.apply, ["2x0e"], "2x0e")
    assert result.equivariance < 1e-14 and not result.gradcheck
    assert not check_module("badgrad", BadGrad.apply, ["2x0e"], "2x0e", fast_gradcheck=True).gradcheck
