"""Immutable irreducible-representation types of O(3), compatible with ``e3nn.o3``.

* :class:`Irrep` -- one irrep ``(l, p)``: degree ``l >= 0`` and parity ``p = +1`` (``"e"``) or
  ``-1`` (``"o"``).  The string ``"ly"`` means the parity of the spherical harmonics, ``(-1)^l``.
* :class:`MulIr` -- an irrep with a multiplicity, ``(mul, ir)``, written ``"16x1o"``.
* :class:`Irreps` -- a direct sum of :class:`MulIr`, written ``"16x0e+8x1o"``.

All three are tuple subclasses laid out exactly like their ``e3nn.o3`` counterparts, so they
compare (and hash) equal to them by plain tuple equality and can be passed to e3nn directly.
e3nn itself is only imported inside :meth:`Irreps.to_e3nn`.

Feature layout: a tensor ``[..., irreps.dim]`` stores each ``MulIr`` block contiguously, in
e3nn's ``mul_ir`` order (block of shape ``[mul, 2l+1]`` flattened: channels outer, ``m`` inner).
:meth:`Irreps.mul_ir_to_ir_mul` / :meth:`Irreps.ir_mul_to_mul_ir` convert to and from the
``ir_mul`` order (block of shape ``[2l+1, mul]``).
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import torch

__all__ = ["Irrep", "MulIr", "Irreps"]

_PARITY_FROM_CHAR = {"e": 1, "o": -1}
_CHAR_FROM_PARITY = {1: "e", -1: "o"}
_IRREP_RE = re.compile(r"\s*([0-9]+)\s*([eoy])\s*")
_INT_RE = re.compile(r"\s*(-?[0-9]+)\s*")


def _as_int(value: Any, what: str) -> int:
    """Return ``value`` as a Python int (numpy/torch integers accepted), else raise ``ValueError``."""
    try:
        if not isinstance(value, bool):
            return operator.index(value)
    except TypeError:
        pass
    raise ValueError(f"{what} must be an integer, got {value!r}")


def _is_irrep_like(obj: Any) -> bool:
    """True for our :class:`Irrep` and for e3nn's ``o3.Irrep`` (duck-typed, e3nn not imported)."""
    return isinstance(obj, Irrep) or (
        isinstance(obj, tuple) and hasattr(obj, "l") and hasattr(obj, "p") and not hasattr(obj, "mul")
    )


def _is_mul_ir_like(obj: Any) -> bool:
    """True for our :class:`MulIr` and for e3nn's ``_MulIr`` (duck-typed)."""
    return isinstance(obj, tuple) and hasattr(obj, "mul") and hasattr(obj, "ir")


class _IrrepFields(NamedTuple):
    l: int  # noqa: E741
    p: int


