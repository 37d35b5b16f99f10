"""Interactability and expressivity of tensor products (after The Price of Freedom, Xie et al. 2025).

A product with weights w is a family of bilinear maps ``B_w: V1 x V2 -> V3``; its full bilinear
tensor ``T_w[i, j, k] = B_w(e_i, e_j)[k]`` is ``[d1, d2, d3]``. Different "fast" products are different
families, and these measures say how much of the space of *all* O(3)-equivariant bilinear maps each
one reaches:

* **Interactability** (:func:`reachable_paths`): the set of couplings ``ir1 x ir2 -> ir_out`` whose
  block of T is non-zero for generic weights, i.e. whose output block responds to inputs supported
  on one degree each. Compared with all couplings allowed by the triangle and parity rules
  (:func:`allowed_couplings`). A Gaunt product misses every coupling with ``l1 + l2 + l3`` odd
  (``1o x 1o -> 1e``, the cross product, is the smallest).
* **Expressivity** (:func:`bilinear_rank`): the dimension of ``span{T_w : w}``, the rank of the
  matrix stacking ``vec(T_w)`` for many random weight draws (SVD, relative tolerance), compared with
  the dimension of the space of all equivariant bilinear maps, ``sum mul1 mul2 mul_out`` over allowed
  block triples (:func:`equivariant_dimension`; the number of CG paths for multiplicity 1).
* **Weight dimension** (:func:`weight_dimension`, extra): the rank of the Jacobian ``d vec(T_w) / d w``
  at a random w, the number of independent directions the weights actually move the map in. The
  span of a factorised family ``w1[l1] w2[l2] w3[l3]`` can be as large as per-path weights, but it
  is reached by far fewer degrees of freedom: this column shows that price.

Products are probed through their common interface only: ``product(x1, x2, weight)`` with external
shared weights (internal ones are temporarily overwritten). A product with an ``edge_harmonics``
method (``SO2Product``) takes edge vectors as second input; its bilinear tensor in (x1, Y(edge)) is
recovered by least squares over random directions (exact: the output is linear in Y). Approximately
equivariant products (CP) are measured as they are: their span is not confined to equivariant maps.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..so3 import Irrep, Irreps

F64 = torch.float64


class Coupling(NamedTuple):
    """One coupling ``ir1 x ir2 -> ir_out`` (degrees with parities)."""

    ir1: Irrep
    ir2: Irrep
    ir_out: Irrep

    def __str__(self) -> str:
        return f"{self.ir1} x {self.ir2} -> {self.ir_out}"


# ----------------------------------------------------------------------------- reference spaces
def sh_irreps(lmax: int, mul: int = 1) -> Irreps:
    """``mul x (0e + 1o + ... + lmax)``: the inputs every product is measured on."""
    return Irreps([(mul, (l, (-1) ** l)) for l in range(lmax + 1)])


def full_output_irreps(lmax: int, mul: int = 1) -> Irreps:
    """Every irrep of degree <= lmax that two ``sh_irreps`` inputs can couple to: 0e, then 1e, 1o, ... (no 0o)."""
    return Irreps([(mul, (0, 1))] + [(mul, (l, p)) for l in range(1, lmax + 1) for p in (1, -1)])


def allowed_couplings(irreps_in1, irreps_in2, irreps_out) -> frozenset[Coupling]:
    """All couplings permitted by the triangle rule and parity (``p1 p2 = p_out``)."""
    return frozenset(
        Coupling(ir1, ir2, ir3)
        for _, ir1 in Irreps(irreps_in1)
        for _, ir2 in Irreps(irreps_in2)
        for _, ir3 in Irreps(irreps_out)
        if abs(ir1.l - ir2.l) <= ir3.l <= ir1.l + ir2.l and ir1.p * ir2.p == ir3.p
    )


def equivariant_dimension(irreps_in1, irreps_in2, irreps_out) -> int:
    """Dimension of the space of all O(3)-equivariant bilinear maps: ``sum mul1 mul2 mul_out`` over allowed triples."""
    return sum(
        m1 * m2 * m3
        for m1, ir1 in Irreps(irreps_in1)
        for m2, ir2 in Irreps(irreps_in2)
        for m3, ir3 in Irreps(irreps_out)
        if abs(ir1.l - ir2.l) <= ir3.l <= ir1.l + ir2.l and ir1.p * ir2.p == ir3.p
    )


# ----------------------------------------------------------------------------- probing a product
def second_irreps(product: torch.nn.Module) -> Irreps:
    """Irreps of the second bilinear argument: ``irreps_edge`` for edge products, else ``irreps_in2``."""
    return Irreps(product.irreps_edge if product.takes_edge_vectors else product.irreps_in2)


def _call(product: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``product(x1, x2)`` with the given flat weight, whatever the product's weight mode."""
    if weight is None or product.weight_numel == 0:
        return product(x1, x2) if product.internal_weights or product.weight_numel == 0 else product(x1, x2, weight)
    if product.internal_weights:  # substitute the parameter for this call only
        return torch.func.functional_call(product, {"weight": weight}, (x1, x2))
    return product(x1, x2, weight)


