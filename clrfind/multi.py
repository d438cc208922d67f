"""Several range tests from one spec: repeated runs with a confidence band, and hyper-parameter sweeps.

Repeats answer "how much can I trust these bounds?": K runs with different seeds (fresh model, new data order), a
mean curve with a min-max band, each bound as a median with its spread. Sweeps apply Smith's (2018) recipe for weight
decay and batch size: one range test per value, curves overlaid, and the value that allows the largest max_lr at the
lowest loss pointed out.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from clrfind.analysis import smooth, suggest_bounds
from clrfind.errors import ResultsError, UsageError
from clrfind.fileio import read_document, write_atomic
from clrfind.results import (
    RESULTS_NAME,
    RangeTestResult,
    RunCurve,
    Spread,
    Timing,
    finite_or_none,
    load_results,
)
from clrfind.spec import LoadedSpec, load_spec

SWEEP_NAME = "sweep.json"
SWEEP_KIND = "clrfind-sweep"
SWEEP_SCHEMA_VERSION = 1
# Values whose lowest loss is within this fraction of the spread of lowest losses count as "as low as the best";
# among them the one with the largest max_lr wins (Smith 2018: larger LRs at the same loss regularise better).
SWEEP_LOSS_TOLERANCE = 0.1


def spread_of(values: Sequence[float | None]) -> Spread | None:
    """Median, quartiles and extremes of the finite values, or None when there are none."""
    arr = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return None
    q1, med, q3 = np.percentile(arr, [25, 50, 75])
    return Spread(
        median=float(med), q1=float(q1), q3=float(q3), min=float(arr.min()), max=float(arr.max()), n=arr.size
    )


def mean_curve(runs: Sequence[RangeTestResult]) -> tuple[np.ndarray, np.ndarray]:
    """(lrs, mean raw loss) over the runs, step by step.

    Runs share the ladder but may stop at different steps; a step is averaged over the runs that reached it with a
    finite loss, and kept only while at least half of the runs are still there, so one long run cannot make the
    tail of the mean its own curve.
    """
    longest = max(runs, key=lambda r: r.steps_run)
    n = longest.steps_run
    table = np.full((len(runs), n), np.nan)
    for i, run in enumerate(runs):
        table[i, : run.steps_run] = [np.nan if v is None else v for v in run.losses]
    present = np.isfinite(table).sum(axis=0)
    keep = (
        int(np.argmax(present < math.ceil(len(runs) / 2)))
        if (present < math.ceil(len(runs) / 2)).any()
        else n
    )
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(table[:, :keep], axis=0) if keep else np.array([])
    return np.asarray(longest.lrs[:keep], dtype=float), mean


def aggregate_repeats(runs: Sequence[RangeTestResult]) -> RangeTestResult:
    """One result from K runs: the mean curve, bounds suggested from it, each bound's spread, and every run kept."""
    if not runs:
        raise UsageError("no runs to aggregate")
    first = runs[0]
    lrs, mean = mean_curve(runs)
    stop_reason = Counter(r.stop_reason for r in runs).most_common(1)[0][0]
    bounds = suggest_bounds(lrs, mean, mode=first.mode, stop_reason=stop_reason, planned_max_lr=first.max_lr)
    spreads = {
        key: spread_of([getattr(r.bounds, key) if r.bounds else None for r in runs])
        for key in ("min_lr", "max_lr", "peak_lr")
    }
    if bounds.usable:

        def spread_note(key: str, label: str) -> str:
            s = spreads[key]
            return (
                ""
                if s is None
                else f"; {label} median {s.median:.2g} over {s.n} runs (IQR {s.q1:.2g}-{s.q3:.2g})"
            )

        peak_note = spread_note("peak_lr", "peak_lr") if bounds.peak_above_max_lr else ""
        bounds = bounds.model_copy(
            update={
                "min_rationale": bounds.min_rationale + spread_note("min_lr", "base_lr"),
                "max_rationale": bounds.max_rationale + spread_note("max_lr", "max_lr") + peak_note,
            }
        )
    curves = [
        RunCurve(seed=r.seed or 0, lrs=r.lrs, losses=r.losses, smoothed=r.smoothed, stop_reason=r.stop_reason,
                 bounds=r.bounds)
        for r in runs
    ]  # fmt: skip
    return first.model_copy(
        update={
            "lrs": [float(x) for x in lrs],
            "losses": finite_or_none(mean),
            "smoothed": finite_or_none(smooth(mean)) if len(mean) else [],
            "stop_reason": stop_reason,
            "stop_detail": f"{len(runs)} runs: "
            + ", ".join(f"{k} x{v}" for k, v in Counter(r.stop_reason for r in runs).items()),
            "bounds": bounds,
            "runs": curves,
            "spread": {k: v for k, v in spreads.items() if v is not None} or None,
            "metric": None,
            "timing": Timing(seconds=round(sum(r.timing.seconds for r in runs), 4)),
            "notes": sorted({n for r in runs for n in r.notes}),
        }
    )


