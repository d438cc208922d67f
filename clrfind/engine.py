"""The training loop of the range test.

The loop is the floor cost of a range test (forward, backward, optimizer step) plus as little as possible: the LR is
set on the param groups, and each step's loss stays on the device as a detached 0-d tensor. Every `sync_every` steps
the chunk is stacked and copied to the host without blocking (pinned memory and a CUDA event on GPUs); the host
checks divergence on chunks whose copy has finished, so the GPU never waits on Python, and the run still stops a
few steps after the loss blows up. On CPU, where nothing runs ahead of Python, each loss is read as a float at once;
while the losses stay inside the divergence monitor's quiet band the chunks grow (up to 64 steps, or 50 ms of
steps), so the monitor runs on long chunks with warm caches, and a loss outside the band shortens them again at once.

The engine reports through a callback, never prints, and turns a failure or Ctrl-C inside the loop into a stop
reason with the steps recorded so far, so the caller can always save what was measured.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from clrfind.analysis import DivergenceMonitor
from clrfind.errors import SetupError
from clrfind.events import StepEvent
from clrfind.results import MetricCurve

StepFn = Callable[[torch.nn.Module, Any, Callable[..., torch.Tensor]], torch.Tensor]
Precision = Literal["fp32", "bf16", "fp16"]
MetricName = Literal["loss", "accuracy", "val_loss"]

# Callbacks are throttled: a progress bar needs ~20 updates a second, not one per step of a 1 ms model.
_CALLBACK_INTERVAL_S = 0.05
# CPU: the longest chunk of losses held back while they stay in the monitor's quiet band, and how long a loss
# outside it keeps the chunks short (a level is the median of 5 losses, confirmed over 3 steps).
_QUIET_CHUNK_MAX = 64
_HOT_STEPS = 8


@dataclass(frozen=True)
class EngineOptions:
    """How to run the loop; all of it comes from the spec or the library call."""

    precision: Precision = "fp32"
    accumulate: int = 1
    sync_every: int | None = None
    metric: MetricName = "loss"
    eval_every: int | None = None
    eval_batches: int = 4
    channels_last: bool = False
    compiled: bool = False
    step_target: str = "the default step (loss_fn(model(inputs), targets))"
    data_target: str = "data.train"
    optimizer_target: str = "optimizer"


@dataclass
class EngineOutput:
    """Everything the loop measured, also when it stopped early; `error` holds a failure to re-raise after saving."""

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
    error_origin: str | None = None
    skipped_steps: int = 0
    notes: list[str] = field(default_factory=list)


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one line, for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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


def describe_batch(batch: Any) -> str:
    """Shapes of a batch for messages and `clrfind check`: `(Tensor[64, 3, 32, 32] float32, Tensor[64] int64)`."""
    if isinstance(batch, torch.Tensor):
        return f"Tensor[{', '.join(map(str, batch.shape))}] {str(batch.dtype).removeprefix('torch.')}"
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{k}: {describe_batch(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (list, tuple)):
        inner = ", ".join(describe_batch(v) for v in batch)
        return f"({inner})" if isinstance(batch, tuple) else f"[{inner}]"
    return type(batch).__name__


class _Batches:
    """Cycles through a loader forever, counting epochs, without rebuilding anything.

    A dataset shorter than the run is simply iterated again (noted in the results); running out of data is never
    mistaken for divergence.
    """

    def __init__(self, loader: Iterable[Any], *, data_target: str) -> None:
        self.loader = loader
        self.data_target = data_target
        self.epoch = 0
        self.batches_this_epoch = 0
        self.batches_per_epoch: int | None = None
        with contextlib.suppress(TypeError):
            self.batches_per_epoch = len(loader)  # type: ignore[arg-type]
        self._it: Iterator[Any] = self._start()

    def _start(self) -> Iterator[Any]:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)  # DistributedSampler: a new order each pass
        return iter(self.loader)

    def next(self) -> Any:
        try:
            batch = next(self._it)
        except StopIteration:
            if self.batches_this_epoch == 0:
                raise SetupError(
                    f"{self.data_target}: the data loader yielded no batches",
                    hint="check that the dataset is not empty and that batch_size <= its length with drop_last",
                ) from None
            self.batches_per_epoch = self.batches_this_epoch
            self.epoch += 1
            self.batches_this_epoch = 0
            self._it = self._start()
            try:
                batch = next(self._it)
            except StopIteration:
                raise SetupError(
                    f"{self.data_target}: the data yielded nothing on its second pass (a one-shot iterator?)",
                    hint="return a Dataset or DataLoader that can be iterated again, or run fewer steps",
                ) from None
        self.batches_this_epoch += 1
        return batch


class _HostLosses:
    """Brings per-step losses to the host in chunks, without ever making the device wait.

    On an accelerator each loss stays on the device as a detached 0-d tensor; on CUDA every chunk is stacked and
    copied to pinned host memory with a CUDA event, and read once the event has fired (other accelerators, e.g.
    MPS, copy the chunk synchronously: one wait per chunk, not per step). On CPU there is nothing to wait for and
    reading a loss costs a microsecond, so each loss is read as a float at once (and its graph can be freed);
    chunks then only batch the host-side bookkeeping.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.on_device = device.type != "cpu"
        self.read: Callable[[torch.Tensor], Any] = (
            torch.Tensor.detach if self.on_device else torch.Tensor.item
        )
        self.chunk: list[Any] = []
        self.pending: deque[tuple[Any, Any]] = deque()

    def fit(self, loss: torch.Tensor) -> Callable[[torch.Tensor], Any]:
        """The reader for losses shaped like this one: on CPU, `tolist()` reads a 0-d tensor in ~60% of
        `item()`'s time, which shows on a sub-millisecond step; `item()` stays for other one-element shapes."""
        if not self.on_device and loss.dim() == 0:
            self.read = torch.Tensor.tolist
        return self.read

    def add(self, loss: torch.Tensor) -> None:
        self.chunk.append(self.read(loss))

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


