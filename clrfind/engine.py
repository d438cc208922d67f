"""The training loop of the range test.

The loop is the floor cost of a range test (forward, backward, optimizer step) plus as little as possible: the LR is
set on the param groups, and each step's loss stays on the device as a detached 0-d tensor. Every `sync_every` steps
the chunk is stacked and copied to the host without blocking (pinned memory and a CUDA event on GPUs); the host
checks divergence on chunks whose copy has finished, so the GPU never waits on Python, and the run still stops a
few steps after the loss blows up. On CPU, where nothing runs ahead of Python, each loss is read as a float at once;
while the losses stay inside the divergence monitor's quiet band the chunks grow (up to 64 steps, or 50 ms of
steps), so the monitor runs on long chunks with warm caches, and a loss outside the band shortens them again at once.

The engine speaks Python, not YAML: what does not fit is a `Fault` naming the part of the run (the data, the model,
the loss, the step...), which the caller words for a spec or for a library call. It reports through a callback,
never prints, and turns a failure or Ctrl-C inside the loop into a stop reason with the steps recorded so far, so
the caller can always save what was measured.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clrfind import stops
from clrfind.analysis import DivergenceMonitor
from clrfind.diagnose import (
    StepFn,
    check_scalar_loss,
    diagnose_first_batch,
    graph_data_fault,
    judged_loss,
    judged_warnings,
    nonfinite_data_fault,
    nonfinite_weights_fault,
    refuse_sorted,
    refuse_sparse_clip,
    refuse_undrivable,
    refused_nonfinite,
)
from clrfind.errors import USER_FAILURES
from clrfind.events import StepEvent
from clrfind.faults import Fault, Part, Terms, label_out_of_range
from clrfind.groups import lr_ratios
from clrfind.results import MetricCurve
from clrfind.settings import MetricName, Precision, RunSettings

# Callbacks are throttled: a progress bar needs ~20 updates a second, not one per step of a 1 ms model.
_CALLBACK_INTERVAL_S = 0.05
# CPU: the longest chunk of losses held back while they stay in the monitor's quiet band, and how long a loss
# outside it keeps the chunks short (a level is the median of 5 losses, confirmed over 3 steps).
_QUIET_CHUNK_MAX = 64
_HOT_STEPS = 8


@dataclass
class EngineOutput:
    """Everything the loop measured, also when it stopped early; `error` holds a failure to re-raise after saving.

    `error_part` names the part of the run whose code raised it (see `clrfind.faults.Part`).
    """

    lrs: np.ndarray
    losses: np.ndarray
    stop_reason: str
    stop_detail: str
    steps_per_epoch: int | None
    data_restarts: int
    seconds: float
    compile_seconds: float | None = None
    metric: MetricCurve | None = None
    error: BaseException | None = None
    error_step: int | None = None
    error_part: Part | None = None
    stop_signal: int | None = None  # the signal that interrupted the run (SIGINT for Ctrl-C, SIGTERM)
    notes: list[str] = field(default_factory=list)
    # Steps the loop trained: past the curve's end when a stop was confirmed inside a chunk (None: the curve's length).
    trained_steps: int | None = None

    @property
    def steps_trained(self) -> int:
        """Optimizer steps the loop took: past the curve's end when a divergence was confirmed inside a chunk."""
        return self.trained_steps or len(self.losses)

    @property
    def stopped_early(self) -> bool:
        """Ctrl-C, SIGTERM or a failure ended the run: its curve says nothing about where it would have gone."""
        return self.stop_reason in ("error", "interrupted")

    def stop_text(self, terms: Terms) -> str:
        """Why the run stopped, in the caller's words (a failure names the spec key or the argument)."""
        if self.error is not None and self.error_part is not None and self.error_step is not None:
            return terms.raised(self.error_part, self.error_step, self.error)
        return self.stop_detail


def default_step(model: torch.nn.Module, batch: Any, loss_fn: Callable[..., torch.Tensor]) -> torch.Tensor:
    """The default batch contract: `(inputs, targets)` and `loss_fn(model(inputs), targets)`."""
    inputs, targets = batch
    return loss_fn(model(inputs), targets)


def move_to_device(
    batch: Any, device: torch.device, *, non_blocking: bool, channels_last: bool = False
) -> Any:
    """Move tensors nested in tuples, lists and dicts; other leaves (strings, ints) are left as they are.

    Runs once per step, so the common case, a flat tuple or list of tensors already on the device (any batch on
    CPU), returns the batch itself after one check per tensor: on a sub-millisecond CPU step every microsecond
    shows.
    """
    kind = type(batch)
    if not channels_last and (kind is tuple or kind is list):
        for x in batch:
            if not isinstance(x, torch.Tensor) or x.device != device:
                break
        else:
            return batch
    return _move(batch, device, non_blocking, channels_last)


