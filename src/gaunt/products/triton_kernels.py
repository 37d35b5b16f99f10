"""The Triton kernel of a sphere program launch (layout and formulas: ``triton_layout``).

One program instance owns ``BZ`` columns z = n * mul + u (sample n, channel u). It gathers the coefficients
of its terms' syntheses once into registers (``X [RS, LS, BZ]``), then streams the rings of the grid in
blocks of ``BT`` rings i, with (i, z) as the long side of the two matmuls:

    g[r, i, z]   = sum_l theta_s[r, i, l] X_s[r, l, z]                 (broadcast and reduce)
    A_s[j, i, z] = sum_r phi_s[j, r] g[r, i, z]                        (tl.dot [NP, RS] x [RS, BT BZ])
    H[j, i, z]   = c0 A_a0 A_b0 (+ c1 A_a1 A_b1)                       (pointwise, one or two terms)
    C[r3, i, z]  = sum_j phi_p[r3, j] H[j, i, z]                       (tl.dot [R3, NP] x [NP, BT BZ])
    Y[r3, l3, z] += sum_i theta_p[r3, i, l3] C[r3, i, z]

so the grid never leaves the chip: only the inputs are read and the outputs written (stored, or added to
what earlier launches of the same program wrote). Everything is computed in the tables' dtype (float32 for
float32 and bfloat16 inputs, float64 for float64); ``PRECISION`` is the ``tl.dot`` input precision.
"""

from __future__ import annotations

import triton
import triton.language as tl

INTERPRET = bool(triton.knobs.runtime.interpret)


def _device(fn):
    """Helpers called by the kernel: ``triton.jit`` functions when compiled; under the interpreter the same
    bodies as plain functions (it re-patches ``triton.language`` on every nested jit call, ~2 ms each)."""
    return fn if INTERPRET else triton.jit(fn)


#: ``tl.sum``'s combine function: ``tl.reduce(x, axis, _SUM)`` is ``tl.sum`` for floating point (and numpy's sum
#: in the interpreter, without the re-patching of a nested jit call that ``tl.sum`` itself costs there)
_SUM = tl.standard._sum_combine


@_device
def _gather(x_ptr, index_ptr, s, n, u, valid, D, MUL, RS: tl.constexpr, LS: tl.constexpr):
    """``X[r, l, z] = x[n_z, index[s, r, l, u_z]]``, 0 where the index is -1 or z is past the last column."""
    r = tl.arange(0, RS).to(tl.int64)[:, None, None]
    l = tl.arange(0, LS)[None, :, None]
    idx = tl.load(index_ptr + ((s * RS + r) * LS + l) * MUL + u[None, None, :])
    mask = (idx >= 0) & valid[None, None, :]
    return tl.load(x_ptr + n[None, None, :] * D + idx, mask=mask, other=0.0)


@_device
def _matrix(ptr, s, ROWS: tl.constexpr, COLS: tl.constexpr):
    """The ``[ROWS, COLS]`` matrix ``s`` of a stack of them."""
    rows = tl.arange(0, ROWS).to(tl.int64)[:, None]
    return tl.load(ptr + (s * ROWS + rows) * COLS + tl.arange(0, COLS)[None, :])


