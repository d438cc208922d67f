"""The methods under test: clrfind (range test -> exported schedule -> training with exactly that file), the
peers (a suggested LR, scored generously), and the default LR.

A method run is one (task, method, seed): its range test on the seed's model and data order, then one training
run per candidate plan. Every run goes through `bench.quality.train.train`.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench.quality.peers import DEFAULT, run_default, run_peer
from bench.quality.records import MethodRun
from bench.quality.tasks import TASKS, Task, optimizer_class
from bench.quality.train import Plan, constant_plan, fresh_model, train, train_loader
from clrfind.ladder import DEFAULT_STEPS

if TYPE_CHECKING:
    from clrfind.results import RangeTestResult

CLRFIND = "clrfind"


@dataclass(frozen=True)
class ClrfindSettings:
    """How the benchmark drives clrfind, as a user following the README would.

    The range is a wide default per optimizer family (1e-4..10 for SGD, 1e-5..1 for Adam-family: both reach well
    past where these optimizers diverge), with clrfind's own defaults for the rest: `mode="auto"` (exp over such
    ranges) and DEFAULT_STEPS steps, or `test_epochs` epochs when that is longer ("a few epochs", as in the
    paper). `constants` overrides module constants of clrfind (e.g. {"analysis.STOP_SLOPE_FRAC": 0.1}) inside the
    worker, for experiments; the run restores them. `zoom` (experiment) runs an exp test over the range first and
    then the linear test from ~0 up to where the exp test diverged (or 4x its best LR when it did not): the "exp
    pre-sweep + linear zoom" workflow. `max_ratio` (experiment) raises base_lr to at least max_lr / max_ratio
    before the export, and `toward_divergence` (experiment) moves max_lr to the geometric mean of itself and
    divergence_lr / 2 (when that is higher); clrfind now ships both rules (MAX_RATIO, DIVERGENCE_HEADROOM), so
    these only matter for replaying older experiments.
    """

    sgd_range: tuple[float, float] = (1e-4, 10.0)
    adam_range: tuple[float, float] = (1e-5, 1.0)
    mode: str = "auto"
    test_epochs: int = 3
    min_steps: int = DEFAULT_STEPS
    policy: str = "auto"
    metric: str = "loss"
    zoom: bool = False
    max_ratio: float | None = None
    toward_divergence: bool = False
    constants: tuple[tuple[str, Any], ...] = ()

    def lr_range(self, task: Task) -> tuple[float, float]:
        return self.sgd_range if task.family == "sgd" else self.adam_range

    def steps(self, task: Task) -> int:
        return max(self.min_steps, self.test_epochs * task.steps_per_epoch)


# -- clrfind -----------------------------------------------------------------------------------------------------


class _Patched:
    """Set module constants of clrfind for the duration of a run (experiments only), restoring them after."""

    def __init__(self, constants: tuple[tuple[str, Any], ...]) -> None:
        self.constants = constants
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> None:
        for name, value in self.constants:
            module_name, _, attr = name.rpartition(".")
            module = importlib.import_module(f"clrfind.{module_name}")
            if not hasattr(module, attr):
                raise AttributeError(f"clrfind.{module_name} has no constant {attr}")
            self.saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, value)

    def __exit__(self, *exc: object) -> None:
        for module, attr, value in reversed(self.saved):
            setattr(module, attr, value)


def schedule_plan(path: Path) -> Plan:
    """Exactly what an exported schedule file says: its optimizer, `load_schedule`, its interval and length."""
    import clrfind

    schedule = yaml.safe_load(path.read_text(encoding="utf-8"))
    cls = optimizer_class(schedule["optimizer"]["target"])
    kwargs = dict(schedule["optimizer"]["kwargs"])
    return Plan(
        label="schedule",
        make_optimizer=lambda params: cls(params, **kwargs),
        make_scheduler=lambda opt: clrfind.load_schedule(path, opt),
        interval=schedule["scheduler"].get("interval", "step"),
        total_steps=int(schedule["training"]["total_steps"]),
    )


def clrfind_test(task: Task, seed: int, settings: ClrfindSettings) -> tuple[RangeTestResult, list[str]]:
    """clrfind.range_test on the seed's model and data order, as the settings say (with the zoom, two tests)."""
    import clrfind

    low, high = settings.lr_range(task)
    model = fresh_model(task, seed)
    optimizer = task.build_optimizer(model.parameters(), low)
    val = None
    if settings.metric != "loss":
        from torch.utils.data import DataLoader, TensorDataset

        data = task.data()
        val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=256)

    def test(low: float, high: float, mode: str) -> RangeTestResult:
        return clrfind.range_test(
            model, train_loader(task, seed), task.make_loss(), optimizer, min_lr=low, max_lr=high,
            steps=settings.steps(task), mode=mode, metric=settings.metric, val_loader=val,
        )  # fmt: skip

    if not settings.zoom:
        return test(low, high, settings.mode), []
    first = test(low, high, "exp")  # the model and optimizer are restored after every test
    b = first.bounds
    top = b.divergence_lr if b is not None and b.divergence_lr else None
    if top is None and b is not None and b.best_lr:
        top = min(high, 4 * b.best_lr)
    top = top or high
    note = f"zoom: exp test up to {first.lrs[-1]:.3g} ({first.stop_reason}), linear up to {top:.3g}"
    return test(top / 1000, top, "linear"), [note]


