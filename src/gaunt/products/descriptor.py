"""What a tensor product computes, separate from how it is executed (cuEquivariance-style split).

A product is a sum of *paths*. Path ``p`` couples block ``i_in1`` of ``x1`` (irrep ``l1``, shape
``[mul1, 2l1+1]``) with block ``i_in2`` of ``x2`` (``[mul2, 2l2+1]``) into block ``i_out`` of the output
(``[mul_out, 2l3+1]``) through a coupling tensor ``C[i, j, k]`` of shape ``[2l1+1, 2l2+1, 2l3+1]``
(Clebsch-Gordan, Gaunt, ...), a fixed ``coefficient`` c and, optionally, learnable weights w.
The multiplicity indices are connected according to ``mode``, with e3nn's meaning:

    uvw: out[w, k] += c sum_{u,v,i,j} W[u, v, w] C[i, j, k] x1[u, i] x2[v, j]    (W required)
    uvu: out[u, k] += c sum_{v,i,j}   W[u, v]    C[i, j, k] x1[u, i] x2[v, j]    (mul_out = mul1)
    uvv: out[v, k] += c sum_{u,i,j}   W[u, v]    C[i, j, k] x1[u, i] x2[v, j]    (mul_out = mul2)
    uuw: out[w, k] += c sum_{u,i,j}   W[u, w]    C[i, j, k] x1[u, i] x2[u, j]    (mul1 = mul2)
    uuu: out[u, k] += c sum_{i,j}     W[u]       C[i, j, k] x1[u, i] x2[u, j]    (all muls equal)

Without weights (``has_weight=False``) W is 1 (``uuw`` then needs ``mul_out = 1``, as in e3nn).
The flat weight vector ``[..., weight_numel]`` is the concatenation, in path order, of each weighted
path's W flattened in the order of :meth:`ProductDescriptor.path_weight_shape`.

Coupling kinds live in the registry ``COUPLINGS`` (name -> ``f(l1, l2, l3, dtype, device)``);
other modules add their own with :func:`register_coupling`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..so3 import Irreps, clebsch_gordan, gaunt_coefficients

CouplingFn = Callable[[int, int, int, torch.dtype, torch.device], torch.Tensor]

COUPLINGS: dict[str, CouplingFn] = {
    "cg": lambda l1, l2, l3, dtype, device: clebsch_gordan(l1, l2, l3, dtype=dtype, device=device),
    "gaunt": lambda l1, l2, l3, dtype, device: gaunt_coefficients(l1, l2, l3, dtype=dtype, device=device),
}

MODES = ("uvw", "uvu", "uvv", "uuw", "uuu")

# einsum of (x1 block [z,u,i], x2 block [z,v|u,j], coupling [i,j,k], weight [z,...]) -> [z, mul_out, k]
_EINSUM = {
    ("uvw", True): "zui,zvj,ijk,zuvw->zwk",
    ("uvu", True): "zui,zvj,ijk,zuv->zuk",
    ("uvu", False): "zui,zvj,ijk->zuk",
    ("uvv", True): "zui,zvj,ijk,zuv->zvk",
    ("uvv", False): "zui,zvj,ijk->zvk",
    ("uuw", True): "zui,zuj,ijk,zuw->zwk",
    ("uuw", False): "zui,zuj,ijk->zk",
    ("uuu", True): "zui,zuj,ijk,zu->zuk",
    ("uuu", False): "zui,zuj,ijk->zuk",
}


def register_coupling(name: str, fn: CouplingFn) -> None:
    """Add a coupling kind: ``fn(l1, l2, l3, dtype, device) -> Tensor [2l1+1, 2l2+1, 2l3+1]``.

    The tensor must be SO(3)-invariant (``D1 x D2 x D3`` leaves it unchanged). Registering a name
    that is taken by a different function (other module or qualified name) raises ``ValueError``;
    re-registering the same function (e.g. on module reload) is allowed.
    """
    old = COUPLINGS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(f"coupling kind {name!r} is already registered")
    COUPLINGS[name] = fn


@dataclass(frozen=True)
class Path:
    """One path ``in1[i_in1] x in2[i_in2] -> out[i_out]`` (see module docstring for ``mode``)."""

    i_in1: int
    i_in2: int
    i_out: int
    mode: str
    has_weight: bool
    coefficient: float
    coupling: str = "cg"


@dataclass(frozen=True)
class ProductDescriptor:
    """The full specification of a product: irreps and an ordered tuple of paths.

    Validated on construction: indices in range, known mode and coupling, selection rules
    (triangle ``|l1-l2| <= l3 <= l1+l2`` and parity ``p1 p2 = p3``) and the multiplicity
    constraints of each mode.
    """

    irreps_in1: Irreps
    irreps_in2: Irreps
    irreps_out: Irreps
    paths: tuple[Path, ...]

    def __post_init__(self) -> None:
        for name in ("irreps_in1", "irreps_in2", "irreps_out"):
            object.__setattr__(self, name, Irreps(getattr(self, name)))
        object.__setattr__(self, "paths", tuple(self.paths))
        for path in self.paths:
            self._validate(path)

    def _validate(self, path: Path) -> None:
        where = f"path {path}"
        for index, irreps, label in (
            (path.i_in1, self.irreps_in1, "i_in1"),
            (path.i_in2, self.irreps_in2, "i_in2"),
            (path.i_out, self.irreps_out, "i_out"),
        ):
            if not 0 <= index < len(irreps):
                raise ValueError(f"{where}: {label}={index} is out of range for irreps {irreps}")
        if path.mode not in MODES:
            raise ValueError(f"{where}: unsupported mode {path.mode!r}; expected one of {MODES}")
        if path.coupling not in COUPLINGS:
            raise ValueError(f"{where}: unknown coupling {path.coupling!r}; registered: {sorted(COUPLINGS)}")
        (mul1, ir1), (mul2, ir2), (mul3, ir3) = self.irreps(path)
        if not abs(ir1.l - ir2.l) <= ir3.l <= ir1.l + ir2.l:
            raise ValueError(f"{where}: {ir1} x {ir2} -> {ir3} violates the triangle rule")
        if ir1.p * ir2.p != ir3.p:
            raise ValueError(f"{where}: {ir1} x {ir2} -> {ir3} violates parity (p1 p2 must equal p_out)")
        need = {"uvu": mul1 == mul3, "uvv": mul2 == mul3, "uuw": mul1 == mul2, "uuu": mul1 == mul2 == mul3}
        if not need.get(path.mode, True):
            raise ValueError(f"{where}: multiplicities {mul1}, {mul2} -> {mul3} do not fit mode {path.mode!r}")
        if path.mode == "uvw" and not path.has_weight:
            raise ValueError(f"{where}: mode 'uvw' needs weights (has_weight=True)")
        if path.mode == "uuw" and not path.has_weight and mul3 != 1:
            raise ValueError(f"{where}: unweighted 'uuw' needs output multiplicity 1, got {mul3}")
        if not math.isfinite(path.coefficient):
            raise ValueError(f"{where}: coefficient must be finite")

    def irreps(self, path: Path):
        """The three ``MulIr`` ``(in1, in2, out)`` of a path."""
        return self.irreps_in1[path.i_in1], self.irreps_in2[path.i_in2], self.irreps_out[path.i_out]

    def path_weight_shape(self, path: Path) -> tuple[int, ...]:
        """e3nn's weight shape: uvw (mul1, mul2, mul_out), uvu/uvv (mul1, mul2), uuw (mul1, mul_out),
        uuu (mul1,); ``()`` for an unweighted path."""
        if not path.has_weight:
            return ()
        (mul1, _), (mul2, _), (mul3, _) = self.irreps(path)
        return {
            "uvw": (mul1, mul2, mul3),
            "uvu": (mul1, mul2),
            "uvv": (mul1, mul2),
            "uuw": (mul1, mul3),
            "uuu": (mul1,),
        }[path.mode]

    def path_weight_numel(self, path: Path) -> int:
        """Number of weights of one path (0 if unweighted)."""
        return math.prod(self.path_weight_shape(path)) if path.has_weight else 0

    @property
    def weight_numel(self) -> int:
        """Total number of per-path weights."""
        return sum(self.path_weight_numel(path) for path in self.paths)

    def weight_slices(self) -> list[slice | None]:
        """Slice of the flat weight vector owned by each path (``None`` for unweighted paths)."""
        out, start = [], 0
        for path in self.paths:
            n = self.path_weight_numel(path)
            out.append(slice(start, start + n) if path.has_weight else None)
            start += n
        return out

    def coupling_tensor(
        self, path: Path, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The raw coupling tensor ``[2l1+1, 2l2+1, 2l3+1]`` of a path (``coefficient`` NOT applied)."""
        (_, ir1), (_, ir2), (_, ir3) = self.irreps(path)
        return COUPLINGS[path.coupling](ir1.l, ir2.l, ir3.l, dtype, torch.device(device or "cpu"))


