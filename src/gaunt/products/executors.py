"""Executors: how a sphere program runs. One table, read by every product and by ``gaunt check``.

=========  ==========================================================================================
name       runs
=========  ==========================================================================================
"torch"    ``torch_executor.TorchProgram``: torch matmuls and gathers, any device and float dtype;
           backward and double backward as derivative programs (the reference executor)
=========  ==========================================================================================

``executor="auto"`` (the products' default) takes the fastest executor available for the program and
says which in ``product.executor``; a named executor that cannot run raises (never a silent fallback).
A new executor is one module with a class like ``TorchProgram`` (``__init__(program)``, ``forward(x1,
x2)``) and one entry in ``EXECUTORS`` with the function that says whether it can run here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .program import SphereProgram
from .torch_executor import TorchProgram

logger = logging.getLogger("gaunt.products")


@dataclass(frozen=True)
class Executor:
    """An entry of ``EXECUTORS``: the runner class and ``unavailable() -> None | reason``."""

    name: str
    runner: Callable[[SphereProgram], torch.nn.Module]
    unavailable: Callable[[], str | None]
    description: str


EXECUTORS: dict[str, Executor] = {
    "torch": Executor("torch", TorchProgram, lambda: None, "torch matmuls and gathers (reference)"),
}
#: the order in which "auto" tries them (fastest first)
PREFERENCE = ("torch",)


def resolve_executor(name: str = "auto") -> str:
    """The executor a product will use: ``name`` itself (checked) or, for "auto", the first available."""
    if name == "auto":
        for candidate in PREFERENCE:
            if EXECUTORS[candidate].unavailable() is None:
                return candidate
        raise RuntimeError("no executor is available")  # pragma: no cover - "torch" always is
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; expected 'auto' or one of {tuple(EXECUTORS)}")
    reason = EXECUTORS[name].unavailable()
    if reason is not None:
        raise RuntimeError(f"executor {name!r} was requested but cannot run here: {reason}")
    return name


def build_runner(program: SphereProgram, executor: str = "auto") -> torch.nn.Module:
    """The module that runs ``program`` on ``executor`` (see :func:`resolve_executor`)."""
    return EXECUTORS[resolve_executor(executor)].runner(program)


__all__ = ["Executor", "EXECUTORS", "PREFERENCE", "resolve_executor", "build_runner"]
