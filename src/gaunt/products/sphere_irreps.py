"""Irreps that are channels of spherical-harmonic expansions: validation and layout helpers.

Gaunt-type products read channel ``u`` of an input as the coefficients of a function on the sphere,

    f_u(r) = sum_{l, m} x[u, l, m] Y[l m](r)        (orthonormal real harmonics, e3nn basis)

which needs irreps of the form

    mul x l_0 p_0 + mul x l_1 p_1 + ...     l_0 < l_1 < ...  (each degree at most once), one mul,
    p_l = s (-1)^l                          one sign s per input: +1 ordinary ("0e+1o+2e"),
                                            -1 pseudo ("0o+1e+2o").

Missing degrees are allowed and mean zero coefficients. The flat layout is e3nn's ``mul_ir``: the
block of degree l is ``[mul, 2l+1]`` (channel outer, m inner). A product of f1 (sign s1) and f2 (s2)
has sign s1 s2 (since Y_l(-r) = (-1)^l Y_l(r)), so the output irreps must carry s_out = s1 s2.

Index tables built here are plain ``int64`` arrays (numpy): a table entry equal to ``dim`` means
"zero" (a degree that is absent). The products turn these into sphere programs (``sphere_programs``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..so3 import Irrep, Irreps
from .descriptor import Path, ProductDescriptor

_SIGN_NAME = {1: "ordinary (p = (-1)^l)", -1: "pseudo (p = -(-1)^l)"}


@dataclass(frozen=True)
class SphericalIrreps:
    """Parsed form of ``mul x (l, s (-1)^l)`` irreps; ``offsets[l]`` is the block start of degree l or -1."""

    irreps: Irreps
    mul: int
    lmax: int
    sign: int
    degrees: tuple[int, ...]
    offsets: tuple[int, ...]

    @property
    def dim(self) -> int:
        return self.irreps.dim

    @property
    def complete(self) -> bool:
        """True when every degree 0..lmax is present (no zero slot needed)."""
        return len(self.degrees) == self.lmax + 1

    def irrep(self, l: int) -> Irrep:  # noqa: E741
        """The irrep that degree l has under this sign."""
        return Irrep(l, self.sign * (-1) ** l)

    def gather_index(self, lm: np.ndarray) -> np.ndarray:
        """Flat positions ``[mul, *lm.shape]`` of coefficients ``x[u, lm]``.

        ``lm`` holds dense harmonic indices ``l*l + l + m`` (or -1 for "zero"); a degree that is absent
        or an entry -1 maps to ``dim``, the zero slot of :func:`gather`.
        """
        lm = np.asarray(lm, dtype=np.int64)
        l = np.where(lm >= 0, np.floor(np.sqrt(np.maximum(lm, 0))).astype(np.int64), 0)
        offsets = np.array(self.offsets + (-1,), dtype=np.int64)  # index lmax+1: "absent"
        l_safe = np.where((lm >= 0) & (l <= self.lmax), l, self.lmax + 1)
        start = offsets[l_safe]
        valid = (lm >= 0) & (start >= 0)
        u = np.arange(self.mul).reshape((-1,) + (1,) * lm.ndim)
        pos = start + u * (2 * l + 1) + (lm - l * l)  # block start + u (2l+1) + (l + m)
        return np.where(valid, pos, self.dim).astype(np.int64)

    def weight_index(self) -> np.ndarray:
        """For each flat position ``[dim]``, the index ``u * (lmax+1) + l`` into a ``[mul, lmax+1]`` weight."""
        out = np.empty(self.dim, dtype=np.int64)
        for l in self.degrees:  # noqa: E741
            d = 2 * l + 1
            u = np.repeat(np.arange(self.mul), d)
            out[self.offsets[l] : self.offsets[l] + self.mul * d] = u * (self.lmax + 1) + l
        return out


def parse_spherical_irreps(irreps, label: str, owner: str) -> SphericalIrreps:
    """Validate ``irreps`` (named ``label`` in errors raised on behalf of ``owner``) as described above."""
    irreps = Irreps(irreps)
    where = f"{owner}: {label} = {irreps}"
    if len(irreps) == 0:
        raise ValueError(f"{where} is empty; expected mul x (l, s(-1)^l) blocks such as '8x0e+8x1o'")
    muls = {mul for mul, _ in irreps}
    if 0 in muls:
        raise ValueError(f"{where} has a zero multiplicity; every block needs the same mul > 0")
    if len(muls) != 1:
        raise ValueError(
            f"{where} has unequal multiplicities {sorted(muls)}; every degree needs the same mul (channels)"
        )
    ls = [ir.l for _, ir in irreps]
    repeated = sorted({l for l in ls if ls.count(l) > 1})
    if repeated:
        raise ValueError(f"{where} repeats degree l={repeated[0]}; each degree may appear at most once")
    if ls != sorted(ls):
        raise ValueError(f"{where} is not sorted by degree; list the degrees in increasing l")
    signs = {ir.p * (-1) ** ir.l for _, ir in irreps}
    if len(signs) != 1:
        raise ValueError(
            f"{where} mixes parities: every degree must have p = s (-1)^l with one sign s "
            f"(e.g. '0e+1o+2e' ordinary or '0o+1e+2o' pseudo)"
        )
    offsets = [-1] * (max(ls) + 1)
    for (_, ir), sl in zip(irreps, irreps.slices()):
        offsets[ir.l] = sl.start
    return SphericalIrreps(irreps, muls.pop(), max(ls), signs.pop(), tuple(ls), tuple(offsets))


def check_spherical_product(
    irreps_in1, irreps_in2, irreps_out, owner: str, parity_factor: int = 1
) -> tuple[SphericalIrreps, SphericalIrreps, SphericalIrreps]:
    """Parse the three irreps of a channel-wise product of sphere functions and check they fit together.

    Rules: ``mul2`` equals ``mul1`` or is 1 (x2 broadcast over channels, e.g. edge harmonics),
    ``mul_out == mul1`` and ``s_out == parity_factor * s1 * s2`` (``parity_factor=1`` for a plain
    product of functions; a product whose kernel is odd under inversion passes -1).
    """
    in1 = parse_spherical_irreps(irreps_in1, "irreps_in1", owner)
    in2 = parse_spherical_irreps(irreps_in2, "irreps_in2", owner)
    out = parse_spherical_irreps(irreps_out, "irreps_out", owner)
    if in2.mul not in (in1.mul, 1):
        raise ValueError(
            f"{owner}: irreps_in2 = {in2.irreps} has mul {in2.mul} but irreps_in1 has mul {in1.mul}; "
            f"mul2 must equal mul1 or be 1 (broadcast over channels)"
        )
    if out.mul != in1.mul:
        raise ValueError(f"{owner}: irreps_out = {out.irreps} has mul {out.mul} but the product keeps mul1 = {in1.mul}")
    expected = parity_factor * in1.sign * in2.sign
    if out.sign != expected:
        l = out.degrees[0]  # noqa: E741
        bad, good = out.irrep(l), Irrep(l, expected * (-1) ** l)
        raise ValueError(
            f"{owner}: irreps_out = {out.irreps} cannot be produced: the product of {_SIGN_NAME[in1.sign]} x "
            f"{_SIGN_NAME[in2.sign]} inputs has parity {good.p:+d} at l={l}, so it yields {good}, never {bad}"
        )
    return in1, in2, out


def coupled_degrees(
    in1: SphericalIrreps, in2: SphericalIrreps, out: SphericalIrreps, even: bool = True
) -> list[tuple[int, int, int]]:
    """Triples of block indices ``(i1, i2, i_out)`` with the triangle rule and l1+l2+l3 even (or odd)."""
    return [
        (i1, i2, i3)
        for i1, l1 in enumerate(in1.degrees)
        for i2, l2 in enumerate(in2.degrees)
        for i3, l3 in enumerate(out.degrees)
        if abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == (0 if even else 1)
    ]


def split_weights(weight: torch.Tensor, layouts: tuple[SphericalIrreps, ...], mul: int) -> list[torch.Tensor]:
    """Split a flat ``[..., mul * sum(L_i + 1)]`` weight into ``[..., mul, L_i + 1]`` views, one per layout."""
    out, start = [], 0
    for layout in layouts:
        n = mul * (layout.lmax + 1)
        out.append(weight[..., start : start + n].unflatten(-1, (mul, layout.lmax + 1)))
        start += n
    return out


def gaunt_descriptor(
    layouts: tuple[SphericalIrreps, ...], coupling: str = "gaunt", coefficient: float = 1.0, even: bool = True
) -> ProductDescriptor:
    """One weighted path per coupled (l1, l2, l3) of a channel-wise sphere product: mode ``uuu``
    (``uvu`` when x2 has one channel, broadcast), the given coupling kind and coefficient."""
    in1, in2, out = layouts
    mode = "uuu" if in2.mul == in1.mul else "uvu"
    paths = [Path(i1, i2, i3, mode, True, coefficient, coupling) for i1, i2, i3 in coupled_degrees(in1, in2, out, even)]
    return ProductDescriptor(in1.irreps, in2.irreps, out.irreps, tuple(paths))


def factorised_path_weights(
    weight: torch.Tensor, layouts: tuple[SphericalIrreps, ...], even: bool = True
) -> torch.Tensor:
    """Per-path weights ``w1[u, l1] w2[u, l2] w3[u, l3]`` of factorised weights:
    ``[..., mul (L1 + L2 + L3 + 3)] -> [..., gaunt_descriptor(layouts).weight_numel]`` in path order."""
    in1, in2, out = layouts
    triples = [
        (in1.degrees[i1], in2.degrees[i2], out.degrees[i3]) for i1, i2, i3 in coupled_degrees(in1, in2, out, even)
    ]
    w1, w2, w3 = split_weights(weight, layouts, in1.mul)
    if not triples:
        return weight.new_zeros(weight.shape[:-1] + (0,))
    l1, l2, l3 = (torch.tensor(t, device=weight.device) for t in zip(*triples))
    w = w1[..., l1] * w2[..., l2] * w3[..., l3]  # [..., mul, paths]
    return w.transpose(-1, -2).flatten(-2)


def require_paths(layouts: tuple[SphericalIrreps, ...], owner: str, even: bool = True) -> None:
    """Raise ``ValueError`` when no path reaches any output degree (the output would be zero forever).

    Output degrees that some path reaches and others that none reaches may be mixed (the layout of
    ``mul x (0..L)`` irreps is often shared across layers): the unreached ones are exactly zero."""
    in1, in2, out = layouts
    if not coupled_degrees(in1, in2, out, even):
        missing = list(out.degrees)
        kind = "l1 + l2 + l3 even" if even else "l1 + l2 + l3 odd"
        raise ValueError(
            f"{owner}: no path {in1.irreps} x {in2.irreps} reaches the output degrees {missing} of "
            f"{out.irreps} (triangle rule and {kind})"
        )


__all__ = [
    "SphericalIrreps",
    "parse_spherical_irreps",
    "check_spherical_product",
    "coupled_degrees",
    "split_weights",
    "gaunt_descriptor",
    "factorised_path_weights",
    "require_paths",
]
