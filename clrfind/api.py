"""The library API: `range_test` for notebooks and scripts, `run_spec` for the CLI. Both return a RangeTestResult.

`range_test` works on the caller's own objects and leaves them bit-for-bit as they were (weights, optimizer state,
train/eval mode, device, RNG states), also when the run fails, from a copy on the host or on disk
(`clrfind.state`). `run_spec` builds everything fresh from a spec and
always saves what was measured, even when the run fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import inspect
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clrfind import __version__, stops
from clrfind.analysis import bounds_for, smooth
from clrfind.analysis.bounds import (
    DIVERGENCE_HEADROOM,
    DIVERGENCE_STEP,
    RANGE_FACTOR,
    curve_quantity,
    plateau_advice,
)
from clrfind.analysis.divergence import two_digits
from clrfind.errors import OutputError, RunError, RunInterrupted, UsageError, describe_exception, short_repr
from clrfind.faults import (
    BCE_SCORES,
    Fault,
    Terms,
    is_bce_of_scores,
    is_one_sample_norm,
    label_out_of_range,
    labels_range_advice,
    library_terms,
    spec_terms,
)
from clrfind.fileio import check_writable_dir, folder_lock
from clrfind.groups import describe_groups, differs, json_option
from clrfind.ladder import ModeChoice, describe_ladder
from clrfind.results import (
    PLOT_NAME,
    RESULTS_NAME,
    SCHEDULE_NAME,
    Bounds,
    OptimizerRef,
    ParamGroup,
    RangeTestResult,
    Timing,
    Verification,
    finite_or_none,
    format_lr,
    format_seconds,
    to_json,
)
from clrfind.settings import DEFAULT_MAX_LR, DEFAULT_MIN_LR, RunSettings, TrainingLength, short_test
from clrfind.spec import known_keywords
from clrfind.state import (
    MemoryProbe,
    RestoreMode,
    StateSnapshot,
    has_trained_state,
    preserved_state,
    python_rng_kept,
    restore_mode,
)
from clrfind.targets import as_step, step_takes_loss

if TYPE_CHECKING:
    import torch

    from clrfind.distributed import Peers
    from clrfind.engine import EngineOutput
    from clrfind.events import StepEvent
    from clrfind.loggers import ExperimentLogger
    from clrfind.spec import LoadedSpec, Spec


@dataclass(frozen=True)
class RunFiles:
    """Where a spec run wrote its outputs; `schedule` is None when no usable bounds were found."""

    out_dir: Path
    results: Path
    plot: Path | None
    schedule: Path | None
    schedule_error: str | None = None


@dataclass(frozen=True)
class SpecRun:
    """A finished (or stopped) spec run: the result, its files, and facts for the summary."""

    result: RangeTestResult
    files: RunFiles
    param_count: int
    notes: list[str] = field(default_factory=list)


def optimizer_ref(optimizer: torch.optim.Optimizer) -> OptimizerRef:
    """The optimizer's class path and the kwargs that differ from its defaults, so an export rebuilds it."""
    import inspect

    cls = type(optimizer)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs: dict[str, Any] = {}
    for name, value in optimizer.defaults.items():
        if name == "lr" or name not in params:
            continue
        default = params[name].default
        if default is inspect.Parameter.empty or differs(value, default):
            kwargs[name] = json_option(value)
    return OptimizerRef(target=f"{cls.__module__}.{cls.__qualname__}", kwargs=kwargs)


def _torch_version() -> str | None:
    import sys

    torch = sys.modules.get("torch")
    return getattr(torch, "__version__", None)


