"""The self-check's decisions, on scripted trials (a fake trainer whose final loss depends on the peak), and once
through the real engine."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from clrfind.results import Bounds, OptimizerRef
from clrfind.verify import MAX_TRIALS, STEP, candidate_peaks, reached_losses, rescue, trial_schedule, verify

if TYPE_CHECKING:
    from clrfind.api import Trainer
    from clrfind.engine import EngineOutput
    from clrfind.results import RangeTestResult

SGD = OptimizerRef(target="torch.optim.SGD", kwargs={"momentum": 0.9})
BOUNDS = Bounds(
    base_lr=0.01, max_lr=0.1, peak_lr=0.5, confidence="high", max_rationale="loss stopped falling"
)


def scripted(
    final_of,
    noise: float = 0.002,
    diverge_above: float = math.inf,
    held_out=None,
    hold_fails_above: float = math.inf,
    hold_rises_above: float = math.inf,
    hold_unlearns_above: float = math.inf,
    hold_stalls_at: tuple[float, float] | None = None,
):
    """A trainer whose trial ends at `final_of(peak)`: a fall from 2.0 plus seeded noise shared by every trial (the
    same batches), or a blow-up when the peak is above `diverge_above`; with `held_out`, 16 held-out batch losses
    around `held_out(peak)`. Records the peaks of the one-cycle trials it was asked to train in `asked`, and those of
    the holds (the LR stays at its top) in `run.holds`; a hold above `hold_fails_above` blows up, one above
    `hold_rises_above` runs to its end with a loss that climbs back, by far more than its noise, and one above
    `hold_unlearns_above` blows up early in its stay and settles where it began. `hold_stalls_at=(above, level)`: a
    hold above `above` falls to `level` over its warm-up and stays there, whatever its trial reached."""
    asked: list[float] = []

    def run(
        lrs: np.ndarray, momenta: np.ndarray | None, *, hold: bool = False
    ) -> tuple[np.ndarray, str, np.ndarray | None]:
        peak = float(lrs.max())
        held = int((lrs >= 0.999 * peak).sum()) > 2
        assert (
            held == hold
        )  # the self-check says which run is a hold, so the engine's rise stop is off for it
        (run.holds if held else asked).append(peak)
        n = lrs.size
        batches = np.random.default_rng(0).normal(0.0, noise, n)
        if held and peak > hold_fails_above:  # only a non-finite loss stops a hold
            return np.concatenate([np.linspace(2.0, 1.0, n // 2), [50.0, math.nan]]), "non-finite", None
        if held and peak > hold_rises_above:
            climb = np.concatenate([np.linspace(2.0, 1.0, n // 3), np.linspace(1.0, 1.6, n - n // 3)])
            return climb + batches, "completed", None
        if held and peak > hold_unlearns_above:
            fall, blow_up = np.linspace(2.0, 0.5, n // 3), np.linspace(8.0, 2.0, n // 6)
            settled = np.full(n - fall.size - blow_up.size, 2.0)
            return np.concatenate([fall, blow_up, settled]) + batches, "completed", None
        if held and hold_stalls_at is not None and peak > hold_stalls_at[0]:
            warm_up = int(np.argmax(lrs))
            level = hold_stalls_at[1]
            stay = np.concatenate([np.linspace(2.0, level, warm_up), np.full(n - warm_up, level)])
            return stay + batches, "completed", None
        if not held and peak > diverge_above:
            return np.concatenate([np.linspace(2.0, 1.0, n // 2), [50.0, 80.0]]), "diverged", None
        final = final_of(peak)
        losses = 2.0 + (final - 2.0) * (1 - np.exp(-np.arange(n) / (n / 6))) + batches
        return losses, "completed", None if held_out is None else held_out(peak) + batches[:16]

    run.holds = []
    return run, asked


def test_the_trials_follow_the_exported_one_cycle() -> None:
    lrs, momenta = trial_schedule(0.01, 0.5, SGD, 75)
    assert lrs.size == 75 and lrs.max() == pytest.approx(0.5, rel=1e-3)
    assert int(np.argmax(lrs)) == pytest.approx(0.3 * 75, abs=2)  # rises over 30%, as the export's pct_start
    assert (
        lrs[0] == pytest.approx(0.5 / 20) and lrs[-1] < lrs[0] / 1000
    )  # starts at peak/20, anneals far below
    assert momenta is not None and momenta[int(np.argmax(lrs))] == pytest.approx(
        0.85, abs=1e-3
    )  # cycled opposite
    _, plain = trial_schedule(0.01, 0.5, OptimizerRef(target="torch.optim.SGD", kwargs={}), 75)
    assert plain is None  # no momentum to cycle


def test_the_peaks_tried_above_max_lr_are_half_a_decade_apart_and_end_at_peak_lr() -> None:
    up, down = candidate_peaks(0.1, 0.5)
    assert up == pytest.approx([0.1 * STEP, 0.5]) and down == pytest.approx(
        [0.1 / STEP**k for k in (1, 2, 3)]
    )
    # A step that lands near peak_lr is peak_lr: no second trial 10% (or 1%) away from the first.
    assert candidate_peaks(0.1, 0.35)[0] == [0.35]
    assert candidate_peaks(0.158, 0.505)[0] == [0.505]
    assert candidate_peaks(0.1, 0.11)[0] == []  # too close to max_lr to tell apart


def test_a_higher_peak_that_trains_clearly_better_is_kept() -> None:
    run, asked = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1))
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert asked[0] == pytest.approx(0.1, rel=1e-3)  # max_lr first, then up toward peak_lr
    assert bounds.peak_lr == pytest.approx(0.5) and bounds.max_lr == pytest.approx(0.1)
    assert record.peak_lr == pytest.approx(0.5) and "kept" in record.outcome
    # the steps the trials left hold the kept peak: all 300 are used, none more
    assert run.holds == [pytest.approx(0.5)] and record.steps == 300
    assert record.hold.steps == 300 - len(asked) * (300 // MAX_TRIALS) and record.hold.final_loss is not None
    assert "it trained on" in record.outcome


def test_a_peak_whose_hold_turns_non_finite_is_lowered_to_the_highest_lower_trial_that_trained() -> None:
    """The one-cycle trials all train and the peak climbs to 0.5, but a stay at 0.5 (a whole run's, not a
    compressed trial's) blows up: the peak goes down to the highest lower peak that trained, 0.316."""
    run, _ = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1), hold_fails_above=0.4)
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert run.holds == [pytest.approx(0.5)] and record.hold.stop_reason == "non-finite"
    assert record.hold.final_loss is None
    assert bounds.peak_lr == pytest.approx(0.1 * STEP) == record.peak_lr and bounds.max_lr == pytest.approx(
        0.1
    )
    assert "it turned non-finite: the peak is lowered to 0.32" in record.outcome
    assert "so the self-check lowered the peak to 0.32" in bounds.max_rationale


