import pytest
import torch
from e3nn import o3

from gaunt.so3 import (
    Irreps,
    irreps_wigner_d,
    random_rotation,
    rotation_matrix,
    spherical_harmonics,
    wigner_d,
    wigner_d_from_angles,
)

pytestmark = pytest.mark.usefixtures("float64_default")


@pytest.mark.parametrize("l", [0, 1, 2, 5, 12, 24])
def test_orthogonal_and_homomorphism(l):
    g = torch.Generator().manual_seed(l)
    r1, r2 = random_rotation(2, generator=g)
    d1, d2, d12 = wigner_d(l, r1), wigner_d(l, r2), wigner_d(l, r1 @ r2)
    eye = torch.eye(2 * l + 1)
    torch.testing.assert_close(d1 @ d1.T, eye, atol=1e-13, rtol=0)
    torch.testing.assert_close(d12, d1 @ d2, atol=1e-13, rtol=0)
    torch.testing.assert_close(wigner_d(l, torch.eye(3)), eye, atol=1e-13, rtol=0)


def test_gimbal_lock_is_exact():
    # rotations by pi about an axis and near-identity rotations: Euler-angle methods lose accuracy here
    angles = torch.tensor([0.0, 1e-9, torch.pi, torch.pi - 1e-9])
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    for a in angles:
        R = rotation_matrix(torch.tensor(0.3), a, torch.tensor(-1.1))
        for l in (3, 8):
            lhs = spherical_harmonics(l, x @ R.T)[:, l * l :]
            rhs = spherical_harmonics(l, x)[:, l * l :] @ wigner_d(l, R).T
            torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=0)


def test_agrees_with_e3nn_to_its_accuracy():
    a, b, c = torch.rand(3, 5, generator=torch.Generator().manual_seed(1)) * 6
    torch.testing.assert_close(rotation_matrix(a, b, c), o3.angles_to_matrix(a, b, c), atol=1e-14, rtol=0)
    for l in range(6):
        torch.testing.assert_close(wigner_d_from_angles(l, a, b, c), o3.wigner_D(l, a, b, c), atol=1e-5, rtol=0)


def test_irreps_wigner_d_with_inversion_matches_e3nn():
    irreps = Irreps("2x0e + 0o + 1o + 2x1e + 2e + 3o")
    R = random_rotation(generator=torch.Generator().manual_seed(3))
    for Q in (R, -R):
        ours = irreps_wigner_d(irreps, Q)
        ref = irreps.to_e3nn().D_from_matrix(Q)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # exact parity: inversion alone
    inv = irreps_wigner_d(irreps, -torch.eye(3))
    signs = torch.cat([torch.full((mul * ir.dim,), float(ir.p)) for mul, ir in irreps])
    torch.testing.assert_close(inv, torch.diag(signs), atol=1e-14, rtol=0)


def test_batched_and_differentiable():
    R = random_rotation(4, 2, generator=torch.Generator().manual_seed(4))
    assert wigner_d(3, R).shape == (4, 2, 7, 7)
    angles = torch.rand(3, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    f = lambda t: wigner_d(2, rotation_matrix(t[0], t[1], t[2]), check=False)  # noqa: E731
    assert torch.autograd.gradcheck(f, (angles,))


def test_bad_input():
    with pytest.raises(ValueError, match="orthogonal"):
        wigner_d(2, 2 * torch.eye(3))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        wigner_d(2, torch.eye(4))
    with pytest.raises(ValueError, match="non-negative"):
        wigner_d(-1, torch.eye(3))
