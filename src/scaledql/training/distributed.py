"""Distributed set-up: join torchrun's process group when launched by it; one device per process.

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) each process draws its own share of the global
batch from the shared memory-mapped store with its own seed; learners wrap their networks in
DistributedDataParallel (gloo on CPU, NCCL on CUDA) so gradients are averaged, which equals one
step on the union batch. Rank 0 alone logs, checkpoints and evaluates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from scaledql.device import pick_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), pick_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


def gather(obj: Any, dist: Dist) -> list[Any]:
    """Every rank's ``obj`` (a list of one on a single process)."""
    if not dist.active:
        return [obj]
    out: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def shutdown(dist: Dist) -> None:
    if dist.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
