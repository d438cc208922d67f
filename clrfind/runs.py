"""Run modes: what one command asks of a loaded spec, in one library call.

`run(loaded, ...)` decides between a dry run, a single run, repeated runs and a run under torch.distributed (which
may itself be repeated), so the CLI only parses, calls and renders. `sweep(loaded, ...)` runs one test per value of
one or two spec keys. The spec file is read once: repeats, sweep values and ranks derive their specs from it with
`LoadedSpec.with_overrides`.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clrfind import stops
from clrfind.api import (
    CheckReport,
    RunFiles,
    check_output_dir,
    check_spec,
    default_out_dir,
    holding_output_dir,
    run_spec,
    write_outputs,
)
from clrfind.errors import ClrfindError, RunInterrupted, UsageError
from clrfind.fileio import write_atomic
from clrfind.multi import (
    SWEEP_NAME,
    SweepFile,
    SweepRun,
    aggregate_repeats,
    explain_per_key,
    folder_names,
    lowest_loss,
    recommend,
    run_label,
    sweep_grid,
)
from clrfind.results import RESULTS_NAME, RangeTestResult, load_results

if TYPE_CHECKING:
    from clrfind.distributed import Peers
    from clrfind.events import StepEvent
    from clrfind.spec import LoadedSpec

Callback = Callable[["StepEvent"], None]
# (title, planned steps or None) -> a context whose value is the progress callback, or None (nothing shown).
ProgressFactory = Callable[[str, "int | None"], AbstractContextManager["Callback | None"]]
# How one run of a mode trains: a spec in, its result out (files written by the mode, not by the run).
_RunOne = Callable[["LoadedSpec", "Callback | None"], RangeTestResult]


@contextlib.contextmanager
def _no_progress(title: str, total: int | None) -> Iterator[None]:
    yield None


@dataclass(frozen=True)
class Outcome:
    """A finished run of any mode: the result, its files, and whether this process is the one that reports."""

    result: RangeTestResult
    files: RunFiles
    reports: bool = True


def run(
    loaded: LoadedSpec,
    *,
    out_dir: Path | None = None,
    repeats: int = 1,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
) -> Outcome | CheckReport:
    """The range test a command asks for: `dry_run` checks and writes nothing; under torchrun every rank trains
    its shard (rank 0 writes); `repeats` > 1 runs seeds seed..seed+K-1 and saves their aggregate."""
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}", hint="e.g. --repeats 5")
    seed = loaded.spec.seed
    if repeats > 1 and seed is not None and seed + repeats - 1 >= 2**64:
        # Checked before run 1 trains: the last run's seed would fail only after the others had run.
        raise UsageError(
            f"--repeats {repeats} from seed {seed} needs seeds up to {seed + repeats - 1}, past 2**64 - 1",
            hint=f"{loaded.path}: seed: use a seed below {2**64 - repeats + 1}",
        )
    if dry_run:
        return check_spec(loaded)
    out_dir = out_dir or default_out_dir(loaded)
    progress = progress or _no_progress
    from clrfind.distributed import launched_distributed

    if not launched_distributed():
        with holding_output_dir(out_dir):
            return _run_mode(loaded, out_dir, repeats, progress)
    from clrfind.distributed import Peers, distributed_context, mean_over_ranks, pick_device

    # Rank 0 alone writes, so it alone holds the folder.
    with (
        distributed_context(loaded.spec.device) as ctx,
        holding_output_dir(out_dir) if ctx.is_main else contextlib.nullcontext(),
    ):
        local = loaded.with_overrides({"device": pick_device(loaded.spec.device, ctx.local_rank)})
        reduce = mean_over_ranks(ctx.world_size)
        peers = Peers.of_group(ctx.rank)
        try:
            return _run_mode(
                local, out_dir, repeats, progress if ctx.is_main else _no_progress,
                rank=ctx.rank, world_size=ctx.world_size, reduce_loss=reduce, peers=peers,
            )  # fmt: skip
        except (Exception, KeyboardInterrupt) as exc:
            error = peers.settle(exc, out_dir)
            if error is exc:
                raise
            raise error from exc


def _run_mode(
    loaded: LoadedSpec,
    out_dir: Path,
    repeats: int,
    progress: ProgressFactory,
    *,
    rank: int = 0,
    world_size: int = 1,
    reduce_loss: Callable[[Any], Any] | None = None,
    peers: Peers | None = None,
) -> Outcome:
    """One run or `repeats` runs, on this process or as one rank of a torch.distributed job (rank 0 writes).

    Every run is written by run_spec itself as it finishes (repeats into `run-1/`, `run-2/`, ...), so a failing or
    interrupted run still saves what it measured and the runs before it are kept; the aggregate comes last.
    """
    main = rank == 0
    if repeats == 1:
        with progress(loaded.name, loaded.spec.range_test.steps) as callback:
            single = run_spec(loaded, out_dir=out_dir, callback=callback, rank=rank, world_size=world_size,
                              reduce_loss=reduce_loss, peers=peers)  # fmt: skip
        return Outcome(single.result, single.files, reports=main)

    finished: list[RangeTestResult] = []

    def run_one(spec: LoadedSpec, callback: Callback | None) -> RangeTestResult:
        run = run_spec(spec, out_dir=repeat_dir(out_dir, len(finished) + 1), callback=callback, rank=rank,
                       world_size=world_size, reduce_loss=reduce_loss, peers=peers)  # fmt: skip
        finished.append(run.result)
        return run.result

    if main:
        check_output_dir(out_dir)
    try:
        result = repeat(loaded, repeats, run_one, progress)
    except (ClrfindError, KeyboardInterrupt) as exc:
        raise _repeats_stopped(exc, loaded, finished, repeats, out_dir, write=main) from exc
    with stops.deferred():
        files = (
            write_outputs(result, out_dir) if main else RunFiles(out_dir, out_dir / RESULTS_NAME, None, None)
        )
    stops.raise_pending(f"the {repeats} runs and their aggregate were saved to {out_dir}")
    return Outcome(result, files, reports=main)


def repeat_dir(out_dir: Path, k: int) -> Path:
    """Where run k (from 1) of `--repeats` is saved, beside the aggregate."""
    return out_dir / f"run-{k}"


def _repeats_stopped(
    exc: ClrfindError | KeyboardInterrupt,
    loaded: LoadedSpec,
    finished: list[RangeTestResult],
    repeats: int,
    out_dir: Path,
    *,
    write: bool,
) -> ClrfindError:
    """Run k failed or was stopped (it saved what it measured in its own folder): the runs before it stay, with
    their aggregate when there are two or more, and the error says which run stopped and what was kept."""
    k = len(finished) + 1
    if isinstance(exc, KeyboardInterrupt):  # before its first step: nothing of this run to save
        signum = stops.signal_of(exc)
        exc = RunInterrupted(f"{stops.stop_verb(signum)} before its first step", signum=signum)
    kept = "; no run had finished"
    if finished:
        kept = "; finished runs kept in " + ", ".join(str(repeat_dir(out_dir, i)) for i in range(1, k))
    if len(finished) >= 2 and write:
        partial = aggregate(loaded, finished)
        note = f"only {len(finished)} of {repeats} runs finished: run {k} stopped ({exc.message})"
        with stops.deferred():
            write_outputs(partial.model_copy(update={"notes": [*partial.notes, note]}), out_dir)
        kept += f" and their aggregate in {out_dir}"
    return exc.reworded(before=f"run {k} of {repeats}: ", after=kept)


def repeat(loaded: LoadedSpec, repeats: int, run_one: _RunOne, progress: ProgressFactory) -> RangeTestResult:
    """`repeats` runs with seeds seed, seed+1, ... and their aggregate (mean curve, bounds, spread).

    The self-check trains from one model's start, while the aggregate's bounds come from the mean of K curves: it
    does not run here, and the result says so.
    """
    results = []
    for k in range(repeats):
        seeded = loaded.with_overrides({"seed": loaded.spec.seed + k, "verify_bounds": False})
        with progress(f"{loaded.name} {k + 1}/{repeats}", loaded.spec.range_test.steps) as callback:
            results.append(run_one(seeded, callback))
    return aggregate(loaded, results)


def aggregate(loaded: LoadedSpec, results: Sequence[RangeTestResult]) -> RangeTestResult:
    """The runs' aggregate, saying why the self-check did not run when the spec asks for it."""
    combined = aggregate_repeats(results)
    if not loaded.spec.verify_bounds:
        return combined
    note = (
        "no self-check with --repeats: the bounds come from the mean of the runs' curves, not from one model's "
        "start; run a single test to have the one-cycle peak checked"
    )
    return combined.model_copy(update={"notes": [*combined.notes, note]})


