"""Saving and loading a ``GauntPotential``: one file with the config, the weights and the dtype.

The file is a plain dict ``{"format": "gaunt-potential/1", "config": {...}, "dtype": "float64",
"state_dict": {...}}`` readable with ``torch.load(weights_only=True)`` (no pickled classes). Writes are
atomic: the file is written next to the target, flushed to disk, then renamed over it, so a crash
leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from .potential import GauntPotential, config_dict, config_from_dict

FORMAT = "gaunt-potential/1"
TRAIN_CHECKPOINT_FORMAT = "gaunt-train-checkpoint/1"  # gaunt.train.checkpoint's, named here for the messages
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` so that ``path`` is at all times either absent, the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # failed before the rename: the target is untouched; do not leave the partial file behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def model_state(model: GauntPotential) -> dict:
    """The checkpoint dict of ``model`` (weights moved to CPU)."""
    return {
        "format": FORMAT,
        "config": config_dict(model.config),
        "dtype": str(model.embedding.weight.dtype).removeprefix("torch."),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def load_torch_file(path: str | os.PathLike, what: str) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure a ``ValueError`` naming the file and
    what is wrong with it (torch's own messages, "PytorchStreamReader failed" or "Unsupported operand 103",
    name neither). ``what`` ("model file", "checkpoint") starts the message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises OSError, EOFError, KeyError, UnpicklingError, RuntimeError ...
        raise ValueError(f"{what} {path} {_diagnose(path, err)}") from None


def _diagnose(path: Path, err: Exception) -> str:
    """What is wrong with a file ``torch.load`` refused, judged from its bytes (more reliable than torch's text)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
    if size == 0:
        return "is empty (0 bytes)"
    if not head.startswith(_ZIP_MAGIC):
        return f"is not a PyTorch file (it starts with {head!r}, not a zip archive): garbage or another format"
    if not zipfile.is_zipfile(path):
        return f"is truncated or damaged: an incomplete zip archive of {size} bytes (an interrupted copy?)"
    if isinstance(err, pickle.UnpicklingError):
        return (
            "holds pickled Python objects that safe loading (weights_only=True) refuses: it was not written "
            "by gaunt, or holds code; gaunt loads only its own files"
        )
    return f"is damaged: {' '.join(str(err).split())[:200]}"


def check_format(state: object, path: str | os.PathLike, expected: str) -> None:
    """Raise ``ValueError`` naming the file if ``state`` is not a gaunt file of format ``expected``."""
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found == expected:
        return
    hint = {FORMAT: "a gaunt model file", TRAIN_CHECKPOINT_FORMAT: "a gaunt training checkpoint"}.get(found)
    if hint is None:
        hint = f"a file of format {found!r}" if isinstance(state, dict) else f"a pickled {found}"
    wanted = "a gaunt model file (<name>.model)" if expected == FORMAT else "a gaunt training checkpoint"
    raise ValueError(f"{path} is {hint}, not {wanted}")


def model_from_state(state: dict, map_location: str | torch.device | None = None) -> GauntPotential:
    """Rebuild a ``GauntPotential`` from :func:`model_state`'s dict."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a gaunt model file: format {found!r}, expected {FORMAT!r}")
    model = GauntPotential(config_from_dict(state["config"]))  # maps the names of older files
    model.to(getattr(torch, state["dtype"]))
    model.load_state_dict(state["state_dict"])
    return model.to(map_location) if map_location is not None else model


def save_model(model: GauntPotential, path: str | os.PathLike) -> None:
    """Write ``model`` (config + weights + dtype) to ``path`` atomically."""
    atomic_torch_save(model_state(model), path)


def load_model(path: str | os.PathLike, map_location: str | torch.device | None = None) -> GauntPotential:
    """Load a model written by :func:`save_model` (in eval mode, on ``map_location`` or the CPU)."""
    state = load_torch_file(path, "model file")
    check_format(state, path, FORMAT)
    try:
        model = model_from_state(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a config or weights that do not fit
        message = " ".join(str(err).split())[:300]
        raise ValueError(f"model file {path} is damaged or from an incompatible version: {message}") from None
    return (model.to(map_location) if map_location is not None else model).eval()


__all__ = [
    "save_model",
    "load_model",
    "model_state",
    "model_from_state",
    "atomic_torch_save",
    "load_torch_file",
    "check_format",
    "FORMAT",
    "TRAIN_CHECKPOINT_FORMAT",
]
