"""Training of interatomic potentials: ``train(TrainConfig(...))``, the loss, metrics, crash-safe
checkpoints, data-parallel runs under torchrun, and the ``train`` / ``evaluate`` command lines.

    from gaunt.train import TrainConfig, train
    results = train(TrainConfig(train_file="train.xyz", E0s="average", max_num_epochs=50))
"""

from .checkpoint import CheckpointManager, atomic_save
from .cli import add_evaluate_arguments, add_train_arguments, run_evaluate, run_train
from .config import TrainConfig
from .loss import LossWeights, loss_terms, weighted_loss
from .metrics import MetricAccumulator, evaluate
from .trainer import train

__all__ = [
    "TrainConfig",
    "train",
    "LossWeights",
    "loss_terms",
    "weighted_loss",
    "MetricAccumulator",
    "evaluate",
    "CheckpointManager",
    "atomic_save",
    "add_train_arguments",
    "run_train",
    "add_evaluate_arguments",
    "run_evaluate",
]
