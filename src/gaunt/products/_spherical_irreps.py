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

Index tables built here are plain ``int64`` arrays; the products register them as buffers. A table
entry equal to ``dim`` points at a zero slot appended to the input (see :func:`gather`).
:class:`SphereFunctionProduct` is the shared frame (checks, factorised weights, layout changes,
blocking, ``descriptor``/``path_weights``) of ``GauntProduct`` and ``GridGauntProduct``; it moves
data between e3nn's ``[batch, dim]`` and its ``[rows, batch]`` with ``_row_ops`` (tiled transposes and
injective row gathers whose adjoints are gathers, not scatter-adds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..so3 import Irrep, Irreps
from .base import TensorProduct
from ._row_ops import gather_rows, gather_tables, transpose
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
        raise ValueError(f"{where} has unequal multiplicities {sorted(muls)}; every degree needs the same mul (channels)")
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


def gather(x: torch.Tensor, index: torch.Tensor, zero_slot: bool = True) -> torch.Tensor:
    """``x [*b, dim]`` -> ``[*index.shape, *b]`` (index dimensions first, contiguous: the batch becomes
    the long, innermost side of the matmuls that follow); with ``zero_slot`` the entry ``dim`` reads 0."""
    if zero_slot:
        x = torch.nn.functional.pad(x, (0, 1))
    return x.movedim(-1, 0)[index]


def split_weights(weight: torch.Tensor, layouts: tuple[SphericalIrreps, ...], mul: int) -> list[torch.Tensor]:
    """Split a flat ``[..., mul * sum(L_i + 1)]`` weight into ``[..., mul, L_i + 1]`` views, one per layout."""
    out, start = [], 0
    for layout in layouts:
        n = mul * (layout.lmax + 1)
        out.append(weight[..., start : start + n].unflatten(-1, (mul, layout.lmax + 1)))
        start += n
    return out


def _as_buffer(array: np.ndarray, device=None) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), device=device)


