"""Pure SO(3)/O(3) mathematics, no ``nn.Module``: irreps, harmonics, Wigner D, CG and Gaunt
coefficients, the spherical-harmonic <-> 2D Fourier change of basis and quadrature grids.

Everything follows e3nn's conventions (basis, signs, ``mul_ir`` layout) and is exact in float64.
"""

from .clebsch_gordan import clebsch_gordan, complex_clebsch_gordan, is_triangle
from .fourier import FourierBasis, fourier_basis, fourier_to_sh, sh_to_fourier, synthesis_coefficients
from .gaunt import gaunt_coefficients, wigner_3j_zero
from .grids import SphericalGrid, exactness_degree, grid_shape, spherical_grid
from .harmonics import spherical_harmonics
from .irreps import Irrep, Irreps, MulIr
from .wigner import irreps_wigner_d, random_rotation, rotation_matrix, wigner_d, wigner_d_from_angles

__all__ = [
    "Irrep",
    "Irreps",
    "MulIr",
    "spherical_harmonics",
    "wigner_d",
    "wigner_d_from_angles",
    "irreps_wigner_d",
    "rotation_matrix",
    "random_rotation",
    "clebsch_gordan",
    "complex_clebsch_gordan",
    "is_triangle",
    "gaunt_coefficients",
    "wigner_3j_zero",
    "FourierBasis",
    "fourier_basis",
    "sh_to_fourier",
    "fourier_to_sh",
    "synthesis_coefficients",
    "SphericalGrid",
    "spherical_grid",
    "grid_shape",
    "exactness_degree",
]
