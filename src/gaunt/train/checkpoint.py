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
(completed epochs), ``step_in_epoch`` (0 at an epoch boundary; the steps done in the current epoch when
the run was stopped by SIGINT, see ``interrupt.py``), ``epoch_loss`` (sum and count of the current epoch's
batch losses and its seconds so far), ``global_step``, ``elapsed`` (training seconds so far, for
``max_time``), ``rng``, ``best_metric``, ``best_epoch``, ``history`` (one record per epoch, the JSON-lines
log's source of truth), ``train_config`` and ``data_sha256`` (the data files' contents, ``run_dir.py``).

Loading. Every unreadable file (empty, truncated, garbage, a model file instead of a checkpoint) is a
``ValueError`` naming the file and the problem; :meth:`CheckpointManager.load_for_resume` falls back from
a bad ``last.pt`` to ``best.pt`` (a complete state too, only older) and says so.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.io import TRAIN_CHECKPOINT_FORMAT as CHECKPOINT_FORMAT
from ..models.io import atomic_torch_save as atomic_save
from ..models.io import check_format, load_torch_file


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

    def load(self, which: str = "last") -> dict[str, Any] | None:
        """The ``which`` ("last" | "best") checkpoint (on the CPU), or None if it does not exist; ``ValueError``
        naming the file if it cannot be read or is not a training checkpoint."""
        if which not in ("last", "best"):
            raise ValueError(f"CheckpointManager.load: which must be 'last' or 'best', got {which!r}")
        path = self.last_path if which == "last" else self.best_path
        if not path.exists():
            return None
        state = load_torch_file(path, "checkpoint")
        check_format(state, path, CHECKPOINT_FORMAT)
        return state

    def load_for_resume(self) -> tuple[dict[str, Any] | None, str | None]:
        """``(state, note)``: ``last.pt``, or ``best.pt`` if ``last.pt`` is missing or unreadable, with ``note``
        the one line that says so (None when ``last.pt`` was used). ``(None, None)`` when neither exists.

        ``best.pt`` is written before ``last.pt``, so a crash between the two, or a ``last.pt`` damaged on
        disk, leaves a complete older state in ``best.pt``: resuming from it repeats epochs, loses none.
        """
        try:
            last = self.load("last")
        except ValueError as err:
            problem = str(err)
        else:
            if last is not None:
                return last, None
            problem = f"no {self.last_path}"
        try:
            best = self.load("best")
        except ValueError as err:
            raise ValueError(f"cannot resume: {problem}; and {err}") from None
        if best is None:
            if not self.last_path.exists():
                return None, None
            raise ValueError(
                f"cannot resume: {problem}; and there is no {self.best_path} to fall back to "
                "(start the run again with --overwrite)"
            )
        return best, f"{problem}; resuming from {self.best_path} (epoch {best['epoch']}) instead"


__all__ = ["CHECKPOINT_FORMAT", "CheckpointManager", "atomic_save", "rng_state", "set_rng_state"]