def _move(x: Any, device: torch.device, non_blocking: bool, channels_last: bool) -> Any:
    if isinstance(x, torch.Tensor):
        out = x if x.device == device else x.to(device, non_blocking=non_blocking)
        if channels_last and out.dim() == 4 and out.is_floating_point():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    kind = type(x)
    if kind is tuple or kind is list:
        return kind([_move(v, device, non_blocking, channels_last) for v in x])
    if isinstance(x, Mapping):
        return {k: _move(v, device, non_blocking, channels_last) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # namedtuple
        return kind(*[_move(v, device, non_blocking, channels_last) for v in x])
    if isinstance(x, (list, tuple)):  # their subclasses
        return kind([_move(v, device, non_blocking, channels_last) for v in x])
    return x


def loader_length(loader: Iterable[Any]) -> int | None:
    """Batches in one pass over `loader`, or None for a stream (an IterableDataset's loader has no length)."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


class _Batches:
    """Cycles through a loader forever, counting epochs, without rebuilding anything.

    A dataset shorter than the run is simply iterated again (noted in the results); running out of data is never
    mistaken for divergence.
    """

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self.epoch = 0
        self.batches_this_epoch = 0
        self.batches_per_epoch = loader_length(loader)
        # Started here, where it always was (a loader without a generator draws its seed from torch's RNG), but a
        # loader failing to start (its workers, its dataset's __iter__) fails at the first batch, inside the
        # loop: the data's failure of that step, with what was measured kept.
        self._it: Iterator[Any] | None = None
        self._failed: BaseException | None = None
        try:
            self._it = self._start()
        except USER_FAILURES as exc:
            self._failed = exc

    def _start(self) -> Iterator[Any]:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)  # DistributedSampler: a new order each pass
        return iter(self.loader)

    def next(self) -> Any:
        if self._it is None:
            failed, self._failed = self._failed, None
            if failed is not None:
                raise failed
            self._it = self._start()
        try:
            batch = next(self._it)
        except StopIteration:
            if self.batches_this_epoch == 0:
                raise Fault("data_empty", "data") from None
            self.batches_per_epoch = self.batches_this_epoch
            self.epoch += 1
            self.batches_this_epoch = 0
            self._it = self._start()
            try:
                batch = next(self._it)
            except StopIteration:
                raise Fault("data_one_shot", "data") from None
        self.batches_this_epoch += 1
        return batch

    def close(self) -> None:
        """Stop the loader's worker processes now, so torch stops watching them: a worker that died (the OOM
        killer) is reported by torch's SIGCHLD handler wherever the main process happens to be, and once the loop
        has recorded that failure a second report must not land in the code after it."""
        if self._it is not None:
            shut_down_workers(self._it, self.loader)


def shut_down_workers(iterator: Any, loader: Any = None) -> None:
    """Stop the worker processes behind a DataLoader's iterator, if it has any (a best effort: it runs on the way
    out of a loop, where a failure of its own must not hide the one that ended it).

    A DataLoader with persistent workers keeps its iterator to reuse on the next pass, and a stopped one cannot be
    reused ("Queue is closed" at the next iter()): `loader` forgets it, so that its next pass starts new workers.
    """
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        with contextlib.suppress(Exception):
            shutdown()
    if loader is not None and getattr(loader, "_iterator", None) is iterator:
        loader._iterator = None


class _HostLosses:
    """Brings per-step losses to the host in chunks, without ever making the device wait, and sizes the chunks.

    On an accelerator each loss stays on the device as a detached 0-d tensor; on CUDA every chunk is stacked and
    copied to pinned host memory with a CUDA event, and read once the event has fired (other accelerators, e.g.
    MPS, copy the chunk synchronously: one wait per chunk, not per step). On CPU there is nothing to wait for and
    reading a loss costs a microsecond, so each loss is read as a float at once (and its graph can be freed);
    chunks then only batch the host-side bookkeeping, and with `screen` they grow while the losses stay inside the
    monitor's quiet band: handing the monitor 4 losses at a time between training steps costs several times its
    own work in cold caches. A loss outside the band brings back chunks of `sync_every` for _HOT_STEPS steps, so
    a stop still comes at most sync_every - 1 steps after the monitor confirms it. The loop keeps `low`, `high`,
    `hot_until` and `every` in locals and asks these methods only when they change.
    """

    def __init__(self, device: torch.device, sync_every: int = 4, *, screen: bool = False) -> None:
        self.cuda = device.type == "cuda"
        self.on_device = device.type != "cpu"
        self.read: Callable[[torch.Tensor], Any] = (
            torch.Tensor.detach if self.on_device else torch.Tensor.item
        )
        self.chunk: list[Any] = []
        self.pending: deque[tuple[Any, Any]] = deque()
        self.sync_every = sync_every
        self.screen = screen and not self.on_device
        self.low, self.high = math.inf, -math.inf  # the quiet band; empty until the monitor has one
        self.hot_until = 0
        self.every = sync_every

    def fit(self, loss: torch.Tensor) -> Callable[[torch.Tensor], Any]:
        """The reader for losses shaped like this one: on CPU, `tolist()` reads a 0-d tensor in ~60% of
        `item()`'s time, which shows on a sub-millisecond step; `item()` stays for other one-element shapes."""
        if not self.on_device and loss.dim() == 0:
            self.read = torch.Tensor.tolist
        return self.read

    def add(self, loss: torch.Tensor) -> None:
        self.chunk.append(self.read(loss))

    def off_band(self, value: float, step: int, monitor: DivergenceMonitor) -> None:
        """A loss outside the quiet band: a new lowest loss rebases the band, unless a stop may be near; anything
        else (a rise, NaN, inf) brings back short chunks for _HOT_STEPS steps."""
        band = monitor.rebased_band(self.chunk) if value < self.low else None
        if band is None:
            self.hot_until = step + _HOT_STEPS
        else:
            self.low, self.high = band

    def rechunk(self, monitor: DivergenceMonitor, steps: int, seconds: float) -> None:
        """After a flush: the band as the monitor now sees it, and chunks of about _CALLBACK_INTERVAL_S of steps
        (long ones only where steps are fast, so progress still updates ~1 / _CALLBACK_INTERVAL_S a second)."""
        self.low, self.high = monitor.quiet_band()
        steps_per_interval = _CALLBACK_INTERVAL_S * steps / (seconds + 1e-9)
        self.every = max(self.sync_every, min(_QUIET_CHUNK_MAX, int(steps_per_interval)))

    def flush(self) -> None:
        """Start the copy of the current chunk to the host."""
        if not self.chunk:
            return
        if self.cuda:
            stacked = torch.stack(self.chunk).float()
            host = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
            host.copy_(stacked, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending.append((host, event))
        elif self.on_device:
            self.pending.append((torch.stack(self.chunk).float().cpu().tolist(), None))
        else:
            self.pending.append((self.chunk, None))
        self.chunk = []

    def ready(self, *, wait: bool = False) -> list[list[float]]:
        """Chunks whose copy has finished (all of them when `wait`), in order."""
        out: list[list[float]] = []
        while self.pending:
            values, event = self.pending[0]
            if event is not None:
                if wait:
                    event.synchronize()
                elif not event.query():
                    break
                values = values.tolist()
            self.pending.popleft()
            out.append(values)
        return out


class _Reporter:
    """The host side of the curve: finished chunks go to `losses` and the monitor, and the callback hears of them
    about 1 / _CALLBACK_INTERVAL_S times a second."""

    def __init__(
        self,
        host: _HostLosses,
        monitor: DivergenceMonitor,
        callback: Callable[[StepEvent], None] | None,
        lrs: list[float],
        batches: _Batches,
    ) -> None:
        self.host, self.monitor, self.callback, self.lrs, self.batches = host, monitor, callback, lrs, batches
        self.losses: list[float] = []
        self.best, self.best_upto = math.inf, 0  # the best finite loss among losses[:best_upto]
        self.last_callback = 0.0

    def drain(self, wait: bool) -> bool:
        """Take the chunks that reached the host; True once the monitor says stop."""
        stopped = False
        for values in self.host.ready(wait=wait):
            self.losses.extend(values)
            stopped = self.monitor.update(values) or stopped
        if self.callback is None or not self.losses:
            return stopped
        now = time.perf_counter()
        if now - self.last_callback >= _CALLBACK_INTERVAL_S or wait or stopped:
            self.last_callback = now
            # The running best only feeds the callback, so it is brought up to date here (~20 times a second).
            new = (v for v in self.losses[self.best_upto :] if math.isfinite(v))
            self.best = min(self.best, min(new, default=self.best))
            self.best_upto = n = len(self.losses)
            total = len(self.lrs)
            self.callback(
                StepEvent(step=n, total=total, lr=self.lrs[min(n, total) - 1], loss=self.losses[-1],
                          best_loss=self.best, epoch=self.batches.epoch)
            )  # fmt: skip
        return stopped


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision as the settings ask: bf16/fp16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _make_scaler(device: torch.device, precision: Precision) -> Any:
    if precision != "fp16":
        return None
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type)
    # torch < 2.3 scales on CUDA only; elsewhere fp16 runs unscaled (its scaler would warn and disable itself).
    return torch.cuda.amp.GradScaler(enabled=device.type == "cuda")


