"""Interatomic potentials built from ``gaunt.nn`` layers: :class:`GauntPotential` (MACE-style, product switch)."""

from .blocks import InteractionBlock, sphere_irreps
from .io import load_model, model_from_state, model_state, save_model
from .potential import PRODUCTS, GauntPotential, PotentialConfig

__all__ = [
    "GauntPotential",
    "PotentialConfig",
    "PRODUCTS",
    "InteractionBlock",
    "sphere_irreps",
    "save_model",
    "load_model",
    "model_state",
    "model_from_state",
]
