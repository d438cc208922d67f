"""The comparison of two clrfind variants without the grid: the change's scale and sign, what counts as beyond the
seeds' noise, and the per-set summary."""

from __future__ import annotations

import pytest

from bench.quality.compare import Paired, summary_rows, task_rows
from bench.quality.methods import CLRFIND
from bench.quality.records import MethodRun
from bench.quality.tasks import TASKS
from bench.quality.train import Outcome


def _runs(task: str, metrics: list[float], peak: float = 0.1) -> list[MethodRun]:
    return [
        MethodRun(
            CLRFIND, task, seed, {"peak": peak}, 1.0, {"schedule": Outcome(m, m, False, 1.0)}, steps=100
        )
        for seed, m in enumerate(metrics)
    ]


# Chance levels as the tasks' data give them (the data itself needs the bench extra's scikit-learn).
CHANCE = {"moons": 0.524, "friedman": 0.9726, "wine-easy": 0.466}


def _pair(task: str, base: list[float], variant: list[float], default: float, peak: float = 0.1) -> Paired:
    return Paired(TASKS[task], _runs(task, base), _runs(task, variant, peak), default, CHANCE[task])


def test_the_change_is_in_units_of_the_largest_gain_over_chance_and_signed_by_the_metric() -> None:
    assert TASKS["moons"].higher_is_better and not TASKS["friedman"].higher_is_better  # accuracy, MSE
    chance = CHANCE["moons"]
    pair = _pair("moons", [chance + 0.4] * 3, [chance + 0.3] * 3, chance + 0.2)
    assert pair.scale == pytest.approx(0.4)
    assert pair.change == pytest.approx(-0.25)
    chance = CHANCE["friedman"]  # MSE, lower is better: a lower variant is a gain
    pair = _pair("friedman", [chance - 0.5] * 3, [chance - 0.6] * 3, chance - 0.1)
    assert pair.change == pytest.approx(0.1 / 0.6)
    assert pair.verdict == "better"


def test_a_difference_within_the_seeds_noise_is_the_same() -> None:
    chance = CHANCE["moons"]
    noisy = _pair(
        "moons", [chance + 0.4, chance + 0.2, chance + 0.3], [chance + 0.2, chance + 0.4, chance + 0.35], 0.5
    )
    assert noisy.verdict == "same"
    steady = _pair(
        "moons",
        [chance + 0.40, chance + 0.41, chance + 0.42],
        [chance + 0.30, chance + 0.31, chance + 0.30],
        0.5,
    )
    assert steady.verdict == "worse"
    tiny = _pair("moons", [chance + 0.4] * 3, [chance + 0.4 - 1e-4] * 3, 0.5)  # steady, but under MIN_CHANGE
    assert tiny.verdict == "same"


def test_all_at_chance_is_no_change_not_a_division_by_zero() -> None:
    chance = CHANCE["moons"]
    pair = _pair("moons", [chance] * 3, [chance] * 3, chance)
    assert pair.scale == 0.0
    assert pair.change == 0.0
    assert pair.verdict == "same"


def test_the_summary_counts_per_set_and_lists_only_the_tasks_that_moved() -> None:
    chance = CHANCE["moons"]
    moved = _pair(
        "moons", [chance + 0.40] * 3, [chance + 0.45, chance + 0.46, chance + 0.45], chance + 0.42, peak=0.2
    )
    kept = _pair("wine-easy", [0.98] * 3, [0.98] * 3, 0.99)
    rows = summary_rows([moved, kept])
    assert [r[:5] for r in rows] == [
        ["dev", "1", "1", "0", "1"],
        ["heldout", "1", "0", "0", "0"],
        ["all", "2", "1", "0", "1"],
    ]
    assert rows[0][6:8] == ["0/1", "1/1"]  # the base below the default LR, the variant above
    assert rows[1][6:8] == ["0/1", "0/1"]
    assert [r[0] for r in task_rows([moved, kept])] == ["moons"]


def test_a_screen_where_no_peak_moved_prints_an_empty_table() -> None:
    from bench.quality.compare import TASK_HEADER
    from bench.quality.run import render_text

    kept = _pair("wine-easy", [0.98] * 3, [0.98] * 3, 0.99)
    assert task_rows([kept]) == []
    header, rule = render_text(TASK_HEADER, []).splitlines()
    assert header.split() == " ".join(TASK_HEADER).split()
    assert set(rule.replace(" ", "")) == {"-"}
