"""The paper's execution of the Gaunt product: ``torch.fft`` on the 2D Fourier torus (``transform="fft"``).

Program (plain arrays, built by :func:`fft_gaunt_program`): per input the half-spectrum synthesis
``S [2K, n_u, K]`` (rows k: Re F[., k], rows K + k: Im F[., k], from the coefficients gathered by order
and degree), the torus size ``n_u x n_v``, and the complex projection ``Q [K3, K3, n_u]`` of the product's
half spectrum (``fourier_tables``); the read-out takes ``x[l, +k] = Re(Q H)``, ``x[l, -k] = -Im(Q H)`` (the
sign is applied with the output weights). :class:`TorchFFT` runs it: synthesis (batched matmul), inverse
2D FFT, pointwise product, forward 2D FFT, projection (complex batched matmul). Autograd derives its
backward; it runs on the torch executor only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .fourier_tables import projection_matrices, synthesis_matrices
from .sphere_irreps import SphericalIrreps
from .sphere_programs import gather_index, read_index, torus_size


@dataclass(frozen=True, eq=False)
class FFTProgram:
    """Tables of the FFT execution (module docstring); ``out_sign [dim_out]``: -1 where the read is ``-Im``."""

    mul: int
    n_u: int
    n_v: int
    index1: np.ndarray
    index2: np.ndarray
    synthesis1: np.ndarray
    synthesis2: np.ndarray
    projection: np.ndarray  # complex [K3, K3, n_u]
    read: np.ndarray
    out_sign: np.ndarray


def fft_gaunt_program(layouts: tuple[SphericalIrreps, ...]) -> FFTProgram:
    """The FFT program of the Gaunt product of ``layouts = (in1, in2 with mul channels, out)``."""
    in1, in2, out = layouts
    n_u, n_v = torus_size(layouts)
    table1, s1 = synthesis_matrices(in1.lmax, n_u)
    table2, s2 = synthesis_matrices(in2.lmax, n_u)
    L3 = out.lmax
    q = projection_matrices(L3, in1.lmax + in2.lmax, n_u)
    # the output is read from view_as_real(z): [k = |m|, l, re/im, mul]; m < 0 is -Im
    read = read_index(out, lambda l, m: abs(m), lambda l, m: 2 * l + (m < 0), (L3 + 1, 2 * (L3 + 1)))
    sign = np.concatenate([np.tile(np.where(np.arange(-l, l + 1) < 0, -1.0, 1.0), out.mul) for l in out.degrees])
    return FFTProgram(in1.mul, n_u, n_v, gather_index(in1, table1), gather_index(in2, table2), s1, s2, q, read, sign)


class TorchFFT(torch.nn.Module):
    """``self(x1 [n, dim1], x2 [n, dim2]) -> [n, dim_out]`` by the FFT program (signs not applied)."""

    executor = "torch"

    def __init__(self, program: FFTProgram) -> None:
        super().__init__()
        self.program = program
        arrays = {
            "index1": program.index1,
            "index2": program.index2,
            "synthesis1": program.synthesis1,
            "synthesis2": program.synthesis2,
            "read": program.read,
            # complex stored as real [..., 2] so that module.to(dtype) treats it like the others
            "projection": torch.view_as_real(torch.as_tensor(program.projection)).numpy(),
        }
        for name, value in arrays.items():
            self.register_buffer(f"_{name}", torch.tensor(value), persistent=False)

    def _to_torus(self, x: torch.Tensor, index: torch.Tensor, synthesis: torch.Tensor) -> torch.Tensor:
        """``x [n, dim]`` -> samples ``[n_v, n_u, mul, n]`` of f on the torus grid."""
        n, p = x.shape[0], self.program
        rows = torch.nn.functional.pad(x.T, (0, 0, 0, 1))  # [dim + zero row, n]
        X = rows[torch.where(index >= 0, index, rows.shape[0] - 1)]  # [2K * K * mul, n]
        K = synthesis.shape[2]
        a = torch.bmm(synthesis.to(x.dtype), X.view(2 * K, K, -1))  # [2K, n_u, Z]: Re F, then Im F
        spectrum = torch.complex(a[:K], a[K:])  # [K (v = 0..L), n_u, Z]
        # inverse 2D FFT as two 1D passes, the first (over u) on the K non-zero rows in v only
        f = torch.fft.irfft(torch.fft.ifft(spectrum, dim=1, norm="forward"), n=p.n_v, dim=0, norm="forward")
        return f.reshape(p.n_v, p.n_u, p.mul * n)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        n, p = x1.shape[0], self.program
        h = self._to_torus(x1, self._index1, self._synthesis1) * self._to_torus(x2, self._index2, self._synthesis2)
        q = torch.view_as_complex(self._projection.to(h.dtype))  # [K3, K3 (l), n_u]
        K3 = q.shape[0]
        H = torch.fft.rfft(h, dim=0, norm="forward")[:K3]  # [K3 (v = 0..L3), n_u, Z], then u:
        H = torch.fft.fft(H, dim=1, norm="forward")
        z = torch.bmm(q, H)  # [k, l, Z]
        y = torch.view_as_real(z).reshape(K3, K3, p.mul, n, 2).permute(0, 1, 4, 2, 3)  # [k, l, re/im, mul, n]
        return y.reshape(-1, n)[self._read].T

    def extra_repr(self) -> str:
        return f"fft_gaunt: torus {self.program.n_u} x {self.program.n_v}, executor=torch"


__all__ = ["FFTProgram", "fft_gaunt_program", "TorchFFT"]
