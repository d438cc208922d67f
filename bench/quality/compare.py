"""Two ways of driving clrfind side by side on every task, without the grid: `python -m bench.quality.compare
--clrfind-set NAME=VALUE [--base-set NAME=VALUE] [--variant-data MODE] [--half dev|heldout|fresh|all] [--tasks a,b]
[--seeds N]`.

A rule change is kept only when it holds on every set, and `bench.quality.run` scores against a grid search that
takes about ten hours of this machine to fill for all tasks, while clrfind's own runs take minutes. The grid's
best cancels out of a comparison of two clrfind variants on one task: their scores' ratio is (variant - chance) /
(base - chance). So this runs the base (clrfind as a user runs it, or `--base-set`) and the variant
(`--clrfind-set`, or the same clrfind handed the data another way, `--variant-data`) on the same seeds, and the
default LR (cached with the peers, as `run` caches it), and reports per set: how many tasks the variant trains
better or worse than the base beyond the seeds' noise, the mean change, on how many each is above the default LR,
and what each run costs in steps. It is a screen, not a score: a change that holds here still has to hold in
`bench.quality.run` on the tasks it moved.

The change on a task is (variant - base) over the largest gain over chance of the three (base, variant, default
LR), sign-corrected for lower-is-better metrics: in [-1, 1], 1 when the variant gains everything the base missed.
Better or worse beyond noise: the seeds' paired differences average more than SIGNIFICANCE standard errors and
MIN_CHANGE of that scale away from zero.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality.methods import CLRFIND, ClrfindSettings, run_method
from bench.quality.peers import DEFAULT
from bench.quality.records import MethodRun
from bench.quality.run import (
    _init_worker,
    better,
    parse_settings,
    peers_cache,
    render_markdown,
    render_text,
    select_tasks,
)
from bench.quality.tasks import CACHE_DIR, DATA_MODES, HALVES, Task

SIGNIFICANCE = 2.0
MIN_CHANGE = 0.01
BASE, VARIANT = "base", "variant"
SUMMARY_HEADER = [
    "set",
    "tasks",
    "variant better",
    "variant worse",
    "moved at all",
    "mean change",
    "above default LR (base)",
    "above default LR (variant)",
    "test steps (base)",
    "test steps (variant)",
]
TASK_HEADER = [
    "task",
    "set",
    "base",
    "variant",
    "default LR",
    "change",
    "verdict",
    "base peak",
    "variant peak",
]


@dataclass(frozen=True)
class Paired:
    """One task's base and variant runs (per seed, the same seeds), the default LR's mean metric and the task's
    chance level (`TaskData.chance`)."""

    task: Task
    base: list[MethodRun]
    variant: list[MethodRun]
    default: float
    chance: float

    def metrics(self, runs: list[MethodRun]) -> np.ndarray:
        return np.array([r.outcomes["schedule"].metric for r in runs], dtype=float)

    @property
    def sign(self) -> float:
        return 1.0 if self.task.higher_is_better else -1.0

    @property
    def scale(self) -> float:
        """The largest gain over chance of base, variant and the default LR (0 when all sit at chance)."""
        means = (self.metrics(self.base).mean(), self.metrics(self.variant).mean(), self.default)
        return max(0.0, *(self.sign * (m - self.chance) for m in means))

    @property
    def diffs(self) -> np.ndarray:
        """Variant minus base per seed, signed so that positive is better."""
        return self.sign * (self.metrics(self.variant) - self.metrics(self.base))

    @property
    def change(self) -> float:
        """(variant - base) in units of `scale`, positive when the variant trains better."""
        scale = self.scale
        return float(self.diffs.mean()) / scale if scale > 0 else 0.0

    @property
    def verdict(self) -> str:
        """better, worse or same: beyond the paired differences' noise and MIN_CHANGE of the scale, or not."""
        diff = self.diffs
        se = float(diff.std(ddof=1)) / math.sqrt(diff.size) if diff.size > 1 else 0.0
        gap = float(diff.mean())
        if abs(gap) <= max(SIGNIFICANCE * se, MIN_CHANGE * self.scale):
            return "same"
        return "better" if gap > 0 else "worse"

    @property
    def moved(self) -> bool:
        """The variant suggested another peak than the base on some seed."""
        return any(_peak(b) != _peak(v) for b, v in zip(self.base, self.variant, strict=True))

    def above_default(self, runs: list[MethodRun]) -> bool:
        return better(self.task, float(self.metrics(runs).mean()), self.default)


