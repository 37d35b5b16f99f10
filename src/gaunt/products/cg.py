"""The Clebsch-Gordan tensor product, with e3nn's instructions, weights and normalisation.

``CGProduct(irreps_in1, irreps_in2, irreps_out, instructions)`` computes, for every instruction
``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])``,

    out[i_out] += sqrt(alpha) * einsum(mode, C^{l1 l2 l3}, x1[i_in1], x2[i_in2], W)

with ``C`` the real Clebsch-Gordan tensor (unit Frobenius norm, ``so3.clebsch_gordan``) and the
multiplicity ``mode`` of ``descriptor.py``. The normalisation follows e3nn's ``o3.TensorProduct``:

    alpha = a_irrep / fan_in * out_var[i_out] * path_weight
    a_irrep = 2 l3 + 1 ("component"),  (2 l1 + 1)(2 l2 + 1) ("norm"),  1 ("none")
    fan_in  = sum over paths q into the same output of var1[q] var2[q] n(q)   ("element")
            = var1 var2 n(path) * (number of paths into the same output)       ("path")
            = 1                                                                 ("none")

where n(q) counts the terms one output element sums over: uvw mul1*mul2, uvu mul2, uvv mul1,
uuw mul1, uuu 1 (fan_in = 0 leaves alpha undivided). With unit-variance inputs and weights the
outputs then have unit variance ("component") or unit norm ("norm").

Execution (``path_executor.PathExecutor``, usable for any descriptor): the scaled tensors ``sqrt(alpha) C`` are
precomputed once; paths sharing an input pair are contracted together in one matmul, then each path
contracts its multiplicities with its weights in one einsum. No loop over channels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from ..so3 import Irreps
from .base import TensorProduct
from .descriptor import MODES, Path, ProductDescriptor
from .path_executor import PathExecutor


def _fan_in_terms(mode: str, mul1: int, mul2: int) -> int:
    """n(path): how many (u, v) channel pairs one output element of the path sums over."""
    return {"uvw": mul1 * mul2, "uvu": mul2, "uvv": mul1, "uuw": mul1, "uuu": 1}[mode]


def _normalisation(
    d: ProductDescriptor,
    path_weights: Sequence[float],
    irrep_normalization: str,
    path_normalization: str,
    var1: Sequence[float],
    var2: Sequence[float],
    var_out: Sequence[float],
) -> list[float]:
    """e3nn's sqrt(alpha) for every path of ``d`` (formula in the module docstring)."""

    def fan(path: Path) -> float:
        (mul1, _), (mul2, _), _ = d.irreps(path)
        return var1[path.i_in1] * var2[path.i_in2] * _fan_in_terms(path.mode, mul1, mul2)

    coefficients = []
    for path, path_weight in zip(d.paths, path_weights):
        (_, ir1), (_, ir2), (_, ir3) = d.irreps(path)
        alpha = {"component": ir3.dim, "norm": ir1.dim * ir2.dim, "none": 1}[irrep_normalization]
        siblings = [q for q in d.paths if q.i_out == path.i_out]
        if path_normalization == "element":
            fan_in = sum(fan(q) for q in siblings)
        elif path_normalization == "path":
            fan_in = fan(path) * len(siblings)
        else:
            fan_in = 1.0
        if fan_in > 0:
            alpha = alpha / fan_in
        coefficients.append(math.sqrt(alpha * var_out[path.i_out] * path_weight))
    return coefficients


def _variances(var: Sequence[float] | None, irreps: Irreps, label: str) -> list[float]:
    if var is None:
        return [1.0] * len(irreps)
    var = [float(v) for v in var]
    if len(var) != len(irreps):
        raise ValueError(f"{label} has {len(var)} entries but its irreps {irreps} have {len(irreps)}")
    return var


