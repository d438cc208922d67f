"""The versioned results file: everything a range test measured, enough to re-plot and re-export without torch.

The file is JSON (never a pickle), written atomically. Non-finite losses are stored as ``null``. Loading checks the
schema version and the shape of every field and raises `ResultsError` with the fix, so `plot` and `export` never
crash on a file from another version or one cut short.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, model_validator

from clrfind.errors import ResultsError, one_line, short_repr
from clrfind.fileio import read_document, write_atomic
from clrfind.settings import FrozenModel, MetricName, TrainingLength

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Version 9 added `training`, the length of the training the bounds are for (the spec's `training:` with its steps
# per epoch filled in), which `export` fits the schedule to by default; version 8 files load without one.
# Version 8 added `timing.total_steps` and `timing.total_seconds`, what the whole run cost (its reruns, the
# self-check's trials and hold included); version 7 files load without them.
# Version 7 added `bounds.peak_ceiling_lr`, how far up the self-check may raise a one-cycle peak left at max_lr (an
# adaptive optimizer's; a converged test's); version 6 files load without one.
# Version 6 added `bounds.level_until_lr`, the top of a curve that stayed level and then got worse or diverged,
# below which the self-check looks for an LR that trains; version 5 files load without one.
# Version 5 added `verification.hold`, the self-check's stay at the kept peak; version 4 files load without one.
# Version 4 added how the test trained and what it cost: `param_groups` (each group's LR ratio), `clip_grad_norm` /
# `clip_grad_value`, `from_trained_state` and `peak_memory`, and `bounds.wider_max_lr`; older files load with their
# defaults.
# Version 3 renamed the suggested lower bound `bounds.min_lr` -> `bounds.base_lr` (with `min_rationale` ->
# `base_rationale` and `spread.min_lr` -> `spread.base_lr`): it no longer shares a name with the ladder's start;
# it also added `verification`, the self-check of the bounds.
# Version 2 added `bounds.peak_lr`; version 1 files have no peak (one-cycle peaks at max_lr). Older files are
# migrated on load.
SCHEMA_VERSION = 9
READABLE_VERSIONS = tuple(range(1, SCHEMA_VERSION + 1))  # each older one only lacks fields, or renamed two
RESULTS_NAME = "range_test.json"
PLOT_NAME = "range_test.png"
SCHEDULE_NAME = "schedule.yaml"
# A sweep's file (clrfind.multi) and its `kind`, recognised here so that a sweep given as results is named as such.
SWEEP_NAME = "sweep.json"
SWEEP_KIND = "clrfind-sweep"

StopReason = Literal["completed", "diverged", "non-finite", "interrupted", "error"]
Confidence = Literal["high", "medium", "low", "none"]
CONFIDENCE_LEVELS: tuple[Confidence, ...] = ("none", "low", "medium", "high")  # lowest first


class Bounds(FrozenModel):
    """The suggested (base_lr, max_lr) pair, how sure we are, and why.

    When the curve gives no reliable answer, `base_lr`/`max_lr` may be None and `reason` and `next_step` say what
    went wrong and what to run next, instead of a forced number.
    """

    base_lr: float | None = None
    max_lr: float | None = None
    # One cycle's top (>= max_lr): the largest LR the test shows still training, which a single cycle can reach
    # where a repeating CLR cycle should not. None in results written before schema version 2.
    peak_lr: float | None = None
    method: str = "loss"
    confidence: Confidence = "none"
    base_rationale: str = ""
    max_rationale: str = ""
    reason: str | None = None
    next_step: str | None = None
    best_lr: float | None = None
    divergence_lr: float | None = None
    # Set when the curve stayed flat, or was still falling, to the end of its range and nothing diverged: the range
    # ended too low, and this is the end its next step names (10x higher). The range test then runs again up to it
    # (`clrfind.api.widen`).
    wider_max_lr: float | None = None
    # Set when the curve stayed level over most of the range and then got worse or diverged: the last LR of the
    # level stretch.
    # A model that needs many steps at one LR to leave a plateau shows no fall on a rising ladder, so the
    # self-check trains at and below this LR to look for one that learns (`clrfind.verify.rescue`).
    level_until_lr: float | None = None
    # Set when one cycle peaks at max_lr for a reason the self-check's trials can test (an adaptive optimizer; a
    # test whose loss converged): the highest peak it may raise it to, when a trial there trains clearly better
    # (`clrfind.verify`). An adaptive optimizer's is half a decade up at most, and only where the test's loss was
    # still falling; a converged test's is Smith's upper estimate (divergence_lr / 2, or half the last LR).
    peak_ceiling_lr: float | None = None

    @property
    def min_lr(self) -> float | None:
        """Deprecated name of `base_lr` (schema versions 1-2), kept for code written against them."""
        warnings.warn("Bounds.min_lr is now Bounds.base_lr", DeprecationWarning, stacklevel=2)
        return self.base_lr

    @property
    def min_rationale(self) -> str:
        """Deprecated name of `base_rationale` (schema versions 1-2)."""
        warnings.warn("Bounds.min_rationale is now Bounds.base_rationale", DeprecationWarning, stacklevel=2)
        return self.base_rationale

    @property
    def peak_above_max_lr(self) -> float | None:
        """peak_lr when one cycle should go above max_lr, else None (it peaks at max_lr)."""
        if self.peak_lr is None or self.max_lr is None or self.peak_lr <= self.max_lr:
            return None
        return self.peak_lr

    @property
    def usable(self) -> bool:
        """True when both bounds exist and can be exported as a schedule."""
        return self.base_lr is not None and self.max_lr is not None and self.base_lr < self.max_lr

    def explanation(self) -> list[tuple[str, str]]:
        """(label, sentence) pairs saying why each bound is where it is, or why there is none, and what next.

        One wording for every place a person reads it (the run summary, the plot's footnote).
        """
        lines = []
        if self.base_lr is not None and self.base_rationale:
            lines.append(("base_lr", self.base_rationale))
        if self.max_lr is not None and self.max_rationale:
            lines.append(("max_lr", self.max_rationale))
        if self.reason:
            lines.append(("caveat" if self.usable else "why", self.reason))
        if self.next_step:
            lines.append(("next", self.next_step))
        return lines


class MetricCurve(FrozenModel):
    """A metric evaluated on a fixed validation subsample every few steps (the paper's accuracy test)."""

    name: Literal["accuracy", "val_loss"]
    higher_is_better: bool
    steps: list[int]
    lrs: list[float]
    values: list[float | None]

    @model_validator(mode="after")
    def _same_length(self) -> MetricCurve:
        if not len(self.steps) == len(self.lrs) == len(self.values):
            raise ValueError("metric.steps, metric.lrs and metric.values must have the same length")
        return self


# Optimizers that scale each parameter's step by a running estimate of its gradient's size (or take its sign):
# their steps do not shrink as the gradients do near a minimum, unlike SGD's.
ADAPTIVE_OPTIMIZERS = (
    "Adam", "AdamW", "NAdam", "RAdam", "Adamax", "SparseAdam", "Adagrad", "Adadelta", "RMSprop", "Rprop",
    "Adafactor", "Lion", "Lamb", "LAMB",
)  # fmt: skip


class OptimizerRef(FrozenModel):
    """The optimizer the test ran with, so an exported schedule builds the same one."""

    target: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        """The class name: `torch.optim.adamw.AdamW` -> `AdamW`."""
        return self.target.replace(":", ".").rsplit(".", 1)[-1]

    @property
    def adaptive(self) -> bool:
        """True for the Adam family, RMSprop, Adagrad and the like (see ADAPTIVE_OPTIMIZERS; `betas` gives it away)."""
        return (
            "betas" in self.kwargs
            or self.name in ADAPTIVE_OPTIMIZERS
            or self.name.endswith(("Adam", "AdamW"))
        )


class Timing(FrozenModel):
    """What the recorded curve cost (`seconds`), and what the whole run did (`total_*`): a test run again over a
    wider range or with more steps records only its last curve, and the self-check trains too."""

    seconds: float = 0.0
    seconds_per_step: float | None = None
    compile_seconds: float | None = None
    # Every optimizer step the run trained (the test, its reruns, the self-check's trials and hold), and its
    # seconds from the first step to the bounds; None in files of schema version 7 and older.
    total_steps: int | None = None
    total_seconds: float | None = None


class RunCurve(FrozenModel):
    """One run of a repeated test: its seed, curve, stop reason and its own bounds."""

    seed: int
    lrs: list[float]
    losses: list[float | None]
    smoothed: list[float | None]
    stop_reason: StopReason
    bounds: Bounds | None = None


class Spread(FrozenModel):
    """How a bound varied over repeated runs: median, quartiles, extremes, and over how many runs."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int


class Trial(FrozenModel):
    """One self-check trial: a one-cycle schedule peaking at `peak`, compressed to `steps`, from the initial weights.

    `final_loss` is the mean training loss of its last 20% of steps, None when it did not train (diverged,
    non-finite, or ended no lower than it started); `check_loss` its mean loss on the held-out batches after it.
    """

    peak: float
    steps: int
    final_loss: float | None
    stop_reason: str
    check_loss: float | None = None


class Verification(FrozenModel):
    """What the self-check trained, what it concluded, and what it cost (see `clrfind.verify`)."""

    trials: list[Trial]
    steps: int
    seconds: float = 0.0
    checked_peak: float  # the one-cycle peak the range test suggested
    peak_lr: float  # the peak the trials support
    outcome: str
    judged_on: str = (
        ""  # what the trials were compared on: held-out or validation data, or their training loss
    )
    # The kept peak held from the top of the warm-up to the end of the steps left (`final_loss` None when the stay
    # did not hold); None when no steps were left or no trial trained.
    hold: Trial | None = None


class ParamGroup(FrozenModel):
    """One parameter group of the optimizer the test ran with, in the optimizer's order.

    The ladder drives the group with the largest LR; every other group follows at `lr_ratio` of it, so the bounds
    are that group's and group i's are the bounds times its ratio (what the export writes per group).
    """

    name: str
    lr_ratio: float
    param_count: int  # parameters (elements), as `clrfind check` counts them
    tensors: int
    params: list[str] = Field(default_factory=list)  # the name patterns a spec's group selected with
    modules: list[str] = Field(default_factory=list)  # the module selectors (`norm`, a class name)
    kwargs: dict[str, Any] = Field(
        default_factory=dict
    )  # the group's options that differ from the optimizer's


class PeakMemory(FrozenModel):
    """The peak memory of the run, and what was measured: `cuda_max_memory_allocated` is torch's allocator peak on
    the GPU, reset when the test starts; `process_max_rss` is the process's peak resident set size
    (`resource.getrusage`), which cannot be reset, so it includes whatever the process did before the test."""

    bytes: int
    measured: Literal["cuda_max_memory_allocated", "process_max_rss"]


class RangeTestResult(FrozenModel):
    """Everything one range test (or one aggregate of repeated tests) produced."""

    schema_version: int = SCHEMA_VERSION
    clrfind_version: str
    torch_version: str | None = None
    created: str | None = None
    device: str = "cpu"
    seed: int | None = None
    mode: Literal["linear", "exp"] = "linear"
    min_lr: float
    max_lr: float
    planned_steps: int
    metric_name: MetricName = "loss"
    lrs: list[float]
    losses: list[float | None]
    smoothed: list[float | None]
    metric: MetricCurve | None = None
    stop_reason: StopReason
    stop_detail: str = ""
    bounds: Bounds | None = None
    steps_per_epoch: int | None = None
    # The training the bounds are for, when the spec or call said (`training:`); its steps per epoch are filled in.
    training: TrainingLength | None = None
    batch_size: int | None = None
    world_size: int = 1
    global_batch_size: int | None = None
    accumulate: int = 1
    precision: str = "fp32"
    optimizer: OptimizerRef | None = None
    spec: dict[str, Any] | None = None
    spec_path: str | None = None
    notes: list[str] = Field(default_factory=list)
    timing: Timing = Field(default_factory=Timing)
    runs: list[RunCurve] | None = None
    spread: dict[str, Spread] | None = None
    verification: Verification | None = None
    param_groups: list[ParamGroup] | None = None
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    # True when the optimizer already had state (momentum buffers, Adam's moments) when the test started: a re-test
    # of a model in mid-training, whose curve starts from where that training was, not from a fresh start.
    from_trained_state: bool = False
    peak_memory: PeakMemory | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RangeTestResult:
        if not len(self.lrs) == len(self.losses) == len(self.smoothed):
            raise ValueError("lrs, losses and smoothed must have the same length")
        return self

    # -- views -----------------------------------------------------------------------------------------------

    @property
    def steps_run(self) -> int:
        """Steps the test made (fewer than `planned_steps` when it stopped early)."""
        return len(self.lrs)

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        """What a notebook shows for the result (pydantic's repr and rich's pretty print both read these): the
        bounds, how sure, why it stopped and how far it got, not the curves' hundreds of numbers."""
        b = self.bounds
        if b is not None and b.usable:
            yield "base_lr", _rounded(b.base_lr)
            yield "max_lr", _rounded(b.max_lr)
            if b.peak_above_max_lr is not None:
                yield "peak_lr", _rounded(b.peak_above_max_lr)
        else:
            yield "bounds", None
        yield "confidence", b.confidence if b is not None else "none"
        yield "stop_reason", self.stop_reason
        yield "steps_run", self.steps_run
        yield "planned_steps", self.planned_steps
        if self.runs:
            yield "runs", len(self.runs)

    def summary(self) -> str:
        """The summary `clrfind range-test` prints after a run, less the lines naming its files: what ran, why it
        stopped, the bounds with the reasoning for each, the self-check and the notes (one implementation for the
        CLI and notebooks)."""
        b = self.bounds
        lines = [
            f"range test: {self.steps_run}/{self.planned_steps} steps on {self.device} "
            f"in {format_seconds(self.timing.seconds)} "
            f"({self.mode}, lr {format_lr(self.min_lr)} -> {format_lr(self.max_lr)})"
            + (f", {len(self.runs)} runs" if self.runs else "")
            + (
                f", {self.world_size} processes, global batch {self.global_batch_size}"
                if self.world_size > 1
                else ""
            ),
            f"stopped: {self.stop_reason} ({self.stop_detail})",
        ]
        if self.training is not None and self.training.total_steps:
            lines.append(f"for a training of {self.training.described} (the exported schedule's length)")
        if b is not None and b.usable:
            peak = (
                "" if b.peak_above_max_lr is None else f"  one-cycle peak_lr {format_lr(b.peak_above_max_lr)}"
            )
            lines.append(
                f"suggested: base_lr {format_lr(b.base_lr)}  max_lr {format_lr(b.max_lr)}{peak}  "
                f"(from {b.method}, confidence {b.confidence})"
            )
        else:
            lines.append("suggested: no reliable bounds")
        lines += [f"  {label}: {text}" for label, text in (b.explanation() if b is not None else [])]
        check = self.verification
        if check is not None:
            how = f"judged on {check.judged_on}; " if check.judged_on else ""
            cost = (
                f"{check.steps} trial steps in {format_seconds(check.seconds)}"
                if check.steps
                else "no trials"
            )
            lines.append(f"self-check: {check.outcome} ({how}{cost})")
        lines += [f"note: {note}" for note in self.notes]
        t = self.timing
        if t.total_steps is not None and t.total_seconds is not None and t.total_steps > self.steps_run:
            parts = [f"the curve's {self.steps_run}"]
            checked = check.steps if check is not None else 0
            if checked:
                parts.append(f"the self-check's {checked}")
            if t.total_steps > self.steps_run + checked:
                # A wider rerun replaces the curve, a probe past its range only looks for the divergence, and the
                # engine confirms a stop a few steps after the step that tripped it: none of these is on the curve.
                parts.append(
                    f"{t.total_steps - self.steps_run - checked} off the curve, in other ranges or past its end"
                )
            lines.append(
                f"cost: {t.total_steps} optimizer steps in {format_seconds(t.total_seconds)} in all "
                f"({', '.join(parts)})"
            )
        return "\n".join(lines)

    def _repr_png_(self) -> bytes | None:
        """The plot as PNG, which Jupyter shows when the result is the last thing in a cell; None (the text repr)
        when no step was recorded."""
        if not self.steps_run:
            return None
        from clrfind.plotting import figure_png

        return figure_png(self.plot())

    def suggestion(self) -> tuple[float | None, float | None]:
        """(base_lr, max_lr), without plotting anything."""
        if self.bounds is None:
            return (None, None)
        return (self.bounds.base_lr, self.bounds.max_lr)

    def plot(self, *, log_x: bool | None = None) -> Figure:
        """Render the curve as a matplotlib Figure (no pyplot state); matplotlib is imported here, not before."""
        from clrfind.plotting import plot_result

        return plot_result(self, log_x=log_x)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the results as JSON, atomically. A folder path gets ``range_test.json`` inside it."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            path = path / RESULTS_NAME
        return write_atomic(path, to_json(self))


def _rounded(value: float | None) -> float | None:
    """3 significant digits, as the summary gives LRs (0.0151, not 0.015123471...)."""
    return None if value is None else float(f"{value:.3g}")


def format_lr(value: float | None) -> str:
    """An LR for people, to 3 significant digits; "-" for none."""
    return "-" if value is None else f"{value:.3g}"


def format_seconds(seconds: float) -> str:
    """A duration for people: small models finish a whole test in under a tenth of a second, where "0.0 s" would
    read as "nothing ran", so anything under a second is given in milliseconds."""
    return f"{seconds * 1e3:.0f} ms" if seconds < 1.0 else f"{seconds:.1f} s"


def finite_or_none(values: Any) -> list[float | None]:
    """Floats with NaN/inf replaced by None, so the JSON is standard and non-finite points stay visible as gaps."""
    return [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]


def to_json(result: RangeTestResult) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=1, allow_nan=False) + "\n"


def load_results(path: str | os.PathLike[str]) -> RangeTestResult:
    """Read and validate a results file (or the ``range_test.json`` in a run folder).

    Raises:
        ResultsError: missing, not JSON (e.g. truncated), another schema version, or fields of the wrong shape.
    """
    path = Path(path)
    if path.is_dir():
        swept = not (path / RESULTS_NAME).exists() and (path / SWEEP_NAME).exists()
        path = path / (SWEEP_NAME if swept else RESULTS_NAME)
    if not path.exists():
        raise ResultsError(
            f"{path}: no such results file", hint="pass the range_test.json a range test wrote"
        )
    # The other files of a run folder, passed by a slip of the tab key: say what they are, not 'not valid JSON'.
    other = {".yaml": "a YAML file (a schedule or a spec)", ".yml": "a YAML file (a schedule or a spec)",
             ".png": "an image (a plot)"}.get(path.suffix.lower())  # fmt: skip
    if other is not None:
        raise ResultsError(
            f"{path}: {other}, not the results of a range test",
            hint=f"pass the {RESULTS_NAME} beside it, or its folder",
        )
    raw = read_document(
        path, error=ResultsError, hint="re-run `clrfind range-test` to write it again", as_json=True
    )
    return results_from_dict(raw, source=str(path))


def results_from_dict(raw: Any, *, source: str = "<results>") -> RangeTestResult:
    """Validate a decoded results mapping; `source` names it in error messages."""
    if not isinstance(raw, dict):
        raise ResultsError(f"{source}: expected a JSON object at the top, got {type(raw).__name__}")
    if raw.get("kind") == SWEEP_KIND:
        raise ResultsError(
            f"{source}: a sweep file (it lists one range test per value), not one range test's results",
            hint="pass the range_test.json of one of its runs, e.g. the recommended one's folder; "
            "`clrfind plot` takes the sweep file itself",
        )
    version = raw.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ResultsError(
            f"{source}: schema_version is {short_repr(version)}, this clrfind reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}",
            hint="re-run the range test with this clrfind, or use the clrfind version that wrote the file",
        )
    try:
        return RangeTestResult.model_validate(_migrate(raw, version))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = one_line(".".join(str(p) for p in first["loc"]), limit=100) or "<top>"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ResultsError(
            f"{source}: key '{where}': {first['msg']}{more}",
            hint="the file is damaged; re-run the range test",
        ) from exc


def _migrate(raw: dict[str, Any], version: int) -> dict[str, Any]:
    """An older version's mapping as this one reads it: versions 3 and later only lack fields that have defaults; 1-2
    also named `bounds.base_lr` `bounds.min_lr`, ..."""
    if version >= 3:
        return {**raw, "schema_version": SCHEMA_VERSION}
    names = {"min_lr": "base_lr", "min_rationale": "base_rationale"}

    def renamed(bounds: Any) -> Any:
        return {names.get(k, k): v for k, v in bounds.items()} if isinstance(bounds, dict) else bounds

    out = {**raw, "schema_version": SCHEMA_VERSION, "bounds": renamed(raw.get("bounds"))}
    if isinstance(raw.get("runs"), list):
        out["runs"] = [{**run, "bounds": renamed(run.get("bounds"))} if isinstance(run, dict) else run
                       for run in raw["runs"]]  # fmt: skip
    if isinstance(raw.get("spread"), dict):
        out["spread"] = renamed(raw["spread"])
    if "bounds" not in raw:
        del out["bounds"]
    return out