def test_a_hold_whose_loss_climbs_back_is_lowered_though_nothing_stopped_it() -> None:
    """No monitor stops a hold (a loss bouncing at one high LR is not a divergence); a stay whose loss ends clearly
    above where the stay began is judged by the self-check itself."""
    run, _ = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1), hold_rises_above=0.4)
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert record.hold.stop_reason == "completed" and record.hold.final_loss is None
    assert bounds.peak_lr == pytest.approx(0.1 * STEP) and "its loss rose: the peak is lowered to 0.32" in (
        record.outcome
    )


def test_a_hold_that_blows_up_and_settles_at_the_untrained_loss_is_lowered() -> None:
    """Over the stay alone the loss fell (from its blow-up), but it ends where the run began: the network died (a
    constant prediction) and the self-check must not call that training on."""
    run, _ = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1), hold_unlearns_above=0.4)
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert record.hold.stop_reason == "completed" and record.hold.final_loss is None
    assert bounds.peak_lr == pytest.approx(0.1 * STEP)
    assert "its loss ended no lower than where the run began: the peak is lowered to 0.32" in record.outcome
    # Below that, the same hold trains on: the criterion is the ending, not the stay's bounce.
    _, kept = verify(BOUNDS, SGD, 300, scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1))[0])
    assert kept.hold.final_loss is not None and "it trained on" in kept.outcome


def test_a_hold_that_stalls_far_above_its_own_trial_is_lowered() -> None:
    """The trial at 0.5 falls from 2.0 to 0.37, but held at 0.5 the loss stops at 1.9 after the warm-up and stays
    there: what the trial learned, it learned as its LR came down (a Transformer that leaves its classes'
    frequencies only below its peak), so a whole run near that peak does not learn."""
    run, _ = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1), hold_stalls_at=(0.4, 1.9))
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert record.hold.stop_reason == "completed" and record.hold.final_loss is None
    assert bounds.peak_lr == pytest.approx(0.1 * STEP) == record.peak_lr
    assert (
        "its loss stalled at 1.9, far short of the 0.37 its trial reached as its LR came down"
        in record.outcome
    )
    assert "the peak is lowered to 0.32" in record.outcome