# -- sweeps --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepOutcome:
    path: Path
    sweep: SweepFile
    results: list[tuple[str, RangeTestResult]]
    plot: Path | None = None


def _holding_out_dir(fn: Callable[..., SweepOutcome]) -> Callable[..., SweepOutcome]:
    """Run `fn` holding its `out_dir` (see `holding_output_dir`)."""

    @functools.wraps(fn)
    def holding(*args: Any, out_dir: Path, **kwargs: Any) -> SweepOutcome:
        with holding_output_dir(out_dir):
            return fn(*args, out_dir=out_dir, **kwargs)

    return holding


@_holding_out_dir
def sweep(
    loaded: LoadedSpec,
    settings: Sequence[tuple[str, list[Any]]],
    *,
    out_dir: Path,
    devices: Sequence[str] | None = None,
    progress: ProgressFactory | None = None,
) -> SweepOutcome:
    """One range test per value (or pair of values), each saved in its own folder, then `sweep.json` and the
    overlay `sweep.png`.

    Every value's spec is validated before the first run starts, so a bad value fails fast. With more than one
    device the runs go to parallel processes, one per device; otherwise they run one after the other. One failing
    value does not lose the others; Ctrl-C or SIGTERM stops the whole sweep (the current value saves what it
    measured), writes the sweep file for what ran, and raises `RunInterrupted` saying what was kept. The sweep holds
    `out_dir` until it ends (see `holding_output_dir`).
    """
    for key, _ in settings:
        if key in ("optimizer.kwargs.lr", "optimizer.lr"):  # the second as a Hydra-style spec writes it
            raise UsageError(
                f"--set {key}: the range test sets every LR itself, so each value would run the same test",
                hint="sweep what shapes the curve instead: optimizer.kwargs.weight_decay, data.batch_size, ...",
            )
    grid = sweep_grid(settings)
    specs = [(run_label(o), loaded.with_overrides(o), o) for o in grid]
    # Values become folder names: escaped, so none leads outside out_dir, and distinct, so none shares a folder.
    folders = folder_names([label for label, _, _ in specs])
    check_output_dir(out_dir)
    stopped: RunInterrupted | None = None
    if devices and len(devices) > 1:
        # Jobs are keyed by folder: labels of equal values are equal.
        jobs = [(folder, spec, out_dir / folder) for (_, spec, _), folder in zip(specs, folders, strict=True)]
        outcomes = _run_parallel(jobs, devices)
    else:
        progress = progress or _no_progress
        outcomes = []
        for (label, spec, _), folder in zip(specs, folders, strict=True):
            try:
                # A stop held back while the previous value saved its files lands here, before this one starts.
                with stops.allowed(), progress(label, spec.spec.range_test.steps) as callback:
                    outcomes.append(
                        (run_spec(spec, out_dir=out_dir / folder, callback=callback).result, None)
                    )
            except KeyboardInterrupt as exc:  # before its first step
                signum = stops.signal_of(exc)
                stopped = RunInterrupted(f"{stops.stop_verb(signum)} before its first step", signum=signum)
                break
            except RunInterrupted as exc:
                stopped = exc
                break
            except Exception as exc:  # one failing value must not lose the others
                outcomes.append((None, str(exc)))
    runs: list[SweepRun] = []
    results: list[tuple[str, RangeTestResult]] = []
    for (label, _, overrides), folder, (result, error) in zip(specs, folders, outcomes, strict=False):
        if result is not None:
            results.append((label, result))
        b = result.bounds if result is not None else None
        runs.append(
            SweepRun(
                label=label, overrides=overrides, results=f"{folder}/{RESULTS_NAME}",
                base_lr=b.base_lr if b and b.usable else None, max_lr=b.max_lr if b and b.usable else None,
                lowest_loss=lowest_loss(result) if result else None, confidence=b.confidence if b else "none",
                stop_reason=result.stop_reason if result else "error", error=error,
            )
        )  # fmt: skip
    if stopped is not None:  # the stopped value's partial results are in its folder, but it has no bounds
        label, _, overrides = specs[len(outcomes)]
        folder = folders[len(outcomes)]
        runs.append(SweepRun(label=label, overrides=overrides, results=f"{folder}/{RESULTS_NAME}",
                             stop_reason="interrupted", error=stopped.message))  # fmt: skip
    label, why = recommend(runs)
    sweep_file = SweepFile(
        spec_path=str(loaded.path), keys=[k for k, _ in settings], runs=runs, recommended=label, rationale=why,
        per_key=explain_per_key(runs, label),
    )  # fmt: skip
    text = json.dumps(sweep_file.model_dump(mode="json"), indent=1) + "\n"
    with stops.deferred():
        path = write_atomic(out_dir / SWEEP_NAME, text)
        plot = _sweep_plot(results, out_dir)
    if stopped is not None:
        done = [r.label for r in runs if r.error is None]
        left = [label for label, _, _ in specs[len(outcomes) + 1 :]]
        raise stopped.reworded(
            before=f"sweep stopped in {runs[-1].label} ({len(outcomes) + 1} of {len(specs)}): ",
            after=f"; finished: {', '.join(done) or 'none'}; not run: {', '.join(left) or 'none'}; "
            f"{path} lists what ran",
        )
    stops.raise_pending(f"the sweep was saved to {path}")
    return SweepOutcome(path=path, sweep=sweep_file, results=results, plot=plot)


