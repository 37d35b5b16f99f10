"""gaunt.nn.Linear: equality with e3nn o3.Linear (same weights), equivariance, gradients, batching,
external and per-sample weights, biases, errors and torch.compile."""

from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3

from gaunt.nn import Linear
from gaunt.so3 import Irreps

CONFIGS = [
    ("3x0e+2x1o+4x0e+1x2e", "2x0e+3x1o+2x2e+1x0e+1x3o"),  # repeated types, an output with no input
    ("4x0e+3x1o+2x2e+2x3o+1x4e+1x5o+2x6e", "2x0e+1x1o+3x2e+1x3o+2x4e+2x5o+1x6e"),  # L = 6, mixed muls
    ("2x1o+3x1o+0e+2x1e", "4x1o+1x1o+1x1e+1x0o"),
    ("8x0o+4x2o", "3x2o+5x0o"),
]


def _pair(irreps_in, irreps_out, **kwargs):
    torch.manual_seed(0)
    ours = Linear(irreps_in, irreps_out, **kwargs).double()
    ref = o3.Linear(irreps_in, irreps_out, **kwargs).double()
    assert ours.weight_numel == ref.weight_numel and ours.bias_numel == ref.bias_numel
    return ours, ref


@pytest.mark.parametrize("irreps_in,irreps_out", CONFIGS)
@pytest.mark.parametrize("biases", [False, True])
def test_matches_e3nn_internal_weights(irreps_in, irreps_out, biases, features) -> None:
    ours, ref = _pair(irreps_in, irreps_out, biases=biases)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
        ours.bias.normal_()
        ref.bias.copy_(ours.bias)
    x = features(irreps_in, 5, 2)
    out = ours(x)
    assert out.shape == (5, 2, Irreps(irreps_out).dim)
    torch.testing.assert_close(out, ref(x), rtol=1e-10, atol=1e-10)
    assert out.abs().max() > 0.1


@pytest.mark.parametrize("irreps_in,irreps_out", CONFIGS[:2])
def test_matches_e3nn_external_weights(irreps_in, irreps_out, features) -> None:
    ours, ref = _pair(irreps_in, irreps_out, internal_weights=False, shared_weights=True, biases=True)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(ours.weight_numel, generator=g, dtype=torch.float64)
    b = torch.randn(ours.bias_numel, generator=g, dtype=torch.float64)
    x = features(irreps_in, 6)
    torch.testing.assert_close(ours(x, w, b), ref(x, w, b), rtol=1e-10, atol=1e-10)
    # per-sample weights
    ours, ref = _pair(irreps_in, irreps_out, shared_weights=False)
    w = torch.randn(6, ours.weight_numel, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ours(x, w), ref(x, w), rtol=1e-10, atol=1e-10)