def test_a_hold_level_at_a_constant_lrs_noise_floor_trains_on() -> None:
    """A stay level a little above its trial's end (0.45 against 0.37, of a 1.6 fall) is the noise floor of a
    constant LR, which the cycle's annealing removes: the peak stays."""
    run, _ = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1), hold_stalls_at=(0.4, 0.45))
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert bounds.peak_lr == pytest.approx(0.5) and record.hold.final_loss is not None
    assert "it trained on" in record.outcome


def test_a_hold_below_max_lr_that_fails_moves_max_lr_and_base_lr_down_with_the_peak() -> None:
    run, _ = scripted(lambda p: 0.5 if p > 0.05 else 0.9, hold_fails_above=0.05)
    bounds, record = verify(BOUNDS.model_copy(update={"peak_lr": 0.1}), SGD, 300, run)
    assert (
        bounds.peak_lr == bounds.max_lr == pytest.approx(0.1 / STEP)
        and record.hold.stop_reason == "non-finite"
    )
    assert bounds.base_lr == pytest.approx(0.01 / STEP)


def test_a_higher_peak_that_diverges_falls_back_to_max_lr() -> None:
    run, _asked = scripted(lambda p: 0.5 + max(0.0, math.log10(0.1 / p)), diverge_above=0.2)
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert bounds.peak_lr == pytest.approx(0.1) and bounds.max_lr == pytest.approx(0.1)
    assert any(t.stop_reason == "diverged" and t.final_loss is None for t in record.trials)
    assert "lowered from 0.5" in record.outcome


def test_noise_alone_never_moves_the_peak_up() -> None:
    run, asked = scripted(lambda p: 0.5, noise=0.05)
    bounds, _ = verify(BOUNDS, SGD, 300, run)
    assert bounds.peak_lr <= 0.1  # no evidence for the extrapolation
    assert max(asked) > 0.1  # though it was tried


def test_a_lower_peak_that_trains_as_well_is_kept_and_a_worse_one_stops_the_descent() -> None:
    """Short trials favour the higher LR: one 3x lower that keeps up wins; one 10x lower that falls behind
    (by far more than the noise) does not, and the search stops there."""
    run, asked = scripted(lambda p: 0.5 if p >= 0.03 else 0.9)
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert bounds.peak_lr == pytest.approx(0.1 / STEP) and bounds.max_lr == bounds.peak_lr
    assert bounds.base_lr == pytest.approx(0.01 / STEP)
    assert "trained no worse" in record.outcome and len(asked) == MAX_TRIALS


def test_the_descent_compares_with_the_best_trial_not_the_last() -> None:
    """Each step down loses a little, less than the noise to its neighbour but clearly more than the noise to the
    best: the descent stops where the loss to the best becomes clear, instead of drifting down step by step."""
    # 0.006 a step down; 1% of the fall (the least a clear difference is) is about 0.009
    run, asked = scripted(lambda p: 0.5 + 0.012 * math.log10(0.1 / p))
    bounds, record = verify(BOUNDS.model_copy(update={"peak_lr": 0.1}), SGD, 300, run)
    assert bounds.peak_lr == pytest.approx(0.1 / STEP) and len(asked) == 3
    assert run.holds == [pytest.approx(0.1 / STEP)] and record.hold.final_loss is not None


def test_a_tie_does_not_replace_the_best_trial_so_a_run_of_ties_can_drift_down() -> None:
    """3x down ends a little lower than max_lr, within noise, so max_lr stays the trial to beat; 10x down, within
    noise of max_lr though clearly above 3x down, is kept. Judging it against the lowest trial instead (the strict
    one-standard-error rule) moved nothing beyond noise on the quality bench and cost the small datasets a long run
    memorizes, where short trials lean most toward the higher LR."""
    # 0.1 -> 0.5, 3x down -> 0.495, 10x down -> 0.506, lower -> 0.6; 1% of the fall (about 0.009) is a clear gap
    run, asked = scripted(lambda p: 0.5 if p > 0.05 else 0.495 if p > 0.02 else 0.506 if p > 0.005 else 0.6)
    bounds, record = verify(BOUNDS.model_copy(update={"peak_lr": 0.1}), SGD, 300, run)
    assert bounds.peak_lr == pytest.approx(0.1 / STEP**2) and len(asked) == MAX_TRIALS
    assert "trained no worse" in record.outcome


def test_a_lower_peak_that_trains_clearly_better_lowers_max_lr_too() -> None:
    run, asked = scripted(lambda p: 0.3 + 0.3 * abs(math.log10(p / 0.01)))
    bounds, _record = verify(BOUNDS, SGD, 300, run)
    assert bounds.peak_lr == pytest.approx(0.1 / STEP**2) and bounds.max_lr == bounds.peak_lr
    assert bounds.base_lr == pytest.approx(0.01 / STEP**2)  # the ratio of the bounds is kept
    assert len(asked) <= MAX_TRIALS and "lowered" in bounds.max_rationale


