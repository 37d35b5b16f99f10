import pytest
import torch

from gaunt.so3 import exactness_degree, grid_shape, spherical_grid, spherical_harmonics


@pytest.mark.parametrize("degree", [0, 1, 4, 7, 12, 30])
def test_exact_up_to_degree(degree):
    grid = spherical_grid(degree)
    assert exactness_degree(*grid_shape(degree)) >= degree
    torch.testing.assert_close(grid.weights.sum(), torch.tensor(4 * torch.pi, dtype=torch.float64), atol=1e-13, rtol=0)
    # every product Y_a Y_b with l_a + l_b <= degree integrates to delta_ab
    lmax = degree // 2
    y = spherical_harmonics(degree, grid.points)
    gram = torch.einsum("g,ga,gb->ab", grid.weights, y[:, : (lmax + 1) ** 2], y)
    expected = torch.eye((lmax + 1) ** 2, (degree + 1) ** 2, dtype=torch.float64)
    # only pairs with total degree <= degree are covered by the guarantee
    ls = torch.tensor([l for l in range(degree + 1) for _ in range(2 * l + 1)])
    mask = ls[: (lmax + 1) ** 2, None] + ls[None, :] <= degree
    torch.testing.assert_close(gram[mask], expected[mask], atol=1e-13, rtol=0)


@pytest.mark.parametrize("degree", [2, 5, 10])
def test_not_exact_beyond_degree(degree):
    # test the tester: one degree more than the grid is built for must fail somewhere
    grid = spherical_grid(degree)
    top = degree + 1
    y = spherical_harmonics(top, grid.points)
    gram = torch.einsum("g,ga,gb->ab", grid.weights, y, y)
    ls = torch.tensor([l for l in range(top + 1) for _ in range(2 * l + 1)])
    mask = ls[:, None] + ls[None, :] == top
    assert (gram[mask] - torch.eye(gram.shape[0], dtype=torch.float64)[mask]).abs().max() > 1e-3


def test_cache_dtype_and_errors():
    g32 = spherical_grid(6, dtype=torch.float32)
    assert g32.points.dtype == torch.float32 and spherical_grid(6) is spherical_grid(6)
    assert spherical_grid(6, n_theta=10, n_phi=20).points.shape == (200, 3)
    with pytest.raises(ValueError, match="not exact"):
        spherical_grid(10, n_theta=3)
    with pytest.raises(ValueError, match="degree"):
        spherical_grid(-1)
