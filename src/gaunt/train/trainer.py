"""``train(config) -> results``: fit a ``GauntPotential`` to energies and forces.

One epoch = one pass over the training set in an order fixed by ``(seed, epoch)``, AdamW steps with
gradient clipping and an EMA update after each, then validation with the EMA weights, a scheduler step,
a checkpoint (``checkpoint.py`` explains why epoch-boundary checkpoints make resuming exact) and a log
line. At the end the chosen weights (best validation loss, or last) are evaluated on every set, written
with ``gaunt.models.save_model`` and summarised in ``<name>_results.json``.

Outputs in ``work_dir``: ``<name>.model``, ``<name>_train.jsonl`` (one record per epoch),
``<name>_learning_curve.png``, ``<name>_results.json``, ``checkpoints/<name>/{last,best}.pt``. An earlier
run there is never overwritten unless asked (``run_dir.py``); SIGINT stops after the current step with a
checkpoint of it (``interrupt.py``). The state that changes while training is one ``TrainState``
(``state.py``); this module holds the loop: ``train_one_epoch``, ``validate``, ``end_epoch``,
``save_checkpoint``, then ``finish`` (``finish.py``).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from ..data import AtomicGraph, make_loader
from ..models.config import config_from_dict
from . import distributed as dist
from .checkpoint import CheckpointManager
from .config import TrainConfig, check_resume_compatible
from .data_setup import PreparedData, build_model_config, prepare_data
from .finish import eval_loader, finish
from .interrupt import InterruptFlag, TrainingInterrupted
from .loss import LossWeights, weighted_loss
from .metrics import evaluate
from .report import append_log, write_log
from .run_dir import check_data_unchanged, clear_earlier_run, data_fingerprint, guard_run_dir
from .state import TrainState, build_state

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

    Raises:
        ValueError / FileNotFoundError: bad settings or data, an earlier run in the way, a checkpoint that
            cannot be resumed (each message names the file or setting).
        TrainingInterrupted: SIGINT; the current step was finished and checkpointed (resume continues it).
    """
    config.validate()
    guard_run_dir(config)  # before anything is read or written
    context = dist.setup(config.device, config.distributed)
    try:
        with default_dtype(config.dtype):
            return _run(config, context, on_step)
    finally:
        dist.cleanup(context)


def _say(context: dist.DistributedContext, message: str) -> None:
    if context.is_main:
        print(f"[gaunt.train] {message}", flush=True)


def _run(config: TrainConfig, context: dist.DistributedContext, on_step: StepHook | None) -> dict[str, Any]:
    seed_everything(config.seed)
    data = prepare_data(config)
    data_sha256 = data_fingerprint(config)
    manager = CheckpointManager(config.checkpoint_dir)
    checkpoint = _resume_checkpoint(config, context, manager, data_sha256)
    model_config = (
        config_from_dict(checkpoint["model_config"]) if checkpoint is not None else build_model_config(config, data)
    )
    seed_everything(config.seed)  # the initial weights depend on the seed only, not on the data reading
    state = build_state(config, context, model_config)
    if checkpoint is not None:
        state.restore(checkpoint)
    if context.is_main:
        _prepare_outputs(config, context, state)
    # SIGINT handled only from here: during the data reading above, Ctrl-C stops at once (nothing to save)
    with InterruptFlag() as interrupt:
        stopped_by = _train_epochs(config, context, data, state, manager, data_sha256, on_step, interrupt)
        return finish(config, context, data, state, manager, stopped_by)


def _resume_checkpoint(
    config: TrainConfig, context: dist.DistributedContext, manager: CheckpointManager, data_sha256: dict[str, str]
) -> dict[str, Any] | None:
    """The checkpoint to continue from (``--resume``), checked against the settings and the data; None for a
    fresh run."""
    if not config.restart_latest:
        return None
    checkpoint, note = manager.load_for_resume()
    if checkpoint is None:
        _say(context, f"no checkpoint at {manager.last_path}: starting from scratch")
        return None
    if note:
        _say(context, note)
    check_resume_compatible(checkpoint["train_config"], config)
    changed = check_data_unchanged(checkpoint.get("data_sha256"), data_sha256, config)
    if changed:
        _say(context, changed)
    epoch, step = checkpoint["epoch"], checkpoint.get("step_in_epoch", 0)
    where = f"epoch {epoch + 1}, step {step}" if step else f"epoch {epoch}"
    _say(context, f"resuming {config.name} after {where}")
    return checkpoint


