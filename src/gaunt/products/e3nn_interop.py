"""Build the e3nn ``o3.TensorProduct`` that computes the same function as any product of ours.

Every product describes itself as a :class:`~gaunt.products.descriptor.ProductDescriptor`: paths
with a coupling tensor (Clebsch-Gordan, Gaunt, ...) and a coefficient. Every coupling kind is an
SO(3)-invariant tensor, hence a multiple of e3nn's ``wigner_3j`` for the same (l1, l2, l3):
``coupling = ratio * wigner_3j``. With e3nn's normalisations switched off (``"none"``: alpha = 1),
the e3nn instruction ``(i1, i2, i_out, mode, has_weight, coefficient * ratio)`` then reproduces
the path exactly, and per-path weights pass through unchanged.

Used by the tests (an independent oracle) and by ``gaunt bench`` (the peer computing the same
function). e3nn is imported lazily: it is a test/benchmark dependency, not a runtime one.
"""
from __future__ import annotations

import torch

from ..so3 import clebsch_gordan
from .descriptor import COUPLINGS, ProductDescriptor


def coupling_ratio(kind: str, l1: int, l2: int, l3: int) -> float:
    """The number r with ``COUPLINGS[kind](l1, l2, l3) == r * clebsch_gordan(l1, l2, l3)``.

    Raises ValueError if the coupling is not proportional to the CG tensor (not invariant).
    """
    cpl = COUPLINGS[kind](l1, l2, l3, torch.float64, torch.device("cpu"))
    cg = clebsch_gordan(l1, l2, l3)
    ratio = float((cpl * cg).sum() / (cg * cg).sum())
    if float((cpl - ratio * cg).abs().max()) > 1e-12 * max(1.0, float(cpl.abs().max())):
        raise ValueError(f"coupling {kind!r} for ({l1}, {l2}, {l3}) is not proportional to the CG tensor")
    return ratio


def to_e3nn(descriptor: ProductDescriptor, shared_weights: bool = True):
    """An ``e3nn.o3.TensorProduct`` (external weights) equal to ``dense_product(descriptor, ...)``.

    Call it as ``tp(x1, x2, weight)`` with the same flat per-path weights (``path_weights()`` of a
    product). Paths whose coupling vanishes identically are kept (with coefficient 0) so that the
    weight layout is unchanged.
    """
    from e3nn import o3

    instructions = []
    for path in descriptor.paths:
        (_, ir1), (_, ir2), (_, ir3) = descriptor.irreps(path)
        ratio = coupling_ratio(path.coupling, ir1.l, ir2.l, ir3.l)
        instructions.append((path.i_in1, path.i_in2, path.i_out, path.mode, path.has_weight, path.coefficient * ratio))
    return o3.TensorProduct(
        descriptor.irreps_in1.to_e3nn(),
        descriptor.irreps_in2.to_e3nn(),
        descriptor.irreps_out.to_e3nn(),
        instructions,
        irrep_normalization="none",
        path_normalization="none",
        internal_weights=False,
        shared_weights=shared_weights,
    )


__all__ = ["coupling_ratio", "to_e3nn"]
