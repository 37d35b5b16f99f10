"""The Gaunt tensor product (Luo et al., ICLR 2024) computed in the 2D Fourier basis.

For every channel u the inputs are read as functions on the sphere (orthonormal real harmonics):

    f1_u = sum_{l1 m1} w1[u, l1] x1[u, l1, m1] Y[l1 m1],     f2_u likewise with w2, x2,
    z[u, l3, m3] = w3[u, l3] * integral of f1_u f2_u Y[l3 m3] over the sphere
                 = w3[u, l3] sum_{l1 l2} w1[u, l1] w2[u, l2] sum_{m1 m2} G[l1 m1, l2 m2, l3 m3] x1 x2

with G the real Gaunt coefficients (``so3.gaunt_coefficients``, zero unless l1 + l2 + l3 is even).

Algorithm (per channel; all channels and batch entries are one matrix dimension, never a loop):

1. Synthesis, O(L^3): with polar angle theta extended to the whole circle, f(theta, phi) =
   sum_{u, v} F[u, v] exp(i (u theta + v phi)), |u|, |v| <= L (``so3.fourier``). f is real, so only
   the half v >= 0 is formed: for each order k = v >= 0, Re F[., k] and Im F[., k] are each one real
   matrix [2L+1, L+1] acting on the L+1 coefficients of one sign of m = +-k: one batched matmul.
2. Product, O(L^2 log L): inverse real 2D FFT to samples on an N_u x N_v torus grid, pointwise
   product, forward real 2D FFT (``torch.fft``; each done as two 1D passes, the u pass on the K rows
   v = 0..L that are not zero / are read back). N_u = 2 (L1 + L2) + 1 makes the convolution in u
   exact (the projection needs every u of the product). In v only |v| <= L3 is read back, so
   circular aliasing is harmless once N_v >= L1 + L2 + L3 + 1 (and N_v >= 2 max(L1, L2, L3) + 1 to hold
   the inputs and the outputs). Real transforms (rfft/irfft over v) halve the work: f1, f2 and f1 f2 are real.
3. Projection, O(L^3): x[l, +-k] = Re / -Im of sum_u Q[k, l, u] H[u, k], with
   Q[k, l, u] = pi (P[l, k, u] + conj P[l, k, -u]) and P the theta integrals of ``fourier_basis``
   (the half spectrum H carries both signs of v through H[u, -v] = conj H[-u, v]); one complex
   batched matmul over k.

Cost per channel: 2 (L+1)^2 N_u real multiply-adds per input for synthesis (N_u ~ 2 (L1 + L2)),
(L3+1)^2 N_u complex ones for projection, and real 2D FFTs of N_u x N_v: O(L^3) in all, against
O(L^6) for a dense Clebsch-Gordan contraction over all (l1, l2, l3) paths at L1 = L2 = L3 = L.

Two executions of these steps (``transform=``), the same function to rounding:

* ``"fft"``: as above, ``torch.fft`` over u and v (the paper's; the product step is O(L^2 log L)).
* ``"dft"`` (default): the transforms as real matrices folded into steps 1 and 3, so that the whole
  product is four small real matmuls (a sphere program, ``sphere_programs.torus_gaunt_program``): the inverse
  DFT over u composed with step 1
  (``folded_synthesis``: the real part of g_k(theta_j) = sum_u F[u, k] e^{i u theta_j} depends on
  x[l, +k] only, the imaginary part on x[l, -k] only), the real inverse DFT over v (``azimuth_matrices``),
  and their adjoints composed with step 3 (``folded_projection``). On the torus a sphere function
  satisfies f(2 pi - theta, phi) = f(theta, phi + pi), so only the rings theta_j = 2 pi j / N_u,
  j <= (N_u - 1) / 2, are computed and the others folded in with the sign (-1)^k: L1 + L2 + 1 rings
  instead of N_u. (Measured speeds of both executions: ``benchmarks/BENCHMARKS.md``.)

What to compute is a program (``sphere_programs`` for "dft", ``fft_program`` for "fft": plain arrays);
how it runs is an executor (``executors``); the weights and the batch frame are ``sphere_frame``.
"""

from __future__ import annotations

import numpy as np

from .base import TensorProduct
from .executors import build_runner, resolve_executor
from .fft_program import TorchFFT, fft_gaunt_program
from .sphere_frame import FactorisedFrame, copy_channels_index, factorised_weight_index
from .sphere_irreps import (
    check_spherical_product,
    factorised_path_weights,
    gaunt_descriptor,
    parse_spherical_irreps,
    require_paths,
)
from .sphere_programs import grid_gaunt_program, torus_gaunt_program, torus_size

TRANSFORMS = ("dft", "fft")


