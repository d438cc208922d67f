"""The quality bench's comparisons (a tie within float32 rounding is a tie, a real difference is not) and its
fresh set's batches, and that no two tasks share a name."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality.methods import CLRFIND
from bench.quality.peers import DEFAULT
from bench.quality.run import Row, _vs_default, batch_rows, better
from bench.quality.tasks import ADAM, FRESH_BATCH_STARTS, SGD, TASKS, by_name, classes_task, fresh_batches


def _mean_of_float32(values: list[float]) -> float:
    return float(np.mean([float(np.float32(v)) for v in values]))


def test_equal_accuracies_read_through_float32_are_the_same() -> None:
    # cancer-bce-sgd, seeds 0-2: 163/169, 165/169 and 164/169 average to the default's 164/169 on every seed, but
    # the mean of the float32 fractions sits in the eighth digit below it.
    task = TASKS["cancer-bce-sgd"]
    clrfind = _mean_of_float32([163 / 169, 165 / 169, 164 / 169])
    default = _mean_of_float32([164 / 169] * 3)
    assert clrfind != default
    assert _vs_default(task, clrfind, default) == "same"
    assert not better(task, default, clrfind)
    assert not better(task, clrfind, default)


def test_one_sample_apart_is_a_difference_both_ways() -> None:
    accuracy, mse = TASKS["wine-easy"], TASKS["friedman"]
    assert _vs_default(accuracy, 57 / 58, 58 / 58) == "below"
    assert _vs_default(accuracy, 58 / 58, 57 / 58) == "above"
    assert _vs_default(mse, 0.0841, 0.0842) == "above"  # lower is better
    assert _vs_default(mse, 0.0843, 0.0842) == "below"


def test_every_fresh_task_has_a_batch_in_the_order_written() -> None:
    batches = fresh_batches()
    fresh = [name for name, task in TASKS.items() if task.half == "fresh"]
    assert list(batches) == fresh  # every fresh task, no task of the two halves
    assert list(batches.values()) == sorted(batches.values())  # batches are contiguous in TASKS
    assert [batches[name] for name in FRESH_BATCH_STARTS] == list(range(1, len(FRESH_BATCH_STARTS) + 1))


def test_a_task_name_given_twice_is_refused_not_overwritten() -> None:
    # classes_task names a task after one varied setting; varying two at once repeats another task's name
    one, two = classes_task(SGD, weight_decay=1e-3), classes_task(SGD, weight_decay=1e-3, width=16)
    assert one.name == two.name
    with pytest.raises(ValueError, match=r"named 'classes-wd0\.001-sgd'"):
        by_name([one, classes_task(ADAM), two])
    assert list(by_name([one, classes_task(ADAM)])) == ["classes-wd0.001-sgd", "classes-batch128-adam"]


def _row(method: str, score: float, vs_default: str = "-") -> Row:
    return Row(method, [0.5], "", None, None, 0, 0, 1, score=score, vs_default=vs_default)


def test_batch_rows_average_each_fresh_batch_and_leave_the_halves_out() -> None:
    first, second = FRESH_BATCH_STARTS[:2]
    later = next(n for n, b in fresh_batches().items() if b == 1 and n != first)
    scored = {
        "moons": [_row(CLRFIND, 0.1, "below"), _row(DEFAULT, 0.2)],  # dev: not a batch
        first: [_row(CLRFIND, 1.0, "above"), _row(DEFAULT, 0.5)],
        later: [_row(CLRFIND, 0.5, "below"), _row(DEFAULT, 0.7)],
        second: [_row(CLRFIND, 0.9, "above"), _row(DEFAULT, 0.3)],
    }
    header, rows = batch_rows(scored, [CLRFIND, DEFAULT])
    assert header == ["fresh batch", "tasks", CLRFIND, DEFAULT, "clrfind above default LR"]
    assert rows == [["1", "2", "0.750", "0.600", "1/2"], ["2", "1", "0.900", "0.300", "1/1"]]


def test_tasks_whose_optimizer_this_torch_lacks_are_named_before_anything_runs(monkeypatch) -> None:
    import torch

    from bench.quality.run import select_tasks

    monkeypatch.delattr(torch.optim, "Muon", raising=False)
    with pytest.raises(SystemExit, match=r"lacks the optimizer of (.+, )?digits-muon, friedman-muon:"):
        select_tasks("fresh", "")
    assert [t.name for t in select_tasks("fresh", "digits-sigmoid-sgd")] == ["digits-sigmoid-sgd"]
