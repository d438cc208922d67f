"""A range test in an experiment tracker: TensorBoard, Weights & Biases or MLflow, from the CLI (`--log`), the
library (`range_test(log=...)`) and integrations that already hold a tracker's run (a Lightning logger's).

What is sent is built once from the result (`RunRecord`): the curve per step (LR, raw and smoothed loss, the
metric), the bounds with their rationale, the summary, the plot as a PNG and the exported schedule as a file. Each
tracker is a small class with one method that sends a record (`ExperimentLogger`), so an integration wraps the run
it has and calls `log_result`. The trackers' packages are optional extras, imported only when one is asked for; a
missing one is a one-line `UsageError` naming the extra, raised before anything trains.
"""

from __future__ import annotations

import importlib
import io
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from clrfind.errors import ClrfindError, OutputError, UsageError, describe_exception

if TYPE_CHECKING:
    from clrfind.results import RangeTestResult

# Every tag, metric, key and artifact folder starts with this, so the range test stays apart from training's own.
PREFIX = "clrfind"
LOG_CHOICES = "tensorboard[:DIR], wandb[:PROJECT] or mlflow[:EXPERIMENT]"
# MLflow's limits per log_batch call.
MLFLOW_BATCH_METRICS = 1000
MLFLOW_BATCH_PARAMS = 100


@dataclass(frozen=True)
class RunRecord:
    """What a tracker receives from one range test, in plain values (no torch, no matplotlib objects).

    Attributes:
        curves: tag -> (step, value) pairs, steps counted from 0 as in the results file: `lr`, `loss` (raw, finite
            values only), `smoothed_loss`, and the metric (`accuracy` or `val_loss`) at the steps it was evaluated.
        params: the bounds and the facts of the run (`base_lr`, `max_lr`, `confidence`, `stop_reason`, ...).
        texts: name -> text: `bounds` (the rationale of each bound, or why there is none) and `summary`.
        images: name -> PNG bytes: `range_test`, the plot `clrfind plot` draws.
        files: file name -> contents: `schedule.yaml`, the schedule `clrfind export` writes, when there are bounds.
    """

    curves: Mapping[str, Sequence[tuple[int, float]]]
    params: Mapping[str, float | int | str]
    texts: Mapping[str, str]
    images: Mapping[str, bytes]
    files: Mapping[str, str]


@runtime_checkable
class ExperimentLogger(Protocol):
    """Sends a range test's record to one tracker; returns where it went, for the run's summary."""

    def log_range_test(self, record: RunRecord) -> str: ...


def run_record(result: RangeTestResult, *, images: bool = True) -> RunRecord:
    """The record every tracker gets from `result`: one place decides what is logged. `images=False` leaves out
    the plot, for a receiver that cannot take one (rendering it takes about a second)."""
    from clrfind.export import build_schedule, render_schedule

    curves: dict[str, list[tuple[int, float]]] = {
        "lr": list(enumerate(result.lrs)),
        "loss": [(i, v) for i, v in enumerate(result.losses) if v is not None],
        "smoothed_loss": [(i, v) for i, v in enumerate(result.smoothed) if v is not None],
    }
    if result.metric is not None:
        curves[result.metric.name] = [
            (step, v)
            for step, v in zip(result.metric.steps, result.metric.values, strict=True)
            if v is not None
        ]
    b = result.bounds
    params: dict[str, float | int | str] = {
        "stop_reason": result.stop_reason,
        "steps_run": result.steps_run,
        "planned_steps": result.planned_steps,
        # every step the run trained, reruns and self-check included (None in older files)
        **({"total_steps": result.timing.total_steps} if result.timing.total_steps is not None else {}),
        "ladder": f"{result.mode} {result.min_lr:.3g} -> {result.max_lr:.3g}",
        "confidence": b.confidence if b is not None else "none",
    }
    if b is not None:
        params["method"] = b.method
        for key in ("base_lr", "max_lr", "peak_lr", "divergence_lr"):
            if getattr(b, key) is not None:
                params[key] = float(getattr(b, key))
    explanation = b.explanation() if b is not None else []
    texts = {
        "bounds": "\n".join(f"{label}: {text}" for label, text in explanation) or "no bounds",
        "summary": result.summary(),
    }
    pictures, files = {}, {}
    if images and result.steps_run:
        from clrfind.plotting import figure_png

        pictures["range_test"] = figure_png(result.plot())
    if b is not None and b.usable:
        try:
            files["schedule.yaml"] = render_schedule(build_schedule(result))
        except ClrfindError as exc:  # the curve and bounds are still worth logging
            texts["schedule"] = f"not exported: {exc}"
    return RunRecord(curves=curves, params=params, texts=texts, images=pictures, files=files)


