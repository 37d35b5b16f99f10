"""The direct kernel of the fused CPU executor, and the rule that picks it or the transform kernel.

Two C++ kernels run a sphere program on the CPU (both in the ``gaunt_fused`` library, ``cpu_build``):

* "transform" (``csrc/sphere_program.cpp``): synthesis on the grid, pointwise products, projection;
  ``program.flops_per_sample()`` multiply-adds per sample, on tiles of (sample, channel) columns;
* "direct" (``csrc/direct_program.cpp``): the program's sparse per-channel coupling list
  (``coupling.coupling``), ``nnz * mul`` triples per sample, each a multiply and a multiply-add of 16 float
  (8 double) samples, on tiles of samples transposed in cache.

:func:`choose_kernel` takes the cheaper by the estimate

    direct  if  DIRECT_COST[weights] * nnz * mul  <  program.flops_per_sample()

(programs that are not channel-wise always take "transform"). ``DIRECT_COST[weights]`` is the time of one
triple in units of one multiply-add of the transform kernel, measured on this project's machine, for how the
program's operands are weighted (``weights``):

* ``None``: a plain program (the kernels alone; ``benchmarks/fused_cpu/calibrate.py``);
* ``"shared"``: a product's frame with weights shared by the batch (folded as coefficients of the direct kernel,
  ``direct_weighted``, or as scales around the transform kernel, ``scaled_weights``);
* ``"per_sample"``: a frame with per-sample weights (scales around either kernel).

The two frame constants come from whole steps of GridGauntProduct (forward and every gradient) on both kernels
(``benchmarks/fused_cpu/crossover.py``, see its results in ``benchmarks/fused_cpu/README.md``).
"""

from __future__ import annotations

import numpy as np

from .coupling import Coupling, NotChannelWise, coupling
from .program import SphereProgram

#: time of one triple of the direct kernel / time of one multiply-add (``flops_per_sample``) of the transform
#: kernel, by how the operands are weighted (module docstring); 2-core AMD EPYC Zen 4 KVM, AVX-512, float32, 1 thread.
#: None: the median over the GridGaunt and torus Gaunt programs (and their derivatives) at L = 4..6 is 1.80
#: (``calibrate.py``, 64 channels, load ~1.9). The frame modes were remeasured with the joint backward sharing
#: the cotangent's synthesis on the transform kernel (``csrc/shared_passes.h``; ``crossover.py``, 2026-12-07):
#: "shared": GridGauntProduct, feature shape, 64 channels, batch 1e4: direct 1.57x faster at L = 3 (flops /
#: (nnz mul) = 4.31), transform 1.12x at L = 4 (3.02), 1.79x at L = 5 (2.04): the tie interpolates to ~3.2.
#: "per_sample": the edge shape, 16 channels, per-edge weights, batch 2e4 (the direct kernel with the weights as
#: per-row scales of its channel columns, ``csrc/scaled_columns.h``): direct 1.32x faster at L = 5 (2.04),
#: transform 1.06x at L = 6 (1.60), 1.61x at L = 7 (1.17): the tie interpolates to ~1.67.
DIRECT_COST = {None: 1.8, "shared": 3.5, "per_sample": 2.0}
WEIGHTS = tuple(DIRECT_COST)
HEADER = 8  # int64 words: mul, dim1, dim2, dim_out, k1, k2, k3, nnz
KERNELS = ("auto", "direct", "transform")
MAX_BLOCK = 15  # the widest block of the channel tiles (kMaxBlock of csrc/direct_program.cpp)


def direct_cost(c: Coupling, weights: str | None = None) -> float:
    """The estimated cost of the direct kernel per sample, in transform multiply-adds."""
    return DIRECT_COST[weights] * c.nnz * c.mul


def choose_kernel(
    program: SphereProgram, kernel: str = "auto", weights: str | None = None
) -> tuple[str, Coupling | None]:
    """``(kernel, coupling)`` for ``program``: "direct" with its coupling list, or "transform" with None.

    ``kernel="auto"`` applies the rule of the module docstring for operands weighted as ``weights`` (None,
    "shared", "per_sample"); "direct" forces it (raises if the program is not channel-wise) and "transform" never
    builds the list.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if weights not in DIRECT_COST:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if kernel == "transform":
        return "transform", None
    try:
        c = coupling(program)
    except NotChannelWise:
        if kernel == "direct":
            raise
        return "transform", None
    if kernel == "direct" or direct_cost(c, weights) < program.flops_per_sample():
        return "direct", c
    return "transform", None


def blocks(pos: np.ndarray, widest: int = MAX_BLOCK) -> np.ndarray | None:
    """``pos [mul, k]`` as blocks ``(start, D, first)`` ``[blocks, 3]``: coefficients ``first + m`` (m < D)
    at ``pos[u, first + m] = start + u D + m`` (the ``mul_ir`` layout of an irrep of dimension D <= widest);
    None where the positions are not such blocks."""
    mul, k = pos.shape
    out, first = [], 0
    while first < k and mul > 1:
        start, D = int(pos[0, first]), int(pos[1, first] - pos[0, first])
        expected = start + D * np.arange(mul)[:, None] + np.arange(D)[None, :]
        if not 1 <= D <= min(widest, k - first) or (pos[:, first : first + D] != expected).any():
            return None
        out.append((start, D, first))
        first += D
    return np.array(out, dtype=np.int64).reshape(-1, 3) if first == k and mul > 1 else None


def pack_direct(c: Coupling) -> tuple[np.ndarray, np.ndarray]:
    """``(meta, values)`` of a coupling list in the layout of ``csrc/direct_program.cpp``: meta = header,
    then the tile row ``u k + a`` of every position of x1, x2 and out (-1: in no channel), then a, b, c,
    then per x1, x2, out its :func:`blocks` (count, -1 for none, then the rows); values = the coefficients."""
    rows, grouped = [], []
    for pos, dim in zip(c.positions, c.dims):
        mul, k = pos.shape
        row = -np.ones(dim, dtype=np.int64)
        row[pos.reshape(-1)] = np.arange(mul * k)  # pos [u, a] -> row u k + a
        rows.append(row)
        found = blocks(pos)
        grouped += [[-1]] if found is None else [[len(found)], found.reshape(-1)]
    meta = np.concatenate([[c.mul, *c.dims, *c.sizes, c.nnz], *rows, c.a, c.b, c.c, *grouped])
    return meta.astype(np.int64), np.array(c.coefficient, dtype=np.float64)


__all__ = [
    "DIRECT_COST",
    "KERNELS",
    "MAX_BLOCK",
    "WEIGHTS",
    "blocks",
    "choose_kernel",
    "direct_cost",
    "pack_direct",
]