def choose_sync_every(device: torch.device, requested: int | None) -> int:
    """Steps per host copy of the losses.

    On a GPU a chunk of 4 keeps the device a few steps ahead of the host while bounding how far a diverged run
    overshoots (the chunk plus the copy in flight). On CPU there is no asynchrony to protect; chunks of 4 are what
    the loop falls back to whenever a loss leaves the monitor's quiet band, so a stop still comes at most 3 steps
    after the divergence is confirmed.
    """
    if requested is not None:
        return max(1, int(requested))
    return 4


def accuracy_counts(
    outputs: Any, targets: Any, loss_fn: Any, *, labels01: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor | int] | None:
    """(correct predictions, predictions) in one validation batch, or None for a layout accuracy cannot read.

    Class scores (..., C) against integer class indices (...) are read by argmax, and against class probabilities
    of their own shape when the loss is a cross-entropy; a loss's ignore_index (padding) is not counted. One score
    per label (the targets' shape, or with a trailing 1) against 0/1 targets is a logit above 0, or a probability
    above 0.5 under BCELoss. Anything else (a regression, a layout of its own) has no accuracy to read.
    `labels01`: whether the targets are all 0 or 1, when the caller already knows (finding out waits for the device).
    """
    if not isinstance(outputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        return None
    one_more = outputs.dim() == targets.dim() + 1 and outputs.shape[:-1] == targets.shape
    if one_more and outputs.shape[-1] > 1 and not targets.is_floating_point():
        correct = outputs.argmax(dim=-1) == targets
        ignored = getattr(loss_fn, "ignore_index", None)
        if isinstance(ignored, int):
            kept = targets != ignored
            return (correct & kept).sum(), kept.sum()
        return correct.sum(), targets.numel()
    same = outputs.shape == targets.shape
    if same and isinstance(loss_fn, torch.nn.CrossEntropyLoss) and outputs.dim() > 1:
        return (outputs.argmax(dim=-1) == targets.argmax(dim=-1)).sum(), targets[..., 0].numel()
    if (same or (one_more and outputs.shape[-1] == 1)) and (
        labels01 if labels01 is not None else _all_labels01(targets)
    ):
        scores = outputs.reshape(targets.shape)
        predicted = scores > (0.5 if isinstance(loss_fn, torch.nn.BCELoss) else 0.0)
        return (predicted == (targets == 1)).sum(), targets.numel()
    return None


def _all_labels01(targets: torch.Tensor) -> bool:
    """Every target is 0 or 1 (a host sync on an accelerator: read it once per batch)."""
    return bool(((targets == 0) | (targets == 1)).all())


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


class _MetricProbe:
    """Evaluates accuracy or loss on a fixed validation subsample: the paper's own range test, kept cheap."""

    def __init__(
        self,
        name: MetricName,
        val_loader: Iterable[Any],
        batches: int,
        device: torch.device,
        *,
        loss_fn: Callable[..., torch.Tensor],
        step_fn: StepFn | None,
        channels_last: bool,
        precision: Precision,
    ) -> None:
        self.name = name
        self.loss_fn = loss_fn
        self.step_fn = step_fn
        self.device = device
        self.precision = precision
        non_blocking = device.type == "cuda"
        self.batches: list[Any] = []
        for batch in val_loader:
            self.batches.append(
                move_to_device(batch, device, non_blocking=non_blocking, channels_last=channels_last)
            )
            if len(self.batches) >= batches:
                break
        if not self.batches:
            raise Fault("val_empty", "val_data")
        if name == "accuracy" and not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in self.batches):
            raise Fault("accuracy_layout", "metric")
        self.steps: list[int] = []
        self.lrs: list[float] = []
        self.values: list[torch.Tensor] = []
        # Per batch, whether its targets are all 0/1: read once in `check`, so no evaluation waits for the device.
        self.labels01: list[bool | None] = [None] * len(self.batches)

    @classmethod
    def for_settings(
        cls,
        settings: RunSettings,
        val_loader: Iterable[Any] | None,
        device: torch.device,
        loss_fn: Callable[..., torch.Tensor],
        step_fn: StepFn | None,
    ) -> _MetricProbe | None:
        """The probe the settings ask for (None for the training loss); checked before any step runs."""
        if settings.metric == "loss":
            return None
        if val_loader is None:
            raise Fault("val_missing", "metric", value=settings.metric)
        return cls(
            settings.metric, val_loader, settings.eval_batches, device, loss_fn=loss_fn, step_fn=step_fn,
            channels_last=settings.channels_last, precision=settings.precision,
        )  # fmt: skip

    @torch.no_grad()
    def check(self, model: torch.nn.Module) -> None:
        """Before the first step: accuracy can read what the model returns for the targets of every validation
        batch (else a Fault that names the shapes), so a layout it cannot read fails as a setup problem, not a run
        that dies at an evaluation."""
        if self.name != "accuracy":
            return
        was_training = model.training
        model.eval()
        try:
            for i, (inputs, targets) in enumerate(self.batches):
                if isinstance(targets, torch.Tensor):
                    self.labels01[i] = _all_labels01(targets)
                with autocast(self.device, self.precision):
                    outputs = model(inputs)
                if accuracy_counts(outputs, targets, self.loss_fn, labels01=self.labels01[i]) is None:
                    raise Fault("accuracy_shapes", "metric", outputs=_shape(outputs), targets=_shape(targets))
        finally:
            model.train(was_training)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, step: int, lr: float) -> None:
        was_training = model.training
        model.eval()
        total = torch.zeros((), device=self.device)
        count = torch.zeros((), device=self.device)
        with autocast(self.device, self.precision):
            for batch, labels01 in zip(self.batches, self.labels01, strict=True):
                if self.name == "accuracy":
                    inputs, targets = batch
                    counted = accuracy_counts(model(inputs), targets, self.loss_fn, labels01=labels01)
                    assert counted is not None  # `check` read every batch's layout before the first step
                    total += counted[0]
                    count += counted[1]
                else:
                    total += (self.step_fn or default_step)(model, batch, self.loss_fn).float()
                    count += 1
        model.train(was_training)
        self.steps.append(step)
        self.lrs.append(lr)
        self.values.append(total / count.clamp(min=1))  # stays on the device until the run ends

    def curve(self, steps: int) -> MetricCurve | None:
        """The evaluations made within the first `steps` steps of the loss curve."""
        kept = sum(step < steps for step in self.steps)
        if not kept:
            return None
        values = torch.stack(self.values[:kept]).cpu().tolist()
        return MetricCurve(
            name=self.name,  # type: ignore[arg-type]
            higher_is_better=self.name == "accuracy",
            steps=self.steps[:kept],
            lrs=self.lrs[:kept],
            values=[v if math.isfinite(v) else None for v in values],
        )