ADAM = OptimizerRef(target="torch.optim.AdamW", kwargs={})
# An adaptive optimizer's one cycle peaks at max_lr; the analysis gives the self-check a ceiling up to 0.25.
ADAPTIVE = BOUNDS.model_copy(update={"peak_lr": 0.1, "peak_ceiling_lr": 0.25})


def test_an_adaptive_peak_goes_up_to_its_ceiling_only_when_the_lower_side_lost_too() -> None:
    """The loss falls with the peak all the way: the lower trial loses, the one at the ceiling wins, and the peak
    (not max_lr) goes up to the ceiling, never past it."""
    run, asked = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1))
    bounds, record = verify(ADAPTIVE, ADAM, 300, run)
    assert asked == pytest.approx([0.1, 0.1 / STEP, 0.25], rel=1e-3)  # down first, then up
    assert bounds.peak_lr == pytest.approx(0.25) == record.peak_lr and bounds.max_lr == pytest.approx(0.1)
    assert "raised from 0.1" in record.outcome and "raised the one-cycle peak from 0.1 to 0.25" in (
        bounds.max_rationale
    )
    assert run.holds == pytest.approx([0.25], rel=1e-3)


def test_an_adaptive_peak_whose_lower_side_keeps_up_goes_down_not_up() -> None:
    """A higher peak would win the short trial too, but a lower one keeps up: for an adaptive optimizer that is
    the side that counts, and no trial above max_lr is run."""
    run, asked = scripted(lambda p: 0.5 if p <= 0.11 else 0.3)
    bounds, _ = verify(ADAPTIVE, ADAM, 300, run)
    assert max(asked) == pytest.approx(0.1, rel=1e-3) and bounds.peak_lr < 0.1
    # the same trials under SGD (no ceiling, the peak at 0.5): up first, and it stays up
    run, asked = scripted(lambda p: 0.5 if p <= 0.11 else 0.3)
    assert verify(BOUNDS, SGD, 300, run)[0].peak_lr > 0.1 and asked[1] > 0.1


def test_an_adaptive_peak_stays_at_max_lr_when_the_ceiling_trial_is_no_better() -> None:
    run, asked = scripted(lambda p: 0.5 if p >= 0.09 else 0.9)
    bounds, record = verify(ADAPTIVE, ADAM, 300, run)
    assert (
        max(asked) == pytest.approx(0.25, rel=1e-3) and bounds.peak_lr == pytest.approx(0.1) == bounds.max_lr
    )
    assert "kept" in record.outcome


# A converged test's one cycle peaks at max_lr; its ceiling is Smith's upper estimate.
CONVERGED = BOUNDS.model_copy(update={"peak_lr": 0.1, "peak_ceiling_lr": 5.0})


def test_a_converged_peak_goes_up_first_while_higher_peaks_train_clearly_better() -> None:
    """Under SGD its max_lr is a lower estimate (the curve stopped where the loss reached its floor), so the trials
    climb first, half a decade at a time, and the peak (not max_lr) goes up; the hold checks it."""
    run, asked = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1))
    bounds, record = verify(CONVERGED, SGD, 300, run)
    assert asked == pytest.approx([0.1, 0.1 * STEP, 0.1 * STEP**2], rel=1e-3)
    assert bounds.peak_lr == pytest.approx(1.0) and bounds.max_lr == pytest.approx(0.1)
    assert "raised the one-cycle peak from 0.1 to 1" in bounds.max_rationale
    assert run.holds == pytest.approx([1.0], rel=1e-3)
    # no clearly better trial above it: the peak stays at max_lr, and the descent runs as for any peak
    run, asked = scripted(lambda p: 0.5 if p >= 0.09 else 0.9)
    bounds, record = verify(CONVERGED, SGD, 300, run)
    assert asked[1] > 0.1 and min(asked) < 0.1 and bounds.peak_lr == pytest.approx(0.1) == bounds.max_lr
    assert "kept" in record.outcome


def test_held_out_losses_judge_when_there_are_some() -> None:
    """Noisy labels: the higher peak fits the training batches better, but loses on held-out samples."""
    run, _ = scripted(lambda p: 0.5 - 0.2 * math.log10(p / 0.1), held_out=lambda p: 1.0 + math.log10(p / 0.1))
    bounds, record = verify(BOUNDS, SGD, 300, run, judged_on="held-out samples")
    assert bounds.peak_lr < 0.1 and record.judged_on == "held-out samples"
    assert all(t.check_loss is not None for t in record.trials)


