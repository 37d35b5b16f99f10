"""Build the e3nn ``o3.TensorProduct`` that computes the same function as any product of ours.

Every product describes itself as a :class:`~gaunt.products.descriptor.ProductDescriptor`: paths
with a coupling tensor (Clebsch-Gordan, Gaunt, ...) and a coefficient. Every coupling kind is an
SO(3)-invariant tensor, hence a multiple of e3nn's ``wigner_3j`` for the same (l1, l2, l3):
``coupling = ratio * wigner_3j``. With e3nn's normalisations switched off (``"none"``: alpha = 1),
a path's factor ``f = coefficient * ratio`` is folded into its weights (weighted paths: e3nn weight
= f * our weight), or into e3nn's instruction ``path_weight`` for unweighted paths (e3nn multiplies
by ``sqrt(path_weight)``, so that takes ``f**2`` and needs ``f >= 0``).

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


def e3nn_instructions(descriptor: ProductDescriptor) -> tuple[list[tuple], torch.Tensor]:
    """e3nn instructions (normalisations "none") and the ``[weight_numel]`` per-weight factor
    ``coefficient * ratio`` that make an e3nn-semantics CG product equal ``dense_product(descriptor)``."""
    instructions, scale = [], []
    for path in descriptor.paths:
        (_, ir1), (_, ir2), (_, ir3) = descriptor.irreps(path)
        factor = path.coefficient * coupling_ratio(path.coupling, ir1.l, ir2.l, ir3.l)
        if path.has_weight:
            scale.append(torch.full((descriptor.path_weight_numel(path),), factor, dtype=torch.float64))
            path_weight = 1.0
        elif factor < 0:
            raise ValueError(f"to_e3nn: unweighted path {path} has a negative factor, which e3nn cannot express")
        else:
            path_weight = factor**2
        instructions.append((path.i_in1, path.i_in2, path.i_out, path.mode, path.has_weight, path_weight))
    return instructions, torch.cat(scale) if scale else torch.zeros(0, dtype=torch.float64)


def to_e3nn(descriptor: ProductDescriptor, shared_weights: bool = True, dtype: torch.dtype = torch.float64):
    """``(tp, scale)``: an ``e3nn.o3.TensorProduct`` with external weights, and a ``[weight_numel]``
    tensor, such that ``tp(x1, x2, scale * w) == dense_product(descriptor, x1, x2, w)`` for flat
    per-path weights ``w`` (a product's ``path_weights()``). The weight layout is unchanged.
    e3nn builds its coefficients in the default dtype, so it is built with ``dtype`` as default.
    """
    from e3nn import o3

    instructions, scale = e3nn_instructions(descriptor)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        tp = o3.TensorProduct(
            descriptor.irreps_in1.to_e3nn(),
            descriptor.irreps_in2.to_e3nn(),
            descriptor.irreps_out.to_e3nn(),
            instructions,
            irrep_normalization="none",
            path_normalization="none",
            internal_weights=False,
            shared_weights=shared_weights,
        )
    finally:
        torch.set_default_dtype(previous)
    return tp, scale


__all__ = ["coupling_ratio", "e3nn_instructions", "to_e3nn"]
