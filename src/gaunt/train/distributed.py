"""Multi-process data-parallel training under ``torchrun`` (gloo on CPU, nccl on CUDA).

``torchrun --nproc_per_node=K -m gaunt.train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; :func:`setup` reads them and joins the process group. Every rank reads the data itself
(graphs are small and this keeps ranks independent of a shared file system); the training set is split
by a ``DistributedSampler`` (reshuffled per epoch with ``set_epoch``), the evaluation sets by
:func:`shard_indices` (no padding, so every configuration is counted exactly once in the all-reduced
metrics). Only rank 0 writes logs, checkpoints and the model.

Forces are ``-dE/dr`` computed with ``torch.autograd.grad(..., create_graph=True)`` inside the model's
forward. That call differentiates with respect to positions only, so it does not touch the parameters'
``AccumulateGrad`` hooks that DDP uses to all-reduce gradients; the following ``loss.backward()`` reaches
every parameter through both the energy and the force graph and fires each hook once, as DDP expects
(checked by the 2-process test in ``tests/train``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``rank`` of ``world_size`` (1 and 0 without torchrun), and its device."""

    enabled: bool
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str, requested: bool) -> DistributedContext:
    """Join the process group if running under torchrun (WORLD_SIZE > 1) or ``requested``.

    Args:
        device: "cpu", "cuda" or "cuda:k"; under torchrun CUDA ranks use ``cuda:LOCAL_RANK``.
        requested: the ``--distributed`` flag; an error if set but the torchrun variables are missing.
    """
    world_size = env_world_size()
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if not requested and world_size <= 1:
        return DistributedContext(False, 0, 1, 0, torch.device(device))
    if missing:
        raise RuntimeError(
            f"distributed training needs the environment variables set by torchrun; missing {missing}. "
            "Launch with e.g. `torchrun --nproc_per_node=2 -m gaunt.train ...`"
        )
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("distributed: device 'cuda' requested but CUDA is not available")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if on_cuda else "gloo", rank=rank, world_size=world_size)
    return DistributedContext(True, rank, world_size, local_rank, dev)


def cleanup(context: DistributedContext) -> None:
    """Leave the process group (if this module joined one)."""
    if context.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap_model(model: torch.nn.Module, context: DistributedContext, find_unused_parameters: bool) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else the model itself."""
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters, gradient_as_bucket_view=True
    )


def shard_indices(n: int, context: DistributedContext) -> list[int]:
    """This rank's share of ``range(n)`` (strided, no padding: shares are disjoint and cover everything)."""
    return list(range(context.rank, n, context.world_size))


def broadcast_flag(flag: bool, context: DistributedContext) -> bool:
    """Rank 0's value of ``flag`` on every rank (so all ranks stop at the same epoch under ``max_time``)."""
    if not context.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=context.device if context.device.type == "cuda" else "cpu")
    torch.distributed.broadcast(t, src=0)
    return bool(t.item() > 0.5)


def all_reduce_mean(value: float, context: DistributedContext) -> float:
    """Mean of a scalar over ranks."""
    if not context.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=context.device if context.device.type == "cuda" else "cpu")
    torch.distributed.all_reduce(t)
    return float(t.item()) / context.world_size


__all__ = [
    "DistributedContext",
    "setup",
    "cleanup",
    "wrap_model",
    "shard_indices",
    "broadcast_flag",
    "all_reduce_mean",
    "env_world_size",
]
