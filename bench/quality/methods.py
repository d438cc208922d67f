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

    The range is a wide default per optimizer family (1e-4..10 for SGD, 1e-5..1 for the adaptive ones: both reach
    well past where these optimizers diverge), with clrfind's own defaults for the rest: `mode="auto"` (exp over
    such ranges) and DEFAULT_STEPS steps, or `test_epochs` epochs when that is longer ("a few epochs", as in the
    paper); the export is `policy` with the task's epochs. `constants` overrides module constants of clrfind (e.g.
    {"analysis.STOP_SLOPE_FRAC": 0.1}) inside the worker, for experiments; the run restores them.
    """

    sgd_range: tuple[float, float] = (1e-4, 10.0)
    adaptive_range: tuple[float, float] = (1e-5, 1.0)
    mode: str = "auto"
    test_epochs: int = 3
    min_steps: int = DEFAULT_STEPS
    policy: str = "auto"
    metric: str = "loss"
    constants: tuple[tuple[str, Any], ...] = ()

    def lr_range(self, task: Task) -> tuple[float, float]:
        return self.sgd_range if task.family == "sgd" else self.adaptive_range

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


def clrfind_test(task: Task, seed: int, settings: ClrfindSettings) -> RangeTestResult:
    """clrfind.range_test on the seed's model and data order, as the settings say."""
    import clrfind

    low, high = settings.lr_range(task)
    model = fresh_model(task, seed)
    optimizer = task.build_optimizer(model.parameters(), low)
    val = None
    if settings.metric != "loss":
        from torch.utils.data import DataLoader, TensorDataset

        data = task.data()
        val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=256)
    return clrfind.range_test(
        model, train_loader(task, seed), task.make_loss(), optimizer, min_lr=low, max_lr=high,
        steps=settings.steps(task), mode=settings.mode, metric=settings.metric, val_loader=val,
    )  # fmt: skip


def run_clrfind(task: Task, seed: int, settings: ClrfindSettings, out_dir: Path) -> MethodRun:
    """The range test, `export --epochs <budget>` (write_schedule), then training with exactly that file.

    Without usable bounds the run trains at the default LR (what a user without bounds falls back to) and the
    notes keep clrfind's reason and next step. The test's cost is its steps (`steps_run`) and seconds.
    """
    from clrfind.errors import ClrfindError
    from clrfind.export import write_schedule

    notes: list[str] = []
    with _Patched(settings.constants):
        started = time.perf_counter()
        result = clrfind_test(task, seed, settings)
        seconds = time.perf_counter() - started
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
    return MethodRun(
        CLRFIND, task.name, seed, suggestion, seconds, {"schedule": outcome}, notes, steps=result.steps_run
    )


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
