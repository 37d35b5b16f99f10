"""Tables of the 2D Fourier method: the half spectrum, and the folded DFT matrices of ``GauntProduct``.

Half spectrum v = k >= 0 (a real function needs no more).

``so3.fourier`` writes ``Y[l m](theta, phi) = sum_{u, v} y[l m; u v] exp(i (u theta + v phi))`` with
v = +-m only, theta continued to the whole circle. For a real ``f = sum x[l m] Y[l m]`` the column
v = -k is the conjugate of v = +k (with u -> -u), so the columns k = 0..K-1 carry everything; these
tables go from coefficients to those columns (synthesis) and back (projection). Used by
``gaunt_fourier.GauntProduct``, ``edge_aligned`` and the many-body powers (``powers``).

Folded DFT matrices: see ``gaunt_fourier``'s docstring; :func:`folded_synthesis`, :func:`azimuth_matrices` and
:func:`folded_projection` are the separable tables of ``GauntProduct(transform="dft")`` on half the torus rings.
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


def synthesis_matrices(lmax: int, n_u: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather table ``[2K, K]`` (K = lmax + 1) and ``S [2K, n_u, K]``: ``half_spectrum_synthesis`` with u
    in FFT order (frequency u at index u mod n_u)."""
    table, synthesis = half_spectrum_synthesis(lmax, lmax + 1)
    S = np.zeros((2 * (lmax + 1), n_u, lmax + 1))
    S[:, np.arange(-lmax, lmax + 1) % n_u] = synthesis
    return table, S


def projection_matrices(lmax: int, umax: int, n_u: int) -> np.ndarray:
    """Complex ``Q [K, K, n_u]`` (order k, degree l, u in FFT order): x[l, +k] = Re(Q H), x[l, -k] = -Im(Q H)."""
    out = np.zeros((lmax + 1, lmax + 1, n_u), dtype=complex)
    out[:, :, np.arange(-umax, umax + 1) % n_u] = half_spectrum_coupling(lmax, umax)
    return out


def torus_rings(n_u: int) -> np.ndarray:
    """The rings kept by ``transform="dft"``: theta_j = 2 pi j / n_u for j = 0..(n_u - 1) / 2 (n_u odd)."""
    return 2 * math.pi * np.arange((n_u + 1) // 2) / n_u


def folded_synthesis(lmax: int, n_u: int) -> np.ndarray:
    """``theta_in [2L+1, J, L+1]``: step 1 and the inverse DFT over u in one real matrix, on the kept rings.

    g_k(theta_j) = sum_u F[u, k] exp(i u theta_j); its real part (the cos(k phi) factor) depends on
    x[l, +k] only and its imaginary part (minus the sin(k phi) factor) on x[l, -k] only, because the
    theta factor of order k is a cosine series for even k and a sine series for odd k.
    """
    K = lmax + 1
    table, S = synthesis_matrices(lmax, n_u)
    u = np.fft.fftfreq(n_u, 1.0 / n_u)  # frequency at each FFT-order index
    T = np.einsum("rul,uj->rjl", S, np.exp(1j * np.outer(u, torus_rings(n_u))))  # row r < K: Re F, r >= K: Im F
    out = np.zeros((2 * K - 1, T.shape[1], K))
    for k in range(K):
        plus, minus = (T[k], 1j * T[K + k]) if k % 2 == 0 else (1j * T[K + k], T[k])  # coefficient of x[l, +-k]
        assert np.abs(plus.imag).max() < 1e-12 and np.abs(minus.real).max() < 1e-12
        out[lmax + k] = plus.real
        if k > 0:
            out[lmax - k] = minus.imag
    return out


def azimuth_matrices(lmax: int, n_v: int, out: bool) -> np.ndarray:
    """Real inverse DFT over v, ``[n_v, 2L+1]`` (columns m; f = g_0 + 2 sum_k Re(g_k e^{i k phi})), or with
    ``out`` the forward one ``[2L+1, n_v]`` (rows m: (1/n_v) sum_n cos / sin(|m| phi_n))."""
    m = np.arange(-lmax, lmax + 1)[:, None]
    phi = 2 * math.pi * np.arange(n_v)[None, :] / n_v
    trig = np.where(m >= 0, np.cos(m * phi), np.sin(-m * phi))  # [2L+1, n_v]
    if out:
        return trig / n_v
    return (trig * np.where(m > 0, 2.0, np.where(m < 0, -2.0, 1.0))).T


def folded_projection(lmax: int, umax: int, n_u: int) -> np.ndarray:
    """``theta_out [2L+1, L+1, J]``: the forward DFT over u and step 3 in one real matrix, folded onto the kept rings.

    R[k, l, j] = (1/n_u) sum_u Q[k, l, u] exp(-i u theta_j) is real. The product h is the torus
    extension of a sphere function, h(2 pi - theta, phi) = h(theta, phi + pi), so its order-k azimuthal
    coefficients (exact: n_v > L1 + L2 + L3, no aliasing) satisfy c_k(2 pi - theta_j) = (-1)^k c_k(theta_j):
    the ring n_u - j is folded onto ring j with the sign (-1)^k.
    """
    u = np.fft.fftfreq(n_u, 1.0 / n_u)
    theta = 2 * math.pi * np.arange(n_u) / n_u
    Q = projection_matrices(lmax, umax, n_u)  # [k, l, u]
    R = np.einsum("klu,uj->klj", Q, np.exp(-1j * np.outer(u, theta))) / n_u
    assert np.abs(R.imag).max() < 1e-12
    R = R.real
    J = (n_u + 1) // 2
    sign = (-1.0) ** np.arange(lmax + 1)[:, None, None]
    folded = R[:, :, :J].copy()
    folded[:, :, 1:] += sign * R[:, :, n_u - np.arange(1, J)]
    return np.concatenate([folded[:0:-1], folded])  # rows m = -L..L read order |m|


__all__ = [
    "half_spectrum_synthesis",
    "half_spectrum_coupling",
    "half_spectrum_projection",
    "synthesis_matrices",
    "projection_matrices",
    "torus_rings",
    "folded_synthesis",
    "azimuth_matrices",
    "folded_projection",
]