class _Stepper:
    """One optimizer step off the plain path: micro-batches, autocast, fp16 loss scaling with its skipped-step
    accounting, the first step's diagnosis and compile time, and the loss all-reduce under torch.distributed.

    `part` names the user code running now (data, step, optimizer), so a failure can name it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[..., torch.Tensor],
        optimizer: torch.optim.Optimizer,
        step_fn: StepFn | None,
        *,
        device: torch.device,
        settings: RunSettings,
        host: _HostLosses,
        total: int,
        reduce_loss: Callable[[torch.Tensor], torch.Tensor] | None,
        momenta: np.ndarray | None = None,
    ) -> None:
        self.model, self.loss_fn, self.optimizer, self.step_fn = model, loss_fn, optimizer, step_fn
        self.momenta = None if momenta is None else [float(m) for m in momenta]
        self.step = step_fn or default_step
        self.device, self.settings, self.host, self.total = device, settings, host, total
        self.reduce_loss = reduce_loss
        self.scaler = _make_scaler(device, settings.precision)
        self.clip = _clipper(model, settings)
        self.part: Part = "data"
        self.batch: Any = None  # the step's (last micro-)batch, for a non-finite loss's diagnosis
        self.skipped = 0
        self.compile_seconds: float | None = None

    @property
    def plain_ok(self) -> bool:
        """After the first step, the common case needs none of this: one micro-batch, fp32, not distributed."""
        settings = self.settings
        return (
            settings.accumulate == 1
            and settings.precision == "fp32"
            and self.reduce_loss is None
            and self.momenta is None
            and self.clip is None
        )

    def run(self, i: int, next_batch: Callable[[], Any]) -> torch.Tensor | None:
        """Train step i; the loss to record, or None when the fp16 scaler skipped it (the rung is tried again)."""
        accumulate, precision, scaler = self.settings.accumulate, self.settings.precision, self.scaler
        if self.momenta is not None:
            set_momentum(self.optimizer, self.momenta[i])
        step_loss: torch.Tensor | None = None
        for k in range(accumulate):
            self.part = "data"
            raw_batch = next_batch()
            self.part = "step"
            batch = self.batch = move_to_device(
                raw_batch, self.device, non_blocking=self.device.type == "cuda",
                channels_last=self.settings.channels_last,
            )  # fmt: skip
            started = time.perf_counter()
            if i == 0:
                loss = self._first_forward(batch)
            else:
                with autocast(self.device, precision):
                    loss = self.step(self.model, batch, self.loss_fn)
            scaled = loss / accumulate if accumulate > 1 else loss
            if scaler is not None:
                scaled = scaler.scale(scaled)
            if i == 0:
                self._first_backward(scaled)
            else:
                scaled.backward()
            if i == 0 and k == 0 and self.settings.compile:
                self.compile_seconds = time.perf_counter() - started
            # One micro-batch: the loss itself (the host reader detaches or reads it); several: their mean.
            step_loss = loss if step_loss is None else step_loss.detach() + loss.detach()
        assert step_loss is not None
        if accumulate > 1:
            step_loss = step_loss / accumulate
        self.part = "optimizer"
        if self.clip is not None:
            if scaler is not None:
                scaler.unscale_(self.optimizer)  # clip the true gradients, as a training loop under fp16 does
            self.part = "clip"
            if i == 0:
                refuse_sparse_clip(self.model)
            self.clip()
            self.part = "optimizer"
        if not self._optimizer_step():
            return None
        return step_loss if self.reduce_loss is None else self.reduce_loss(step_loss.detach())

    def _first_backward(self, loss: torch.Tensor) -> None:
        """The first backward, diagnosed: a step function that calls backward() itself, as the training loop it
        was taken from did, fails here, and that is the setup's fault (a Fault), not a failure mid-run."""
        try:
            loss.backward()
        except RuntimeError as exc:
            if self.step_fn is not None and "backward through the graph a second time" in str(exc):
                raise Fault("step_backward_twice", "step") from exc
            raise

    def _first_forward(self, batch: Any) -> torch.Tensor:
        """The first micro-batch, diagnosed: a failure here means the setup does not fit (a Fault)."""
        # Without a step function the loss function made the loss: a bad one is its fault, not the model's.
        part: Part = "step" if self.step_fn is not None else "loss"
        graph = graph_data_fault(batch)
        if graph is not None:
            raise graph
        try:
            with judged_warnings(part), autocast(self.device, self.settings.precision):
                loss = self.step(
                    self.model, batch, self.loss_fn if self.step_fn else judged_loss(self.loss_fn)
                )
            check_scalar_loss(loss, part)
            # One read of the first loss, on any device: nothing has stepped yet, so a non-finite one is the
            # data's or the setup's, never the LR's, and the whole curve would be measured for nothing.
            first = float(loss.detach().float())
            if not math.isfinite(first):
                raise (
                    nonfinite_data_fault(batch, first)
                    or nonfinite_weights_fault(self.model, first)
                    or Fault("loss_nonfinite_start", part, value=str(first))
                )
            self.host.fit(loss)
        except Fault:
            raise
        except USER_FAILURES as exc:
            if _worker_died(exc):  # not a setup that does not fit
                raise
            raise diagnose_first_batch(self.model, batch, self.loss_fn, self.step_fn, exc) from exc
        return loss

    def _optimizer_step(self) -> bool:
        """Step the optimizer; False when fp16's GradScaler skipped the step (inf/NaN gradients)."""
        if self.scaler is None:
            self.optimizer.step()
            return True
        scale_before = self.scaler.get_scale()  # fp16 only: a host read per step, the price of skip detection
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.get_scale() >= scale_before:
            return True
        self.skipped += 1
        if self.skipped > self.total:
            raise Fault("fp16_overflow", "precision")
        return False


