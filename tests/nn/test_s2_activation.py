"""gaunt.nn.S2Activation: exact projection for the identity, exact Gaunt coefficients for phi = x^2,
equivariance (exact for polynomials, converging with the resolution otherwise, exact under
inversion), parity rules, e3nn cross-check, gradients, batching, errors and torch.compile."""

from __future__ import annotations

import pytest
import torch
from e3nn import nn as e3nn_nn
from e3nn import o3

from gaunt.nn import S2Activation
from gaunt.so3 import Irreps, gaunt_coefficients

IDENTITY = lambda x: x  # noqa: E731
SQUARE = lambda x: x * x  # noqa: E731
CUBE = lambda x: x * x * x  # noqa: E731


def _channels(irreps: str, mul: int) -> Irreps:
    return Irreps([(mul, ir) for _, ir in Irreps(irreps)])


@pytest.mark.parametrize("lmax_out", [1, 3, 5])
def test_identity_is_the_exact_projection(lmax_out, features) -> None:
    irreps = _channels("0e+1o+2e+3o", 3)
    layer = S2Activation(irreps, IDENTITY, lmax_out=lmax_out, resolution=3 + lmax_out)  # the minimum resolution
    x = features(irreps, 4)
    dense = torch.zeros(4, 3, 36, dtype=torch.float64)  # [batch, u, lm] up to l = 5
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        dense[:, :, ir.l**2 : (ir.l + 1) ** 2] = x[:, sl].reshape(4, 3, ir.dim)
    expected = torch.cat([dense[:, :, l * l : (l + 1) ** 2].flatten(1) for l in range(lmax_out + 1)], dim=-1)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-13)


def test_missing_degrees_read_as_zero(features) -> None:
    full = S2Activation(_channels("0e+1o+2e", 2), torch.tanh, resolution=20)
    sparse = S2Activation(_channels("0e+2e", 2), torch.tanh, resolution=20)
    x = features(sparse.irreps_in, 3)
    x_full = torch.cat([x[:, :2], torch.zeros(3, 6, dtype=torch.float64), x[:, 2:]], dim=-1)
    torch.testing.assert_close(sparse(x), full(x_full), rtol=0, atol=1e-14)


