"""Schedule configs from range-test bounds: CyclicLR, OneCycleLR or cosine restarts, as torch accepts them.

The schedule is a plain dict (optimizer, scheduler, training, source, notes) rendered as YAML, JSON or a
Python snippet. `build_schedule` and `render_schedule` never import torch, so `clrfind export --format yaml`
stays instant; only `verify_schedule` and `load_schedule` build the real torch objects.

Decisions follow Smith (2017, 2018):

- `auto` (the default) is one cycle over the training when its length is known (Smith 2018), triangular CLR
  when it is not.
- Step size (half a cycle) is 2-10 epochs of optimizer steps, 4 by default; training ends at the end of a
  cycle, where the LR is lowest, after at least 3 cycles when the budget allows.
- CyclicLR keeps the optimizer's momentum (Smith 2017 cycles only the LR). One-cycle cycles momentum (or Adam's
  beta1) opposite to the LR, only when the optimizer really has it: cycling silently turns momentum-free SGD into
  SGD with momentum 0.9.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import textwrap
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from clrfind.errors import ClrfindWarning, ExportError, one_line, short_repr
from clrfind.fileio import read_document, write_atomic
from clrfind.results import OptimizerRef, ParamGroup, RangeTestResult
from clrfind.settings import short_test, told_test_steps
from clrfind.spec import DEFAULT_GROUP, known_keywords

if TYPE_CHECKING:
    import torch

POLICIES = ("auto", "triangular", "triangular2", "exp_range", "one-cycle", "cosine")
FORMATS = ("yaml", "json", "python")

OPTIMIZER_MODULE = "torch.optim"
SCHEDULER_MODULE = "torch.optim.lr_scheduler"
CYCLIC = f"{SCHEDULER_MODULE}.CyclicLR"
ONE_CYCLE = f"{SCHEDULER_MODULE}.OneCycleLR"
COSINE = f"{SCHEDULER_MODULE}.CosineAnnealingWarmRestarts"

# -- auto ------------------------------------------------------------------------------------------------------
# A known training length gets one cycle fitted to it (Smith 2018: it anneals to the end of a fixed budget); an
# open-ended run gets triangular cycles, which need no length.
AUTO_POLICY = "auto"

# -- cycle length --------------------------------------------------------------------------------------------
# Smith (2017): stepsize 2-10x the iterations per epoch. 4 sits in the middle of that range on a log scale and
# in the 2-8 of the Keras reference implementation; the paper's own runs used 4-8.
STEPSIZE_EPOCHS = 4
MIN_STEPSIZE_EPOCHS = 2
MAX_STEPSIZE_EPOCHS = 10
# "Train for at least 3 cycles (4+ is better)": 3 is the floor when fitting a budget, 4 the default.
MIN_CYCLES = 3
DEFAULT_CYCLES = 4

# -- exp_range -----------------------------------------------------------------------------------------------
# Fraction of the amplitude (max_lr - base_lr) left at the last step: the paper's gammas (0.99994 over ~42k
# iterations) leave ~8%; 15% keeps the last cycles useful on shorter runs while still annealing.
EXP_RANGE_END_FRACTION = 0.15

# -- one-cycle -----------------------------------------------------------------------------------------------
# OneCycleLR's default and Smith's (2018) choice: rise over 30% of training, anneal over the rest.
ONE_CYCLE_PCT_START = 0.3
# One cycle peaks at the results' peak_lr (the largest LR the test shows still training), not max_lr: see
# clrfind.analysis.bounds. Smith (2018): its minimum is 10-20x below that peak; the range test's base_lr is used
# when it falls in between (where the loss started falling), else the nearer end.
ONE_CYCLE_MIN_DIV = 10.0
ONE_CYCLE_MAX_DIV = 20.0
# The final annealing goes "several orders of magnitude" below the start; 1e4 is OneCycleLR's own default.
ONE_CYCLE_FINAL_DIV = 1e4
# The warm-up ends at step pct_start * total - 1: it needs >= 2 steps for the LR to rise at all: 0.3 T >= 3.
ONE_CYCLE_MIN_STEPS = 10

# -- momentum ------------------------------------------------------------------------------------------------
# CyclicLR policies keep the optimizer's own momentum: Smith (2017) cycles only the LR, and momentum cycled on top
# of an LR that returns to its top every cycle (torch's CyclicLR default) hurts batch-norm CNNs and Adam's beta1.
CYCLIC_MOMENTUM_NOTE = (
    "cycle_momentum false: momentum stays at the optimizer's value, as in Smith (2017); to cycle it as in "
    "Smith (2018), set cycle_momentum: true with base_momentum 0.85 and max_momentum 0.95 in this file (for "
    "momentum 0.9; --policy one-cycle writes the values for another)"
)
# One-cycle, Smith (2018): cycle momentum opposite to the LR between 0.95 (at the low LR) and 0.85 (at the peak).
MOMENTUM_HIGH = 0.95
MOMENTUM_LOW = 0.85
SMITH_MOMENTUM = 0.9
# Optimizers configured below 0.9 momentum keep their own value as the top and dip 10% below it at the peak;
# above 0.9, Smith's cycle moves with the value (`_momentum_plan`).
MOMENTUM_DIP = 0.9
# Optimizers whose beta1 defaults to 0.9 even when the results did not record `betas` (it equals the default).
BETAS_OPTIMIZERS = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "SparseAdam")
DEFAULT_BETA1 = 0.9

# Comment lines fit the 110-column files users keep next to their training scripts.
HEADER_WIDTH = 110


# ============================================================================================================
# build
# ============================================================================================================


def build_schedule(
    result: RangeTestResult,
    *,
    policy: str = AUTO_POLICY,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    results_path: str | None = None,
) -> dict[str, Any]:
    """The schedule dict for `policy` from the result's bounds and optimizer; pure Python, no torch.

    Args:
        result: a range test with usable bounds and the optimizer it ran with.
        policy: one of POLICIES; `auto` is one-cycle when `epochs` is given, triangular otherwise.
        epochs: training length; the schedule is fitted so training ends at the end of a cycle. Required for
            one-cycle (a single cycle has no natural length); the others default to 4 cycles of 8 epochs.
        steps_per_epoch: optimizer steps per epoch; defaults to what the range test saw.
        results_path: the results file, recorded under ``source.results``.

    Raises:
        ExportError: no usable bounds, no optimizer, unknown policy, bad or too short lengths.
    """
    if policy not in POLICIES:
        raise ExportError(f"unknown policy {policy!r}", hint=f"use one of: {', '.join(POLICIES)}")
    where = f"{results_path}: " if results_path else ""
    try:
        bounds = _usable_bounds(result)
    except ExportError as exc:  # about the results' content: named by their file, as a spec's problems are
        raise exc.reworded(before=where) from None
    if result.optimizer is None:
        raise ExportError(
            f"{where}the results do not record the optimizer the test ran with, so no optimizer config can be made",
            hint="re-run the range test with this clrfind (it records optimizer.target and kwargs)",
        )
    if epochs is not None and epochs <= 0:
        raise ExportError(
            f"epochs must be a positive number of epochs, got {epochs}", hint="e.g. --epochs 20"
        )
    told = result.training
    notes: list[str] = []
    if epochs is None and told is not None:
        epochs = told.epochs
        notes.append(f"training length the range test was told (its training): {_count(epochs, 'epoch')}")
    if steps_per_epoch is None and told is not None:
        steps_per_epoch = told.steps_per_epoch
    spe = steps_per_epoch if steps_per_epoch is not None else result.steps_per_epoch
    if spe is None:
        raise ExportError(
            "steps per epoch unknown (the range test's data had no length)",
            hint="pass --steps-per-epoch N (optimizer steps per epoch of your training)",
        )
    if spe <= 0:
        raise ExportError(f"steps_per_epoch must be positive, got {spe}", hint="pass --steps-per-epoch N")

    if policy == AUTO_POLICY:
        policy, why = resolve_policy(epochs)
        notes.append(why)
    opt_kwargs = {k: v for k, v in result.optimizer.kwargs.items() if k != "lr"}
    if policy == "one-cycle":
        part = _one_cycle(bounds, result.optimizer, spe, epochs)
    else:
        part = _cycles(bounds, policy, spe, epochs)
    notes += part.notes
    optimizer: dict[str, Any] = {
        "target": result.optimizer.target,
        "kwargs": {"lr": part.optimizer_lr, **opt_kwargs},
    }
    groups = result.param_groups if result.param_groups and len(result.param_groups) > 1 else None
    if groups is not None:
        kwargs, optimizer["groups"], note = _per_group(part, groups)
        part = part._replace(kwargs=kwargs)
        notes.append(note)
    if bounds.reason:
        notes.append(f"bounds confidence {bounds.confidence}: {bounds.reason}")
    source: dict[str, Any] = {
        "results": results_path,
        "spec": result.spec_path,
        "created": result.created,
        "clrfind_version": result.clrfind_version,
        "bounds": [bounds.base_lr, bounds.max_lr],
        "peak_lr": bounds.peak_lr,
        "confidence": bounds.confidence,
        "method": bounds.method,
        "stop_reason": result.stop_reason,
    }
    # Without a length from the user or the test, the schedule's is a default (4 cycles), no run to warn about.
    warnings = _length_warnings(result, part.training) if epochs is not None else []
    return {
        "optimizer": optimizer,
        "scheduler": {"target": part.target, "policy": policy, "interval": "step", "kwargs": part.kwargs},
        "training": part.training,
        "source": {k: v for k, v in source.items() if v is not None},
        "notes": notes,
        **({"warnings": warnings} if warnings else {}),
    }


def _length_warnings(result: RangeTestResult, training: dict[str, int]) -> list[str]:
    """A warning when the range test rehearsed another run than the schedule's `training` (its section), else
    nothing.

    The test's length and its self-check's trials follow the training it is told (`training:`), and the benchmark
    found the best peak moving with the length of the run: bounds checked for one run are a guess for another. An
    untold test rehearsed its own few hundred steps: for a run at least twice as long as that test (counting at
    most the longest test a training sets), its trials rehearsed under an eighth of the run, and telling it would
    at least double them; told, the quality benchmark's runs of 500 steps and more trained better. A test set
    shorter than half the length clrfind chooses for the run is too short for it (`short_test`), told or not.
    """
    told, total, epochs = result.training, training["total_steps"], training["epochs"]
    rerun = f"re-run the range test with training.epochs: {epochs} (--train-epochs {epochs})"
    short = short_test(result.planned_steps, total)
    # Whatever run it rehearsed, a test set under half the length clrfind would choose for this one is too short.
    too_short = [f"{short}; re-run the range test without a length of its own"] if short else []
    if told is not None:
        if told.total_steps is None or told.total_steps == total:
            return too_short
        return [
            f"this schedule trains {_count(total, 'optimizer step')}, the range test was told its training is "
            f"{_count(told.total_steps, 'step')} ({_count(told.epochs, 'epoch')} of {told.steps_per_epoch}): its "
            f"bounds were checked for that run; {rerun} for this one"
        ]
    test_steps = told_test_steps(total)
    if min(total, test_steps) < 2 * result.planned_steps:
        return too_short
    check = result.verification
    trials = (
        f" and its self-check's trials of {check.trials[0].steps} steps" if check and check.trials else ""
    )
    return [
        f"this schedule trains {_count(total, 'optimizer step')}, and the range test was not told its training: "
        f"its {result.planned_steps}-step test{trials} rehearsed a shorter run; {rerun} and no steps of its own: "
        f"the test then lasts {test_steps} steps, each trial a quarter of them"
    ]


class _Scheduler(NamedTuple):
    """A policy's part of the schedule: the scheduler, the optimizer's starting LR, the length, and why."""

    target: str
    kwargs: dict[str, Any]
    optimizer_lr: float
    training: dict[str, int]
    notes: list[str]


def _one_cycle(bounds: _UsableBounds, optimizer: OptimizerRef, spe: int, epochs: int | None) -> _Scheduler:
    """OneCycleLR over the whole budget, peaking at peak_lr (or max_lr) and starting 10-20x below it."""
    if epochs is None:
        raise ExportError(
            "one-cycle needs the training length: a single cycle spans the whole run", hint="pass --epochs N"
        )
    total = epochs * spe
    if total < ONE_CYCLE_MIN_STEPS:
        raise ExportError(
            f"{_count(epochs, 'epoch')} x {_count(spe, 'step')} = {_count(total, 'optimizer step')} is too short for "
            f"one-cycle (its 30% warm-up needs >= {ONE_CYCLE_MIN_STEPS} steps in all)",
            hint="pass more --epochs, or --steps-per-epoch if the range test's value is wrong",
        )
    base_lr, max_lr = bounds.base_lr, bounds.max_lr
    notes = []
    peak = bounds.peak_lr or max_lr
    if bounds.peak_lr is not None:
        notes.append(
            f"one-cycle peaks at peak_lr {peak:.3g}, above max_lr {max_lr:.3g}: the largest LR the test "
            "showed still training, which a single cycle reaches once and anneals from (Smith 2018)"
        )
    start_lr, kwargs, plan_notes = one_cycle_plan(base_lr, peak, optimizer, total)
    training = {"steps_per_epoch": spe, "epochs": epochs, "total_steps": total, "cycles": 1}
    return _Scheduler(ONE_CYCLE, kwargs, start_lr, training, notes + plan_notes)


def one_cycle_plan(
    base_lr: float, peak: float, optimizer: OptimizerRef, total: int
) -> tuple[float, dict[str, Any], list[str]]:
    """(start LR, OneCycleLR kwargs, notes) of one cycle over `total` steps peaking at `peak`: the schedule the
    export writes, and the one the self-check trains with, compressed."""
    cycle, base_m, max_m, momentum_note = _momentum_plan(optimizer)
    notes = []
    start_lr = min(max(base_lr, peak / ONE_CYCLE_MAX_DIV), peak / ONE_CYCLE_MIN_DIV)
    div = peak / start_lr
    if start_lr == base_lr:
        notes.append(f"one-cycle starts at base_lr {base_lr:.3g} (div_factor = peak / base_lr)")
    else:
        notes.append(
            f"one-cycle starts at {start_lr:.3g} = peak/{div:.3g}, not base_lr {base_lr:.3g}: "
            f"Smith (2018) sets a single cycle's minimum {ONE_CYCLE_MIN_DIV:g}-{ONE_CYCLE_MAX_DIV:g}x below "
            "its maximum"
        )
    notes.append(
        f"the LR rises to {peak:.3g} over the first {ONE_CYCLE_PCT_START:.0%} of the steps, "
        f"then anneals (cosine) to {start_lr / ONE_CYCLE_FINAL_DIV:.3g} at the last step"
    )
    notes.append(momentum_note)
    kwargs: dict[str, Any] = {
        "max_lr": peak,
        "total_steps": total,
        "pct_start": ONE_CYCLE_PCT_START,
        "anneal_strategy": "cos",
        "div_factor": div,
        "final_div_factor": ONE_CYCLE_FINAL_DIV,
        "three_phase": False,
        **_momentum_kwargs(cycle, base_m, max_m),
    }
    return start_lr, kwargs, notes


def _cycles(bounds: _UsableBounds, policy: str, spe: int, epochs: int | None) -> _Scheduler:
    """CyclicLR (triangular, triangular2, exp_range) or cosine restarts: whole cycles that fit the budget."""
    base_lr, max_lr = bounds.base_lr, bounds.max_lr
    step, cycles, total, fit_note = _fit_cycles(spe, epochs)
    notes = [fit_note]
    train_epochs = epochs if epochs is not None else math.ceil(total / spe)
    training = {"steps_per_epoch": spe, "epochs": train_epochs, "total_steps": total, "cycles": cycles}
    if policy == "cosine":
        # The optimizer's lr is CosineAnnealingWarmRestarts' maximum; eta_min is the floor.
        notes.append(
            "cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2016), not CLR: "
            "the LR jumps to max_lr and anneals to base_lr every T_0 steps; it has no momentum cycling"
        )
        return _Scheduler(COSINE, {"T_0": 2 * step, "T_mult": 1, "eta_min": base_lr}, max_lr, training, notes)
    kwargs: dict[str, Any] = {"base_lr": base_lr, "max_lr": max_lr, "step_size_up": step, "mode": policy}
    if policy == "exp_range":
        kwargs["gamma"] = EXP_RANGE_END_FRACTION ** (1.0 / total)
        notes.append(
            "exp_range: torch's CyclicLR scales only the amplitude above base_lr by gamma**step "
            "(Smith's paper decays both bounds); gamma leaves "
            f"{EXP_RANGE_END_FRACTION:.0%} of the amplitude at the last step"
        )
    elif policy == "triangular2":
        notes.append("triangular2: the amplitude above base_lr halves every cycle")
    kwargs["cycle_momentum"] = False
    notes.append(CYCLIC_MOMENTUM_NOTE)
    return _Scheduler(CYCLIC, kwargs, base_lr, training, notes)


def _per_group(
    part: _Scheduler, groups: list[ParamGroup]
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """(scheduler kwargs, groups, note) for each parameter group: the bounds are the largest group's (the ladder
    drove it), each group's are them times its LR ratio, as lists in the optimizer's group order (CyclicLR's
    base_lr/max_lr and OneCycleLR's max_lr take one value per group); the groups are written out so that
    `load_schedule` can set each group's LR and check the optimizer has as many.

    Raises:
        ExportError: cosine restarts with groups at different LRs (CosineAnnealingWarmRestarts takes one eta_min).
    """
    ratios = [g.lr_ratio for g in groups]
    if part.target == COSINE and len(set(ratios)) > 1:
        raise ExportError(
            "cosine restarts cannot keep the parameter groups' LR ratios "
            f"({', '.join(f'{g.name} {g.lr_ratio:g}' for g in groups)}): CosineAnnealingWarmRestarts takes one "
            "eta_min for all groups",
            hint="use --policy one-cycle (with --epochs) or triangular",
        )
    kwargs = dict(part.kwargs)
    for key in ("base_lr", "max_lr"):
        if key in kwargs:
            kwargs[key] = [_lr(kwargs[key] * r) for r in ratios]
    records = []
    for g in groups:
        record: dict[str, Any] = {
            "name": g.name,
            "lr": _lr(part.optimizer_lr * g.lr_ratio),
            "lr_ratio": g.lr_ratio,
        }
        record.update(
            {k: v for k, v in (("params", g.params), ("modules", g.modules), ("kwargs", g.kwargs)) if v}
        )
        record["param_count"] = g.param_count
        records.append(record)
    top = next(g.name for g in groups if g.lr_ratio == max(ratios))
    note = (
        f"parameter groups: the bounds are group {top!r}'s (the largest LR, which the range test's ladder drove); "
        "each group's LRs are them times its lr_ratio: "
        + ", ".join(f"{g.name} {g.lr_ratio:g}" for g in groups)
        + "; build the optimizer with the same groups in the same order"
    )
    return kwargs, records, note


def _lr(value: float) -> float:
    """An LR times a ratio without float noise in the file (0.0151 * 0.1 is 0.0015100000000000001)."""
    return float(f"{value:.12g}")


def resolve_policy(epochs: int | None) -> tuple[str, str]:
    """What `auto` means for this training length, and the note that says why."""
    if epochs is not None:
        return "one-cycle", (
            f"policy auto: one-cycle, because the training length is known ({epochs} epochs); for a fixed "
            "budget it trained better than cyclical LRs in clrfind's quality benchmark (policy triangular "
            "for those)"
        )
    return "triangular", (
        "policy auto: triangular, because no training length was given (give the epochs for a one-cycle "
        "schedule fitted to them)"
    )


class _UsableBounds(NamedTuple):
    base_lr: float
    max_lr: float
    peak_lr: float | None  # one cycle's top when above max_lr (Bounds.peak_above_max_lr)
    confidence: str
    method: str
    reason: str | None


def _count(n: int, noun: str) -> str:
    """`1 epoch`, `3 epochs`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _usable_bounds(result: RangeTestResult) -> _UsableBounds:
    """The bounds, or the analysis' own reason and next step when there are none to export."""
    b = result.bounds
    if b is None:
        raise ExportError(
            "the results have no bounds to export", hint="re-run the range test to analyse the curve"
        )
    if not b.usable or b.base_lr is None or b.max_lr is None:
        why = b.reason or "the curve gave no usable (base_lr, max_lr) pair"
        raise ExportError(
            f"no usable bounds in the results: {why}", hint=b.next_step or "re-run the range test"
        )
    for name, value in (("base_lr", b.base_lr), ("max_lr", b.max_lr), ("peak_lr", b.peak_lr)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ExportError(
                f"bounds.{name} is {value}, not a positive finite learning rate; a schedule cannot start from it",
                hint="the results file was edited or damaged; re-run the range test",
            )
    return _UsableBounds(
        float(b.base_lr), float(b.max_lr), b.peak_above_max_lr, b.confidence, b.method, b.reason
    )


def _fit_cycles(spe: int, epochs: int | None) -> tuple[int, int, int, str]:
    """(step_size_up, cycles, total_steps, note): whole cycles that fit the training length.

    Without a length: 4 cycles of 2 x 4 epochs. With one: the number of cycles whose step size is closest to 4
    epochs, kept within 2-10 epochs and at least 3 cycles; budgets under 12 epochs give up cycles before step
    size (the paper's 2-epoch minimum matters more than the third cycle), under 4 epochs one cycle fills the
    budget.
    total_steps = 2 * cycles * step_size_up <= epochs * spe, so the run stops exactly at a cycle end.
    """
    if epochs is None:
        step = STEPSIZE_EPOCHS * spe
        total = 2 * DEFAULT_CYCLES * step
        return (
            step,
            DEFAULT_CYCLES,
            total,
            (
                f"step size {STEPSIZE_EPOCHS} epochs ({step} steps, Smith: 2-10 epochs); "
                f"train {DEFAULT_CYCLES} cycles = {total} optimizer steps (Smith: at least 3), "
                "stopping at a cycle end where the LR is lowest; "
                "pass --epochs N to fit your own training length"
            ),
        )
    budget = epochs * spe
    if budget < 2:
        raise ExportError(
            f"{_count(epochs, 'epoch')} x {_count(spe, 'step')} = {_count(budget, 'optimizer step')}, too short "
            "for one cycle (a cycle needs >= 2 steps: one up, one down)",
            hint="pass more --epochs",
        )
    most = epochs // (2 * MIN_STEPSIZE_EPOCHS)  # cycles whose step size is still >= 2 epochs
    if most >= MIN_CYCLES:
        fewest = max(MIN_CYCLES, math.ceil(epochs / (2 * MAX_STEPSIZE_EPOCHS)))
        cycles = min(max(round(epochs / (2 * STEPSIZE_EPOCHS)), fewest), most)
        why = f"{cycles} cycles"
    elif most >= 1:
        cycles = most
        why = (
            f"only {cycles} cycle{'s' if cycles > 1 else ''}: {epochs} epochs cannot hold "
            f"{MIN_CYCLES} cycles of >= {MIN_STEPSIZE_EPOCHS}-epoch steps (Smith); "
            "train longer, or consider --policy one-cycle"
        )
    else:
        cycles = 1
        why = (
            f"1 cycle with a step size under {MIN_STEPSIZE_EPOCHS} epochs: "
            f"{epochs} epochs is shorter than Smith's minimum cycle; "
            "train longer, or consider --policy one-cycle"
        )
    step = budget // (2 * cycles)
    total = 2 * cycles * step
    left = budget - total
    stop = f"; stop after {total} steps ({left} before the end of epoch {epochs})" if left else ""
    return (
        step,
        cycles,
        total,
        (
            f"{why} of 2 x {step} steps (step size {step / spe:.3g} epochs){stop}, "
            "so training ends at a cycle end where the LR is lowest"
        ),
    )


def _momentum_plan(optimizer: OptimizerRef) -> tuple[bool, float, float, str]:
    """(cycle_momentum, base_momentum, max_momentum, note), decided from the recorded optimizer without torch.

    The results keep only the kwargs that differ from the optimizer's defaults, so a missing `momentum` means
    the default, which is 0 for SGD and RMSprop, and a missing `betas` on an Adam-family optimizer means
    beta1 = 0.9.
    """
    kwargs = optimizer.kwargs
    name = optimizer.target.replace(":", ".").rsplit(".", 1)[-1]
    momentum = kwargs.get("momentum")
    betas = kwargs.get("betas")
    if isinstance(momentum, (int, float)) and not isinstance(momentum, bool) and momentum > 0:
        value, what = float(momentum), f"momentum {momentum:g}"
    elif isinstance(betas, (list, tuple)) and betas and isinstance(betas[0], (int, float)):
        if betas[0] <= 0:
            return False, 0.0, 0.0, f"cycle_momentum false: {name} runs with beta1 = 0"
        value, what = float(betas[0]), f"beta1 {betas[0]:g}"
    elif name in BETAS_OPTIMIZERS or name.endswith(("Adam", "AdamW")):
        value, what = DEFAULT_BETA1, f"beta1 {DEFAULT_BETA1:g} (default)"
    else:
        return (
            False,
            0.0,
            0.0,
            (
                f"cycle_momentum false: {name} runs without momentum "
                "(CyclicLR would otherwise force momentum 0.9 on it)"
            ),
        )
    why = "(Smith 2018)"
    if value > SMITH_MOMENTUM:
        # The test measured the LR at this momentum, and heavy-ball SGD steps lr / (1 - momentum): Smith's
        # 0.95..0.85 would multiply the step at 0.99 by up to 15 and void the bounds. His cycle is taken in units
        # of 1 - momentum instead (x0.5 .. x1.5), so the peak's step compares to the tested one as it does at 0.9.
        gap = 1.0 - value
        high = round(1.0 - gap * (1.0 - MOMENTUM_HIGH) / (1.0 - SMITH_MOMENTUM), 6)
        low = round(1.0 - gap * (1.0 - MOMENTUM_LOW) / (1.0 - SMITH_MOMENTUM), 6)
        why = (
            f"(Smith 2018's 0.95..0.85 around 0.9, moved to {value:g} in units of 1 - momentum: the bounds "
            "were measured there)"
        )
    elif value == SMITH_MOMENTUM:
        high, low = MOMENTUM_HIGH, MOMENTUM_LOW
    else:
        high, low = value, MOMENTUM_DIP * value
    return (
        True,
        low,
        high,
        f"{what}: cycled opposite to the LR, {high:.3g} at the low LR and {low:.3g} at the peak {why}; "
        "it replaces the optimizer's own value",
    )


def _momentum_kwargs(cycle: bool, base: float, high: float) -> dict[str, Any]:
    if not cycle:
        return {"cycle_momentum": False}
    return {"cycle_momentum": True, "base_momentum": base, "max_momentum": high}


# ============================================================================================================
# render
# ============================================================================================================


def render_schedule(schedule: dict[str, Any], fmt: str = "yaml") -> str:
    """The schedule as YAML (with a header saying how to use it), JSON (the same dict) or a Python snippet."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
    _check_schedule(schedule, "schedule")
    if fmt == "json":
        return json.dumps(schedule, indent=2, allow_nan=False) + "\n"
    if fmt == "python":
        return _render_python(schedule)
    import yaml

    # PyYAML's width is a soft limit (it breaks at the first space past it): aim lower to fit HEADER_WIDTH.
    body = yaml.safe_dump(schedule, sort_keys=False, default_flow_style=False, width=HEADER_WIDTH - 16)
    body = body.replace(
        "\n  interval: step\n",
        "\n  interval: step  # call scheduler.step() after every optimizer.step()\n",
        1,
    )
    return _header(schedule, loadable=True) + body


def _header(schedule: dict[str, Any], *, loadable: bool) -> str:
    """What produced the file and how to use it, as comment lines of at most HEADER_WIDTH characters.

    `loadable`: the file is a schedule `load_schedule` reads (YAML/JSON), not the Python snippet.
    """
    src = schedule.get("source", {})
    name = schedule["scheduler"]["target"].rsplit(".", 1)[-1]
    total = schedule.get("training", {}).get("total_steps")
    bounds = src.get("bounds") or [None, None]
    found = (
        ""
        if None in bounds
        else f" (bounds {bounds[0]:.3g} - {bounds[1]:.3g}"
        + (f", one-cycle peak {src['peak_lr']:.3g}" if src.get("peak_lr") else "")
        + f", confidence {src.get('confidence')})"
    )
    usage = (
        "Use it: scheduler = clrfind.load_schedule(PATH_OF_THIS_FILE, optimizer) sets the optimizer's lr "
        f"and builds {name}; or build both yourself: "
        "optimizer = OPTIMIZER(model.parameters(), **optimizer.kwargs), "
        "scheduler = SCHEDULER(optimizer, **scheduler.kwargs)."
    )
    groups = schedule["optimizer"].get("groups")
    if groups:
        usage += (
            f" Parameter groups: the optimizer needs the same {len(groups)} groups in the same order "
            "(optimizer.groups; clrfind.param_groups builds groups from name patterns); each gets its own LRs."
        )
    paragraphs = [
        f"LR schedule written by clrfind {src.get('clrfind_version', '')} from an LR range test{found}.",
        *([usage] if loadable else []),
        "Call scheduler.step() after every optimizer.step()"
        + (f" and stop after training.total_steps = {total} steps, at the end of a cycle." if total else "."),
    ]
    lines = [
        line
        for text in paragraphs
        for line in textwrap.wrap(
            text, HEADER_WIDTH, initial_indent="# ", subsequent_indent="#   ", break_on_hyphens=False
        )
    ]
    return "\n".join(lines) + "\n"


def _render_python(schedule: dict[str, Any]) -> str:
    opt, sched = schedule["optimizer"], schedule["scheduler"]
    # from-imports: torch.optim deletes its submodule attributes, so `torch.optim.sgd.SGD` would fail.
    opt_module, opt_name = _split_target(opt["target"])
    sched_module, sched_name = _split_target(sched["target"])
    imports = [f"from {opt_module} import {opt_name}", f"from {sched_module} import {sched_name}"]
    params, group_lines = _python_params(opt.get("groups"))
    if params.startswith("clrfind."):
        imports.insert(0, "import clrfind")
    # repr() of YAML/JSON values is a Python literal, and round-trips floats exactly.
    opt_kwargs = "".join(f", {k}={v!r}" for k, v in opt["kwargs"].items())
    sched_kwargs = "".join(f",\n    {k}={v!r}" for k, v in sched["kwargs"].items())
    total = schedule.get("training", {}).get("total_steps")
    lines = [
        *_header(schedule, loadable=False).splitlines(),
        "# `model` is a placeholder: replace it with your model (or pass your parameter groups).",
        *(
            line
            for kind in ("warning", "note")
            for text in schedule.get(f"{kind}s", [])
            for line in textwrap.wrap(
                text, HEADER_WIDTH, initial_indent=f"# {kind}: ", subsequent_indent="#   "
            )
        ),
        *imports,
        "",
        *group_lines,
        f"optimizer = {opt_name}({params}{opt_kwargs})",
        f"scheduler = {sched_name}(\n    optimizer{sched_kwargs},\n)",
    ]
    if total is not None:
        lines += [
            f"TOTAL_STEPS = {total}  # stop here: training ends at a cycle end, where the LR is lowest",
            "# for step in range(TOTAL_STEPS):",
            "#     loss = ...; loss.backward(); optimizer.step(); optimizer.zero_grad()",
            "#     scheduler.step()  # after every optimizer step",
        ]
    return "\n".join(lines) + "\n"


def _python_params(groups: list[dict[str, Any]] | None) -> tuple[str, list[str]]:
    """(what the optimizer is built on, the lines before it): the model's parameters; the groups rebuilt from
    their patterns by `clrfind.param_groups` (the parameters none selects form the `default` group, last); or,
    for groups made by the user's own code, a name to replace with them, and their order."""
    if not groups:
        return "model.parameters()", []
    selected = [g for g in groups if g.get("params") or g.get("modules")]
    rest = [g for g in groups if g not in selected]
    if all(g is groups[-1] and g.get("name") == DEFAULT_GROUP for g in rest):
        specs = [{k: g[k] for k in ("name", "params", "modules", "kwargs") if k in g} for g in selected]
        lines = ["GROUPS = [", *(f"    {spec!r}," for spec in specs), "]"]
        return "clrfind.param_groups(model, GROUPS)", lines
    names = ", ".join(str(g.get("name")) for g in groups)
    return "param_groups", [
        f"# `param_groups` is a placeholder: your {len(groups)} parameter groups, in this order: {names}"
    ]


def _split_target(target: str) -> tuple[str, str]:
    module, _, name = target.replace(":", ".").rpartition(".")
    return module, name


def _check_schedule(schedule: Any, source: str) -> None:
    """The shape every consumer relies on; names the key and the fix."""
    fix = "re-export it with `clrfind export RESULTS`"
    if not isinstance(schedule, dict):
        raise ExportError(f"{source}: expected a mapping at the top, got {type(schedule).__name__}", hint=fix)
    for section in ("optimizer", "scheduler"):
        part = schedule.get(section)
        if not isinstance(part, dict):
            raise ExportError(f"{source}: key '{section}' missing or not a mapping", hint=fix)
        if not isinstance(part.get("target"), str) or not part["target"]:
            raise ExportError(f"{source}: key '{section}.target' missing or not a string", hint=fix)
        if not isinstance(part.get("kwargs"), dict):
            raise ExportError(f"{source}: key '{section}.kwargs' missing or not a mapping", hint=fix)
    lr = schedule["optimizer"]["kwargs"].get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
        raise ExportError(
            f"{source}: key 'optimizer.kwargs.lr' must be a positive number, got {lr!r}", hint=fix
        )
    groups = schedule["optimizer"].get("groups")
    if groups is not None:
        if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
            raise ExportError(
                f"{source}: key 'optimizer.groups' must be a list of mappings, one per group", hint=fix
            )
        for i, g in enumerate(groups):
            glr = g.get("lr")
            if (
                not isinstance(glr, (int, float))
                or isinstance(glr, bool)
                or not math.isfinite(glr)
                or glr < 0
            ):
                raise ExportError(
                    f"{source}: key 'optimizer.groups[{i}].lr' must be a number >= 0, got {short_repr(glr)}",
                    hint=fix,
                )
    target = schedule["scheduler"]["target"]
    if not target.startswith(f"{SCHEDULER_MODULE}."):
        raise ExportError(
            f"{source}: key 'scheduler.target': {target!r} is not a {SCHEDULER_MODULE} class", hint=fix
        )


# ============================================================================================================
# torch side: verify, load
# ============================================================================================================


_TRUST_HINT = "pass --trust-results if you trust this file and the code it names, or export without --verify"


def verify_schedule(schedule: dict[str, Any], *, trust: bool = False) -> None:
    """Build the optimizer (on a dummy parameter) and the scheduler from the dict and take one step.

    Proves that the kwargs fit the torch classes before a user copies them into a training script. A schedule
    made from a results file is data, and a hand-edited file can name any callable: unless `trust`, only
    `torch.optim` optimizers are imported and built (the scheduler is always looked up in torch's own module).

    Raises:
        ExportError: the optimizer is not trusted, cannot be imported or built, or the scheduler rejects its
            kwargs.
    """
    import torch

    _check_schedule(schedule, "schedule")
    target = schedule["optimizer"]["target"]
    module, name = _split_target(target)
    if not trust and not (module == OPTIMIZER_MODULE or module.startswith(f"{OPTIMIZER_MODULE}.")):
        raise ExportError(
            f"optimizer.target {short_repr(target)} is not a {OPTIMIZER_MODULE} class; --verify builds only "
            "torch's own optimizers from a results file",
            hint=_TRUST_HINT,
        )
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ExportError(
            f"cannot import the optimizer {short_repr(target)} to verify the schedule: {one_line(exc)}",
            hint="verify where it is importable, or skip verification (--no-verify)",
        ) from exc
    if not trust and not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ExportError(
            f"optimizer.target {short_repr(target)} is not an optimizer class",
            hint=_TRUST_HINT,
        )
    groups = schedule["optimizer"].get("groups") or [{}]
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], **(g.get("kwargs") or {})} for g in groups]
    try:
        optimizer = cls(params, **schedule["optimizer"]["kwargs"])
    except Exception as exc:  # any failure of a user's optimizer class is reported the same way
        raise ExportError(
            f"optimizer {target} rejects optimizer.kwargs: {exc}", hint="fix optimizer.kwargs"
        ) from exc
    scheduler = _build_scheduler(schedule, optimizer, "schedule")
    optimizer.step()
    scheduler.step()


