"""The tables of a sphere program laid out for the Triton kernels (plain numpy; no triton needed).

The kernel (``triton_kernels``) runs, for a tile of columns z = (sample n, channel u), one *launch*: up to
two terms ``(a, b, c)`` that share a projection p, streamed ring by ring (``program`` module docstring):

    X_s[r, l, z]  = x[n, index_s[r, l, u]]                          (gathered once; 0 where -1)
    A_s[j, i, z]  = sum_r phi_s[j, r] sum_l theta_s[r, i, l] X_s[r, l, z]        (rings i of a block)
    H[j, i, z]    = sum_t c_t A_{a_t}[j, i, z] A_{b_t}[j, i, z]
    Y[r3, l3, z] += sum_i theta_p[r3, i, l3] sum_j phi_p[r3, j] H[j, i, z]
    out[n, write_p[r3, l3, u]] (+)= Y[r3, l3, z]                    (after the last ring; skipped where -1)

A program's output is the sum of its launches (the program is linear in each term's projection), so a
projection with more than two terms takes several launches. Every stage is padded with zeros (-1 in the
index tables) to powers of two: the sizes that meet ``tl.dot`` are at least 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .program import SphereProgram

#: the smallest size of a ``tl.dot`` operand dimension
DOT_MIN = 16


def pow2(n: int, least: int = 1) -> int:
    """The smallest power of two >= max(n, least)."""
    n = max(int(n), least)
    return 1 << (n - 1).bit_length()


@dataclass(frozen=True, eq=False)
class KernelTables:
    """Padded, stacked tables of one program (float64 / int32; cast and moved per call by the executor).

    ``syn_index [S, RS, LS, mul]``, ``syn_theta [S, RS, NT, LS]``, ``syn_phi [S, NP, RS]``;
    ``proj_phi [P, R3, NP]``, ``proj_theta [P, R3, NT, L3]``, ``proj_write [P, R3, L3, mul]`` (output
    position or -1); ``launches``: ``(projection, ((a, b, coefficient), ...))`` with one or two terms.
    """

    mul: int
    dims: tuple[int, int, int]
    n_theta: int
    syn_index: np.ndarray
    syn_theta: np.ndarray
    syn_phi: np.ndarray
    proj_phi: np.ndarray
    proj_theta: np.ndarray
    proj_write: np.ndarray
    launches: tuple[tuple[int, tuple[tuple[int, int, float], ...]], ...]

    @property
    def sizes(self) -> dict[str, int]:
        """The padded sizes, the kernel's compile-time constants."""
        _, RS, LS, _ = self.syn_index.shape
        _, R3, L3, _ = self.proj_write.shape
        return {"RS": RS, "LS": LS, "R3": R3, "L3": L3, "NP": self.syn_phi.shape[1]}

    @property
    def stored_rings(self) -> int:
        """``NTP``: the rings of the stored theta tables (``n_theta`` padded to a power of two)."""
        return self.syn_theta.shape[2]


def _write_index(read: np.ndarray, rows: tuple[int, int], mul: int, padded: tuple[int, int]) -> np.ndarray:
    """The inverse of ``read`` (output position -> flat row of ``[R3, L3p, mul]``), padded: ``[R3', L3', mul]``."""
    R3, L3p = rows
    valid = read >= 0
    if len(np.unique(read[valid])) != int(valid.sum()):
        raise ValueError("a projection reads one row into two outputs; the Triton executor needs an injective read")
    write = -np.ones(R3 * L3p * mul, dtype=np.int64)
    write[read[valid]] = np.nonzero(valid)[0]
    out = -np.ones((*padded, mul), dtype=np.int32)
    out[:R3, :L3p] = write.reshape(R3, L3p, mul)
    return out


def _launches(program: SphereProgram) -> tuple:
    """Terms grouped by projection, in pairs: ``((p, ((a, b, c), ...)), ...)``."""
    out = []
    for p in range(len(program.projections)):
        terms = [(t.a, t.b, float(t.coefficient)) for t in program.terms if t.projection == p]
        out += [(p, tuple(terms[k : k + 2])) for k in range(0, len(terms), 2)]
    return tuple(out)


def kernel_tables(program: SphereProgram) -> KernelTables:
    """Pad and stack the tables of ``program`` for the kernels (module docstring)."""
    n_theta, n_phi = program.grid
    mul, syn, proj = program.mul, program.syntheses, program.projections
    RS = pow2(max(s.rows[0] for s in syn), DOT_MIN)
    LS = pow2(max(s.rows[1] for s in syn))
    R3 = pow2(max(p.rows[0] for p in proj), DOT_MIN)
    L3 = pow2(max(p.rows[1] for p in proj))
    NP, NT = pow2(n_phi, DOT_MIN), pow2(n_theta)  # rings stored padded with zero tables (any block fits)
    syn_index = -np.ones((len(syn), RS, LS, mul), dtype=np.int32)
    syn_theta = np.zeros((len(syn), RS, NT, LS))
    syn_phi = np.zeros((len(syn), NP, RS))
    for k, s in enumerate(syn):
        R, Lp = s.rows
        syn_index[k, :R, :Lp] = s.index.reshape(R, Lp, mul)
        syn_theta[k, :R, :n_theta, :Lp] = s.theta
        syn_phi[k, :n_phi, :R] = s.phi
    proj_phi = np.zeros((len(proj), R3, NP))
    proj_theta = np.zeros((len(proj), R3, NT, L3))
    proj_write = -np.ones((len(proj), R3, L3, mul), dtype=np.int32)
    for k, p in enumerate(proj):
        R, Lp = p.rows
        proj_phi[k, :R, :n_phi] = p.phi
        proj_theta[k, :R, :n_theta, :Lp] = p.theta.transpose(0, 2, 1)  # [R3, L3p, NT] -> [R3, NT, L3p]
        proj_write[k] = _write_index(p.read, p.rows, mul, (R3, L3))
    return KernelTables(
        mul,
        tuple(program.dims),
        n_theta,
        syn_index,
        syn_theta,
        syn_phi,
        proj_phi,
        proj_theta,
        proj_write,
        _launches(program),
    )


def blocks(sizes: dict[str, int], columns: int, rings: int, interpret: bool) -> tuple[int, int, int]:
    """``(BZ, BT, num_warps)``: columns per program instance, rings per step, warps.

    On a GPU: one ring per step; ``BZ`` about 4096 values per register tile ``[RS, LS, BZ]`` (16 <= BZ <= 64)
    and warps for about 8 values of it per thread (4 to 16): ptxas then needs 100-130 registers per thread
    with no or few spills from L = 1 to 10 (sm_90, ``cuobjdump --dump-resource-usage``; times not tuned yet).
    Under the interpreter (numpy, where each operation costs about the same at any size): all columns (up
    to 256) and all ``rings`` (the stored ones, a power of two) at once.
    """
    if interpret:
        return min(pow2(columns, DOT_MIN), 256), rings, 1
    tile = max(sizes["RS"] * sizes["LS"], sizes["R3"] * sizes["L3"])
    floor = 1 << max(0, (4096 // tile).bit_length() - 1)  # the largest power of two <= 4096 / tile
    block = max(DOT_MIN, min(64, floor))
    return block, 1, max(4, min(16, pow2(tile * block // (32 * 8))))


__all__ = ["DOT_MIN", "KernelTables", "blocks", "kernel_tables", "pow2"]
