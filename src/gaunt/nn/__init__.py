"""Equivariant neural-network layers built on ``gaunt.so3`` and ``gaunt.products``.

Basic layers: :class:`Linear` (channel mixing), :class:`Gate` / :class:`NormActivation` /
:class:`S2Activation` (nonlinearities), :class:`EquivariantLayerNorm`, and the radial features
:class:`BesselBasis`, :class:`PolynomialCutoff`, :class:`RadialMLP`.

The Gaunt paper's three applications, each with a ``product=`` switch (``make_product``):
:class:`FeatureInteraction`, :class:`EquivariantConvolution` (with the edge-on-axis fast path
:class:`EdgeAlignedGauntProduct`, and the grid-summed executor :class:`GridConvolution`) and
:class:`ManyBodyProduct` (MACE-style correlation order nu).
"""

from ..products import EdgeAlignedGauntProduct, make_product
from .activation import Gate, NormActivation, NormalizedActivation
from .convolution import EquivariantConvolution
from .grid_convolution import GridConvolution
from .interaction import FeatureInteraction
from .linear import Linear
from .many_body import CGManyBody, GauntManyBody, ManyBodyProduct
from .norm import EquivariantLayerNorm
from .radial import BesselBasis, PolynomialCutoff, RadialMLP
from .s2_activation import S2Activation

__all__ = [
    "Linear",
    "Gate",
    "NormActivation",
    "NormalizedActivation",
    "S2Activation",
    "EquivariantLayerNorm",
    "BesselBasis",
    "PolynomialCutoff",
    "RadialMLP",
    "make_product",
    "FeatureInteraction",
    "EquivariantConvolution",
    "EdgeAlignedGauntProduct",
    "GridConvolution",
    "ManyBodyProduct",
    "CGManyBody",
    "GauntManyBody",
]