def bilinear_tensor(product: torch.nn.Module, weight: torch.Tensor | None, seed: int = 0) -> torch.Tensor:
    """``T[i, j, k] = B_w(e_i, e_j)[k]``, ``[d1, d2, d3]`` in float64 (the product must run in float64)."""
    d1, d3 = product.irreps_in1.dim, product.irreps_out.dim
    e1 = torch.eye(d1, dtype=F64)
    if not product.takes_edge_vectors:
        d2 = product.irreps_in2.dim
        x1 = e1[:, None, :].expand(d1, d2, d1).reshape(-1, d1)
        x2 = torch.eye(d2, dtype=F64)[None].expand(d1, d2, d2).reshape(-1, d2)
        return _call(product, x1, x2, weight).reshape(d1, d2, d3)
    # edge product: out(e_i, n_g) = sum_j Y_j(n_g) T[i, j, :]; solve for T from enough random directions
    d2 = second_irreps(product).dim
    n = 2 * d2 + 8
    edges = torch.randn(n, 3, dtype=F64, generator=torch.Generator().manual_seed(seed))
    y = product.edge_harmonics(edges)  # [n, d2]
    out = _call(product, e1[:, None, :].expand(d1, n, d1).reshape(-1, d1), edges.repeat(d1, 1), weight)
    out = out.reshape(d1, n, d3).transpose(0, 1).reshape(n, d1 * d3)
    t = torch.linalg.lstsq(y, out).solution  # [d2, d1 d3]
    residual = (y @ t - out).abs().max()
    if residual > 1e-8 * max(float(out.abs().max()), 1e-300):
        name = type(product).__name__
        raise ValueError(f"{name}: output is not linear in the edge harmonics (residual {float(residual):.1e})")
    return t.reshape(d2, d1, d3).transpose(0, 1)


def _random_weight(product: torch.nn.Module, generator: torch.Generator) -> torch.Tensor | None:
    return torch.randn(product.weight_numel, dtype=F64, generator=generator) if product.weight_numel else None