def _sweep_plot(results: list[tuple[str, RangeTestResult]], out_dir: Path) -> Path | None:
    """The curves overlaid in `sweep.png`, when any value has one."""
    if not results:
        return None
    from clrfind.plotting import plot_sweep, save_figure

    return save_figure(plot_sweep(results), out_dir / "sweep.png")


def _device_worker(jobs: list[tuple[str, LoadedSpec, Path]], device: str) -> list[tuple[str, str | None]]:
    """Runs a share of the sweep on one device, in its own process; returns (label, error) per job."""
    out = []
    for label, spec, folder in jobs:
        try:
            run_spec(spec.with_overrides({"device": device}), out_dir=folder)
            out.append((label, None))
        except Exception as exc:
            out.append((label, str(exc)))
    return out


def _run_parallel(
    jobs: list[tuple[str, LoadedSpec, Path]], devices: Sequence[str]
) -> list[tuple[RangeTestResult | None, str | None]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    shares: list[list[tuple[str, LoadedSpec, Path]]] = [[] for _ in devices]
    for i, job in enumerate(jobs):
        shares[i % len(devices)].append(job)
    errors: dict[str, str | None] = {}
    with ProcessPoolExecutor(max_workers=len(devices), mp_context=mp.get_context("spawn")) as pool:
        for done in pool.map(_device_worker, shares, devices):
            errors.update(done)
    out: list[tuple[RangeTestResult | None, str | None]] = []
    for label, _, folder in jobs:
        error = errors.get(label)
        out.append((None, error) if error else (load_results(folder / RESULTS_NAME), None))
    return out


def available_devices() -> list[str]:
    """One entry per CUDA device when there are several (parallel sweep); otherwise just "auto" (sequential)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(n)] if n > 1 else ["auto"]
