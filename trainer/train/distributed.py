"""Data-parallel training under `torchrun` (gloo on CPU, NCCL on CUDA).

Rank 0 publishes, validates, saves and serves commands. At the top of every
iteration `sync_step` hands rank 0's drained action list and its decisions (what
changes the update rule: LR boost, adaptive loss weights, clip value), and any
rank's local stop request (e.g. a signal), to every rank, so all ranks pause,
validate, save, stop and change their update rule at the same iteration.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """What torchrun put in the environment (a single process when nothing is set)."""
    return DistInfo(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device) -> DistInfo:
    info = env_info()
    if not info.enabled or dist.is_initialized():
        return info
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """One GPU per process: rank-local CUDA index under torchrun."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def wrap_model(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # A model that freezes part of itself for a while (BasicVSR++'s SPyNet) leaves those
    # parameters without gradients; DDP must be told to expect that.
    partly_frozen = hasattr(model, "set_flow_trainable")
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=partly_frozen)


def sync_step(actions: list[Any], decisions: Any, local_stop: bool, info: DistInfo) -> tuple[list[Any], Any, bool]:
    """Rank 0's actions and decisions, and whether any rank wants to stop: identical on every rank."""
    if not info.enabled:
        return actions, decisions, local_stop
    gathered: list[Any] = [None] * info.world_size
    mine = (actions, decisions) if info.is_main else ([], None)
    dist.all_gather_object(gathered, (*mine, bool(local_stop)))
    actions, decisions, _ = gathered[0]
    return list(actions), decisions, any(stop for _, _, stop in gathered)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value of `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class ShardedSampler(Sampler):
    """This rank's share of an infinite, resumable sampler's stream: keys rank, rank+W, rank+2W, ...

    The base sampler's position counts global samples, so the loop advances it by
    `batch * world_size` per consumed batch; every rank then resumes in step.
    """

    def __init__(self, base: Any, info: DistInfo) -> None:
        self.base = base
        self.info = info

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.base), self.info.rank, None, self.info.world_size)

    def __len__(self) -> int:
        return -(-len(self.base) // self.info.world_size)