class GauntProduct(TensorProduct):
    """Gaunt tensor product in the 2D Fourier basis: ``[..., in1.dim] x [..., in2.dim] -> [..., out.dim]``.

    Accepted irreps (``ValueError`` otherwise): each of ``irreps_in1``, ``irreps_in2``, ``irreps_out``
    is ``mul x l`` blocks in increasing l, each degree at most once (missing degrees are zero), one
    mul, parities ``p = s (-1)^l`` with one sign s per irreps (e.g. ``"16x0e+16x1o+16x2e"``, or the
    pseudo ``"16x0o+16x1e"``). ``mul2`` is ``mul1`` or 1 (x2 broadcast over channels, e.g. edge
    harmonics ``"0e+1o+2e"``); ``mul_out = mul1`` and ``s_out = s1 s2``; at least one path (l1 + l2 + l3
    even, triangle) must reach the output (degrees that none reaches are exactly zero). Layout: e3nn ``mul_ir``.

    Weights (factorised, as in the paper): ``w1 [mul, L1+1]``, ``w2 [mul, L2+1]``, ``w3 [mul, L3+1]``
    concatenated, ``weight_numel = mul (L1 + L2 + L3 + 3)``. Internal by default, initialised to ones
    (the plain Gaunt product) or Gaussian with ``weight_init="randn"``; external shared
    ``[weight_numel]`` or per-sample ``[..., weight_numel]`` weights as in ``base.TensorProduct``.

    ``transform``: ``"dft"`` (default; the Fourier transforms as folded real matrices) or ``"fft"``
    (``torch.fft``, as in the paper); the same function, see the module docstring. ``executor``:
    ``"auto"`` (default: the fastest available, named in ``self.executor``) or a name of
    ``executors.EXECUTORS`` ("fft" runs on "torch" only). ``descriptor()`` lists the Gaunt paths and
    ``path_weights`` maps the factorised weights onto them.

    >>> import torch
    >>> from gaunt.products import dense_product
    >>> tp = GauntProduct("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x2e").double()
    >>> x1, x2 = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    >>> ref = dense_product(tp.descriptor(), x1, x2, tp.path_weights().double())   # equivalent to
    >>> bool(torch.allclose(tp(x1, x2), ref, atol=1e-12))
    True
    """

    #: the grid of the program ("torus": the 2D Fourier method; "quadrature": ``GridGauntProduct``)
    _grid = "torus"

    def __init__(
        self,
        irreps_in1,
        irreps_in2,
        irreps_out,
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        weight_init: str = "ones",
        check_finite: bool = False,
        transform: str = "dft",
        executor: str = "auto",
    ) -> None:
        owner = type(self).__name__
        if transform not in TRANSFORMS:
            raise ValueError(f"{owner}: transform must be one of {TRANSFORMS}, got {transform!r}")
        layouts = check_spherical_product(irreps_in1, irreps_in2, irreps_out, owner)
        require_paths(layouts, owner)
        in1, in2, out = layouts
        super().__init__(
            in1.irreps,
            in2.irreps,
            out.irreps,
            in1.mul * (in1.lmax + in2.lmax + out.lmax + 3),
            internal_weights,
            shared_weights,
            check_finite,
        )
        self.init_weight(weight_init)
        self.layouts, self.mul, self.transform = layouts, in1.mul, transform
        # x2 with one channel (e.g. edge harmonics) is copied to every channel before w2[u, l] applies
        channels = (
            in2
            if in2.mul == in1.mul
            else parse_spherical_irreps("+".join(f"{in1.mul}x{ir}" for _, ir in in2.irreps), "irreps_in2", owner)
        )
        self.n_u, self.n_v = torus_size(layouts)
        if transform == "fft" and self._grid == "torus":
            if executor != "auto" and resolve_executor(executor) != "torch":
                raise RuntimeError(f"{owner}: transform='fft' runs on the 'torch' executor only, not {executor!r}")
            self.program = fft_gaunt_program((in1, channels, out))
            runner, sign, points = TorchFFT(self.program), self.program.out_sign, self.n_u * self.n_v
        else:
            build = torus_gaunt_program if self._grid == "torus" else grid_gaunt_program
            self.program = build((in1, channels, out))
            runner, sign = build_runner(self.program, executor), None
            self.n_theta, self.n_phi = self.program.grid
            points = self.n_theta * self.n_phi
        self.executor = runner.executor
        offsets = np.cumsum([0] + [in1.mul * (lay.lmax + 1) for lay in layouts])[:3]
        weight_index = factorised_weight_index((in1, channels, out), tuple(offsets))
        copy = None if channels is in2 else copy_channels_index(in2, in1.mul)
        self.frame = FactorisedFrame(runner, weight_index, copy, sign, in1.mul, points, self.shared_weights)

    @property
    def chunk_elements(self) -> int | None:
        """Grid values per block of samples (``sphere_frame``); None: no blocks."""
        return self.frame.chunk_elements

    @chunk_elements.setter
    def chunk_elements(self, value: int | None) -> None:
        self.frame.chunk_elements = value

    def _forward(self, x1, x2, weight):
        return self.frame(x1, x2, weight, not self.shared_weights)

    def descriptor(self):
        """One weighted Gaunt path per coupled (l1, l2, l3), l1 + l2 + l3 even (``uvu`` when mul2 = 1)."""
        return gaunt_descriptor(self.layouts)

    def path_weights(self, weight=None):
        """Per-path weights ``w1[u, l1] w2[u, l2] w3[u, l3]`` in descriptor order."""
        return factorised_path_weights(self.weight_or_internal(weight), self.layouts)

    def extra_repr(self) -> str:
        if self._grid == "quadrature":
            where = f"grid {self.n_theta} x {self.n_phi}"
        else:
            rings = self.n_u if self.transform == "fft" else self.n_theta
            where = f"transform={self.transform}, torus {self.n_u} x {self.n_v} ({rings} rings computed)"
        return super().extra_repr() + f", mul={self.mul}, {where}, executor={self.executor}"


__all__ = ["GauntProduct", "TRANSFORMS"]
