"""Tensor products behind one interface (see ``base.TensorProduct``).

=====================  ===================================================  ==========
product                what it computes                                     cost in L
=====================  ===================================================  ==========
``CGProduct``          Clebsch-Gordan, e3nn's instruction semantics          O(L^5..6)
``GauntProduct``       Gaunt product in the 2D Fourier basis (DFT or FFT)    O(L^3)
``GridGauntProduct``   the same function on an exact spherical grid          O(L^3)
``VectorGauntProduct`` Gaunt + the odd (antisymmetric) paths, parity-complete O(L^3)
``SO2Product``         eSCN: node feature x edge harmonics in the edge frame O(L^3)
``EdgeAlignedGauntProduct`` Gaunt with edge harmonics in the edge frame      O(L^3)
``CPProduct``          low-rank CP approximation of the CG tensor            O(R L)
=====================  ===================================================  ==========

Each product describes what it computes with ``descriptor()`` (paths and coupling tensors) apart
from how it runs; ``descriptor.dense_product`` is the plain-einsum oracle used by the tests.

Reading order (what, then how):

* ``base``: the interface (``Product(irreps_in1, irreps_in2, irreps_out, **options)(x1, x2, weight)``).
* ``registry``: name -> product (what it accepts, edge protocol, weights); ``make_product``, the "auto" rule.
* ``descriptor``: paths and coupling tensors, ``dense_product`` (the oracle); ``path_executor`` runs paths.
* ``sphere_irreps``: irreps that are sphere functions; ``program``: sphere programs and their derivatives;
  ``sphere_programs`` / ``fourier_tables``: the Gaunt programs' grids and tables; ``powers``: the many-body
  power programs (``power_family``: their derivatives); ``fft_program``: the paper's ``torch.fft`` execution;
  ``grid_messages``: the grid-summed convolution's per-edge sum as one multilinear form (four slots, closed under
  differentiation).
* ``executors``: how a program runs. ``torch_executor`` (with ``row_ops``): the reference. ``cpu_executor``
  (with ``cpu_build`` and ``csrc/tiles.h``): the fused CPU kernels of a program, per program the cheaper of
  ``csrc/sphere_program.cpp`` (the grid in cache) and ``csrc/direct_program.cpp`` (``coupling``: the sparse
  per-channel coupling list; ``cpu_direct``: the choice). ``triton_executor`` (with ``triton_layout`` and
  ``triton_kernels``): the fused GPU kernels. ``sphere_frame``: weights, broadcasting, blocks.
* The other forms on the same executors: ``cpu_powers`` / ``triton_powers`` (``power_runners``: the table),
  ``cpu_grid_messages`` / ``triton_grid_messages`` (``grid_messages_runners``: the table, ``GridMessages``).
* Products: ``cg``, ``gaunt_fourier``, ``gaunt_grid``, ``vector`` (+ ``odd_gaunt``), ``so2``,
  ``edge_aligned``, ``cp``. Tools: ``e3nn_interop``, ``expressivity``, ``summary``.
"""

from .base import TensorProduct
from .cg import CGProduct
from .cp import CPProduct
from .descriptor import COUPLINGS, Path, ProductDescriptor, dense_product, register_coupling
from .edge_aligned import EdgeAlignedGauntProduct
from .executors import EXECUTORS, resolve_executor
from .gaunt_fourier import GauntProduct
from .gaunt_grid import GridGauntProduct
from .grid_messages_runners import GridMessages
from .powers import PowerProgram, TorchPowers, power_program
from .program import SphereProgram, derivative
from .registry import PRODUCTS, ProductSpec, choose_product, make_product
from .so2 import SO2Product
from .sphere_irreps import check_spherical_product, parse_spherical_irreps
from .summary import demo_table
from .vector import VectorGauntProduct

__all__ = [
    "TensorProduct",
    "CGProduct",
    "GauntProduct",
    "GridGauntProduct",
    "VectorGauntProduct",
    "SO2Product",
    "EdgeAlignedGauntProduct",
    "CPProduct",
    "Path",
    "ProductDescriptor",
    "dense_product",
    "COUPLINGS",
    "register_coupling",
    "demo_table",
    "PRODUCTS",
    "ProductSpec",
    "make_product",
    "choose_product",
    "EXECUTORS",
    "resolve_executor",
    "SphereProgram",
    "derivative",
    "PowerProgram",
    "power_program",
    "TorchPowers",
    "GridMessages",
    "check_spherical_product",
    "parse_spherical_irreps",
]