def make_result(
    out: EngineOutput,
    settings: RunSettings,
    terms: Terms,
    *,
    planned_steps: int,
    device: str,
    optimizer: OptimizerRef | None = None,
    batch_size: int | None = None,
    world_size: int = 1,
    spec: dict[str, Any] | None = None,
    spec_path: str | None = None,
    param_groups: list[ParamGroup] | None = None,
    from_trained_state: bool = False,
) -> RangeTestResult:
    """Analyse the engine's curve and assemble the versioned result; `terms` word a failure for its reader."""
    steps = len(out.losses)
    mode = settings.ladder_mode
    bounds = None
    if steps:
        adaptive = optimizer.name if optimizer is not None and optimizer.adaptive else None
        bounds = bounds_for(
            out.lrs, out.losses, mode=mode, stop_reason=out.stop_reason, max_lr=settings.max_lr, metric=out.metric,
            adaptive=adaptive,
        )  # fmt: skip
    return RangeTestResult(
        clrfind_version=__version__,
        torch_version=_torch_version(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        device=device,
        seed=settings.seed,
        mode=mode,
        min_lr=settings.min_lr,
        max_lr=settings.max_lr,
        planned_steps=planned_steps,
        metric_name=settings.metric,
        lrs=[float(x) for x in out.lrs],
        losses=finite_or_none(out.losses),
        smoothed=finite_or_none(smooth(out.losses)) if steps else [],
        metric=out.metric,
        stop_reason=out.stop_reason,  # type: ignore[arg-type]
        stop_detail=out.stop_text(terms),
        bounds=bounds,
        steps_per_epoch=out.steps_per_epoch,
        training=settings.training_length(out.steps_per_epoch),
        batch_size=batch_size,
        world_size=world_size,
        global_batch_size=batch_size * world_size * settings.accumulate if batch_size else None,
        accumulate=settings.accumulate,
        precision=settings.precision,
        optimizer=optimizer,
        spec=spec,
        spec_path=spec_path,
        notes=out.notes,
        param_groups=param_groups,
        clip_grad_norm=settings.clip_grad_norm,
        clip_grad_value=settings.clip_grad_value,
        from_trained_state=from_trained_state,
        timing=Timing(
            seconds=round(out.seconds, 4),
            seconds_per_step=round(out.seconds / out.steps_trained, 6) if steps else None,
            compile_seconds=out.compile_seconds,
        ),
    )


@known_keywords
def range_test(
    model: torch.nn.Module,
    train_loader: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    *,
    min_lr: float = DEFAULT_MIN_LR,
    max_lr: float = DEFAULT_MAX_LR,
    steps: int | None = None,
    mode: ModeChoice = "auto",
    device: str | torch.device | None = None,
    step_fn: Callable[..., torch.Tensor] | None = None,
    val_loader: Iterable[Any] | None = None,
    metric: str = "loss",
    eval_every: int | None = None,
    eval_batches: int = 4,
    precision: str = "fp32",
    accumulate: int = 1,
    sync_every: int | None = None,
    callback: Callable[[StepEvent], None] | None = None,
    restore: bool | RestoreMode = True,
    seed: int | None = None,
    verify_bounds: bool = True,
    verify_on: str = "auto",
    terms: Terms | None = None,
    progress: bool = True,
    log: Any = None,
    clip_grad_norm: float | None = None,
    clip_grad_value: float | None = None,
    save: str | os.PathLike[str] | None = None,
    training: TrainingLength | Mapping[str, int] | None = None,
) -> RangeTestResult:
    """Run an LR range test on your own model, loader, loss and optimizer (README "Library API" for every argument).

    The LR climbs from `min_lr` to `max_lr` over `steps` optimizer steps (`mode`: "linear" as in Smith (2017), "exp", or
    "auto", exp over more than 1.5 decades) and stops when the loss diverges or becomes non-finite; a loss flat to the
    end with nothing diverging runs again up to a 10x higher end, and one that never falls at any LR runs again with 3x
    the steps. Parameter groups keep their LR ratios (the ladder drives the largest); `clip_grad_norm` /
    `clip_grad_value` clip between backward and step. `restore` (True = "cpu", "disk", False) puts model and optimizer
    back from a host copy or a temporary file, never a second copy on the device; a model in mid-training is tested from
    its state (`result.from_trained_state`). With `verify_bounds` the one cycle is trained, compressed, from the initial
    state, and only a peak that trains is kept (`result.verification`; `verify_on="val"` judges it on `val_loader`). On
    every rank of a torchrun job (a DistributedDataParallel model) the loss is averaged over the ranks and every rank
    returns rank 0's result, all ranks together, after rank 0 alone has written `save` if given; rank 0 alone shows
    `progress` and logs to `log`'s trackers. `loss_fn` may be None when `step_fn` computes the loss. `training`
    (`{"epochs": 20}`, optionally `"steps_per_epoch"`) is the run the bounds are for: without `steps` the test lasts
    about as long, within 300-1000 steps, and the result records it for the exported schedule (`TrainingLength`).

    Raises:
        UsageError: a bad argument, before anything runs. SetupError: a setup that does not fit, in these
            arguments' terms (`terms` words them for another caller, e.g. `training_step`). RunError: your code
            failed, raised after restoring. RunInterrupted: Ctrl-C or SIGTERM.
    """
    import torch

    from clrfind.distributed import joined_group

    settings = RunSettings.from_arguments(
        min_lr=min_lr, max_lr=max_lr, steps=steps, mode=mode, metric=metric, eval_every=eval_every,
        eval_batches=eval_batches, precision=precision, accumulate=accumulate, sync_every=sync_every, seed=seed,
        verify_bounds=verify_bounds, verify_on=verify_on, clip_grad_norm=clip_grad_norm,
        clip_grad_value=clip_grad_value, training=training,
    )  # fmt: skip
    step_fn = _library_step(step_fn, loss_fn)
    _check_parts(model, train_loader, loss_fn, optimizer)
    where = restore_mode(restore)
    job = joined_group(model)
    rank, world = (job.rank, job.world_size) if job is not None else (0, 1)
    loggers, out_dir = _rank_0_outputs(log, save, rank)
    terms = terms or library_terms(step_fn=step_fn is not None, clip_grad_value=clip_grad_value)
    from clrfind.engine import loader_length

    steps = settings.planned_steps(loader_length(train_loader), source=terms.prefix)
    from clrfind.build import refuse_loader_repeating_stream

    refuse_loader_repeating_stream(train_loader, f"{terms.prefix}{terms.name('data')}")
    params = list(model.parameters())
    home = params[0].device if params else torch.device("cpu")
    dev = torch.device(device) if device is not None else home
    groups, from_trained = describe_groups(optimizer), has_trained_state(optimizer)
    memory = MemoryProbe(dev)
    guard = preserved_state(model, optimizer, where=where) if where else contextlib.nullcontext(None)
    with guard as snapshot:
        # The self-check's trials start from the caller's state; nothing is copied when there is no check.
        initial = snapshot or (StateSnapshot(model, optimizer) if settings.verify_bounds else None)
        try:
            from clrfind.build import seed_everything

            if seed is not None:
                seed_everything(seed)
            model.to(dev)
            if isinstance(loss_fn, torch.nn.Module):
                loss_fn.to(dev)
            trainer = Trainer(
                model, train_loader, loss_fn, optimizer, device=dev, settings=settings, step_fn=step_fn,
                val_loader=val_loader, reduce_loss=_mean_over_ranks(world),
            )  # fmt: skip
            analyse = functools.partial(
                make_result, terms=terms, planned_steps=steps, device=str(dev), optimizer=optimizer_ref(optimizer),
                batch_size=getattr(train_loader, "batch_size", None), world_size=world, param_groups=groups,
                from_trained_state=from_trained,
            )  # fmt: skip

            result, out, check_stop = trainer.find_bounds(
                initial, steps=steps, analyse=analyse, reseed=lambda: seed is not None and seed_everything(seed),
                runs=_bar_runs(trainer, rank if job is not None else None, progress and rank == 0, callback),
                # restore=False keeps what the test trained: the trials start elsewhere, so it is put back after.
                keep_trained=initial is not None and not where,
            )  # fmt: skip
        except Fault as fault:
            raise terms.error(fault) from fault
        finally:
            if initial is not None and initial is not snapshot:
                initial.close()
            if where:
                model.to(home)
    result = result.model_copy(update={"peak_memory": memory.peak()})  # the restore's copies included
    return _finish_library_run(
        result, out, check_stop, terms, shared=job is not None, out_dir=out_dir, loggers=loggers
    )


def _rank_0_outputs(
    log: Any, save: str | os.PathLike[str] | None, rank: int
) -> tuple[list[ExperimentLogger], Path | None]:
    """The trackers and the folder a library run reports to: rank 0's alone, checked before anything trains."""
    from clrfind.loggers import experiment_loggers

    if rank != 0:
        return [], None
    out_dir = Path(save) if save is not None else None
    if out_dir is not None:
        check_output_dir(out_dir)
    return experiment_loggers(log), out_dir


def _bar_runs(
    trainer: Trainer, rank: int | None, shown: bool, callback: Callable[..., None] | None
) -> Callable[[int], contextlib.AbstractContextManager[Callable[[np.ndarray], EngineOutput]]]:
    """`runs(total)` for `Trainer.find_bounds`: each run of `total` steps under its own progress bar (`shown`)."""

    @contextlib.contextmanager
    def runs(total: int) -> Iterator[Callable[[np.ndarray], EngineOutput]]:
        with python_rng_kept():  # rich, imported here for the bar, draws from Python's RNG at import
            from clrfind.progress import progress_callback

        with progress_callback("range test", total, enabled=shown, also=callback) as on_step:
            yield _ranked(trainer, rank, on_step)

    return runs


def _ranked(
    trainer: Trainer, rank: int | None, callback: Callable[..., None] | None
) -> Callable[[np.ndarray], EngineOutput]:
    """One range test as the library runs it: with its callback, and on a job's ranks (`rank` not None) with a stop
    that another rank's failure caused turned into that failure."""

    def run(lrs: np.ndarray) -> EngineOutput:
        out = trainer.range_test(lrs, callback=callback)
        if rank is None:
            return out
        from clrfind.distributed import Peers

        return Peers.of_group(rank).explain(out)

    return run


def _finish_library_run(
    result: RangeTestResult,
    out: EngineOutput,
    check_stop: int | None,
    terms: Terms,
    *,
    shared: bool,
    out_dir: Path | None,
    loggers: list[ExperimentLogger],
) -> RangeTestResult:
    """The result a library call returns, or the error it raises: rank 0's result on every rank of a job, the
    files written when asked (also what a failed run measured), then the run's failure or stop, if any; a finished
    run's result goes to the trackers."""
    from clrfind.loggers import log_result

    signum = out.stop_signal or check_stop
    synced = shared and out.error is None and signum is None
    if synced:
        result = _rank_0_result(result)
    try:
        files = _save_library_run(result, out_dir, failed=out.error is not None or signum is not None)
    finally:
        if synced:  # the ranks leave together, whatever rank 0's writing did (`wait_for_peers` says why)
            from clrfind.distributed import wait_for_peers

            wait_for_peers()
    saved = f"; the steps so far saved to {files.out_dir}" if files is not None else ""
    if out.error is not None:
        hint = _error_hint(out.error, terms, drop_last="pass a DataLoader with drop_last=True")
        raise RunError(f"{result.stop_detail}{saved}", hint=hint) from out.error
    if signum is not None:
        raise RunInterrupted(f"{stops.stop_detail(signum)}{saved}", signum=signum)
    log_result(result, loggers)
    return result


def _library_step(step_fn: Callable[..., Any] | None, loss_fn: Any) -> Callable[..., Any] | None:
    """The step as the engine calls it, `(model, batch, loss_fn)`; a UsageError when nothing would compute the loss
    or when `step_fn(model, batch)` leaves `loss_fn` unused."""
    if step_fn is None:
        if loss_fn is None:
            raise UsageError(
                "loss_fn is None and there is no step_fn, so nothing computes the loss",
                hint="pass a loss function, or step_fn=fn(model, batch) -> loss that computes it itself",
            )
        return None
    if loss_fn is not None and not step_takes_loss(step_fn):
        raise UsageError(
            "step_fn takes (model, batch), no loss_fn, so loss_fn would go unused",
            hint="pass loss_fn=None, or give step_fn a third argument, loss_fn, and use it",
        )
    return as_step(step_fn)


def _check_parts(model: Any, train_loader: Any, loss_fn: Any, optimizer: Any) -> None:
    """The notebook slips that would otherwise fail as an AttributeError deep in the run, or train on the wrong
    thing: a class where an instance goes (the loss, the optimizer, the model), a function that builds the model,
    and data that iterates samples rather than batches (a Dataset, or a tuple of arrays, which would train one
    sample per step)."""
    import torch
    import torch.utils.data as tud

    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"model: got {_what(model)}, not a torch.nn.Module",
            hint="pass the model itself" + (f", {model.__name__}(...)" if callable(model) else ""),
        )
    if inspect.isclass(optimizer) or not (hasattr(optimizer, "param_groups") and hasattr(optimizer, "step")):
        name = optimizer.__name__ if inspect.isclass(optimizer) else "SGD"
        raise UsageError(
            f"optimizer: got {_what(optimizer)}, not an optimizer",
            hint=f"pass one built over the model's parameters: torch.optim.{name}(model.parameters(), lr=1e-3)",
        )
    if inspect.isclass(loss_fn):
        raise UsageError(
            f"loss_fn: got {_what(loss_fn)}, not a loss", hint=f"pass an instance: {loss_fn.__name__}()"
        )
    samples = isinstance(train_loader, tud.Dataset) and not isinstance(train_loader, tud.IterableDataset)
    arrays = (
        isinstance(train_loader, tuple)
        and train_loader
        and all(isinstance(a, torch.Tensor) for a in train_loader)
    )
    if samples or arrays:
        what = f"a {type(train_loader).__name__}" if samples else "a tuple of tensors"
        wrapped = "dataset" if samples else "TensorDataset(x, y)"
        each = " (batch_size=None for a dataset whose items are batches)" if samples else ""
        raise UsageError(
            f"train_loader: {what}, which iterates one sample at a time, not batches",
            hint=f"pass DataLoader({wrapped}, batch_size=64, shuffle=True) (torch.utils.data){each}",
        )


