"""Low-rank CP factorisation of the CG product (Tensor Decomposition Networks).

``CPProduct(irreps_in1, irreps_in2, irreps_out, rank, instructions=None)`` approximates the
``CGProduct`` with the same arguments (same paths, weights and e3nn normalisation; ``descriptor()``
is the CG product it approximates) by replacing each path's coupling tensor with a rank-R sum

    C[i, j, k] ~ sum_r A[i, r] B[j, r] G[k, r]          (one decomposition per (l1, l2, l3))

and executing ``z[k] = sum_r G[k, r] (A^T x1)_r (B^T x2)_r`` with the path's multiplicity mode
(uvw, uvu, ...) applied to the rank index r: O(R (d1 + d2 + d3)) per channel pair instead of
O(d1 d2 d3). The approximation breaks equivariance by an amount measured by
``equivariance_error()``; ``decomposition_error`` is the relative Frobenius error over the paths.

Decomposition (float64 NumPy, computed once per coupling and cached, deterministic):

* exact: split C into matrix slices along the mode that needs the fewest terms and SVD each slice,
  ``C = sum_a e_a (x) sum_s s_as u_as (x) v_as``; its size ``exact_rank`` (the "slice rank", an upper
  bound of the CP rank) is used whenever ``rank >= exact_rank``: then the product equals the CG
  product to float64 rounding.
* below it, greedy ALS: rank r+1 starts from the rank-r factors plus the best rank-1 fit of the
  residual (power iteration from a seeded random start), then alternating least squares. Every step
  can only lower the error, so the error is non-increasing in the rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from ..so3 import irreps_wigner_d, random_rotation
from .base import TensorProduct
from .cg import CGProduct
from .descriptor import ProductDescriptor

_EXACT_TOL = 1e-12  # singular values below this (relative to |C|) are zero


def _exact_cp(tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact CP factors ``A [d1, R], B [d2, R], G [d3, R]`` from SVDs of the slices along the best mode."""
    best = None
    for mode in range(3):
        factors: list[list[np.ndarray]] = [[], [], []]
        others = [k for k in range(3) if k != mode]
        scale = np.linalg.norm(tensor)
        for a, matrix in enumerate(np.moveaxis(tensor, mode, 0)):
            u, s, vt = np.linalg.svd(matrix, full_matrices=False)
            for t in np.nonzero(s > _EXACT_TOL * scale)[0]:
                factors[mode].append(np.eye(tensor.shape[mode])[a])
                factors[others[0]].append(u[:, t] * s[t])
                factors[others[1]].append(vt[t])
        if best is None or len(factors[0]) < best[0].shape[1]:
            best = tuple(np.stack(f, axis=1) if f else np.zeros((tensor.shape[k], 0)) for k, f in enumerate(factors))
    return best  # type: ignore[return-value]


