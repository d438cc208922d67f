"""What several range tests from one spec add up to: repeats with a confidence band, and sweeps. No torch.

Repeats answer "how much can I trust these bounds?": K runs with different seeds (fresh model, new data order), a
mean curve with a min-max band, each bound as a median with its spread. Sweeps apply Smith's (2018) recipe for weight
decay and batch size: one range test per value, curves overlaid, and the value that allows the largest max_lr at the
lowest loss pointed out. Running them is `clrfind.runs`' job; this module aggregates and keeps the sweep file.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, ValidationError, model_validator

from clrfind.analysis import bounds_for, smooth
from clrfind.errors import ResultsError, UsageError, one_line, short_repr
from clrfind.fileio import read_document
from clrfind.results import (
    RESULTS_NAME,
    SWEEP_KIND,
    SWEEP_NAME,
    Bounds,
    MetricCurve,
    RangeTestResult,
    RunCurve,
    Spread,
    Timing,
    finite_or_none,
    load_results,
)
from clrfind.settings import FrozenModel

# Version 2 named a run's suggested lower bound `base_lr` (it was `min_lr`, the ladder's start in the results);
# version 3 added `per_key`, a two-key sweep's recommendation explained key by key.
SWEEP_SCHEMA_VERSION = 3
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


def mean_metric(runs: Sequence[RangeTestResult]) -> MetricCurve | None:
    """The runs' metric (accuracy, val loss) averaged at each evaluation step, as `mean_curve` averages the loss:
    over the runs with a finite value there, and only up to the first step fewer than half of them reached. None
    when a run measured no metric."""
    curves = [r.metric for r in runs]
    if not curves or any(c is None for c in curves) or len({c.name for c in curves if c is not None}) != 1:
        return None
    values: dict[int, list[float]] = {}
    lr_at: dict[int, float] = {}
    for curve in curves:
        assert curve is not None  # narrowed above
        for step, lr, value in zip(curve.steps, curve.lrs, curve.values, strict=True):
            lr_at.setdefault(step, lr)
            if value is not None and math.isfinite(value):
                values.setdefault(step, []).append(value)
    kept: list[int] = []
    for step in sorted(lr_at):
        if len(values.get(step, [])) < math.ceil(len(runs) / 2):
            break
        kept.append(step)
    first = curves[0]
    assert first is not None
    return MetricCurve(
        name=first.name, higher_is_better=first.higher_is_better, steps=kept, lrs=[lr_at[s] for s in kept],
        values=[float(np.mean(values[s])) for s in kept],
    )  # fmt: skip


def aggregate_repeats(runs: Sequence[RangeTestResult]) -> RangeTestResult:
    """One result from K runs: the mean curve (and mean metric), bounds suggested from them as from one run's,
    each bound's spread, and every run kept."""
    if not runs:
        raise UsageError("no runs to aggregate")
    first = runs[0]
    lrs, mean = mean_curve(runs)
    metric = mean_metric(runs)
    stop_reason = Counter(r.stop_reason for r in runs).most_common(1)[0][0]
    adaptive = first.optimizer.name if first.optimizer is not None and first.optimizer.adaptive else None
    bounds = bounds_for(
        lrs,
        mean,
        mode=first.mode,
        stop_reason=stop_reason,
        max_lr=first.max_lr,
        metric=metric,
        adaptive=adaptive,
    )
    spreads = {
        key: spread_of([getattr(r.bounds, key) if r.bounds else None for r in runs])
        for key in ("base_lr", "max_lr", "peak_lr")
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
                "base_rationale": bounds.base_rationale + spread_note("base_lr", "base_lr"),
                "max_rationale": bounds.max_rationale + spread_note("max_lr", "max_lr") + peak_note,
            }
        )
    curves = [
        RunCurve(seed=r.seed or 0, lrs=r.lrs, losses=r.losses, smoothed=r.smoothed, stop_reason=r.stop_reason,
                 bounds=r.bounds)
        for r in runs
    ]  # fmt: skip
    notes = sorted({n for r in runs for n in r.notes}) + repeat_notes(runs, len(mean), bounds, spreads)
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
            "metric": metric,
            "timing": _summed_timing([r.timing for r in runs]),
            "notes": notes,
        }
    )


def _summed_timing(timings: Sequence[Timing]) -> Timing:
    """The repeats' seconds together, and their whole cost when every run recorded one."""
    steps = [t.total_steps for t in timings]
    seconds = [t.total_seconds for t in timings]
    return Timing(
        seconds=round(sum(t.seconds for t in timings), 4),
        total_steps=None if None in steps else sum(steps),  # type: ignore[arg-type]
        total_seconds=None if None in seconds else round(sum(seconds), 4),  # type: ignore[arg-type]
    )


