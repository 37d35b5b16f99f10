"""``train(config) -> results``: fit a ``GauntPotential`` to energies and forces.

One epoch = one pass over the training set in an order fixed by ``(seed, epoch)``, AdamW steps with
gradient clipping and an EMA update after each, then validation with the EMA weights, a scheduler step,
a checkpoint (``checkpoint.py`` explains why epoch-boundary checkpoints make resuming exact) and a log
line. At the end the chosen weights (best validation loss, or last) are evaluated on every set, written
with ``gaunt.models.save_model`` and summarised in ``<name>_results.json``.

Outputs in ``work_dir``: ``<name>.model``, ``<name>_train.jsonl`` (one record per epoch),
``<name>_learning_curve.png``, ``<name>_results.json``, ``checkpoints/<name>/{last,best}.pt``.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DistributedSampler, Subset
from tqdm.auto import tqdm

from ..data import make_loader
from ..models import GauntPotential, save_model
from ..models.potential import config_dict, config_from_dict
from . import distributed as dist
from .checkpoint import CheckpointManager, rng_state, set_rng_state
from .config import TrainConfig, check_resume_compatible
from .data_setup import PreparedData, build_model_config, prepare_data
from .loss import LossWeights, weighted_loss
from .metrics import evaluate
from .reference import refit_shifts
from .report import append_log, format_table, plot_learning_curve, write_log

StepHook = Callable[[int, int], None]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Run with ``torch.get_default_dtype() == dtype`` (restored afterwards: no global side effect)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(config: TrainConfig, on_step: StepHook | None = None) -> dict[str, Any]:
    """Train (or, with ``config.restart_latest``, resume) the run described by ``config``.

    Args:
        config: the run (``TrainConfig``).
        on_step: called as ``on_step(epoch, step)`` after every optimizer step (epoch and step 0-based);
            for progress reporting and for tests that interrupt a run.

    Returns:
        ``{"name", "epochs", "stopped_by", "elapsed", "model_path", "metrics": {set: {...}}, "history": [...]}``
        with metrics as in ``metrics.MetricAccumulator.compute`` (meV/atom, meV/A).
    """
    config.validate()
    context = dist.setup(config.device, config.distributed)
    try:
        with default_dtype(config.dtype):
            return _run(config, context, on_step)
    finally:
        dist.cleanup(context)


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.lr_factor, patience=config.scheduler_patience)  # fmt: skip
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_num_epochs)


def _eval_loader(dataset, batch_size: int, context: dist.DistributedContext):
    """This rank's disjoint share of ``dataset`` in file order (metrics are all-reduced afterwards)."""
    return make_loader(Subset(dataset, dist.shard_indices(len(dataset), context)), batch_size)