# -- sweeps --------------------------------------------------------------------------------------------------------


class SweepRun(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    overrides: dict[str, Any]
    results: str  # relative to the sweep file
    min_lr: float | None = None
    max_lr: float | None = None
    lowest_loss: float | None = None
    confidence: str = "none"
    stop_reason: str = "completed"
    error: str | None = None


class SweepFile(BaseModel):
    """`sweep.json`: which runs a sweep made and which value it recommends; each run has its own results file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = SWEEP_KIND
    schema_version: int = SWEEP_SCHEMA_VERSION
    spec_path: str
    keys: list[str]
    runs: list[SweepRun]
    recommended: str | None = None
    rationale: str = ""


def sweep_grid(settings: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the values of one or two keys, in the order given."""
    if not settings:
        raise UsageError(
            "sweep needs --set KEY=V1,V2,...", hint="e.g. --set optimizer.kwargs.weight_decay=0,1e-4,1e-3"
        )
    if len(settings) > 2:
        raise UsageError(
            f"sweep takes one or two keys, got {len(settings)}", hint="sweep the others separately"
        )
    keys = [k for k, _ in settings]
    if len(set(keys)) != len(keys):
        raise UsageError(f"--set names {keys[0]} twice", hint="give each key once, with all its values")
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in settings))]


def run_label(overrides: dict[str, Any]) -> str:
    """A readable, file-name-safe label: `weight_decay=0.0001` (last part of each key)."""
    parts = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in overrides.items()]
    return ",".join(parts)


def lowest_loss(result: RangeTestResult) -> float | None:
    values = [v for v in result.smoothed if v is not None]
    return min(values) if values else None


def recommend(runs: Sequence[SweepRun]) -> tuple[str | None, str]:
    """Smith's rule: among the values reaching (nearly) the lowest loss, the one that allows the largest max_lr."""
    usable = [r for r in runs if r.max_lr is not None and r.lowest_loss is not None]
    if not usable:
        return None, "no run gave usable bounds"
    losses = [r.lowest_loss for r in usable if r.lowest_loss is not None]
    best, worst = min(losses), max(losses)
    tol = SWEEP_LOSS_TOLERANCE * (worst - best) if worst > best else 0.0
    contenders = [r for r in usable if r.lowest_loss is not None and r.lowest_loss <= best + tol]
    pick = max(contenders, key=lambda r: r.max_lr or 0.0)
    return pick.label, (
        f"{pick.label}: largest max_lr ({pick.max_lr:.2g}) among the values reaching the lowest loss "
        f"(within {SWEEP_LOSS_TOLERANCE:.0%} of the spread: <= {best + tol:.4g})"
    )


@dataclass(frozen=True)
class SweepOutcome:
    path: Path
    sweep: SweepFile
    results: list[tuple[str, RangeTestResult]]


def run_sweep(
    spec_path: Path,
    settings: Sequence[tuple[str, list[Any]]],
    *,
    out_dir: Path,
    base_overrides: dict[str, Any] | None = None,
    runner: Callable[[LoadedSpec, Path], RangeTestResult] | None = None,
    devices: Sequence[str] | None = None,
) -> SweepOutcome:
    """One range test per value (or pair of values), each saved in its own folder, then `sweep.json` and the overlay.

    All specs are validated before the first run starts, so a bad value fails fast. With more than one device the
    runs go to parallel processes, one per device; otherwise they run one after the other.
    """
    grid = sweep_grid(settings)
    loaded = [(run_label(o), load_spec(spec_path, {**(base_overrides or {}), **o}), o) for o in grid]
    runs: list[SweepRun] = []
    results: list[tuple[str, RangeTestResult]] = []
    if devices and len(devices) > 1 and runner is None:
        base = base_overrides or {}
        jobs = [(label, str(spec_path), str(out_dir / label), {**base, **o}) for label, _, o in loaded]
        outcomes = _run_parallel(jobs, devices)
    else:
        run_one = runner or _run_one
        outcomes = []
        for label, spec, _ in loaded:
            try:
                outcomes.append((run_one(spec, out_dir / label), None))
            except Exception as exc:  # one failing value must not lose the others
                if isinstance(exc, KeyboardInterrupt):
                    raise
                outcomes.append((None, str(exc)))
    for (label, _, overrides), (result, error) in zip(loaded, outcomes, strict=True):
        if result is not None:
            results.append((label, result))
        b = result.bounds if result is not None else None
        runs.append(
            SweepRun(
                label=label, overrides=overrides, results=f"{label}/{RESULTS_NAME}",
                min_lr=b.min_lr if b and b.usable else None, max_lr=b.max_lr if b and b.usable else None,
                lowest_loss=lowest_loss(result) if result else None, confidence=b.confidence if b else "none",
                stop_reason=result.stop_reason if result else "error", error=error,
            )
        )  # fmt: skip
    label, why = recommend(runs)
    sweep = SweepFile(
        spec_path=str(spec_path), keys=[k for k, _ in settings], runs=runs, recommended=label, rationale=why
    )
    path = write_atomic(out_dir / SWEEP_NAME, json.dumps(sweep.model_dump(mode="json"), indent=1) + "\n")
    return SweepOutcome(path=path, sweep=sweep, results=results)


