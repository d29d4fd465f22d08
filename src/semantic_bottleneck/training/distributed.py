"""Multi-process training with torchrun (DistributedDataParallel), and its single-process case.

`torchrun --nproc-per-node G -m semantic_bottleneck.cli train repa ...` sets RANK, WORLD_SIZE and
LOCAL_RANK; each process then trains on batch_size / G samples, seeds its random draws with
seed + rank (REPA's `set_seed(seed + process_index)`), and only rank 0 writes logs and
checkpoints. DDP broadcasts rank 0's initial weights, so the model starts from seed + 0 everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Processes:
    """Where this process stands in the run.

    Attributes:
        rank: global rank (0 writes files).
        world_size: number of processes.
        device: this process's device.
        owns_group: this call created the process group (and destroys it at the end).
    """

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def default_device(prefer_cuda: bool) -> torch.device:
    """cuda when asked for and present, else cpu."""
    return torch.device("cuda" if prefer_cuda and torch.cuda.is_available() else "cpu")


def setup(device: str | torch.device | None, prefer_cuda: bool) -> Processes:
    """Join the torchrun process group when WORLD_SIZE > 1; else a single process.

    Args:
        device: explicit device ("cpu", "cuda", "cuda:1"); None picks one (see prefer_cuda).
            Under torchrun, cuda means this process's LOCAL_RANK device.
        prefer_cuda: when device is None, use cuda if present (large runs) or the cpu (the
            testbed, whose CPU results are bitwise repeatable).

    Returns:
        the process description.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device) if device is not None else default_device(prefer_cuda)
    if world <= 1:
        return Processes(0, 1, dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), dev, owns)


def teardown(procs: Processes) -> None:
    """Leave the process group this run created."""
    if procs.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(value: Tensor, procs: Processes) -> float:
    """The mean of a scalar over all processes (itself in a single process)."""
    if procs.world_size == 1:
        return value.item()
    value = value.detach().float().clone()
    dist.all_reduce(value)
    return value.item() / procs.world_size


def gather_objects(obj: object, procs: Processes) -> list:
    """`obj` of every process, in rank order (on every process)."""
    if procs.world_size == 1:
        return [obj]
    out = [None] * procs.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap(model: torch.nn.Module, procs: Processes) -> torch.nn.Module:
    """DistributedDataParallel around `model` when there are several processes."""
    if procs.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [procs.device.index] if procs.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier(procs: Processes) -> None:
    if procs.world_size > 1:
        dist.barrier()
