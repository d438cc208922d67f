"""torch.distributed support: the range test on the same multi-process setup as training.

Under torchrun (or any launcher that sets RANK / WORLD_SIZE / MASTER_ADDR), each rank trains its shard of every
global batch through DistributedDataParallel. The per-step loss is all-reduced (mean over ranks) on the device before
it leaves it, so every rank sees the same curve, makes the same divergence decision, and stops at the same step;
only rank 0 prints and writes files.

When one rank's code fails, the others are left in a collective that cannot complete (and torchrun terminates them
soon after): the failing rank records its failure in the process group's store before it exits, so the other ranks
stop as that failure (rank 0 saves its steps with stop reason `error`, naming the failing rank) and the failure is
reported once, by the first rank that recorded one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from clrfind import stops
from clrfind.errors import ClrfindError, RunError, RunInterrupted, UsageError, describe_exception

if TYPE_CHECKING:
    from clrfind.engine import EngineOutput

# Keys in the process group's store: how many ranks failed, and the first failure ("<rank>:<what failed>").
_FAILURES_KEY = "clrfind/failures"
_FIRST_KEY = "clrfind/first-failure"
# How long a reader that saw the failure count go up waits for the first failure's text, which its rank sets next.
_RECORD_WAIT = timedelta(seconds=5)


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
    finished = False
    try:
        yield DistContext(rank=rank, local_rank=local, world_size=world, backend=backend)
        finished = True
    finally:
        if owns_group and dist.is_initialized():
            if finished:
                wait_for_peers()
            dist.destroy_process_group()


def wait_for_peers() -> None:
    """Hold this rank until every rank gets here: the ranks of a job leave together.

    A rank that tears down its group (or exits) while another still works, as the others do while rank 0 writes the
    files, can abort in gloo's teardown of a DistributedDataParallel job ("terminate called without an active
    exception", exit 134), and torchrun then fails a job whose results are saved. Only ranks that finished wait: a
    rank that failed goes, its closed connections end a gloo peer's wait with an error (ignored here: the failing
    rank reports its failure), and torchrun stops the rest of a failed job.
    """
    with contextlib.suppress(Exception):  # a peer failed and went; it reports that itself
        dist.barrier()


def joined_group(model: torch.nn.Module) -> DistContext | None:
    """This process's place in a process group the caller initialised (a library call in a script torchrun
    launched), when `model` trains in it (DistributedDataParallel, also under torch.compile); None outside a group,
    in a group of one process, or for a model of this process alone, which a script may test on one rank without
    the others (all-reducing its loss would wait for them forever)."""
    from torch.nn.parallel import DistributedDataParallel

    if not dist.is_available() or not dist.is_initialized():
        return None
    if not isinstance(getattr(model, "_orig_mod", model), DistributedDataParallel):
        return None
    world = dist.get_world_size()
    if world < 2:
        return None
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", rank))
    return DistContext(rank=rank, local_rank=local, world_size=world, backend=str(dist.get_backend()))


def from_rank_0(text: str) -> str:
    """Rank 0's `text` on every rank (a collective: every rank calls it)."""
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def mean_over_ranks(world_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """An all-reduce mean for the per-step loss; asynchronous on NCCL, so it adds no host sync on GPUs."""

    def reduce(loss: torch.Tensor) -> torch.Tensor:
        out = loss.detach().float().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / world_size

    return reduce


class Peers:
    """The ranks' failures, shared through the process group's key-value store (torchrun's agent hosts it, so it
    outlives any rank); every store call is guarded, since a store hosted by a rank goes with it."""

    def __init__(self, rank: int, store: Any) -> None:
        self.rank, self.store = rank, store

    @classmethod
    def of_group(cls, rank: int) -> Peers:
        getter = getattr(dist.distributed_c10d, "_get_default_store", None)
        try:
            store = getter() if getter is not None else None
        except Exception:
            store = None
        return cls(rank, store)

    def first_failure(self) -> tuple[int, str] | None:
        """(rank, what failed) of the first failure any rank recorded, or None."""
        if self.store is None:
            return None
        try:
            # add(key, 0) reads the count on every torch: torch < 2.3's PrefixStore has no `check`.
            if self.store.add(_FAILURES_KEY, 0) == 0:
                return None
            self.store.wait([_FIRST_KEY], _RECORD_WAIT)
            rank, _, text = self.store.get(_FIRST_KEY).decode("utf-8", "replace").partition(":")
            return int(rank), text
        except Exception:
            return None

    def record(self, text: str) -> bool:
        """Record this rank's own failure; True when it is the first one (this rank reports it)."""
        if self.store is None:
            return True
        try:
            first = self.store.add(_FAILURES_KEY, 1) == 1
            if first:
                self.store.set(_FIRST_KEY, f"{self.rank}:{text}")
        except Exception:
            return True
        return first

    def caused_by_peer(self) -> tuple[int, str] | None:
        """Another rank's recorded failure, when there is one: whatever stopped this rank followed from it."""
        first = self.first_failure()
        return first if first is not None and first[0] != self.rank else None

    def explain(self, out: EngineOutput) -> EngineOutput:
        """A stop (a broken collective, torchrun's SIGTERM) that another rank's failure caused, as that failure:
        stop reason `error` with the failing rank named, so the results say what happened."""
        if not out.stopped_early:
            return out
        peer = self.caused_by_peer()
        if peer is None:
            return out
        detail = f"rank {peer[0]} failed: {peer[1]}"
        return dataclasses.replace(
            out, stop_reason="error", stop_detail=detail, error=out.error or RunError(detail), error_part=None,
            error_step=None, stop_signal=None,
        )  # fmt: skip

    def settle(self, exc: BaseException, out_dir: Path) -> ClrfindError:
        """The error this rank ends with, reported once per job: a failure another rank caused is left to the rank
        that failed (or to rank 0, for a stop signal) to report; this rank's own failure is recorded, and reported
        by the first rank that failed."""
        if isinstance(exc, KeyboardInterrupt):
            signum = stops.signal_of(exc)
            exc = RunInterrupted(f"{stops.stop_verb(signum)} before the range test started", signum=signum)
        peer = self.caused_by_peer()
        if peer is not None:
            error = exc if isinstance(exc, ClrfindError) else RunError(f"rank {peer[0]} failed: {peer[1]}")
            error.reported = True
            return error
        if isinstance(exc, RunInterrupted):
            exc.reported = self.rank != 0  # every rank got the signal; rank 0 says what it saved
            return exc
        error = (
            exc
            if isinstance(exc, ClrfindError)
            else RunError(f"torch.distributed: {describe_exception(exc)}")
        )
        error.reported = not self.record(error.message)
        kept = f"; rank 0 keeps the steps recorded so far in {out_dir}" if self.rank != 0 else ""
        return error.reworded(before=f"rank {self.rank}: ", after=kept if isinstance(error, RunError) else "")