def load_schedule(
    path: str | os.PathLike[str], optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """Read a schedule.yaml/.json and return its scheduler built on the caller's optimizer.

    The optimizer's lr is first set to the file's ``optimizer.kwargs.lr`` (the schedulers start from it); call
    ``scheduler.step()`` after every ``optimizer.step()`` and train for ``training.total_steps`` steps. A schedule
    of several parameter groups (``optimizer.groups``) sets each group's lr and needs an optimizer with the same
    groups in the same order (`clrfind.param_groups` builds them from the file's patterns).

    Warns:
        ClrfindWarning: the optimizer is not of the class the range test measured (nor a subclass of it).

    Raises:
        ExportError: the file is missing or invalid, its kwargs do not fit this optimizer, or the optimizer has
            another number of parameter groups than the schedule.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such schedule file", hint="write one with `clrfind export RESULTS`")
    if path.suffix.lower() == ".py":
        raise ExportError(
            f"{path}: a Python snippet, not a schedule file", hint="load the .yaml or .json export"
        )
    schedule = read_document(path, error=ExportError, hint="re-export it with `clrfind export RESULTS`")
    _check_schedule(schedule, str(path))
    return _scheduler_on(schedule, optimizer, str(path))


def scheduler_for(
    result: RangeTestResult,
    optimizer: torch.optim.Optimizer,
    *,
    policy: str = AUTO_POLICY,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule `write_schedule` writes, built on the caller's optimizer with no file in between: for trainers
    that take a scheduler object (Lightning's `configure_optimizers`, a transformers `Trainer`).

    Sets the optimizer's lr as `load_schedule` does, and warns the same way when it is not of the class the
    range test measured, or when the schedule trains another run than the test rehearsed (the warnings
    `export` prints).

    Raises:
        ExportError: the result has no usable bounds, or the lengths do not fit the policy (see `build_schedule`).
    """
    schedule = build_schedule(result, policy=policy, epochs=epochs, steps_per_epoch=steps_per_epoch)
    for warning in schedule.get("warnings", []):
        warnings.warn(warning, ClrfindWarning, stacklevel=2)
    return _scheduler_on(schedule, optimizer, "the range test's result")


def _scheduler_on(
    schedule: dict[str, Any], optimizer: torch.optim.Optimizer, source: str
) -> torch.optim.lr_scheduler.LRScheduler:
    """A checked schedule's scheduler on `optimizer`, with a warning when its class is not the one measured."""
    mismatch = optimizer_mismatch(schedule["optimizer"], optimizer, source)
    if mismatch is not None:
        warnings.warn(mismatch, ClrfindWarning, stacklevel=3)  # at the caller of the public function
    return _build_scheduler(schedule, optimizer, source)


def optimizer_mismatch(measured: dict[str, Any], optimizer: torch.optim.Optimizer, source: str) -> str | None:
    """Why bounds measured with `measured` (a schedule's optimizer section) may not suit `optimizer`; None when it
    is the same class or a subclass of it.

    Classes are compared by name along the optimizer's MRO: the file names a class, and importing it to compare
    would run code a data file names (`verify_schedule` imports only when trusted).
    """
    ran = OptimizerRef(target=str(measured["target"]), kwargs=dict(measured.get("kwargs") or {}))
    cls = type(optimizer)
    if any(c.__name__ == ran.name for c in cls.__mro__):
        return None
    given = OptimizerRef(target=f"{cls.__module__}.{cls.__qualname__}", kwargs=dict(optimizer.defaults))
    if given.adaptive and not ran.adaptive:
        why = (
            f"{given.name} scales each parameter's step by its gradients' running size, so its good LRs are "
            f"typically 10-100x lower than {ran.name}'s"
        )
    elif ran.adaptive and not given.adaptive:
        why = (
            f"{ran.name} scales each parameter's step by its gradients' running size and {given.name} does not, so "
            f"{given.name}'s good LRs are typically 10-100x higher"
        )
    else:
        why = "where the loss falls and blows up depends on the optimizer, so its bounds are a guess for another"
    return (
        f"{source}: the range test measured {ran.name}, but this optimizer is {given.name}: the bounds may not "
        f"transfer ({why}); run the range test with {given.name}"
    )


def _build_scheduler(
    schedule: dict[str, Any], optimizer: torch.optim.Optimizer, source: str
) -> torch.optim.lr_scheduler.LRScheduler:
    """Set the optimizer's lr from the schedule, then build the scheduler (one path for verify and load)."""
    import torch

    target = schedule["scheduler"]["target"]
    kwargs = dict(schedule["scheduler"]["kwargs"])
    cls = getattr(torch.optim.lr_scheduler, target.rsplit(".", 1)[-1], None)
    if not isinstance(cls, type) or not issubclass(cls, torch.optim.lr_scheduler.LRScheduler):
        raise ExportError(
            f"{source}: key 'scheduler.target': {target} is not a scheduler in torch {torch.__version__}",
            hint="use CyclicLR, OneCycleLR or CosineAnnealingWarmRestarts",
        )
    if cls in (torch.optim.lr_scheduler.CyclicLR, torch.optim.lr_scheduler.OneCycleLR) and kwargs.get(
        "cycle_momentum", True
    ):
        # CyclicLR/OneCycleLR would silently give a momentum-free SGD momentum max_momentum: refuse instead.
        has_betas = "betas" in optimizer.defaults
        momenta = [g.get("momentum", 0) for g in optimizer.param_groups]
        if not has_betas and "momentum" in optimizer.defaults and not any(momenta):
            raise ExportError(
                f"{source}: scheduler.kwargs.cycle_momentum is true but {type(optimizer).__name__} "
                f"has momentum 0; {cls.__name__} would silently turn its momentum on",
                hint="set cycle_momentum: false in the file, or export from a range test with this optimizer",
            )
    for group, lr in zip(optimizer.param_groups, _group_lrs(schedule, optimizer, source), strict=True):
        group["lr"] = lr
        if "initial_lr" in group:  # left by an earlier scheduler; schedulers only setdefault it
            group["initial_lr"] = lr
    try:
        return cls(optimizer, **kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        raise ExportError(
            f"{source}: scheduler.kwargs do not fit {cls.__name__} with {type(optimizer).__name__}: {exc}",
            hint="re-export from a range test run with this optimizer, or fix scheduler.kwargs",
        ) from exc


def _group_lrs(schedule: dict[str, Any], optimizer: torch.optim.Optimizer, source: str) -> list[float]:
    """The starting LR of each of the optimizer's groups: the schedule's one LR for all, or, for a schedule of
    parameter groups, each group's own, when the optimizer has as many groups.

    Raises:
        ExportError: the optimizer's groups are not the schedule's (another number of them).
    """
    groups = schedule["optimizer"].get("groups")
    if not groups:
        return [schedule["optimizer"]["kwargs"]["lr"]] * len(optimizer.param_groups)
    if len(groups) != len(optimizer.param_groups):
        names = ", ".join(str(g.get("name", i)) for i, g in enumerate(groups))
        raise ExportError(
            f"{source}: the schedule is for {len(groups)} parameter groups ({names}) but the optimizer has "
            f"{len(optimizer.param_groups)}; each group's LRs would land on another group",
            hint="build the optimizer with the same groups in the same order "
            "(clrfind.param_groups(model, groups) builds them from the patterns in optimizer.groups)",
        )
    return [g["lr"] for g in groups]


@known_keywords
def write_schedule(
    result: RangeTestResult,
    path: str | os.PathLike[str],
    *,
    policy: str = AUTO_POLICY,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    fmt: str = "yaml",
    verify: bool = False,
    trust: bool = False,
    results_path: str | None = None,
) -> Path:
    """Build, optionally verify with torch (`trust`: see `verify_schedule`), render and write the schedule
    atomically; returns the path."""
    schedule = build_schedule(
        result, policy=policy, epochs=epochs, steps_per_epoch=steps_per_epoch, results_path=results_path
    )
    if verify:
        verify_schedule(schedule, trust=trust)
    return write_atomic(path, render_schedule(schedule, fmt))