def _run_one(loaded: LoadedSpec, out_dir: Path) -> RangeTestResult:
    from clrfind.api import run_spec

    return run_spec(loaded, out_dir=out_dir).result


def _device_worker(
    jobs: list[tuple[str, str, str, dict[str, Any]]], device: str
) -> list[tuple[str, str | None]]:
    """Runs a share of the sweep on one device, in its own process; returns (label, error) per job."""
    out = []
    for label, spec_path, folder, overrides in jobs:
        try:
            _run_one(load_spec(spec_path, {**overrides, "device": device}), Path(folder))
            out.append((label, None))
        except Exception as exc:
            out.append((label, str(exc)))
    return out


def _run_parallel(
    jobs: list[tuple[str, str, str, dict[str, Any]]], devices: Sequence[str]
) -> list[tuple[RangeTestResult | None, str | None]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    shares: list[list[tuple[str, str, str, dict[str, Any]]]] = [[] for _ in devices]
    for i, job in enumerate(jobs):
        shares[i % len(devices)].append(job)
    errors: dict[str, str | None] = {}
    with ProcessPoolExecutor(max_workers=len(devices), mp_context=mp.get_context("spawn")) as pool:
        for done in pool.map(_device_worker, shares, devices):
            errors.update(done)
    out: list[tuple[RangeTestResult | None, str | None]] = []
    for label, _, folder, _ in jobs:
        error = errors.get(label)
        out.append((None, error) if error else (load_results(Path(folder) / RESULTS_NAME), None))
    return out


def load_sweep(path: Path) -> tuple[SweepFile, list[tuple[str, RangeTestResult]]]:
    """Read a `sweep.json` and the results of every run it lists that succeeded."""
    raw = read_document(path, error=ResultsError, hint="re-run `clrfind sweep`", as_json=True)
    try:
        sweep = SweepFile.model_validate(raw)
    except ValidationError as exc:
        raise ResultsError(f"{path}: not a valid sweep file ({str(exc).splitlines()[0]})",
                           hint="re-run `clrfind sweep`") from exc  # fmt: skip
    results = [(r.label, load_results(path.parent / r.results)) for r in sweep.runs if r.error is None]
    return sweep, results


def is_sweep_file(path: Path) -> bool:
    """True for a sweep.json (or a folder holding one and no range_test.json)."""
    if path.is_dir():
        return (path / SWEEP_NAME).exists() and not (path / RESULTS_NAME).exists()
    if path.name == SWEEP_NAME:
        return True
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(200)
    except OSError:
        return False
    return SWEEP_KIND in head


def available_devices() -> list[str]:
    """One entry per CUDA device when there are several (parallel sweep); otherwise just "auto" (sequential)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(n)] if n > 1 else ["auto"]


def run_repeats(
    spec_path: Path,
    repeats: int,
    *,
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    callback_for: Callable[[int], Callable[[Any], None] | None] | None = None,
) -> tuple[RangeTestResult, Any]:
    """Run the spec's test `repeats` times with seeds seed, seed+1, ... and save the aggregate with every run.

    Returns the aggregate result and the files written (see `clrfind.api.write_outputs`).
    """
    from clrfind.api import check_output_dir, run_spec, write_outputs

    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}", hint="e.g. --repeats 5")
    base = load_spec(spec_path, overrides)
    check_output_dir(out_dir)
    results = []
    for k in range(repeats):
        loaded = load_spec(spec_path, {**(overrides or {}), "seed": base.spec.seed + k})
        callback = callback_for(k) if callback_for else None
        results.append(run_spec(loaded, out_dir=out_dir, callback=callback, write=False).result)
    aggregate = aggregate_repeats(results)
    return aggregate, write_outputs(aggregate, out_dir)
