"""The peers' LR suggestions, each from its own range test with its own defaults.

- torch-lr-finder 0.2.2 (the PyPI package): `LRFinder.range_test(loader, end_lr=10, num_iter=100)` starting at the
  optimizer's lr, 1e-7 as in its README; the suggestion is the one `plot(suggest_lr=True)` computes (steepest
  `np.gradient` of the EMA-smoothed loss by index, skipping 10 points at the start and 5 at the end), drawn on a
  headless Agg axis.
- Lightning 2.x (the PyPI package): `Tuner.lr_find` with its defaults (exponential 1e-8 -> 1, 100 steps, stop at 4x
  the best smoothed loss) and `suggestion()` (steepest `torch.gradient` of the smoothed loss w.r.t. the LR).
- fastai `valley` (reimplemented; fastai is not installed): exponential 1e-7 -> 10 over 100 iterations, loss EMA
  0.98 debiased, stop when the smoothed loss exceeds 4x its best, drop the first 10% and the last 5 points and
  everything from the first NaN, then the LR 1/2 of the way through the longest decreasing run (fastai's exact
  index arithmetic).

Every test starts from the same seeded model and data order the training run will use. `run_peer` then trains
the suggestion generously, as a constant LR and as CLR(suggestion/4 .. suggestion); the table keeps the better.
The default LR (`run_default`) lives here too: like the peers, it does not depend on clrfind and is cached.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from bench.quality.records import MethodRun
from bench.quality.tasks import Task
from bench.quality.train import constant_plan, fresh_model, train, train_loader, triangular_plan

DEFAULT = "default LR"


@dataclass(frozen=True)
class Suggestion:
    """One peer's suggested LR for one seed (None when it gave none: the run then uses the default), and what its
    range test cost: seconds and optimizer steps (None when the test failed before saying)."""

    lr: float | None
    seconds: float
    steps: int | None
    note: str = ""


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """Swallow the peers' prints, progress bars and warnings; the text is kept for error notes."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield buffer


def _timed(fn: Callable[[], tuple[float | None, int]]) -> Suggestion:
    """Run a suggestion rule (it returns the LR and its test's steps), timing it; a peer that raises gives no
    suggestion (noted), as for a user."""
    started = time.perf_counter()
    steps = None
    try:
        with _quiet():
            lr, steps = fn()
        note = "" if lr is not None and math.isfinite(lr) else "no suggestion"
    except Exception as exc:  # any failure inside a peer's code means "no suggestion" for the user too
        lr, note = None, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    lr = lr if lr is not None and math.isfinite(lr) and lr > 0 else None
    return Suggestion(lr, time.perf_counter() - started, steps, note)


# -- torch-lr-finder ---------------------------------------------------------------------------------------------

PLF_START_LR = 1e-7


def plf_steepest(task: Task, seed: int) -> Suggestion:
    """torch-lr-finder's range test and its `plot(suggest_lr=True)` suggestion."""

    def run() -> tuple[float | None, int]:
        from matplotlib.figure import Figure
        from torch_lr_finder import LRFinder

        model = fresh_model(task, seed)
        optimizer = task.build_optimizer(model.parameters(), PLF_START_LR)
        finder = LRFinder(model, optimizer, task.make_loss(), device="cpu")
        finder.range_test(train_loader(task, seed), end_lr=10, num_iter=100)
        ax = Figure().add_subplot()  # Agg canvas: plot() draws here instead of calling plt.show()
        _, lr = finder.plot(ax=ax, suggest_lr=True)
        return float(lr), len(finder.history["lr"])

    return _timed(run)


# -- Lightning ---------------------------------------------------------------------------------------------------


