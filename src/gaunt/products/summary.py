"""The products table printed by ``gaunt demo``: each fast product against the CG reference.

For every product built on multiplicity-1 inputs of degrees 0..L (float64): the largest difference
from the e3nn ``TensorProduct`` computing the same function (built from the product's descriptor),
the equivariance error under a random improper rotation, and the expressivity measures.
Timings are not shown here: they belong to a benchmark with warm-up and a peer measured alongside.
"""

from __future__ import annotations

import torch

from ..so3 import Irreps, irreps_wigner_d, random_rotation
from .expressivity import build_product, expressivity_table, format_table


def _feature_checks(product: torch.nn.Module, batch: int = 64) -> tuple[float, float]:
    """(relative error vs e3nn, relative equivariance error) for a product of two features."""
    from .e3nn_interop import to_e3nn

    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(batch, product.irreps_in1.dim, generator=g, dtype=torch.float64)
    x2 = torch.randn(batch, product.irreps_in2.dim, generator=g, dtype=torch.float64)
    w = torch.randn(product.weight_numel, generator=g, dtype=torch.float64)
    out = product(x1, x2, w)
    scale = float(out.abs().max())
    tp, factor = to_e3nn(product.descriptor())
    ref = tp(x1, x2, factor * product.path_weights(w))
    R = -random_rotation(generator=g)  # improper: rotation and inversion at once
    d1, d2, d3 = (irreps_wigner_d(Irreps(i), R) for i in (product.irreps_in1, product.irreps_in2, product.irreps_out))
    rotated = product(x1 @ d1.T, x2 @ d2.T, w)
    return float((out - ref).abs().max()) / scale, float((rotated - out @ d3.T).abs().max()) / scale


def demo_table(lmax: int = 3) -> None:
    """Print correctness and expressivity of the feature products (float64, CPU)."""
    print(
        f"Products on inputs of degrees 0..{lmax} (mul 1, batch 64, float64), against e3nn computing the same function:"
    )
    print(f"{'product':>20} {'|ours - e3nn|':>14} {'equivariance':>13}   (both relative to max |output|)")
    from .registry import PRODUCTS

    for name in [name for name, spec in PRODUCTS.items() if not spec.edge]:
        err, equi = _feature_checks(build_product(name, lmax))
        print(f"{name:>20} {err:>14.1e} {equi:>13.1e}")
    print("\nExpressivity (The Price of Freedom): reachable couplings and rank of the span of bilinear maps")
    print(format_table(expressivity_table((1, 2))))


__all__ = ["demo_table"]