def _autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _make_scaler(device: torch.device, precision: Precision) -> Any:
    if precision != "fp16":
        return None
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type)
    return torch.cuda.amp.GradScaler()  # torch < 2.3


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


def _check_scalar_loss(loss: Any, step_target: str) -> None:
    if not isinstance(loss, torch.Tensor):
        raise SetupError(
            f"{step_target} returned {type(loss).__name__}, not a loss tensor",
            hint="return the scalar loss tensor (before .item())",
        )
    if loss.numel() != 1:
        raise SetupError(
            f"{step_target} returned a loss of shape {tuple(loss.shape)}, not a scalar",
            hint="reduce it (e.g. reduction='mean' in the loss, or .mean() in the step)",
        )
    if not loss.requires_grad:
        raise SetupError(
            f"{step_target} returned a loss that does not require grad",
            hint="compute it from the model's output without torch.no_grad() or .detach()",
        )


def diagnose_first_batch(
    model: torch.nn.Module,
    batch: Any,
    loss_fn: Callable[..., torch.Tensor],
    step_fn: StepFn | None,
    exc: BaseException,
    *,
    step_target: str,
) -> SetupError:
    """Turn an exception on the very first batch into a setup error that says what did not fit."""
    if step_fn is None and not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        return SetupError(
            f"data.train: a batch is {describe_batch(batch)}, not an (inputs, targets) pair",
            hint="add `step: {target: file.py:fn}` with fn(model, batch, loss_fn) -> loss for other batch layouts",
        )
    if step_fn is None:
        inputs, targets = batch
        try:
            with torch.no_grad():
                out = model(inputs)
        except Exception as inner:
            return SetupError(
                f"model.target: the model failed on inputs {describe_batch(inputs)}: "
                f"{type(inner).__name__}: {first_line(inner)}",
                hint="check the model's expected input shape against data.train",
            )
        return SetupError(
            f"loss.target: the loss rejected model output {describe_batch(out)} with targets "
            f"{describe_batch(targets)}: {type(exc).__name__}: {first_line(exc)}",
            hint="make the model's output and the targets fit the loss (shapes, dtypes, number of classes)",
        )
    return SetupError(
        f"{step_target} failed on the first batch {describe_batch(batch)}: {type(exc).__name__}: {first_line(exc)}",
        hint="run `clrfind check SPEC --debug` for the full traceback",
    )


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
            raise SetupError(
                "data.val: the validation loader yielded no batches", hint="check the val dataset"
            )
        if name == "accuracy" and not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in self.batches):
            raise SetupError(
                "range_test.metric: accuracy needs (inputs, targets) validation batches",
                hint="use metric: val_loss with a custom step, or return (inputs, targets) from data.val",
            )
        self.steps: list[int] = []
        self.lrs: list[float] = []
        self.values: list[torch.Tensor] = []

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, step: int, lr: float) -> None:
        was_training = model.training
        model.eval()
        total = torch.zeros((), device=self.device)
        count = 0
        with _autocast(self.device, self.precision):
            for batch in self.batches:
                if self.name == "accuracy":
                    inputs, targets = batch
                    pred = model(inputs).argmax(dim=-1)
                    total += (pred == targets).sum().float()
                    count += targets.numel()
                else:
                    total += (self.step_fn or default_step)(model, batch, self.loss_fn).float()
                    count += 1
        model.train(was_training)
        self.steps.append(step)
        self.lrs.append(lr)
        self.values.append(total / max(count, 1))  # stays on the device until the run ends

    def curve(self) -> MetricCurve | None:
        if not self.values:
            return None
        values = torch.stack(self.values).cpu().tolist()
        return MetricCurve(
            name=self.name,  # type: ignore[arg-type]
            higher_is_better=self.name == "accuracy",
            steps=self.steps,
            lrs=self.lrs,
            values=[v if math.isfinite(v) else None for v in values],
        )