def _what(obj: Any) -> str:
    """How a message names what was passed: `the class SGD`, `function 'make_model'`, `list`."""
    if inspect.isclass(obj):
        return f"the class {obj.__name__}"
    if inspect.isfunction(obj):
        return f"function {obj.__name__!r}"
    return type(obj).__name__


def _mean_over_ranks(world_size: int) -> Callable[[Any], Any] | None:
    """The loss all-reduce of a job of several processes, None for one process."""
    if world_size < 2:
        return None
    from clrfind.distributed import mean_over_ranks

    return mean_over_ranks(world_size)


def _rank_0_result(result: RangeTestResult) -> RangeTestResult:
    """Rank 0's result on every rank: the curves and bounds are the same on all (the losses are averaged over the
    ranks), the timings and memory are rank 0's."""
    import json

    from clrfind.distributed import from_rank_0
    from clrfind.results import results_from_dict

    return results_from_dict(json.loads(from_rank_0(to_json(result))), source="rank 0's result")


def _save_library_run(result: RangeTestResult, out_dir: Path | None, *, failed: bool) -> RunFiles | None:
    """Write a library run's files into `save` (results, plot, schedule), also what a failed run measured; a write
    that fails is the error unless the run failed first (that stays the error)."""
    if out_dir is None or not result.steps_run:
        return None
    try:
        return write_outputs(result, out_dir)
    except OutputError:
        if failed:
            return None
        raise


# A flat test is run again with a 10x higher end at most this many times (the default range 1e-5..1 becomes
# 1e-5..100 at most): beyond that the curve is not flat for want of range.
MAX_WIDENINGS = 2
# A test in which no LR made the curve improve, over the whole (widened) range, is run again once with this many
# times the steps: the test's own advice (`plateau_advice`), as each LR then gets three times the steps to leave a
# plateau.
LONGER = 3


def _without_rerun(result: RangeTestResult, longer: str) -> RangeTestResult:
    """`result` whose bounds no longer ask for the wider rerun that was just run: a longer one instead."""
    b = result.bounds
    assert b is not None
    steps = [
        part for part in (b.next_step or "").split("; ") if part and not part.startswith("widen the range")
    ]
    steps.append(f"to see where the fall ends, test longer over the wider range: {longer}")
    return result.model_copy(
        update={"bounds": b.model_copy(update={"next_step": "; ".join(steps), "wider_max_lr": None})}
    )


def _wider_run_said(bounds: Bounds, said: str) -> Bounds:
    """`bounds` after `widen_for_peak`'s wider run: max_lr's rationale says what it found, and the next step no
    longer asks for it."""
    steps = [p for p in (bounds.next_step or "").split("; ") if p and not p.startswith(DIVERGENCE_STEP)]
    return bounds.model_copy(
        update={"max_rationale": f"{bounds.max_rationale}; {said}", "next_step": "; ".join(steps) or None}
    )


def _no_improvement(result: RangeTestResult, settings: RunSettings, tried: str) -> str:
    """The words 'no fall of the loss from lr A to B in `tried`', for the curve the bounds are read from."""
    curve = result.metric  # the validation metric, when there is one
    what = curve_quantity(curve.name, curve.higher_is_better) if curve else curve_quantity()
    span = f"lr {two_digits(settings.min_lr)} to {two_digits(settings.max_lr)}"
    return f"no {what.improvement} of the {what.name} from {span} in {tried}"


