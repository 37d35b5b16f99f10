"""Crash-safe training checkpoints: ``last.pt`` (every epoch) and ``best.pt`` (lowest validation loss).

Design (the simplest one that loses nothing). A checkpoint is written only at the end of an epoch, after
validation. The order of the training set in epoch ``e`` is a pure function of ``(seed, e)`` (a
``DistributedSampler`` with ``set_epoch(e)``), and nothing else in an epoch draws random numbers. A run
killed at any moment therefore resumes from ``last.pt`` = the state after the last completed epoch
and redoes the interrupted epoch from its start with the same shuffling: the resumed run computes
exactly what the uninterrupted run computes (bit-for-bit on a deterministic device), and no completed
epoch is lost. The price is at most one epoch of repeated work, small next to the complexity (and
sampler state) a mid-epoch checkpoint would need. RNG states are saved and restored anyway so that a
future stochastic component (dropout, noise) stays reproducible.

Atomicity. ``atomic_save`` writes to a temporary file in the target's directory, flushes and fsyncs
it, then ``os.replace``-s it over the target (atomic on POSIX and Windows within one file system) and
fsyncs the directory. A crash at any point leaves either the old complete file or the new complete
file, never a truncated one; a failed write removes its temporary file.

Contents (a plain dict; every value loads with ``torch.load(weights_only=True)``): ``format``, ``model_config``,
``model`` (state dict), ``optimizer``, ``scheduler``, ``ema`` (AveragedModel state dict or None), ``epoch``
(completed epochs), ``step_in_epoch`` (always 0: checkpoints sit at epoch boundaries), ``global_step``,
``elapsed`` (training seconds so far, for ``max_time``), ``rng``, ``best_metric``, ``best_epoch``,
``history`` (one record per epoch, the JSON-lines log's source of truth) and ``train_config``.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.io import atomic_torch_save as atomic_save

CHECKPOINT_FORMAT = "gaunt-train-checkpoint/1"


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and every CUDA device), in a weights_only-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """``<directory>/last.pt`` and ``<directory>/best.pt``; see the module docstring for the design."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.last_path = self.directory / "last.pt"
        self.best_path = self.directory / "best.pt"

    def save(self, state: dict[str, Any], is_best: bool) -> None:
        """Write ``last.pt`` (and ``best.pt`` first if ``is_best``: a crash between the two writes leaves an
        older ``last.pt``, whose resumed run redoes the epoch and writes ``best.pt`` again)."""
        state = {"format": CHECKPOINT_FORMAT, **state}
        if is_best:
            atomic_save(state, self.best_path)
        atomic_save(state, self.last_path)

    def load(self, which: str = "last", map_location: str | torch.device | None = "cpu") -> dict[str, Any] | None:
        """The ``which`` ("last" | "best") checkpoint, or None if it does not exist."""
        if which not in ("last", "best"):
            raise ValueError(f"CheckpointManager.load: which must be 'last' or 'best', got {which!r}")
        path = self.last_path if which == "last" else self.best_path
        if not path.exists():
            return None
        state = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a gaunt training checkpoint (expected format {CHECKPOINT_FORMAT!r})")
        return state


__all__ = ["CHECKPOINT_FORMAT", "CheckpointManager", "atomic_save", "rng_state", "set_rng_state"]
