"""Quality benchmark CLI: `python -m bench.quality.run [--half dev|heldout|fresh|all] [--tasks a,b] [--seeds N]
[--quick] [--markdown FILE] [--json FILE]`.

For every task, each method runs its own range test per seed and trains with what it suggests; a grid-search
oracle (cached) gives the best reachable metric. Score per task = (metric - chance) / (oracle - chance), on the
mean metric over the seeds: 1 = as good as the grid search, 0 = no better than a model that learned nothing
(`TaskData.chance`; failed runs count as chance, so scores are >= 0). The same formula is sign-correct for the
lower-is-better metrics (MSE, nats). "Within 1%" = the mean metric falls short of the oracle's by at most 1% of
the oracle's value (for accuracy that is ~1 point); beating the oracle counts as within. The tasks are split in a
development half and a held-out half (`Task.half`), and a fresh set written in batches; the summary is given per
set and for all, and the fresh set's mean score per batch (`tasks.fresh_batches`).

Experiments: `--clrfind-set NAME=VALUE` changes how clrfind is driven (`mode=exp`, `min_steps=300`) or a clrfind
module constant (`analysis.bounds.STOP_SLOPE_FRAC=0.1`) in the worker processes; `--first-seed 3` runs held-out seeds;
`--clrfind-data val|loader|stream` hands clrfind the data as a user with validation data, a ready loader or a stream
does.

Run it from a checkout nobody edits meanwhile (a `git worktree`): the fine-tuning tasks' pretrained body is keyed
by its code's source, which the worker processes read from disk when they first build it, so an edit to
`tasks.py` mid-run gives them another key, a body trained again in a worker (on other threads: other weights), and
cached grids that no later run can reproduce.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.quality.methods import CLRFIND, FELL_BACK, ClrfindSettings, best_candidate, run_method
from bench.quality.oracle import (
    KINDS,
    Cache,
    OracleResult,
    code_key,
    grid,
    oracle_cache,
    pick_best,
    run_config,
)
from bench.quality.peers import DEFAULT, PEERS
from bench.quality.placement import grid_optimum, placement
from bench.quality.records import MethodRun
from bench.quality.tasks import CACHE_DIR, DATA_MODES, FAMILIES, HALVES, TASKS, Task, fresh_batches
from bench.quality.train import Outcome

ORACLE = "oracle (grid)"
METHODS = [CLRFIND, *PEERS, DEFAULT]
WITHIN = 0.01
TIE = 1e-6  # relative: metrics closer than this are equal (float32 rounding of a mean over the seeds)


# -- running -----------------------------------------------------------------------------------------------------


def _init_worker() -> None:
    import torch

    # measured: one thread per process is fastest for these small models, and two processes share two cores
    torch.set_num_threads(1)


def peers_cache(task: Task, *, enabled: bool) -> Cache:
    """Peer and default runs do not depend on clrfind: cached per task, peer code and package versions."""
    here = Path(__file__).parent
    versions = [importlib.metadata.version(p) for p in ("torch", "torch-lr-finder", "lightning")]
    src = (here / "peers.py").read_text(encoding="utf-8")
    key = hashlib.sha256((code_key(task) + src + repr(versions)).encode()).hexdigest()[:12]
    return Cache(CACHE_DIR / f"peers-{task.name}-{key}.json", enabled=enabled)


@dataclass
class TaskResults:
    task: Task
    oracle: OracleResult
    runs: dict[str, list[MethodRun]]


def run_all(
    tasks: list[Task],
    methods: list[str],
    seeds: list[int],
    *,
    quick: bool,
    use_cache: bool,
    settings: ClrfindSettings,
    workers: int,
    log: Callable[[str], None],
) -> list[TaskResults]:
    """Submit every missing run to a process pool, fill the caches, and collect the results per task.

    Oracle and peer runs are cached (saved every few results, so an interrupted run keeps its work); clrfind is
    never cached: it is what is being measured, and its code changes.
    """
    oracle_caches = {t.name: oracle_cache(t, enabled=use_cache) for t in tasks}
    peer_caches = {t.name: peers_cache(t, enabled=use_cache) for t in tasks}
    clrfind_runs: dict[str, dict[str, dict[str, Any]]] = {t.name: {} for t in tasks}
    schedules_dir = str(CACHE_DIR / "schedules")
    jobs: dict[Future[Any], tuple[str, str, Any, int]] = {}
    ctx = get_context("spawn")  # fork after torch has started its thread pools can hang
    started = time.perf_counter()
    for task in tasks:
        if task.prepare is not None:  # once, here, before the workers need it
            task.prepare()

    def save() -> None:
        for cache in [*oracle_caches.values(), *peer_caches.values()]:
            cache.save()

    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        for task in tasks:
            for config in grid(task, quick=quick):
                for seed in seeds:
                    if oracle_caches[task.name].get(config.key, seed) is None:
                        fut = pool.submit(run_config, task.name, config.kind, config.lr, seed)
                        jobs[fut] = ("oracle", task.name, config, seed)
            for method in methods:
                for seed in seeds:
                    if method != CLRFIND and peer_caches[task.name].get(method, seed) is not None:
                        continue
                    fut = pool.submit(run_method, task.name, method, seed, settings, schedules_dir)
                    jobs[fut] = ("method", task.name, method, seed)
        log(f"{len(jobs)} runs to do ({workers} worker processes); cached results are reused")
        try:
            for done, fut in enumerate(as_completed(jobs), 1):
                kind, task_name, what, seed = jobs[fut]
                value = fut.result().to_dict()
                if kind == "oracle":
                    oracle_caches[task_name].put(what.key, seed, value)
                elif what == CLRFIND:
                    clrfind_runs[task_name][str(seed)] = value
                else:
                    peer_caches[task_name].put(what, seed, value)
                if done % 25 == 0 or done == len(jobs):
                    save()
                    log(f"  {done}/{len(jobs)} runs done, {time.perf_counter() - started:.0f} s")
        finally:
            save()
    results = []
    for task in tasks:
        oracle_data = oracle_caches[task.name].data
        method_data = {**peer_caches[task.name].data, CLRFIND: clrfind_runs[task.name]}
        outcomes = {
            c: [Outcome.from_dict(oracle_data[c.key][str(s)]) for s in seeds] for c in grid(task, quick=quick)
        }
        runs = {m: [MethodRun.from_dict(method_data[m][str(s)]) for s in seeds] for m in methods}
        results.append(TaskResults(task, pick_best(task, outcomes), runs))
    return results


# -- scoring -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One method on one task, aggregated over the seeds. `seconds` and `steps`: its range test's cost per seed
    (for the oracle, `seconds` is its whole grid, all seeds)."""

    method: str
    metrics: list[float]
    suggestion: str
    seconds: float | None
    steps: float | None
    diverged: int
    at_chance: int
    runs: int
    score: float | None = None
    score_se: float | None = None
    old_score: float | None = None
    within: bool = False
    vs_default: str = "-"

    @property
    def mean(self) -> float:
        return float(np.mean(self.metrics))

    @property
    def std(self) -> float:
        return float(np.std(self.metrics))

    @property
    def se(self) -> float:
        """Standard error of the mean over the seeds (0 with one seed)."""
        n = len(self.metrics)
        return float(np.std(self.metrics, ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def score(metric: float, zero: float, one: float) -> float | None:
    """(metric - zero) / (one - zero): 1 at `one`, 0 at `zero`; None when they tie.

    The score: zero = chance, one = the oracle. The old score (zero = the default LR's mean metric) is only in
    the --json output, for comparing with earlier reports: on the new tasks the default often ties or nearly
    ties the oracle (wine-easy, diabetes-adam), and the ratio then swings by tens.
    """
    gap = one - zero
    if abs(gap) < 1e-9:
        return None
    s = (metric - zero) / gap
    return 0.0 if abs(s) < 1e-9 else s  # a mean of equal floats can differ from them in the last bit


def score_se(row: Row, oracle: Row, chance: float, s: float | None) -> float | None:
    """Standard error of `score` from the seed-to-seed spread of the method and the oracle.

    `s` is the row's score; first-order propagation through (m - chance) / (o - chance). It says how much of a
    score is seed noise. (The oracle is also the best of 30 noisy configs, a selection bias this does not
    include: its mean is optimistic, so scores lean low.)
    """
    if s is None:
        return None
    if row is oracle:  # the top of the scale: 1 by definition
        return 0.0
    return math.sqrt(row.se**2 + (s * oracle.se) ** 2) / abs(oracle.mean - chance)


def better(task: Task, a: float, b: float) -> bool:
    """`a` is a better metric than `b` (higher accuracy, lower MSE or nats) by more than rounding.

    Accuracies are float32 fractions, so the means of equal accuracies over the seeds can differ in the eighth digit
    (97.04% read as 0.97041420 against 0.97041422): that is a tie, for "vs default" and "best method on" alike.
    """
    return not tied(a, b) and (a > b if task.higher_is_better else a < b)


def tied(a: float, b: float) -> bool:
    """`a` equals `b` up to float32 rounding (relative to `b`, or absolute below 1)."""
    return abs(a - b) <= TIE * max(1.0, abs(b))


def within(task: Task, metric: float, oracle: float) -> bool:
    shortfall = (oracle - metric) if task.higher_is_better else (metric - oracle)
    return shortfall <= WITHIN * abs(oracle)


def is_chance(task: Task, metric: float) -> bool:
    """The run ended at the chance level (floored there, or equal to it: an accuracy is a float32 fraction)."""
    return tied(metric, task.data().chance)


def _vs_default(task: Task, metric: float, default: float) -> str:
    if better(task, metric, default):
        return "above"
    return "below" if better(task, default, metric) else "same"


def _lr(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2g}"


def _median(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def clrfind_bounds(runs: list[MethodRun]) -> str:
    """`base-max, peak P` (medians over the seeds), how far max_lr moved between seeds (largest / smallest), and
    how many seeds got no bounds: a suggestion that jumps between seeds of one task is luck, not a rule."""
    base = _median([r.suggestion.get("base") for r in runs])
    highs = [r.suggestion["max"] for r in runs if r.suggestion.get("max") is not None]
    high = _median(highs)
    peak = _median([r.suggestion.get("peak") for r in runs])
    missing = len(runs) - len(highs)
    text = f"{_lr(base)}-{_lr(high)}" + (f", peak {_lr(peak)}" if peak and high and peak > high else "")
    if len(highs) > 1:
        text += f" (max x{max(highs) / min(highs):.1f} over seeds)"
    return text + (f" ({missing} without bounds)" if missing else "")


def method_row(task: Task, method: str, runs: list[MethodRun]) -> Row:
    label = best_candidate(runs, task.higher_is_better)
    metrics = [r.outcomes[label].metric for r in runs]
    diverged = sum(o.diverged for r in runs for o in r.outcomes.values())
    at_chance = sum(is_chance(task, o.metric) for r in runs for o in r.outcomes.values())
    n_runs = sum(len(r.outcomes) for r in runs)
    seconds = float(np.mean([r.seconds for r in runs]))
    counted = [r.steps for r in runs if r.steps is not None]
    steps = float(np.mean(counted)) if counted else None
    if method == CLRFIND:
        text = clrfind_bounds(runs)
    elif method == DEFAULT:
        text = _lr(runs[0].suggestion["lr"])
    else:
        lr = _median([r.suggestion.get("lr") for r in runs])
        missing = sum(r.suggestion.get("lr") is None for r in runs)
        text = f"{_lr(lr)} -> {'CLR' if label == 'triangular' else 'const'}" + (
            f" ({missing} none)" if missing else ""
        )
    return Row(method, metrics, text, seconds, steps, diverged, at_chance, n_runs)


def score_task(res: TaskResults) -> list[Row]:
    """Rows for every method plus the oracle, scored against chance and the oracle."""
    task = res.task
    chance = task.data().chance
    rows = [method_row(task, m, runs) for m, runs in res.runs.items()]
    oracle_metrics = [o.metric for o in res.oracle.best_outcomes]
    best = res.oracle.best_outcomes
    failed = sum(o.diverged for o in best), sum(is_chance(task, o.metric) for o in best)
    oracle_row = Row(
        ORACLE, oracle_metrics, res.oracle.best.label, res.oracle.seconds, None, *failed, len(best)
    )
    default = next(r for r in rows if r.method == DEFAULT)  # main() always runs the default
    out = []
    for r in [*rows, oracle_row]:
        s = score(r.mean, chance, oracle_row.mean)
        out.append(
            replace(
                r,
                score=s,
                score_se=score_se(r, oracle_row, chance, s),
                old_score=score(r.mean, default.mean, oracle_row.mean),
                within=within(task, r.mean, oracle_row.mean),
                vs_default="-" if r is default else _vs_default(task, r.mean, default.mean),
            )
        )
    return out


# -- output ------------------------------------------------------------------------------------------------------


def fmt_value(task: Task, value: float) -> str:
    if task.metric == "accuracy":
        return f"{100 * value:.1f}"
    return f"{value:.4f}" if task.metric == "mse" else f"{value:.3f}"


def _fmt_metric(task: Task, row: Row) -> str:
    scale = 100 if task.metric == "accuracy" else 1
    return (
        f"{fmt_value(task, row.mean)} ± {fmt_value(task, row.std) if scale == 1 else f'{100 * row.std:.1f}'}"
    )


def _fmt_score(row: Row) -> str:
    if row.score is None:
        return "-"
    return f"{row.score:.3f}" + (f" ± {row.score_se:.3f}" if row.score_se else "")


def _fmt_cost(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


HEADER = [
    "task", "method", "metric (mean ± std)", "suggested LR", "test steps", "test s", "score ± SE", "vs default",
    "≤1%", "diverged, at chance",
]  # fmt: skip


def table_rows(results: list[TaskResults], scored: dict[str, list[Row]]) -> list[list[str]]:
    out = []
    for res in results:
        task = res.task
        for i, row in enumerate(scored[task.name]):
            out.append([
                f"{task.name} ({task.unit})" if i == 0 else "",
                row.method,
                _fmt_metric(task, row),
                row.suggestion,
                _fmt_cost(row.steps, 0) if row.method != DEFAULT else "-",
                _fmt_cost(row.seconds, 1) if row.method != DEFAULT else "-",
                _fmt_score(row),
                row.vs_default,
                "yes" if row.within else "no",
                f"{row.diverged}, {row.at_chance} of {row.runs}" if row.diverged or row.at_chance else "0",
            ])  # fmt: skip
    return out


SUMMARY_HEADER = [
    "method", "mean score ± SE", "worst task", "within 1% of oracle", "best method on", "above default LR on",
    "diverged runs", "runs at chance", "test steps", "test s",
]  # fmt: skip


def summary_rows(scored: dict[str, list[Row]], tasks: dict[str, Task], methods: list[str]) -> list[list[str]]:
    """One line per method over the given tasks (a half, or all)."""
    out = []
    n_tasks = len(scored)
    for method in [*methods, ORACLE]:
        mine = {name: next(r for r in rows if r.method == method) for name, rows in scored.items()}
        scores = {name: r.score for name, r in mine.items() if r.score is not None}
        ses = [mine[name].score_se or 0.0 for name in scores]
        wins = 0  # contenders: every method but the oracle (the default LR included); ties count for each
        for name, rows in scored.items():
            contenders = [r for r in rows if r.method != ORACLE]
            if not any(better(tasks[name], r.mean, mine[name].mean) for r in contenders):
                wins += 1
        worst = min(scores, key=lambda name: scores[name]) if scores else None
        cost = method not in (ORACLE, DEFAULT)
        steps = [r.steps for r in mine.values() if r.steps is not None]
        out.append([
            method,
            (f"{np.mean(list(scores.values())):.3f}"
             + (f" ± {math.sqrt(sum(s * s for s in ses)) / len(ses):.3f}" if any(ses) else ""))
            if scores
            else "-",
            f"{scores[worst]:.2f} ({worst})" if worst is not None and method != ORACLE else "-",
            f"{sum(r.within for r in mine.values())}/{n_tasks}",
            f"{wins}/{n_tasks}" if method != ORACLE else "-",
            f"{sum(r.vs_default == 'above' for r in mine.values())}/{n_tasks}" if method != DEFAULT else "-",
            f"{sum(r.diverged for r in mine.values())}/{sum(r.runs for r in mine.values())}",
            f"{sum(r.at_chance for r in mine.values())}/{sum(r.runs for r in mine.values())}",
            f"{np.mean(steps):.0f}" if cost and steps else "-",
            f"{np.mean([r.seconds for r in mine.values()]):.2f}" if cost else "-",
        ])  # fmt: skip
    return out


def batch_rows(scored: dict[str, list[Row]], methods: list[str]) -> tuple[list[str], list[list[str]]]:
    """The fresh set's mean score per batch and method (header, rows): each batch was first scored with the rules
    of its day, and this says how it fares with the rules as they stand."""
    batches: dict[int, list[str]] = {}
    for name in scored:
        batch = fresh_batches().get(name)  # None for the two halves
        if batch is not None:
            batches.setdefault(batch, []).append(name)
    rows = []
    for batch, names in sorted(batches.items()):
        means = []
        for method in methods:
            scores = [r.score for n in names for r in scored[n] if r.method == method and r.score is not None]
            means.append(f"{np.mean(scores):.3f}" if scores else "-")
        mine = [r for n in names for r in scored[n] if r.method == CLRFIND]
        above = f"{sum(r.vs_default == 'above' for r in mine)}/{len(names)}" if mine else "-"
        rows.append([str(batch), str(len(names)), *means, above])
    return ["fresh batch", "tasks", *methods, "clrfind above default LR"], rows


SPLIT_HEADER = ["task", "half", "optimizer", "batch", "budget (steps)", "metric (chance)", "description"]


def _optimizer_text(task: Task) -> str:
    kwargs = " ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in task.optimizer_kwargs.items()
    )
    clip = f" clip_grad_norm={task.clip_grad_norm:g}" if task.clip_grad_norm is not None else ""
    return task.optimizer.rsplit(".", 1)[-1] + (f" {kwargs}" if kwargs else "") + clip


def split_rows(tasks: list[Task]) -> list[list[str]]:
    return [
        [
            t.name, t.half, _optimizer_text(t), str(t.batch_size),
            f"{t.epochs} x {t.steps_per_epoch} = {t.total_steps}",
            f"{t.unit} ({fmt_value(t, t.data().chance)})", t.description,
        ]
        for t in tasks
    ]  # fmt: skip


CLRFIND_HEADER = [
    "task", "half", "clrfind bounds (median)", "clrfind", "oracle (config)", "best constant (LR)", "default LR",
    "score", "≤1%",
]  # fmt: skip


def clrfind_rows(results: list[TaskResults], scored: dict[str, list[Row]]) -> list[list[str]]:
    """Per task: clrfind's bounds and metric against the oracle, the best constant LR and the default."""
    out = []
    for res in results:
        task, oracle = res.task, res.oracle
        rows = {r.method: r for r in scored[task.name]}
        mine, default = rows[CLRFIND], rows[DEFAULT]
        out.append([
            task.name, task.half, mine.suggestion, fmt_value(task, mine.mean),
            f"{fmt_value(task, oracle.mean(oracle.best))} ({oracle.best.label})",
            f"{fmt_value(task, oracle.mean(oracle.best_constant))} ({oracle.best_constant.lr:.3g})",
            f"{fmt_value(task, default.mean)} ({task.default_lr:g})", _fmt_score(mine),
            "yes" if mine.within else "no",
        ])  # fmt: skip
    return out


PLACEMENT_HEADER = [
    "set", "method", "against the grid's best", "median offset", "median |offset|", "within 2x", "over 3x high",
    "over 3x low", "most high (task mean)", "most low (task mean)",
]  # fmt: skip


def _trained_lr(method: str, run: MethodRun) -> float | None:
    """The LR a method's run trained with at its top: clrfind's one-cycle peak (None when it had no usable bounds
    and fell back to the default), a peer's suggestion, the default LR."""
    if method == CLRFIND:
        fell_back = any(n.startswith(FELL_BACK) for n in run.notes)
        return None if fell_back else run.suggestion.get("peak")
    return run.suggestion.get("lr")


def task_offsets(res: TaskResults, method: str) -> list[float]:
    """log10(suggested / grid's best) per seed: clrfind's peak against the best one-cycle peak, every other
    method's LR against the best constant LR (`bench.quality.placement`)."""
    kind = "one-cycle" if method == CLRFIND else "constant"
    configs = [c for c in res.oracle.outcomes if c.kind == kind]
    best = grid_optimum(
        [c.lr for c in configs],
        [res.oracle.mean(c) for c in configs],
        higher_is_better=res.task.higher_is_better,
    )
    lrs = [_trained_lr(method, r) for r in res.runs[method]]
    return [math.log10(lr) - best for lr in lrs if lr is not None and lr > 0]


def _factor(d: float) -> str:
    factor = 10**d
    return f"x{factor:.2f}" if 0.1 <= factor < 10 else f"x{factor:.2g}"


def _decades(d: float) -> str:
    return f"{d:+.2f} ({_factor(d)})"


def placement_rows(groups: list[tuple[str, list[TaskResults]]], methods: list[str]) -> list[list[str]]:
    """Per set and method: how far the suggestions sit from the grid's best LR, and which way."""
    out = []
    for name, results in groups:
        for method in methods:
            found = placement({res.task.name: task_offsets(res, method) for res in results})
            if found is None:
                continue
            n = len(found.offsets)
            out.append([
                name, method, "one-cycle peak" if method == CLRFIND else "constant LR", _decades(found.median),
                f"{found.median_abs:.2f} ({_factor(found.median_abs)})", f"{found.near}/{n}", f"{found.high}/{n}",
                f"{found.low}/{n}", f"{found.highest[0]} {_decades(found.highest[1])}",
                f"{found.lowest[0]} {_decades(found.lowest[1])}",
            ])  # fmt: skip
    return out


def score_dict(row: Row) -> dict[str, Any]:
    keys = ("mean", "score", "score_se", "old_score", "within", "vs_default")
    return {k: getattr(row, k) for k in keys}


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def details(results: list[TaskResults]) -> list[str]:
    """Per task: the oracle's best config of each kind, and each method's suggestion per seed (for diagnosing)."""
    lines = []
    for res in results:
        task, oracle = res.task, res.oracle
        sign = 1 if task.higher_is_better else -1
        best = {
            kind: max((c for c in oracle.outcomes if c.kind == kind), key=lambda c: sign * oracle.mean(c))
            for kind in KINDS
        }
        oracle_txt = "; ".join(f"best {c.label}: {oracle.mean(c):.4g}" for c in best.values())
        lines.append(f"{task.name} [{task.half}]: {task.description}; {task.epochs} epochs x "
                     f"{task.steps_per_epoch} steps")  # fmt: skip
        lines.append(f"  oracle {oracle_txt}")
        for run in res.runs.get(CLRFIND, []):
            s = run.suggestion
            o = run.outcomes["schedule"]
            lines.append(
                f"  clrfind seed {run.seed}: base {_lr(s.get('base'))} max {_lr(s.get('max'))} "
                f"peak {_lr(s.get('peak'))} "
                f"(test stopped at {_lr(s.get('stop_lr'))} after {run.steps} steps) -> {o.metric:.4g}"
                + ("  DIVERGED" if o.diverged else "")
                + (f"  [{'; '.join(run.notes)}]" if run.notes else "")
            )
        for method, runs in res.runs.items():
            if method in (CLRFIND, DEFAULT):
                continue
            per_seed = ", ".join(
                f"{_lr(r.suggestion.get('lr'))} (const {r.outcomes['constant'].metric:.4g}, "
                f"CLR {r.outcomes['triangular'].metric:.4g})"
                + (f" [{'; '.join(r.notes)}]" if r.notes else "")
                for r in runs
            )
            lines.append(f"  {method}: {per_seed}")
    return lines


# -- CLI ---------------------------------------------------------------------------------------------------------


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads `1e-5` (no dot) as a string; a value that parses as a float is one here."""
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_settings(assignments: list[str]) -> ClrfindSettings:
    """`--clrfind-set NAME=VALUE`: a dotted spec key set on every task's spec (`range_test.steps=100`,
    `verify_bounds=false`), the export `policy`, or a clrfind module constant (`analysis.bounds.STOP_SLOPE_FRAC=0.1`).
    Values are parsed as YAML."""
    from clrfind.spec import Spec

    overrides: list[tuple[str, Any]] = []
    constants: list[tuple[str, Any]] = []
    policy = ClrfindSettings().policy
    for item in assignments:
        name, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--clrfind-set {item!r}: expected NAME=VALUE")
        value = _numbers(yaml.safe_load(raw))
        if name == "policy":
            policy = str(value)
        elif name.split(".")[0] in Spec.model_fields:
            overrides.append((name, value))
        elif "." in name:
            constants.append((name, value))
        else:
            raise SystemExit(f"--clrfind-set {name}: not a spec key, `policy`, nor module.CONSTANT")
    return ClrfindSettings(overrides=tuple(overrides), policy=policy, constants=tuple(constants))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.quality.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--half", choices=[*HALVES, "all"], default="all", help="which half of the tasks (default all)"
    )
    p.add_argument(
        "--tasks", default="", help=f"comma-separated subset of: {', '.join(TASKS)} (default: the half)"
    )
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated subset of: {', '.join(METHODS)}"
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per method and oracle config (default 3)")
    p.add_argument(
        "--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1 (default 0): held-out runs"
    )
    p.add_argument("--quick", action="store_true", help="1 seed and a 6-point grid: a smoke test")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not write .bench-cache/quality")
    p.add_argument("--markdown", type=Path, help="also write the tables as Markdown to this file")
    p.add_argument("--json", type=Path, help="also write the raw per-seed results as JSON to this file")
    p.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)"
    )
    p.add_argument(
        "--clrfind-data", choices=DATA_MODES, default="dataset",
        help="how clrfind's spec hands over the training data: a dataset (default), the dataset and the val split "
        "(`data.val`), a ready DataLoader over a batch sampler, or a stream (an IterableDataset in a new order every "
        "pass)",
    )  # fmt: skip
    p.add_argument("--clrfind-set", action="append", default=[], metavar="NAME=VALUE",
                   help="experiment: override a clrfind setting or module constant (repeatable)")  # fmt: skip
    return p.parse_args(argv)


def select_tasks(half: str, names: str) -> list[Task]:
    """The tasks of `half` ("all": both), narrowed to `names` when given, in suite order."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in TASKS]
    if unknown:
        raise SystemExit(f"--tasks: unknown {unknown}; choose from {', '.join(TASKS)}")
    tasks = [
        t for t in TASKS.values() if (half == "all" or t.half == half) and (not wanted or t.name in wanted)
    ]
    if not tasks:
        raise SystemExit(f"no task of half {half!r} among --tasks {names!r}")
    import torch

    missing = [t.name for t in tasks if not hasattr(torch.optim, t.optimizer.rpartition(".")[2])]
    if missing:  # Adafactor came with torch 2.5, Muon with 2.9: say so before any worker starts
        raise SystemExit(
            f"this torch ({torch.__version__}) lacks the optimizer of {', '.join(missing)}: install a newer torch "
            "or leave them out of --tasks"
        )
    return tasks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = "python -m bench.quality.run " + " ".join(shlex.quote(a) for a in given)
    tasks = select_tasks(args.half, args.tasks)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    if DEFAULT not in methods:
        methods.append(DEFAULT)
    seeds = list(range(args.first_seed, args.first_seed + (1 if args.quick else args.seeds)))
    settings = replace(parse_settings(args.clrfind_set), data=args.clrfind_data)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    results = run_all(tasks, methods, seeds, quick=args.quick, use_cache=not args.no_cache, settings=settings,
                      workers=args.workers, log=log)  # fmt: skip
    elapsed = time.perf_counter() - started
    scored = {res.task.name: score_task(res) for res in results}
    by_name = {t.name: t for t in tasks}
    halves = [h for h in HALVES if any(t.half == h for t in tasks)]
    groups = [(h, [t.name for t in tasks if t.half == h]) for h in halves]
    if len(halves) > 1:
        groups.append(("all", [t.name for t in tasks]))
    per_task = [(h, table_rows([r for r in results if r.task.half == h], scored)) for h in halves]
    summaries = [
        (h, summary_rows({n: scored[n] for n in names}, by_name, methods)) for h, names in groups
    ]  # fmt: skip
    notes = [
        f"seeds: {seeds[0]}..{seeds[-1]}; oracle grid: {len(grid(tasks[0], quick=args.quick)) // len(KINDS)} LRs "
        "(SGD 1e-4..3, adaptive 1e-5..0.3, Adadelta 1e-3..30) x (constant, triangular max/4..max, one-cycle "
        "peaking at the LR); "
        f"wall time {elapsed:.0f} s on {args.workers} worker processes",
        "score = (metric - chance) / (oracle - chance) on the mean over seeds, chance = a model that learned "
        "nothing: majority-class val accuracy, val MSE of the train mean, ln(vocabulary) = ln 96 = 4.564 nats per "
        "character, or for a task scored on its own val loss, that loss for the training data's frequencies or "
        "fitted Gaussian; failed runs count as chance; SE from the seed-to-seed spread of the method and the oracle "
        "(first order; the oracle's best-of-30-configs selection bias is not in it); worst task = lowest score",
        "within 1% = short of the oracle by <= 1% of its value; vs default / above default LR on = the mean "
        "metric is better than the default LR's (higher accuracy, lower MSE, nats or loss); best method on: every "
        "method but the oracle contends, the default LR too, ties count for each",
        "default LR = what a user gets without a range test: 0.01 for SGD, torch's own default for the others "
        "(Adam/AdamW/RAdam 1e-3, RMSprop/Adagrad 1e-2, Adadelta 1.0), constant; peers: the better of constant and "
        "CLR(suggestion/4.."
        "suggestion); clrfind: its test with its defaults and the training's length in the spec (`training:`), then "
        "exactly the exported schedule (`export --epochs`)",
        "test steps / test s = optimizer steps and seconds of the method's range test per seed; for the oracle, "
        "test s is its whole grid (all seeds)",
        "diverged = training runs whose loss became non-finite (metric counted as chance); at chance = training "
        "runs that ended no better than chance (diverged, collapsed, or never learned); both of all the method's "
        "training runs (peers: 2 per seed, constant and CLR)",
        "suggestion vs the grid's best LR: log10(suggested / best) per seed, in decades (+ = above), against the "
        "LR the grid trains best with for the schedule the method trains: clrfind's one-cycle peak against the best "
        "one-cycle peak, the others' LR against the best constant LR; the best grid point is refined by a parabola "
        "through it and its neighbours (bench/quality/placement.py); clrfind's seeds without bounds are left out",
    ]
    if settings != ClrfindSettings():
        notes.append(f"clrfind settings: {settings}")
    split = split_rows(tasks)
    mine = clrfind_rows(results, scored) if CLRFIND in methods else []
    sections: list[tuple[str, list[str], list[list[str]]]] = [("split", SPLIT_HEADER, split)]
    sections += [(f"per task: {h}", HEADER, rows) for h, rows in per_task]
    sections += [(f"summary: {h}", SUMMARY_HEADER, rows) for h, rows in summaries]
    by_batch = batch_rows(scored, methods)
    if by_batch[1]:
        sections.append(("fresh set by batch (mean score)", *by_batch))
    if mine:
        sections.append(("clrfind per task", CLRFIND_HEADER, mine))
    placed = [(h, [r for r in results if r.task.name in names]) for h, names in groups]
    if len(results) > 1:  # and by optimizer family over every task: the rules differ between the two
        placed += [
            (f"{family} optimizers", [r for r in results if r.task.family == family]) for family in FAMILIES
        ]
    sections.append(("suggestion vs the grid's best LR", PLACEMENT_HEADER, placement_rows(placed, methods)))
    for title, header, rows in sections:
        print(f"== {title}")
        print(render_text(header, rows))
        print()
    print("\n".join(notes))
    print()
    print("\n".join(details(results)))
    if args.markdown:
        md = [f"`{command}`", ""]
        for title, header, rows in sections:
            md += [f"**{title}**", "", render_markdown(header, rows), ""]
        md += [*(f"- {n}" for n in notes), "", "```", *details(results), "```", ""]
        args.markdown.write_text("\n".join(md), encoding="utf-8")
    if args.json:
        raw = {
            res.task.name: {
                "half": res.task.half,
                "chance": res.task.data().chance,
                "oracle": {c.key: [o.to_dict() for o in outs] for c, outs in res.oracle.outcomes.items()},
                "oracle_best": res.oracle.best.key,
                "oracle_best_constant": res.oracle.best_constant.key,
                "methods": {m: [r.to_dict() for r in runs] for m, runs in res.runs.items()},
                "scores": {r.method: score_dict(r) for r in scored[res.task.name]},
            }
            for res in results
        }
        args.json.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
