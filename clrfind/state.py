"""The caller's state, kept aside while a range test trains on it, and what the run cost in memory.

A range test trains the caller's own model and optimizer, and the self-check's trials each start again from where
they were, so their state (weights, buffers, optimizer state, train/eval modes, RNG states) is copied first. A copy
on the model's device would double the memory of a model that fills the GPU, so the tensors go to the host
(`"cpu"`, the default) or to a temporary file (`"disk"`, read back through a memory map), and only the restore
brings them back to the device.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import sys
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clrfind.errors import OutputError, UsageError, short_repr
from clrfind.results import PeakMemory

if TYPE_CHECKING:
    import torch

RestoreMode = Literal["cpu", "disk"]
RESTORE_MODES: tuple[RestoreMode, ...] = ("cpu", "disk")


def restore_mode(restore: bool | str) -> RestoreMode | None:
    """`range_test`'s `restore=` as a mode: True is the host copy, False is no restore.

    Raises:
        UsageError: anything else, before the model is touched.
    """
    if restore is True:
        return "cpu"
    if restore is False:
        return None
    if restore in RESTORE_MODES:
        return restore  # type: ignore[return-value]
    raise UsageError(f"restore: expected True, False, 'cpu' or 'disk', got {short_repr(restore)}")


@dataclass(frozen=True)
class _Slot:
    """Where a tensor sat in the state: its index in the snapshot's list of tensors."""

    index: int