@_device
def _field(
    X,
    phi,
    theta_ptr,
    s,
    rings,
    NTP,
    RS: tl.constexpr,
    LS: tl.constexpr,
    BT: tl.constexpr,
    BZ: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Rings ``rings`` of synthesis s: ``A[j, (i, z)] = sum_r phi[j, r] sum_l theta[s, r, i, l] X[r, l, z]``."""
    r = tl.arange(0, RS).to(tl.int64)[:, None, None]
    l = tl.arange(0, LS)[None, None, :]
    theta = tl.load(theta_ptr + ((s * RS + r) * NTP + rings[None, :, None]) * LS + l)  # [RS, BT, LS]
    g = tl.reduce(theta[:, :, :, None] * X[:, None, :, :], 2, _SUM)  # [RS, BT, BZ]
    return tl.dot(phi, tl.reshape(g, (RS, BT * BZ)), input_precision=PRECISION)


#: integers not specialised on (== 1, divisible by 16) and inputs not on their alignment: the loads are gathers,
#: which gain nothing from it, and every program shape would otherwise compile several times
SCALARS = ["columns", "D1", "D2", "D3", "MUL", "NT", "NTP", "p", "a0", "b0", "a1", "b1"]


@triton.jit(do_not_specialize=SCALARS, do_not_specialize_on_alignment=["x1_ptr", "x2_ptr"])
def sphere_program_kernel(
    x1_ptr,
    x2_ptr,
    out_ptr,
    syn_index,
    syn_theta,
    syn_phi,
    proj_phi,
    proj_theta,
    proj_write,
    coef_ptr,
    columns,
    D1,
    D2,
    D3,
    MUL,
    NT,
    NTP,
    p,
    a0,
    b0,
    a1,
    b1,
    RS: tl.constexpr,
    LS: tl.constexpr,
    R3: tl.constexpr,
    L3: tl.constexpr,
    NP: tl.constexpr,
    BZ: tl.constexpr,
    BT: tl.constexpr,
    TWO: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One launch (module docstring): terms (a0, b0, c0) and, if ``TWO``, (a1, b1, c1) into projection p."""
    dtype = syn_theta.dtype.element_ty
    z = tl.program_id(0).to(tl.int64) * BZ + tl.arange(0, BZ)  # int64 index arithmetic throughout
    valid = z < columns
    n = z // MUL
    u = z % MUL
    c0 = tl.load(coef_ptr)
    xa0 = _gather(x1_ptr, syn_index, a0, n, u, valid, D1, MUL, RS, LS).to(dtype)
    xb0 = _gather(x2_ptr, syn_index, b0, n, u, valid, D2, MUL, RS, LS).to(dtype)
    pa0 = _matrix(syn_phi, a0, NP, RS)
    pb0 = _matrix(syn_phi, b0, NP, RS)
    if TWO:
        c1 = tl.load(coef_ptr + 1)
        xa1 = _gather(x1_ptr, syn_index, a1, n, u, valid, D1, MUL, RS, LS).to(dtype)
        xb1 = _gather(x2_ptr, syn_index, b1, n, u, valid, D2, MUL, RS, LS).to(dtype)
        pa1 = _matrix(syn_phi, a1, NP, RS)
        pb1 = _matrix(syn_phi, b1, NP, RS)
    phi_out = _matrix(proj_phi, p, R3, NP)
    r3 = tl.arange(0, R3).to(tl.int64)[:, None, None]
    l3 = tl.arange(0, L3)[None, None, :]
    y = tl.full([R3, L3, BZ], 0, dtype)  # (tl.zeros is a nested jit call: slow in the interpreter)
    for start in range(0, NT, BT):
        rings = start + tl.arange(0, BT).to(tl.int64)
        h = (
            c0
            * _field(xa0, pa0, syn_theta, a0, rings, NTP, RS, LS, BT, BZ, PRECISION)
            * _field(xb0, pb0, syn_theta, b0, rings, NTP, RS, LS, BT, BZ, PRECISION)
        )
        if TWO:
            h += (
                c1
                * _field(xa1, pa1, syn_theta, a1, rings, NTP, RS, LS, BT, BZ, PRECISION)
                * _field(xb1, pb1, syn_theta, b1, rings, NTP, RS, LS, BT, BZ, PRECISION)
            )
        c = tl.reshape(tl.dot(phi_out, h, input_precision=PRECISION), (R3, BT, 1, BZ))
        theta_out = tl.load(proj_theta + ((p * R3 + r3) * NTP + rings[None, :, None]) * L3 + l3)  # [R3, BT, L3]
        y += tl.reduce(theta_out[:, :, :, None] * c, 1, _SUM)
    r3, l3 = tl.arange(0, R3).to(tl.int64)[:, None, None], tl.arange(0, L3)[None, :, None]
    k = tl.load(proj_write + ((p * R3 + r3) * L3 + l3) * MUL + u[None, None, :])
    mask = (k >= 0) & valid[None, None, :]
    where = out_ptr + n[None, None, :] * D3 + k
    if ACCUMULATE:
        y += tl.load(where, mask=mask, other=0.0)
    tl.store(where, y, mask=mask)


__all__ = ["sphere_program_kernel", "triton"]
