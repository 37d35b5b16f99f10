"""One switch over the tensor products, so that a layer can be built with any of them and compared.

``make_product(name, irreps_in1, irreps_in2, irreps_out, **kw)`` returns a ``TensorProduct``:

=========  ========================================  ==================================================
name       product                                   irreps it takes
=========  ========================================  ==================================================
"cg"       ``CGProduct`` (e3nn semantics)             any; default paths channel-wise (see below)
"gaunt"    ``GauntProduct`` (2D Fourier basis)        ``mul x (l, s(-1)^l)`` ("sphere functions")
"grid"     ``GridGauntProduct`` (quadrature)          as "gaunt"
"vector"   ``VectorGauntProduct`` (parity complete)   as "gaunt"; outputs may have both parities
"so2"      ``SO2Product`` (eSCN edge frame)           ``irreps_in2`` = edge harmonics ``0e+1o+...+L``;
                                                      called with edge *vectors* ``[..., 3]`` as x2
"gaunt_z"  ``EdgeAlignedGauntProduct``                as "so2", Gaunt paths (``nn.convolution``)
"auto"     "grid" if the irreps are sphere functions, else "cg"; logs its choice
=========  ========================================  ==================================================

Every returned product carries ``.chosen`` (the name of the product actually built, which for
"auto" is what it picked). A product named explicitly that cannot take the irreps raises
``ValueError`` (naming the product and the reason); there is never a silent fallback.

"cg" without ``instructions`` builds channel-wise paths: every allowed ``in1[i] x in2[j] -> out[k]``
with mode ``uuu`` (all three multiplicities equal) or ``uvu`` (``mul2 = 1``, ``mul_out = mul1``); pass
``connection="full"`` for e3nn's fully connected ``uvw`` paths, or explicit ``instructions``. With
sphere-function irreps (one parity sign per irreps) the parity rule leaves exactly the paths with
``l1 + l2 + l3`` even, i.e. the channel-wise CG product has the same paths as the Gaunt products.
"""
from __future__ import annotations

import logging

from ..products import CGProduct, GauntProduct, GridGauntProduct, SO2Product, TensorProduct, VectorGauntProduct
from ..products._spherical_irreps import check_spherical_product
from ..so3 import Irreps

logger = logging.getLogger("gaunt.nn")

PRODUCTS = ("cg", "gaunt", "grid", "vector", "so2", "gaunt_z", "auto")


def channelwise_instructions(irreps_in1, irreps_in2, irreps_out) -> list[tuple]:
    """Every allowed path ``(i1, i2, i_out, mode, True)`` with a channel-wise mode: ``uuu`` when
    ``mul1 = mul2 = mul_out``, ``uvu`` when ``mul2 = 1`` and ``mul_out = mul1``; other triples are skipped."""
    irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
    out = []
    for i1, (mul1, ir1) in enumerate(irreps_in1):
        for i2, (mul2, ir2) in enumerate(irreps_in2):
            for k, (mul3, ir3) in enumerate(irreps_out):
                if ir3 not in ir1 * ir2 or mul3 != mul1:
                    continue
                if mul2 == mul1:
                    out.append((i1, i2, k, "uuu", True))
                elif mul2 == 1:
                    out.append((i1, i2, k, "uvu", True))
    return out


def is_sphere_function_product(irreps_in1, irreps_in2, irreps_out) -> bool:
    """True when the Gaunt products accept the three irreps (see ``products._spherical_irreps``)."""
    try:
        check_spherical_product(irreps_in1, irreps_in2, irreps_out, "make_product")
    except ValueError:
        return False
    return True


def _edge_lmax(irreps_in2, name: str) -> int:
    irreps_in2 = Irreps(irreps_in2)
    lmax = irreps_in2.lmax if len(irreps_in2) else -1
    if lmax < 0 or irreps_in2 != Irreps.spherical_harmonics(lmax):
        raise ValueError(
            f"make_product({name!r}): irreps_in2 = {irreps_in2} must be the edge harmonics "
            f"1x0e+1x1o+1x2e+... (Irreps.spherical_harmonics(lmax)); the product is called with edge vectors"
        )
    return lmax


def _build(name: str, irreps_in1, irreps_in2, irreps_out, kw: dict) -> TensorProduct:
    if name == "cg":
        connection = kw.pop("connection", "channelwise")
        if "instructions" not in kw:
            if connection == "full":
                kw["instructions"] = None
            elif connection == "channelwise":
                instructions = channelwise_instructions(irreps_in1, irreps_in2, irreps_out)
                reached = {ins[2] for ins in instructions}
                missing = [str(mul_ir) for k, mul_ir in enumerate(Irreps(irreps_out)) if k not in reached]
                if missing:
                    raise ValueError(
                        f"no channel-wise path reaches output blocks {missing} from {Irreps(irreps_in1)} x "
                        f"{Irreps(irreps_in2)} (selection rules, or multiplicities: channel-wise paths need "
                        "mul_out = mul1 and mul2 in (mul1, 1)); pass connection='full' or instructions"
                    )
                kw["instructions"] = instructions
            else:
                raise ValueError(f"connection must be 'channelwise' or 'full', got {connection!r}")
        return CGProduct(irreps_in1, irreps_in2, irreps_out, **kw)
    if name in ("gaunt", "grid", "vector"):
        cls = {"gaunt": GauntProduct, "grid": GridGauntProduct, "vector": VectorGauntProduct}[name]
        return cls(irreps_in1, irreps_in2, irreps_out, **kw)
    if name == "so2":
        return SO2Product(irreps_in1, irreps_out, _edge_lmax(irreps_in2, name), **kw)
    if name == "gaunt_z":
        from .convolution import EdgeAlignedGauntProduct  # late import: convolution imports this module

        return EdgeAlignedGauntProduct(irreps_in1, _edge_lmax(irreps_in2, name), irreps_out, **kw)
    raise AssertionError(name)  # pragma: no cover


def make_product(name: str, irreps_in1, irreps_in2, irreps_out, **kw) -> TensorProduct:
    """Build the product called ``name`` (table in the module docstring) for these irreps.

    ``kw`` goes to the product's constructor (``internal_weights``, ``shared_weights``, ...; for "cg"
    also ``instructions`` or ``connection``). The result has ``.chosen``, the name actually built.
    Raises ``ValueError`` if ``name`` is unknown or the product cannot take the irreps.
    """
    if not isinstance(name, str) or name.lower() not in PRODUCTS:
        raise ValueError(f"unknown product {name!r}; expected one of {PRODUCTS}")
    name = name.lower()
    chosen = name
    if name == "auto":
        chosen = "grid" if is_sphere_function_product(irreps_in1, irreps_in2, irreps_out) else "cg"
        reason = "sphere-function irreps: O(L^3) grid Gaunt" if chosen == "grid" else "not sphere-function irreps"
        logger.info("make_product('auto'): chose %r for %s x %s -> %s (%s)",
                    chosen, Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out), reason)  # fmt: skip
    try:
        product = _build(chosen, irreps_in1, irreps_in2, irreps_out, dict(kw))
    except ValueError as error:
        raise ValueError(f"make_product({name!r}): cannot build the {chosen!r} product: {error}") from error
    product.chosen = chosen
    return product


__all__ = ["make_product", "channelwise_instructions", "is_sphere_function_product", "PRODUCTS"]