def _clipper(model: torch.nn.Module, settings: RunSettings) -> Callable[[], Any] | None:
    """The gradient clipping the settings ask for, on the model's parameters, as a training loop calls it; None
    without clipping."""
    params = list(model.parameters())
    if settings.clip_grad_norm is not None:
        max_norm = settings.clip_grad_norm
        return lambda: torch.nn.utils.clip_grad_norm_(params, max_norm)
    if settings.clip_grad_value is not None:
        clip_value = settings.clip_grad_value
        return lambda: torch.nn.utils.clip_grad_value_(params, clip_value)
    return None


def set_momentum(optimizer: torch.optim.Optimizer, momentum: float) -> None:
    """Momentum for SGD-like optimizers, beta1 for the Adam family: what OneCycleLR cycles."""
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, *group["betas"][1:])
        elif "momentum" in group:
            group["momentum"] = momentum


def run_loop(
    model: torch.nn.Module,
    loader: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lrs: np.ndarray,
    *,
    device: torch.device,
    settings: RunSettings | None = None,
    step_fn: StepFn | None = None,
    val_loader: Iterable[Any] | None = None,
    callback: Callable[[StepEvent], None] | None = None,
    reduce_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    momenta: np.ndarray | None = None,
    stop_on_rise: bool = True,
    wait_out_jumps: bool = True,
) -> EngineOutput:
    """Train one optimizer step per rung of `lrs`, stopping early on divergence, a non-finite loss, an error or Ctrl-C.

    `momenta`, if given, sets the momentum (beta1 for the Adam family) of each step too, as a one-cycle schedule
    does: the self-check trains with the exported schedule through this same loop. Without `stop_on_rise` only a
    non-finite loss stops it: the monitor's rise is measured against the fall so far, which suits a rising LR, not
    a stay at one LR whose loss may bounce well above a small early fall and still train on. `wait_out_jumps` is
    the monitor's `wait`: on for a range test, off for a self-check trial, whose stop is a verdict on its LR.

    Parameter groups keep the ratios of their LRs as the optimizer has them on entry (`clrfind.groups.lr_ratios`):
    `lrs` drives the group with the largest LR, the others follow at their ratio.

    The model, optimizer and loss must already be on `device`. `reduce_loss` (e.g. an all-reduce mean under
    torch.distributed) is applied to each chunk before it leaves the device, so every rank sees the same curve and
    stops at the same step. A setup that does not fit (a bad batch layout on the first step, no validation data for
    the metric) raises a `Fault` before anything is measured; later failures are returned in
    `EngineOutput.error` with the steps recorded so far.
    """
    settings = settings or RunSettings()
    refuse_undrivable(model, optimizer, loss_fn, step_fn)
    refuse_sorted(loader)
    total = len(lrs)
    probe = _MetricProbe.for_settings(settings, val_loader, device, loss_fn, step_fn)
    batches = _Batches(loader)
    # Not under torch.distributed: chunk lengths would follow this process's step time, and ranks that flushed at
    # different steps would stop at different steps and leave the others waiting in an all-reduce.
    host = _HostLosses(device, choose_sync_every(device, settings.sync_every), screen=reduce_loss is None)
    monitor = DivergenceMonitor(total_steps=total, lrs=lrs, rise=stop_on_rise, wait=wait_out_jumps)
    lr_list = [float(x) for x in lrs]
    reporter = _Reporter(host, monitor, callback, lr_list, batches)
    stepper = _Stepper(
        model, loss_fn, optimizer, step_fn, device=device, settings=settings, host=host, total=total,
        reduce_loss=reduce_loss, momenta=momenta,
    )  # fmt: skip
    model.train()
    start = time.perf_counter()
    try:
        steps, failure = _train(
            model, optimizer, lr_list, batches, host, reporter, stepper, probe, settings, start
        )
    except RuntimeError as exc:  # a dead worker's report that landed while the loop handled a failure
        if _failed_part(exc, "step") != "data":
            raise
        steps, failure = len(reporter.losses), ("data", exc)
    finally:
        batches.close()
    seconds = time.perf_counter() - start

    stop_reason, stop_detail = "completed", f"ran all {total} steps"
    error, error_part, stop_signal = None, None, None
    n = len(reporter.losses)
    notes: list[str] = []
    if isinstance(failure, RefusedNonFinite):
        notes.append(f"step {failure.step} raised {failure.why}; read as a non-finite loss")
        failure = None
    if isinstance(failure, KeyboardInterrupt):
        stop_signal = stops.signal_of(failure)
        stop_reason, stop_detail = "interrupted", stops.stop_detail(stop_signal)
    elif failure is not None:
        stop_reason, (error_part, error) = "error", failure
    elif monitor.stop_index is not None:
        stop_reason, stop_detail = monitor.stop_reason or "diverged", monitor.detail
        # The loop stops at the end of the chunk in which the monitor confirmed the stop, and on CPU chunks are
        # sized by wall time: the steps past the confirmation would make the same seed's curve end a step or
        # two apart between runs. The curve ends where the stop was confirmed, so a rerun repeats it exactly.
        n = min(n, monitor.stop_index + 1)
    if batches.epoch > 0:
        notes.append(
            f"the training data was iterated {batches.epoch + (batches.batches_this_epoch > 0):d} times "
            f"({batches.batches_per_epoch} batches each); it ran out and was restarted, which is not divergence"
        )
    if stepper.skipped:
        notes.append(
            f"fp16: the GradScaler skipped {stepper.skipped} steps (overflow); they did not advance the LR"
        )
    return EngineOutput(
        lrs=np.asarray(
            lrs[:n], dtype=float
        ),  # a skipped fp16 step does not advance the rung: rungs match losses
        losses=np.asarray(reporter.losses[:n], dtype=float),
        stop_reason=stop_reason,
        stop_detail=stop_detail,
        steps_per_epoch=settings.steps_per_epoch(batches.batches_per_epoch),
        data_restarts=batches.epoch,
        seconds=seconds,
        compile_seconds=stepper.compile_seconds,
        metric=probe.curve(n) if probe is not None else None,
        error=error,
        error_step=steps if error is not None else None,
        error_part=error_part,
        stop_signal=stop_signal,
        notes=notes,
        trained_steps=steps,
    )