def test_a_higher_peaks_edge_counts_only_when_most_of_it_shows_on_held_out_samples() -> None:
    """The higher peak ends lower on its training batches and on the held-out samples, but on those by a quarter
    as much: it fits its batches faster rather than learning faster, so its edge is no win, and a tie goes down;
    when three quarters of its edge shows on held-out samples, it wins and the peak climbs as without them."""

    def trained(p: float) -> float:
        return 0.5 - 0.2 * math.log10(p / 0.1)

    run, asked = scripted(trained, held_out=lambda p: 1.0 - 0.05 * math.log10(p / 0.1))
    bounds, record = verify(BOUNDS, SGD, 300, run, mean_loss=True)
    assert asked[1] > 0.1 and bounds.peak_lr == pytest.approx(0.01) == bounds.max_lr
    # the outcome names the highest trial whose edge was a fit and what it gained where; the rationale, shorter
    assert "0.32 ended 0.3 lower than 0.01 on its training batches but only 0.075 on held-out samples" in (
        record.outcome
    )
    assert bounds.max_rationale.endswith("lowered it to 0.01: higher peaks mostly fit their training batches")
    run, _ = scripted(trained, held_out=lambda p: 1.0 - 0.15 * math.log10(p / 0.1))
    assert verify(BOUNDS, SGD, 300, run, mean_loss=True)[0].peak_lr == pytest.approx(0.5)


def test_a_word_model_whose_higher_peaks_mostly_fit_their_batches_comes_down() -> None:
    """A word model on a small text under Adam (the quality bench's words-contiguous-lstm-adam, seed 0): each step
    up half a decade ends lower on the held-out samples, but the edge of 0.1 over every lower peak is mostly on its
    training batches (over 0.032: 0.62 there, 0.10 held out), so each ties with it and the peak comes down to the
    lowest tried; a whole run at 0.1 memorizes the text. A loss that sums over its batch, whose held-out values are
    in other units than the training loss's, is not set against it, and there the peak stays."""
    train = {0.1: 0.19, 0.1 / STEP: 0.81, 0.01: 1.55, 0.01 / STEP: 1.94}
    held = {0.1: 1.67, 0.1 / STEP: 1.77, 0.01: 2.08, 0.01 / STEP: 2.34}

    def nearest(table: dict[float, float], p: float) -> float:
        return table[min(table, key=lambda k: abs(math.log(k / p)))]

    run, asked = scripted(lambda p: nearest(train, p), held_out=lambda p: nearest(held, p))
    bounds, record = verify(ADAPTIVE, ADAM, 300, run, mean_loss=True)
    assert asked == pytest.approx([0.1, 0.1 / STEP, 0.01, 0.01 / STEP], rel=1e-3)
    assert bounds.peak_lr == pytest.approx(0.01 / STEP) == bounds.max_lr
    assert bounds.base_lr == pytest.approx(0.001 / STEP)
    assert record.outcome.startswith(
        "max_lr and the one-cycle peak lowered to 0.0032 (0.1 ended 1.7 lower than 0.0032 on its training batches "
        "but only 0.67 on held-out samples: under half of that edge is learning"
    )
    run, _ = scripted(lambda p: nearest(train, p), held_out=lambda p: nearest(held, p))
    assert verify(ADAPTIVE, ADAM, 300, run)[0].peak_lr == pytest.approx(0.1)


def test_when_nothing_trains_the_bounds_stay_with_low_confidence() -> None:
    run, _ = scripted(lambda p: 2.5)  # every trial ends above its start
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert (bounds.base_lr, bounds.max_lr) == (BOUNDS.base_lr, BOUNDS.max_lr)
    assert bounds.confidence == "low" and "no one-cycle trial trained" in (bounds.reason or "")
    assert all(t.final_loss is None for t in record.trials)


def test_trials_that_learn_nothing_do_not_move_the_peak() -> None:
    """A deep tanh net on spirals learns nothing in 75 steps at any of these peaks: every trial ends within noise of
    its start. "A lower peak keeps up" is then no evidence, so max_lr is not walked down to its floor; the peak is
    left unchecked at max_lr and the result says why."""
    run, asked = scripted(lambda p: 2.0, noise=0.05)
    bounds, record = verify(BOUNDS, SGD, 300, run)
    assert (bounds.base_lr, bounds.max_lr, bounds.peak_lr) == (BOUNDS.base_lr, BOUNDS.max_lr, BOUNDS.max_lr)
    assert bounds.confidence == "medium" and "fell beyond its noise" in (bounds.reason or "")
    assert "--steps 900" in (bounds.next_step or "")
    assert record.outcome.startswith("no trial's loss fell beyond its noise in 75 steps")
    assert "no clear fall" in record.outcome and len(asked) == MAX_TRIALS
    assert all(t.final_loss is None and t.stop_reason == "completed" for t in record.trials)


