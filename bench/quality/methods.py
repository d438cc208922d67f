"""The methods under test: clrfind (range test -> exported schedule -> training with exactly that file), the
peers (a suggested LR, scored generously), and the default LR.

A method run is one (task, method, seed): its range test on the seed's model and data order, then one training
run per candidate plan. Every run goes through `bench.quality.train.train`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench.quality.peers import DEFAULT, run_default, run_peer
from bench.quality.records import MethodRun
from bench.quality.tasks import TASKS, Task, optimizer_class, task_spec
from bench.quality.train import Plan, constant_plan, train

if TYPE_CHECKING:
    from clrfind.results import RangeTestResult

CLRFIND = "clrfind"
# How a clrfind run's notes begin when it trained at the default LR instead of an exported schedule.
NO_BOUNDS, EXPORT_FAILED = "no usable bounds", "export failed"
FELL_BACK = (NO_BOUNDS, EXPORT_FAILED)


@dataclass(frozen=True)
class ClrfindSettings:
    """How the benchmark drives clrfind: as a user who writes a spec for the task (model, data, loss, optimizer
    and the training's length, `training:`; `tasks.task_spec`), runs `clrfind range-test SPEC` with clrfind's
    defaults, then `clrfind export --epochs <budget> --steps-per-epoch <the training loop's>` (the same length)
    with the default policy. `--clrfind-set training=null` drives it as a user who does not say the length.

    Experiments only: `overrides` are dotted spec keys set on every task's spec (`range_test.steps=100`), and
    `constants` module constants of clrfind (`analysis.bounds.STOP_SLOPE_FRAC=0.1`) set inside the worker for the
    run; both are restored after it.
    """

    overrides: tuple[tuple[str, Any], ...] = ()
    policy: str = "auto"
    constants: tuple[tuple[str, Any], ...] = ()
    data: str = "dataset"


# -- clrfind -----------------------------------------------------------------------------------------------------


class _Patched:
    """Set module constants of clrfind for the duration of a run (experiments only), restoring them after.

    Every clrfind module is imported first, so one that copies a constant when it is imported (`from ... import X`,
    `STEP = X`) takes the real value even where this run is the first to import it, and keeps it for the worker's
    later runs. The new value then reaches what reads the name at call time: in the module named, and in every
    clrfind module that holds the same object under the same name (a from-import). A value derived at import
    (`STEP = HALF_DECADE`) keeps the real one; set it by its own name.
    """

    def __init__(self, constants: tuple[tuple[str, Any], ...]) -> None:
        self.constants = constants
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> None:
        if self.constants:
            _import_clrfind()
        for name, value in self.constants:
            module_name, _, attr = name.rpartition(".")
            module = importlib.import_module(f"clrfind.{module_name}")
            if not hasattr(module, attr):
                raise AttributeError(f"clrfind.{module_name} has no constant {attr}")
            real = getattr(module, attr)
            holders = [module] + [
                other
                for key, other in sorted(sys.modules.items())
                if key.startswith("clrfind.")
                and other is not module
                and getattr(other, attr, _MISSING) is real
            ]
            for holder in holders:
                self.saved.append((holder, attr, real))
                setattr(holder, attr, value)

    def __exit__(self, *exc: object) -> None:
        for module, attr, value in reversed(self.saved):
            setattr(module, attr, value)
        self.saved.clear()


_MISSING = object()


def _import_clrfind() -> None:
    """Import every clrfind module (not `__main__`, which runs the CLI)."""
    import clrfind

    for info in pkgutil.walk_packages(clrfind.__path__, "clrfind."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def schedule_plan(task: Task, path: Path) -> Plan:
    """Exactly what an exported schedule file says: its optimizer, `load_schedule`, its interval and length; the
    task's training loop around it (its gradient clipping) is the task's."""
    import clrfind

    schedule = yaml.safe_load(path.read_text(encoding="utf-8"))
    cls = task.in_loop(optimizer_class(schedule["optimizer"]["target"]))
    kwargs = dict(schedule["optimizer"]["kwargs"])
    return Plan(
        label="schedule",
        make_optimizer=lambda params: cls(params, **kwargs),
        make_scheduler=lambda opt: clrfind.load_schedule(path, opt),
        interval=schedule["scheduler"].get("interval", "step"),
        total_steps=int(schedule["training"]["total_steps"]),
    )


def clrfind_test(task: Task, seed: int, settings: ClrfindSettings, out_dir: Path) -> RangeTestResult:
    """`clrfind range-test SPEC` on the task's spec (written to `out_dir` for the record), results not written."""
    from clrfind.api import run_spec
    from clrfind.spec import load_spec

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{task.name}-seed{seed}.spec.yaml"
    path.write_text(yaml.safe_dump(task_spec(task, seed, settings.data), sort_keys=False), encoding="utf-8")
    loaded = load_spec(path, dict(settings.overrides))
    return run_spec(loaded, out_dir=out_dir, write=False).result


def run_clrfind(task: Task, seed: int, settings: ClrfindSettings, out_dir: Path) -> MethodRun:
    """The range test, `export --epochs <budget>` (write_schedule), then training with exactly that file.

    Without usable bounds the run trains at the default LR (what a user without bounds falls back to) and the
    notes keep clrfind's reason and next step. The test's cost is every step it took through clrfind's engine
    (reruns, trials and holds included: the result's `timing.total_steps`) and its seconds.
    """
    from clrfind.errors import ClrfindError
    from clrfind.export import write_schedule

    notes: list[str] = []
    with _Patched(settings.constants):
        started = time.perf_counter()
        result = clrfind_test(task, seed, settings, out_dir)
        seconds = time.perf_counter() - started
        bounds = result.bounds
        check = result.verification
        suggestion = {
            "base": bounds.base_lr if bounds else None,
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
            notes.append(f"{NO_BOUNDS} ({why}); next step: {bounds.next_step if bounds else '-'}")
        else:
            path = out_dir / f"{task.name}-seed{seed}.yaml"
            try:
                write_schedule(
                    result,
                    path,
                    policy=settings.policy,
                    epochs=task.epochs,
                    steps_per_epoch=task.steps_per_epoch,
                )
                plan = schedule_plan(task, path)
            except ClrfindError as exc:  # reported; the run falls back to the default like a user would
                notes.append(f"{EXPORT_FAILED}: {exc}")
            if plan.total_steps > task.total_steps:
                notes.append(f"schedule trains {plan.total_steps} steps, budget is {task.total_steps}")
    outcome = train(task, plan, seed)
    if check is not None:
        notes.append(f"self-check: {check.outcome}")
    return MethodRun(
        CLRFIND,
        task.name,
        seed,
        suggestion,
        seconds,
        {"schedule": outcome},
        notes,
        steps=result.timing.total_steps,
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