def _run(config: TrainConfig, context: dist.DistributedContext, on_step: StepHook | None) -> dict[str, Any]:
    main = context.is_main
    device, dtype = context.device, config.dtype
    weights = LossWeights(config.energy_weight, config.forces_weight, config.stress_weight)
    seed_everything(config.seed)
    data = prepare_data(config)
    manager = CheckpointManager(config.checkpoint_dir)
    checkpoint = manager.load("last") if config.restart_latest else None
    if checkpoint is not None:
        check_resume_compatible(checkpoint["train_config"], config)
        model_config = config_from_dict(checkpoint["model_config"])
    else:
        model_config = build_model_config(config, data)
    seed_everything(config.seed)  # the initial weights depend on the seed only, not on the data reading
    model = GauntPotential(model_config).to(device=device, dtype=dtype)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay)) if config.ema else None)
    ddp_model = dist.wrap_model(model, context, config.find_unused_parameters)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  amsgrad=config.amsgrad)  # fmt: skip
    scheduler = _make_scheduler(config, optimizer)

    start_epoch, global_step, elapsed = 0, 0, 0.0
    best_metric, best_epoch, history = math.inf, -1, []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if ema is not None and checkpoint["ema"] is not None:
            ema.load_state_dict(checkpoint["ema"])
        start_epoch, global_step, elapsed = checkpoint["epoch"], checkpoint["global_step"], checkpoint["elapsed"]
        best_metric, best_epoch = checkpoint["best_metric"], checkpoint["best_epoch"]
        history = list(checkpoint["history"])
        set_rng_state(checkpoint["rng"])
        if main:
            print(f"[gaunt.train] resuming {config.name} after epoch {start_epoch} from {manager.last_path}")
    elif config.restart_latest and main:
        print(f"[gaunt.train] no checkpoint at {manager.last_path}: starting from scratch")
    if main:
        config.work_path.mkdir(parents=True, exist_ok=True)
        write_log(config.log_path, history)

    sampler = DistributedSampler(data.train, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                 seed=config.seed, drop_last=False)  # fmt: skip
    train_loader = make_loader(data.train, config.batch_size, sampler=sampler)
    valid_loader = _eval_loader(data.valid, config.valid_batch_size, context)
    eval_model = ema.module if ema is not None else model
    compute_stress = weights.stress > 0

    stopped_by = "max_num_epochs"
    epoch = start_epoch
    while epoch < config.max_num_epochs:
        if config.max_time is not None and dist.broadcast_flag(elapsed >= 60.0 * config.max_time, context):
            stopped_by = "max_time"
            break
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        total, batches = 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.max_num_epochs}", leave=False,
                   disable=not (main and config.progress), dynamic_ncols=True)  # fmt: skip
        for step, graph in enumerate(bar):
            graph = graph.to(device, dtype)
            optimizer.zero_grad(set_to_none=True)
            pred = ddp_model(graph, compute_forces=weights.forces > 0, compute_stress=compute_stress)
            loss = weighted_loss(pred, graph, weights)
            if not bool(torch.isfinite(loss)):
                lr_now = optimizer.param_groups[0]["lr"]
                raise FloatingPointError(f"training loss is {float(loss.detach())} at epoch {epoch + 1}, step "
                                         f"{step + 1}; try a smaller lr (now {lr_now:.3g}) or clip_grad")  # fmt: skip
            loss.backward()
            if config.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            global_step += 1
            total, batches = total + float(loss.detach()), batches + 1
            bar.set_postfix(loss=f"{float(loss.detach()):.4g}")
            if on_step is not None:
                on_step(epoch, step)
        bar.close()
        train_loss = dist.all_reduce_mean(total / max(batches, 1), context)
        valid = evaluate(eval_model, valid_loader, weights, device, dtype, compute_stress)
        if config.scheduler == "plateau":
            scheduler.step(valid["loss"])
        else:
            scheduler.step()
        epoch_time = time.perf_counter() - start
        elapsed += epoch_time
        epoch += 1
        record = {"epoch": epoch, "time": epoch_time, "elapsed": elapsed, "lr": lr, "train_loss": train_loss,
                  "valid_loss": valid["loss"], "valid_e_rmse": valid["e_rmse"], "valid_e_mae": valid["e_mae"],
                  "valid_f_rmse": valid["f_rmse"], "valid_f_mae": valid["f_mae"]}  # fmt: skip
        history.append(record)
        is_best = valid["loss"] < best_metric
        if is_best:
            best_metric, best_epoch = valid["loss"], epoch
        if main:
            state = {
                "model_config": config_dict(model_config), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None, "epoch": epoch, "step_in_epoch": 0,
                "global_step": global_step, "elapsed": elapsed, "rng": rng_state(), "best_metric": best_metric,
                "best_epoch": best_epoch, "history": history, "train_config": config.to_dict(),
            }  # fmt: skip
            manager.save(state, is_best)
            append_log(config.log_path, record)
            f_rmse = "-" if valid["f_rmse"] is None else f"{valid['f_rmse']:.1f}"
            print(f"epoch {epoch:>4}  {epoch_time:6.1f} s  lr {lr:.2e}  train loss {train_loss:.4g}  "
                  f"valid loss {valid['loss']:.4g}  E RMSE {valid['e_rmse']:.2f} meV/atom  "
                  f"F RMSE {f_rmse} meV/A", flush=True)  # fmt: skip
    if config.max_time is not None and elapsed >= 60.0 * config.max_time and epoch < config.max_num_epochs:
        stopped_by = "max_time"
    return _finish(config, context, data, model, ema, weights, manager, history, best_epoch, stopped_by, elapsed)


def _finish(config: TrainConfig, context: dist.DistributedContext, data: PreparedData, model: GauntPotential,
            ema: AveragedModel | None, weights: LossWeights, manager: CheckpointManager, history: list[dict],
            best_epoch: int, stopped_by: str, elapsed: float) -> dict[str, Any]:  # fmt: skip
    """Pick the final weights, evaluate every set, save the model and the reports (rank 0)."""
    device, dtype = context.device, config.dtype
    final = ema.module if ema is not None else model
    if config.final_model == "best" and best_epoch >= 0:
        if context.enabled:
            torch.distributed.barrier()  # rank 0 wrote best.pt; the others read it
        best = manager.load("best")
        if best is None:
            raise FileNotFoundError(f"final_model='best' but {manager.best_path} does not exist")
        if ema is not None:
            ema.load_state_dict(best["ema"])
        else:
            model.load_state_dict(best["model"])
    refit_shifts(final, data.train, config.valid_batch_size, device, dtype)  # per-element energies (reference.py)
    sets = {"train": data.train, "valid": data.valid, **data.tests}
    metrics = {name: evaluate(final, _eval_loader(ds, config.valid_batch_size, context), weights, device, dtype,
                              weights.stress > 0)
               for name, ds in sets.items()}  # fmt: skip
    results = {"name": config.name, "epochs": len(history), "best_epoch": best_epoch, "stopped_by": stopped_by,
               "elapsed": elapsed, "model_path": str(config.model_path), "final_model": config.final_model,
               "metrics": metrics, "history": history}  # fmt: skip
    if context.is_main:
        save_model(final, config.model_path)
        config.results_path.write_text(json.dumps(results, indent=1))
        if history and config.plot:
            plot_learning_curve(history, config.curve_path, title=config.name)
        which = f"epoch {best_epoch} (best valid loss)" if config.final_model == "best" else "last epoch"
        print(f"\n{config.name}: {len(history)} epochs, {elapsed:.1f} s, stopped by {stopped_by}; "
              f"model ({'EMA ' if ema is not None else ''}weights of {which}) -> {config.model_path}")  # fmt: skip
        print(format_table(metrics), flush=True)
    return results


__all__ = ["train", "default_dtype", "seed_everything"]