@dataclass(frozen=True)
class RefusedNonFinite:
    """A step whose code raised on weights the step before had made non-finite: a NaN loss, not a failure."""

    step: int
    why: str


def _failed_part(exc: BaseException, running: Part) -> Part:
    """The part whose code failed: the one `running`, except where the exception says otherwise.

    A DataLoader worker that dies (killed by the OOM killer, a segfault in a dataset's C code) is reported by
    torch's SIGCHLD handler in the main process, wherever it happens to be, usually inside the model's forward:
    it is still the data's fault.
    """
    if isinstance(exc, Fault):
        return exc.part
    # A label past the classes is raised in the loss, but it is the data's.
    if _worker_died(exc) or label_out_of_range(exc) is not None:
        return "data"
    return running


def _worker_died(exc: BaseException) -> bool:
    """torch's report of a DataLoader worker that died, raised wherever the main process happens to be."""
    return isinstance(exc, RuntimeError) and "DataLoader worker" in str(exc)


def _train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_list: list[float],
    batches: _Batches,
    host: _HostLosses,
    reporter: _Reporter,
    stepper: _Stepper,
    probe: _MetricProbe | None,
    settings: RunSettings,
    start: float,
) -> tuple[int, tuple[Part, BaseException] | KeyboardInterrupt | RefusedNonFinite | None]:
    """The loop itself: (steps trained, what stopped it early: Ctrl-C, (part, exception) or a step that refused
    non-finite weights, else None).

    It runs once per step, so everything it reads is a local, and after the first step the common case (one
    micro-batch, fp32, no probe, not distributed) takes the plain path: the work of a hand-written loop, without a
    Python call or a branch it does not need. On a sub-millisecond CPU step each one shows.
    """
    total, device, monitor = len(lr_list), stepper.device, reporter.monitor
    non_blocking, channels_last = device.type == "cuda", settings.channels_last
    step, loss_fn, next_batch = stepper.step, stepper.loss_fn, batches.next
    groups = list(zip(optimizer.param_groups, lr_ratios(optimizer), strict=True))
    plain_ok = stepper.plain_ok and probe is None
    eval_every = settings.eval_interval(total)
    screen, sync_every, chunk = host.screen, host.sync_every, host.chunk
    low, high, hot_until, every = host.low, host.high, host.hot_until, host.every
    plain, origin, i = False, None, 0
    batch = prev = None  # this step's batch and the one before, for a non-finite loss's diagnosis
    failure: tuple[Part, BaseException] | KeyboardInterrupt | RefusedNonFinite | None = None
    try:
        if probe is not None:
            probe.check(model)
        # A first Ctrl-C or SIGTERM stops the loop here, between steps, with every step so far kept.
        with stops.allowed():
            while i < total:
                lr = lr_list[i]
                for group, ratio in groups:
                    group["lr"] = lr * ratio
                optimizer.zero_grad(set_to_none=True)
                if plain:
                    origin = "data"
                    raw_batch = next_batch()
                    origin = "step"
                    prev = batch
                    batch = move_to_device(
                        raw_batch, device, non_blocking=non_blocking, channels_last=channels_last
                    )
                    step_loss = step(model, batch, loss_fn)
                    step_loss.backward()
                    origin = "optimizer"
                    optimizer.step()
                else:
                    origin = None  # the stepper tracks its own part
                    step_loss = stepper.run(i, next_batch)
                    prev, batch = batch, stepper.batch
                    if step_loss is None:
                        continue  # fp16 skipped the step: this LR is tried again
                    plain = plain_ok
                    if i == 0:
                        read_loss = host.read  # fitted to the first loss
                value = read_loss(step_loss)
                chunk.append(value)  # host.add without a Python call
                i += 1
                if probe is not None and (i % eval_every == 0 or i == total):
                    origin = "step"
                    probe.evaluate(model, i - 1, lr)
                if screen and not low <= value <= high:  # also true for NaN and inf
                    if not math.isfinite(value):
                        # This batch's NaN makes its own loss NaN; an inf may only show in the previous batch's
                        # gradients (a tanh saturates it, its weight's gradient does not), which made the weights so.
                        fault = nonfinite_data_fault(batch, value) or nonfinite_data_fault(prev, value)
                        if fault is not None:
                            # The data's fault: the step is not on the curve, as for a step that raised.
                            chunk.pop()
                            i -= 1
                            raise fault
                    host.off_band(value, i, monitor)
                    low, high, hot_until = host.low, host.high, host.hot_until
                if len(chunk) >= (sync_every if i <= hot_until else every) or i == total:
                    host.flush()
                    chunk = host.chunk
                    if reporter.drain(wait=False):
                        break
                    if screen:
                        host.rechunk(monitor, i, time.perf_counter() - start)
                        low, high, every = host.low, host.high, host.every
    except KeyboardInterrupt as exc:
        failure = exc
    except USER_FAILURES as exc:
        if isinstance(exc, Fault) and i == 0:
            raise  # nothing was measured: the setup does not fit
        part = _failed_part(exc, origin or stepper.part)
        why = (
            None if isinstance(exc, Fault) or part == "data" or i == total else refused_nonfinite(model, exc)
        )
        if why is None:
            failure = (part, exc)
        else:  # the LR blew the weights up: this step's loss is NaN, and the monitor stops on it as on any NaN
            host.chunk.append(math.nan)
            i += 1
            failure = RefusedNonFinite(i - 1, why)
    finally:
        with contextlib.suppress(Exception):
            host.flush()
            reporter.drain(wait=True)
    return i, failure
