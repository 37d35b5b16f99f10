"""Equivariant neural-network layers built on ``gaunt.so3`` and ``gaunt.products``.

Basic layers: :class:`Linear` (channel mixing), :class:`Gate` / :class:`NormActivation` /
:class:`S2Activation` (nonlinearities), :class:`EquivariantLayerNorm`, and the radial features
:class:`BesselBasis`, :class:`PolynomialCutoff`, :class:`RadialMLP`.
"""
from .activation import Gate, NormActivation, NormalizedActivation
from .linear import Linear
from .norm import EquivariantLayerNorm
from .radial import BesselBasis, PolynomialCutoff, RadialMLP
from .s2_activation import S2Activation

__all__ = [
    "Linear",
    "Gate", "NormActivation", "NormalizedActivation", "S2Activation",
    "EquivariantLayerNorm",
    "BesselBasis", "PolynomialCutoff", "RadialMLP",
]  # fmt: skip
