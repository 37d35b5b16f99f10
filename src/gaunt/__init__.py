"""gaunt: fast E(3)-equivariant tensor products (Gaunt in a 2D Fourier basis, and its peers)."""

from . import so3
from .so3 import Irrep, Irreps

__version__ = "0.1.0"
__all__ = ["so3", "Irrep", "Irreps", "__version__"]
