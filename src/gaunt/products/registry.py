"""The one registry of products: name -> what it is, what it accepts, how to build it.

Every consumer reads ``PRODUCTS`` (``nn`` layers through :func:`make_product`, ``expressivity``, ``bench``,
``gaunt check`` and the conformance tests), so adding a product is one module and one entry here.

=========  ==========================  ==========================================  ===========  ==========
name       class (options)             irreps it accepts                           2nd input    weights
=========  ==========================  ==========================================  ===========  ==========
"cg"       ``CGProduct``               any (default paths channel-wise)            features     per path
"gaunt"    ``GauntProduct``            sphere functions ``mul x (l, s(-1)^l)``     features     factorised
"gaunt_fft"``GauntProduct`` (fft)      as "gaunt"                                  features     factorised
"grid"     ``GridGauntProduct``        as "gaunt"                                  features     factorised
"vector"   ``VectorGauntProduct``      as "gaunt"; outputs of both parities         features     factorised
"so2"      ``SO2Product``              node irreps x edge harmonics 0e+1o+..+L     edge vectors per path
"gaunt_z"  ``EdgeAlignedGauntProduct`` sphere-function nodes x edge harmonics      edge vectors factorised
=========  ==========================  ==========================================  ===========  ==========

"auto" (:func:`choose_product`) is the one rule: "grid" when the irreps are sphere functions, else "cg";
the choice is logged and stored in ``product.chosen``. A product named explicitly that cannot take the
irreps raises ``ValueError`` naming the product and the reason; there is never a silent fallback.
Products with ``edge=True`` follow the edge protocol: ``product(x1, edge_vectors [..., 3], weight)``,
``product.edge_harmonics(edge_vectors)`` is the second input of their descriptor, and they are built
here from ``irreps_in2`` = the edge harmonics ``Irreps.spherical_harmonics(lmax)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..so3 import Irreps
from .base import TensorProduct
from .cg import CGProduct
from .edge_aligned import EdgeAlignedGauntProduct
from .gaunt_fourier import GauntProduct
from .gaunt_grid import GridGauntProduct
from .so2 import SO2Product
from .sphere_irreps import check_spherical_product
from .vector import VectorGauntProduct

logger = logging.getLogger("gaunt.products")


@dataclass(frozen=True)
class ProductSpec:
    """One registry entry. ``accepts``: "sphere" (``mul x (l, s(-1)^l)`` irreps) or "any"; ``edge``: the
    second input is edge vectors; ``weights``: "factorised" (``w1 w2 w3`` per channel and degree) or
    "per_path"; ``function``: entries with the same function and weights compute the same thing (e.g. the
    Gaunt products), so benchmarks compare them; ``options``: fixed constructor options; ``bench_name``: its
    name in ``gaunt bench``."""

    name: str
    cls: type
    summary: str
    accepts: str
    edge: bool
    weights: str
    function: str
    options: dict = field(default_factory=dict)
    bench_name: str = ""

    def build(self, irreps_in1, irreps_in2, irreps_out, **kw) -> TensorProduct:
        """The product for these irreps (``irreps_in2``: the edge harmonics when ``edge``); ``kw`` to the class."""
        kw = {**self.options, **kw}
        if self.edge:
            lmax = _edge_lmax(irreps_in2, self.name)
            if self.cls is SO2Product:
                return SO2Product(irreps_in1, irreps_out, lmax, **kw)
            return self.cls(irreps_in1, lmax, irreps_out, **kw)
        if self.cls is CGProduct and "instructions" not in kw:
            kw["instructions"] = _cg_instructions(
                irreps_in1, irreps_in2, irreps_out, kw.pop("connection", "channelwise")
            )
        return self.cls(irreps_in1, irreps_in2, irreps_out, **kw)


PRODUCTS: dict[str, ProductSpec] = {
    spec.name: spec
    for spec in (
        ProductSpec(
            "cg", CGProduct, "Clebsch-Gordan, e3nn semantics", "any", False, "per_path", "cg", bench_name="CGProduct"
        ),
        ProductSpec(
            "gaunt",
            GauntProduct,
            "Gaunt in the 2D Fourier basis (folded DFT)",
            "sphere",
            False,
            "factorised",
            "gaunt",
            bench_name="GauntProduct",
        ),
        ProductSpec(
            "gaunt_fft",
            GauntProduct,
            "Gaunt in the 2D Fourier basis (torch.fft)",
            "sphere",
            False,
            "factorised",
            "gaunt",
            {"transform": "fft"},
            bench_name="GauntProduct[fft]",
        ),
        ProductSpec(
            "grid",
            GridGauntProduct,
            "Gaunt by exact quadrature",
            "sphere",
            False,
            "factorised",
            "gaunt",
            bench_name="GridGauntProduct",
        ),
        ProductSpec(
            "vector",
            VectorGauntProduct,
            "Gaunt + odd (curl) paths, parity complete",
            "sphere",
            False,
            "factorised",
            "vector",
            bench_name="VectorGauntProduct",
        ),
        ProductSpec(
            "so2",
            SO2Product,
            "eSCN: CG paths in the edge frame",
            "any",
            True,
            "per_path",
            "cg",
            bench_name="SO2Product",
        ),
        ProductSpec(
            "gaunt_z",
            EdgeAlignedGauntProduct,
            "Gaunt in the edge frame (1D convolution)",
            "sphere",
            True,
            "factorised",
            "gaunt",
            bench_name="EdgeAlignedGauntProduct",
        ),
    )
}


def is_sphere_function_product(irreps_in1, irreps_in2, irreps_out) -> bool:
    """True when the Gaunt products accept the three irreps (``sphere_irreps.check_spherical_product``)."""
    try:
        check_spherical_product(irreps_in1, irreps_in2, irreps_out, "choose_product")
    except ValueError:
        return False
    return True


def choose_product(
    irreps_in1, irreps_in2, irreps_out, candidates=("grid", "cg"), sphere: bool | None = None
) -> tuple[str, str]:
    """The "auto" rule: ``(name, reason)``, the first of ``candidates`` whose irreps rule holds (``sphere``:
    whether the irreps are sphere functions, by default :func:`is_sphere_function_product`)."""
    if sphere is None:
        sphere = is_sphere_function_product(irreps_in1, irreps_in2, irreps_out)
    for name in candidates:
        if PRODUCTS[name].accepts == "any" or sphere:
            reason = "sphere-function irreps: O(L^3) Gaunt" if PRODUCTS[name].accepts == "sphere" else "any irreps"
            return name, reason
    raise ValueError(
        f"no product among {candidates} accepts {Irreps(irreps_in1)} x {Irreps(irreps_in2)} -> {Irreps(irreps_out)}"
    )


def make_product(name: str, irreps_in1, irreps_in2, irreps_out, **kw) -> TensorProduct:
    """Build the product called ``name`` (a key of ``PRODUCTS`` or "auto") for these irreps.

    ``kw`` goes to the constructor (``internal_weights``, ``shared_weights``, ``executor``, ...; for "cg"
    also ``instructions`` or ``connection="channelwise" | "full"``). The result has ``.chosen``, the name
    actually built. Raises ``ValueError`` if ``name`` is unknown or the product cannot take the irreps.

    >>> make_product("auto", "2x0e+2x1o", "0e+1o", "2x0e+2x1o").chosen   # sphere functions: O(L^3) Gaunt
    'grid'
    >>> make_product("auto", "2x0e+2x1e", "0e+1o", "2x1o+2x1e").chosen   # any other irreps
    'cg'
    """
    names = (*PRODUCTS, "auto")
    if not isinstance(name, str) or name.lower() not in names:
        raise ValueError(f"unknown product {name!r}; expected one of {names}")
    name = chosen = name.lower()
    if name == "auto":
        chosen, reason = choose_product(irreps_in1, irreps_in2, irreps_out)
        logger.info(
            "make_product('auto'): chose %r for %s x %s -> %s (%s)",
            chosen,
            Irreps(irreps_in1),
            Irreps(irreps_in2),
            Irreps(irreps_out),
            reason,
        )
    try:
        product = PRODUCTS[chosen].build(irreps_in1, irreps_in2, irreps_out, **kw)
    except ValueError as error:
        raise ValueError(f"make_product({name!r}): cannot build the {chosen!r} product: {error}") from error
    product.chosen = chosen
    return product


def channelwise_instructions(irreps_in1, irreps_in2, irreps_out) -> list[tuple]:
    """Every allowed path ``(i1, i2, i_out, mode, True)`` with a channel-wise mode: ``uuu`` when
    ``mul1 = mul2 = mul_out``, ``uvu`` when ``mul2 = 1`` and ``mul_out = mul1``; other triples are skipped.
    With sphere-function irreps the parity rule leaves exactly the Gaunt paths (l1 + l2 + l3 even)."""
    irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
    out = []
    for i1, (mul1, ir1) in enumerate(irreps_in1):
        for i2, (mul2, ir2) in enumerate(irreps_in2):
            for k, (mul3, ir3) in enumerate(irreps_out):
                if ir3 in ir1 * ir2 and mul3 == mul1 and mul2 in (mul1, 1):
                    out.append((i1, i2, k, "uuu" if mul2 == mul1 else "uvu", True))
    return out


def _cg_instructions(irreps_in1, irreps_in2, irreps_out, connection: str) -> list[tuple] | None:
    if connection == "full":
        return None  # every allowed uvw path (CGProduct's default)
    if connection != "channelwise":
        raise ValueError(f"connection must be 'channelwise' or 'full', got {connection!r}")
    instructions = channelwise_instructions(irreps_in1, irreps_in2, irreps_out)
    reached = {ins[2] for ins in instructions}
    missing = [str(mul_ir) for k, mul_ir in enumerate(Irreps(irreps_out)) if k not in reached]
    if missing:
        raise ValueError(
            f"no channel-wise path reaches output blocks {missing} from {Irreps(irreps_in1)} x "
            f"{Irreps(irreps_in2)} (selection rules, or multiplicities: channel-wise paths need "
            "mul_out = mul1 and mul2 in (mul1, 1)); pass connection='full' or instructions"
        )
    return instructions


def _edge_lmax(irreps_in2, name: str) -> int:
    irreps_in2 = Irreps(irreps_in2)
    lmax = irreps_in2.lmax if len(irreps_in2) else -1
    if lmax < 0 or irreps_in2 != Irreps.spherical_harmonics(lmax):
        raise ValueError(
            f"{name!r}: irreps_in2 = {irreps_in2} must be the edge harmonics 1x0e+1x1o+1x2e+... "
            "(Irreps.spherical_harmonics(lmax)); the product is called with edge vectors"
        )
    return lmax


__all__ = [
    "ProductSpec",
    "PRODUCTS",
    "make_product",
    "choose_product",
    "channelwise_instructions",
    "is_sphere_function_product",
]
