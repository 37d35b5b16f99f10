"""Error metrics over a whole data set: energy RMSE / MAE (meV/atom), force RMSE / MAE (meV/A), stress.

The accumulator keeps sums (of squared and absolute errors, and counts) in float64, so the result is
the metric of the whole set however it was split into batches, and, under ``torch.distributed``, however
it was split between ranks: ``all_reduce`` adds the sums of every rank before the roots are taken.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..data.graph import AtomicGraph
from .loss import LossWeights

# index of each running sum in MetricAccumulator.sums
_FIELDS = ("e_count", "e_sq", "e_abs", "f_count", "f_sq", "f_abs", "s_count", "s_sq", "s_abs")


class MetricAccumulator:
    """Running sums of prediction errors; ``update`` per batch, ``compute`` at the end."""

    def __init__(self) -> None:
        self.sums = torch.zeros(len(_FIELDS), dtype=torch.float64)

    def _add(self, prefix: str, err: torch.Tensor) -> None:
        err = err.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        i = _FIELDS.index(prefix + "_count")
        self.sums[i] += err.numel()
        self.sums[i + 1] += err.square().sum()
        self.sums[i + 2] += err.abs().sum()

    def update(self, pred: dict[str, torch.Tensor], graph: AtomicGraph) -> None:
        """Add one batch; a quantity enters only if both the label and the prediction exist."""
        if graph.energy is not None and "energy" in pred:
            self._add("e", (pred["energy"] - graph.energy) / graph.num_atoms.to(pred["energy"].dtype))
        if graph.forces is not None and "forces" in pred:
            self._add("f", pred["forces"] - graph.forces)
        if graph.stress is not None and "stress" in pred:
            self._add("s", pred["stress"] - graph.stress)

    def all_reduce(self) -> None:
        """Sum the running sums over all ranks (no-op unless a process group is initialised)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            backend = torch.distributed.get_backend()
            device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
            sums = self.sums.to(device)
            torch.distributed.all_reduce(sums)
            self.sums = sums.cpu()

    def compute(self, weights: LossWeights | None = None) -> dict[str, float | None]:
        """Metrics in meV units (None where no labels were seen) and, given ``weights``, the set's loss.

        Returns keys: num_configs, e_rmse, e_mae (meV/atom), f_rmse, f_mae (meV/A), s_rmse, s_mae (meV/A^3),
        and "loss" = sum_k w_k * MSE_k over the whole set (the per-batch training loss, pooled).
        """
        s = dict(zip(_FIELDS, self.sums.tolist()))
        out: dict[str, float | None] = {"num_configs": int(s["e_count"])}
        mse: dict[str, float] = {}
        for key, name in (("e", "energy"), ("f", "forces"), ("s", "stress")):
            n = s[f"{key}_count"]
            if n > 0:
                mse[name] = s[f"{key}_sq"] / n
                out[f"{key}_rmse"] = 1000.0 * math.sqrt(mse[name])
                out[f"{key}_mae"] = 1000.0 * s[f"{key}_abs"] / n
            else:
                out[f"{key}_rmse"] = out[f"{key}_mae"] = None
        if weights is not None:
            total = 0.0
            for name, value in mse.items():
                total += getattr(weights, name) * value
            out["loss"] = total
        return out


def predict(
    model: torch.nn.Module, graph: AtomicGraph, compute_forces: bool, compute_stress: bool
) -> dict[str, torch.Tensor]:
    """Model output for evaluation: forces need autograd through positions, so no ``torch.no_grad`` here;
    outputs are detached so no graph outlives the batch."""
    with torch.enable_grad():
        pred = model(graph, compute_forces=compute_forces, compute_stress=compute_stress)
    return {k: v.detach() for k, v in pred.items()}


def evaluate(
    model: torch.nn.Module,
    loader: Iterable[AtomicGraph],
    weights: LossWeights | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    compute_stress: bool = False,
) -> dict[str, float | None]:
    """Metrics of ``model`` over every batch of ``loader`` (all-reduced over ranks if distributed).

    The model is put in eval mode for the pass and restored afterwards.
    """
    accumulator = MetricAccumulator()
    was_training = model.training
    model.eval()
    try:
        for graph in loader:
            graph = graph.to(device, dtype)
            stress = compute_stress and graph.stress is not None
            pred = predict(model, graph, compute_forces=graph.forces is not None, compute_stress=stress)
            accumulator.update(pred, graph)
    finally:
        model.train(was_training)
    accumulator.all_reduce()
    return accumulator.compute(weights)


__all__ = ["MetricAccumulator", "evaluate", "predict"]
