import math

import pytest
import torch
from e3nn import o3

from gaunt.so3 import random_rotation, spherical_grid, spherical_harmonics, wigner_d

pytestmark = pytest.mark.usefixtures("float64_default")  # float64 for this module only (no leak)


def _vectors(n=200, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=dtype)


@pytest.mark.parametrize("normalization", ["integral", "component", "norm"])
@pytest.mark.parametrize("normalize", [True, False])
def test_equals_e3nn(normalization, normalize):
    x = _vectors()
    lmax = 11
    ours = spherical_harmonics(lmax, x, normalization=normalization, normalize=normalize)
    ref = o3.spherical_harmonics(list(range(lmax + 1)), x, normalize, normalization=normalization)
    for l in range(lmax + 1):
        block = slice(l * l, (l + 1) ** 2)
        scale = ref[:, block].abs().max()
        torch.testing.assert_close(ours[:, block] / scale, ref[:, block] / scale, atol=1e-12, rtol=0)


@pytest.mark.parametrize("lmax", [1, 4, 11, 20, 32])
def test_rotation_equivariance(lmax):
    x = _vectors(50, seed=1)
    rotations = random_rotation(3, generator=torch.Generator().manual_seed(2))
    y = spherical_harmonics(lmax, x, normalization="component")
    for R in rotations:
        y_rot = spherical_harmonics(lmax, x @ R.T, normalization="component")
        for l in range(lmax + 1):
            block = slice(l * l, (l + 1) ** 2)
            expected = y[:, block] @ wigner_d(l, R).T
            torch.testing.assert_close(y_rot[:, block], expected, atol=1e-12 * math.sqrt(2 * l + 1), rtol=0)


def test_parity_and_homogeneity():
    x = _vectors(20)
    lmax = 9
    y = spherical_harmonics(lmax, x, normalize=False)
    y_neg = spherical_harmonics(lmax, -x, normalize=False)
    y_scaled = spherical_harmonics(lmax, 2.5 * x, normalize=False)
    for l in range(lmax + 1):
        block = slice(l * l, (l + 1) ** 2)
        torch.testing.assert_close(y_neg[:, block], (-1) ** l * y[:, block], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(y_scaled[:, block], 2.5**l * y[:, block], atol=1e-10, rtol=1e-12)


@pytest.mark.parametrize("lmax", [3, 16, 32])
def test_normalisations(lmax):
    grid = spherical_grid(2 * lmax)
    y = spherical_harmonics(lmax, grid.points, normalization="integral")
    gram = torch.einsum("g,ga,gb->ab", grid.weights, y, y)
    torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-12, rtol=0)
    x = _vectors(10)
    comp = spherical_harmonics(lmax, x, normalization="component")
    norm = spherical_harmonics(lmax, x, normalization="norm")
    for l in range(lmax + 1):
        block = slice(l * l, (l + 1) ** 2)
        torch.testing.assert_close(comp[:, block].pow(2).sum(-1), torch.full((10,), 2.0 * l + 1), atol=1e-10, rtol=0)
        torch.testing.assert_close(norm[:, block].pow(2).sum(-1), torch.ones(10), atol=1e-12, rtol=0)


def test_float32_and_shapes():
    x = _vectors(12).reshape(2, 2, 3, 3)
    y64 = spherical_harmonics(6, x)
    y32 = spherical_harmonics(6, x.float())
    assert y32.dtype == torch.float32 and y64.shape == (2, 2, 3, 49)
    torch.testing.assert_close(y32.double(), y64, atol=1e-5, rtol=1e-5)
    assert spherical_harmonics(3, torch.zeros(0, 3)).shape == (0, 16)


def test_gradients():
    x = _vectors(4).requires_grad_(True)
    for normalize in (True, False):
        f = lambda v: spherical_harmonics(5, v, normalize=normalize)  # noqa: E731
        assert torch.autograd.gradcheck(f, (x,))
        assert torch.autograd.gradgradcheck(f, (x,))


def test_bad_input():
    x = _vectors(3)
    with pytest.raises(ValueError, match="lmax"):
        spherical_harmonics(-1, x)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        spherical_harmonics(2, torch.randn(3, 4))
    with pytest.raises(ValueError, match="zero-length"):
        spherical_harmonics(2, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="floating"):
        spherical_harmonics(2, torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(2, x, normalization="unit")
    # zero vectors are fine without normalisation: the solid harmonics vanish there for l > 0
    y = spherical_harmonics(2, torch.zeros(1, 3), normalize=False)
    assert torch.all(y[:, 1:] == 0) and y[0, 0] > 0