def test_closed_form_normalisation_and_unconnected_outputs() -> None:
    lin = Linear("2x0e+1x1o", "0e+1x2e", biases=True).double()
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.fill_(0.5)
    x = torch.tensor([[3.0, 4.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    expected = torch.tensor([[7.0 / math.sqrt(2.0) + 0.5, 0, 0, 0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(lin(x), expected, rtol=0, atol=1e-14)
    # an output with no input of its type carries only its bias (e3nn cannot build this one)
    lin = Linear("4x1o", "2x0e", biases=True).double()
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([1.0, -2.0]))
    expected = torch.tensor([[1.0, -2.0]] * 3, dtype=torch.float64)
    torch.testing.assert_close(lin(torch.randn(3, 12, dtype=torch.float64)), expected, rtol=0, atol=0)


@pytest.mark.parametrize("irreps_in,irreps_out", CONFIGS)
def test_equivariance(irreps_in, irreps_out, features, check_equivariant) -> None:
    lin = Linear(irreps_in, irreps_out, biases=True).double()
    with torch.no_grad():
        lin.bias.normal_()
    check_equivariant(lin, features(irreps_in, 4), irreps_in, irreps_out)
    lin32 = Linear(irreps_in, irreps_out)
    check_equivariant(lin32, features(irreps_in, 4, dtype=torch.float32), irreps_in, irreps_out)


def test_equivariance_check_is_not_vacuous(features, check_equivariant) -> None:
    irreps = Irreps("2x0e+2x1o")
    mixing = torch.randn(irreps.dim, irreps.dim, dtype=torch.float64)  # mixes m components: not equivariant
    with pytest.raises(AssertionError, match="not equivariant"):
        check_equivariant(lambda x: x @ mixing, features(irreps, 3), irreps, irreps)
    with pytest.raises(AssertionError, match="vacuously"):
        check_equivariant(lambda x: 0 * x, features(irreps, 3), irreps, irreps)


def test_gradcheck_and_gradgradcheck(features) -> None:
    lin = Linear("2x0e+2x1o+1x0e", "3x0e+1x1o", internal_weights=False, biases=True)
    x = features(lin.irreps_in, 3).requires_grad_()
    g = torch.Generator().manual_seed(2)
    w = torch.randn(lin.weight_numel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(lin.bias_numel, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lin, (x, w, b))
    assert torch.autograd.gradgradcheck(lin, (x, w, b))
    per_sample = Linear("2x0e+1x1o", "1x0e+2x1o", shared_weights=False)
    x = features(per_sample.irreps_in, 3).requires_grad_()
    w = torch.randn(3, per_sample.weight_numel, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(per_sample, (x, w))
    assert torch.autograd.gradgradcheck(per_sample, (x, w))


def test_batch_dims_broadcasting_and_empty(features) -> None:
    lin = Linear("3x0e+2x1o", "2x0e+2x1o", biases=True).double()
    x = features(lin.irreps_in, 2, 3)
    out = lin(x)
    torch.testing.assert_close(out, lin(x.reshape(6, -1)).reshape(2, 3, -1), rtol=1e-14, atol=1e-14)
    assert lin(x[:0]).shape == (0, 3, lin.irreps_out.dim)
    assert lin(features(lin.irreps_in, 0)).shape == (0, lin.irreps_out.dim)
    assert lin(features(lin.irreps_in)).shape == (lin.irreps_out.dim,)
    # per-sample weights [2, 1, n] broadcast against x [2, 3, dim]
    per = Linear("3x0e+2x1o", "2x0e+2x1o", shared_weights=False)
    w = torch.randn(2, 1, per.weight_numel, dtype=torch.float64)
    out = per(x, w)
    for i in range(2):
        torch.testing.assert_close(out[i], per(x[i], w[i, 0]), rtol=1e-13, atol=1e-13)
    assert per(x[:0], w[:0]).shape == (0, 3, per.irreps_out.dim)


def test_float32_module_accepts_float64_input(features) -> None:
    lin = Linear("2x0e+1x1o", "1x0e+2x1o", biases=True)  # float32 parameters
    x = features(lin.irreps_in, 3)
    out = lin(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, lin.double()(x), rtol=0, atol=0)


def test_empty_irreps() -> None:
    assert Linear("", "2x0e")(torch.zeros(4, 0)).shape == (4, 2)
    assert Linear("2x0e", "")(torch.zeros(4, 2)).shape == (4, 0)
    assert Linear("2x1o", "2x0e").weight_numel == 0


def test_bad_inputs_raise(features) -> None:
    lin = Linear("2x0e+1x1o", "1x0e")
    with pytest.raises(ValueError, match="last dimension of 5"):
        lin(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="floating point"):
        lin(torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="weights are internal"):
        lin(torch.zeros(3, 5), torch.zeros(lin.weight_numel))
    with pytest.raises(ValueError, match="bias on output irrep 1o"):
        Linear("1o", "1o", biases=[True])
    with pytest.raises(ValueError, match="biases has 1 entries"):
        Linear("1o", "1o+0e", biases=[False])
    with pytest.raises(ValueError, match="internal_weights=True requires shared_weights=True"):
        Linear("1o", "1o", internal_weights=True, shared_weights=False)
    ext = Linear("2x0e+1x1o", "1x0e+1x1o", internal_weights=False)
    with pytest.raises(ValueError, match="pass weight"):
        ext(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 3\]"):
        ext(torch.zeros(3, 5), torch.zeros(4))
    with pytest.raises(ValueError, match="shared weight must have shape"):
        ext(torch.zeros(3, 5), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="weight is on cpu but x is on meta"):
        ext(torch.zeros(3, 5, device="meta"), torch.zeros(3))


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_matches_eager(backend, features) -> None:
    lin = Linear("3x0e+2x1o+1x0e+1x2e", "2x0e+2x1o+1x2e", biases=True).double()
    x = features(lin.irreps_in, 4)
    compiled = torch.compile(lin, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(x), lin(x), rtol=1e-12, atol=1e-12)
