"""Training loss: weighted mean-squared errors of energy per atom, force components and stress.

    loss = w_E * mean_b ((E_pred_b - E_ref_b) / N_b)^2          (eV/atom)^2
         + w_F * mean_{i,c} (F_pred_ic - F_ref_ic)^2             (eV/A)^2
         + w_S * mean_{b,c,d} (S_pred_bcd - S_ref_bcd)^2         (eV/A^3)^2

Dividing the energy error by the atom count makes structures of different size contribute equally
and puts the energy term on the same per-atom footing as the reported RMSE (meV/atom).
Under DistributedDataParallel each rank computes this on its own batch; DDP averages the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.graph import AtomicGraph


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms; a zero weight switches the term (and its label requirement) off."""

    energy: float = 1.0
    forces: float = 100.0
    stress: float = 0.0

    def __post_init__(self) -> None:
        for name in ("energy", "forces", "stress"):
            value = getattr(self, name)
            if not (value >= 0.0):  # also rejects NaN
                raise ValueError(f"LossWeights: {name} weight must be >= 0, got {value}")
        if self.energy == 0.0 and self.forces == 0.0 and self.stress == 0.0:
            raise ValueError("LossWeights: all weights are zero; nothing would be trained")


def loss_terms(pred: dict[str, torch.Tensor], graph: AtomicGraph, weights: LossWeights) -> dict[str, torch.Tensor]:
    """Unweighted mean-squared errors of the batch: {"energy": per-atom energy MSE, "forces": ..., "stress": ...}.

    Args:
        pred: model output with "energy" [B] and, when their weight is > 0, "forces" [N, 3], "stress" [B, 3, 3].
        graph: the batch with the reference labels (energy [B], forces [N, 3], stress [B, 3, 3]).
        weights: only terms with a positive weight are computed (and their labels required).
    """
    terms: dict[str, torch.Tensor] = {}
    if weights.energy > 0.0:
        if graph.energy is None:
            raise ValueError("loss: the batch has no reference energies but the energy weight is > 0")
        per_atom = (pred["energy"] - graph.energy) / graph.num_atoms.to(pred["energy"].dtype)
        terms["energy"] = per_atom.square().mean()
    if weights.forces > 0.0:
        if graph.forces is None:
            raise ValueError("loss: the batch has no reference forces but the forces weight is > 0")
        if "forces" not in pred:
            raise ValueError("loss: the model output has no forces (call it with compute_forces=True)")
        terms["forces"] = (pred["forces"] - graph.forces).square().mean()
    if weights.stress > 0.0:
        if graph.stress is None:
            raise ValueError("loss: the batch has no reference stress but the stress weight is > 0")
        if "stress" not in pred:
            raise ValueError("loss: the model output has no stress (call it with compute_stress=True)")
        terms["stress"] = (pred["stress"] - graph.stress).square().mean()
    return terms


def weighted_loss(pred: dict[str, torch.Tensor], graph: AtomicGraph, weights: LossWeights) -> torch.Tensor:
    """Scalar training loss of one batch (module docstring)."""
    terms = loss_terms(pred, graph, weights)
    return sum(getattr(weights, name) * value for name, value in terms.items())


__all__ = ["LossWeights", "loss_terms", "weighted_loss"]