def test_square_gives_the_gaunt_coefficients(features) -> None:
    """phi = x^2 is a degree-2 polynomial: at resolution 2 lmax_in + lmax_out the layer is exactly
    y[l3 m3] = sum x[l1 m1] x[l2 m2] Gaunt(l1 m1, l2 m2, l3 m3)."""
    lmax, lmax_out, mul = 3, 4, 2
    irreps = _channels(str(Irreps.spherical_harmonics(lmax)), mul)
    layer = S2Activation(irreps, SQUARE, lmax_out=lmax_out, resolution=2 * lmax + lmax_out)
    x = features(irreps, 3)
    blocks = [x[:, sl].reshape(3, mul, 2 * l + 1) for l, sl in zip(range(lmax + 1), irreps.slices())]
    expected = []
    for l3 in range(lmax_out + 1):
        y = torch.zeros(3, mul, 2 * l3 + 1, dtype=torch.float64)
        for l1 in range(lmax + 1):
            for l2 in range(lmax + 1):
                if abs(l1 - l2) <= l3 <= l1 + l2:
                    y += torch.einsum("bui,buj,ijk->buk", blocks[l1], blocks[l2], gaunt_coefficients(l1, l2, l3))
        expected.append(y.flatten(1))
    torch.testing.assert_close(layer(x), torch.cat(expected, dim=-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "irreps,phi,degree,out_parities",
    [
        ("0e+1o+2e+3o", CUBE, 3, "ordinary"),
        ("0o+1e+2o", CUBE, 3, "pseudo"),  # odd phi keeps pseudo
        ("0o+1e+2o", SQUARE, 2, "ordinary"),  # even phi makes it ordinary
        ("1o+3o", SQUARE, 2, "ordinary"),
    ],
)
def test_polynomial_activation_is_exactly_equivariant(
    irreps, phi, degree, out_parities, features, check_equivariant
) -> None:
    irreps = _channels(irreps, 2)
    lmax = irreps.lmax
    layer = S2Activation(irreps, phi, lmax_out=lmax + 1, resolution=degree * lmax + lmax + 1)
    sign = 1 if out_parities == "ordinary" else -1
    assert layer.irreps_out == Irreps([(2, (l, sign * (-1) ** l)) for l in range(lmax + 2)])
    check_equivariant(layer, features(irreps, 4), irreps, layer.irreps_out)


def test_equivariance_error_decreases_with_resolution(features, check_equivariant) -> None:
    """tanh is not a polynomial: the rotation error shrinks geometrically with the grid; inversion is exact."""
    irreps = _channels("0e+1o+2e", 2)
    x = features(irreps, 8)
    errors = []
    for resolution in (8, 16, 32, 64):
        layer = S2Activation(irreps, torch.tanh, resolution=resolution)
        errors.append(check_equivariant(layer, x, irreps, layer.irreps_out, tol=1.0))
        minus = torch.cat([x[:, :2], -x[:, 2:8], x[:, 8:]], dim=-1)  # D(-I) on 0e+1o+2e
        out = layer(x)
        out_minus = torch.cat([out[:, :2], -out[:, 2:8], out[:, 8:]], dim=-1)
        torch.testing.assert_close(layer(minus), out_minus, rtol=0, atol=1e-14)
    assert all(b < a / 4 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-8, errors
    # the default resolution is accurate to ~1e-5 at lmax 2
    default = S2Activation(irreps, torch.tanh)
    assert check_equivariant(default, x, irreps, default.irreps_out, tol=1e-3) < 1e-3


def test_matches_e3nn_at_high_resolution(features) -> None:
    """e3nn's S2Activation with 'integral' normalisation and its 2nd-moment constant removed computes the
    same integral; its grid quadrature is itself only ~2e-7 accurate (it reproduces the identity to 2.5e-7)."""
    irreps = Irreps("0e+1o+2e")
    ref = e3nn_nn.S2Activation(o3.Irreps(irreps), torch.tanh, res=100, normalization="integral").double()
    ref.act.cst, ref.act._is_id = 1.0, True
    ours = S2Activation(irreps, torch.tanh, resolution=96)
    x = features(irreps, 5)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_gradcheck_batch_empty_and_float32(features) -> None:
    layer = S2Activation(_channels("0e+1o", 2), torch.tanh, lmax_out=2, resolution=6)
    x = features(layer.irreps_in, 1).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))
    xb = features(layer.irreps_in, 2, 3)
    torch.testing.assert_close(layer(xb), layer(xb.reshape(6, -1)).reshape(2, 3, -1), rtol=1e-14, atol=1e-14)
    assert layer(xb[:0]).shape == (0, 3, layer.irreps_out.dim)
    out32 = layer(xb.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), layer(xb), rtol=0, atol=1e-5)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="irrep 1e has parity \\+1"):
        S2Activation("0e+1e+2e", torch.tanh)
    with pytest.raises(ValueError, match="irrep 0o.*neither"):
        S2Activation("0o+1e", torch.sigmoid)
    with pytest.raises(ValueError, match="block 1x1o has multiplicity 1"):
        S2Activation("2x0e+1x1o", torch.tanh)
    with pytest.raises(ValueError, match="irrep 1o repeats or is out of order"):
        S2Activation("0e+2e+1o", torch.tanh)
    with pytest.raises(ValueError, match="empty"):
        S2Activation("", torch.tanh)
    with pytest.raises(ValueError, match="resolution must be an integer >= lmax_in \\+ lmax_out = 4"):
        S2Activation("0e+1o+2e", torch.tanh, resolution=3)
    layer = S2Activation("0e+1o", torch.tanh)
    with pytest.raises(ValueError, match="last dimension of 4"):
        layer(torch.zeros(2, 5, dtype=torch.float64))


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_matches_eager(backend, features) -> None:
    layer = S2Activation(_channels("0e+1o+2e", 2), torch.tanh, resolution=12)
    x = features(layer.irreps_in, 4)
    compiled = torch.compile(layer, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(x), layer(x), rtol=1e-12, atol=1e-12)