def _prepare_outputs(config: TrainConfig, context: dist.DistributedContext, state: TrainState) -> None:
    """Rank 0: remove the run being replaced (``--overwrite``; only now that the new data has been read), then
    (re)write the log from the state's history."""
    if config.overwrite:
        removed = clear_earlier_run(config)
        if removed:
            _say(context, f"--overwrite: removed the earlier run {config.name!r} ({len(removed)} files)")
    config.work_path.mkdir(parents=True, exist_ok=True)
    write_log(config.log_path, state.history)


def _train_epochs(
    config: TrainConfig,
    context: dist.DistributedContext,
    data: PreparedData,
    state: TrainState,
    manager: CheckpointManager,
    data_sha256: dict[str, str],
    on_step: StepHook | None,
    interrupt: InterruptFlag,
) -> str:
    """Run epochs until ``max_num_epochs`` or ``max_time``; returns what stopped the run."""
    weights = LossWeights(config.energy_weight, config.forces_weight, config.stress_weight)
    sampler = DistributedSampler(
        data.train, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.seed, drop_last=False
    )
    valid_loader = eval_loader(data.valid, config.valid_batch_size, context)
    while state.epoch < config.max_num_epochs:
        if config.max_time is not None and dist.broadcast_flag(state.elapsed >= 60.0 * config.max_time, context):
            return "max_time"
        lr = state.optimizer.param_groups[0]["lr"]  # the scheduler steps per epoch: this is the epoch's lr
        completed = train_one_epoch(config, context, state, data, sampler, weights, on_step, interrupt)
        if not completed:
            save_checkpoint(config, context, state, manager, data_sha256, is_best=False)
            raise TrainingInterrupted(_interrupted_message(state, manager))
        start = time.perf_counter()
        valid = validate(config, context, state, valid_loader, weights)
        state.epoch_time += time.perf_counter() - start
        record, is_best = end_epoch(config, context, state, valid, lr)
        save_checkpoint(config, context, state, manager, data_sha256, is_best)
        if context.is_main:
            append_log(config.log_path, record)
            _print_epoch(record)
        if dist.broadcast_flag(interrupt.requested, context):  # SIGINT during validation or the checkpoint
            raise TrainingInterrupted(_interrupted_message(state, manager))
    return "max_num_epochs"


def _epoch_indices(sampler: DistributedSampler, epoch: int, skip: int) -> list[int]:
    """This rank's training-set order in ``epoch`` (a function of ``(seed, epoch)`` only), less the first
    ``skip`` indices: the batches an interrupted epoch already trained on."""
    sampler.set_epoch(epoch)
    return list(sampler)[skip:]


def train_one_epoch(
    config: TrainConfig,
    context: dist.DistributedContext,
    state: TrainState,
    data: PreparedData,
    sampler: DistributedSampler,
    weights: LossWeights,
    on_step: StepHook | None,
    interrupt: InterruptFlag,
) -> bool:
    """The optimizer steps of epoch ``state.epoch`` from step ``state.step_in_epoch``; False if SIGINT stopped it
    (after finishing the step in progress)."""
    start, first = time.perf_counter(), state.step_in_epoch
    indices = _epoch_indices(sampler, state.epoch, first * config.batch_size)
    loader = make_loader(data.train, config.batch_size, sampler=indices)
    bar = tqdm(
        loader,
        desc=f"epoch {state.epoch + 1}/{config.max_num_epochs}",
        leave=False,
        initial=first,
        total=first + len(loader),
        disable=not (context.is_main and config.progress),
        dynamic_ncols=True,
    )
    state.model.train()
    stopped = False
    for graph in bar:
        loss = _train_step(config, context, state, graph, weights)
        state.epoch_loss_sum, state.epoch_batches = state.epoch_loss_sum + loss, state.epoch_batches + 1
        state.step_in_epoch += 1
        bar.set_postfix(loss=f"{loss:.4g}")
        if on_step is not None:
            on_step(state.epoch, state.step_in_epoch - 1)
        if dist.broadcast_flag(interrupt.requested, context):
            stopped = True
            break
    bar.close()
    state.epoch_time += time.perf_counter() - start
    return not stopped


