"""Coordination of ranks under ``torchrun`` for :func:`captum_video.pipeline.explain_dataset`.

One process per device. Without ``torchrun`` (``WORLD_SIZE`` unset or 1) every function takes
its single-rank shortcut, so the same code runs on one CPU, one GPU or many.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["init_distributed", "raise_anywhere", "broadcast", "my_shards"]


def init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """``(rank, world size, created)``; creates a process group from torchrun's variables."""
    if not dist.is_available():
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, False
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), True


def raise_anywhere(error: BaseException | None, rank: int, world: int) -> None:
    """A barrier that fails on every rank when one rank failed (instead of a hang).

    Every rank calls it at the same point, with the error it caught or None.
    """
    if world > 1:
        states: list[Any] = [None] * world
        dist.all_gather_object(states, None if error is None else repr(error))
        failed = [(r, s) for r, s in enumerate(states) if s is not None]
        if failed and error is None:
            raise RuntimeError(f"explain_dataset failed on rank {failed[0][0]}: {failed[0][1]}")
    if error is not None:
        raise error


def broadcast(value: Any, world: int) -> Any:
    """Rank 0's ``value`` on every rank."""
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _ShardList(Dataset):
    """The shards still to do, as a data set a DistributedSampler can split."""

    def __init__(self, shards: Sequence[int]) -> None:
        self.shards = list(shards)

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, i: int) -> int:
        return self.shards[i]


def my_shards(pending: Sequence[int], rank: int, world: int) -> list[int]:
    """This rank's shards: a DistributedSampler's share, without its padding duplicates."""
    if world == 1 or not pending:
        return list(pending)
    sampler: DistributedSampler = DistributedSampler(
        _ShardList(pending), num_replicas=world, rank=rank, shuffle=False, drop_last=False
    )
    # The sampler pads by repeating shards so every rank gets as many; rank r's item j sits
    # at position r + j * world of the padded list, so positions past the end are repeats.
    positions = range(rank, sampler.total_size, world)
    return [pending[i] for pos, i in zip(positions, sampler, strict=True) if pos < len(pending)]
