"""What every command shares: user errors as one line, Ctrl-C as exit 130, the device check.

A user error (``ValueError``, ``OSError``, ``FloatingPointError`` raised by our validation) prints
``gaunt <command>: error: <message>`` on one line and exits 2; ``--debug`` shows the traceback instead.
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

# what our validation raises for bad input; TypeError, KeyError, RuntimeError ... stay tracebacks (bugs)
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    return parser


def run_command(command: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``func(args)``, with user errors reported in one line (exit 2) and Ctrl-C as exit 130."""
    from .train.interrupt import TrainingInterrupted

    try:
        return func(args)
    except TrainingInterrupted as err:  # the checkpoint is written; the message says how to continue
        print(f"gaunt {command}: interrupted: {err}", file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        print(f"gaunt {command}: interrupted", file=sys.stderr, flush=True)
        return 130
    except USER_ERRORS as err:
        if getattr(args, "debug", False):
            raise
        message = " ".join(str(err).split()) or type(err).__name__  # one line, whatever the message held
        print(f"gaunt {command}: error: {message}", file=sys.stderr, flush=True)
        return 2


def check_device(device: str) -> None:
    """Raise ``ValueError`` if ``device`` is not a device string or names an accelerator this machine lacks
    (torch's own errors, "Torch not compiled with CUDA enabled", come later and from deep inside)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r} is not a device (cpu, cuda, cuda:k)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device!r}: CUDA is not available on this machine (use --device cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA devices")


__all__ = ["USER_ERRORS", "add_debug_flag", "run_command", "check_device"]
