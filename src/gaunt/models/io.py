"""Saving and loading a ``GauntPotential``: one file with the config, the weights and the dtype.

The file is a plain dict ``{"format": "gaunt-potential/1", "config": {...}, "dtype": "float64",
"state_dict": {...}}`` readable with ``torch.load(weights_only=True)`` (no pickled classes). Writes are
atomic: the file is written next to the target, flushed to disk, then renamed over it, so a crash
leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .potential import GauntPotential, config_dict, config_from_dict

FORMAT = "gaunt-potential/1"


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return model_from_state(state, map_location).eval()


__all__ = ["save_model", "load_model", "model_state", "model_from_state", "atomic_torch_save", "FORMAT"]
