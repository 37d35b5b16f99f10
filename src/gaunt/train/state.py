"""``TrainState``: everything that changes while a run trains, and its checkpoint form.

The trainer's functions (``trainer.py``) read and update one ``TrainState``; a checkpoint is
``state.to_checkpoint(...)`` and resuming is ``state.restore(checkpoint)``, so what is saved and what is
restored cannot drift apart. ``checkpoint.py`` describes the design (epoch-boundary checkpoints, plus a
mid-epoch one when the run is interrupted by SIGINT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..models import GauntPotential, PotentialConfig
from ..models.potential import config_dict
from . import distributed as dist
from .checkpoint import rng_state, set_rng_state
from .config import TrainConfig


@dataclass
class TrainState:
    """The model and its optimiser state, and where the run stands.

    ``epoch`` counts completed epochs; ``step_in_epoch`` the optimizer steps already done in epoch
    ``epoch`` (non-zero only in a checkpoint written on SIGINT), with ``epoch_loss_sum`` /
    ``epoch_batches`` / ``epoch_time`` the running sums of that epoch, so the resumed epoch reports the same
    mean training loss as an uninterrupted one. ``forward_model`` is the model as the training step calls
    it (``DistributedDataParallel`` around ``model`` when distributed; ``model`` itself otherwise).
    """

    model_config: PotentialConfig
    model: GauntPotential
    forward_model: torch.nn.Module
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    elapsed: float = 0.0
    best_metric: float = math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_loss_sum: float = 0.0
    epoch_batches: int = 0
    epoch_time: float = 0.0

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA ones when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def to_checkpoint(self, config: TrainConfig, data_sha256: dict[str, str]) -> dict[str, Any]:
        """The checkpoint dict (plain containers and tensors: loads with ``weights_only=True``)."""
        return {
            "model_config": config_dict(self.model_config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "elapsed": self.elapsed,
            "epoch_loss": {"sum": self.epoch_loss_sum, "batches": self.epoch_batches, "time": self.epoch_time},
            "rng": rng_state(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": list(self.history),
            "train_config": config.to_dict(),
            "data_sha256": dict(data_sha256),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`to_checkpoint` (or by an older version without the mid-epoch
        fields: those checkpoints sit at epoch boundaries)."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.ema is not None and checkpoint["ema"] is not None:
            self.ema.load_state_dict(checkpoint["ema"])
        self.epoch, self.global_step, self.elapsed = (
            checkpoint["epoch"],
            checkpoint["global_step"],
            checkpoint["elapsed"],
        )
        self.step_in_epoch = int(checkpoint.get("step_in_epoch", 0))
        partial = checkpoint.get("epoch_loss") or {"sum": 0.0, "batches": 0, "time": 0.0}
        self.epoch_loss_sum, self.epoch_batches, self.epoch_time = partial["sum"], partial["batches"], partial["time"]
        self.best_metric, self.best_epoch = checkpoint["best_metric"], checkpoint["best_epoch"]
        self.history = list(checkpoint["history"])
        set_rng_state(checkpoint["rng"])

    def start_epoch(self) -> None:
        """Reset the running sums of the epoch about to start (after a completed one)."""
        self.step_in_epoch, self.epoch_loss_sum, self.epoch_batches, self.epoch_time = 0, 0.0, 0, 0.0


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.lr_factor, patience=config.scheduler_patience
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_num_epochs)


def build_state(config: TrainConfig, context: dist.DistributedContext, model_config: PotentialConfig) -> TrainState:
    """A fresh state: the model initialised from ``config.seed`` alone (the caller seeds), AdamW, the scheduler
    and the EMA of the weights."""
    model = GauntPotential(model_config).to(device=context.device, dtype=config.dtype)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay)) if config.ema else None
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.amsgrad
    )
    return TrainState(
        model_config=model_config,
        model=model,
        forward_model=dist.wrap_model(model, context, config.find_unused_parameters),
        ema=ema,
        optimizer=optimizer,
        scheduler=_make_scheduler(config, optimizer),
    )


__all__ = ["TrainState", "build_state"]
