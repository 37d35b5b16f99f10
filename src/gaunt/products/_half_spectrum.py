"""Real tables of the 2D Fourier method on the half spectrum v = k >= 0 (a real function needs no more).

``so3.fourier`` writes ``Y[l m](theta, phi) = sum_{u, v} y[l m; u v] exp(i (u theta + v phi))`` with
v = +-m only, theta continued to the whole circle. For a real ``f = sum x[l m] Y[l m]`` the column
v = -k is the conjugate of v = +k (with u -> -u), so the columns k = 0..K-1 carry everything; these
tables go from coefficients to those columns (synthesis) and back (projection). Used by
``gaunt_fourier.GauntProduct`` and by the layers' own Fourier paths (``nn.convolution``, ``nn.many_body``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..so3 import fourier_basis, sh_to_fourier


def half_spectrum_synthesis(lmax: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather table ``[2K, lmax+1]`` of dense indices ``l^2 + l + m`` (-1: zero) and real matrices
    ``S [2K, 2 lmax + 1 (u, centred), lmax + 1]``: row k gives ``Re F[u, k] = sum_l S[k, u, l] x[l, m_re]``,
    row K + k gives ``Im F[u, k]`` from ``x[l, m_im]``.

    Only m = +-k feed column k. The theta factor of order k is real for even k and imaginary for odd k,
    so the real part comes from m_re = +k (even k) or -k (odd k) and the imaginary part from the other sign.
    """
    coefficients = sh_to_fourier(torch.eye((lmax + 1) ** 2, dtype=torch.float64), lmax).numpy()  # [lm, u, v]
    table = -np.ones((2 * K, lmax + 1), dtype=np.int64)
    synthesis = np.zeros((2 * K, 2 * lmax + 1, lmax + 1))
    for k in range(K):
        column = coefficients[:, :, lmax + k]  # v = +k: [lm, u]
        for l in range(k, lmax + 1):  # noqa: E741
            plus, minus = l * l + l + k, l * l + l - k
            src_re, src_im = (plus, minus) if k % 2 == 0 else (minus, plus)
            assert np.abs(column[src_re].imag).max() < 1e-12
            table[k, l], synthesis[k, :, l] = src_re, column[src_re].real
            if k > 0:
                assert np.abs(column[src_im].real).max() < 1e-12
                table[K + k, l], synthesis[K + k, :, l] = src_im, column[src_im].imag
    return table, synthesis


def half_spectrum_coupling(lmax: int, umax: int) -> np.ndarray:
    """Complex ``Q [lmax+1 (k), lmax+1 (l), 2 umax + 1 (u, centred)]``: for the column ``H[u] = F[u, k]`` of
    a real function (|u| <= umax), ``x[l, +k] = Re(sum_u Q[k, l, u] H[u])`` and ``x[l, -k] = -Im(...)``.

    From ``so3.fourier_to_sh`` and ``F[u, -k] = conj F[-u, k]``: ``Q[k, l, u] = pi (P[l k u] + conj P[l k -u])``,
    P the theta integrals of ``fourier_basis``.
    """
    P = fourier_basis(lmax, umax).projection.numpy()  # [l, k, u] centred
    return (math.pi * (P + np.conj(P[:, :, ::-1]))).transpose(1, 0, 2)


def half_spectrum_projection(lmax: int, umax: int, K: int) -> np.ndarray:
    """Real form ``M [K, 2 (lmax+1), 2 (2 umax + 1)]`` of ``half_spectrum_coupling`` for the orders k < K:
    ``[x[l, +k]; x[l, -k]] = M[k] [Re H; Im H]``."""
    Q = half_spectrum_coupling(lmax, umax)[:K]
    return np.concatenate([np.concatenate([Q.real, -Q.imag], -1), np.concatenate([-Q.imag, -Q.real], -1)], 1)


__all__ = ["half_spectrum_synthesis", "half_spectrum_coupling", "half_spectrum_projection"]