def _train_step(
    config: TrainConfig, context: dist.DistributedContext, state: TrainState, graph: AtomicGraph, weights: LossWeights
) -> float:
    """One AdamW step (with gradient clipping and the EMA update) on one batch; returns the batch loss."""
    graph = graph.to(context.device, config.dtype)
    state.optimizer.zero_grad(set_to_none=True)
    pred = state.forward_model(graph, compute_forces=weights.forces > 0, compute_stress=weights.stress > 0)
    loss = weighted_loss(pred, graph, weights)
    if not bool(torch.isfinite(loss)):
        lr = state.optimizer.param_groups[0]["lr"]
        raise FloatingPointError(
            f"training loss is {float(loss.detach())} at epoch {state.epoch + 1}, step "
            f"{state.step_in_epoch + 1}; try a smaller lr (now {lr:.3g}) or clip_grad"
        )
    loss.backward()
    if config.clip_grad:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), config.clip_grad)
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    state.global_step += 1
    return float(loss.detach())


def validate(
    config: TrainConfig, context: dist.DistributedContext, state: TrainState, loader, weights: LossWeights
) -> dict[str, Any]:
    """Metrics of the evaluated weights (EMA when on) on the validation set, all ranks pooled."""
    return evaluate(state.eval_model, loader, weights, context.device, config.dtype, weights.stress > 0)


def end_epoch(
    config: TrainConfig, context: dist.DistributedContext, state: TrainState, valid: dict[str, Any], lr: float
) -> tuple[dict, bool]:
    """Step the scheduler, count the epoch, append its record to the history and reset the epoch's running
    sums (the checkpoint written next sits at the epoch boundary); returns ``(record, is_best)``."""
    if config.scheduler == "plateau":
        state.scheduler.step(valid["loss"])
    else:
        state.scheduler.step()
    state.elapsed += state.epoch_time
    state.epoch += 1
    train_loss = dist.all_reduce_mean(state.epoch_loss_sum / max(state.epoch_batches, 1), context)
    record = {
        "epoch": state.epoch,
        "time": state.epoch_time,
        "elapsed": state.elapsed,
        "lr": lr,
        "train_loss": train_loss,
        "valid_loss": valid["loss"],
        "valid_e_rmse": valid["e_rmse"],
        "valid_e_mae": valid["e_mae"],
        "valid_f_rmse": valid["f_rmse"],
        "valid_f_mae": valid["f_mae"],
    }
    state.history.append(record)
    state.start_epoch()
    is_best = valid["loss"] < state.best_metric
    if is_best:
        state.best_metric, state.best_epoch = valid["loss"], state.epoch
    return record, is_best


def save_checkpoint(
    config: TrainConfig,
    context: dist.DistributedContext,
    state: TrainState,
    manager: CheckpointManager,
    data_sha256: dict[str, str],
    is_best: bool,
) -> None:
    """Rank 0 writes ``last.pt`` (and ``best.pt``) atomically."""
    if context.is_main:
        manager.save(state.to_checkpoint(config, data_sha256), is_best)


def _interrupted_message(state: TrainState, manager: CheckpointManager) -> str:
    where = (
        f"epoch {state.epoch + 1}, step {state.step_in_epoch}"
        if state.step_in_epoch
        else f"the end of epoch {state.epoch}"
    )
    return f"stopped at {where}; checkpoint {manager.last_path} written; continue with --resume"


def _print_epoch(record: dict[str, Any]) -> None:
    f_rmse = "-" if record["valid_f_rmse"] is None else f"{record['valid_f_rmse']:.1f}"
    print(
        f"epoch {record['epoch']:>4}  {record['time']:6.1f} s  lr {record['lr']:.2e}  train loss "
        f"{record['train_loss']:.4g}  valid loss {record['valid_loss']:.4g}  E RMSE {record['valid_e_rmse']:.2f} "
        f"meV/atom  F RMSE {f_rmse} meV/A",
        flush=True,
    )


__all__ = ["train", "default_dtype", "seed_everything", "train_one_epoch", "validate", "end_epoch", "save_checkpoint"]