def test_too_short_a_budget_runs_no_trial() -> None:
    run, asked = scripted(lambda p: 0.5)
    bounds, record = verify(BOUNDS, SGD, 40, run)
    assert asked == [] and bounds == BOUNDS and record.steps == 0 and record.outcome.startswith("not run")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_engine_tells_the_self_check_whether_the_loss_is_a_mean(
    tiny_task, monkeypatch, reduction
) -> None:
    from conftest import keyword_spy

    import clrfind
    import clrfind.verify

    seen = keyword_spy(monkeypatch, clrfind.verify, "verify", "mean_loss")
    model, loader, _, optimizer = tiny_task
    loss_fn = torch.nn.CrossEntropyLoss(reduction=reduction)
    clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=120)
    assert seen == [reduction == "mean"]


def test_the_self_check_through_the_engine_restores_everything(tiny_task) -> None:
    """range_test with the self-check: trials really train (from the same start), and the caller's objects are
    left as they were."""
    from conftest import assert_same_state, state_of

    import clrfind

    model, loader, loss_fn, optimizer = tiny_task
    before = state_of(model, optimizer)
    result = clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=120)
    assert_same_state(before, model, optimizer)
    check = result.verification
    assert check is not None and len(check.trials) >= 2 and check.steps <= 120
    assert all(t.steps == 30 for t in check.trials)
    assert any(t.final_loss is not None for t in check.trials)
    assert result.bounds is not None and result.bounds.peak_lr == pytest.approx(check.peak_lr)
    # the whole cost is the test's steps and the trials' (and the hold's), each counted where it trained; with
    # sync_every=1 the test stops at the step that diverged, so its curve holds every step it took
    result = clrfind.range_test(
        model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=120, sync_every=1
    )
    check = result.verification
    assert check is not None and result.timing.total_steps == result.steps_run + check.steps
    assert result.timing.total_seconds >= result.timing.seconds + check.seconds
    assert f"cost: {result.timing.total_steps} optimizer steps" in result.summary()
    assert f"(the curve's {result.steps_run}, the self-check's {check.steps})" in result.summary()
    off = clrfind.range_test(
        model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=120, verify_bounds=False
    )
    assert off.verification is None
    # without the check, only the steps a stop confirmed inside a chunk go past the curve's end
    assert off.timing.total_steps >= off.steps_run
    assert ("cost:" in off.summary()) == (off.timing.total_steps > off.steps_run)


def test_only_the_range_test_waits_out_jumps_a_trials_stop_counts_at_face_value(
    tiny_task, monkeypatch
) -> None:
    """A range test's stop only ends the measurement, so its monitor may wait out chance runs; a trial's stop is a
    verdict on its LR (a spike waited out would pass an LR a whole run may not survive), so it never waits. A hold
    judges its own curve and stops only on a non-finite loss."""
    import clrfind
    import clrfind.engine
    from clrfind.analysis import DivergenceMonitor

    made: list[tuple[bool, bool]] = []

    class Recording(DivergenceMonitor):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            made.append((self.rise, self.wait))

    monkeypatch.setattr(clrfind.engine, "DivergenceMonitor", Recording)
    model, loader, loss_fn, optimizer = tiny_task
    result = clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=120)
    assert result.verification is not None and len(result.verification.trials) >= 2
    assert made[0] == (True, True)  # the range test
    trials = made[1:]
    assert (True, False) in trials and all(not wait for _, wait in trials)


# -- the rescue: a curve that stayed level and then got worse has no bounds; trials look for an LR that learns --

LEVEL = Bounds(
    confidence="none",
    reason="the loss never falls: it stays level from lr 1e-05 to 4, then gets worse and diverged at lr 8",
    next_step="check that the model learns this data at all",
    divergence_lr=8.0,
    level_until_lr=4.0,
)


