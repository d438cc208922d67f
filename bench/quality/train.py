"""The one training loop every method and the oracle use, and the LR plans they hand it.

A `Plan` is everything a method decides: how to build the optimizer, how to build the scheduler, whether the
scheduler steps per batch or per epoch, and how many optimizer steps to train. Everything else (data, model, seed,
evaluation) is the task's, so two plans on the same task and seed differ only in their learning rates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from bench.quality.tasks import Task, TaskData

Interval = Literal["step", "epoch"]
OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


@dataclass(frozen=True)
class Plan:
    """An LR plan: optimizer and scheduler factories, the scheduler's interval and the number of steps."""

    label: str
    make_optimizer: OptimizerFactory
    make_scheduler: SchedulerFactory | None
    interval: Interval
    total_steps: int


@dataclass(frozen=True)
class Outcome:
    """One training run. `metric` is floored at the task's chance level (a diverged run counts as chance)."""

    metric: float
    raw_metric: float
    diverged: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        raw = self.raw_metric if math.isfinite(self.raw_metric) else None
        return {"metric": self.metric, "raw_metric": raw, "diverged": self.diverged, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outcome:
        raw = d["raw_metric"] if d["raw_metric"] is not None else math.nan
        return cls(d["metric"], raw, d["diverged"], d["seconds"])


def constant_plan(task: Task, lr: float) -> Plan:
    """The task's optimizer at a fixed LR for the whole budget."""
    return Plan(f"constant {lr:.3g}", lambda p: task.build_optimizer(p, lr), None, "step", task.total_steps)


def clr_cycles(task: Task) -> int:
    """Whole cycles for the reference CLR runs: as many as fit with a step size of at least 2 epochs, at most 3.

    Smith (2017): step size 2-10 epochs, at least 3 cycles, stop at the end of a cycle. Short budgets give up cycles
    before step size. For this suite's budgets it is the same choice clrfind's export makes, so the reference runs
    (oracle and peers) and clrfind's schedule differ in their bounds, not in their cycle length.
    """
    return min(3, max(1, task.epochs // 4))


def clr_step_size(task: Task) -> int:
    return max(1, task.total_steps // (2 * clr_cycles(task)))


def triangular_plan(task: Task, base_lr: float, max_lr: float, *, step_size: int | None = None) -> Plan:
    """torch CyclicLR(triangular) between the bounds; momentum is not cycled (the optimizer's own is kept)."""
    size = step_size or clr_step_size(task)

    def scheduler(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.CyclicLR(
            opt, base_lr=base_lr, max_lr=max_lr, step_size_up=size, mode="triangular", cycle_momentum=False
        )

    total = 2 * size * max(1, task.total_steps // (2 * size))
    return Plan(
        f"triangular {base_lr:.3g}-{max_lr:.3g}",
        lambda p: task.build_optimizer(p, base_lr),
        scheduler,
        "step",
        total,
    )


ONE_CYCLE_PCT_START, ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def one_cycle_plan(task: Task, max_lr: float) -> Plan:
    """torch OneCycleLR peaking at `max_lr` over the whole budget with torch's defaults (warm-up 30%, start at
    max_lr/25, cosine down to start/1e4); momentum (or Adam's beta1) is cycled 0.95 -> 0.85 -> 0.95, torch's
    default, only when the optimizer has momentum: CyclicLR-style cycling would switch it on for plain SGD."""

    def scheduler(opt: torch.optim.Optimizer) -> Any:
        has_momentum = "betas" in opt.defaults or opt.defaults.get("momentum", 0) > 0
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=max_lr, total_steps=task.total_steps, pct_start=ONE_CYCLE_PCT_START,
            div_factor=ONE_CYCLE_DIV, final_div_factor=ONE_CYCLE_FINAL_DIV, cycle_momentum=has_momentum,
        )  # fmt: skip

    return Plan(
        f"one-cycle peak {max_lr:.3g}",
        lambda p: task.build_optimizer(p, max_lr / ONE_CYCLE_DIV),
        scheduler,
        "step",
        task.total_steps,
    )


def seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_loader(task: Task, seed: int) -> DataLoader:
    """Shuffled batches of the training split, seeded. Batches are sliced from the tensors in one go (fast).

    `batch_size` is set on the loader object for tools that read it (the batches themselves come from the
    BatchSampler, so the DataLoader itself runs with batch_size=None).
    """
    data = task.data()
    dataset = TensorDataset(data.x_train, data.y_train)
    generator = torch.Generator().manual_seed(seed)
    sampler = BatchSampler(RandomSampler(dataset, generator=generator), task.batch_size, drop_last=True)
    return DataLoader(dataset, sampler=sampler, batch_size=None)


def fresh_model(task: Task, seed: int) -> torch.nn.Module:
    """The task's model with the initial weights of `seed` (the same for every method on that seed)."""
    seed_all(seed)
    return task.make_model()


def _batches(loader: DataLoader) -> Iterator[tuple[int, Any]]:
    """(epoch, batch) forever."""
    epoch = 0
    while True:
        for batch in loader:
            yield epoch, batch
        epoch += 1


@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, data: TaskData) -> float:
    """Val accuracy (fraction; per token for sequences, per label for BCE targets), val MSE, val cross-entropy in
    nats per token, or the task's own loss on the val split."""
    model.eval()
    out = torch.cat([model(x) for x in data.x_val.split(512)])
    if task.metric == "mse":  # of the mean, for a head that also predicts a variance
        return float(((out[:, : data.y_val.shape[1]] - data.y_val) ** 2).mean())
    if task.metric == "nats":
        return float(torch.nn.functional.cross_entropy(out.flatten(0, 1), data.y_val.flatten()))
    if task.metric == "loss":  # the task's own loss: a density model's NLL, a CTC loss, a multi-task sum
        return float(task.make_loss()(out, data.y_val))
    if data.y_val.is_floating_point():  # binary or multi-label targets of a BCE loss on logits: per label
        return float(((out > 0).float() == data.y_val).float().mean())
    return float((out.argmax(-1) == data.y_val).float().mean())


def floor_at_chance(task: Task, value: float) -> float:
    """A non-finite or worse-than-chance metric counts as chance, so one blow-up cannot dominate a mean."""
    chance = task.data().chance
    if not math.isfinite(value):
        return chance
    return max(value, chance) if task.higher_is_better else min(value, chance)


def train(task: Task, plan: Plan, seed: int) -> Outcome:
    """Train a fresh model for `plan.total_steps` optimizer steps and evaluate it on the val split.

    The scheduler steps after every optimizer step (`interval="step"`) or after every epoch (`"epoch"`), as
    torch's schedulers expect. A non-finite training loss stops the run and marks it diverged.
    """
    started = time.perf_counter()
    model = fresh_model(task, seed)
    model.train()
    loss_fn = task.make_loss()
    optimizer = plan.make_optimizer(model.parameters())
    scheduler = plan.make_scheduler(optimizer) if plan.make_scheduler is not None else None
    diverged = False
    epoch_now = 0
    batches = _batches(train_loader(task, seed))
    for _ in range(plan.total_steps):
        epoch, (x, y) = next(batches)
        if scheduler is not None and plan.interval == "epoch" and epoch != epoch_now:
            scheduler.step()
        epoch_now = epoch
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None and plan.interval == "step":
            scheduler.step()
    raw = math.nan if diverged else evaluate(task, model, task.data())
    if not math.isfinite(raw):
        diverged = True
    return Outcome(floor_at_chance(task, raw), raw, diverged, time.perf_counter() - started)
