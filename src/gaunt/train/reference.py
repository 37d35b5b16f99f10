"""The per-element reference energies of a trained model, refitted by least squares at the end of training.

Training is dominated by forces (``forces_weight`` 100 against 1), which fix the energy only up to one
constant per element; a few minutes of it leave the per-element energies where the force fit pushed
them, a constant error per composition (``gaunt quickstart`` before this: -39 and +31 meV/atom on its two
compositions). With the network fixed, the energy is linear in the shifts,

    E_model(s) = E_model + sum_Z n_Z delta[Z],      delta = argmin sum_s (E_ref,s - E_model,s - n_s . delta)^2

(``gaunt.data.fit_per_element``), so one pass over the training set removes that constant: what MACE
does for E0 before training (``E0s average``), done again on the model the training produced.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import AtomicDataset, composition, fit_per_element, make_loader
from ..models import GauntPotential


@torch.no_grad()
def refit_shifts(
    model: GauntPotential,
    dataset: AtomicDataset,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> dict[int, float]:
    """Add to ``model``'s learned per-element shifts the least-squares correction to its energy errors on
    ``dataset``; return the correction ``{Z: eV/atom}`` (empty for a model saved before learned shifts)."""
    if not isinstance(model.shifts, torch.nn.Parameter):
        return {}
    elements = model.config.atomic_numbers
    dtype = dtype or model.shifts.dtype
    training = model.training
    model.eval()
    counts, residuals = [], []
    for graph in make_loader(dataset, batch_size):
        if graph.energy is None:  # energy-free data: nothing to fit
            model.train(training)
            return {}
        graph = graph.to(device, dtype)
        energy = model(graph, compute_forces=False)["energy"]
        counts.append(composition(graph, elements))
        residuals.append((graph.energy - energy).double().cpu().numpy())
    model.train(training)
    if not counts:
        return {}
    # the shift enters as w_i shift[Z_i] with w_i = 1 - O(e^{-4 n_i}): linear to that accuracy
    delta = fit_per_element(np.concatenate(counts), np.concatenate(residuals))
    model.shifts.add_(torch.as_tensor(delta, dtype=model.shifts.dtype, device=model.shifts.device))
    return {z: float(d) for z, d in zip(elements, delta)}


__all__ = ["refit_shifts"]
