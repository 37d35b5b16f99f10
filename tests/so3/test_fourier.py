import math
import time

import pytest
import torch

from gaunt.so3 import (
    fourier_basis,
    fourier_to_sh,
    gaunt_coefficients,
    sh_to_fourier,
    spherical_harmonics,
    synthesis_coefficients,
)

pytestmark = pytest.mark.usefixtures("float64_default")


def _evaluate(coefficients, theta, phi):
    """f(theta, phi) = sum_uv F[u, v] exp(i(u theta + v phi)) for centred grids."""
    lu, lv = coefficients.shape[-2] // 2, coefficients.shape[-1] // 2
    u = torch.arange(-lu, lu + 1, dtype=theta.dtype)
    v = torch.arange(-lv, lv + 1, dtype=theta.dtype)
    e = torch.exp(1j * (u[None, :, None] * theta[:, None, None] + v[None, None, :] * phi[:, None, None]))
    return torch.einsum("...uv,puv->...p", coefficients, e)


@pytest.mark.parametrize("lmax", [0, 1, 4, 9])
def test_synthesis_reproduces_harmonics(lmax):
    g = torch.Generator().manual_seed(lmax)
    x = torch.randn(3, (lmax + 1) ** 2, generator=g)
    theta, phi = torch.rand(40, generator=g) * math.pi, torch.rand(40, generator=g) * 2 * math.pi
    points = torch.stack([theta.sin() * phi.sin(), theta.cos(), theta.sin() * phi.cos()], -1)
    values = _evaluate(sh_to_fourier(x, lmax), theta, phi)
    torch.testing.assert_close(values.real, x @ spherical_harmonics(lmax, points).T, atol=1e-13, rtol=0)
    assert values.imag.abs().max() < 1e-13


def test_synthesis_is_sparse_in_v():
    lmax = 5
    y = synthesis_coefficients(lmax).to_dense()  # [(L+1)^2, 2L+1 (u), 2L+1 (v)]
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            row = y[l * l + l + m]
            allowed = torch.zeros(2 * lmax + 1, dtype=torch.bool)
            allowed[lmax + m] = allowed[lmax - m] = True
            assert row[:, ~allowed].abs().max() == 0
            assert row[:, allowed].abs().max() > 0
            assert row[: lmax - l].abs().max() == 0 if l < lmax else True  # |u| <= l


@pytest.mark.parametrize("lmax", [1, 6, 16])
def test_round_trip(lmax):
    x = torch.randn(2, 3, (lmax + 1) ** 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fourier_to_sh(sh_to_fourier(x, lmax), lmax), x, atol=1e-12, rtol=0)
    # projecting onto fewer degrees keeps the low ones; a zero-padded (wider) grid changes nothing
    torch.testing.assert_close(fourier_to_sh(sh_to_fourier(x, lmax), lmax - 1), x[..., : lmax**2], atol=1e-12, rtol=0)
    wide = torch.nn.functional.pad(sh_to_fourier(x, lmax), (3, 3, 5, 5))
    torch.testing.assert_close(fourier_to_sh(wide, lmax), x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("l1,l2", [(0, 3), (2, 2), (3, 4), (5, 6)])
def test_product_by_convolution_gives_gaunt(l1, l2):
    """The paper's identity: SH -> Fourier, 2D convolution, Fourier -> SH is the Gaunt contraction."""
    g = torch.Generator().manual_seed(l1 * 7 + l2)
    a, b = torch.randn(2 * l1 + 1, generator=g), torch.randn(2 * l2 + 1, generator=g)
    x1 = torch.zeros((l1 + 1) ** 2)
    x1[l1 * l1 :] = a
    x2 = torch.zeros((l2 + 1) ** 2)
    x2[l2 * l2 :] = b
    f1, f2 = sh_to_fourier(x1, l1), sh_to_fourier(x2, l2)
    n1, n2 = f1.shape[-1], f2.shape[-1]
    size = n1 + n2 - 1
    product = torch.fft.ifft2(torch.fft.fft2(f1, (size, size)) * torch.fft.fft2(f2, (size, size)))
    l3max = l1 + l2 + 1
    out = fourier_to_sh(product, l3max)
    for l3 in range(l3max + 1):
        expected = torch.einsum("a,b,abc->c", a, b, gaunt_coefficients(l1, l2, l3))
        torch.testing.assert_close(out[l3 * l3 : (l3 + 1) ** 2], expected, atol=1e-13, rtol=0)


def test_gradients_and_float32():
    x = torch.randn(2, 9, generator=torch.Generator().manual_seed(1), requires_grad=True)
    f = lambda t: fourier_to_sh(sh_to_fourier(t, 2) * 1.5, 2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))
    x32 = x.detach().float()
    torch.testing.assert_close(fourier_to_sh(sh_to_fourier(x32, 2), 2), x32, atol=1e-6, rtol=0)


def test_build_time_and_cache():
    fourier_basis.cache_clear()
    start = time.perf_counter()
    basis = fourier_basis(16, 32)
    assert time.perf_counter() - start < 1.0  # generous: about 10 ms here
    assert fourier_basis(16, 32) is basis


def test_bad_input():
    with pytest.raises(ValueError, match="last dimension"):
        sh_to_fourier(torch.randn(10), 2)
    with pytest.raises(ValueError, match="odd"):
        fourier_to_sh(torch.zeros(4, 5, dtype=torch.complex128), 2)
