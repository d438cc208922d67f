"""A test in which no LR made the loss fall (level, then worse; or flat to the end of a range widened as far as it
goes) is run again once, from the initial state, with 3x the steps: a model on a plateau leaves it only after many
steps at one LR. Its own next step, taken instead of returning no bounds (as `test_widen.py`'s wider reruns)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
import torch

from clrfind.api import LONGER, Rerun, Trainer, make_result
from clrfind.engine import EngineOutput
from clrfind.faults import library_terms
from clrfind.results import RangeTestResult
from clrfind.settings import RunSettings

SETTINGS = RunSettings(min_lr=1e-5, max_lr=1.0, steps=200, mode="exp")


class _Initial:
    """Stands in for the caller's saved state: counts the restores a rerun makes."""

    def __init__(self) -> None:
        self.restores = 0

    def restore(self) -> None:
        self.restores += 1


def _output(lrs: np.ndarray, losses: np.ndarray, stop: str = "completed") -> EngineOutput:
    return EngineOutput(lrs, losses, stop, stop, None, 0, 0.0)


def _level_then_worse(n: int, rng: np.random.Generator) -> np.ndarray:
    """Level at ln 2 over the first 70% of the range, then climbing: nothing ever learned."""
    flat = np.log(2.0) + 0.01 * rng.standard_normal(n)
    return flat + np.where(np.arange(n) > 0.7 * n, np.linspace(0.0, 3.0, n), 0.0)


def _falling(lrs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clear fall around lr 1e-2 that ends well inside the range."""
    return 2.0 - 1.5 / (1.0 + np.exp(-(np.log10(lrs) + 2.0) * 3.0)) + 0.01 * rng.standard_normal(lrs.size)


def _trainer() -> tuple[Trainer, Callable[..., RangeTestResult]]:
    model = torch.nn.Linear(1, 1)
    trainer = Trainer(model, [], torch.nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                      device=torch.device("cpu"), settings=SETTINGS)  # fmt: skip
    analyse = functools.partial(
        make_result, terms=library_terms(step_fn=False), planned_steps=SETTINGS.steps, device="cpu"
    )
    return trainer, analyse


def _first(rng: np.random.Generator) -> tuple[RangeTestResult, EngineOutput]:
    lrs = SETTINGS.ladder(SETTINGS.steps)
    out = _output(lrs, _level_then_worse(lrs.size, rng), "diverged")
    _, analyse = _trainer()
    result = analyse(out, SETTINGS)
    assert (
        not result.bounds.usable and result.bounds.level_until_lr is not None
    )  # the case this file is about
    return result, out


def test_a_curve_that_stays_level_then_gets_worse_is_run_again_3x_longer_and_read_from_that_run() -> None:
    rng = np.random.default_rng(0)
    result, out = _first(rng)
    trainer, analyse = _trainer()
    initial, ladders = _Initial(), []

    def run(lrs: np.ndarray) -> EngineOutput:
        ladders.append(lrs)
        return _output(lrs, _falling(lrs, rng))

    assert trainer.wants_longer(result, out, initial)
    result, out = trainer.lengthen(result, out, Rerun(initial, 200, run, analyse, lambda: None))
    assert initial.restores == 1 and len(ladders) == 1 and ladders[0].size == LONGER * 200 == 600
    assert ladders[0][0] == pytest.approx(1e-5) and ladders[0][-1] == pytest.approx(1.0)  # the same range
    assert result.planned_steps == 600 and result.bounds.usable and 1e-3 < result.bounds.max_lr < 1e-1
    assert result.notes[-1] == (
        "no fall of the loss from lr 1e-05 to 1 in 200 steps, as on a plateau that a model leaves only after many "
        "steps at one LR: the test was run again from the initial state with 600 steps"
    )


def test_a_longer_run_that_still_shows_nothing_turns_the_advice_to_the_setup_and_is_not_lengthened_again() -> (
    None
):
    rng = np.random.default_rng(1)
    result, out = _first(rng)
    trainer, analyse = _trainer()
    initial = _Initial()

    def run(lrs: np.ndarray) -> EngineOutput:
        return _output(lrs, _level_then_worse(lrs.size, rng), "diverged")

    result, out = trainer.lengthen(result, out, Rerun(initial, 200, run, analyse, lambda: None))
    assert not result.bounds.usable and result.planned_steps == 600
    step = result.bounds.next_step
    assert step.startswith("no fall of the loss from lr 1e-05 to 1 in 200 or 600 steps: check that the model")
    assert "--steps 1800" in step
    assert not trainer.wants_longer(result, out, initial)  # once at most


def test_a_stopped_failed_unbounded_or_bounded_run_is_not_lengthened() -> None:
    rng = np.random.default_rng(2)
    result, out = _first(rng)
    trainer, analyse = _trainer()
    initial = _Initial()
    assert not trainer.wants_longer(result, out, None)  # nothing to start again from
    stopped = _output(out.lrs, out.losses, "interrupted")
    assert not trainer.wants_longer(analyse(stopped, SETTINGS), stopped, initial)
    failed = _output(out.lrs, out.losses, "error")
    failed.error = RuntimeError("the user's code failed")
    assert not trainer.wants_longer(analyse(failed, SETTINGS), failed, initial)
    falls = _output(out.lrs, _falling(out.lrs, rng))
    assert not trainer.wants_longer(analyse(falls, SETTINGS), falls, initial)
    # Worse from the very start: the range starts too high, which a longer test would not change.
    worse = _output(out.lrs, np.log(2.0) + np.linspace(0.0, 3.0, out.lrs.size), "diverged")
    b = analyse(worse, SETTINGS).bounds
    assert not b.usable and b.level_until_lr is None and "lower the start" in b.next_step
    assert not trainer.wants_longer(analyse(worse, SETTINGS), worse, initial)
    assert initial.restores == 0