def _pack(obj: Any, tensors: list[Any]) -> Any:
    """`obj` with every tensor replaced by a _Slot, the tensors appended to `tensors` (state dicts hold tensors in
    dicts, lists and tuples; everything else is kept as it is)."""
    import torch

    if isinstance(obj, torch.Tensor):
        tensors.append(obj.detach())
        return _Slot(len(tensors) - 1)
    if isinstance(obj, dict):
        return _same_kind(obj, ((k, _pack(v, tensors)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pack(v, tensors) for v in obj)
    return copy.deepcopy(obj)


def _unpack(obj: Any, tensors: list[Any]) -> Any:
    """`obj` with each _Slot replaced by its tensor again."""
    if isinstance(obj, _Slot):
        return tensors[obj.index]
    if isinstance(obj, dict):
        return _same_kind(obj, ((k, _unpack(v, tensors)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unpack(v, tensors) for v in obj)
    return copy.deepcopy(obj)


def _same_kind(like: dict[Any, Any], items: Iterator[tuple[Any, Any]]) -> dict[Any, Any]:
    """A dict of `like`'s class with its `_metadata` (a module state_dict's versions, which load_state_dict reads)."""
    out = type(like)(items)
    if hasattr(like, "_metadata"):
        out._metadata = copy.deepcopy(like._metadata)  # type: ignore[attr-defined]
    return out


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class StateSnapshot:
    """Weights, buffers, optimizer state, train/eval modes, RNG states (and gradients that were None), taken now
    and restorable any number of times: after a range test (the caller's objects as they were) and before every
    self-check trial (the same start for each).

    `where` keeps the tensors on the host (`"cpu"`, exact copies) or in a temporary file (`"disk"`, removed by
    `close()`, or when the snapshot is collected or the interpreter exits); neither keeps a copy on the model's
    device. Restoring copies them back into the parameters and into the optimizer's own state tensors,
    bit-for-bit, so it allocates no second state on the device either.
    """

    def __init__(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, where: RestoreMode = "cpu"
    ) -> None:
        """Take the snapshot.

        Raises:
            OutputError: `"disk"` and the temporary file cannot be written (a full disk); nothing was changed.
        """
        import torch

        self.model, self.optimizer, self.where = model, optimizer, where
        tensors: list[torch.Tensor] = []
        self._layout = _pack({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tensors)
        self._tensors: list[torch.Tensor] | None = None
        self._removal: weakref.finalize | None = None
        self.path: Path | None = None
        self.closed = False
        if where == "disk":
            try:
                handle, name = tempfile.mkstemp(prefix="clrfind-state-", suffix=".pt")
                os.close(handle)
                self._removal = weakref.finalize(self, _remove, name)  # also on an error below, or at exit
                self.path = Path(name)
                torch.save(tensors, name)  # device tensors pass through the host one storage at a time
            except OSError as exc:
                if self._removal is not None:
                    self._removal()
                raise OutputError(
                    f"restore='disk': cannot write the model and optimizer state to {tempfile.gettempdir()} "
                    f"({exc.strerror or exc})",
                    hint="set TMPDIR to a folder with room for it, or use restore='cpu'",
                ) from exc
        else:
            self._tensors = [t.to("cpu", copy=True) for t in tensors]
        self.modes = {name: m.training for name, m in model.named_modules()}
        self.gradless = [p for p in model.parameters() if p.grad is None]
        self.py_rng = random.getstate()
        self.np_rng = np.random.get_state()
        self.torch_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def held_bytes(self) -> dict[str, int]:
        """Bytes of model and optimizer state this snapshot holds in memory, per device type (`{}` on disk)."""
        held: dict[str, int] = {}
        for t in self._tensors or []:
            held[t.device.type] = held.get(t.device.type, 0) + t.numel() * t.element_size()
        return held

    def restore(self) -> None:
        import torch

        if self.closed:
            raise RuntimeError("the snapshot was closed")  # a clrfind bug, never the caller's
        for p in self.gradless:  # as they were, and freed before the state comes back
            p.grad = None
        if self.path is not None:
            # A memory map: the tensors are read from the file as they are copied, not all at once.
            tensors = torch.load(str(self.path), map_location="cpu", weights_only=True, mmap=True)
        else:
            tensors = self._tensors or []
        self.model.load_state_dict(_unpack(self._layout["model"], tensors))  # copies into the parameters
        self.optimizer.load_state_dict(
            _into_live(_unpack(self._layout["optimizer"], tensors), self.optimizer)
        )
        del tensors
        for name, m in self.model.named_modules():
            m.training = self.modes.get(name, m.training)
        random.setstate(self.py_rng)
        np.random.set_state(self.np_rng)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)

    def close(self) -> None:
        """Free the copy: remove the file of a `"disk"` snapshot, drop the host tensors of a `"cpu"` one."""
        self.closed = True
        self._tensors = None
        if self._removal is not None:
            self._removal()


def _into_live(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The saved optimizer state with each tensor copied into the optimizer's own tensor of the same shape, which
    load_state_dict then keeps: the restore allocates no second optimizer state on the device while the first is
    still held. A tensor with no such counterpart is cloned: load_state_dict adopts a tensor already on the
    parameter's device as it is, and training would then change the snapshot's own (or its file's) in place."""
    import torch

    live = optimizer.state_dict()["state"]  # the optimizer's own tensors, not copies
    state: dict[Any, Any] = {}
    for index, entries in saved["state"].items():
        now = live.get(index, {})
        state[index] = {}
        for key, value in entries.items():
            own = now.get(key)
            if not isinstance(value, torch.Tensor):
                state[index][key] = value
            elif isinstance(own, torch.Tensor) and own.shape == value.shape and own.dtype == value.dtype:
                state[index][key] = own.copy_(value)
            else:
                state[index][key] = value.clone()
    return {**saved, "state": state}


@contextlib.contextmanager
def python_rng_kept() -> Iterator[None]:
    """Python's global RNG as it was on entry, whatever runs inside: a package imported for the first time during a
    library call may draw from it (rich.style seeds an id counter with `random.getrandbits` at import), and the call
    promises to leave the caller's random streams alone."""
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


@contextlib.contextmanager
def preserved_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, where: RestoreMode = "cpu"
) -> Iterator[StateSnapshot]:
    """Restore weights, buffers, optimizer state, train/eval mode and RNG states on exit, even on error; the copy
    is freed (its file removed) after."""
    snapshot = StateSnapshot(model, optimizer, where=where)
    try:
        yield snapshot
    finally:
        try:
            snapshot.restore()
        finally:
            snapshot.close()


def has_trained_state(optimizer: torch.optim.Optimizer) -> bool:
    """True when the optimizer has stepped before: some parameter has state (SGD's momentum buffer) whose `step`,
    where it keeps one, is past 0 (Adagrad makes its state, at step 0, when it is built)."""
    for state in optimizer.state.values():
        step = state.get("step")
        if step is None and state:
            return True
        if step is not None and float(step) > 0:
            return True
    return False


class MemoryProbe:
    """The peak memory of a run: on CUDA torch's allocator peak on the device, reset when the probe starts; on any
    other device the process's peak resident set (`resource.getrusage`), which cannot be reset."""

    def __init__(self, device: torch.device) -> None:
        import torch

        self.device = device
        self.cuda = device.type == "cuda" and torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def peak(self) -> PeakMemory | None:
        """The peak so far, or None where it cannot be measured (no `resource` module: Windows)."""
        if self.cuda:
            import torch

            return PeakMemory(
                bytes=int(torch.cuda.max_memory_allocated(self.device)), measured="cuda_max_memory_allocated"
            )
        try:
            import resource
        except ImportError:
            return None
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in kibibytes on Linux and the BSDs, in bytes on macOS.
        return PeakMemory(
            bytes=int(rss if sys.platform == "darwin" else rss * 1024), measured="process_max_rss"
        )
