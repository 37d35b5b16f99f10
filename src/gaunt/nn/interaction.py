"""Feature interaction (Equiformer-style self-interaction): a node feature times itself, or times a
second feature, through any tensor product with learnable weights.

    self-interaction:   out = product(x, x)        x [..., irreps_in.dim] -> [..., irreps_out.dim]
    two features:       out = product(x, y)        y [..., irreps_in2.dim]

``product=`` picks the product through ``make_product`` ("gaunt", "grid", "vector", "cg", "auto"); the
weights are the product's own, internal and learnable (Gaunt products: factorised ``w1, w2, w3``
starting at 1; "cg": one weight per channel-wise path and channel, e3nn normalisation). The layer is
channel-wise: output channel u is built from input channel u (of both factors).

Irreps. Gaunt products ("gaunt", "grid", "vector") read each channel as a function on the sphere:
``irreps_in = mul x (l, s (-1)^l)`` for l = 0..L (increasing degrees, one mul, one parity sign s,
e.g. ``"8x0e+8x1o+8x2e"``); the output has the same mul and the sign of the product, s^2 = +1 for the
self-interaction (e.g. ``"8x0e+8x1o+8x2e+8x3o+8x4e"``). Anything else raises ``ValueError``.
"cg" accepts any irreps with channel-wise paths (``mul_out = mul1``, ``mul2 in (mul1, 1)``); with
sphere-function irreps it has exactly the Gaunt paths (l1 + l2 + l3 even), with independent weights.

Cost per channel at L_in = L_out = L: O(L^3) for the Gaunt products, O(L^6) for "cg".
"""

from __future__ import annotations

import torch

from ..products import make_product
from ..so3 import Irreps

_EDGE_PRODUCTS = ("so2", "gaunt_z")


class FeatureInteraction(torch.nn.Module):
    """``x [..., irreps_in.dim] (, y [..., irreps_in2.dim]) -> [..., irreps_out.dim]`` (module docstring).

    Args:
        irreps_in: irreps of x.
        irreps_out: output irreps.
        product: "gaunt" (default) | "grid" | "vector" | "cg" | "auto" (see ``products.registry``).
        irreps_in2: irreps of a second feature y; None (default) makes the layer a self-interaction x * x.
        **product_kw: passed to the product (e.g. ``weight_init="randn"`` for the Gaunt products,
            ``instructions`` / ``connection`` for "cg", ``check_finite``).

    ``self.product`` is the product (its ``.chosen`` says which was built), ``descriptor()`` and
    ``path_weights()`` describe the computed function per path (for tests and comparisons).
    """

    def __init__(self, irreps_in, irreps_out, product: str = "gaunt", irreps_in2=None, **product_kw) -> None:
        super().__init__()
        if isinstance(product, str) and product.lower() in _EDGE_PRODUCTS:
            raise ValueError(
                f"FeatureInteraction: product {product!r} multiplies by edge vectors; "
                "use nn.convolution.EquivariantConvolution for it"
            )
        self.irreps_in, self.irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        self.self_interaction = irreps_in2 is None
        self.irreps_in2 = self.irreps_in if irreps_in2 is None else Irreps(irreps_in2)
        product_kw.setdefault("internal_weights", True)
        self.product = make_product(product, self.irreps_in, self.irreps_in2, self.irreps_out, **product_kw)
        self.chosen = self.product.chosen

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        name = "FeatureInteraction"
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[-1] != self.irreps_in.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{name}: x has shape {shape}; irreps_in = {self.irreps_in} needs [..., {self.irreps_in.dim}]"
            )
        if self.self_interaction:
            if y is not None:
                raise ValueError(f"{name}: built as a self-interaction (irreps_in2=None); do not pass y")
            y = x
        elif y is None:
            raise ValueError(f"{name}: built with irreps_in2 = {self.irreps_in2}; pass the second feature y")
        elif not isinstance(y, torch.Tensor) or y.dim() == 0 or y.shape[-1] != self.irreps_in2.dim:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"{name}: y has shape {shape}; irreps_in2 = {self.irreps_in2} needs [..., {self.irreps_in2.dim}]"
            )
        return self.product(x, y)

    def descriptor(self):
        """The product's paths (``products.descriptor.ProductDescriptor``); its inputs are (x, x) or (x, y)."""
        return self.product.descriptor()

    def path_weights(self) -> torch.Tensor:
        """The current weights as per-path weights of ``descriptor()``."""
        return self.product.path_weights()

    def extra_repr(self) -> str:
        second = "itself" if self.self_interaction else str(self.irreps_in2)
        return f"{self.irreps_in} x {second} -> {self.irreps_out}, product={self.chosen!r}"


__all__ = ["FeatureInteraction"]