def repeat_notes(
    runs: Sequence[RangeTestResult], mean_steps: int, bounds: Bounds, spreads: dict[str, Spread | None]
) -> list[str]:
    """What the summary of repeated runs must say for its numbers to be followed: which runs (or parts of runs)
    the aggregate left out and why, and which value to use where the mean curve's bound is one no run found."""
    notes = []
    label = {id(r): f"run {k} (seed {r.seed})" for k, r in enumerate(runs, start=1)}
    for run in runs:
        if run.bounds is None or not run.bounds.usable:
            why = (
                (run.bounds.reason if run.bounds is not None else None) or run.stop_detail or run.stop_reason
            )
            notes.append(
                f"{label[id(run)]} found no bounds ({one_line(why, 120)}), so it is not in their spread"
            )
    # Only measured losses count as left out: a run's final NaN (its non-finite stop) is in no mean.
    cut = [r for r in runs if any(v is not None and math.isfinite(v) for v in r.losses[mean_steps:])]
    if cut:
        notes.append(
            f"the mean curve ends at step {mean_steps}, where fewer than half of the runs were still going: the "
            f"later steps of {', '.join(label[id(r)] for r in cut)} are not in it"
        )
    base, top = spreads.get("base_lr"), spreads.get("max_lr")
    if not bounds.usable and base is not None and top is not None:
        # The runs' own bounds are values the runs found; the mean of curves that turn at different LRs may have
        # no clear turn at all.
        notes.append(
            f"the mean curve gives no bounds, but {top.n} of the {len(runs)} runs did: use their medians, base_lr "
            f"{base.median:.3g} and max_lr {top.median:.3g} (no schedule was written from the mean; "
            f"{_nearest_run(runs, 'max_lr', top.median)} has the nearest max_lr)"
        )
    keys = ["base_lr", "max_lr"] + (["peak_lr"] if bounds.peak_above_max_lr else [])
    for key in keys:
        value, spread = getattr(bounds, key), spreads.get(key)
        if not bounds.usable or value is None or spread is None or spread.n < 2:
            continue
        if not spread.min <= value <= spread.max:
            # The runs' median is a value the runs found; a mean of curves that turn at different LRs can put its
            # turn where none of them turns.
            notes.append(
                f"{key} {value:.3g} from the mean curve is outside the runs' own range "
                f"({spread.min:.3g}-{spread.max:.3g}): use the runs' median, {spread.median:.3g} (the schedule "
                f"written from the mean has {value:.3g}; {_nearest_run(runs, key, spread.median)} has the "
                "nearest)"
            )
    return notes


def _nearest_run(runs: Sequence[RangeTestResult], key: str, value: float) -> str:
    """Which run's own schedule (`run-k/schedule.yaml`, from that run's bounds) has `key` nearest `value`, on the
    log axis: a file the user can take as it is."""
    found = [
        (abs(math.log(getattr(r.bounds, key) / value)), k, getattr(r.bounds, key))
        for k, r in enumerate(runs, start=1)
        if r.bounds is not None and r.bounds.usable and getattr(r.bounds, key)
    ]
    _, k, own = min(found)
    return f"run {k}'s own schedule (run-{k}/schedule.yaml, {key} {own:.3g})"


# -- sweeps --------------------------------------------------------------------------------------------------------


class SweepRun(FrozenModel):
    label: str
    overrides: dict[str, Any]
    results: str  # relative to the sweep file
    base_lr: float | None = None
    max_lr: float | None = None
    lowest_loss: float | None = None
    confidence: str = "none"
    stop_reason: str = "completed"
    error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _version_1_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and "min_lr" in data:
            return {("base_lr" if k == "min_lr" else k): v for k, v in data.items()}
        return data


class SweepFile(FrozenModel):
    """`sweep.json`: which runs a sweep made and which value it recommends; each run has its own results file."""

    kind: str = SWEEP_KIND
    schema_version: int = SWEEP_SCHEMA_VERSION
    spec_path: str
    keys: list[str]
    runs: list[SweepRun]
    recommended: str | None = None
    rationale: str = ""
    # Two keys: why each key's value, at the other key's recommended value (`explain_per_key`).
    per_key: list[str] = Field(default_factory=list)


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
    """A readable label: `weight_decay=0.0001` (last part of each key); `folder_names` makes it a folder."""
    parts = [f"{k.rsplit('.', 1)[-1]}={_value_text(v)}" for k, v in overrides.items()]
    return ",".join(parts)


def _value_text(value: Any) -> str:
    """A sweep value as written (`0.0001`, `adam`), bounded: it is a table cell and a folder name."""
    return one_line(value if isinstance(value, str) else short_repr(value), limit=FOLDER_NAME_LIMIT)


