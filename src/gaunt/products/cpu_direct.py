"""The direct kernel of the fused CPU executor, and the rule that picks it or the transform kernel.

Two C++ kernels run a sphere program on the CPU (both in the ``gaunt_fused`` library, ``cpu_build``):

* "transform" (``csrc/sphere_program.cpp``): synthesis on the grid, pointwise products, projection;
  ``program.flops_per_sample()`` multiply-adds per sample, on tiles of (sample, channel) columns;
* "direct" (``csrc/direct_program.cpp``): the program's sparse per-channel coupling list
  (``coupling.coupling``), ``nnz * mul`` triples per sample, each a multiply and a multiply-add of 16 float
  (8 double) samples, on tiles of samples transposed in cache.

:func:`choose_kernel` takes the cheaper by the estimate

    direct  if  DIRECT_COST * nnz * mul  <  program.flops_per_sample()

(programs that are not channel-wise always take "transform"). ``DIRECT_COST`` is the time of one triple
in units of one multiply-add of the transform kernel, measured on this project's machine (see its comment).
"""

from __future__ import annotations

import numpy as np

from .coupling import Coupling, NotChannelWise, coupling
from .program import SphereProgram

#: time of one triple of the direct kernel / time of one multiply-add (``flops_per_sample``) of the transform
#: kernel. Calibrated with ``PYTHONPATH=src python benchmarks/fused_cpu/calibrate.py`` (float32, 1 thread,
#: 64 channels; 2-core AMD EPYC Zen 4 KVM, AVX-512, load average ~1.9 from other jobs): the median over the
#: GridGaunt and torus Gaunt programs (and their derivatives) at L = 4..6 is 1.80 (range 1.62-2.12; at L <= 3
#: the fixed costs per sample differ and the direct kernel is 2-8x faster). GridGaunt at L = 6 is a tie
#: (transform / direct 0.98-0.99): the rule picks "transform" there, "direct" below.
DIRECT_COST = 1.8
HEADER = 8  # int64 words: mul, dim1, dim2, dim_out, k1, k2, k3, nnz
KERNELS = ("auto", "direct", "transform")
MAX_BLOCK = 15  # the widest block of the channel tiles (kMaxBlock of csrc/direct_program.cpp)


def direct_cost(c: Coupling) -> float:
    """The estimated cost of the direct kernel per sample, in transform multiply-adds."""
    return DIRECT_COST * c.nnz * c.mul


def choose_kernel(program: SphereProgram, kernel: str = "auto") -> tuple[str, Coupling | None]:
    """``(kernel, coupling)`` for ``program``: "direct" with its coupling list, or "transform" with None.

    ``kernel="auto"`` applies the rule of the module docstring; "direct" forces it (raises if the program is
    not channel-wise) and "transform" never builds the list.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "transform":
        return "transform", None
    try:
        c = coupling(program)
    except NotChannelWise:
        if kernel == "direct":
            raise
        return "transform", None
    if kernel == "direct" or direct_cost(c) < program.flops_per_sample():
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


__all__ = ["DIRECT_COST", "KERNELS", "MAX_BLOCK", "blocks", "choose_kernel", "direct_cost", "pack_direct"]
