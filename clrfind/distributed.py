"""torch.distributed support: the range test on the same multi-process setup as training.

Under torchrun (or any launcher that sets RANK / WORLD_SIZE / MASTER_ADDR), each rank trains its shard of every
global batch through DistributedDataParallel. The per-step loss is all-reduced (mean over ranks) on the device before
it leaves it, so every rank sees the same curve, makes the same divergence decision, and stops at the same step;
only rank 0 prints and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from clrfind.errors import UsageError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job; world_size 1 means a plain single-process run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_distributed() -> bool:
    """True when a launcher set up a multi-process job for us (torchrun sets all of these)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def pick_device(device: str, local_rank: int) -> str:
    """Each rank takes its own GPU (`cuda:<local_rank>`) unless the spec pins one explicitly."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank}"
    if device == "auto":
        return "cpu"
    return device


@contextmanager
def distributed_context(device: str) -> Iterator[DistContext]:
    """Initialise the process group from the environment (nccl on CUDA, gloo on CPU) and tear it down after."""
    if not launched_distributed():
        yield DistContext()
        return
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    chosen = pick_device(device, local)
    backend = "nccl" if chosen.startswith("cuda") else "gloo"
    if not dist.is_available():
        raise UsageError(
            "torch.distributed is not available in this torch build", hint="run without torchrun"
        )
    if chosen.startswith("cuda"):
        torch.cuda.set_device(torch.device(chosen))
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend=backend)
    try:
        yield DistContext(rank=rank, local_rank=local, world_size=world, backend=backend)
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def mean_over_ranks(world_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """An all-reduce mean for the per-step loss; asynchronous on NCCL, so it adds no host sync on GPUs."""

    def reduce(loss: torch.Tensor) -> torch.Tensor:
        out = loss.detach().float().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / world_size

    return reduce