def dense_product(
    descriptor: ProductDescriptor, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Slow, plain-einsum oracle: ``[..., in1.dim] x [..., in2.dim] (x [..., weight_numel]) -> [..., out.dim]``.

    ``out[i_out block] = sum over paths of coefficient * einsum(coupling, x1 block, x2 block, W)``
    (formulas in the module docstring). Leading dimensions of x1, x2 and weight broadcast; a 1-D
    weight is shared by all samples. Weight may be None only if ``weight_numel == 0``.
    """
    d = descriptor
    if x1.shape[-1] != d.irreps_in1.dim or x2.shape[-1] != d.irreps_in2.dim:
        raise ValueError(
            f"dense_product: inputs {tuple(x1.shape)}, {tuple(x2.shape)} do not fit {d.irreps_in1} x {d.irreps_in2}"
        )
    n = d.weight_numel
    if n > 0 and (weight is None or weight.shape[-1] != n):
        raise ValueError(
            f"dense_product: needs weight [..., {n}], got {None if weight is None else tuple(weight.shape)}"
        )
    shapes = [x1.shape[:-1], x2.shape[:-1]] + ([weight.shape[:-1]] if n > 0 else [])
    batch = torch.broadcast_shapes(*shapes)
    z = math.prod(batch)
    x1 = x1.expand(*batch, -1).reshape(z, d.irreps_in1.dim)
    x2 = x2.expand(*batch, -1).reshape(z, d.irreps_in2.dim)
    if n > 0:
        weight = weight.to(x1.dtype).expand(*batch, -1).reshape(z, n)
    outs = [x1.new_zeros(z, mul, ir.dim) for mul, ir in d.irreps_out]
    s1, s2 = d.irreps_in1.slices(), d.irreps_in2.slices()
    for path, wslice in zip(d.paths, d.weight_slices()):
        (mul1, ir1), (mul2, ir2), _ = d.irreps(path)
        a = x1[:, s1[path.i_in1]].reshape(z, mul1, ir1.dim)
        b = x2[:, s2[path.i_in2]].reshape(z, mul2, ir2.dim)
        c = d.coupling_tensor(path, x1.dtype, x1.device)
        operands = [a, b, c]
        if path.has_weight:
            operands.append(weight[:, wslice].reshape(z, *d.path_weight_shape(path)))
        term = torch.einsum(_EINSUM[path.mode, path.has_weight], *operands)
        outs[path.i_out] = outs[path.i_out] + path.coefficient * term.reshape(outs[path.i_out].shape)
    out = torch.cat([o.reshape(z, o.shape[1] * o.shape[2]) for o in outs], dim=-1) if outs else x1.new_zeros(z, 0)
    return out.reshape(*batch, d.irreps_out.dim)


__all__ = ["Path", "ProductDescriptor", "dense_product", "COUPLINGS", "register_coupling", "MODES"]