def cap_ratio(result: RangeTestResult, ratio: float) -> RangeTestResult:
    """Experiment: raise base_lr to max_lr / ratio when the bounds are further apart (a rule clrfind lacks)."""
    b = result.bounds
    if b is None or not b.usable or b.max_lr / b.min_lr <= ratio:  # type: ignore[operator]
        return result
    return result.model_copy(update={"bounds": b.model_copy(update={"min_lr": b.max_lr / ratio})})  # type: ignore[operator]


def move_toward_divergence(result: RangeTestResult) -> RangeTestResult:
    """Experiment: max_lr -> sqrt(max_lr * divergence_lr / 2) when higher, i.e. into a flat stretch before the rise."""
    b = result.bounds
    if b is None or not b.usable or b.divergence_lr is None or b.divergence_lr / 2 <= b.max_lr:  # type: ignore[operator]
        return result
    high = (b.max_lr * b.divergence_lr / 2) ** 0.5  # type: ignore[operator]
    return result.model_copy(update={"bounds": b.model_copy(update={"max_lr": high})})


def run_clrfind(task: Task, seed: int, settings: ClrfindSettings, out_dir: Path) -> MethodRun:
    """The range test, `export --epochs <budget>` (write_schedule), then training with exactly that file.

    Without usable bounds the run trains at the default LR (what a user without bounds falls back to) and the
    notes keep clrfind's reason and next step.
    """
    from clrfind.errors import ClrfindError
    from clrfind.export import write_schedule

    with _Patched(settings.constants):
        started = time.perf_counter()
        result, notes = clrfind_test(task, seed, settings)
        seconds = time.perf_counter() - started
        if settings.toward_divergence:
            result = move_toward_divergence(result)
        if settings.max_ratio:
            result = cap_ratio(result, settings.max_ratio)
        bounds = result.bounds
        suggestion = {
            "base": bounds.min_lr if bounds else None,
            "max": bounds.max_lr if bounds else None,
            "peak": bounds.peak_lr if bounds else None,  # one cycle's top (the `auto` export with epochs)
            "stop_lr": result.lrs[-1] if result.lrs else None,
        }
        if bounds is not None:
            notes.append(f"confidence {bounds.confidence}; stop {result.stop_reason}")
        out_dir.mkdir(parents=True, exist_ok=True)
        result.save(out_dir / f"{task.name}-seed{seed}.json")
        plan = constant_plan(task, task.default_lr)
        if bounds is None or not bounds.usable:
            why = bounds.reason if bounds else "no bounds"
            notes.append(f"no usable bounds ({why}); next step: {bounds.next_step if bounds else '-'}")
        else:
            path = out_dir / f"{task.name}-seed{seed}.yaml"
            try:
                write_schedule(result, path, policy=settings.policy, epochs=task.epochs)
                plan = schedule_plan(path)
            except ClrfindError as exc:  # reported; the run falls back to the default like a user would
                notes.append(f"export failed: {exc}")
            if plan.total_steps > task.total_steps:
                notes.append(f"schedule trains {plan.total_steps} steps, budget is {task.total_steps}")
    outcome = train(task, plan, seed)
    return MethodRun(CLRFIND, task.name, seed, suggestion, seconds, {"schedule": outcome}, notes)


def run_method(task_name: str, method: str, seed: int, settings: ClrfindSettings, out_dir: str) -> MethodRun:
    """Entry point for worker processes (arguments are plain, picklable values)."""
    task = TASKS[task_name]
    if method == CLRFIND:
        return run_clrfind(task, seed, settings, Path(out_dir))
    if method == DEFAULT:
        return run_default(task, seed)
    return run_peer(task, seed, method)


def best_candidate(runs: list[MethodRun], higher_is_better: bool) -> str:
    """The candidate plan with the best mean metric over the seeds (peers are scored by their better option)."""

    def mean(label: str) -> float:
        return sum(r.outcomes[label].metric for r in runs) / len(runs)

    return (max if higher_is_better else min)(runs[0].outcomes, key=mean)