def _peak(run: MethodRun) -> float | None:
    return run.suggestion.get("peak") or run.suggestion.get("max")


def _steps(runs: list[MethodRun]) -> float:
    counted = [r.steps for r in runs if r.steps is not None]
    return float(np.mean(counted)) if counted else math.nan


def run_pairs(
    tasks: list[Task], seeds: list[int], base: ClrfindSettings, variant: ClrfindSettings, workers: int
) -> list[Paired]:
    """Both clrfind variants and the default LR (from the peers' cache when there) on every task and seed."""
    caches = {t.name: peers_cache(t, enabled=True) for t in tasks}
    out_dirs = {BASE: str(CACHE_DIR / "compare" / BASE), VARIANT: str(CACHE_DIR / "compare" / VARIANT)}
    done: dict[tuple[str, str], dict[int, MethodRun]] = {}
    jobs: dict[Future[Any], tuple[str, str, int]] = {}
    for task in tasks:
        if task.prepare is not None:  # once, here, before the workers need it
            task.prepare()
    started = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker
    ) as pool:
        for task in tasks:
            for seed in seeds:
                for label, settings in ((BASE, base), (VARIANT, variant)):
                    fut = pool.submit(run_method, task.name, CLRFIND, seed, settings, out_dirs[label])
                    jobs[fut] = (label, task.name, seed)
                if caches[task.name].get(DEFAULT, seed) is None:
                    jobs[pool.submit(run_method, task.name, DEFAULT, seed, base, "")] = (
                        DEFAULT,
                        task.name,
                        seed,
                    )
        _log(f"{len(jobs)} runs to do ({workers} worker processes); the default LR's cached runs are reused")
        try:
            for n, fut in enumerate(as_completed(jobs), 1):
                label, name, seed = jobs[fut]
                run = fut.result()
                if label == DEFAULT:
                    caches[name].put(DEFAULT, seed, run.to_dict())
                done.setdefault((label, name), {})[seed] = run
                if n % 25 == 0 or n == len(jobs):
                    _log(f"  {n}/{len(jobs)} runs done, {time.perf_counter() - started:.0f} s")
        finally:
            for cache in caches.values():
                cache.save()
    pairs = []
    for task in tasks:
        default_runs = [MethodRun.from_dict(caches[task.name].get(DEFAULT, s)) for s in seeds]  # type: ignore[arg-type]
        default = float(np.mean([r.outcomes["constant"].metric for r in default_runs]))
        runs = {label: [done[(label, task.name)][s] for s in seeds] for label in (BASE, VARIANT)}
        pairs.append(Paired(task, runs[BASE], runs[VARIANT], default, task.data().chance))
    return pairs


def summary_rows(pairs: list[Paired]) -> list[list[str]]:
    """One row per set (and all), as SUMMARY_HEADER names them."""
    sets = [(h, [p for p in pairs if p.task.half == h]) for h in HALVES]
    sets = [(h, ps) for h, ps in sets if ps]
    if len(sets) > 1:
        sets.append(("all", pairs))
    rows = []
    for name, ps in sets:
        verdicts = [p.verdict for p in ps]
        rows.append([
            name, str(len(ps)), str(verdicts.count("better")), str(verdicts.count("worse")),
            str(sum(p.moved for p in ps)), f"{np.mean([p.change for p in ps]):+.4f}",
            f"{sum(p.above_default(p.base) for p in ps)}/{len(ps)}",
            f"{sum(p.above_default(p.variant) for p in ps)}/{len(ps)}",
            f"{np.nanmean([_steps(p.base) for p in ps]):.0f}", f"{np.nanmean([_steps(p.variant) for p in ps]):.0f}",
        ])  # fmt: skip
    return rows