def _khatri_rao(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``[d_b * d_c, R]`` with row ``j * d_c + k`` = ``b[j] * c[k]``."""
    return (b[:, None, :] * c[None, :, :]).reshape(-1, b.shape[1])


def _reconstruct(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> np.ndarray:
    return np.einsum("ir,jr,kr->ijk", a, b, g)


class _GreedyALS:
    """The nested sequence of ALS decompositions of one tensor, rank 1, 2, ... (extended on demand)."""

    def __init__(self, tensor: np.ndarray, seed: int, iterations: int) -> None:
        self.tensor, self.iterations = tensor, iterations
        self.rng = np.random.default_rng(seed)
        self.unfoldings = [np.moveaxis(tensor, k, 0).reshape(tensor.shape[k], -1) for k in range(3)]
        self.norm = float(np.linalg.norm(tensor))
        self.sequence: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = []

    def _error(self, a: np.ndarray, b: np.ndarray, g: np.ndarray) -> float:
        return float(np.linalg.norm(self.tensor - _reconstruct(a, b, g))) / self.norm

    def get(self, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        while len(self.sequence) < rank:
            self._grow()
        return self.sequence[rank - 1]

    def _grow(self) -> None:
        d1, d2, d3 = self.tensor.shape
        if self.sequence:
            a, b, g, error = self.sequence[-1]
        else:
            a, b, g, error = np.zeros((d1, 0)), np.zeros((d2, 0)), np.zeros((d3, 0)), 1.0
        if error < 1e-14:  # already exact: keep it
            self.sequence.append((a, b, g, error))
            return
        # best rank-1 fit of the residual (higher-order power iteration); the last step is the exact
        # least-squares scale, so |residual - u v w| <= |residual|
        residual = self.tensor - _reconstruct(a, b, g)
        u, v = self.rng.standard_normal(d1), self.rng.standard_normal(d2)
        for _ in range(30):
            w = np.einsum("ijk,i,j->k", residual, u, v)
            w /= np.linalg.norm(w) + 1e-300
            u = np.einsum("ijk,j,k->i", residual, v, w)
            u /= np.linalg.norm(u) + 1e-300
            v = np.einsum("ijk,i,k->j", residual, u, w)
        a, b, g = np.column_stack([a, u]), np.column_stack([b, v]), np.column_stack([g, w])
        error = self._error(a, b, g)
        # ALS: each factor in turn is the exact least-squares solution given the other two
        for _ in range(self.iterations):
            a = np.linalg.lstsq(_khatri_rao(b, g), self.unfoldings[0].T, rcond=None)[0].T
            b = np.linalg.lstsq(_khatri_rao(a, g), self.unfoldings[1].T, rcond=None)[0].T
            g = np.linalg.lstsq(_khatri_rao(a, b), self.unfoldings[2].T, rcond=None)[0].T
            new = self._error(a, b, g)
            done = error - new <= 1e-10 * new
            error = new
            if done:
                break
        self.sequence.append((a, b, g, error))


_EXACT: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
_ALS: dict[tuple, _GreedyALS] = {}


def _exact_factors(array: np.ndarray, key: tuple | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if key is None:
        return _exact_cp(array)
    if key not in _EXACT:
        _EXACT[key] = _exact_cp(array)
    return _EXACT[key]


def cp_decomposition(
    tensor: torch.Tensor, rank: int, seed: int = 0, iterations: int = 100, key: tuple | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Rank-``rank`` CP factors of a 3-way tensor: ``(A [d1, R'], B [d2, R'], G [d3, R'], relative error)``.

    ``R' = min(rank, exact_rank)``; exact (error ~1e-16) when ``rank >= exact_rank``, greedy ALS below
    (non-increasing in rank). ``key`` (hashable, identifying the tensor) enables caching. float64.
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    array = tensor.detach().to("cpu", torch.float64).numpy()
    exact = _exact_factors(array, key)
    if rank >= exact[0].shape[1]:
        a, b, g = exact
        error = float(np.linalg.norm(array - _reconstruct(a, b, g)) / max(np.linalg.norm(array), 1e-300))
    else:
        als = _GreedyALS(array, seed, iterations) if key is None else _ALS.get((key, seed, iterations))
        if als is None:
            als = _ALS[key, seed, iterations] = _GreedyALS(array, seed, iterations)
        a, b, g, error = als.get(rank)
    return (*(torch.from_numpy(np.ascontiguousarray(f)) for f in (a, b, g)), error)  # type: ignore[return-value]


def exact_rank(tensor: torch.Tensor, key: tuple | None = None) -> int:
    """Number of terms of the exact slice-SVD decomposition (the rank at which ``CPProduct`` is exact)."""
    return _exact_factors(tensor.detach().to("cpu", torch.float64).numpy(), key)[0].shape[1]


# einsum on projected inputs a [z, u, r], b [z, v, r] (and weights) -> h [z, mul_out, r]
_EQUATIONS = {
    ("uvw", True): "zur,zvr,{z}uvw->zwr",
    ("uvu", True): "zur,zvr,{z}uv->zur",
    ("uvu", False): "zur,zvr->zur",
    ("uvv", True): "zur,zvr,{z}uv->zvr",
    ("uvv", False): "zur,zvr->zvr",
    ("uuw", True): "zur,zur,{z}uw->zwr",
    ("uuw", False): "zur,zur->zr",
    ("uuu", True): "zur,zur,{z}u->zur",
    ("uuu", False): "zur,zur->zur",
}


class CPProduct(TensorProduct):
    """Rank-R CP approximation of ``CGProduct(irreps_in1, irreps_in2, irreps_out, instructions, ...)``.

    Args:
        rank: CP rank per coupling tensor (capped at its ``exact_rank``; at or above ``full_rank`` the
            product is the CG product up to rounding).
        instructions, irrep_normalization, path_normalization, in1_var, in2_var, out_var,
        internal_weights, shared_weights, check_finite: exactly as ``CGProduct``.
        seed, als_iterations: of the (cached, deterministic) ALS decompositions.

    Attributes: ``decomposition_error`` (relative Frobenius error of all coupling tensors, stacked
    over paths), ``path_errors``, ``path_ranks``, ``full_rank``.
    """

    executor = "torch"

    def __init__(
        self,
        irreps_in1,
        irreps_in2,
        irreps_out,
        rank: int,
        instructions: Iterable[tuple] | None = None,
        irrep_normalization: str = "component",
        path_normalization: str = "element",
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        in1_var: Sequence[float] | None = None,
        in2_var: Sequence[float] | None = None,
        out_var: Sequence[float] | None = None,
        check_finite: bool = False,
        seed: int = 0,
        als_iterations: int = 100,
    ) -> None:
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"CPProduct: rank must be a positive integer, got {rank!r}")
        reference = CGProduct(
            irreps_in1,
            irreps_in2,
            irreps_out,
            instructions,
            irrep_normalization,
            path_normalization,
            internal_weights=False,
            shared_weights=True,
            in1_var=in1_var,
            in2_var=in2_var,
            out_var=out_var,
        )
        self._descriptor = reference.descriptor()
        super().__init__(
            reference.irreps_in1,
            reference.irreps_in2,
            reference.irreps_out,
            self._descriptor.weight_numel,
            internal_weights,
            shared_weights,
            check_finite,
        )
        self.rank = rank
        self.instructions = reference.instructions
        self._build_factors(seed, als_iterations)

    @classmethod
    def channelwise(cls, irreps_in1, irreps_in2, rank: int, irreps_out_filter=None, **kwargs) -> CPProduct:
        """CP version of ``CGProduct.channelwise`` (same output irreps and uvu instructions)."""
        cg = CGProduct.channelwise(irreps_in1, irreps_in2, irreps_out_filter, internal_weights=False)
        return cls(cg.irreps_in1, cg.irreps_in2, cg.irreps_out, rank, instructions=cg.instructions, **kwargs)

    def _build_factors(self, seed: int, iterations: int) -> None:
        """Factors grouped for execution, in one flat float64 buffer of segments:

        * per input-1 block i1: ``A_cat = [A_p1 | A_p2 | ...]`` ``[d1, sum R]`` over the couplings it
          meets (one matmul projects the block on all of them); the same for input 2 and B;
        * per output block: ``G_cat = [c_p G_p | ...]`` ``[d3, sum R]`` over its paths (one matmul).
        """
        d = self._descriptor
        segments: list[torch.Tensor] = []
        offset = 0

        def add(matrix: torch.Tensor) -> tuple[int, tuple[int, int]]:
            nonlocal offset
            segments.append(matrix.reshape(-1))
            offset += matrix.numel()
            return offset - matrix.numel(), tuple(matrix.shape)

        columns1: dict[int, dict[tuple, tuple[int, torch.Tensor]]] = {}  # i1 -> key -> (column offset, A)
        columns2: dict[int, dict[tuple, tuple[int, torch.Tensor]]] = {}
        per_output: dict[int, list[torch.Tensor]] = {}
        paths, errors, ranks, exact_ranks, squared, total = [], [], [], [], 0.0, 0.0
        for path, wslice in zip(d.paths, d.weight_slices()):
            (mul1, ir1), (mul2, ir2), (mul3, ir3) = d.irreps(path)
            coupling = d.coupling_tensor(path, torch.float64)
            key = (path.coupling, ir1.l, ir2.l, ir3.l)
            a, b, g, error = cp_decomposition(coupling, self.rank, seed, iterations, key=key)
            norm = float(torch.linalg.vector_norm(coupling))
            squared, total = squared + (error * norm) ** 2, total + norm**2
            errors.append(error)
            ranks.append(a.shape[1])
            exact_ranks.append(exact_rank(coupling, key))
            if mul1 * mul2 * mul3 == 0:
                continue  # contributes nothing (and owns no weights)
            for columns, i, factor in ((columns1, path.i_in1, a), (columns2, path.i_in2, b)):
                group = columns.setdefault(i, {})
                if key not in group:
                    group[key] = (sum(f.shape[1] for _, f in group.values()), factor)
            per_output.setdefault(path.i_out, []).append(path.coefficient * g)
            w = None if wslice is None else (wslice.start, wslice.stop, d.path_weight_shape(path))
            paths.append(
                (
                    path.i_in1,
                    columns1[path.i_in1][key][0],
                    path.i_in2,
                    columns2[path.i_in2][key][0],
                    path.i_out,
                    a.shape[1],
                    _EQUATIONS[path.mode, w is not None],
                    w,
                )
            )
        self._in1 = [(i, *add(torch.cat([f for _, f in group.values()], dim=1))) for i, group in columns1.items()]
        self._in2 = [(i, *add(torch.cat([f for _, f in group.values()], dim=1))) for i, group in columns2.items()]
        self._out = [(i, *add(torch.cat(gs, dim=1))) for i, gs in per_output.items()]
        self._paths = paths
        self.path_errors, self.path_ranks = errors, ranks
        self.full_rank = max(exact_ranks, default=1)
        # |C - CP| / |C| over all paths' coupling tensors stacked (CG: unit norms, so the RMS of path errors)
        self.decomposition_error = math.sqrt(squared / total) if total > 0 else 0.0
        flat = torch.cat(segments) if segments else torch.zeros(0, dtype=torch.float64)
        self.register_buffer("cp_factors", flat, persistent=False)

    def descriptor(self) -> ProductDescriptor:
        """The CG product this approximates (exactly, when ``rank >= full_rank``)."""
        return self._descriptor

    def _forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        per_sample = weight is not None and not self.shared_weights
        batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], *([weight.shape[:-1]] if per_sample else []))
        z = math.prod(batch)
        x1 = x1.expand(*batch, -1).reshape(z, self.irreps_in1.dim)
        x2 = x2.expand(*batch, -1).reshape(z, self.irreps_in2.dim)
        if per_sample:
            weight = weight.expand(*batch, -1).reshape(z, self.weight_numel)
        factors = self.cp_factors.to(x1.dtype)

        def segment(offset: int, shape: tuple[int, int]) -> torch.Tensor:
            return factors[offset : offset + shape[0] * shape[1]].reshape(shape)

        # projections on the rank directions: (A^T x1)[z, u, r], (B^T x2)[z, v, r]
        s1, s2 = self.irreps_in1.slices(), self.irreps_in2.slices()
        p1 = {
            i: x1[:, s1[i]].reshape(z, self.irreps_in1[i].mul, shape[0]) @ segment(o, shape)
            for i, o, shape in self._in1
        }
        p2 = {
            i: x2[:, s2[i]].reshape(z, self.irreps_in2[i].mul, shape[0]) @ segment(o, shape)
            for i, o, shape in self._in2
        }
        # per path: h[z, mul_out, r] = (A^T x1)_r (B^T x2)_r with the multiplicity mode and weights
        hs: dict[int, list[torch.Tensor]] = {}
        zw = "z" if per_sample else ""
        for i1, c1, i2, c2, i_out, r, equation, w in self._paths:
            operands = [p1[i1][..., c1 : c1 + r], p2[i2][..., c2 : c2 + r]]
            if w is not None:
                wp = weight[..., w[0] : w[1]]
                operands.append(wp.reshape(*wp.shape[:-1], *w[2]))
            h = torch.einsum(equation.format(z=zw), *operands)
            hs.setdefault(i_out, []).append(h.reshape(z, self.irreps_out[i_out].mul, r))
        # per output block: z[k] = sum over its paths and r of c G[k, r] h[r]
        outs: list[torch.Tensor | None] = [None] * len(self.irreps_out)
        for i_out, o, shape in self._out:
            outs[i_out] = (torch.cat(hs[i_out], dim=-1) @ segment(o, shape).T).reshape(z, self.irreps_out[i_out].dim)
        pieces = [x1.new_zeros(z, mul_ir.dim) if o is None else o for o, mul_ir in zip(outs, self.irreps_out)]
        out = torch.cat(pieces, dim=-1) if pieces else x1.new_zeros(z, 0)
        return out.reshape(*batch, self.irreps_out.dim)

    @torch.no_grad()
    def equivariance_error(self, n_samples: int = 16, seed: int = 0) -> float:
        """Relative error ``|f(D1 x1, D2 x2) - D_out f(x1, x2)| / |f(x1, x2)|`` (Frobenius over samples),
        float64, Gaussian inputs and weights, Haar rotations (every other one improper)."""
        g = torch.Generator().manual_seed(seed)
        device = self.cp_factors.device
        x1 = torch.randn(n_samples, self.irreps_in1.dim, generator=g, dtype=torch.float64)
        x2 = torch.randn(n_samples, self.irreps_in2.dim, generator=g, dtype=torch.float64)
        rotation = random_rotation(n_samples, generator=g, dtype=torch.float64)
        rotation[1::2] *= -1
        if self.internal_weights:
            weight = None
        else:
            shape = (self.weight_numel,) if self.shared_weights else (n_samples, self.weight_numel)
            weight = torch.randn(*shape, generator=g, dtype=torch.float64).to(device)
        d1, d2, d3 = (
            irreps_wigner_d(irreps, rotation).to(device)
            for irreps in (self.irreps_in1, self.irreps_in2, self.irreps_out)
        )
        x1, x2 = x1.to(device), x2.to(device)
        out = self(x1, x2, weight)
        rotated = self((d1 @ x1[..., None])[..., 0], (d2 @ x2[..., None])[..., 0], weight)
        expected = (d3 @ out[..., None])[..., 0]
        return float(torch.linalg.vector_norm(rotated - expected) / torch.linalg.vector_norm(out).clamp_min(1e-300))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, decomposition_error={self.decomposition_error:.3g}"


def cp_rank_sweep(
    irreps_in1,
    irreps_in2,
    irreps_out,
    ranks: Iterable[int],
    instructions: Iterable[tuple] | None = None,
    n_samples: int = 16,
    seed: int = 0,
    **kwargs,
) -> list[tuple[int, float, float]]:
    """Rows ``(rank, decomposition_error, equivariance_error)`` of ``CPProduct`` for each rank."""
    instructions = None if instructions is None else list(instructions)
    rows = []
    for rank in ranks:
        product = CPProduct(
            irreps_in1, irreps_in2, irreps_out, rank, instructions, internal_weights=False, seed=seed, **kwargs
        )
        rows.append((rank, product.decomposition_error, product.equivariance_error(n_samples, seed)))
    return rows


__all__ = ["CPProduct", "cp_decomposition", "cp_rank_sweep", "exact_rank"]
