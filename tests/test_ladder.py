from __future__ import annotations

import numpy as np
import pytest

from clrfind.ladder import AUTO_EXP_RATIO, describe_ladder, lr_ladder, resolve_mode, sample_axis


def test_linear_ladder_values() -> None:
    assert lr_ladder(0.1, 1.0, 10, "linear").tolist() == pytest.approx([0.1 + 0.1 * i for i in range(10)])


def test_exp_ladder_values_even_in_log() -> None:
    lrs = lr_ladder(1e-5, 1.0, 6, "exp")
    assert lrs.tolist() == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], rel=1e-9)
    assert np.diff(sample_axis(lrs, "exp")) == pytest.approx([1.0] * 5)


def test_first_rung_is_min_and_last_is_max() -> None:
    for mode in ("linear", "exp"):
        lrs = lr_ladder(3e-4, 2.0, 37, mode)
        assert lrs[0] == pytest.approx(3e-4) and lrs[-1] == pytest.approx(2.0) and len(lrs) == 37


@pytest.mark.parametrize(
    ("args", "match"), [((1.0, 0.1, 10), "min_lr"), ((0.0, 1.0, 10), "min_lr"), ((0.1, 1.0, 1), "steps")]
)
def test_bad_ladders(args: tuple[float, float, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lr_ladder(*args)


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        lr_ladder(0.1, 1.0, 10, "cosine")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("low", "high", "mode", "expected"),
    [
        (1e-5, 1.0, "auto", "exp"),  # 5 decades
        (1e-3, 0.065, "auto", "exp"),  # the paper's GoogLeNet range: 65x
        (0.001, 0.006, "auto", "linear"),  # the paper's CIFAR-10 range: 6x, a zoomed-in linear test
        (0.1, 0.1 * AUTO_EXP_RATIO, "auto", "linear"),  # the threshold itself stays linear
        (1e-5, 1.0, "linear", "linear"),  # an explicit choice is kept
        (0.1, 0.2, "exp", "exp"),
    ],
)
def test_auto_mode_goes_exp_over_wide_ranges(low: float, high: float, mode: str, expected: str) -> None:
    assert resolve_mode(low, high, mode) == expected


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="'auto', 'linear' or 'exp'"):
        resolve_mode(0.1, 1.0, "cosine")


def test_describe_ladder_says_what_auto_chose() -> None:
    assert describe_ladder(1e-5, 1.0, "auto") == "exp 1e-05 -> 1 (auto: the range spans 5.0 decades)"
    assert (
        describe_ladder(0.001, 0.006, "auto") == "linear 0.001 -> 0.006 (auto: the range spans 0.8 decades)"
    )
    assert describe_ladder(1e-3, 3.0, "linear") == "linear 0.001 -> 3"
