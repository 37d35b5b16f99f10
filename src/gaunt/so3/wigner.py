"""Rotations and real Wigner D matrices in e3nn's spherical-harmonic basis, exact in float64.

The Wigner matrix of degree l is *defined* by ``Y_l(R x) = D_l(R) Y_l(x)`` and computed as the exact
quadrature of that identity against the orthonormal harmonics:

    D_l(R)[a, b] = integral over S^2 of Y_la(R s) Y_lb(s) ds  =  sum_g w_g Y_la(R s_g) Y_lb(s_g)

The integrand is a polynomial of degree 2l, so a grid exact for degree 2l (``so3.grids``) makes the
sum exact to float64 rounding, for any rotation, with no Euler angles and no gimbal lock (e3nn's
``D_from_matrix`` goes through angles and a matrix exponential and is only ~1e-6 accurate).
Cost O(l^3) per rotation; differentiable in R. For an improper R (det = -1) this gives the action
on harmonics, ``(-1)^l D_l(-R)``; ``irreps_wigner_d`` applies an irreps' own parities instead.
"""

from __future__ import annotations

from functools import cache

import torch

from .grids import spherical_grid
from .harmonics import spherical_harmonics


@cache
def _weighted_grid_harmonics(l: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    grid = spherical_grid(2 * l, dtype=dtype, device=device)
    y = spherical_harmonics(l, grid.points)[:, l * l :]  # [G, 2l+1], integral normalisation
    return grid.points, grid.weights[:, None] * y


def _check_matrix(rotation: torch.Tensor, check: bool) -> None:
    if not isinstance(rotation, torch.Tensor) or rotation.shape[-2:] != (3, 3):
        shape = tuple(rotation.shape) if isinstance(rotation, torch.Tensor) else type(rotation).__name__
        raise ValueError(f"rotation must be a tensor of shape [..., 3, 3], got {shape}")
    if not rotation.is_floating_point():
        raise TypeError(f"rotation must be floating point, got {rotation.dtype}")
    if check and not torch.compiler.is_compiling() and rotation.numel() > 0:
        eye = torch.eye(3, dtype=rotation.dtype, device=rotation.device)
        err = (rotation @ rotation.transpose(-1, -2) - eye).abs().max()
        tol = 1e-6 if rotation.dtype == torch.float64 else 1e-3
        if bool(err > tol):
            raise ValueError(f"rotation is not orthogonal: max |R R^T - I| = {float(err):.2e}")


def wigner_d(l: int, rotation: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Real Wigner D matrix of degree ``l``: ``[..., 3, 3] -> [..., 2l+1, 2l+1]``.

    Satisfies ``spherical_harmonics(l, R x)[l-block] == D @ spherical_harmonics(l, x)[l-block]``
    for every normalisation. ``check`` verifies that R is orthogonal (one device sync).

    >>> from gaunt.so3 import random_rotation, spherical_harmonics
    >>> R = random_rotation(dtype=torch.float64)
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> lhs = spherical_harmonics(2, x @ R.T)[:, 4:9]
    >>> bool(torch.allclose(lhs, spherical_harmonics(2, x)[:, 4:9] @ wigner_d(2, R).T))   # Y(R x) = D(R) Y(x)
    True
    """
    if not isinstance(l, int) or l < 0:
        raise ValueError(f"l must be a non-negative integer, got {l!r}")
    _check_matrix(rotation, check)
    points, wy = _weighted_grid_harmonics(l, rotation.dtype, rotation.device)
    rotated = torch.einsum("...ij,gj->...gi", rotation, points)  # R s_g
    y_rot = spherical_harmonics(l, rotated, normalize=False)[..., l * l :]  # |R s| = 1 already
    return torch.einsum("...ga,gb->...ab", y_rot, wy)


def irreps_wigner_d(irreps, rotation: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Block-diagonal representation matrix of an O(3) element on ``irreps``: ``[..., dim, dim]``.

    Irrep (l, p) transforms with ``p^k D_l(R')`` where ``R = (-1)^k R'`` and R' is proper
    (e3nn's ``Irreps.D_from_matrix``). Layout is e3nn's ``mul_ir``.
    """
    from .irreps import Irreps

    irreps = Irreps(irreps)
    _check_matrix(rotation, check)
    det = torch.linalg.det(rotation)
    improper = (det < 0).to(rotation.dtype)[..., None, None]
    proper = rotation * (1 - 2 * improper)
    out = rotation.new_zeros(rotation.shape[:-2] + (irreps.dim, irreps.dim))
    cache: dict[int, torch.Tensor] = {}
    for (mul, (l, p)), sl in zip(irreps, irreps.slices()):
        if l not in cache:
            cache[l] = wigner_d(l, proper, check=False)
        block = cache[l] * (p**improper if p == -1 else 1.0)
        d = 2 * l + 1
        for u in range(mul):
            s = sl.start + u * d
            out[..., s : s + d, s : s + d] = block
    return out


def rotation_matrix(alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """e3nn's Euler convention: ``R = Ry(alpha) Rx(beta) Ry(gamma)``; ``[...] -> [..., 3, 3]``."""
    alpha, beta, gamma = torch.broadcast_tensors(alpha, beta, gamma)
    return _rot_y(alpha) @ _rot_x(beta) @ _rot_y(gamma)


def _rot_x(angle: torch.Tensor) -> torch.Tensor:
    c, s, o, z = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).reshape(angle.shape + (3, 3))


def _rot_y(angle: torch.Tensor) -> torch.Tensor:
    c, s, o, z = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(angle.shape + (3, 3))


def wigner_d_from_angles(l: int, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``wigner_d(l, rotation_matrix(alpha, beta, gamma))``: equals e3nn's ``o3.wigner_D`` (to its accuracy)."""
    return wigner_d(l, rotation_matrix(alpha, beta, gamma), check=False)


def random_rotation(
    *shape: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Haar-uniform random rotations ``[*shape, 3, 3]`` (from normalised Gaussian quaternions)."""
    q = torch.randn(*shape, 4, dtype=dtype, device=device, generator=generator)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*shape, 3, 3)


__all__ = ["wigner_d", "irreps_wigner_d", "rotation_matrix", "wigner_d_from_angles", "random_rotation"]