class Irrep(_IrrepFields):
    """Irreducible representation ``(l, p)`` of O(3).

    Accepts ``Irrep(1, -1)``, ``Irrep("1o")``, ``Irrep("2y")`` (parity ``(-1)^l``), or any
    ``(l, p)`` pair such as another :class:`Irrep` or an ``e3nn.o3.Irrep``.
    """

    __slots__ = ()

    def __new__(cls, l: int | str | tuple[int, int], p: int | None = None) -> Irrep:  # noqa: E741
        if p is None:
            if isinstance(l, Irrep):
                return l
            if isinstance(l, str):
                return cls._parse(l)
            # tuple.__len__: e3nn's Irrep overrides __len__ to raise NotImplementedError
            if not (isinstance(l, tuple) and tuple.__len__(l) == 2):
                raise ValueError(f"cannot interpret {l!r} as an Irrep")
            l, p = l
        l = _as_int(l, "Irrep degree l")
        p = _as_int(p, "Irrep parity p")
        if l < 0:
            raise ValueError(f"Irrep degree l must be >= 0, got {l}")
        if p not in (1, -1):
            raise ValueError(f"Irrep parity p must be +1 or -1, got {p}")
        return super().__new__(cls, l, p)

    @classmethod
    def _parse(cls, text: str) -> Irrep:
        match = _IRREP_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"invalid irrep string {text!r}: expected '<l><e|o|y>' such as '1o'")
        l = int(match.group(1))  # noqa: E741
        char = match.group(2)
        p = (-1) ** l if char == "y" else _PARITY_FROM_CHAR[char]
        return super().__new__(cls, l, p)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Irrep:  # validate, unlike namedtuple's default
        return cls(*iterable)

    @property
    def dim(self) -> int:
        """Dimension ``2l + 1``."""
        return 2 * self.l + 1

    def is_scalar(self) -> bool:
        """True for the even scalar ``0e``."""
        return self.l == 0 and self.p == 1

    @classmethod
    def iterator(cls, lmax: int | None = None) -> Iterator[Irrep]:
        """Yield all irreps ``0e, 0o, 1o, 1e, 2e, 2o, ...`` up to ``lmax`` (forever if ``None``)."""
        for l in itertools.count():  # noqa: E741
            if lmax is not None and l > lmax:
                return
            yield cls(l, (-1) ** l)
            yield cls(l, -((-1) ** l))

    def __repr__(self) -> str:
        return f"{self.l}{_CHAR_FROM_PARITY[self.p]}"

    def __mul__(self, other: Any) -> Any:  # type: ignore[override]
        """``ir1 * ir2``: iterator over the irreps ``|l1-l2|..l1+l2`` (parity ``p1 p2``) of the product,
        as in e3nn; ``ir * n`` / ``n * ir``: ``Irreps`` with multiplicity ``n``."""
        if isinstance(other, int) and not isinstance(other, bool):
            return Irreps([(other, self)])
        if isinstance(other, (tuple, str)):
            other = Irrep(other)
            ls = range(abs(self.l - other.l), self.l + other.l + 1)
            return (Irrep(l, self.p * other.p) for l in ls)
        return NotImplemented

    __rmul__ = __mul__

    def __add__(self, other: Any) -> Irreps:  # type: ignore[override]
        """``ir + x`` is ``Irreps(ir) + Irreps(x)`` (direct sum, not tuple concatenation)."""
        return Irreps(self) + other


class _MulIrFields(NamedTuple):
    mul: int
    ir: Irrep


class MulIr(_MulIrFields):
    """An irrep with multiplicity: ``MulIr(16, "1o")``, ``MulIr((16, (1, -1)))`` or ``MulIr("16x1o")``."""

    __slots__ = ()

    def __new__(cls, mul: Any, ir: Any = None) -> MulIr:
        if ir is None:
            if isinstance(mul, MulIr):
                return mul
            if isinstance(mul, str):
                return _parse_term(mul, mul)
            if not (isinstance(mul, tuple) and tuple.__len__(mul) == 2):
                raise ValueError(f"cannot interpret {mul!r} as a (mul, irrep) pair")
            mul, ir = mul
        mul = _as_int(mul, "multiplicity")
        if mul < 0:
            raise ValueError(f"multiplicity must be >= 0, got {mul}")
        return super().__new__(cls, mul, Irrep(ir))

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> MulIr:  # validate, unlike namedtuple's default
        return cls(*iterable)

    @property
    def dim(self) -> int:
        """Dimension ``mul * (2l + 1)``."""
        return self.mul * self.ir.dim

    def __repr__(self) -> str:
        return f"{self.mul}x{self.ir!r}"


def _parse_term(term: str, whole: str) -> MulIr:
    """Parse one ``'16x1o'`` / ``'1o'`` term of the irreps string ``whole``."""
    if "x" in term:
        mul_text, ir_text = term.split("x", 1)
    else:
        mul_text, ir_text = "1", term
    where = f"invalid term {term.strip()!r} in irreps {whole!r}"
    match = _INT_RE.fullmatch(mul_text)
    if match is None:
        raise ValueError(f"{where}: bad multiplicity {mul_text.strip()!r}")
    mul = int(match.group(1))
    if mul < 0:
        raise ValueError(f"{where}: negative multiplicity {mul}")
    try:
        ir = Irrep._parse(ir_text)
    except ValueError:
        raise ValueError(f"{where}: bad irrep {ir_text.strip()!r} (expected e.g. '1o', '2e', '3y')") from None
    return MulIr(mul, ir)