def test_a_level_curve_gets_bounds_from_the_highest_trial_that_trains() -> None:
    """The trials start at half the top of the level stretch (the rule that puts the peak at half the divergence)
    and step down to the first that trains; a lower one that would keep up is not tried, as on a plateau it is no
    evidence. The steps left hold that peak."""
    run, asked = scripted(lambda p: 1.0, diverge_above=1.5)
    bounds, record = rescue(LEVEL, SGD, 300, run)
    assert asked == [pytest.approx(2.0, rel=1e-3), pytest.approx(2.0 / STEP, rel=1e-3)]
    assert bounds.usable and bounds.max_lr == bounds.peak_lr == pytest.approx(2.0 / STEP)
    assert bounds.base_lr == pytest.approx(bounds.max_lr / 4) and bounds.confidence == "low"
    assert bounds.reason.startswith(LEVEL.reason)
    assert "but a 75-step one cycle peaking at 0.63 trained" in bounds.reason
    assert "rest on short trials" in bounds.next_step and "--steps 900" in bounds.next_step
    assert record.outcome.startswith(
        "the loss stayed level up to lr 4, then got worse: max_lr and the one-cycle"
    )
    assert "the trial at max_lr 2: diverged" in record.outcome
    assert "looked for the highest LR that trains, from 2 (half of it) down" in bounds.max_rationale
    assert bounds.max_rationale.endswith("the self-check lowered it to 0.63")
    assert run.holds == [pytest.approx(2.0 / STEP, rel=1e-3)] and record.steps == 300


def test_a_level_curve_whose_trials_learn_nothing_keeps_no_bounds() -> None:
    run, asked = scripted(lambda p: 2.0, noise=0.05)
    bounds, record = rescue(LEVEL, SGD, 300, run)
    assert bounds == LEVEL and not bounds.usable
    assert len(asked) == MAX_TRIALS and run.holds == [] and record.hold is None
    assert record.outcome.startswith("the loss stayed level up to lr 4, then got worse; no one-cycle trial")
    assert "(peaks tried: 0.063 -> did not train" in record.outcome and record.outcome.endswith(": no bounds")


def test_a_trial_that_falls_back_only_to_the_untrained_loss_did_not_train() -> None:
    """A saturated sigmoid net on a plateau: at a high peak the loss is thrown up and falls back to where the
    untrained model started, a fall beyond noise but nothing learned. Judged against the untrained model's held-out
    loss, that trial did not train and the search goes on down to a peak that learns."""
    untrained = 2.3 + np.random.default_rng(1).normal(0.0, 0.002, 16)
    run, asked = scripted(lambda p: 1.0, held_out=lambda p: 2.3 if p > 1.0 else 1.5)
    bounds, record = rescue(LEVEL, SGD, 300, run, untrained=untrained)
    assert asked[0] == pytest.approx(2.0, rel=1e-3)
    assert "2 -> 2.3, no better than untrained (2.3)" in record.outcome
    assert bounds.usable and bounds.max_lr == pytest.approx(2.0 / STEP)
    # Without the untrained model's loss, the fall of the training loss alone passed the first trial.
    run, _ = scripted(lambda p: 1.0, held_out=lambda p: 2.3 if p > 1.0 else 1.5)
    assert rescue(LEVEL, SGD, 300, run)[0].max_lr == pytest.approx(2.0)


def _level_result(tiny_task) -> tuple[Trainer, RangeTestResult, EngineOutput]:
    """(trainer, result, engine output) for a range test whose curve stayed level, then got worse, on the real tiny
    task: no bounds, and the top of the level stretch for the self-check to search below."""
    from clrfind.api import Trainer, make_result, optimizer_ref
    from clrfind.engine import EngineOutput
    from clrfind.faults import library_terms
    from clrfind.settings import RunSettings

    model, loader, loss_fn, optimizer = tiny_task
    settings = RunSettings(min_lr=1e-4, max_lr=10.0, steps=120, mode="exp")
    lrs = settings.ladder(120)
    level = 2.3 + 0.01 * np.random.default_rng(0).standard_normal(120) + 0.5 * np.clip(np.log10(lrs), 0, None)
    out = EngineOutput(lrs, level, "completed", "ran all steps", None, 0, 0.0)
    result = make_result(out, settings, library_terms(step_fn=False), planned_steps=120, device="cpu",
                         optimizer=optimizer_ref(optimizer))  # fmt: skip
    assert result.bounds.level_until_lr is not None and not result.bounds.usable
    trainer = Trainer(model, loader, loss_fn, optimizer, device=torch.device("cpu"), settings=settings)
    return trainer, result, out