def task_rows(pairs: list[Paired]) -> list[list[str]]:
    """The tasks where the variant suggested something else on some seed, largest change first."""
    moved = sorted((p for p in pairs if p.moved), key=lambda p: -abs(p.change))

    def peaks(runs: list[MethodRun]) -> str:
        return ", ".join("-" if _peak(r) is None else f"{_peak(r):.2g}" for r in runs)

    return [
        [
            p.task.name,
            p.task.half,
            f"{p.metrics(p.base).mean():.4g}",
            f"{p.metrics(p.variant).mean():.4g}",
            f"{p.default:.4g}",
            f"{p.change:+.3f}",
            p.verdict,
            peaks(p.base),
            peaks(p.variant),
        ]
        for p in moved
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.quality.compare", description=__doc__.splitlines()[0])
    p.add_argument("--half", choices=[*HALVES, "all"], default="all", help="which set of tasks (default all)")
    p.add_argument("--tasks", default="", help="comma-separated subset of the tasks (default: the set)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per task (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1 (default 0)")
    p.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)"
    )
    p.add_argument("--clrfind-data", choices=DATA_MODES, default="dataset", help="as in bench.quality.run")
    p.add_argument("--variant-data", choices=DATA_MODES,
                   help="the variant hands the training data over this way instead (default: as the base)")  # fmt: skip
    p.add_argument("--clrfind-set", action="append", default=[], metavar="NAME=VALUE",
                   help="the variant: a clrfind setting or module constant it changes (repeatable)")  # fmt: skip
    p.add_argument("--base-set", action="append", default=[], metavar="NAME=VALUE",
                   help="the base, when not clrfind as a user runs it (repeatable)")  # fmt: skip
    p.add_argument("--markdown", type=Path, help="also write the tables as Markdown to this file")
    p.add_argument("--json", type=Path, help="also write the per-seed runs as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.clrfind_set and args.variant_data in (None, args.clrfind_data):
        raise SystemExit(
            "--clrfind-set or --variant-data: name what the variant changes (e.g. verify.MAX_TRIALS=3, or loader)"
        )
    given = sys.argv[1:] if argv is None else argv
    command = "python -m bench.quality.compare " + " ".join(shlex.quote(a) for a in given)
    tasks = select_tasks(args.half, args.tasks)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    base = replace(parse_settings(args.base_set), data=args.clrfind_data)
    variant = replace(parse_settings(args.clrfind_set), data=args.variant_data or args.clrfind_data)
    started = time.perf_counter()
    pairs = run_pairs(tasks, seeds, base, variant, args.workers)
    note = (
        f"seeds {seeds[0]}..{seeds[-1]}, {time.perf_counter() - started:.0f} s on {args.workers} worker processes; "
        f"base {base}, variant {variant}"
    )
    sections = [
        ("summary", SUMMARY_HEADER, summary_rows(pairs)),
        ("tasks moved", TASK_HEADER, task_rows(pairs)),
    ]
    for title, header, rows in sections:
        print(f"== {title}\n{render_text(header, rows)}\n")
    print(note)
    if args.markdown:
        md = [f"`{command}`", ""]
        for title, header, rows in sections:
            md += [f"**{title}**", "", render_markdown(header, rows), ""]
        args.markdown.write_text("\n".join([*md, note, ""]), encoding="utf-8")
    if args.json:
        raw = {
            p.task.name: {
                "half": p.task.half,
                "default": p.default,
                "change": p.change,
                "verdict": p.verdict,
                BASE: [r.to_dict() for r in p.base],
                VARIANT: [r.to_dict() for r in p.variant],
            }
            for p in pairs
        }
        args.json.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return 0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