class SphereFunctionProduct(TensorProduct):
    """Shared frame of channel-wise products of sphere functions with factorised weights:

        z[u, l3, m3] = w3[u, l3] * P_{l3 m3}[ (sum_{l1 m1} w1[u, l1] x1[u, l1, m1] Y[l1 m1])
                                              (sum_{l2 m2} w2[u, l2] x2[u, l2, m2] Y[l2 m2]) ]

    with P the projection of the pointwise product onto harmonics (the Gaunt coefficients). The
    weights are ``w1 [mul, L1+1]``, ``w2 [mul, L2+1]``, ``w3 [mul, L3+1]`` flattened and concatenated:
    ``weight_numel = mul (L1 + L2 + L3 + 3)`` (entries of absent degrees are unused).

    Subclasses give, per input, a gather table of dense harmonic indices ``[R, Lp]`` (-1: zero) and
    implement ``_sphere_product(X1, X2) -> Y`` on the gathered, weighted inputs
    ``X: [R, Lp, mul, batch]`` (the channel and batch dimensions innermost, so that every stage is one
    matmul with them as its long side; one flat batch dimension). ``Y [*out_shape, mul, batch]`` is
    read at the rows given to ``_register_tables``, times ``w3`` and the sign ``_out_sign``.
    """

    _coupling = "gaunt"
    _coefficient = 1.0
    _parity_factor = 1
    _grid_points = 1  # values per channel and sample on the subclass's grid (sets the block size)
    #: Outside torch.compile, batches are processed in blocks of about this many grid values
    #: (mul * samples * grid points): the stages are memory-bound and cache-sized blocks ran 1.4-1.9x
    #: faster on CPU at L >= 8. None disables blocking. Blocks need x1, x2 (and per-sample weights) of one shape.
    chunk_elements: int | None = 1 << 20

    def __init__(self, irreps_in1, irreps_in2, irreps_out, internal_weights=None, shared_weights=None,
                 weight_init: str = "ones", check_finite: bool = False) -> None:  # fmt: skip
        owner = type(self).__name__
        in1, in2, out = check_spherical_product(irreps_in1, irreps_in2, irreps_out, owner, self._parity_factor)
        numel = in1.mul * (in1.lmax + in2.lmax + out.lmax + 3)
        super().__init__(in1.irreps, in2.irreps, out.irreps, numel, internal_weights, shared_weights, check_finite)
        if weight_init not in ("ones", "randn"):
            raise ValueError(f"{owner}: weight_init must be 'ones' or 'randn', got {weight_init!r}")
        if self.internal_weights and weight_init == "ones":
            with torch.no_grad():
                self.weight.fill_(1.0)
        self.layouts = (in1, in2, out)
        self.mul = in1.mul
        # x2 with one channel (e.g. edge harmonics) is copied to every channel before the per-channel
        # weights w2[u, l] apply; _in2_channels is its layout with mul channels
        self._in2_channels = in2 if in2.mul == in1.mul else parse_spherical_irreps(
            "+".join(f"{in1.mul}x{ir}" for _, ir in in2.irreps), "irreps_in2", owner)
        self._weight_offsets = np.cumsum([0] + [in1.mul * (lay.lmax + 1) for lay in (in1, in2, out)]).tolist()

    # --------------------------------------------------------------- tables (call from subclass init)
    def _register_tables(self, table1: np.ndarray, table2: np.ndarray, out_shape: tuple[int, ...],
                         out_rows: list[np.ndarray], out_sign: np.ndarray) -> None:  # fmt: skip
        """Register the index buffers. ``table1``, ``table2``: input gather tables ``[R, Lp]`` of dense
        harmonic indices ``l^2 + l + m`` (-1 = zero). Output: ``_sphere_product`` returns
        ``Y [*out_shape, mul, batch]``, and the coefficient (l, m) of channel u is
        ``out_sign[lm] * Y[out_rows[0][lm], ..., out_rows[-1][lm], u]`` (arrays indexed by dense lm)."""
        for i, (layout, table) in enumerate(zip((self.layouts[0], self._in2_channels), (table1, table2)), start=1):
            setattr(self, f"_index{i}_shape", tuple(table.shape))
            index = np.moveaxis(layout.gather_index(table), 0, -1).reshape(-1)  # rows (R, Lp, mul) of x^T
            tables = gather_tables(index, index < layout.dim, layout.dim)
            for name, t in zip(("index", "zero", "inverse", "inverse_zero"), tables):
                self.register_buffer(f"_in{i}_{name}", t, persistent=False)
            self.register_buffer(f"_w{i}_index", _as_buffer(layout.weight_index()), persistent=False)
        out = self.layouts[2]
        lm_of_pos, u_of_pos = [], []
        for l in out.degrees:  # noqa: E741  mul_ir: channel outer, m inner
            for u in range(out.mul):
                lm_of_pos += range(l * l, (l + 1) ** 2)
                u_of_pos += [u] * (2 * l + 1)
        lm_of_pos = np.array(lm_of_pos, dtype=np.int64)
        rows = [np.asarray(r, dtype=np.int64)[lm_of_pos] for r in out_rows] + [np.array(u_of_pos, dtype=np.int64)]
        flat = np.ravel_multi_index(tuple(rows), (*out_shape, out.mul))  # row of Y.view(-1, batch)
        tables = gather_tables(flat, np.ones(out.dim, dtype=bool), math.prod(out_shape) * out.mul)
        for name, t in zip(("index", "zero", "inverse", "inverse_zero"), tables):
            self.register_buffer(f"_out_{name}", t, persistent=False)
        self.register_buffer("_w3_index", _as_buffer(out.weight_index()), persistent=False)
        sign = torch.as_tensor(np.asarray(out_sign, dtype=np.float64)[lm_of_pos])
        self.register_buffer("_out_sign", sign, persistent=False)

    def _tables(self, name: str) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f"_{name}_{k}") for k in ("index", "zero", "inverse", "inverse_zero"))

    # --------------------------------------------------------------- forward frame
    def _forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Broadcast to one batch flattened to ``[n, dim]``, then run blocks of rows (weights applied per
        block, so that no full-batch temporaries are made: at batch 1e4 those cost page faults and DRAM passes)."""
        per_sample = not self.shared_weights
        batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], weight.shape[:-1] if per_sample else ())
        n = math.prod(batch)
        ws = [weight[..., self._weight_offsets[k] : self._weight_offsets[k + 1]][..., getattr(self, f"_w{k + 1}_index")]
              for k in range(3)]  # fmt: skip  # [..., dim_k]: the weight of each position
        ws[2] = ws[2] * self._out_sign.to(ws[2].dtype)
        x1 = x1.expand(*batch, -1).reshape(n, x1.shape[-1])
        x2 = self._copy_channels(x2.expand(*batch, -1).reshape(n, x2.shape[-1]))
        if n == 0:  # empty batch (zero-size FFTs and matmuls are rejected by some backends); graph kept connected
            return x1.new_zeros(*batch, self.irreps_out.dim) + 0 * (x1.sum() + x2.sum() + weight.sum())
        rows = n if torch.compiler.is_compiling() else min(n, self._chunk_rows())
        # memory-bound stages: cache-sized blocks of samples run the same ops with fewer cache misses
        if per_sample:
            w1, w2, w3 = (w.expand(*batch, -1).reshape(n, w.shape[-1]).split(rows) for w in ws)
        else:
            w1, w2, w3 = ([w] * math.ceil(n / rows) for w in ws)
        outs = [self._forward_block(a * wa, b * wb) * wc
                for a, b, wa, wb, wc in zip(x1.split(rows), x2.split(rows), w1, w2, w3)]  # fmt: skip
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return out.reshape(*batch, out.shape[-1])

    def _copy_channels(self, x2: torch.Tensor) -> torch.Tensor:
        """``[n, in2.dim] -> [n, dim of _in2_channels]``: the single channel of x2 copied to every channel."""
        in2 = self.layouts[1]
        if in2 is self._in2_channels:
            return x2
        n = x2.shape[0]
        blocks = (x2[:, sl].unsqueeze(1).expand(n, self.mul, sl.stop - sl.start) for sl in in2.irreps.slices())
        return torch.cat([b.flatten(1) for b in blocks], dim=1)

    def _chunk_rows(self) -> int:
        """Samples per block: about ``chunk_elements`` grid values per block (0 or None: no blocks)."""
        if not self.chunk_elements:
            return 1 << 62
        return max(1, self.chunk_elements // (self.mul * self._grid_points))

    def _forward_block(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """``[b, dim1] x [b, dim2] -> [b, dim_out]`` (weights w1, w2 already applied, w3 not)."""
        b = x1.shape[0]
        X1 = gather_rows(transpose(x1), self._tables("in1"))  # [R * Lp * mul, b]
        X2 = gather_rows(transpose(x2), self._tables("in2"))
        R1, R2 = self._index1_shape, self._index2_shape
        Y = self._sphere_product(X1.view(*R1, self.mul, b), X2.view(*R2, self.mul, b))
        return transpose(gather_rows(Y.reshape(-1, b), self._tables("out")))  # [b, dim_out]

    def _sphere_product(self, X1: torch.Tensor, X2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --------------------------------------------------------------- description
    def descriptor(self) -> ProductDescriptor:
        """One weighted path per coupled (l1, l2, l3): mode ``uuu`` (``uvu`` with mul2 = 1 when x2 is
        broadcast over channels), coupling ``self._coupling``, coefficient ``self._coefficient``."""
        in1, in2, out = self.layouts
        mode = "uuu" if in2.mul == in1.mul else "uvu"
        paths = [Path(i1, i2, i3, mode, True, self._coefficient, self._coupling)
                 for i1, i2, i3 in coupled_degrees(in1, in2, out, even=self._parity_factor == 1)]  # fmt: skip
        return ProductDescriptor(in1.irreps, in2.irreps, out.irreps, tuple(paths))

    def path_weights(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Per-path weights ``w1[u, l1] w2[u, l2] w3[u, l3]``: ``[..., weight_numel] -> [..., descriptor().weight_numel]``
        in the descriptor's path order (each path's weights ``[mul]``, or ``[mul, 1]`` for ``uvu``)."""
        if weight is None:
            if not self.internal_weights:
                raise ValueError(f"{type(self).__name__}: weights are external; pass weight to path_weights")
            weight = self.weight
        in1, in2, out = self.layouts
        triples = [(in1.degrees[i1], in2.degrees[i2], out.degrees[i3])
                   for i1, i2, i3 in coupled_degrees(in1, in2, out, even=self._parity_factor == 1)]  # fmt: skip
        w1, w2, w3 = split_weights(weight, self.layouts, self.mul)
        if not triples:
            return weight.new_zeros(weight.shape[:-1] + (0,))
        l1, l2, l3 = (torch.tensor(t, device=weight.device) for t in zip(*triples))
        w = w1[..., l1] * w2[..., l2] * w3[..., l3]  # [..., mul, paths]
        return w.transpose(-1, -2).flatten(-2)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mul={self.mul}"


__all__ = ["SphericalIrreps", "parse_spherical_irreps", "check_spherical_product", "coupled_degrees", "gather",
           "split_weights", "SphereFunctionProduct"]  # fmt: skip
