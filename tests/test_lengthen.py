"""A test in which no LR made the loss fall (level, then worse; or flat to the end of a range widened as far as it
goes) is run again once, from the initial state, with 3x the steps: a model on a plateau leaves it only after many
steps at one LR. Its own next step, taken instead of returning no bounds (as `test_widen.py`'s wider reruns)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clrfind.api import LONGER, Trainer, make_result
from clrfind.cli import app
from clrfind.engine import EngineOutput
from clrfind.faults import library_terms
from clrfind.results import RangeTestResult, load_results
from clrfind.settings import RunSettings

SETTINGS = RunSettings(min_lr=1e-5, max_lr=1.0, steps=200, mode="exp")

RANDOM_LABELS_PY = """
import torch
from torch.utils.data import TensorDataset


def random_labels(n=512):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 8, generator=g) * 0.1, torch.randint(0, 2, (n,), generator=g))


def linear():
    return torch.nn.Linear(8, 2, bias=False)
"""


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
    result, out = trainer.lengthen(
        result, out, initial, steps=200, run=run, analyse=analyse, reseed=lambda: None
    )
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

    result, out = trainer.lengthen(
        result, out, initial, steps=200, run=run, analyse=analyse, reseed=lambda: None
    )
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


def test_the_cli_lengthens_a_spec_whose_loss_never_falls_and_saves_the_longer_run(tmp_path) -> None:
    """Random labels: flat up to 1, then to 10 and 100 (the wider reruns), then once more with 3x the steps; the
    saved results are that run's, and the summary says each rerun."""
    (tmp_path / "rl.py").write_text(RANDOM_LABELS_PY)
    spec = tmp_path / "rl.yaml"
    spec.write_text(
        "model: {target: rl.py:linear}\n"
        "data: {train: {target: rl.py:random_labels}, batch_size: 32}\n"
        "loss: {target: torch.nn.CrossEntropyLoss}\n"
        "optimizer: {target: torch.optim.SGD}\n"
        "range_test: {min_lr: 1.0e-5, max_lr: 1.0, steps: 100}\n"
        "device: cpu\n"
    )
    res = CliRunner().invoke(app, ["range-test", str(spec), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.stderr
    saved = load_results(tmp_path / "out")
    assert saved.planned_steps == 300 and saved.max_lr == pytest.approx(100.0) and not saved.bounds.usable
    assert "the test was run again from the initial state with 300 steps" in res.stdout
    assert "in 100 or 300 steps" in res.stdout and "--steps 900" in res.stdout