def _parse_irreps(text: str) -> list[MulIr]:
    terms = text.split("+") if text.strip() else []
    if any(not term.strip() for term in terms):
        raise ValueError(f"invalid irreps {text!r}: empty term (stray or doubled '+')")
    return [_parse_term(term, text) for term in terms]


def _to_mul_ir(item: Any) -> MulIr:
    """Interpret one element of an iterable passed to :class:`Irreps`."""
    if _is_mul_ir_like(item):
        return MulIr(item.mul, item.ir)
    if isinstance(item, str):
        return _parse_term(item, item)
    if _is_irrep_like(item):
        return MulIr(1, Irrep(item))
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return MulIr(item[0], item[1])
    raise ValueError(f"cannot interpret {item!r} as a (mul, irrep) pair")


class SortResult(NamedTuple):
    """Result of :meth:`Irreps.sort` (same fields as e3nn's)."""

    irreps: Irreps
    p: tuple[int, ...]  # p[old_index] = new_index
    inv: tuple[int, ...]  # inv[new_index] = old_index


class Irreps(tuple):
    """Immutable direct sum of irreps, e.g. ``Irreps("16x0e + 8x1o")``.

    Accepts an e3nn-style string, an :class:`Irrep`, a :class:`MulIr`, another ``Irreps`` (ours
    or e3nn's) or any iterable of ``(mul, (l, p))`` pairs, irreps or strings.  Iterating yields
    :class:`MulIr`, so ``for mul, (l, p) in irreps`` works.

    >>> irreps = Irreps("2x0e + 1x1o")
    >>> irreps.dim, irreps.lmax, str(irreps + Irreps("1x2e"))
    (5, 1, '2x0e+1x1o+1x2e')
    """

    __slots__ = ()

    def __new__(cls, irreps: Any = None) -> Irreps:
        if isinstance(irreps, cls):
            return irreps
        if irreps is None:
            items: list[MulIr] = []
        elif isinstance(irreps, str):
            items = _parse_irreps(irreps)
        elif _is_irrep_like(irreps):
            items = [MulIr(1, Irrep(irreps))]
        elif _is_mul_ir_like(irreps):
            items = [MulIr(irreps.mul, irreps.ir)]
        else:
            try:
                iterator = iter(irreps)
            except TypeError:
                raise ValueError(f"cannot interpret {irreps!r} as Irreps") from None
            items = [_to_mul_ir(item) for item in iterator]
        return super().__new__(cls, items)

    @classmethod
    def spherical_harmonics(cls, lmax: int, p: int = -1) -> Irreps:
        """``1x0e+1x1o+1x2e+...`` up to ``lmax``; parity ``p**l`` (``p=-1``: ``(-1)^l``, ``p=1``: even)."""
        lmax = _as_int(lmax, "lmax")
        if lmax < 0:
            raise ValueError(f"lmax must be >= 0, got {lmax}")
        if p not in (1, -1):
            raise ValueError(f"parity p must be +1 or -1, got {p}")
        return cls([(1, (l, p**l)) for l in range(lmax + 1)])

    @classmethod
    def from_e3nn(cls, irreps: Any) -> Irreps:
        """Convert an ``e3nn.o3.Irreps`` (or anything :class:`Irreps` accepts)."""
        return cls(irreps)

    def to_e3nn(self) -> Any:
        """Return the equal ``e3nn.o3.Irreps`` (imports e3nn)."""
        from e3nn import o3

        return o3.Irreps([(mul, (ir.l, ir.p)) for mul, ir in self])

    @property
    def dim(self) -> int:
        """Total dimension ``sum(mul * (2l + 1))``."""
        return sum(mul_ir.dim for mul_ir in self)

    @property
    def num_irreps(self) -> int:
        """Sum of multiplicities."""
        return sum(mul for mul, _ in self)

    @property
    def ls(self) -> list[int]:
        """Every ``l``, repeated by its multiplicity."""
        return [ir.l for mul, ir in self for _ in range(mul)]

    @property
    def lmax(self) -> int:
        """Largest ``l`` (``ValueError`` if empty; zero multiplicities are ignored, as in e3nn)."""
        if self.num_irreps == 0:
            raise ValueError(f"cannot take lmax of irreps with no irreps: {self!r}")
        return max(ir.l for mul, ir in self if mul > 0)

    def slices(self) -> list[slice]:
        """Slice of the last feature dimension occupied by each :class:`MulIr`."""
        out, start = [], 0
        for mul_ir in self:
            out.append(slice(start, start + mul_ir.dim))
            start += mul_ir.dim
        return out

    def simplify(self) -> Irreps:
        """Merge consecutive equal irreps and drop zero multiplicities (does not sort)."""
        out: list[tuple[int, Irrep]] = []
        for mul, ir in self:
            if out and out[-1][1] == ir:
                out[-1] = (out[-1][0] + mul, ir)
            elif mul > 0:
                out.append((mul, ir))
        return Irreps(out)

    def remove_zero_multiplicities(self) -> Irreps:
        """Drop every term with multiplicity 0."""
        return Irreps([mul_ir for mul_ir in self if mul_ir.mul > 0])

    def sort(self) -> SortResult:
        """Stable sort by irrep ``(l, p)``; ``p`` maps old to new positions, ``inv`` new to old."""
        inv = tuple(sorted(range(len(self)), key=lambda i: (self[i].ir, i)))
        p = [0] * len(inv)
        for new, old in enumerate(inv):
            p[old] = new
        return SortResult(Irreps([self[i] for i in inv]), tuple(p), inv)

    def __getitem__(self, index: Any) -> Any:  # type: ignore[override]
        item = super().__getitem__(index)
        return Irreps(item) if isinstance(index, slice) else item

    def __contains__(self, ir: Any) -> bool:  # type: ignore[override]
        """``ir in irreps`` tests for an irrep (``"1o"``, ``(1, -1)``); MulIr membership also works."""
        try:
            ir = Irrep(ir)
        except ValueError:
            return super().__contains__(ir)
        return any(mul_ir.ir == ir for mul_ir in self)

    def count(self, ir: Any) -> int:  # type: ignore[override]
        """Total multiplicity of irrep ``ir``."""
        ir = Irrep(ir)
        return sum(mul for mul, other in self if other == ir)

    def __add__(self, other: Any) -> Irreps:  # type: ignore[override]
        return Irreps(tuple.__add__(self, Irreps(other)))

    def __radd__(self, other: Any) -> Irreps:
        return Irreps(other) + self

    def __mul__(self, other: Any) -> Irreps:  # type: ignore[override]
        if isinstance(other, int) and not isinstance(other, bool):
            return Irreps(tuple.__mul__(self, other))
        return NotImplemented

    __rmul__ = __mul__  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "+".join(repr(mul_ir) for mul_ir in self)

    def _transpose_blocks(self, x: torch.Tensor, to_ir_mul: bool) -> torch.Tensor:
        if x.ndim == 0 or x.shape[-1] != self.dim:
            got = "a 0-d tensor" if x.ndim == 0 else f"last dimension {x.shape[-1]}"
            raise ValueError(f"expected last dimension irreps.dim = {self.dim} for {self!r}, got {got}")
        batch = x.shape[:-1]
        blocks = []
        for (mul, ir), sl in zip(self, self.slices()):
            rows, cols = (mul, ir.dim) if to_ir_mul else (ir.dim, mul)
            block = x[..., sl].reshape(*batch, rows, cols).transpose(-1, -2)
            blocks.append(block.reshape(*batch, mul * ir.dim))
        return torch.cat(blocks, dim=-1) if blocks else x.clone()

    def mul_ir_to_ir_mul(self, x: torch.Tensor) -> torch.Tensor:
        """Reorder ``x[..., dim]`` from e3nn's ``mul_ir`` layout to ``ir_mul`` (m outer, channel inner)."""
        return self._transpose_blocks(x, to_ir_mul=True)

    def ir_mul_to_mul_ir(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`mul_ir_to_ir_mul`."""
        return self._transpose_blocks(x, to_ir_mul=False)
