"""The grid-search oracle: the best of constant LRs, triangular CLR ranges and one-cycle peaks on a log grid,
cached as JSON.

The grid spans 1e-4..3 for SGD and 1e-5..0.3 for the adaptive optimizers (Adam, AdamW, RMSprop), or a task's own
`grid` where that does not hold the optimizer's default (Adadelta), 10 points ~3.2x apart (6 with --quick). Each
point is trained three ways, for the same budget and seeds as every method: as a constant LR, as
CyclicLR(triangular) with max_lr = the point and base_lr = max_lr/4, and as OneCycleLR peaking at the point
(`train.one_cycle_plan`). The oracle is the configuration with the best mean metric; the best constant
LR is reported beside it.

Cache: `.bench-cache/quality/oracle-<task>-<key>.json`, where the key hashes the task's definition and the training
code, so editing a task or the loop invalidates exactly what it should. Entries are per (config, seed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.quality.tasks import CACHE_DIR, TASKS, Task
from bench.quality.train import Outcome, Plan, constant_plan, one_cycle_plan, triangular_plan

GRID = {"sgd": (1e-4, 3.0), "adaptive": (1e-5, 0.3)}
KINDS = ("constant", "triangular", "one-cycle")
GRID_POINTS, QUICK_GRID_POINTS = 10, 6
CLR_RATIO = 4.0


@dataclass(frozen=True)
class Config:
    """One oracle configuration: a constant LR, a triangular range with max `lr` and base `lr / CLR_RATIO`, or
    one cycle peaking at `lr`."""

    kind: str
    lr: float

    @property
    def key(self) -> str:
        return f"{self.kind}@{self.lr:.6g}"

    @property
    def label(self) -> str:
        if self.kind == "constant":
            return f"constant {self.lr:.3g}"
        if self.kind == "one-cycle":
            return f"one-cycle peak {self.lr:.3g}"
        return f"triangular {self.lr / CLR_RATIO:.3g}-{self.lr:.3g}"

    def plan(self, task: Task) -> Plan:
        if self.kind == "constant":
            return constant_plan(task, self.lr)
        if self.kind == "one-cycle":
            return one_cycle_plan(task, self.lr)
        return triangular_plan(task, self.lr / CLR_RATIO, self.lr)


def grid(task: Task, *, quick: bool = False) -> list[Config]:
    low, high = task.grid or GRID[task.family]
    points = np.geomspace(low, high, QUICK_GRID_POINTS if quick else GRID_POINTS)
    return [Config(kind, float(lr)) for kind in KINDS for lr in points]


def code_key(task: Task) -> str:
    """Task definition + the training loop's source: what the cached metrics depend on."""
    train_src = (Path(__file__).parent / "train.py").read_text(encoding="utf-8")
    return hashlib.sha256((task.fingerprint() + train_src).encode()).hexdigest()[:12]


class Cache:
    """A JSON file of {entry key: {seed: result dict}} for one task, written atomically by `save`."""

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self.data: dict[str, dict[str, dict]] = {}
        if enabled and path.exists():
            self.data = json.loads(path.read_text(encoding="utf-8"))

    def get(self, key: str, seed: int) -> dict | None:
        return self.data.get(key, {}).get(str(seed)) if self.enabled else None

    def put(self, key: str, seed: int, value: dict) -> None:
        self.data.setdefault(key, {})[str(seed)] = value

    def save(self) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)


def oracle_cache(task: Task, *, enabled: bool) -> Cache:
    return Cache(CACHE_DIR / f"oracle-{task.name}-{code_key(task)}.json", enabled=enabled)


def run_config(task_name: str, kind: str, lr: float, seed: int) -> Outcome:
    """Entry point for worker processes."""
    from bench.quality.train import train

    task = TASKS[task_name]
    return train(task, Config(kind, lr).plan(task), seed)


@dataclass(frozen=True)
class OracleResult:
    """The grid's outcomes per config (one per seed), the best config and the best constant LR."""

    outcomes: dict[Config, list[Outcome]]
    best: Config
    best_constant: Config

    def mean(self, config: Config) -> float:
        return float(np.mean([o.metric for o in self.outcomes[config]]))

    @property
    def best_outcomes(self) -> list[Outcome]:
        return self.outcomes[self.best]

    @property
    def seconds(self) -> float:
        return sum(o.seconds for runs in self.outcomes.values() for o in runs)


def pick_best(task: Task, outcomes: dict[Config, list[Outcome]]) -> OracleResult:
    """The config with the best mean metric over the seeds (the first in grid order on a tie)."""

    def mean(config: Config) -> float:
        return float(np.mean([o.metric for o in outcomes[config]]))

    choose = max if task.higher_is_better else min
    best = choose(outcomes, key=mean)
    best_constant = choose((c for c in outcomes if c.kind == "constant"), key=mean)
    return OracleResult(outcomes, best, best_constant)