def _plateau_step(result: RangeTestResult, settings: RunSettings, tried: str, steps: int) -> RangeTestResult:
    """`result` whose next step is about the setup and a longer test: no LR in the range, as far as it was widened,
    made the curve improve in `tried` (the runs' lengths); a run's own advice would forget the runs before it."""
    b = result.bounds
    assert b is not None
    advice = f"{_no_improvement(result, settings, tried)}: {plateau_advice(steps)}"
    return result.model_copy(update={"bounds": b.model_copy(update={"next_step": advice})})


@dataclass(frozen=True)
class Rerun:
    """What running the test again takes (`Trainer.widen`, `widen_for_peak`, `lengthen`): the state every rerun
    starts from (None: none kept, so no rerun), the first run's length, and the caller's ways to run one test
    (`run(lrs)`: its progress bar, its ranks' failures explained), read it (`analyse(out, settings,
    planned_steps=N)`) and reseed it."""

    initial: StateSnapshot | None
    steps: int
    run: Callable[[np.ndarray], EngineOutput]
    analyse: Callable[..., RangeTestResult]
    reseed: Callable[[], Any]


@dataclass
class Trainer:
    """The objects a run trains, on their device: the range test and the self-check's trials go through one engine
    call with the same model, data, loss, optimizer and settings."""

    model: torch.nn.Module
    loader: Iterable[Any]
    loss_fn: Callable[..., Any]
    optimizer: torch.optim.Optimizer
    device: torch.device
    settings: RunSettings
    step_fn: Callable[..., Any] | None = None
    reduce_loss: Callable[[Any], Any] | None = None
    val_loader: Iterable[Any] | None = None
    # What each rerun (`widen`, `lengthen`) did, kept in the last run's notes.
    reruns: list[str] = field(default_factory=list)
    lengthened: bool = False  # `lengthen` runs once at most
    widened_for_peak: bool = False  # and `widen_for_peak`
    # Every optimizer step trained through the engine, the self-check's included (`Timing.total_steps`).
    steps_trained: int = 0

    def counted(self, out: EngineOutput) -> EngineOutput:
        """`out`, its steps added to `steps_trained`: every engine call of a run goes through here."""
        self.steps_trained += out.steps_trained
        return out

    def range_test(self, lrs: np.ndarray, *, callback: Callable[..., None] | None = None) -> EngineOutput:
        from clrfind.engine import run_loop

        # Checked before the test's first step (a setup factory may leave out the validation data), as the metric's.
        if self.settings.verify_bounds and self.settings.verify_on == "val" and self.val_loader is None:
            raise Fault("verify_val_missing", "val_data")
        return self.counted(
            run_loop(
                self.model, self.loader, self.loss_fn, self.optimizer, lrs, device=self.device,
                settings=self.settings, step_fn=self.step_fn, val_loader=self.val_loader, callback=callback,
                reduce_loss=self.reduce_loss,
            )
        )  # fmt: skip

    def find_bounds(
        self,
        initial: StateSnapshot | None,
        *,
        steps: int,
        runs: Callable[[int], contextlib.AbstractContextManager[Callable[[np.ndarray], EngineOutput]]],
        analyse: Callable[..., RangeTestResult],
        reseed: Callable[[], Any],
        keep_trained: bool = False,
    ) -> tuple[RangeTestResult, EngineOutput, int | None]:
        """The range test, its wider reruns (`widen`), the self-check, a wider run for a peak the range's end capped
        (`widen_for_peak`) with a second check, and when no LR made the curve improve the longer rerun
        (`lengthen`) with its own check: (result, the output of the run the result reads, the signal that stopped
        the trials or None).

        `runs(total)` gives, for its context, one range test as the caller runs it (its progress bar, its ranks'
        failures explained); `analyse(out, settings, planned_steps=N)` the result of one run. `keep_trained`: the
        model and optimizer keep the state the test left, not the trials'.
        """

        def check(result: RangeTestResult, out: EngineOutput) -> tuple[RangeTestResult, int | None]:
            with preserved_state(self.model, self.optimizer) if keep_trained else contextlib.nullcontext():
                return self.self_check(result, out, initial)

        def rerun(run: Callable[[np.ndarray], EngineOutput]) -> Rerun:
            return Rerun(initial, steps, run, analyse, reseed)

        started, steps_before = time.perf_counter(), self.steps_trained

        with runs(steps) as run:
            out = run(self.settings.ladder(steps))
            result, out = self.widen(analyse(out, self.settings), out, rerun(run))
        unchecked = result
        result, stopped = check(result, out)
        if stopped is None and self.wants_wider_peak(result, out, initial):
            keep = preserved_state(self.model, self.optimizer) if keep_trained else contextlib.nullcontext()
            with keep, runs(steps) as run:
                result, stopped = self.widen_for_peak(unchecked, result, out, rerun(run), check=check)
        if stopped is None and self.wants_longer(result, out, initial):
            with runs(LONGER * steps) as run:
                result, out = self.lengthen(result, out, rerun(run))
            result, stopped = check(result, out)
        cost = {
            "total_steps": self.steps_trained - steps_before,
            "total_seconds": round(time.perf_counter() - started, 4),
        }
        update: dict[str, Any] = {"timing": result.timing.model_copy(update=cost)}
        training = result.training.total_steps if result.training is not None else None
        short = short_test(result.planned_steps, training) if result.bounds is not None else None
        if short is not None:
            update["notes"] = [*result.notes, f"{short}; leave the test's length out and clrfind chooses it"]
        return result.model_copy(update=update), out, stopped

    def widen(
        self, result: RangeTestResult, out: EngineOutput, again: Rerun
    ) -> tuple[RangeTestResult, EngineOutput]:
        """Run the test again, from the initial state, up to a 10x higher end, while its loss stayed flat, or was
        still falling, to the end of its range with nothing diverging (at most MAX_WIDENINGS times); the last run's
        result and output.

        Such a curve says only that the range ended too low (a model that needs a high LR to learn at all, such as
        plain SGD on small gradients; an optimizer whose own LR is near the end, such as Adadelta's 1.0), and its
        own next step is that rerun: taken here rather than left to the user, as fastai and torch-lr-finder avoid
        it by ending at 10. Same steps, so each decade gets fewer.
        """
        steps = again.steps
        for _ in range(MAX_WIDENINGS):
            wider = result.bounds.wider_max_lr if result.bounds is not None else None
            if wider is None or again.initial is None or out.stop_reason != "completed":
                break
            end, falling = self.settings.max_lr, result.bounds.usable
            shape = "was still improving at" if falling else "stayed flat up to"
            before = result, out, self.settings
            self.settings = self.settings.model_copy(update={"max_lr": wider})
            note = (
                f"the {result.bounds.method} {shape} lr {two_digits(end)} with nothing diverging, so the range "
                f"ended too low: the test was run again from the initial state up to {two_digits(wider)}"
            )
            out = self._rerun(again, steps, note)
            rerun = again.analyse(out, self.settings)
            if falling and (rerun.bounds is None or not rerun.bounds.usable):
                # Spread over one more decade, a noisy fall can sink into its noise: a rerun that shows none does
                # not undo the fall the run before showed, whose bounds (a lower estimate) are kept.
                why = (
                    rerun.bounds.reason
                    if rerun.bounds is not None and rerun.bounds.reason
                    else rerun.stop_reason
                )
                result, out, self.settings = before
                out.notes = [
                    *out.notes,
                    f"{note}, where no fall was clear ({why}): the bounds of the first run stand",
                ]
                # The first run's analysis stands as it was; only its notes grow (a result's notes are its output's).
                kept = result.model_copy(update={"notes": out.notes})
                return _without_rerun(kept, f"--max-lr {two_digits(wider)} --steps {2 * steps}"), out
            self.reruns.append(note)
            result = rerun
        if self.reruns and result.bounds is not None and not result.bounds.usable:
            result = _plateau_step(result, self.settings, f"{steps} steps", steps)
        return result, out

    def _rerun(self, again: Rerun, steps: int, note: str) -> EngineOutput:
        """One more range test of `steps` over the current settings, from the initial state and seed, as `widen` and
        `lengthen` run it: its output carries the earlier reruns' notes and `note`."""
        assert again.initial is not None  # each caller checks it first
        again.initial.restore()
        again.reseed()
        out = again.run(self.settings.ladder(steps))
        out.notes = [*out.notes, *self.reruns, note]
        return out

    def wants_wider_peak(
        self, result: RangeTestResult, out: EngineOutput, initial: StateSnapshot | None
    ) -> bool:
        """True when the self-check kept a peak at the ceiling the range's end set: nothing diverged, so one cycle
        may peak at half the last LR (Smith's divergence_lr / 2, with the end standing in for the divergence), and
        each trial up to there ended clearly lower than the one below it. The range, not the task, then capped the
        peak, and the test's own next step (a larger range, to see where it diverges) is worth its cost; once."""
        from clrfind.verify import NEAR

        b, check = result.bounds, result.verification
        if initial is None or b is None or check is None or not b.usable or out.stopped_early:
            return False
        if self.widened_for_peak or b.divergence_lr is not None or b.max_lr is None:
            return False
        ceiling = self.settings.max_lr / DIVERGENCE_HEADROOM
        return check.peak_lr > b.max_lr * NEAR and check.peak_lr * NEAR >= ceiling

    def widen_for_peak(
        self,
        unchecked: RangeTestResult,
        result: RangeTestResult,
        out: EngineOutput,
        again: Rerun,
        *,
        check: Callable[[RangeTestResult, EngineOutput], tuple[RangeTestResult, int | None]],
    ) -> tuple[RangeTestResult, int | None]:
        """Find where the loss diverges with a test up to a 10x higher end, from the initial state, and check the
        first run's bounds again up to the ceiling that sets (once, when `wants_wider_peak`): the checked result
        and the signal that stopped its trials (`check`'s), or `result` when the ceiling is no higher.

        The wider run stands in only for what the first could not show: the largest LR that still converges, whose
        half is the paper's upper estimate of the best (or, when nothing diverges there either, half its end:
        gradient clipping caps every step's length, so a rising LR may never blow up). Its knee is not read: the
        same steps over one more decade read it more coarsely. `unchecked`: the first run's result before its
        self-check, whose bounds and curve the result keeps.
        """
        from clrfind.verify import NEAR

        assert again.initial is not None and result.verification is not None  # `wants_wider_peak` holds
        end, wider = self.settings.max_lr, RANGE_FACTOR * self.settings.max_lr
        first_settings = self.settings
        self.widened_for_peak = True
        self.settings = self.settings.model_copy(update={"max_lr": wider})
        kept = result.verification.peak_lr
        note = (
            f"the self-check's best trial peaked at {two_digits(kept)}, the ceiling the range's end set (half of "
            f"{two_digits(end)}, nothing diverged): a test up to {two_digits(wider)}, from the initial state, "
        )
        wider_out = self._rerun(again, again.steps, note)
        wider_bounds = again.analyse(wider_out, self.settings).bounds
        self.settings = first_settings

        def stands(found: str, signal: int | None = None) -> tuple[RangeTestResult, int | None]:
            out.notes = [*out.notes, f"{note}{found}: the peak stands"]
            assert result.bounds is not None
            said = _wider_run_said(
                result.bounds, f"a test up to {two_digits(wider)} {found}: the peak stands"
            )
            return result.model_copy(update={"bounds": said, "notes": out.notes}), signal

        if wider_out.stopped_early:  # stopped by a signal (the caller's to act on) or failed: nothing learned
            return stands(f"stopped ({wider_out.stop_reason})", wider_out.stop_signal)
        div_lr = wider_bounds.divergence_lr if wider_bounds is not None else None
        stop = div_lr if div_lr is not None else float(wider_out.lrs[-1])
        ceiling = stop / DIVERGENCE_HEADROOM
        found = f"{'diverged at' if div_lr is not None else 'ran without diverging to'} {two_digits(stop)}"
        if ceiling <= kept * NEAR:
            return stands(found)
        b = unchecked.bounds
        assert b is not None
        # An adaptive optimizer's cycle stays at max_lr, and the trials may raise it as far as its ceiling.
        raised = {"peak_ceiling_lr": ceiling} if b.peak_ceiling_lr is not None else {"peak_lr": ceiling}
        said = f"a test up to {two_digits(wider)} {found}: the peak's ceiling is {two_digits(ceiling)}"
        widened = unchecked.model_copy(
            update={
                "bounds": _wider_run_said(b, said).model_copy(update=raised),
                "notes": [
                    *out.notes,
                    f"{note}{found}, so the trials were run again up to {two_digits(ceiling)}",
                ],
            }
        )
        checked, stopped = check(widened, out)
        again = checked.verification
        if stopped is None and again is not None and again.peak_lr < kept:
            # Their candidates are spaced from max_lr toward another top, so they need not try the kept peak: a
            # search above it that ends below it does not undo the trial that kept it.
            return stands(
                f"{found}, so the trials were run again up to {two_digits(ceiling)}, which kept none above "
                f"{two_digits(kept)} ({two_digits(again.peak_lr)})"
            )
        self.reruns.append(widened.notes[-1])
        out.notes = widened.notes
        return checked, stopped

    def wants_longer(self, result: RangeTestResult, out: EngineOutput, initial: StateSnapshot | None) -> bool:
        """True when no LR made the curve improve: it stayed level and then got worse (and the self-check, when on,
        found no lower peak that trains), or it stayed flat to the end of a range widened as far as `widen` goes;
        and the run was neither stopped nor failed, and was not lengthened before."""
        b = result.bounds
        if initial is None or b is None or b.usable or out.stopped_early or self.lengthened:
            return False
        return b.level_until_lr is not None or b.wider_max_lr is not None

    def lengthen(
        self, result: RangeTestResult, out: EngineOutput, again: Rerun
    ) -> tuple[RangeTestResult, EngineOutput]:
        """Run the test again, from the initial state and over the same range, with LONGER times the steps (once,
        when `wants_longer`); that run's result and output.

        A model on a plateau (saturated sigmoid units, a narrow bottleneck) leaves it only after many steps at one
        LR, which a rising ladder does not give any LR, and a self-check trial a quarter of the test long is no
        longer: the curve stays level, then gets worse. Giving every LR more steps is the test's own next step
        (`plateau_advice`), taken here as `widen` takes its own; a setup that cannot learn at all shows no fall
        again, and the advice then turns to the setup.
        """
        assert again.initial is not None  # `wants_longer` holds
        steps = again.steps
        longer = LONGER * steps
        trials = result.verification.trials if result.verification is not None else []
        checked = (
            f", nor in any of the self-check's {len(trials)} trials ({trials[0].steps} steps each)"
            if trials
            else ""
        )
        note = (
            f"{_no_improvement(result, self.settings, f'{steps} steps')}{checked}, as on a plateau that a model leaves "
            f"only after many steps at one LR: the test was run again from the initial state with {longer} steps"
        )
        out = self._rerun(again, longer, note)
        self.reruns.append(note)
        self.lengthened = True
        result = again.analyse(out, self.settings, planned_steps=longer)
        if result.bounds is not None and not result.bounds.usable:
            result = _plateau_step(result, self.settings, f"{steps} or {longer} steps", longer)
        return result, out

    def self_check(
        self, result: RangeTestResult, out: EngineOutput, initial: StateSnapshot | None
    ) -> tuple[RangeTestResult, int | None]:
        """Train with the suggested one cycle from `initial`, compressed, and keep the bounds the trials support
        (`clrfind.verify`); the result unchanged when the check is off or there is nothing to check.

        Returns (result, the signal that stopped the trials or None): Ctrl-C or SIGTERM during the trials stops
        them, keeps the range test's bounds with one cycle at max_lr (unchecked), and says so, so the caller can
        save everything before it stops.
        """
        from clrfind.trials import TrialDataFailed, TrialRunner, averages, per_sample, trial_data
        from clrfind.verify import reached_losses, rescue, verify

        b = result.bounds
        if initial is None or not self.settings.verify_bounds:
            return result, None
        if b is None or result.optimizer is None:
            return result, None
        # Bounds are checked; a curve that stayed level and then got worse has none, and the trials look for them.
        check = verify if b.usable else rescue if b.level_until_lr is not None else None
        if check is None:
            return result, None
        if out.stopped_early:
            return result, None
        if check is verify:
            # How far the test itself got: a tie between trials that fell short of it says nothing.
            curve = (np.array(result.losses, dtype=float), np.array(result.smoothed, dtype=float))
            check = functools.partial(
                verify,
                reached=reached_losses(*curve, result.planned_steps),
                mean_loss=averages(self.loss_fn),
            )
        started = time.perf_counter()
        stopped, runner = None, None
        try:
            data = trial_data(
                self.loader, self.val_loader, device=self.device, sharded=self.reduce_loss is not None,
                by_sample=per_sample(self.loss_fn, self.step_fn), prefer_val=self.settings.verify_on == "val",
                seed=self.settings.seed or 0,
            )  # fmt: skip
            runner = TrialRunner(self, initial, data, self.settings.model_copy(update={"metric": "loss"}))
            with stops.allowed():  # a stop held back since the loop ended lands here, before the first trial
                bounds, record = check(
                    b, result.optimizer, result.planned_steps, runner, judged_on=data.source,
                    untrained=runner.untrained(),
                )  # fmt: skip
        except KeyboardInterrupt as exc:
            stopped = stops.signal_of(exc)
            bounds, record = _unchecked(b, stops.stop_detail(stopped))
        except TrialDataFailed as exc:
            why = f"stopped: the training data raised {describe_exception(exc.error)}"
            bounds, record = _unchecked(b, why)
        if runner is not None:
            runner.rewind()
        record = record.model_copy(update={"seconds": round(time.perf_counter() - started, 4)})
        return result.model_copy(update={"bounds": bounds, "verification": record}), stopped