def run_loop(
    model: torch.nn.Module,
    loader: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lrs: np.ndarray,
    *,
    device: torch.device,
    step_fn: StepFn | None = None,
    val_loader: Iterable[Any] | None = None,
    options: EngineOptions | None = None,
    callback: Callable[[StepEvent], None] | None = None,
    reduce_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EngineOutput:
    """Train one optimizer step per rung of `lrs`, stopping early on divergence, a non-finite loss, an error or Ctrl-C.

    The model, optimizer and loss must already be on `device`. `reduce_loss` (e.g. an all-reduce mean under
    torch.distributed) is applied to each chunk before it leaves the device, so every rank sees the same curve and
    stops at the same step. Exceptions on the very first batch are raised as `SetupError` (the spec does not fit the
    data); later ones are returned in `EngineOutput.error` with the steps recorded so far.
    """
    opts = options or EngineOptions()
    total = len(lrs)
    step = step_fn or default_step
    non_blocking = device.type == "cuda"
    sync_every = choose_sync_every(device, opts.sync_every)
    host = _HostLosses(device)
    monitor = DivergenceMonitor(total_steps=total, lrs=lrs)
    batches = _Batches(loader, data_target=opts.data_target)
    scaler = _make_scaler(device, opts.precision)
    probe = None
    if opts.metric != "loss":
        if val_loader is None:
            raise SetupError(
                f"range_test.metric: {opts.metric} needs data.val", hint="add data.val to the spec"
            )
        probe = _MetricProbe(
            opts.metric,
            val_loader,
            opts.eval_batches,
            device,
            loss_fn=loss_fn,
            step_fn=step_fn,
            channels_last=opts.channels_last,
            precision=opts.precision,
        )
    eval_every = opts.eval_every or max(1, total // 30)
    mixed = opts.precision != "fp32"

    host_losses: list[float] = []
    best, best_upto = math.inf, 0  # the best finite loss among host_losses[:best_upto]
    stop_reason, stop_detail = "completed", f"ran all {total} steps"
    error: BaseException | None = None
    error_step: int | None = None
    origin = opts.data_target  # which user code runs now, to name it if it raises
    skipped = 0
    compile_seconds: float | None = None
    last_callback = 0.0
    model.train()
    lr_list = [float(x) for x in lrs]
    start = time.perf_counter()

    def drain(wait: bool) -> bool:
        nonlocal best, best_upto, last_callback
        stopped = False
        for values in host.ready(wait=wait):
            host_losses.extend(values)
            stopped = monitor.update(values) or stopped
        if callback is None or not host_losses:
            return stopped
        now = time.perf_counter()
        if now - last_callback >= _CALLBACK_INTERVAL_S or wait or stopped:
            last_callback = now
            # The running best only feeds the callback, so it is brought up to date here (~20 times a second).
            new = (v for v in host_losses[best_upto:] if math.isfinite(v))
            best = min(best, min(new, default=best))
            best_upto = n = len(host_losses)
            callback(
                StepEvent(
                    step=n,
                    total=total,
                    lr=lr_list[min(n, total) - 1],
                    loss=host_losses[-1],
                    best_loss=best,
                    epoch=batches.epoch,
                )
            )
        return stopped

    # The loop runs once per step: options are read into locals once, and the per-step path (no accumulation,
    # fp32, no probe) takes as few branches as possible; on a sub-millisecond CPU step each one shows.
    accumulate, channels_last = opts.accumulate, opts.channels_last
    data_target, step_target, optimizer_target = opts.data_target, opts.step_target, opts.optimizer_target
    groups, read_loss, chunk = optimizer.param_groups, host.read, host.chunk
    # On CPU each loss is a float at once, so the chunks can grow while the losses stay inside the monitor's
    # quiet band: handing the monitor 4 losses at a time between training steps costs several times its own
    # work in cold caches. A loss outside the band brings back chunks of `sync_every` for HOT_STEPS steps, so a
    # stop still comes at most sync_every - 1 steps after the monitor confirms it.
    # Not under torch.distributed: the chunk length follows this process's step time, and ranks that flushed at
    # different steps would stop at different steps and leave the others waiting in an all-reduce.
    screen = not host.on_device and reduce_loss is None
    low, high = math.inf, -math.inf  # the quiet band; empty until the monitor has one
    hot_until, every = 0, sync_every
    # After the first step, the common case (one micro-batch, fp32, no probe, not distributed) takes the plain
    # path: the work of a hand-written loop, without the branches the other options need.
    plain_ok = accumulate == 1 and scaler is None and not mixed and probe is None and reduce_loss is None
    plain, next_batch = False, batches.next
    i = 0
    try:
        while i < total:
            lr = lr_list[i]
            for group in groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            if plain:
                origin = data_target
                raw_batch = next_batch()
                origin = step_target
                batch = move_to_device(
                    raw_batch, device, non_blocking=non_blocking, channels_last=channels_last
                )
                step_loss = step(model, batch, loss_fn)
                step_loss.backward()
                origin = optimizer_target
                optimizer.step()
            else:
                step_loss: torch.Tensor | None = None
                for _ in range(accumulate):
                    origin = data_target
                    raw_batch = next_batch()
                    origin = step_target
                    batch = move_to_device(
                        raw_batch, device, non_blocking=non_blocking, channels_last=channels_last
                    )
                    if i == 0:
                        t0 = time.perf_counter()
                        try:
                            with _autocast(device, opts.precision):
                                loss = step(model, batch, loss_fn)
                            _check_scalar_loss(loss, step_target)
                            read_loss = host.fit(loss)
                        except SetupError:
                            raise
                        except Exception as exc:
                            raise diagnose_first_batch(
                                model, batch, loss_fn, step_fn, exc, step_target=step_target
                            ) from exc
                    elif mixed:
                        with _autocast(device, opts.precision):
                            loss = step(model, batch, loss_fn)
                    else:
                        loss = step(model, batch, loss_fn)
                    scaled = loss / accumulate if accumulate > 1 else loss
                    if scaler is None:
                        scaled.backward()
                    else:
                        scaler.scale(scaled).backward()
                    # One micro-batch: the loss itself (the host reader detaches or reads it); several: their mean.
                    step_loss = loss if step_loss is None else step_loss.detach() + loss.detach()
                    if i == 0 and opts.compiled:
                        compile_seconds = time.perf_counter() - t0
                assert step_loss is not None
                if accumulate > 1:
                    step_loss = step_loss / accumulate
                origin = optimizer_target
                if scaler is not None:
                    scale_before = (
                        scaler.get_scale()
                    )  # fp16 only: a host read per step, the price of skip detection
                    scaler.step(optimizer)
                    scaler.update()
                    if scaler.get_scale() < scale_before:
                        skipped += 1  # inf/NaN gradients: the step was skipped, so this LR is tried again
                        if skipped > total:
                            raise SetupError(
                                "precision: fp16 GradScaler skipped every step (gradients overflow)",
                                hint="use precision: bf16 or fp32",
                            )
                        continue
                else:
                    optimizer.step()
                if reduce_loss is not None:
                    step_loss = reduce_loss(step_loss.detach())
                plain = plain_ok
            value = read_loss(step_loss)
            chunk.append(value)  # host.add without a Python call
            i += 1
            if probe is not None and (i % eval_every == 0 or i == total):
                probe.evaluate(model, i - 1, lr)
            if screen and not low <= value <= high:  # also true for NaN and inf
                band = monitor.rebased_band(chunk) if value < low else None  # a new lowest loss
                if band is None:
                    hot_until = i + _HOT_STEPS
                else:
                    low, high = band
            if len(chunk) >= (sync_every if i <= hot_until else every) or i == total:
                host.flush()
                chunk = host.chunk
                if drain(wait=False):
                    break
                if screen:
                    low, high = monitor.quiet_band()
                    # Long chunks only where steps are fast: progress still updates ~1 / _CALLBACK_INTERVAL_S.
                    steps_per_interval = _CALLBACK_INTERVAL_S * i / (time.perf_counter() - start + 1e-9)
                    every = max(sync_every, min(_QUIET_CHUNK_MAX, int(steps_per_interval)))
    except KeyboardInterrupt:
        stop_reason, stop_detail = "interrupted", "interrupted by the user (Ctrl-C)"
    except Exception as exc:
        if isinstance(exc, SetupError) and i == 0:
            raise  # nothing was measured: the spec does not fit the data
        error, error_step, error_origin = exc, i, origin
        stop_reason = "error"
        stop_detail = f"{origin} raised {type(exc).__name__} at step {i}: {first_line(exc)}"
    finally:
        with contextlib.suppress(Exception):
            host.flush()
            drain(wait=True)
    seconds = time.perf_counter() - start

    n = len(host_losses)
    if monitor.stop_index is not None and stop_reason == "completed":
        stop_reason = monitor.stop_reason or "diverged"
        stop_detail = monitor.detail
    notes: list[str] = []
    if batches.epoch > 0:
        notes.append(
            f"the training data was iterated {batches.epoch + (batches.batches_this_epoch > 0):d} times "
            f"({batches.batches_per_epoch} batches each); it ran out and was restarted, which is not divergence"
        )
    if skipped:
        notes.append(f"fp16: the GradScaler skipped {skipped} steps (overflow); they did not advance the LR")
    bpe = batches.batches_per_epoch
    steps_per_epoch = max(1, bpe // opts.accumulate) if bpe else None
    return EngineOutput(
        lrs=np.asarray(lrs[:n], dtype=float),  # a skipped fp16 step does not advance i: rungs match losses
        losses=np.asarray(host_losses[:n], dtype=float),
        stop_reason=stop_reason,
        stop_detail=stop_detail,
        steps_per_epoch=steps_per_epoch,
        data_restarts=batches.epoch,
        seconds=seconds,
        compile_seconds=compile_seconds,
        metric=probe.curve() if probe is not None else None,
        error=error,
        error_step=error_step,
        error_origin=error_origin if error is not None else None,
        skipped_steps=skipped,
        notes=notes,
    )