# Longest folder name made from a sweep value: well under every filesystem's 255-byte limit, readable in `ls`.
FOLDER_NAME_LIMIT = 80


def folder_names(labels: Sequence[str]) -> list[str]:
    """One folder name per run label, safe and distinct: a sweep value is data and may hold anything.

    Characters other than letters, digits and `._=,+-` become `_` (no path separators, so nothing lands outside
    the sweep folder), leading and trailing dots go (no `..`, no hidden folders), long names are cut and keep a
    digest of the whole label, and names equal after all this (or equal but for case, which macOS and Windows
    fold) get `~2`, `~3`, ...
    """
    names: list[str] = []
    taken: set[str] = set()
    for label in labels:
        base = re.sub(r"[^A-Za-z0-9._=,+-]", "_", label).strip(".") or "_"
        if len(base) > FOLDER_NAME_LIMIT:
            digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:10]
            base = f"{base[: FOLDER_NAME_LIMIT - 11]}-{digest}"
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}~{n}"
        taken.add(name.lower())
        names.append(name)
    return names


def lowest_loss(result: RangeTestResult) -> float | None:
    values = [v for v in result.smoothed if v is not None]
    return min(values) if values else None


def _usable(runs: Sequence[SweepRun]) -> list[SweepRun]:
    return [r for r in runs if r.max_lr is not None and r.lowest_loss is not None]


def _lowest_loss_limit(usable: Sequence[SweepRun]) -> float:
    """The lowest loss a value must reach to count as "as low as the best" (see SWEEP_LOSS_TOLERANCE)."""
    losses = [r.lowest_loss for r in usable if r.lowest_loss is not None]
    best, worst = min(losses), max(losses)
    return best + (SWEEP_LOSS_TOLERANCE * (worst - best) if worst > best else 0.0)


def recommend(runs: Sequence[SweepRun]) -> tuple[str | None, str]:
    """Smith's rule: among the values reaching (nearly) the lowest loss, the one that allows the largest max_lr."""
    usable = _usable(runs)
    if not usable:
        return None, "no run gave usable bounds"
    limit = _lowest_loss_limit(usable)
    contenders = [r for r in usable if r.lowest_loss is not None and r.lowest_loss <= limit]
    # Equal max_lrs are common (the self-check settles several values on the same trial peak): the lower loss
    # decides between them, and the reason says so.
    pick = max(contenders, key=lambda r: (r.max_lr or 0.0, -(r.lowest_loss or 0.0)))
    tied = [r.label for r in contenders if r is not pick and r.max_lr == pick.max_lr]
    tie = (
        f"; tied on max_lr with {', '.join(tied)}, it reaches the lower loss ({pick.lowest_loss:.4g})"
        if tied
        else ""
    )
    return pick.label, (
        f"{pick.label}: largest max_lr ({pick.max_lr:.2g}) among the values reaching the lowest loss "
        f"(within {SWEEP_LOSS_TOLERANCE:.0%} of the spread: <= {limit:.4g}){tie}"
    )


def explain_per_key(runs: Sequence[SweepRun], recommended: str | None) -> list[str]:
    """A two-key sweep's recommendation, one line per key: that key's values with the other key at its
    recommended value, each with its max_lr and lowest loss, so the choice of each value can be followed (the
    same rule and loss limit as `recommend`). Empty for one key or no recommendation."""
    pick = next((r for r in runs if r.label == recommended), None)
    if pick is None or len(pick.overrides) < 2:
        return []
    limit = _lowest_loss_limit(_usable(runs))
    lines = []
    for key, value in pick.overrides.items():
        fixed = {k: v for k, v in pick.overrides.items() if k != key}
        row = [
            r for r in runs if key in r.overrides and all(r.overrides.get(k) == v for k, v in fixed.items())
        ]
        cells, reaching = [], 0
        for r in row:
            name = _value_text(r.overrides[key])
            if r.max_lr is None or r.lowest_loss is None:
                cells.append(f"{name} no bounds" if r.error is None else f"{name} failed")
            else:
                above = "" if r.lowest_loss <= limit else " (above the limit)"
                reaching += not above
                cells.append(f"{name} max_lr {r.max_lr:.2g} at loss {r.lowest_loss:.4g}{above}")
        why = (
            "the only value reaching the lowest loss"
            if reaching == 1
            else f"the largest max_lr of the {reaching} values reaching the lowest loss"
        )
        lines.append(
            f"{run_label({key: value})}: at {run_label(fixed)}, {why} (<= {limit:.4g}): {'; '.join(cells)}"
        )
    return lines


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
