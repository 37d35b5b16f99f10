"""gaunt.nn.activation: second-moment constants, parity detection, Gate and NormActivation against
e3nn, equivariance, gradients, batching, errors and torch.compile."""

from __future__ import annotations

import math

import pytest
import scipy.integrate
import torch
import torch.nn.functional as F
from e3nn import nn as e3nn_nn
from e3nn import o3
from e3nn.math import normalize2mom

from gaunt.nn import Gate, NormActivation
from gaunt.nn.activation import activation_parity, second_moment


def _exact_second_moment(f) -> float:
    """E[f(z)^2] by adaptive scipy quadrature (an independent reference)."""

    def g(z: float) -> float:
        return float(f(torch.tensor(z, dtype=torch.float64))) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    return sum(scipy.integrate.quad(g, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0] for a, b in [(-14, 0), (0, 14)])


@pytest.mark.parametrize(
    "f,closed_form",
    [(torch.relu, 0.5), (lambda x: x, 1.0), (lambda x: x * x, 3.0), (torch.abs, 1.0), (lambda x: x**3, 15.0)],
)
def test_second_moment_closed_forms(f, closed_form) -> None:
    assert abs(second_moment(f) - closed_form) <= 1e-13 * closed_form


@pytest.mark.parametrize("f", [torch.tanh, F.silu, torch.sigmoid, F.gelu, F.relu6, F.hardtanh])
def test_second_moment_matches_scipy_and_e3nn(f) -> None:
    ours = second_moment(f)
    assert abs(ours - _exact_second_moment(f)) <= 1e-11 * ours
    # e3nn's normalize2mom estimates the same by Monte Carlo with 10^6 samples: ~1e-3 relative
    assert abs(normalize2mom(f).cst * math.sqrt(ours) - 1.0) < 5e-3


def test_activation_parity() -> None:
    assert activation_parity(torch.tanh) == -1
    assert activation_parity(torch.abs) == 1
    assert activation_parity(lambda x: x * x) == 1
    assert activation_parity(torch.sigmoid) == 0
    assert activation_parity(F.silu) == 0


GATE_CONFIGS = [
    # scalars (with a 0o scalar through odd and even acts), gates (0o gate flips the parity of what it gates)
    ("4x0e+2x0o+1x0o", [F.silu, torch.tanh, torch.abs], "3x0e+2x0o", [torch.sigmoid, torch.tanh], "2x1o+1x2e+2x1e"),
    ("8x0e", [torch.relu], "4x0e", [torch.sigmoid], "2x1o+2x1e"),
    ("2x0e", [None], "", [], ""),
    ("", [], "3x0e", [torch.tanh], "3x1e"),
    ("3x0e", [F.silu], "1x0e+3x0e", [torch.sigmoid, torch.tanh], "2x3o+1x6e+1x1o"),
]


def _e3nn_gate_with_our_constants(ours: Gate, args) -> torch.nn.Module:
    """e3nn's Gate with its Monte-Carlo normalisation constants replaced by ours (same configuration)."""
    ref = e3nn_nn.Gate(*args)
    for mine, theirs in [(ours.act_scalars, ref.act_scalars), (ours.act_gates, ref.act_gates)]:
        mine_acts = iter(mine.acts)
        for act in theirs.acts:
            if act is not None:
                act.cst, act._is_id = next(mine_acts).constant, False
    return ref


@pytest.mark.parametrize("config", GATE_CONFIGS)
def test_gate_matches_e3nn(config, features) -> None:
    ours = Gate(*config)
    ref = _e3nn_gate_with_our_constants(ours, config)
    assert ours.irreps_in == ref.irreps_in and ours.irreps_out == ref.irreps_out
    x = features(ours.irreps_in, 7, seed=3)
    out = ours(x)
    torch.testing.assert_close(out, ref(x), rtol=1e-10, atol=1e-10)
    assert out.abs().max() > 0.1


def test_gate_default_constants_close_to_e3nn(features) -> None:
    """Without patching, e3nn's Monte-Carlo constants differ from the exact ones by ~1e-3 relative."""
    config = GATE_CONFIGS[1]
    ours, ref = Gate(*config), e3nn_nn.Gate(*config)
    x = features(ours.irreps_in, 50)
    diff = (ours(x) - ref(x)).abs().max() / ref(x).abs().max()
    assert 1e-5 < diff < 5e-3


