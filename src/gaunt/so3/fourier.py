"""Change of basis between real spherical harmonics and the 2D Fourier basis exp(i (u theta + v phi)).

Angles are those of ``so3.harmonics`` (polar axis y): ``x = sin(theta) sin(phi)``, ``y = cos(theta)``,
``z = sin(theta) cos(phi)``. Every real harmonic factorises as ``Y[l m] = Theta[l |m|](theta) A_m(phi)``
with ``A_m = cos(m phi)`` (m > 0), ``1`` (m = 0), ``sin(|m| phi)`` (m < 0), and ``Theta[l k]`` a
trigonometric polynomial of degree l once theta is let run over the whole circle [0, 2 pi):

    Theta[l k](theta) = sum_{|u| <= l} p[l k u] exp(i u theta)            (p real for even k, imaginary for odd k)

Synthesis (Gaunt paper, sec. 3.2): ``Y[l m] = sum_{u, v} y[l m; u v] exp(i (u theta + v phi))`` with
y non-zero only for v = +-m:

    m > 0:  y[l m; u, +m] = y[l m; u, -m] = p[l m u] / 2
    m = 0:  y[l 0; u, 0] = p[l 0 u]
    m < 0:  y[l m; u, +|m|] = p[l |m| u] / (2i),  y[l m; u, -|m|] = -p[l |m| u] / (2i)

Projection (the inverse on functions of degree <= L, with the sphere's measure sin(theta)):

    x[l m] = integral_0^pi integral_0^2pi f(theta, phi) Y[l m] sin(theta) dphi dtheta
           = sum_{u, v} F[u v] phi_int[m, v] theta_int[l |m| u]
    theta_int[l k u] = sum_{u'} p[l k u'] I(u + u'),  I(n) = integral_0^pi exp(i n t) sin t dt
                     = 2 / (1 - n^2) for even n,  +-i pi/2 for n = +-1,  0 for other odd n
    phi_int: pi (delta_{v,m} + delta_{v,-m}) for m > 0, 2 pi delta_{v,0} for m = 0,
             i pi (delta_{v,|m|} - delta_{v,-|m|}) for m < 0.

Both directions touch O(L) entries per (l, m): O(L^3) in all. The coefficients p come from an exact
FFT of Theta sampled at 2L+1 equispaced angles (a degree-L trigonometric polynomial is recovered
exactly), in float64.

Grids of Fourier coefficients are stored ``[..., 2U+1, 2V+1]`` with frequency u (resp. v) at index
u + U (centred, not FFT order).
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import numpy as np
import torch

from .harmonics import spherical_harmonics


@cache
def _theta_coefficients_np(lmax: int) -> np.ndarray:
    """p[l, k, u + lmax] (complex128, shape [L+1, L+1, 2L+1]); zero for k > l."""
    n = 2 * lmax + 1
    theta = 2 * np.pi * np.arange(n) / n
    # Theta[l k](theta) is the m = +k harmonic at the point (x, y, z) = (0, cos theta, sin theta),
    # phi = 0, with sin(theta) keeping its sign on (pi, 2 pi): the trigonometric extension.
    points = torch.as_tensor(np.stack([np.zeros(n), np.cos(theta), np.sin(theta)], -1))
    y = spherical_harmonics(lmax, points, normalize=False).numpy()  # |points| = 1
    samples = np.zeros((lmax + 1, lmax + 1, n))
    for l in range(lmax + 1):
        samples[l, : l + 1] = y[:, l * l + l : (l + 1) ** 2].T  # m = 0..l
    # Theta = sum_u p_u exp(i u theta)  <=>  p_u = (1/n) sum_j Theta(theta_j) exp(-i u theta_j)
    p = np.fft.fftshift(np.fft.fft(samples, axis=-1), axes=-1) / n
    # exact zeros: p is real for even k and imaginary for odd k, and vanishes for |u| > l
    k = np.arange(lmax + 1)[None, :, None]
    p = np.where(k % 2 == 0, p.real, 1j * p.imag)
    u = np.arange(-lmax, lmax + 1)[None, None, :]
    l = np.arange(lmax + 1)[:, None, None]
    return np.where((np.abs(u) <= l) & (k <= l), p, 0)


def _sin_measure(n: np.ndarray) -> np.ndarray:
    """I(n) = integral_0^pi exp(i n t) sin(t) dt for integer arrays n."""
    out = np.zeros(n.shape, dtype=complex)
    even = n % 2 == 0
    out[even] = 2.0 / (1.0 - n[even].astype(float) ** 2)
    out[n == 1] = 1j * np.pi / 2
    out[n == -1] = -1j * np.pi / 2
    return out


@cache
def _theta_projection_np(lmax: int, umax: int) -> np.ndarray:
    """theta_int[l, k, u + umax] = sum_u' p[l k u'] I(u + u') for |u| <= umax, shape [L+1, L+1, 2U+1]."""
    p = _theta_coefficients_np(lmax)
    u = np.arange(-umax, umax + 1)
    up = np.arange(-lmax, lmax + 1)
    return np.einsum("lkw,uw->lku", p, _sin_measure(u[:, None] + up[None, :]))


class FourierBasis(NamedTuple):
    """Sparse change of basis for degrees 0..lmax (all tensors complex, on one device).

    ``synthesis[l, k, u]``: p[l k u], u in -lmax..lmax. ``projection[l, k, u]``: theta_int[l k u],
    u in -umax..umax. The phi parts are the fixed sparse factors of the module docstring.
    """

    lmax: int
    umax: int
    synthesis: torch.Tensor  # [L+1, L+1, 2L+1]
    projection: torch.Tensor  # [L+1, L+1, 2U+1]


@cache
def fourier_basis(
    lmax: int, umax: int | None = None, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> FourierBasis:
    """Cached :class:`FourierBasis` for degrees <= lmax; the projection accepts frequencies |u|, |v| <= umax.

    ``dtype`` is the real dtype (float32 or float64); the tensors are the matching complex dtype.
    """
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    umax = lmax if umax is None else umax
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    as_t = lambda a: torch.as_tensor(a, dtype=cdtype, device=device)  # noqa: E731
    return FourierBasis(lmax, umax, as_t(_theta_coefficients_np(lmax)), as_t(_theta_projection_np(lmax, umax)))


def _split_by_order(x: torch.Tensor, lmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., (L+1)^2] -> (x_pos, x_neg), each [..., L+1 (l), L+1 (k)]: x[l, +k] and x[l, -k] (x_neg[l, 0] = 0)."""
    index_pos, index_neg = _order_indices(lmax, x.device)
    padded = torch.cat([x, x.new_zeros(x.shape[:-1] + (1,))], dim=-1)  # last slot holds zeros
    return padded[..., index_pos], padded[..., index_neg]


@cache
def _order_indices(lmax: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    zero_slot = (lmax + 1) ** 2
    pos = torch.full((lmax + 1, lmax + 1), zero_slot, dtype=torch.long)
    neg = torch.full((lmax + 1, lmax + 1), zero_slot, dtype=torch.long)
    for l in range(lmax + 1):
        for k in range(l + 1):
            pos[l, k] = l * l + l + k
            if k > 0:
                neg[l, k] = l * l + l - k
    return pos.to(device), neg.to(device)


def sh_to_fourier(x: torch.Tensor, lmax: int) -> torch.Tensor:
    """Fourier coefficients of ``f = sum x[l m] Y[l m]``: ``[..., (L+1)^2] -> [..., 2L+1 (u), 2L+1 (v)]`` complex.

    O(L^3) per function. Coefficients are centred: frequency (u, v) at index (u + L, v + L).

    The product of two sphere functions is the 2D convolution of their Fourier coefficients (the Gaunt
    product of the paper):

    >>> from gaunt.so3 import gaunt_coefficients
    >>> a, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)   # degrees 0..1
    >>> f, g = sh_to_fourier(a, 1), sh_to_fourier(b, 1)                                 # [3, 3] complex
    >>> prod = torch.fft.ifft2(torch.fft.fft2(f, (5, 5)) * torch.fft.fft2(g, (5, 5)))
    >>> ab = fourier_to_sh(prod, 2)                                                     # degrees 0..2
    >>> bool(torch.allclose(ab[4:9], torch.einsum("i,j,ijk->k", a[1:4], b[1:4], gaunt_coefficients(1, 1, 2))))
    True
    """
    if x.shape[-1] != (lmax + 1) ** 2:
        raise ValueError(f"sh_to_fourier: last dimension {x.shape[-1]} != (lmax+1)^2 = {(lmax + 1) ** 2}")
    basis = fourier_basis(lmax, dtype=x.dtype, device=x.device)
    x_pos, x_neg = _split_by_order(x, lmax)
    # per order k: a_k[u] = sum_l x[l, +k] p[l k u],  b_k[u] = sum_l x[l, -k] p[l k u]
    # (x is real: two real contractions with Re p and Im p are much faster than one complex one)
    p_re, p_im = basis.synthesis.real, basis.synthesis.imag
    a = torch.complex(torch.einsum("...lk,lku->...uk", x_pos, p_re), torch.einsum("...lk,lku->...uk", x_pos, p_im))
    b = torch.complex(torch.einsum("...lk,lku->...uk", x_neg, p_re), torch.einsum("...lk,lku->...uk", x_neg, p_im))
    # v = +k gets (a + b / i) / 2 and v = -k gets (a - b / i) / 2 (a itself for k = 0)
    plus = 0.5 * (a - 1j * b)
    minus = 0.5 * (a + 1j * b)
    plus = torch.cat([a[..., :1], plus[..., 1:]], dim=-1)  # v = 0..L
    minus = minus[..., 1:].flip(-1)  # v = -L..-1
    return torch.cat([minus, plus], dim=-1)


def fourier_to_sh(coefficients: torch.Tensor, lmax: int) -> torch.Tensor:
    """Project a function given by its Fourier coefficients onto harmonics of degree <= lmax.

    ``[..., 2U+1, 2V+1] -> [..., (lmax+1)^2]`` (real part; the input is taken to be a real function's
    coefficients, centred). Any U and V are accepted; only |v| <= lmax contributes. O(L^2 U).
    """
    *batch, nu, nv = coefficients.shape
    if nu % 2 == 0 or nv % 2 == 0:
        raise ValueError(f"fourier_to_sh: coefficient grid must have odd sizes (centred), got {nu} x {nv}")
    umax, vmax = nu // 2, nv // 2
    basis = fourier_basis(lmax, umax, dtype=coefficients.real.dtype, device=coefficients.device)
    k = min(lmax, vmax)
    f = coefficients[..., vmax - k : vmax + k + 1]  # v in -k..k
    pos, neg = f[..., k:], f[..., : k + 1].flip(-1)  # [..., U, k+1]: v = +j and v = -j, j = 0..k
    proj = basis.projection[:, : k + 1]  # [L+1, k+1, 2U+1]
    s = torch.einsum("...uj,lju->...lj", pos + neg, proj)  # sum_u (F[u, j] + F[u, -j]) theta_int
    d = torch.einsum("...uj,lju->...lj", pos - neg, proj)
    out_pos = math.pi * s.real  # for m = 0, pos + neg = 2 F[u, 0]: pi * 2 F = 2 pi F, as it should
    out_neg = -math.pi * d.imag  # i pi (F[j] - F[-j]) theta_int, real part
    if k < lmax:
        pad = out_pos.new_zeros(out_pos.shape[:-1] + (lmax - k,))
        out_pos, out_neg = torch.cat([out_pos, pad], -1), torch.cat([out_neg, pad], -1)
    index_pos, index_neg = _order_indices(lmax, coefficients.device)
    out = out_pos.new_zeros(tuple(batch) + ((lmax + 1) ** 2 + 1,))
    out = out.index_add(-1, index_neg.flatten(), out_neg.flatten(-2))
    out = out.index_add(-1, index_pos.flatten(), out_pos.flatten(-2))
    return out[..., :-1]


def synthesis_coefficients(lmax: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The synthesis tensor y[l m; u v] as a sparse COO tensor ``[(L+1)^2, 2L+1, 2L+1]`` (for inspection).

    Only entries with v = +-m are stored: (L+1)^2 * 2 * (2L+1) at most, O(L^3).
    """
    eye = torch.eye((lmax + 1) ** 2, dtype=dtype)
    return sh_to_fourier(eye, lmax).to_sparse()


__all__ = ["FourierBasis", "fourier_basis", "sh_to_fourier", "fourier_to_sh", "synthesis_coefficients"]
