"""How the grid messages run: the executor table of ``grid_messages`` and :class:`GridMessages`.

The form, its reference and the custom-op registration are ``grid_messages`` (what to compute); the fused
implementations (``cpu_grid_messages``, ``triton_grid_messages``) build on it, and this module picks one of
them per device (how), so that the dependencies run one way: form <- implementations <- runners.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .executors import EXECUTORS, resolve_executor
from .grid_messages import define_op, reference

_REFERENCE_OP = None


def grid_messages_runner(executor: str) -> Callable[..., torch.Tensor]:
    """The function ``(slot, f, s, w, y, y2, senders, receivers, num_nodes) -> gradient`` of a resolved
    executor name (``executors.resolve_executor``); the fused ones are imported (and built) on first use."""
    global _REFERENCE_OP
    if executor == "torch":
        return reference
    if executor == "torch_programs":
        if _REFERENCE_OP is None:
            _REFERENCE_OP = define_op("gaunt::torch_grid_messages", reference)
        return _REFERENCE_OP
    if executor == "cpu_fused":
        from .cpu_grid_messages import grid_messages

        return grid_messages
    if executor == "triton":
        from .triton_grid_messages import grid_messages

        return grid_messages
    raise ValueError(f"grid messages: no runner for executor {executor!r}")


class GridMessages:
    """The grid-messages op on an executor: ``self(slot, f, s, w, y, y2, senders, receivers, num_nodes)``.

    ``executor="auto"`` runs, per device type of the inputs, the first available executor of
    ``executors.PREFERENCE`` (warned once where a preferred one cannot run) and names the CPU choice in
    ``self.executor``; a named executor is checked now (raises where it cannot run) and refuses tensors on
    a device it does not run on.
    """

    def __init__(self, executor: str = "auto") -> None:
        self.requested = executor
        self._by_device: dict[str, Callable[..., torch.Tensor]] = {}
        if executor == "auto":
            self.executor = resolve_executor("auto", "cpu")
            self.runner_for("cpu")  # resolved now, so that torch.compile finds it (no graph break)
        else:
            self.executor = resolve_executor(executor)

    def runner_for(self, device_type: str) -> Callable[..., torch.Tensor]:
        runner = self._by_device.get(device_type)
        if runner is None:
            name = resolve_executor(self.requested, device_type)
            if device_type not in EXECUTORS[name].devices:
                raise RuntimeError(f"executor {name!r} runs on {EXECUTORS[name].devices} tensors, not {device_type}")
            runner = self._by_device[device_type] = grid_messages_runner(name)
        return runner

    def __getstate__(self) -> dict:
        # the runners are custom ops (not picklable, so not deep-copyable): copies resolve them anew
        return {**self.__dict__, "_by_device": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.requested == "auto":
            self.runner_for("cpu")

    def __call__(self, slot, f, s, w, y, y2, senders, receivers, num_nodes) -> torch.Tensor:
        if y2.requires_grad:  # the fused ops treat y2 as a constant table (the same rule on every executor)
            raise ValueError("grid messages: y2 (the grid's harmonics) is a constant table; it must not require grad")
        return self.runner_for(y2.device.type)(slot, f, s, w, y, y2, senders, receivers, num_nodes)

    def __repr__(self) -> str:
        return f"GridMessages(executor={self.executor!r})"


__all__ = ["GridMessages", "grid_messages_runner"]