def test_gate_layout_and_formula() -> None:
    """irreps_in is e3nn's sorted layout: 0e scalars, then 0e gates, then the gated irreps."""
    gate = Gate("1x0e", [None], "2x0e", [None], "1x1o+1x1e", normalize_act=False).double()
    assert str(gate.irreps_in) == "3x0e+1x1o+1x1e" and str(gate.irreps_out) == "1x0e+1x1o+1x1e"
    x = torch.tensor([5.0, 2.0, -3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    expected = torch.tensor([5.0, 2.0, 4.0, 6.0, -12.0, -15.0, -18.0], dtype=torch.float64)
    torch.testing.assert_close(gate(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("config", [GATE_CONFIGS[0], GATE_CONFIGS[4]])
def test_gate_equivariance(config, features, check_equivariant) -> None:
    gate = Gate(*config)
    check_equivariant(gate, features(gate.irreps_in, 5), gate.irreps_in, gate.irreps_out)
    check_equivariant(gate, features(gate.irreps_in, 5, dtype=torch.float32), gate.irreps_in, gate.irreps_out)


def test_gate_gradcheck_batch_and_empty(features) -> None:
    gate = Gate("2x0e+1x0o", [F.silu, torch.tanh], "2x0e", [torch.sigmoid], "1x1o+1x2e")
    x = features(gate.irreps_in, 3).requires_grad_()
    assert torch.autograd.gradcheck(gate, (x,))
    assert torch.autograd.gradgradcheck(gate, (x,))
    xb = features(gate.irreps_in, 2, 3)
    torch.testing.assert_close(gate(xb), gate(xb.reshape(6, -1)).reshape(2, 3, -1), rtol=1e-14, atol=1e-14)
    assert gate(xb[:0]).shape == (0, 3, gate.irreps_out.dim)


def test_gate_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="3 irreps but irreps_gates 2x0e has 2 gates"):
        Gate("0e", [torch.relu], "2x0e", [torch.sigmoid], "3x1o")
    with pytest.raises(ValueError, match="irreps_scalars must be scalars.*1o"):
        Gate("1o", [torch.relu], "", [], "")
    with pytest.raises(ValueError, match="irreps_gates must be scalars.*2e"):
        Gate("", [], "2e", [torch.relu], "1o")
    with pytest.raises(ValueError, match="pseudoscalar 0o but its activation is neither even nor odd"):
        Gate("2x0o", [torch.sigmoid], "", [], "")
    with pytest.raises(ValueError, match="2 blocks but 1 activations"):
        Gate("2x0e+1x0o", [torch.relu], "", [], "")
    gate = Gate("2x0e", [torch.relu], "1x0e", [torch.sigmoid], "1x1o")
    with pytest.raises(ValueError, match="last dimension of 6"):
        gate(torch.zeros(2, 5))


IRREPS_NORM = "2x0e+3x1o+2x2e+1x0o+1x3o"


def test_norm_activation_matches_e3nn(features) -> None:
    ours = NormActivation(IRREPS_NORM, torch.sigmoid).double()
    ref = e3nn_nn.NormActivation(o3.Irreps(IRREPS_NORM), torch.sigmoid, bias=True).double()
    with torch.no_grad():
        ours.bias.normal_()
        ref.biases.copy_(ours.bias)
    x = features(IRREPS_NORM, 6, seed=4)
    x[0, 2:5] = 0.0  # a zero vector: both clamp its norm at epsilon
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-10, atol=1e-10)


def test_norm_activation_without_normalize_closed_form(features) -> None:
    """normalize=False: y_c = f(|x_c| + b_c) x_c (e3nn 0.6.0 cannot construct this mode: its epsilon check fails)."""
    ours = NormActivation("2x0e+1x1o+1x2e", torch.tanh, normalize=False).double()
    with torch.no_grad():
        ours.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4]))
    x = features(ours.irreps_in, 3)
    blocks = [x[:, 0:1], x[:, 1:2], x[:, 2:5], x[:, 5:10]]
    expected = torch.cat([torch.tanh(v.norm(dim=-1, keepdim=True) + b) * v for v, b in zip(blocks, ours.bias)], dim=-1)
    torch.testing.assert_close(ours(x), expected, rtol=1e-14, atol=1e-14)


def test_norm_activation_formula_and_zero_gradient() -> None:
    act = NormActivation("1x1o", torch.tanh, bias=False).double()
    x = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(act(x), math.tanh(5.0) * x.detach() / 5.0, rtol=0, atol=1e-15)
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (jac,) = torch.autograd.functional.jacobian(act, (zero,))
    eps = act.epsilon
    torch.testing.assert_close(jac, math.tanh(eps) / eps * torch.eye(3, dtype=torch.float64), rtol=1e-12, atol=0)
    assert torch.isfinite(jac).all()


def test_norm_activation_equivariance_gradcheck_batch(features, check_equivariant) -> None:
    act = NormActivation(IRREPS_NORM, F.silu).double()
    with torch.no_grad():
        act.bias.normal_()
    check_equivariant(act, features(IRREPS_NORM, 5), IRREPS_NORM, IRREPS_NORM)
    small = NormActivation("1x0e+2x1o+1x2e", torch.sigmoid).double()
    x = features(small.irreps_in, 2).requires_grad_()
    assert torch.autograd.gradcheck(small, (x,))
    assert torch.autograd.gradgradcheck(small, (x,))
    xb = features(IRREPS_NORM, 2, 3)
    torch.testing.assert_close(act(xb), act(xb.reshape(6, -1)).reshape(2, 3, -1), rtol=1e-14, atol=1e-14)
    assert act(xb[:0]).shape == (0, 3, act.irreps_out.dim)
    with pytest.raises(ValueError, match="last dimension of"):
        act(torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        NormActivation("1o", torch.tanh, epsilon=0.0)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_matches_eager(backend, features) -> None:
    gate = Gate(*GATE_CONFIGS[0])
    x = features(gate.irreps_in, 4)
    compiled = torch.compile(gate, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(x), gate(x), rtol=1e-12, atol=1e-12)
    act = NormActivation(IRREPS_NORM, torch.sigmoid).double()
    x = features(IRREPS_NORM, 4)
    compiled = torch.compile(act, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(x), act(x), rtol=1e-12, atol=1e-12)