def test_the_self_check_finds_bounds_for_a_level_curve_through_the_engine(tiny_task) -> None:
    """Wiring: a result whose curve stayed level, then got worse, goes to the rescue, whose trials train the real
    model from the initial state; with the self-check off, nothing runs."""
    from conftest import assert_same_state, state_of

    from clrfind.state import StateSnapshot

    trainer, result, out = _level_result(tiny_task)
    model, optimizer = trainer.model, trainer.optimizer
    before = state_of(model, optimizer)
    initial = StateSnapshot(model, optimizer)
    checked, stopped = trainer.self_check(result, out, initial)
    assert stopped is None and checked.bounds.usable and checked.bounds.confidence == "low"
    assert checked.verification.outcome.startswith("the loss stayed level up to lr")
    assert checked.verification.steps <= 120
    initial.restore()  # as range_test does once the trials are done
    assert_same_state(before, model, optimizer)
    trainer.settings = trainer.settings.model_copy(update={"verify_bounds": False})
    assert trainer.self_check(result, out, StateSnapshot(model, optimizer))[0] is result


def test_a_stop_during_the_search_below_a_level_curve_keeps_no_bounds_and_says_so(
    tiny_task, monkeypatch
) -> None:
    """Ctrl-C while the trials look for an LR: the result still has no bounds, and the record says it stopped."""
    import clrfind.verify
    from clrfind.state import StateSnapshot

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(clrfind.verify, "rescue", interrupted)
    trainer, result, out = _level_result(tiny_task)
    checked, stopped = trainer.self_check(result, out, StateSnapshot(trainer.model, trainer.optimizer))
    assert stopped is not None and checked.bounds == result.bounds and not checked.bounds.usable
    record = checked.verification
    assert record.outcome.endswith(": no bounds") and record.trials == [] and record.steps == 0
    assert record.checked_peak == record.peak_lr == result.bounds.level_until_lr


def test_a_tie_between_trials_cut_short_of_the_test_keeps_the_higher_peak() -> None:
    """Trials that all stop well above where the range test got (a plateau they share) tie whatever the peak: the
    tie says nothing about the lower peak, so the descent keeps max_lr. Where the test got no further than the
    trials, the same tie lowers the peak as before."""
    noise = np.random.default_rng(1).normal(0.0, 0.002, 16)
    run, asked = scripted(lambda p: 0.5 if p >= 0.03 else 0.9)
    bounds, record = verify(BOUNDS, SGD, 300, run, reached=0.2 + noise)
    assert bounds.peak_lr == pytest.approx(0.1) and bounds.max_lr == pytest.approx(0.1)
    assert any(p == pytest.approx(0.1 / STEP, rel=1e-3) for p in asked)  # the lower peak was tried, and tied
    assert (
        "trained no worse" not in record.outcome
        and "tied with 0.1, but both ended short of" in record.outcome
    )
    run, _asked = scripted(lambda p: 0.5 if p >= 0.03 else 0.9)
    bounds, _record = verify(BOUNDS, SGD, 300, run, reached=0.5 + noise)
    assert bounds.peak_lr == pytest.approx(0.1 / STEP)


def test_an_adaptive_optimizers_tie_lowers_the_peak_though_the_trials_fell_short_of_the_test() -> None:
    """Under AdamW the same cut-short tie lowers the peak: its higher LR leaves a plateau little sooner (its steps
    are scaled to the gradients) and costs a loss floor that short trials cannot see."""
    noise = np.random.default_rng(1).normal(0.0, 0.002, 16)
    run, _asked = scripted(lambda p: 0.5 if p >= 0.03 else 0.9)
    bounds, record = verify(ADAPTIVE, ADAM, 300, run, reached=0.2 + noise)
    assert bounds.peak_lr == pytest.approx(0.1 / STEP) == bounds.max_lr
    assert "trained no worse" in record.outcome and "tied with" not in record.outcome


def test_a_lower_peak_that_trains_clearly_better_is_taken_though_the_trials_fell_short_of_the_test() -> None:
    run, _asked = scripted(lambda p: 0.3 + 0.3 * abs(math.log10(p / 0.01)))
    reached = 0.05 + np.random.default_rng(1).normal(0.0, 0.002, 16)
    bounds, _record = verify(BOUNDS, SGD, 300, run, reached=reached)
    assert bounds.peak_lr == pytest.approx(0.1 / STEP**2)


def test_how_far_the_test_got_is_read_around_its_lowest_smoothed_loss() -> None:
    losses = np.array([3.0, 2.0, 1.0, 0.5, 0.6, math.nan, 5.0])
    smoothed = np.array([3.0, 2.5, 1.5, 0.9, 0.7, math.nan, math.nan])
    # 300 planned steps: 75-step trials whose end is their last 15 steps, so 7 losses each side of the lowest
    assert reached_losses(losses, smoothed, 300).tolist() == [3.0, 2.0, 1.0, 0.5, 0.6, 5.0]
    assert reached_losses(losses, np.full(7, math.nan), 300) is None