def reachable_paths(
    product: torch.nn.Module, n_draws: int = 2, rtol: float = 1e-9, seed: int = 0
) -> frozenset[Coupling]:
    """Couplings ``ir1 x ir2 -> ir_out`` whose block of the bilinear tensor is non-zero for generic weights.

    A block counts as reached when its largest entry exceeds ``rtol`` times the largest entry of T,
    for any of ``n_draws`` random weight draws.
    """
    g = torch.Generator().manual_seed(seed)
    irreps1, irreps2, irreps3 = Irreps(product.irreps_in1), second_irreps(product), Irreps(product.irreps_out)
    reached: set[Coupling] = set()
    for draw in range(n_draws):
        t = bilinear_tensor(product, _random_weight(product, g), seed=seed + draw).abs()
        scale = float(t.max()) if t.numel() else 0.0
        for s1, (_, ir1) in zip(irreps1.slices(), irreps1):
            for s2, (_, ir2) in zip(irreps2.slices(), irreps2):
                for s3, (_, ir3) in zip(irreps3.slices(), irreps3):
                    block = t[s1, s2, s3]
                    if block.numel() and scale > 0 and float(block.max()) > rtol * scale:
                        reached.add(Coupling(ir1, ir2, ir3))
    return frozenset(reached)


def bilinear_rank(product: torch.nn.Module, n_draws: int | None = None, rtol: float = 1e-9, seed: int = 0) -> int:
    """Dimension of ``span{T_w}`` over the weights: rank of ``[vec(T_w1); vec(T_w2); ...]`` (SVD, relative ``rtol``).

    ``n_draws`` defaults to the equivariant dimension + 8 (enough for any equivariant product; if the
    result equals ``n_draws`` it is only a lower bound).
    """
    if n_draws is None:
        n_draws = equivariant_dimension(product.irreps_in1, second_irreps(product), product.irreps_out) + 8
    g = torch.Generator().manual_seed(seed)
    rows = [bilinear_tensor(product, _random_weight(product, g), seed=seed).reshape(-1) for _ in range(n_draws)]
    s = torch.linalg.svdvals(torch.stack(rows))
    return int((s > rtol * s[0]).sum()) if len(s) and s[0] > 0 else 0


def weight_dimension(product: torch.nn.Module, rtol: float = 1e-9, seed: int = 0) -> int:
    """Rank of the Jacobian ``d vec(T_w) / d w`` at a random w (forward-mode, one pass per weight)."""
    import torch.autograd.forward_ad as fwAD

    if product.weight_numel == 0:
        return 0
    w = _random_weight(product, torch.Generator().manual_seed(seed))
    columns = []
    for i in range(product.weight_numel):
        with fwAD.dual_level():
            tangent = torch.zeros_like(w)
            tangent[i] = 1.0
            t = bilinear_tensor(product, fwAD.make_dual(w, tangent), seed=seed)
            columns.append(fwAD.unpack_dual(t).tangent.reshape(-1))
    s = torch.linalg.svdvals(torch.stack(columns))
    return int((s > rtol * s[0]).sum()) if s[0] > 0 else 0


# ----------------------------------------------------------------------------- the table
def build_product(name: str, lmax: int) -> torch.nn.Module:
    """The registered product ``name`` (``registry.PRODUCTS``) on multiplicity-1 inputs of degrees 0..lmax
    (edge products: edge harmonics of degree lmax), external shared weights, float64 tables: all reachable
    outputs if it takes them, else the sphere-function ones."""
    from .registry import PRODUCTS

    spec, errors = PRODUCTS[name], []
    second = Irreps.spherical_harmonics(lmax) if spec.edge else sh_irreps(lmax)
    for out in (full_output_irreps(lmax), sh_irreps(lmax)):
        try:
            return spec.build(sh_irreps(lmax), second, out, internal_weights=False, shared_weights=True)
        except (ValueError, TypeError) as error:
            errors.append(str(error))
    raise ValueError(f"cannot build {name!r} at L={lmax}: {errors}")


def available_products(names: Iterable[str] | None = None) -> list[str]:
    """The registered products (or those of ``names``) that the table measures: every exact product.
    (``CPProduct`` is not registered: below full rank it is only approximately equivariant, so these
    measures, spans of equivariant maps, do not apply; its measure is ``cp.cp_rank_sweep``.)"""
    from .registry import PRODUCTS

    return [name for name in (PRODUCTS if names is None else names) if name in PRODUCTS]