def _unchecked(b: Bounds, why: str) -> tuple[Bounds, Verification]:
    """The bounds and the record of a self-check that stopped before its verdict (Ctrl-C, the data failing in a
    trial): the range test's bounds, one cycle peaking at max_lr; none when it was searching below a level curve."""
    if b.usable:
        kept = "the range test's bounds are kept, one cycle peaks at max_lr"
        bounds = b.model_copy(update={"peak_lr": b.max_lr})
        checked, top = b.peak_lr or b.max_lr, b.max_lr
    else:  # stopped while searching below a level curve: it still has no bounds
        kept, bounds = "no bounds", b
        checked = top = b.level_until_lr
    record = Verification(
        trials=[],
        steps=0,
        checked_peak=checked,  # type: ignore[arg-type]
        peak_lr=top,  # type: ignore[arg-type]
        outcome=f"{why}: {kept}",
    )
    return bounds, record


def default_out_dir(loaded: LoadedSpec) -> Path:
    return Path("clrfind-runs") / loaded.name


def write_outputs(result: RangeTestResult, out_dir: Path, *, verify_schedule: bool = True) -> RunFiles:
    """Save one run's results, plot and (when the bounds allow it) schedule into `out_dir`, together.

    Everything is rendered in memory first, then written with `write_together`: the folder holds this run's files
    and no file of an earlier one (a schedule.yaml the new run did not find bounds for is removed). Results are
    what must never be lost: a schedule that cannot be built is reported in `schedule_error`, and a disk that
    fills after the results were written costs only the files after them.

    Raises:
        OutputError: a file could not be written; says which were written and which were not.
    """
    from clrfind.export import build_schedule, render_schedule
    from clrfind.export import verify_schedule as verify
    from clrfind.fileio import write_together
    from clrfind.plotting import figure_png

    paths = {name: out_dir / name for name in (RESULTS_NAME, PLOT_NAME, SCHEDULE_NAME)}
    files: dict[Path, str | bytes] = {paths[RESULTS_NAME]: to_json(result)}
    if result.steps_run:
        files[paths[PLOT_NAME]] = figure_png(result.plot())
    schedule_error = None
    if result.bounds is not None and result.bounds.usable:
        try:
            schedule = build_schedule(result)
            if verify_schedule:  # trusted: the optimizer is the spec's own, which the run has built already
                verify(schedule, trust=True)
            files[paths[SCHEDULE_NAME]] = render_schedule(schedule)
        except Exception as exc:  # a schedule problem must not cost the results
            schedule_error = str(exc)
    written = write_together(files, first=paths[RESULTS_NAME], stale=list(paths.values()))
    plot, schedule = (paths[name] if paths[name] in written else None for name in (PLOT_NAME, SCHEDULE_NAME))
    return RunFiles(out_dir, paths[RESULTS_NAME], plot, schedule, schedule_error)