def lightning_steepest(task: Task, seed: int) -> Suggestion:
    """Lightning's `Tuner.lr_find` with its defaults and its `suggestion()`."""

    def run() -> tuple[float | None, int]:
        import lightning.pytorch as pl
        from lightning.pytorch.tuner import Tuner

        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)

        class Module(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.net = fresh_model(task, seed)
                self.loss_fn = task.make_loss()
                self.lr = task.default_lr

            def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
                x, y = batch
                return self.loss_fn(self.net(x), y)

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return task.build_optimizer(self.parameters(), self.lr)

        with tempfile.TemporaryDirectory() as tmp:
            trainer = pl.Trainer(
                accelerator="cpu", devices=1, max_epochs=1000, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp,
            )  # fmt: skip
            finder = Tuner(trainer).lr_find(
                Module(), train_dataloaders=train_loader(task, seed), update_attr=False
            )
        if finder is None:
            return None, 0
        return finder.suggestion(), len(finder.results["lr"])

    return _timed(run)


# -- fastai (reimplemented) --------------------------------------------------------------------------------------

FASTAI_START, FASTAI_END, FASTAI_ITERS, FASTAI_BETA, FASTAI_STOP = 1e-7, 10.0, 100, 0.98, 4.0


def exp_range_test(
    task: Task, seed: int, *, start: float, end: float, iters: int, beta: float, stop_factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """An exponential range test as fastai runs it: returns (lrs, debiased-EMA losses), ending at the stop.

    Step i trains at start * (end / start) ** (i / iters); the run stops after `iters` steps, or right after the
    step whose smoothed loss exceeds `stop_factor` times the best one (that point is recorded, as in fastai).
    """
    model = fresh_model(task, seed)
    model.train()
    loss_fn = task.make_loss()
    optimizer = task.build_optimizer(model.parameters(), start)
    batches = iter(())
    loader = train_loader(task, seed)
    lrs, smoothed = [], []
    avg, best = 0.0, math.inf
    for i in range(iters):
        lr = start * (end / start) ** (i / iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        x, y = batch
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        avg = beta * avg + (1 - beta) * float(loss)
        value = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        smoothed.append(value)
        best = min(best, value)
        if value > stop_factor * best:  # NaN compares False: fastai runs on and cuts at the NaN later
            break
    return np.array(lrs), np.array(smoothed)


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's `valley`: the longest strictly decreasing subsequence, and the LR ~1/2 of the way through it."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def fastai_valley(task: Task, seed: int) -> Suggestion:
    """fastai's `lr_find()` default suggestion, on its own range test (reimplemented)."""

    def run() -> tuple[float | None, int]:
        lrs, losses = exp_range_test(
            task, seed, start=FASTAI_START, end=FASTAI_END, iters=FASTAI_ITERS, beta=FASTAI_BETA,
            stop_factor=FASTAI_STOP,
        )  # fmt: skip
        steps = len(lrs)
        # lr_find: lrs[num_it//10:-5], losses likewise, cut at the first NaN
        lrs, losses = lrs[FASTAI_ITERS // 10 : -5], losses[FASTAI_ITERS // 10 : -5]
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            lrs, losses = lrs[: bad[0]], losses[: bad[0]]
        if len(losses) == 0:
            raise RuntimeError(f"the range test stopped after {len(lrs)} points: nothing left after slicing")
        return valley(lrs, losses), steps

    return _timed(run)


PEERS: dict[str, Callable[[Task, int], Suggestion]] = {
    "torch-lr-finder": plf_steepest,
    "fastai valley (reimpl.)": fastai_valley,
    "lightning": lightning_steepest,
}


# -- scoring a suggestion ---------------------------------------------------------------------------------------


def run_peer(task: Task, seed: int, peer: str) -> MethodRun:
    """The peer's suggestion, trained two ways: constant, and CLR triangular with max = suggestion, base = max/4.

    A peer that gives no suggestion leaves the user at the default LR.
    """
    suggestion = PEERS[peer](task, seed)
    lr = suggestion.lr if suggestion.lr is not None else task.default_lr
    notes = [suggestion.note] if suggestion.note else []
    outcomes = {
        "constant": train(task, constant_plan(task, lr), seed),
        "triangular": train(task, triangular_plan(task, lr / 4, lr), seed),
    }
    return MethodRun(
        peer,
        task.name,
        seed,
        {"lr": suggestion.lr},
        suggestion.seconds,
        outcomes,
        notes,
        steps=suggestion.steps,
    )


def run_default(task: Task, seed: int) -> MethodRun:
    """The task's default LR (`Task.default_lr`), constant: no range test (0 steps, 0 s)."""
    outcome = train(task, constant_plan(task, task.default_lr), seed)
    return MethodRun(DEFAULT, task.name, seed, {"lr": task.default_lr}, 0.0, {"constant": outcome}, steps=0)