@dataclass(frozen=True)
class ExpressivityRow:
    """One product at one L (multiplicity-1 inputs of degrees 0..L, outputs up to degree L)."""

    product: str
    L: int
    reachable: int  # couplings reached (interactability numerator)
    total: int  # couplings allowed by triangle + parity into all outputs of degree <= L
    rank: int  # dim span{B_w} (expressivity numerator)
    full_dimension: int  # dim of all equivariant bilinear maps on the same spaces
    weight_dimension: int  # rank of d B_w / d w: independent directions of the weights
    missing: tuple[Coupling, ...]  # allowed couplings the product cannot produce


def measure(product: torch.nn.Module, name: str, lmax: int) -> ExpressivityRow:
    """All measures of one product built on ``sh_irreps(lmax)`` (see :func:`build_product`)."""
    allowed = allowed_couplings(sh_irreps(lmax), sh_irreps(lmax), full_output_irreps(lmax))
    reached = reachable_paths(product)
    full = equivariant_dimension(sh_irreps(lmax), sh_irreps(lmax), full_output_irreps(lmax))
    missing = tuple(sorted(allowed - reached, key=lambda c: (c.ir_out.l, c.ir1.l, c.ir2.l, -c.ir_out.p)))
    return ExpressivityRow(
        name,
        lmax,
        len(reached & allowed),
        len(allowed),
        bilinear_rank(product),
        full,
        weight_dimension(product),
        missing,
    )


def expressivity_table(
    L_values: Sequence[int] = (1, 2, 3, 4), products: Iterable[str] | None = None
) -> list[ExpressivityRow]:
    """Rows (product, L, reachable, total, rank, full dimension, ...) for every available product."""
    rows = []
    for name in available_products(products):
        for lmax in L_values:
            rows.append(measure(build_product(name, lmax), name, lmax))
    return rows


def format_table(rows: Sequence[ExpressivityRow]) -> str:
    """Plain-text table; interactability = reachable / total, expressivity = rank / full dimension."""
    head = ("product", "L", "paths reached", "interactability", "span rank", "expressivity", "weight dof")
    body = [
        (
            r.product,
            str(r.L),
            f"{r.reachable} / {r.total}",
            f"{r.reachable / r.total:.0%}",
            f"{r.rank} / {r.full_dimension}",
            f"{r.rank / r.full_dimension:.0%}",
            str(r.weight_dimension),
        )
        for r in rows
    ]
    widths = [max(len(x) for x in column) for column in zip(head, *body)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lowest = min((r.L for r in rows), default=0)  # list the missing couplings at the smallest L only
    notes = [
        f"{r.product} at L={r.L} misses: {', '.join(map(str, r.missing))}" for r in rows if r.missing and r.L == lowest
    ]
    return "\n".join(lines + ([""] + notes if notes else []))


def print_expressivity_table(L_values: Sequence[int] = (1, 2, 3, 4), products: Iterable[str] | None = None) -> None:
    """Print :func:`format_table` of :func:`expressivity_table`."""
    print(format_table(expressivity_table(L_values, products)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Interactability and expressivity of the tensor products.")
    parser.add_argument("--L", type=int, nargs="+", default=[1, 2, 3, 4], help="degrees to measure (default 1 2 3 4)")
    from .registry import PRODUCTS

    parser.add_argument("--products", nargs="+", default=None, choices=sorted(PRODUCTS), help="products (default all)")
    args = parser.parse_args(argv)
    print_expressivity_table(args.L, args.products)


__all__ = [
    "Coupling",
    "sh_irreps",
    "full_output_irreps",
    "allowed_couplings",
    "equivariant_dimension",
    "bilinear_tensor",
    "reachable_paths",
    "bilinear_rank",
    "weight_dimension",
    "ExpressivityRow",
    "measure",
    "expressivity_table",
    "format_table",
    "print_expressivity_table",
    "available_products",
    "build_product",
    "main",
]

if __name__ == "__main__":
    main()