def log_result(result: RangeTestResult, targets: Any) -> list[str]:
    """Send `result` to every tracker `targets` names (see `experiment_loggers`); returns where each put it.

    Raises:
        UsageError: a target that is no logger, or a tracker whose package is not installed.
        OutputError: a tracker failed while logging (the result itself is untouched).
    """
    loggers = experiment_loggers(targets)
    if not loggers:
        return []
    record = run_record(result)
    places = []
    for logger in loggers:
        try:
            places.append(logger.log_range_test(record))
        except ClrfindError:
            raise
        except Exception as exc:  # a tracker's own failure (network, disk, its API): one line, naming it
            name = getattr(logger, "name", type(logger).__name__)
            raise OutputError(f"logging to {name} failed: {describe_exception(exc)}") from exc
    return places


def experiment_loggers(
    targets: Any, *, option: str = "log=", default_dir: str | os.PathLike[str] | None = None
) -> list[ExperimentLogger]:
    """The loggers `targets` names, checked before anything runs: None, or one or a list of `"tensorboard"`,
    `"tensorboard:DIR"`, `"wandb"`, `"wandb:PROJECT"`, `"mlflow"`, `"mlflow:EXPERIMENT"`, an `ExperimentLogger`,
    or a `SummaryWriter`.

    Args:
        targets: what to log to.
        option: how the caller names the setting, for messages (`"--log"` on the command line, `"log="` here).
        default_dir: where "tensorboard" without a DIR writes (the CLI's run folder); default SummaryWriter's own
            (`runs/<date>_<host>`).

    Raises:
        UsageError: an unknown name, a tracker whose package is missing (naming the extra), or an object that is
            not a logger.
    """
    if targets is None:
        return []
    if isinstance(targets, (str, bytes, ExperimentLogger)) or not isinstance(targets, Iterable):
        targets = [targets]
    return [_logger(t, option=option, default_dir=default_dir) for t in targets]


def _logger(target: Any, *, option: str, default_dir: str | os.PathLike[str] | None) -> ExperimentLogger:
    if isinstance(target, ExperimentLogger):
        return target
    if not isinstance(target, str):
        if callable(getattr(target, "add_scalar", None)) and callable(getattr(target, "add_image", None)):
            return TensorBoard(
                writer=target
            )  # a SummaryWriter, e.g. Lightning's TensorBoardLogger.experiment
        raise UsageError(
            f"{option}: a {type(target).__name__} is not a logger",
            hint=f"pass {LOG_CHOICES}, a SummaryWriter, or an object with log_range_test(record)",
        )
    said = f"{option}{target!r}" if option.endswith("=") else f"{option} {target}"
    name, _, arg = target.partition(":")
    name = name.strip().lower()
    if name not in _BACKENDS:
        from clrfind.spec import closest

        close = closest(name, _BACKENDS)
        raise UsageError(
            f"{said}: unknown logger" + (f" (did you mean {close!r}?)" if close else ""),
            hint=f"use {LOG_CHOICES}",
        )
    module, make = _BACKENDS[name]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"{said}: the {module} package is not installed", hint=f"pip install 'clrfind[{name}]'"
        ) from exc
    if name == "tensorboard":
        return TensorBoard(arg or default_dir)
    return make(arg or None)


class TensorBoard:
    """Scalars `clrfind/lr`, `clrfind/loss`, `clrfind/smoothed_loss` (and the metric) per step, the bounds and
    summary as text, the plot as an image, and `schedule.yaml` written beside the event file (and shown as text).

    Args:
        log_dir: where a new SummaryWriter writes (default SummaryWriter's `runs/<date>_<host>`); it is closed
            after logging.
        writer: a SummaryWriter you hold instead (Lightning's `TensorBoardLogger.experiment`); flushed, not closed.
    """

    name = "tensorboard"

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, *, writer: Any = None) -> None:
        self.log_dir = log_dir
        self.writer = writer

    def log_range_test(self, record: RunRecord) -> str:
        from torch.utils.tensorboard import SummaryWriter

        writer = self.writer or SummaryWriter(log_dir=None if self.log_dir is None else str(self.log_dir))
        folder = Path(writer.get_logdir())
        try:
            for tag, points in record.curves.items():
                for step, value in points:
                    writer.add_scalar(f"{PREFIX}/{tag}", value, step)
            params = "\n".join(f"| {k} | {v} |" for k, v in record.params.items())
            writer.add_text(f"{PREFIX}/params", "| key | value |\n| --- | --- |\n" + params)
            for name, text in record.texts.items():
                writer.add_text(f"{PREFIX}/{name}", _preformatted(text))
            for name, png in record.images.items():
                writer.add_image(f"{PREFIX}/{name}", _decode_png(png), 0, dataformats="HWC")
            for name, text in record.files.items():
                (folder / name).write_text(text, encoding="utf-8")
                writer.add_text(f"{PREFIX}/{name}", _preformatted(text))
        finally:
            if self.writer is None:
                writer.close()
            else:
                writer.flush()
        return f"tensorboard: {folder}"