class CGProduct(TensorProduct):
    """Clebsch-Gordan tensor product ``[..., in1.dim] x [..., in2.dim] -> [..., out.dim]`` (e3nn semantics).

    Args:
        instructions: e3nn tuples ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])`` with mode in
            ``uvw, uvu, uvv, uuw, uuu``; ``None`` means every allowed ``uvw`` path with weights
            (e3nn's ``FullyConnectedTensorProduct``).
        irrep_normalization: ``"component"`` | ``"norm"`` | ``"none"``.
        path_normalization: ``"element"`` | ``"path"`` | ``"none"``.
        in1_var, in2_var, out_var: per-irrep variances, as e3nn (default all 1).
        internal_weights, shared_weights, check_finite: see ``base.TensorProduct``.

    Weights: flat ``[weight_numel]`` (or ``[..., weight_numel]`` per sample), each weighted path's
    ``W`` in instruction order, flattened in e3nn's shape (uvw ``[mul1, mul2, mul_out]``, ...).
    """

    def __init__(
        self,
        irreps_in1,
        irreps_in2,
        irreps_out,
        instructions: Iterable[tuple] | None = None,
        irrep_normalization: str = "component",
        path_normalization: str = "element",
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        in1_var: Sequence[float] | None = None,
        in2_var: Sequence[float] | None = None,
        out_var: Sequence[float] | None = None,
        check_finite: bool = False,
    ) -> None:
        irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
        if irrep_normalization not in ("component", "norm", "none"):
            raise ValueError(f"irrep_normalization must be 'component', 'norm' or 'none', got {irrep_normalization!r}")
        if path_normalization not in ("element", "path", "none"):
            raise ValueError(f"path_normalization must be 'element', 'path' or 'none', got {path_normalization!r}")
        if instructions is None:
            instructions = _fully_connected_instructions(irreps_in1, irreps_in2, irreps_out)
        instructions = [_parse_instruction(ins) for ins in instructions]
        raw = ProductDescriptor(  # validates indices, modes, selection rules, multiplicities
            irreps_in1, irreps_in2, irreps_out, tuple(Path(*ins[:5], coefficient=1.0) for ins in instructions)
        )
        coefficients = _normalisation(
            raw,
            [ins[5] for ins in instructions],
            irrep_normalization,
            path_normalization,
            _variances(in1_var, irreps_in1, "in1_var"),
            _variances(in2_var, irreps_in2, "in2_var"),
            _variances(out_var, irreps_out, "out_var"),
        )
        self._descriptor = ProductDescriptor(
            irreps_in1,
            irreps_in2,
            irreps_out,
            tuple(Path(*ins[:5], coefficient=c, coupling="cg") for ins, c in zip(instructions, coefficients)),
        )
        super().__init__(
            irreps_in1,
            irreps_in2,
            irreps_out,
            self._descriptor.weight_numel,
            internal_weights,
            shared_weights,
            check_finite,
        )
        self.instructions = instructions
        self.irrep_normalization = irrep_normalization
        self.path_normalization = path_normalization
        self.runner = PathExecutor(self._descriptor, per_sample_weights=not self.shared_weights)
        self.executor = self.runner.executor

    # ----------------------------------------------------------------- constructors
    @classmethod
    def fully_connected(cls, irreps_in1, irreps_in2, irreps_out, **kwargs) -> CGProduct:
        """Every allowed ``in1[i] x in2[j] -> out[k]`` as a weighted ``uvw`` path (e3nn FullyConnectedTensorProduct)."""
        return cls(irreps_in1, irreps_in2, irreps_out, instructions=None, **kwargs)

    @classmethod
    def channelwise(cls, irreps_in1, irreps_in2, irreps_out_filter=None, **kwargs) -> CGProduct:
        """Channel-wise ("convolution") product: one weighted ``uvu`` path per (in1 block, in2 irrep,
        ir_out in ir1 x ir2), each with its own output block ``mul1 x ir_out``; output irreps sorted
        (stably, not merged), as e3nn's points convolution. ``irreps_out_filter`` keeps only the
        ir_out it contains (None keeps all)."""
        irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
        keep = None if irreps_out_filter is None else {ir for _, ir in Irreps(irreps_out_filter)}
        blocks, instructions = [], []
        for i1, (mul1, ir1) in enumerate(irreps_in1):
            for i2, (_, ir2) in enumerate(irreps_in2):
                for ir_out in ir1 * ir2:
                    if keep is None or ir_out in keep:
                        instructions.append((i1, i2, len(blocks), "uvu", True))
                        blocks.append((mul1, ir_out))
        irreps_out, new_index, _ = Irreps(blocks).sort()
        instructions = [(i1, i2, new_index[k], mode, w) for i1, i2, k, mode, w in instructions]
        return cls(irreps_in1, irreps_in2, irreps_out, instructions=instructions, **kwargs)

    # ----------------------------------------------------------------- description
    def descriptor(self) -> ProductDescriptor:
        """Paths with e3nn's coefficients ``sqrt(alpha)`` (path_weight included) and CG couplings."""
        return self._descriptor

    def weight_views(self, weight: torch.Tensor | None = None) -> list[torch.Tensor | None]:
        """Per-path views ``[..., *path_weight_shape]`` of a flat weight (the internal one by default)."""
        weight = self.weight if weight is None else weight
        d = self._descriptor
        return [
            None if sl is None else weight[..., sl].reshape(*weight.shape[:-1], *d.path_weight_shape(p))
            for p, sl in zip(d.paths, d.weight_slices())
        ]

    def _forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        return self.runner(x1, x2, weight)


def _fully_connected_instructions(irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Irreps) -> list[tuple]:
    return [
        (i1, i2, i_out, "uvw", True)
        for i1, (_, ir1) in enumerate(irreps_in1)
        for i2, (_, ir2) in enumerate(irreps_in2)
        for i_out, (_, ir_out) in enumerate(irreps_out)
        if ir_out in ir1 * ir2
    ]


def _parse_instruction(ins: tuple) -> tuple:
    """Normalise an e3nn instruction to ``(i_in1, i_in2, i_out, mode, has_weight, path_weight)``."""
    if not isinstance(ins, (tuple, list)) or len(ins) not in (5, 6):
        raise ValueError(f"instruction {ins!r} must be (i_in1, i_in2, i_out, mode, has_weight[, path_weight])")
    i1, i2, i_out, mode, has_weight = ins[:5]
    path_weight = float(ins[5]) if len(ins) == 6 else 1.0
    if mode not in MODES:
        raise ValueError(f"instruction {tuple(ins)}: unsupported mode {mode!r}; expected one of {MODES}")
    if not path_weight >= 0:
        raise ValueError(f"instruction {tuple(ins)}: path_weight must be >= 0 (it enters under a square root)")
    return (int(i1), int(i2), int(i_out), mode, bool(has_weight), path_weight)


__all__ = ["CGProduct"]
