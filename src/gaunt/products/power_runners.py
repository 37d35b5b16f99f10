"""The runners of a power program per executor: the table ``executors.build_runner(program, executor, RUNNERS)``
chooses from (names, devices and availability: ``executors.EXECUTORS``).

Apart from ``powers`` (what to compute) because the fused runners build on ``power_family``, which builds on
``powers``: the dependencies run one way, program <- family <- implementations <- this table.
"""

from __future__ import annotations

import torch

from .powers import PowerProgram, TorchPowers


def _fused_powers(program: PowerProgram) -> torch.nn.Module:
    from .cpu_powers import FusedPowers  # imported on use: importing it registers the custom op

    return FusedPowers(program)


def _triton_powers(program: PowerProgram) -> torch.nn.Module:
    from .triton_powers import TritonPowers  # imported on use: triton is optional, and importing it registers the op

    return TritonPowers(program)


RUNNERS = {"torch": TorchPowers, "cpu_fused": _fused_powers, "triton": _triton_powers}


__all__ = ["RUNNERS"]