class Wandb:
    """Weights & Biases: the curve against `clrfind/step`, the bounds and texts in the run's summary, the plot as
    an image and `schedule.yaml` saved with the run's files.

    Args:
        project: the project of a new run (default: wandb's, e.g. `WANDB_PROJECT`); `WANDB_MODE=offline` works as
            usual. The run is finished after logging.
        run: a run you hold instead (Lightning's `WandbLogger.experiment`); it stays open.
    """

    name = "wandb"

    def __init__(self, project: str | None = None, *, run: Any = None) -> None:
        self.project = project
        self.run = run

    def log_range_test(self, record: RunRecord) -> str:
        import wandb

        run = self.run or wandb.init(project=self.project, job_type="lr-range-test")
        where = getattr(run, "url", None) or run.dir
        try:
            # Its own step axis: a run that already logged training steps keeps them, and these are not dropped.
            step = f"{PREFIX}/step"
            run.define_metric(step)
            run.define_metric(f"{PREFIX}/*", step_metric=step)
            rows: dict[int, dict[str, float]] = {}
            for tag, points in record.curves.items():
                for i, value in points:
                    rows.setdefault(i, {})[f"{PREFIX}/{tag}"] = value
            for i in sorted(rows):
                run.log({step: i, **rows[i]})
            run.summary.update({f"{PREFIX}/{k}": v for k, v in {**record.params, **record.texts}.items()})
            folder = Path(run.dir) / PREFIX
            folder.mkdir(parents=True, exist_ok=True)
            for name, png in record.images.items():
                path = folder / f"{name}.png"
                path.write_bytes(png)
                run.log({step: max(rows, default=0), f"{PREFIX}/{name}": wandb.Image(str(path))})
            for name, text in record.files.items():
                path = folder / name
                path.write_text(text, encoding="utf-8")
                run.save(str(path), base_path=run.dir, policy="now")
        finally:
            if self.run is None:
                run.finish()
        return f"wandb: {where}"


class MLflow:
    """MLflow: the curve as metrics with steps, the bounds as params, the texts, the plot and `schedule.yaml` as
    artifacts under `clrfind/`.

    Args:
        experiment: the experiment of a new run (default: MLflow's, e.g. `MLFLOW_EXPERIMENT_NAME`); the tracking
            URI is MLflow's (`MLFLOW_TRACKING_URI`). With no run given, an active run (`mlflow.start_run()`) is
            used, else one is started and ended after logging.
        run_id: a run you hold instead, with `client` (Lightning's `MLFlowLogger.run_id` and `.experiment`).
        client: the MlflowClient to log through (default: a new one).
    """

    name = "mlflow"

    def __init__(
        self, experiment: str | None = None, *, run_id: str | None = None, client: Any = None
    ) -> None:
        self.experiment = experiment
        self.run_id = run_id
        self.client = client

    def log_range_test(self, record: RunRecord) -> str:
        import mlflow
        from mlflow.entities import Metric, Param

        run_id, owned = self.run_id, False
        if run_id is None:
            active = mlflow.active_run()
            if active is None:
                if self.experiment:
                    mlflow.set_experiment(self.experiment)
                active, owned = mlflow.start_run(run_name="clrfind range test"), True
            run_id = active.info.run_id
        client = self.client or mlflow.MlflowClient()
        status = "FAILED"
        try:
            now = int(time.time() * 1000)
            metrics = [
                Metric(f"{PREFIX}/{tag}", float(v), now, i)
                for tag, pts in record.curves.items()
                for i, v in pts
            ]
            for chunk in _chunks(metrics, MLFLOW_BATCH_METRICS):
                client.log_batch(run_id, metrics=chunk)
            params = [Param(f"{PREFIX}/{k}", str(v)) for k, v in record.params.items()]
            for chunk in _chunks(params, MLFLOW_BATCH_PARAMS):
                client.log_batch(run_id, params=chunk)
            for name, text in record.texts.items():
                client.log_text(run_id, text, f"{PREFIX}/{name}.txt")
            for name, text in record.files.items():
                client.log_text(run_id, text, f"{PREFIX}/{name}")
            with tempfile.TemporaryDirectory() as tmp:
                for name, png in record.images.items():
                    path = Path(tmp) / f"{name}.png"
                    path.write_bytes(png)
                    client.log_artifact(run_id, str(path), PREFIX)
            status = "FINISHED"
        finally:
            if owned:
                mlflow.end_run(status=status)
        return f"mlflow: run {run_id}"


# name -> (the module that must import, the class)
_BACKENDS: dict[str, tuple[str, Any]] = {
    "tensorboard": ("tensorboard", TensorBoard),
    "wandb": ("wandb", Wandb),
    "mlflow": ("mlflow", MLflow),
}


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _preformatted(text: str) -> str:
    """Text shown as written: TensorBoard renders text as Markdown, where an indented block keeps its lines."""
    return "\n".join("    " + line for line in text.splitlines())


def _decode_png(png: bytes) -> Any:
    """PNG bytes as an RGB array (height, width, 3), what SummaryWriter.add_image takes."""
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")[..., :3]
