"""Real spherical harmonics in e3nn's basis, by stable recursions (no symbolic polynomials).

Convention (identical to e3nn >= 0.5, checked against ``e3nn.o3.spherical_harmonics`` in the tests):

* The polar axis is **y**. With polar angle ``theta`` (from +y) and azimuth ``phi``,
  ``x = sin(theta) sin(phi)``, ``y = cos(theta)``, ``z = sin(theta) cos(phi)``.
* Degree ``l`` occupies ``2l + 1`` components ordered ``m = -l, ..., l``:
  ``Y[l, m] = c_l * N[l, |m|] * P[l, |m|](cos theta) * A_m(phi)`` with
  ``A_m = sqrt(2) cos(m phi)`` for ``m > 0``, ``1`` for ``m = 0``, ``sqrt(2) sin(|m| phi)`` for ``m < 0``,
  ``P`` the associated Legendre functions **without** the Condon-Shortley phase, and
  ``N[l, m] = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!)``.
* Normalisations (``c_l``): ``"integral"``: orthonormal on the unit sphere; ``"component"``:
  ``|Y_l(x)|^2 = 2l+1`` on unit vectors (``sqrt(4 pi)`` times integral); ``"norm"``: ``|Y_l(x)| = 1``.
* Parity: ``Y_l(-x) = (-1)^l Y_l(x)``. With ``normalize=False`` the harmonics are the homogeneous
  polynomials ``|x|^l Y_l(x/|x|)`` (solid harmonics), as in e3nn.

The recursion runs on fully normalised Legendre polynomials stripped of ``sin^m``,
``Q[l, m](y) = N[l, m] P[l, m] / sin^m``, so every intermediate value stays O(sqrt(l)) and the
recursion is stable in float32 and float64 far beyond L = 32 (no factorials are ever formed):

    Q[m, m]     = sqrt((2m+1)/(2m)) Q[m-1, m-1]                       (sectoral)
    Q[m+1, m]   = sqrt(2m+3) y Q[m, m]
    Q[l, m]     = a[l, m] (y Q[l-1, m] - b[l, m] r^2 Q[l-2, m])          (l >= m + 2)
    a[l, m] = sqrt((4l^2-1)/(l^2-m^2)),  b[l, m] = sqrt(((l-1)^2-m^2)/(4(l-1)^2-1))

and the azimuthal factors come from ``(z + i x)^m = r^m sin^m(theta) exp(i m phi)``.
"""

from __future__ import annotations

import math
from functools import cache

import torch

NORMALIZATIONS = ("integral", "component", "norm")


@cache
def _recursion_constants(lmax: int) -> tuple[list[float], list[list[float]], list[list[float]]]:
    """Constants of the normalised Legendre recursion (python floats, computed once per lmax)."""
    sectoral = [1.0 / math.sqrt(4.0 * math.pi)]
    for m in range(1, lmax + 1):
        sectoral.append(sectoral[-1] * math.sqrt((2 * m + 1) / (2 * m)))
    a = [[0.0] * (l + 1) for l in range(lmax + 1)]
    b = [[0.0] * (l + 1) for l in range(lmax + 1)]
    for l in range(2, lmax + 1):
        for m in range(0, l - 1):
            a[l][m] = math.sqrt((4 * l * l - 1) / (l * l - m * m))
            b[l][m] = math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
    return sectoral, a, b


def _check_args(lmax: int, vectors: torch.Tensor, normalization: str) -> None:
    if not isinstance(lmax, int) or isinstance(lmax, bool) or lmax < 0:
        raise ValueError(f"lmax must be a non-negative integer, got {lmax!r}")
    if not isinstance(vectors, torch.Tensor):
        raise TypeError(f"vectors must be a torch.Tensor, got {type(vectors).__name__}")
    if vectors.shape[-1:] != (3,):
        raise ValueError(f"vectors must have shape [..., 3], got {tuple(vectors.shape)}")
    if not vectors.is_floating_point():
        raise TypeError(f"vectors must be a floating-point tensor, got dtype {vectors.dtype}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def spherical_harmonics(
    lmax: int,
    vectors: torch.Tensor,
    normalization: str = "integral",
    normalize: bool = True,
    check: bool = True,
) -> torch.Tensor:
    """Real spherical harmonics of degrees ``0..lmax`` in e3nn's basis.

    Args:
        lmax: largest degree L.
        vectors: ``[..., 3]`` Cartesian vectors (x, y, z), any float dtype and device.
        normalization: ``"integral"`` (e3nn's default), ``"component"`` or ``"norm"``.
        normalize: evaluate on ``vectors / |vectors|`` (True) or return the solid harmonics
            ``|x|^l Y(x/|x|)`` (False).
        check: with ``normalize=True``, raise on zero-length vectors (costs a device sync; set
            False inside compiled or GPU hot paths where inputs are known to be good).

    Returns:
        ``[..., (lmax + 1)^2]``: degree l occupies ``[l^2, (l+1)^2)``, ordered m = -l..l.

    Degree 1 is the unit vector itself (x, y, z), times sqrt(3) in "component" normalisation:

    >>> v = torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64)
    >>> y = spherical_harmonics(1, v, normalization="component")
    >>> bool(torch.allclose(y[:, 1:], 3**0.5 * v / v.norm()))   # equivalent to
    True
    """
    _check_args(lmax, vectors, normalization)
    if normalize:
        r = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        if check and not torch.compiler.is_compiling() and vectors.numel() > 0 and bool((r == 0).any()):
            raise ValueError("spherical_harmonics: zero-length vector with normalize=True (direction undefined)")
        vectors = vectors / r
    x, y, z = vectors.unbind(-1)
    r2 = None if normalize else x * x + y * y + z * z

    sectoral, a, b = _recursion_constants(lmax)
    # Azimuthal factors: cos_m + i sin_m = (z + i x)^m, scaled by sqrt(2) for m != 0 (real harmonics).
    cos_m = [torch.ones_like(x)]
    sin_m = [torch.zeros_like(x)]
    for _ in range(lmax):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(c * z - s * x)
        sin_m.append(s * z + c * x)

    # q[l] is a list over m = 0..l of Q[l, m] (each a tensor shaped like x, or a python float).
    q: list[list[torch.Tensor]] = []
    blocks = []
    for l in range(lmax + 1):
        q_l = []
        for m in range(0, l - 1):
            prev2 = q[l - 2][m] if r2 is None else r2 * q[l - 2][m]
            q_l.append(a[l][m] * (y * q[l - 1][m] - b[l][m] * prev2))
        if l >= 1:
            q_l.append(math.sqrt(2 * l + 1) * y * q[l - 1][l - 1])  # m = l - 1
        q_l.append(torch.full_like(x, sectoral[l]))  # m = l
        q.append(q_l)

        sqrt2 = math.sqrt(2.0)
        neg = [sqrt2 * q_l[m] * sin_m[m] for m in range(l, 0, -1)]
        pos = [sqrt2 * q_l[m] * cos_m[m] for m in range(1, l + 1)]
        block = torch.stack(neg + [q_l[0]] + pos, dim=-1)
        if normalization == "component":
            block = block * math.sqrt(4.0 * math.pi)
        elif normalization == "norm":
            block = block * math.sqrt(4.0 * math.pi / (2 * l + 1))
        blocks.append(block)
    return torch.cat(blocks, dim=-1)
