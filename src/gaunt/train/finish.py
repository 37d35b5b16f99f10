"""The end of a run: pick the final weights, evaluate every set, write the model and the reports (rank 0).

A finished run always leaves its ``.model``: if ``final_model="best"`` but ``best.pt`` is missing or cannot
be read (truncated on disk, say), the weights in memory (those of the last epoch, EMA when on) are saved
instead and one line says so; ``results["final_weights"]`` records which weights the model holds.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch.utils.data import Subset

from ..data import make_loader
from ..models import save_model
from . import distributed as dist
from .checkpoint import CheckpointManager
from .config import TrainConfig
from .data_setup import PreparedData
from .loss import LossWeights
from .metrics import evaluate
from .reference import refit_shifts
from .report import format_table, plot_learning_curve
from .state import TrainState


def eval_loader(dataset, batch_size: int, context: dist.DistributedContext):
    """This rank's disjoint share of ``dataset`` in file order (metrics are all-reduced afterwards)."""
    return make_loader(Subset(dataset, dist.shard_indices(len(dataset), context)), batch_size)


def final_weights(
    config: TrainConfig, context: dist.DistributedContext, state: TrainState, manager: CheckpointManager
) -> tuple[torch.nn.Module, str]:
    """The module to save and a description of its weights; loads ``best.pt`` into the state for "best"."""
    last = f"last epoch ({state.epoch})"
    if config.final_model != "best" or state.best_epoch < 0:
        return state.eval_model, last
    if context.enabled:
        torch.distributed.barrier()  # rank 0 wrote best.pt; the others read it
    try:
        best = manager.load("best")
        problem = None if best is not None else f"{manager.best_path} is missing"
    except ValueError as err:
        best, problem = None, str(err)
    if best is None:
        if context.is_main:
            print(
                f"[gaunt.train] final_model='best' but {problem}: saving the weights of the {last} instead", flush=True
            )
        return state.eval_model, f"{last}; best.pt unreadable"
    if state.ema is not None:
        state.ema.load_state_dict(best["ema"])
    else:
        state.model.load_state_dict(best["model"])
    return state.eval_model, f"epoch {state.best_epoch} (best valid loss)"


def finish(
    config: TrainConfig,
    context: dist.DistributedContext,
    data: PreparedData,
    state: TrainState,
    manager: CheckpointManager,
    stopped_by: str,
) -> dict[str, Any]:
    """Evaluate the final weights on every set, save the model and the reports; returns the results dict."""
    weights = LossWeights(config.energy_weight, config.forces_weight, config.stress_weight)
    final, which = final_weights(config, context, state, manager)
    refit_shifts(final, data.train, config.valid_batch_size, context.device, config.dtype)  # per-element energies
    sets = {"train": data.train, "valid": data.valid, **data.tests}
    metrics = {
        name: evaluate(
            final,
            eval_loader(ds, config.valid_batch_size, context),
            weights,
            context.device,
            config.dtype,
            weights.stress > 0,
        )
        for name, ds in sets.items()
    }
    results = {
        "name": config.name,
        "epochs": len(state.history),
        "best_epoch": state.best_epoch,
        "stopped_by": stopped_by,
        "elapsed": state.elapsed,
        "model_path": str(config.model_path),
        "final_model": config.final_model,
        "final_weights": which,
        "metrics": metrics,
        "history": state.history,
    }
    if context.is_main:
        save_model(final, config.model_path)
        config.results_path.write_text(json.dumps(results, indent=1))
        if state.history and config.plot:
            plot_learning_curve(state.history, config.curve_path, title=config.name)
        ema = "EMA " if state.ema is not None else ""
        print(
            f"\n{config.name}: {len(state.history)} epochs, {state.elapsed:.1f} s, stopped by {stopped_by}; "
            f"model ({ema}weights of {which}) -> {config.model_path}"
        )
        print(format_table(metrics), flush=True)
    return results


__all__ = ["finish", "final_weights", "eval_loader"]
