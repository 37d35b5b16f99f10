"""Tensor products behind one interface (see ``base.TensorProduct``).

=====================  ===================================================  ==========
product                what it computes                                     cost in L
=====================  ===================================================  ==========
``CGProduct``          Clebsch-Gordan, e3nn's instruction semantics          O(L^5..6)
``GauntProduct``       Gaunt product in the 2D Fourier basis (DFT or FFT)    O(L^3)
``GridGauntProduct``   the same function on an exact spherical grid          O(L^3)
``VectorGauntProduct`` Gaunt + the odd (antisymmetric) paths, parity-complete O(L^3)
``SO2Product``         eSCN: node feature x edge harmonics in the edge frame O(L^3)
``CPProduct``          low-rank CP approximation of the CG tensor            O(R L)
=====================  ===================================================  ==========

Each product describes what it computes with ``descriptor()`` (paths and coupling tensors) apart
from how it runs; ``descriptor.dense_product`` is the plain-einsum oracle used by the tests.
"""
from .base import TensorProduct
from .cg import CGProduct
from .cp import CPProduct
from .descriptor import COUPLINGS, Path, ProductDescriptor, dense_product, register_coupling
from .gaunt_fourier import GauntProduct
from .gaunt_grid import GridGauntProduct
from .so2 import SO2Product
from .summary import demo_table
from .vector import VectorGauntProduct

__all__ = [
    "TensorProduct", "CGProduct", "GauntProduct", "GridGauntProduct", "VectorGauntProduct", "SO2Product",
    "CPProduct", "Path", "ProductDescriptor", "dense_product", "COUPLINGS", "register_coupling", "demo_table",
]  # fmt: skip
