"""The quality bench's comparisons: a tie within float32 rounding is a tie, a real difference is not."""

from __future__ import annotations

import numpy as np

from bench.quality.run import _vs_default, better
from bench.quality.tasks import TASKS


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