def check_output_dir(out_dir: Path) -> None:
    """Fail before any training time is spent when the results could not be saved."""
    # A file where the folder goes (a results file, by a slip): mkdir's "File exists" would not say so.
    clash = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if clash is not None and not clash.is_dir():
        raise UsageError(
            f"{out_dir}: --out names a folder for the run's files, and {clash} is a file",
            hint="pass --out DIR with a folder (new or existing)",
        )
    try:
        check_writable_dir(out_dir)
    except OSError as exc:
        raise UsageError(
            f"{out_dir}: output directory is not writable ({exc.strerror or exc})",
            hint="pass --out DIR with a folder you can write to",
        ) from exc


@contextlib.contextmanager
def holding_output_dir(out_dir: Path) -> Iterator[None]:
    """Check `out_dir` is writable and hold it for this run: a second run into it at the same time is refused
    (`UsageError`) instead of mixing two runs' files."""
    check_output_dir(out_dir)
    with folder_lock(out_dir):
        yield


def _without_lr(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The spec's optimizer kwargs as the test ran them: without the lr a training config may give."""
    return {key: value for key, value in kwargs.items() if key != "lr"}


def given_lr_note(lr: Any, bounds: Bounds | None, *, ran: bool = True) -> str:
    """What an lr in the spec's optimizer kwargs became: not used, since the test sets every LR, and where it sits
    against the bounds found (the first thing a user who copied a training config wants to know). `ran`: False
    before a run (`clrfind check`), which says it will not be."""
    fate = "was not used" if ran else "will not be used"
    note = f"the spec's optimizer lr ({short_repr(lr)}) {fate}: the test sets every LR itself"
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        return note
    if bounds is None or not bounds.usable or bounds.base_lr is None or bounds.max_lr is None:
        return note
    if lr > bounds.max_lr:
        where = f"{lr / bounds.max_lr:.2g}x above max_lr {format_lr(bounds.max_lr)}"
    elif lr < bounds.base_lr:
        where = f"{bounds.base_lr / lr:.2g}x below base_lr {format_lr(bounds.base_lr)}"
    else:
        where = f"within the suggested range ({format_lr(bounds.base_lr)} to {format_lr(bounds.max_lr)})"
    return f"{note}; {format_lr(lr)} is {where}"


def _spec_notes(spec: Spec, bounds: Bounds | None, *, ran: bool = True) -> tuple[str, ...]:
    """Notes on what the spec gives that a run does not use: an lr in the optimizer's kwargs."""
    if spec.optimizer is None or "lr" not in spec.optimizer.kwargs:
        return ()
    return (given_lr_note(spec.optimizer.kwargs["lr"], bounds, ran=ran),)


def run_spec(
    loaded: LoadedSpec,
    *,
    out_dir: Path | None = None,
    callback: Callable[[StepEvent], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
    reduce_loss: Callable[[Any], Any] | None = None,
    peers: Peers | None = None,
    write: bool = True,
) -> SpecRun:
    """Build everything from the spec, run the test, and write results, plot and schedule into `out_dir`.

    Results are saved whatever happens in the loop: an error in user code (`RunError`, exit 1) or Ctrl-C
    or SIGTERM (`RunInterrupted`, exit 130 or 143) is raised only after the partial results are on disk; a stop
    that arrives after the last step is held until the files are written. Under torch.distributed every rank runs
    this with its `rank`; rank 0 alone writes, and `peers` turns a stop that another rank's failure caused into
    that failure (stop reason `error`, the failing rank named).
    """
    from clrfind.build import build_components, resolve_device, seed_everything

    spec, settings, terms = loaded.spec, loaded.spec.settings(), spec_terms(loaded)
    out_dir = out_dir or default_out_dir(loaded)
    if write and rank == 0:
        check_output_dir(out_dir)
    device = resolve_device(spec.device, source=loaded.source)
    try:
        comps = build_components(loaded, device=device, rank=rank, world_size=world_size)
    except KeyboardInterrupt as exc:
        signum = stops.signal_of(exc)
        raise RunInterrupted(
            f"{stops.stop_verb(signum)} while building the model and data; nothing was measured or saved",
            signum=signum,
        ) from None
    total = settings.planned_steps(comps.batches_per_epoch, source=f"{loaded.source}: ")
    trainer = Trainer(
        comps.model, comps.train_loader, comps.loss_fn, comps.optimizer, device=device, settings=settings,
        step_fn=comps.step_fn, reduce_loss=reduce_loss, val_loader=comps.val_loader,
    )  # fmt: skip
    initial = StateSnapshot(comps.model, comps.optimizer) if settings.verify_bounds else None
    memory = MemoryProbe(device)
    # From here on a stop outside the training loop and the self-check's trials waits until the files are written.
    with stops.deferred():
        try:

            def run(lrs: np.ndarray) -> EngineOutput:
                out = trainer.range_test(lrs, callback=callback)
                return peers.explain(out) if peers is not None else out

            def analyse(
                out: EngineOutput, settings: RunSettings, planned_steps: int = total
            ) -> RangeTestResult:
                return make_result(
                    out, settings, terms, planned_steps=planned_steps, device=str(device),
                    optimizer=optimizer_ref(comps.optimizer) if spec.optimizer is None  # a setup factory's
                    else OptimizerRef(target=spec.optimizer.target, kwargs=_without_lr(spec.optimizer.kwargs)),
                    batch_size=comps.batch_size, world_size=world_size, spec=loaded.resolved_dict(),
                    spec_path=str(loaded.path),
                    param_groups=describe_groups(comps.optimizer, spec.optimizer.groups if spec.optimizer else None),
                )  # fmt: skip

            result, out, check_stop = trainer.find_bounds(
                initial, steps=total, runs=lambda _: contextlib.nullcontext(run), analyse=analyse,
                reseed=lambda: seed_everything(spec.seed),
            )  # fmt: skip
            notes = [*result.notes, *_spec_notes(spec, result.bounds)]
            result = result.model_copy(update={"peak_memory": memory.peak(), "notes": notes})
        except Fault as fault:
            raise terms.error(fault) from fault
        files, unsaved = None, ""
        # A failure before the first step was recorded measured nothing: no results file of no steps.
        if write and rank == 0 and (result.steps_run or out.error is None):
            try:
                files = write_outputs(result, out_dir)
            except OutputError as exc:
                if out.error is None and out.stop_signal is None and check_stop is None:
                    raise
                # The run stopped or failed first: that stays the error (and the exit code); the files' fate joins it.
                unsaved = f"; the outputs were not all saved: {exc}"
    if out.error is not None:
        where = f"; partial results saved to {files.results}" if files else unsaved
        if not result.steps_run:
            where = "; nothing was measured, so nothing was saved"
        hint = _error_hint(out.error, terms, drop_last=SPEC_DROP_LAST)
        if _is_oom(out.error):
            hint = (
                f"CUDA ran out of memory at batch_size {comps.batch_size}: try a smaller data.batch_size with "
                f"accumulate: N to keep the global batch, precision: bf16, or a smaller model"
            )
        raise RunError(
            f"{result.stop_detail}{where}",
            hint=hint or "run with --debug for the full traceback",
            partial_path=str(files.results) if files else None,
        ) from out.error
    if out.stop_signal is not None:
        where = f"; partial results saved to {files.out_dir}" if files else unsaved
        verb = stops.stop_verb(out.stop_signal)
        raise RunInterrupted(f"{verb} at step {result.steps_run} of {total}{where}", signum=out.stop_signal)
    if check_stop is not None:
        where = f"; the results, with unchecked bounds, saved to {files.out_dir}" if files else unsaved
        raise RunInterrupted(f"{stops.stop_verb(check_stop)} during the self-check{where}", signum=check_stop)
    stops.raise_pending(
        f"the run ({result.stop_reason}, {result.steps_run} steps) was saved to {files.out_dir}"
        if files
        else "the run had finished"
    )
    return SpecRun(
        result=result,
        files=files or RunFiles(out_dir, out_dir / RESULTS_NAME, None, None),
        param_count=comps.param_count,
    )


ONE_SAMPLE_NORM = "a batch of one sample reached batch norm in training mode (a pass's last, partial batch)"
SPEC_DROP_LAST = "set data.drop_last: true, or a batch_size that leaves no single sample over"


def _error_hint(exc: BaseException, terms: Terms, *, drop_last: str) -> str | None:
    """What to do about a failure mid-run, where the cause is known: the engine's own finding (its fix, in this
    path's words), or a torch error whose usual cause is in the data (`drop_last`: this path's way to set it)."""
    if isinstance(exc, Fault):
        return terms.error(exc).hint
    if is_one_sample_norm(exc):
        return f"{ONE_SAMPLE_NORM}: {drop_last}"
    label = label_out_of_range(exc)
    if label is not None:
        return labels_range_advice(label, label, None)
    if is_bce_of_scores(exc):
        return BCE_SCORES
    return None


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class CheckReport:
    """What `clrfind check` found: enough to trust a long run before starting it."""

    spec_path: Path
    device: str
    param_count: int
    batch: str
    batch_size: int | None
    batches_per_epoch: int | None
    steps_per_epoch: int | None
    planned_steps: int
    seconds_per_step: float
    metric: str
    ladder: str
    verify_bounds: bool = False
    # What the spec gives that the run will not use (an optimizer lr), each a sentence of its own.
    notes: tuple[str, ...] = ()

    @property
    def estimated_seconds(self) -> float:
        """The test's own steps; the self-check's trials and hold train at most as many again."""
        return self.seconds_per_step * self.planned_steps

    def _estimate(self) -> str:
        text = format_seconds(self.estimated_seconds)
        if self.verify_bounds:
            text += f" for the test; up to {format_seconds(2 * self.estimated_seconds)} with the self-check"
        return text + (" (+ metric evaluations)" if self.metric != "loss" else "")

    def rows(self) -> list[tuple[str, str]]:
        per_epoch = "unknown (iterable data)" if self.steps_per_epoch is None else str(self.steps_per_epoch)
        return [
            ("spec", str(self.spec_path)),
            ("device", self.device),
            ("parameters", f"{self.param_count:,}"),
            ("batch", f"{self.batch} (batch_size {self.batch_size})"),
            ("steps per epoch", per_epoch),
            ("planned steps", str(self.planned_steps)),
            ("ladder", self.ladder),
            ("time per step", f"{self.seconds_per_step * 1000:.1f} ms"),
            ("estimated run time", self._estimate()),
            *(("note", note) for note in self.notes),
        ]


def _first_batch(loader: Iterable[Any], terms: Terms) -> Any:
    """The first batch, for its shapes, taken after the timed steps: a loader that fails on it has failed there
    first, with the same one-line error as a run's."""
    try:
        return next(iter(loader))
    except StopIteration:
        raise terms.error(Fault("data_empty", "data")) from None
    except Exception as exc:
        raise RunError(terms.raised("data", 0, exc), hint="run with --debug for the full traceback") from exc


# Steps `check_spec` trains before it starts timing: the first ones pay for lazy set-up (kernels chosen, optimizer
# state made, compilation, thread pools woken), which a run of hundreds of steps pays once.
CHECK_WARMUP_STEPS = 2


class _StampedLoader:
    """The train loader, noting when each batch was handed over: the time between two hand-overs is one
    micro-batch's whole step, so the steps after the warm-up can be timed inside one engine call."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self.stamps: list[float] = []

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]  # TypeError for iterable data, as the loader's own

    def __getattr__(self, name: str) -> Any:  # the sampler, for a DistributedSampler's set_epoch
        if name == "loader":  # not set yet (a copy being made): no endless lookup
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.stamps.append(time.perf_counter())
            yield batch


def check_spec(loaded: LoadedSpec, *, timed_steps: int = 3) -> CheckReport:
    """Validate, build, train a few batches forward and backward at the lowest LR, and time the ones after the
    warm-up.

    Nothing is written. The first step is diagnosed like a real run (batch layout, output/target shapes, scalar
    loss), so every setup problem surfaces here in seconds. Warm-up and timed steps are one engine call, as in a
    run, timed from the batches' hand-overs: neither the first steps' set-up nor a call's own start-up (its first,
    diagnosed step, a new data iterator) counts as step time.
    """
    from clrfind.build import build_components, resolve_device
    from clrfind.diagnose import describe_batch
    from clrfind.engine import run_loop

    spec, terms = loaded.spec, spec_terms(loaded)
    settings = spec.settings()
    device = resolve_device(spec.device, source=loaded.source)
    comps = build_components(loaded, device=device)
    timing = settings.model_copy(update={"metric": "loss"})  # check times training steps only
    loader = _StampedLoader(comps.train_loader)
    try:
        out = run_loop(
            comps.model, loader, comps.loss_fn, comps.optimizer,
            np.full(CHECK_WARMUP_STEPS + timed_steps, settings.min_lr), device=device, settings=timing,
            step_fn=comps.step_fn,
        )  # fmt: skip
    except Fault as fault:
        raise terms.error(fault) from fault
    if out.error is not None:
        hint = _error_hint(out.error, terms, drop_last=SPEC_DROP_LAST)
        raise RunError(
            out.stop_text(terms), hint=hint or "run with --debug for the full traceback"
        ) from out.error
    ended = time.perf_counter()  # after the engine's last read of a loss: a GPU's queued work is counted
    # Per batch, then per step: an fp16 step the scaler skipped took a batch too, and accumulation takes several.
    first = min(CHECK_WARMUP_STEPS * settings.accumulate, len(loader.stamps) - 1)
    per_batch = (ended - loader.stamps[first]) / (len(loader.stamps) - first)
    return CheckReport(
        spec_path=loaded.path,
        device=str(device),
        param_count=comps.param_count,
        batch=describe_batch(_first_batch(comps.train_loader, terms)),
        batch_size=comps.batch_size,
        batches_per_epoch=comps.batches_per_epoch,
        steps_per_epoch=settings.steps_per_epoch(comps.batches_per_epoch),
        planned_steps=settings.planned_steps(comps.batches_per_epoch, source=f"{loaded.source}: "),
        seconds_per_step=per_batch * settings.accumulate,
        metric=settings.metric,
        ladder=describe_ladder(settings.min_lr, settings.max_lr, settings.mode),
        verify_bounds=settings.verify_bounds,
        notes=_spec_notes(spec, None, ran=False),
    )
