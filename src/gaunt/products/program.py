"""Sphere programs: what a channel-wise product of sphere functions computes, as plain arrays.

A sphere program maps two inputs ``x1 [n, dim1]``, ``x2 [n, dim2]`` (e3nn ``mul_ir`` layout, weights
already applied) to ``out [n, dim_out]`` through functions sampled on one grid of ``n_theta`` rings
times ``n_phi`` azimuths. It is bilinear, and every stage is a separable linear map:

    synthesis s (of input i_s):  X = gather(x_i, s.index)                    [R, Lp, mul]   (0 where -1)
                                 A_s = s.phi @ (s.theta @_R X)                [n_phi, n_theta, mul]
    pointwise terms t:           H_p = sum_{t: t.projection = p} t.coefficient A_{t.a} * A_{t.b}
    projection p:                Y_p = p.theta @_R (p.phi @ H_p)              [R3, L3p, mul]
    read-out:                    out[k] = sum_p Y_p.flat[p.read[k]]            (terms with read -1 skipped)

(``@_R`` is a batched matmul over the R rows: the separable harmonics ``Y[l m] = Theta[l |m|](theta)
A_m(phi)`` make synthesis and projection two small matmuls each.) Syntheses ``a`` of a term read
``x1``, syntheses ``b`` read ``x2``.

The derivative of a program is again a program (:func:`derivative`): the adjoint of a projection is a
synthesis with the transposed tables (and the inverse read-out as its gather), the adjoint of a
synthesis is a projection, and for ``d out / d x1`` each term ``(a, b, p)`` becomes ``(p*, b, a*)``:

    grad_x1 = sum_t c_t a_t^T ( (b_t x2) * (p_t^T grad_out) ),

a program with inputs ``(grad_out, x2)``. So backward and double backward run on the same executor as
the forward. Programs are frozen dataclasses of read-only numpy arrays; building one needs no torch state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _frozen(array, dtype) -> np.ndarray:
    out = np.array(array, dtype=dtype)  # a private copy, so that nobody can change it behind our back
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Synthesis:
    """Coefficients of input ``source`` (0: x1, 1: x2) -> one field on the grid.

    ``index [R * Lp * mul]``: the input position read by row (r, l, u) (row-major), -1 for zero;
    ``theta [R, n_theta, Lp]`` and ``phi [n_phi, R]``: the two separable stages.
    """

    source: int
    index: np.ndarray
    theta: np.ndarray
    phi: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", _frozen(self.index, np.int64))
        object.__setattr__(self, "theta", _frozen(self.theta, np.float64))
        object.__setattr__(self, "phi", _frozen(self.phi, np.float64))
        R, _, Lp = self.theta.shape
        if self.phi.shape[1] != R or self.index.size % (R * Lp):
            raise ValueError(
                f"Synthesis: theta {self.theta.shape}, phi {self.phi.shape}, index {self.index.shape} disagree"
            )

    @property
    def rows(self) -> tuple[int, int]:
        """``(R, Lp)``: the coefficient rows and columns per channel."""
        return self.theta.shape[0], self.theta.shape[2]


@dataclass(frozen=True, eq=False)
class Projection:
    """A field on the grid -> output coefficients ``Y [R3, L3p, mul]``, read into the output.

    ``phi [R3, n_phi]``, ``theta [R3, L3p, n_theta]`` (integration weights included);
    ``read [dim_out]``: the flat row of Y that output position k takes, -1 for none.
    """

    theta: np.ndarray
    phi: np.ndarray
    read: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "theta", _frozen(self.theta, np.float64))
        object.__setattr__(self, "phi", _frozen(self.phi, np.float64))
        object.__setattr__(self, "read", _frozen(self.read, np.int64))
        if self.phi.shape[0] != self.theta.shape[0]:
            raise ValueError(f"Projection: theta {self.theta.shape} and phi {self.phi.shape} disagree")

    @property
    def rows(self) -> tuple[int, int]:
        """``(R3, L3p)``."""
        return self.theta.shape[0], self.theta.shape[1]


@dataclass(frozen=True)
class Term:
    """``coefficient * field a * field b`` added to the field of ``projection`` before it is projected."""

    a: int
    b: int
    projection: int
    coefficient: float = 1.0


@dataclass(frozen=True, eq=False)
class SphereProgram:
    """A bilinear sphere program (module docstring). ``dims = (dim1, dim2, dim_out)``; ``name`` is for messages."""

    mul: int
    dims: tuple[int, int, int]
    syntheses: tuple[Synthesis, ...]
    projections: tuple[Projection, ...]
    terms: tuple[Term, ...]
    name: str = "program"

    def __post_init__(self) -> None:
        object.__setattr__(self, "syntheses", tuple(self.syntheses))
        object.__setattr__(self, "projections", tuple(self.projections))
        object.__setattr__(self, "terms", tuple(self.terms))
        grids = {s.theta.shape[1] for s in self.syntheses} | {p.theta.shape[2] for p in self.projections}
        azimuths = {s.phi.shape[0] for s in self.syntheses} | {p.phi.shape[1] for p in self.projections}
        if len(grids) != 1 or len(azimuths) != 1:
            raise ValueError(f"{self.name}: every stage must use one grid, got rings {grids} and azimuths {azimuths}")
        for s in self.syntheses:
            R, Lp = s.rows
            if s.index.size != R * Lp * self.mul or s.index.max(initial=-1) >= self.dims[s.source]:
                raise ValueError(f"{self.name}: a synthesis gathers outside its input of size {self.dims[s.source]}")
        for p in self.projections:
            if p.read.shape != (self.dims[2],) or p.read.max(initial=-1) >= np.prod(p.rows) * self.mul:
                raise ValueError(f"{self.name}: a projection reads outside its rows")
        for t in self.terms:
            if self.syntheses[t.a].source != 0 or self.syntheses[t.b].source != 1:
                raise ValueError(f"{self.name}: term {t} must multiply a field of x1 by a field of x2")

    @property
    def grid(self) -> tuple[int, int]:
        """``(n_theta, n_phi)``."""
        return self.syntheses[0].theta.shape[1], self.syntheses[0].phi.shape[0]

    def flops_per_sample(self) -> int:
        """Multiply-adds per sample (all channels): the separable stages and the pointwise terms."""
        n_theta, n_phi = self.grid
        total = 0
        for s in self.syntheses:
            R, Lp = s.rows
            total += self.mul * (R * n_theta * Lp + n_phi * R * n_theta)
        for p in self.projections:
            R3, L3p = p.rows
            total += self.mul * (R3 * n_phi * n_theta + R3 * L3p * n_theta)
        return total + len(self.terms) * self.mul * n_theta * n_phi


def _inverse(index: np.ndarray, size: int) -> np.ndarray:
    """For an injective partial map ``index`` (entries -1 ignored), the map ``[size]`` back (-1: not hit)."""
    valid = index >= 0
    if len(np.unique(index[valid])) != int(valid.sum()):
        raise ValueError("a sphere program's gather reads an input position twice; its adjoint needs an injective map")
    out = -np.ones(size, dtype=np.int64)
    out[index[valid]] = np.nonzero(valid)[0]
    return out


def adjoint_of_projection(p: Projection, mul: int, source: int) -> Synthesis:
    """The synthesis that is the transpose of ``p``: output cotangent -> a field on the grid."""
    R3, L3p = p.rows
    index = _inverse(p.read, R3 * L3p * mul)
    return Synthesis(source, index, p.theta.transpose(0, 2, 1), p.phi.T)


def adjoint_of_synthesis(s: Synthesis, dim: int) -> Projection:
    """The projection that is the transpose of ``s``: a field on the grid -> a cotangent of its input."""
    return Projection(s.theta.transpose(0, 2, 1), s.phi.T, _inverse(s.index, dim))


def derivative(program: SphereProgram, wrt: int) -> SphereProgram:
    """The program of the vector-Jacobian product with respect to input ``wrt`` (0: x1, 1: x2).

    ``wrt=0``: inputs ``(grad_out, x2)`` -> ``grad_x1 [n, dim1]``; ``wrt=1``: inputs ``(x1, grad_out)``
    -> ``grad_x2 [n, dim2]`` (see the module docstring). Exact: only transposes and re-indexing.
    """
    if wrt not in (0, 1):
        raise ValueError(f"derivative: wrt must be 0 or 1, got {wrt!r}")
    dim1, dim2, dim_out = program.dims
    keep = 1 - wrt  # the input that stays an input
    kept = [i for i, s in enumerate(program.syntheses) if s.source == keep]
    diff = [
        i
        for i, s in enumerate(program.syntheses)
        if s.source == wrt and any((t.a if wrt == 0 else t.b) == i for t in program.terms)
    ]
    adjoint_syntheses = [adjoint_of_projection(p, program.mul, wrt) for p in program.projections]
    syntheses = adjoint_syntheses + [program.syntheses[i] for i in kept]
    new_index = {i: len(adjoint_syntheses) + k for k, i in enumerate(kept)}
    projections = [adjoint_of_synthesis(program.syntheses[i], program.dims[wrt]) for i in diff]
    terms = []
    for t in program.terms:
        d, k = (t.a, t.b) if wrt == 0 else (t.b, t.a)
        g = t.projection  # the cotangent's field comes from the adjoint of the term's projection
        a, b = (g, new_index[k]) if wrt == 0 else (new_index[k], g)
        terms.append(Term(a, b, diff.index(d), t.coefficient))
    dims = (dim_out, dim2, dim1) if wrt == 0 else (dim1, dim_out, dim2)
    return SphereProgram(program.mul, dims, syntheses, projections, terms, f"d{program.name}/dx{wrt + 1}")


__all__ = [
    "Synthesis",
    "Projection",
    "Term",
    "SphereProgram",
    "derivative",
    "adjoint_of_projection",
    "adjoint_of_synthesis",
]
