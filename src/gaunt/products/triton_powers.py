"""Power programs and every derivative of them on one fused Triton kernel (the GPU twin of ``cpu_powers``).

``torch.ops.gaunt.triton_powers(x, ts, g, program_id)`` is the member ``powers(x, ts, g)`` of ``power_family`` for
the program registered under ``program_id`` (:func:`register_powers`): ``x`` and each tangent ``t_i`` are
``[n, dim_in]``, ``g`` is None or a cotangent ``[n, K, dim_out]`` (K powers k_q), ``d = len(ts) + (g is not None)``,
``c(k, d) = k! / (k - d)!`` and, per (sample, channel) column, ``f = Synth(x)``, ``T_i = Synth(t_i)``:

    no g:  out[:, q] = Proj( c(k_q, d) f^(k_q - d) prod_i T_i )              [n, K, dim_out]
    g:     out       = Synth^T( prod_i T_i sum_q c(k_q, d) f^(k_q - d) G_q )   [n, dim_in],   G_q = Proj^T(g[:, q])

One program instance owns ``BZ`` columns z = n * mul + u. It gathers the coefficients of x ``X [RS, LS, BZ]``, of the
tangents ``[RS, LS, TP BZ]`` and (with g) of the cotangent's powers ``[R3, L3, KP BZ]`` once, then streams the rings
i in blocks of ``BT`` with the grid in registers (j: azimuths; w = q BZ + z: a power's column):

    A[j, i, w]   = sum_r phi_s[j, r] sum_l theta_s[r, i, l] X[r, l, w]        (f, and every T_i at once)
    P[j, i, q, z] = c_q f^(e_q)   (e_q = k_q - d; a select per exponent up to the largest)
    no g:  Y[r3, l3, w] += sum_i theta_p[r3, i, l3] sum_j phi_p[r3, j] P[j, i, w] prod_i T_i      -> out[n, q, .]
    g:     G[j, i, w] = sum_r3 phi_p[r3, j] sum_l3 theta_p[r3, i, l3] Xg[r3, l3, w]
           Xo[r, l, z] += sum_i theta_s[r, i, l] sum_j phi_s[j, r] prod_i T_i sum_q P G[j, i, q, z]  -> out[n, .]

so only the inputs are read and the output written. The K powers are K times more columns for the projection, and
the tangents TP times more for the synthesis (a ``tl.dot`` of N = BT TP BZ). The custom op's autograd is
``power_family.family_vjp`` on the same op: backward, double backward and higher orders run on this kernel. float32
and float64 compute in their dtype, bfloat16/float16 inputs in float32 (the tables' dtype; ``tl.dot`` in TF32 only
where ``torch.backends.cuda.matmul.allow_tf32`` is set); the output has the inputs' dtype. CUDA tensors, and CPU
tensors under ``TRITON_INTERPRET=1``. Tiles on a GPU (:func:`blocks`) are a guess sized on the register tiles: no
GPU has timed this kernel yet.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .cpu_executor import _dual
from .power_family import coefficient, register_family_op
from .powers import PowerProgram, TorchPowers
from .triton_executor import DEVICE_TYPES, INTERPRET, _compute_dtype, _precision
from .triton_kernels import _SUM, _device, triton
from .triton_layout import DOT_MIN, _write_index, pow2

tl = triton.language
#: the input dtypes that run on the kernel (others, and forward-mode tangents, run on the torch executor)
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


@_device
def _theta(ptr, rings, NTP, ROWS: tl.constexpr, COLS: tl.constexpr):
    """Rings ``rings`` of a theta table ``[ROWS, NTP, COLS]``: ``[ROWS, BT, COLS]``."""
    r = tl.arange(0, ROWS).to(tl.int64)[:, None, None]
    return tl.load(ptr + (r * NTP + rings[None, :, None]) * COLS + tl.arange(0, COLS)[None, None, :])


@_device
def _matrix(ptr, ROWS: tl.constexpr, COLS: tl.constexpr, row_stride, col_stride):
    """``[ROWS, COLS]`` at ``ptr`` with the given strides (a table or its transpose)."""
    rows, cols = tl.arange(0, ROWS)[:, None], tl.arange(0, COLS)[None, :]
    return tl.load(ptr + rows * row_stride + cols * col_stride)


@_device
def _synthesis(theta, X, phi, R: tl.constexpr, BT: tl.constexpr, W: tl.constexpr, PRECISION: tl.constexpr):
    """``theta [R, BT, C]``, ``X [R, C, W]``, ``phi [NP, R]`` -> ``sum_r phi[j, r] sum_l theta[r, i, l] X[r, l, w]``
    as ``[NP, BT W]``."""
    g = tl.reduce(theta[:, :, :, None] * X[:, None, :, :], 2, _SUM)  # [R, BT, W]
    return tl.dot(phi, tl.reshape(g, (R, BT * W)), input_precision=PRECISION)


@_device
def _projection(theta, H, phi, R: tl.constexpr, BT: tl.constexpr, W: tl.constexpr, PRECISION: tl.constexpr):
    """``H [NP, BT W]``, ``phi [R, NP]``, ``theta [R, BT, C]`` -> ``sum_i theta[r, i, l] sum_j phi[r, j] H[j, i, w]``
    as ``[R, C, W]`` (the rings of one block)."""
    c = tl.reshape(tl.dot(phi, H, input_precision=PRECISION), (R, BT, 1, W))
    return tl.reduce(theta[:, :, :, None] * c, 1, _SUM)


#: integers not specialised on (the loads are gathers; every size would otherwise compile anew)
SCALARS = ["columns", "n", "D", "DOUT", "K", "MUL", "NT", "NTP"]


@triton.jit(do_not_specialize=SCALARS, do_not_specialize_on_alignment=["x_ptr", "ts_ptr", "g_ptr"])
def powers_kernel(
    x_ptr,
    ts_ptr,
    g_ptr,
    out_ptr,
    syn_index,
    syn_theta,
    syn_phi,
    proj_phi,
    proj_theta,
    proj_write,
    coef_ptr,
    expo_ptr,
    columns,
    n,
    D,
    DOUT,
    K,
    MUL,
    NT,
    NTP,
    RS: tl.constexpr,
    LS: tl.constexpr,
    R3: tl.constexpr,
    L3: tl.constexpr,
    NP: tl.constexpr,
    KP: tl.constexpr,
    TP: tl.constexpr,
    NTAN: tl.constexpr,
    EMAX: tl.constexpr,
    HAS_G: tl.constexpr,
    BZ: tl.constexpr,
    BT: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One member of the family on ``BZ`` columns (module docstring); ``ts_ptr``: the tangents ``[NTAN, n, D]``."""
    dtype = syn_theta.dtype.element_ty
    pid = tl.program_id(0).to(tl.int64)  # int64 index arithmetic throughout
    z = pid * BZ + tl.arange(0, BZ)
    nz, valid = z // MUL, z < columns
    r, l = tl.arange(0, RS)[:, None, None], tl.arange(0, LS)[None, :, None]
    idx = tl.load(syn_index + (r * LS + l) * MUL + (z % MUL)[None, None, :])  # [RS, LS, BZ]
    x_mask = (idx >= 0) & valid[None, None, :]
    X = tl.load(x_ptr + nz[None, None, :] * D + idx, mask=x_mask, other=0.0).to(dtype)
    phi_s = _matrix(syn_phi, NP, RS, RS, 1)
    if NTAN > 0:  # the tangents' columns: w = t BZ + z
        wt = tl.arange(0, TP * BZ)
        t, zt = wt // BZ, pid * BZ + wt % BZ
        idt = tl.load(syn_index + (r * LS + l) * MUL + (zt % MUL)[None, None, :])
        ok = (idt >= 0) & ((zt < columns) & (t < NTAN))[None, None, :]
        Xt = tl.load(ts_ptr + ((t * n + zt // MUL) * D)[None, None, :] + idt, mask=ok, other=0.0).to(dtype)
        t4 = tl.arange(0, TP)[None, None, :, None]
    q = tl.arange(0, KP)
    coef = tl.load(coef_ptr + q)[None, None, :, None]  # c(k_q, d), 0 past the last power and where k_q < d
    expo = tl.load(expo_ptr + q)[None, None, :, None]
    w = tl.arange(0, KP * BZ)  # the powers' columns: w = q BZ + z
    qw, zw = w // BZ, pid * BZ + w % BZ
    nw = zw // MUL
    r3, l3 = tl.arange(0, R3)[:, None, None], tl.arange(0, L3)[None, :, None]
    kw = tl.load(proj_write + (r3 * L3 + l3) * MUL + (zw % MUL)[None, None, :])  # [R3, L3, KP BZ]
    w_mask = (kw >= 0) & ((zw < columns) & (qw < K))[None, None, :]
    one = tl.full([NP, BT, KP, BZ], 1, dtype)  # (tl.zeros / tl.ones are nested jit calls: slow in the interpreter)
    if HAS_G:
        Xg = tl.load(g_ptr + ((nw * K + qw) * DOUT)[None, None, :] + kw, mask=w_mask, other=0.0).to(dtype)
        phi_pt = _matrix(proj_phi, NP, R3, 1, NP)  # Proj^T's azimuths: phi_p transposed
        phi_st = _matrix(syn_phi, RS, NP, 1, RS)  # Synth^T's: phi_s transposed
        acc = tl.full([RS, LS, BZ], 0, dtype)
    else:
        phi_p = _matrix(proj_phi, R3, NP, NP, 1)
        acc = tl.full([R3, L3, KP * BZ], 0, dtype)
    for start in range(0, NT, BT):
        rings = start + tl.arange(0, BT).to(tl.int64)
        theta_s = _theta(syn_theta, rings, NTP, RS, LS)
        f = tl.reshape(_synthesis(theta_s, X, phi_s, RS, BT, BZ, PRECISION), (NP, BT, 1, BZ))
        p = tl.where(expo == 0, one, 0.0)  # P = f^e per power: select f^j where e = j
        fj = f
        for j in tl.static_range(1, EMAX + 1):
            p = tl.where(expo == j, fj, p)
            if j < EMAX:
                fj = fj * f
        p = coef * p
        if NTAN > 0:  # prod_i T_i: every tangent's field in one synthesis, then a product over the tangents
            T = tl.reshape(_synthesis(theta_s, Xt, phi_s, RS, BT, TP * BZ, PRECISION), (NP, BT, TP, BZ))
            prod = tl.reduce(tl.where(t4 == 0, T, 0.0), 2, _SUM)
            for i in tl.static_range(1, NTAN):
                prod = prod * tl.reduce(tl.where(t4 == i, T, 0.0), 2, _SUM)
        theta_p = _theta(proj_theta, rings, NTP, R3, L3)
        if HAS_G:
            G = tl.reshape(_synthesis(theta_p, Xg, phi_pt, R3, BT, KP * BZ, PRECISION), (NP, BT, KP, BZ))
            h = tl.reduce(p * G, 2, _SUM)  # [NP, BT, BZ]
            if NTAN > 0:
                h = h * prod
            acc += _projection(theta_s, tl.reshape(h, (NP, BT * BZ)), phi_st, RS, BT, BZ, PRECISION)
        else:
            if NTAN > 0:
                p = p * prod[:, :, None, :]
            acc += _projection(theta_p, tl.reshape(p, (NP, BT * KP * BZ)), phi_p, R3, BT, KP * BZ, PRECISION)
    if HAS_G:
        tl.store(out_ptr + nz[None, None, :] * D + idx, acc, mask=x_mask)
    else:
        tl.store(out_ptr + ((nw * K + qw) * DOUT)[None, None, :] + kw, acc, mask=w_mask)


@dataclass(frozen=True, eq=False)
class PowerTables:
    """A power program padded for the kernel (float64 / int32; cast and moved per call): ``syn_index [RS, LS, mul]``
    (x's gather, also the scatter of ``Synth^T``), ``syn_theta [RS, NTP, LS]``, ``syn_phi [NP, RS]``,
    ``proj_phi [R3, NP]``, ``proj_theta [R3, NTP, L3]``, ``proj_write [R3, L3, mul]`` (the read-out's inverse, also
    the gather of ``Proj^T g``); padding is zero (-1 in the indices)."""

    program: PowerProgram
    sizes: dict[str, int]
    arrays: dict[str, np.ndarray]

    @property
    def stored_rings(self) -> int:
        return self.arrays["syn_theta"].shape[1]


def power_tables(program: PowerProgram) -> PowerTables:
    """Pad ``program``'s tables for :func:`powers_kernel` (the sizes that meet ``tl.dot`` at least 16)."""
    s, p, mul, powers = program.synthesis, program.projection, program.mul, list(program.powers)
    if not powers or powers != sorted(set(powers)) or powers[0] < 1:
        raise ValueError(f"{program.name}: the powers must be increasing positive integers, got {powers}")
    valid = s.index[s.index >= 0]
    if len(np.unique(valid)) != len(valid):
        raise ValueError(f"{program.name}: the synthesis reads an input twice; the kernel needs an injective one")
    (R, Lp), (R3, L3p), (n_theta, n_phi) = s.rows, p.rows, program.grid
    sizes = {"RS": pow2(R, DOT_MIN), "LS": pow2(Lp), "R3": pow2(R3, DOT_MIN), "L3": pow2(L3p)}
    sizes.update(NP=pow2(n_phi, DOT_MIN), KP=pow2(len(powers)))
    RS, LS, NP, NTP = sizes["RS"], sizes["LS"], sizes["NP"], pow2(n_theta)
    a = {"syn_index": -np.ones((RS, LS, mul), dtype=np.int32), "syn_theta": np.zeros((RS, NTP, LS))}
    a["syn_index"][:R, :Lp] = s.index.reshape(R, Lp, mul)
    a["syn_theta"][:R, :n_theta, :Lp] = s.theta
    a["syn_phi"] = np.zeros((NP, RS))
    a["syn_phi"][:n_phi, :R] = s.phi
    a["proj_phi"] = np.zeros((sizes["R3"], NP))
    a["proj_phi"][:R3, :n_phi] = p.phi
    a["proj_theta"] = np.zeros((sizes["R3"], NTP, sizes["L3"]))
    a["proj_theta"][:R3, :n_theta, :L3p] = p.theta.transpose(0, 2, 1)
    a["proj_write"] = _write_index(p.read, p.rows, mul, (sizes["R3"], sizes["L3"]))
    return PowerTables(program, sizes, a)


def blocks(sizes: dict[str, int], columns: int, tangents: int, rings: int, interpret: bool) -> tuple[int, int, int]:
    """``(BZ, BT, num_warps)``. On a GPU: one ring a step, ``BZ`` for about 4096 values in the largest register
    tile (16 <= BZ <= 64), warps for about 8 of them per thread (4 to 16): a guess, not tuned on a GPU. Under the
    interpreter (numpy: each operation costs about the same at any size): all columns (up to 256), all rings."""
    if interpret:
        return min(pow2(columns, DOT_MIN), 256), rings, 1
    TP, KP = pow2(max(tangents, 1)), sizes["KP"]
    tile = max(sizes["RS"] * sizes["LS"] * TP, sizes["R3"] * sizes["L3"] * KP, sizes["NP"] * max(KP, TP))
    floor = 1 << max(0, (4096 // tile).bit_length() - 1)
    block = max(DOT_MIN, min(64, floor))
    return block, 1, max(4, min(16, pow2(tile * block // (32 * 8))))


_lock = threading.Lock()
_REGISTRY: list[PowerTables] = []
_tensors: dict[tuple, dict[str, torch.Tensor]] = {}


def register_powers(program: PowerProgram) -> int:
    """Lay ``program`` out once and return its id for ``torch.ops.gaunt.triton_powers``."""
    tables = power_tables(program)
    with _lock:
        _REGISTRY.append(tables)
        return len(_REGISTRY) - 1


def _tables(program_id: int, d: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tables of ``program_id`` on ``device`` (``dtype``; indices int32) with the coefficients ``c(k_q, d)`` and
    exponents ``k_q - d`` of order ``d`` (padded with 0 to KP), cached."""
    key = (program_id, d, device, dtype)
    if key not in _tensors:
        tables = _REGISTRY[program_id]
        powers, KP = tables.program.powers, tables.sizes["KP"]
        coef, expo = np.zeros(KP), np.zeros(KP, dtype=np.int32)
        coef[: len(powers)] = [coefficient(k, d) for k in powers]
        expo[: len(powers)] = [max(k - d, 0) for k in powers]
        arrays = dict(tables.arrays, coef=coef, expo=expo)
        _tensors[key] = {
            name: torch.as_tensor(a).to(device=device, dtype=torch.int32 if a.dtype == np.int32 else dtype).contiguous()
            for name, a in arrays.items()
        }
    return _tensors[key]


def run_powers(
    program_id: int,
    x: torch.Tensor,
    ts: Sequence[torch.Tensor],
    g: torch.Tensor | None,
    tile: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """``powers(x, ts, g)`` (module docstring) on the kernel, no autograd. ``tile``: ``(BZ, BT, num_warps)`` instead
    of :func:`blocks` (the tests run a GPU's tiles in the interpreter)."""
    tables = _REGISTRY[program_id]
    program, sizes = tables.program, tables.sizes
    K, dim_out, mul = len(program.powers), len(program.projection.read), program.mul
    min_dim = int(program.synthesis.index.max(initial=-1)) + 1
    if x.dim() != 2 or x.shape[1] < min_dim:
        raise ValueError(f"gaunt triton_powers: x must be [n, >= {min_dim}], got {tuple(x.shape)}")
    if any(t.shape != x.shape or t.dtype != x.dtype or t.device != x.device for t in ts):
        raise ValueError("gaunt triton_powers: every tangent must be like x")
    if g is not None and (g.shape != (x.shape[0], K, dim_out) or g.dtype != x.dtype or g.device != x.device):
        raise ValueError(f"gaunt triton_powers: g must be [n, {K}, {dim_out}] like x, got {tuple(g.shape)}")
    n, D, d = x.shape[0], x.shape[1], len(ts) + (g is not None)
    dtype = _compute_dtype(x.dtype)
    out = torch.zeros((n, D) if g is not None else (n, K, dim_out), dtype=dtype, device=x.device)
    active = [k for k in program.powers if k >= d]  # the terms c(k, d) != 0
    if n == 0 or not active:
        return out.to(x.dtype)
    t = _tables(program_id, d, x.device, dtype)
    x = x.contiguous()
    stacked = torch.stack(list(ts)).contiguous() if ts else x  # [len(ts), n, D] (x: not read)
    g = g.contiguous() if g is not None else x
    columns = n * mul
    block, rings, warps = tile or blocks(sizes, columns, len(ts), tables.stored_rings, INTERPRET)
    grid = (triton.cdiv(columns, block),)
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():  # launch on the inputs' GPU
        powers_kernel[grid](
            x,
            stacked,
            g,
            out,
            *(t[name] for name in ("syn_index", "syn_theta", "syn_phi", "proj_phi", "proj_theta", "proj_write")),
            t["coef"],
            t["expo"],
            columns,
            n,
            D,
            dim_out,
            K,
            mul,
            program.grid[0],
            tables.stored_rings,
            **sizes,
            TP=pow2(max(len(ts), 1)),
            NTAN=len(ts),
            EMAX=max(active) - d,
            HAS_G=g is not x,
            BZ=block,
            BT=rings,
            PRECISION=_precision(dtype),
            num_warps=warps,
        )
    return out.to(x.dtype)


@torch.library.custom_op("gaunt::triton_powers", mutates_args=(), device_types=DEVICE_TYPES)
def triton_powers(x: torch.Tensor, ts: list[torch.Tensor], g: torch.Tensor | None, program_id: int) -> torch.Tensor:
    """``powers(x, ts, g)`` for ``x``, ``ts [n, dim_in]``, ``g`` None or ``[n, K, dim_out]`` -> ``[n, K, dim_out]``
    without ``g``, ``[n, dim_in]`` with it (module docstring)."""
    return run_powers(program_id, x, ts, g)


register_family_op(triton_powers, lambda program_id: _REGISTRY[program_id].program)


class TritonPowers(torch.nn.Module):
    """A power program on the Triton kernel: ``self(x [n, dim_in]) -> [n, len(powers), dim_out]`` (the interface of
    ``powers.TorchPowers``; CUDA, or CPU under ``TRITON_INTERPRET=1``; float32, float64, bfloat16, float16; other
    dtypes, and inputs with forward-mode tangents, run on ``fallback``, the torch executor)."""

    executor = "triton"

    def __init__(self, program: PowerProgram) -> None:
        super().__init__()
        self.program, self.program_id = program, register_powers(program)
        self.fallback = TorchPowers(program)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in DTYPES or (not torch.compiler.is_compiling() and _dual(x)):
            return self.fallback(x)
        return triton_powers(x, [], None, self.program_id)

    def __setstate__(self, state: dict) -> None:
        # the id indexes this process's registry: a copy (pickle, deepcopy, another process) registers anew
        super().__setstate__(state)
        self.program_id = register_powers(self.program)

    def extra_repr(self) -> str:
        n_theta, n_phi = self.program.grid
        return (
            f"{self.program.name}: powers {list(self.program.powers)}, grid {n_theta} x {n_phi}, "
            f"executor=triton (program {self.program_id})"
        )


__all__ = ["DTYPES", "TritonPowers", "blocks", "power_tables", "powers_kernel", "register_powers", "triton_powers"]
