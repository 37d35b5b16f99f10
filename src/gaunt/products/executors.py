"""Executors: how a sphere program runs. One table, read by every product and by ``gaunt check``.

=========  ==========================================================================================
name       runs
=========  ==========================================================================================
"torch"    ``torch_executor.TorchProgram``: torch matmuls and gathers, any device and float dtype,
           autograd through them (the reference executor)
"torch_programs"  the same ops; backward and double backward run the derivative programs (the scheme of
           the fused executors, checked on the reference; never chosen by "auto")
"cpu_fused" ``cpu_executor.FusedProgram``: C++ kernels, per program the cheaper of "transform" (the grid
           in cache, tiles of (sample, channel) columns) and "direct" (the sparse coupling list: small L);
           CPU, float32/float64; built at first use (``cpu_build``); a custom op whose backward and double
           backward run the derivative programs on the same kernels (power programs:
           ``cpu_powers.FusedPowers``, their derivative family on one kernel)
"triton"   ``triton_executor.TritonProgram``: one fused Triton kernel per term group, a ``torch.library``
           custom op (backward and double backward: the same op on the derivative programs; power programs:
           ``triton_powers.TritonPowers``, their derivative family on one kernel); CUDA
           tensors, and CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, for the tests);
           needs the optional ``triton`` (``pip install gaunt-tp[gpu]``)
=========  ==========================================================================================

``executor="auto"`` (the products' default) runs, on each call, the fastest executor available for the
inputs' device (``PREFERENCE[device]`` order, among those available) and says which in
``product.executor`` (the choice per device; where a preferred executor cannot run, a warning says why,
once per process); a named executor that cannot run raises (never a silent
fallback), also when called with tensors on a device it does not support. A new executor is one module
with a class like ``TorchProgram`` (``__init__(program)``, ``forward(x1, x2)``, attribute ``executor``) and
one entry in ``EXECUTORS`` with the devices it runs on and the function that says whether it can run here.
Programs of another kind (``powers.PowerProgram``) pass their own runner table (``power_runners.RUNNERS``: "torch",
"cpu_fused" and "triton") to :func:`build_runner`; the names, devices, availability and "auto" order stay those of
this table.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from . import cpu_build
from .program import SphereProgram
from .torch_executor import TorchProgram, program_backward_runner

logger = logging.getLogger("gaunt.products")


@dataclass(frozen=True)
class Executor:
    """An entry of ``EXECUTORS``: the runner class and ``unavailable() -> None | reason``."""

    name: str
    runner: Callable[[SphereProgram], torch.nn.Module]
    unavailable: Callable[[], str | None]
    description: str
    devices: tuple[str, ...] = ("cpu", "cuda")


_TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_unavailable() -> str | None:
    """Why the Triton executor cannot run here (None: it can). Imports nothing unless triton is present."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install gaunt-tp[gpu])"
    if not (_TRITON_INTERPRET or torch.cuda.is_available()):
        return "no CUDA device (Triton kernels need one; TRITON_INTERPRET=1 runs them on the CPU, slowly)"
    return None


def _triton_runner(program: SphereProgram) -> torch.nn.Module:
    from .triton_executor import TritonProgram  # imports triton: only when a Triton runner is built

    return TritonProgram(program)


def _fused_program(program: SphereProgram) -> torch.nn.Module:
    # imported on use: importing it registers the custom op
    from .cpu_executor import FusedProgram

    return FusedProgram(program)


EXECUTORS: dict[str, Executor] = {
    "torch": Executor("torch", TorchProgram, lambda: None, "torch matmuls and gathers (reference)"),
    "torch_programs": Executor(
        "torch_programs",
        program_backward_runner,
        lambda: None,
        "torch ops, derivative programs for backward and double backward",
    ),
    "cpu_fused": Executor(
        "cpu_fused",
        _fused_program,
        cpu_build.unavailable,
        "fused C++ kernels, per program the cheaper: sparse coupling list (small L) or grid tiles in cache",
        ("cpu",),
    ),
    "triton": Executor(
        "triton",
        _triton_runner,
        _triton_unavailable,
        "fused Triton kernels (custom op)",
        ("cuda", "cpu") if _TRITON_INTERPRET else ("cuda",),
    ),
}
#: per device type, the order in which "auto" tries them (fastest first); names not in ``EXECUTORS`` are skipped
PREFERENCE: dict[str, tuple[str, ...]] = {"cpu": ("cpu_fused", "torch"), "cuda": ("triton", "torch")}
#: executors whose kernels tile the batch themselves (the products' blocks of samples would only add copies)
TILES_ITS_BATCH = frozenset({"cpu_fused", "triton"})
#: (executor, reason) pairs that "auto" has already warned about (once per process)
_WARNED: set[tuple[str, str]] = set()


def _warn_unavailable(name: str, reason: str) -> None:
    if (name, reason) not in _WARNED:
        _WARNED.add((name, reason))
        warnings.warn(f"executor {name!r} cannot run here ({reason}); 'auto' uses the next one", stacklevel=3)


