"""Where does more training start to hurt? One cycles of growing length at a fixed peak, judged the way clrfind's
self-check could judge them and the way the task is scored.

A model that can memorize a small training set fits its wrong labels the further the larger LR x steps, so the
best peak falls as the budget grows, and a few dozen steps of trial cannot show it (BENCHMARKS: the memorization
failure). This diagnostic trains the task's one cycle (the export's shape) compressed to each length, on four
fifths of the training split, and reports at the end of each: the error rate and the loss on the held-out fifth
(training labels, wrong ones included: what clrfind could see) and the clean val metric (the answer). A signal a
rule could use turns up where the val metric turns down, and only there.

    python -m bench.quality.turn --tasks digits-noisy-long=0.044,five-class-ln-adamw=0.03 [--steps 75,150,300,600]
        [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from bench.quality.tasks import TASKS, Task
from bench.quality.train import evaluate, fresh_model

HELD_OUT = 0.2
# The export's one cycle starts at most 20x below its peak (div_factor = peak / base_lr, base_lr >= max_lr / 20):
# the probe takes the widest.
DIV_FACTOR = 20.0


def probe(task: Task, peak: float, steps: int, seed: int) -> tuple[float, float, float]:
    """(held-out error rate, held-out loss, val metric) after a one cycle of `steps` peaking at `peak`."""
    data = task.data()
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(data.x_train)))
    cut = int(HELD_OUT * len(order))
    held, kept = order[:cut], order[cut:]
    model = fresh_model(task, seed)
    model.train()
    optimizer = task.build_optimizer(model.parameters(), peak / DIV_FACTOR)
    has_momentum = "betas" in optimizer.defaults or optimizer.defaults.get("momentum", 0) > 0
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, total_steps=steps, div_factor=DIV_FACTOR, cycle_momentum=has_momentum
    )
    loss_fn = task.make_loss()
    generator = torch.Generator().manual_seed(seed)
    done = 0
    while done < steps:
        perm = kept[torch.randperm(len(kept), generator=generator)]
        for batch in perm.split(task.batch_size):
            if len(batch) < task.batch_size or done == steps:
                break
            loss = loss_fn(model(data.x_train[batch]), data.y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            done += 1
    model.eval()
    with torch.no_grad():
        out = model(data.x_train[held])
        error = float((out.argmax(-1) != data.y_train[held]).float().mean())
        held_loss = float(loss_fn(out, data.y_train[held]))
    return error, held_loss, evaluate(task, model, data)


def _pairs(text: str) -> list[tuple[str, float]]:
    pairs = []
    for item in text.split(","):
        name, _, peak = item.partition("=")
        if name not in TASKS or not peak:
            raise SystemExit(f"--tasks {item!r}: expected TASK=PEAK with a task of bench.quality.tasks")
        pairs.append((name, float(peak)))
    return pairs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality.turn", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", required=True, type=_pairs, help="TASK=PEAK,... (classification tasks)")
    p.add_argument("--steps", default="75,150,300,600", help="cycle lengths (default 75,150,300,600)")
    p.add_argument("--seeds", default="0,1", help="seeds averaged (default 0,1)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    lengths = [int(s) for s in args.steps.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    for name, peak in args.tasks:
        task = TASKS[name]
        if task.metric != "accuracy" or task.data().y_train.is_floating_point():
            raise SystemExit(f"{name}: the probe needs a classification task with class labels")
        print(f"{name} (peak {peak:g}, budget {task.total_steps} steps, {int(HELD_OUT * len(task.data().x_train))} "
              "held-out training samples); steps: held-out error, held-out loss, val accuracy")  # fmt: skip
        for steps in lengths:
            error, loss, val = np.mean([probe(task, peak, steps, seed) for seed in seeds], axis=0)
            print(f"  {steps:5d}: {error:.3f}  {loss:.2f}  {val:.3f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
