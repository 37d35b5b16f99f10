"""Ctrl-C (SIGINT) during training: finish the current step and the checkpoint being written, then stop.

Python's default turns SIGINT into a ``KeyboardInterrupt`` wherever the main thread happens to be: inside
``torch.save`` (a traceback from deep inside torch; the atomic write keeps the old file, but the epoch in
progress is lost) or between two steps. :class:`InterruptFlag` instead records the signal; the training loop
looks at the flag after every optimizer step and after every checkpoint, writes a checkpoint of the
current step (``step_in_epoch`` > 0, see ``checkpoint.py``) and raises :class:`TrainingInterrupted`, which
the command line reports in one line with exit status 130 (128 + SIGINT, the shell's convention). A
second Ctrl-C while the first is being honoured raises ``KeyboardInterrupt`` at once (the user insists;
atomic writes still leave every file whole).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT after writing a checkpoint; ``str()`` says where and how to continue."""


class InterruptFlag:
    """Context manager: while active, SIGINT sets :attr:`requested` instead of raising.

    Signal handlers can only be installed from the main thread; elsewhere (a training run started from a
    worker thread) the flag stays False and SIGINT keeps Python's default behaviour.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


__all__ = ["InterruptFlag", "TrainingInterrupted"]