def resolve_executor(name: str = "auto", device: str = "cpu", among: Collection[str] | None = None) -> str:
    """The executor for ``device`` (a device type): ``name`` itself (checked) or, for "auto", the first
    available one of ``PREFERENCE`` that runs on the device. ``among``: the executors that can run the
    program at hand (default: every one of ``EXECUTORS``; "torch" must be among them)."""
    if name == "auto":
        for candidate in PREFERENCE.get(device, ()):
            entry = EXECUTORS.get(candidate)
            if entry is None or device not in entry.devices or (among is not None and candidate not in among):
                continue
            reason = entry.unavailable()
            if reason is None:
                return candidate
            _warn_unavailable(candidate, reason)
        return "torch"  # runs wherever torch runs
    known = tuple(EXECUTORS) if among is None else tuple(n for n in EXECUTORS if n in among)
    if name not in known:
        raise ValueError(f"unknown executor {name!r}; expected 'auto' or one of {known}")
    reason = EXECUTORS[name].unavailable()
    if reason is not None:
        raise RuntimeError(f"executor {name!r} was requested but cannot run here: {reason}")
    return name


#: how a program is run by each executor: ``name -> runner class (or function) of the program``
Runners = Mapping[str, Callable[[Any], torch.nn.Module]]


def _runners(runners: Runners | None) -> Runners:
    """``runners``, or by default the sphere programs' runners of ``EXECUTORS`` (read now: tests add entries)."""
    return runners if runners is not None else {name: entry.runner for name, entry in EXECUTORS.items()}


class AutoRunner(torch.nn.Module):
    """Runs a program on the executor ``resolve_executor("auto", device)`` of its inputs' device (runners are
    built on first use per device). ``executor``: the choice for CPU tensors, and for CUDA (when there is a CUDA
    device) where it differs. ``runners``: the runner of each executor that can run the program (default: the
    sphere programs' runners of ``EXECUTORS``); ``self(*inputs)`` calls the chosen runner."""

    def __init__(self, program, runners: Runners | None = None) -> None:
        super().__init__()
        self.program, self._table = program, _runners(runners)
        self.runners = torch.nn.ModuleDict()
        self._by_device: dict[str, torch.nn.Module] = {}  # device type -> runner (resolved once per type)
        cpu = resolve_executor("auto", "cpu", self._table)
        cuda = resolve_executor("auto", "cuda", self._table) if torch.cuda.is_available() else cpu
        self.executor = cpu if cpu == cuda else f"{cpu} (cpu), {cuda} (cuda)"
        self.chosen = (cpu, cuda)  # the executor names behind ``executor``
        logger.info("program %s: executor %s", program.name, self.executor)
        self.runner_for(torch.device("cpu"))  # built now, so that torch.compile finds it (no graph break)

    def runner_for(self, device: torch.device) -> torch.nn.Module:
        runner = self._by_device.get(device.type)
        if runner is None:
            name = resolve_executor("auto", device.type, self._table)
            if name not in self.runners:
                self.runners[name] = self._table[name](self.program).to(device)
            runner = self._by_device[device.type] = self.runners[name]
        return runner

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.runner_for(inputs[0].device)(*inputs)


class CheckedRunner(torch.nn.Module):
    """A named executor's runner that refuses tensors on a device the executor does not run on."""

    def __init__(self, name: str, program, runners: Runners | None = None) -> None:
        super().__init__()
        self.executor, self.devices = name, EXECUTORS[name].devices
        self.chosen = (name,)
        self.runner = _runners(runners)[name](program)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if inputs[0].device.type not in self.devices:
            raise RuntimeError(
                f"executor {self.executor!r} runs on {self.devices} tensors, not {inputs[0].device.type}"
            )
        return self.runner(*inputs)


def cpu_runner(runner: torch.nn.Module) -> torch.nn.Module:
    """The module that runs CPU tensors for ``runner`` (an :class:`AutoRunner`, a :class:`CheckedRunner` or a
    plain runner), e.g. a ``cpu_executor.FusedProgram`` whose ``kernel`` says which kernel runs the program."""
    if isinstance(runner, AutoRunner):
        return runner.runner_for(torch.device("cpu"))
    if isinstance(runner, CheckedRunner):
        return runner.runner
    return runner


def build_runner(program, executor: str = "auto", runners: Runners | None = None) -> torch.nn.Module:
    """The module that runs ``program``: :class:`AutoRunner` for "auto", else the named executor's runner
    (checked now: ``resolve_executor``; and per call: the device). ``runners``: as for :class:`AutoRunner`
    (e.g. ``power_runners.RUNNERS`` for a power program)."""
    if executor == "auto":
        return AutoRunner(program, runners)
    runners = _runners(runners)
    return CheckedRunner(resolve_executor(executor, among=runners), program, runners)


__all__ = [
    "EXECUTORS",
    "PREFERENCE",
    "AutoRunner",
    "CheckedRunner",
    "Executor",
    "build_runner",
    "cpu_runner",
    "resolve_executor",
]
