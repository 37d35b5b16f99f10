"""What a sphere program computes, as a sparse per-channel coupling list (the direct kernel's input).

A :class:`~gaunt.products.program.SphereProgram` is bilinear and channel-wise: every stage keeps the channel
``u`` of its rows (its tables do not depend on ``u``), so with ``k1, k2, k3`` coefficients per channel

    out[n, pos_out[u, c]] = sum_{t} coefficient_t x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]]   (c = c_t)

for every channel ``u`` and sample ``n``, over the non-zero triples ``t = (a, b, c, coefficient)``. The
position maps ``pos [mul, k]`` come from the program's gather and read-out indices (the ``mul_ir`` layout:
``pos[u, a] = start_a + u stride_a``), and the triples from its tables: with the field of coefficient ``a``
of synthesis ``s``, ``F_s[a](p, t) = sum_{rows (r, l) of a} phi_s[p, r] theta_s[r, t, l]``, and the
integration of projection ``q`` for output ``c``, ``P_q[c](p, t) = sum_{rows (r, l) of c} phi_q[r, p]
theta_q[r, l, t]``,

    coefficient(a, b, c) = sum_{terms (s1, s2, q, w)} w sum_{p, t} F_s1[a] F_s2[b] P_q[c]     (exact: float64)

and entries below ``DROP`` times the largest are dropped (quadrature round-off of a zero coupling).
Coefficients are numbered in the order of their positions in channel 0; :func:`coupling` raises unless
every channel has the structure of channel 0. The derivative programs have their own lists; that of
``d out / d x1`` is the triples ``(c, b, a)`` (:meth:`Coupling.vjp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .program import SphereProgram, _frozen

#: entries below this fraction of the largest |coefficient| are round-off of an exact zero and dropped
DROP = 1e-13


@dataclass(frozen=True, eq=False)
class Coupling:
    """``out[n, pos_out[u, c]] = sum_t coefficient[t] x1[n, pos1[u, a[t]]] x2[n, pos2[u, b[t]]]`` (module
    docstring). ``positions = (pos1 [mul, k1], pos2 [mul, k2], pos_out [mul, k3])``; ``a, b, c, coefficient
    [nnz]``, sorted by ``(c, a, b)``; output positions in no channel are zero."""

    mul: int
    dims: tuple[int, int, int]
    positions: tuple[np.ndarray, np.ndarray, np.ndarray]
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    coefficient: np.ndarray
    name: str = "coupling"

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", tuple(_frozen(p, np.int64) for p in self.positions))
        for field in ("a", "b", "c"):
            object.__setattr__(self, field, _frozen(getattr(self, field), np.int64))
        object.__setattr__(self, "coefficient", _frozen(self.coefficient, np.float64))
        if any(p.shape[0] != self.mul or p.ndim != 2 for p in self.positions):
            raise ValueError(f"{self.name}: positions must be [mul, k] arrays")
        for triple, size in zip((self.a, self.b, self.c), self.sizes):
            if triple.shape != self.coefficient.shape or (triple.size and not 0 <= triple.min() <= triple.max() < size):
                raise ValueError(f"{self.name}: a triple index is outside its {size} coefficients per channel")
        for p, dim in zip(self.positions, self.dims):
            if p.size and (p.min() < 0 or p.max() >= dim or len(np.unique(p)) != p.size):
                raise ValueError(f"{self.name}: positions must be distinct entries of [0, {dim})")

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(k1, k2, k3)``: coefficients per channel of x1, x2 and the output."""
        return tuple(p.shape[1] for p in self.positions)

    @property
    def nnz(self) -> int:
        """The number of triples (per channel)."""
        return int(self.coefficient.size)

    def dense(self) -> np.ndarray:
        """The coefficients as a dense ``[k1, k2, k3]`` array."""
        out = np.zeros(self.sizes)
        np.add.at(out, (self.a, self.b, self.c), self.coefficient)
        return out

    def evaluate(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The list applied with torch ops: ``[n, dim1] x [n, dim2] -> [n, dim_out]`` (a reference)."""
        pos1, pos2, pos_out = (torch.tensor(p, device=x1.device) for p in self.positions)
        dense = torch.as_tensor(self.dense(), dtype=x1.dtype, device=x1.device)
        local = torch.einsum("nua,nub,abc->nuc", x1[:, pos1], x2[:, pos2], dense)  # [n, mul, k3]
        out = x1.new_zeros(x1.shape[0], self.dims[2])
        return out.index_copy(1, pos_out.reshape(-1), local.reshape(x1.shape[0], -1))

    def vjp(self, wrt: int) -> Coupling:
        """The list of the vector-Jacobian product with respect to input ``wrt``: inputs ``(grad_out, x2)``
        -> ``grad_x1`` (triples ``(c, b, a)``) or ``(x1, grad_out)`` -> ``grad_x2`` (triples ``(a, c, b)``)."""
        pos1, pos2, pos_out = self.positions
        dim1, dim2, dim_out = self.dims
        if wrt == 0:
            return _sorted(self.mul, (dim_out, dim2, dim1), (pos_out, pos2, pos1), (self.c, self.b, self.a), self)
        if wrt == 1:
            return _sorted(self.mul, (dim1, dim_out, dim2), (pos1, pos_out, pos2), (self.a, self.c, self.b), self)
        raise ValueError(f"vjp: wrt must be 0 or 1, got {wrt!r}")

    def vjp_order(self, wrt: int) -> np.ndarray:
        """``[nnz]``: the triple of this list behind each triple of ``vjp(wrt)`` (its sort), so that
        ``vjp(wrt).coefficient == coefficient[order]`` and likewise for ``a``, ``b``, ``c`` permuted."""
        if wrt not in (0, 1):
            raise ValueError(f"vjp_order: wrt must be 0 or 1, got {wrt!r}")
        a, b, c = (self.c, self.b, self.a) if wrt == 0 else (self.a, self.c, self.b)
        return np.lexsort((b, a, c))  # the key of _sorted


def _sorted(mul, dims, positions, triples, like: Coupling | None = None, coefficient=None, name=None) -> Coupling:
    """A :class:`Coupling` with its triples sorted by ``(c, a, b)``."""
    a, b, c = (np.asarray(t, dtype=np.int64) for t in triples)
    coefficient = like.coefficient if coefficient is None else coefficient
    order = np.lexsort((b, a, c))
    name = name or (f"d{like.name}" if like is not None else "coupling")
    return Coupling(mul, dims, positions, a[order], b[order], c[order], coefficient[order], name)


class NotChannelWise(ValueError):
    """The program's channels do not all have the structure of channel 0 (no per-channel coupling list)."""


def _input_channels(program: SphereProgram, source: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """``pos [mul, k]`` of input ``source`` and, per synthesis, the local coefficient of each row (r, l)
    (-1: zero row; None for syntheses of the other input). Raises :class:`NotChannelWise`."""
    mul, first, local_of = program.mul, {}, []
    for s in program.syntheses:
        if s.source != source:
            local_of.append(None)
            continue
        index = s.index.reshape(-1, mul)  # [rows (r, l), mul]
        local = np.array([first.setdefault(int(i), len(first)) if i >= 0 else -1 for i in index[:, 0]])
        local_of.append(local)
    pos = -np.ones((mul, len(first)), dtype=np.int64)
    for s, local in zip(program.syntheses, local_of):
        if local is None:
            continue
        index = s.index.reshape(-1, mul)
        if ((index < 0) != (local < 0)[:, None]).any():
            raise NotChannelWise(f"{program.name}: a synthesis row is zero in some channels only")
        rows = local >= 0
        read = index[rows].T  # [mul, rows]: set where unset, then every row must agree
        pos[:, local[rows]] = np.where(pos[:, local[rows]] < 0, read, pos[:, local[rows]])
        if (pos[:, local[rows]] != read).any():
            raise NotChannelWise(f"{program.name}: channels read their coefficients in different patterns")
    if len(np.unique(pos)) != pos.size:
        raise NotChannelWise(f"{program.name}: an input position is read by two channels or coefficients")
    order = np.argsort(pos[0])  # coefficients numbered in the order of channel 0's positions
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return pos[:, order], [None if local is None else np.where(local >= 0, rank[local], -1) for local in local_of]


def _output_channels(program: SphereProgram) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """``pos_out [mul, k3]`` and, per output coefficient c, its Y row (r L3p + l) in each projection (-1:
    none). Raises :class:`NotChannelWise`."""
    mul = program.mul
    reads = np.stack([p.read for p in program.projections], 1)  # [dim_out, projections]
    slots: dict[tuple[tuple[int, ...], int], int] = {}
    for k, read in enumerate(reads):
        valid = read[read >= 0]
        if valid.size == 0:
            continue  # an output position in no channel: always zero
        channel = int(valid[0] % mul)
        if (valid % mul != channel).any():
            raise NotChannelWise(f"{program.name}: output {k} sums rows of different channels")
        key = tuple(int(r // mul) if r >= 0 else -1 for r in read)
        if slots.setdefault((key, channel), k) != k:
            raise NotChannelWise(f"{program.name}: two outputs of channel {channel} read the same rows")
    keys = [key for key, channel in slots if channel == 0]  # in the order of their positions
    if len(slots) != mul * len(keys):
        raise NotChannelWise(f"{program.name}: the channels have different outputs")
    try:
        pos = np.array([[slots[key, u] for key in keys] for u in range(mul)], dtype=np.int64).reshape(mul, len(keys))
    except KeyError as error:
        raise NotChannelWise(f"{program.name}: the channels have different outputs") from error
    return pos, keys


def coupling(program: SphereProgram) -> Coupling:
    """The sparse per-channel coupling list of ``program`` (module docstring); raises
    :class:`NotChannelWise` where the channels differ in structure."""
    n_theta, n_phi = program.grid
    (pos1, local1), (pos2, local2) = _input_channels(program, 0), _input_channels(program, 1)
    pos_out, keys = _output_channels(program)
    fields = []  # per synthesis: F[a, p, t] for its input's coefficients a
    for s, l1, l2 in zip(program.syntheses, local1, local2):
        local, k = (l1, pos1.shape[1]) if s.source == 0 else (l2, pos2.shape[1])
        R, Lp = s.rows
        rows = np.einsum("pr,rtl->rlpt", s.phi, s.theta).reshape(R * Lp, n_phi, n_theta)
        field = np.zeros((k, n_phi, n_theta))
        np.add.at(field, local[local >= 0], rows[local >= 0])
        fields.append(field)
    integrations = []  # per projection: P[c, p, t]
    for q, p in enumerate(program.projections):
        R3, L3p = p.rows
        rows = np.einsum("rp,rlt->rlpt", p.phi, p.theta).reshape(R3 * L3p, n_phi, n_theta)
        row_of = np.array([key[q] for key in keys], dtype=np.int64)
        integration = np.zeros((len(keys), n_phi, n_theta))
        integration[row_of >= 0] = rows[row_of[row_of >= 0]]
        integrations.append(integration)
    dense = np.zeros((pos1.shape[1], pos2.shape[1], len(keys)))
    for t in program.terms:
        f1, f2, g = fields[t.a], fields[t.b], integrations[t.projection]
        dense += t.coefficient * np.einsum("apt,bpt,cpt->abc", f1, f2, g, optimize=True)
    scale = np.abs(dense).max(initial=0.0)
    a, b, c = np.nonzero(np.abs(dense) > DROP * scale)
    positions = (pos1, pos2, pos_out)
    return _sorted(program.mul, program.dims, positions, (a, b, c), coefficient=dense[a, b, c], name=program.name)


__all__ = ["DROP", "Coupling", "NotChannelWise", "coupling"]
