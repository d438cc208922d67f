"""Bound detection on synthetic range-test curves with known answers, built here from seeded RNGs.

The curves are a sigmoid fall (centre `c`, width `w` on the sampled axis) plus an exponential blow-up: the
clear descent ends where the sigmoid is 95% down, at c + 2.94 w, which is where max_lr must land. Each failure
of the peer finders (early spikes, noise, NaN, negative losses, the wrong axis) gets its own case.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from clrfind.analysis import (
    DivergenceMonitor,
    find_divergence,
    smooth,
    suggest_bounds,
    suggest_bounds_from_metric,
)
from clrfind.analysis.bounds import DIVERGENCE_HEADROOM, MAX_RATIO
from clrfind.ladder import lr_ladder, sample_axis

# Linear: 1e-3 -> 1 over 300 steps; the fall is centred at 0.3 (width 0.08), the blow-up starts near 0.75.
LIN = {"c": 0.3, "w": 0.08, "d": 0.8, "dw": 0.03}
LIN_END = 0.3 + 2.94 * 0.08  # 0.535


def lin_max(b) -> float:
    """The expected max_lr on LIN: the end of the fall, but no closer to the divergence than divergence_lr / 2
    (the fall ends at 0.535, within 2x of the blow-up at ~0.81)."""
    return min(LIN_END, b.divergence_lr / DIVERGENCE_HEADROOM) if b.divergence_lr is not None else LIN_END


# Exp: 1e-5 -> 10 over 200 steps; in log10 LR the fall is centred at -2 (width 0.25 decades).
EXP = {"c": -2.0, "w": 0.25, "d": 0.0, "dw": 0.15}
EXP_START, EXP_END = -2.0 - 2.94 * 0.25, -2.0 + 2.94 * 0.25  # log10: 0.0018 and 0.054


def _curve(u: np.ndarray, *, c: float, w: float, d: float, dw: float, noise: float = 0.0, seed: int = 0):
    """2.3 falling by 2.0 around u = c, blowing up past u = d; Gaussian noise of `noise` times the fall."""
    rng = np.random.default_rng(seed)
    y = 2.3 - 2.0 / (1.0 + np.exp(-(u - c) / w)) + np.exp((u - d) / dw) - np.exp((u[0] - d) / dw)
    return y + noise * 2.0 * rng.standard_normal(u.size)


def lin_case(noise: float = 0.0, seed: int = 0, n: int = 300, **shape: float):
    lrs = lr_ladder(1e-3, 1.0, n, "linear")
    return lrs, _curve(lrs, **{**LIN, **shape}, noise=noise, seed=seed)


def exp_case(noise: float = 0.0, seed: int = 0, n: int = 200):
    lrs = lr_ladder(1e-5, 10.0, n, "exp")
    return lrs, _curve(np.log10(lrs), **EXP, noise=noise, seed=seed)


def exp_max(b) -> float:
    """log10 of the expected max_lr on EXP: the log midpoint of the end of the fall and divergence_lr / 2."""
    return 0.5 * (EXP_END + math.log10(b.divergence_lr / DIVERGENCE_HEADROOM))


def assert_sound(b) -> None:
    """What must hold for any answer: ordered bounds; max_lr before the minimum, or at most halfway (log) from the
    end of the fall to divergence_lr / 2, and always before the divergence."""
    if b.base_lr is not None and b.max_lr is not None:
        assert 0 < b.base_lr < b.max_lr <= b.peak_lr
        if b.divergence_lr is not None:
            assert b.max_lr < b.divergence_lr
            assert b.max_lr <= b.best_lr or b.max_lr < b.divergence_lr / DIVERGENCE_HEADROOM
            # one cycle's peak goes up to divergence_lr / 2, never further
            assert b.peak_lr <= max(b.max_lr, b.divergence_lr / DIVERGENCE_HEADROOM) * (1 + 1e-9)
        else:
            # nothing diverged: the largest LR that converged is at least the last one, so the peak goes up to
            # half of it, never further
            last = re.search(r"nothing diverged up to ([\d.e+-]+)", b.max_rationale)
            if last is None:  # the loss was still falling at the end: no level stretch to peak in
                assert b.peak_lr == b.max_lr
            else:  # the rationale gives the last LR to 2 digits
                assert b.peak_lr <= max(b.max_lr, float(last[1]) * 1.05 / DIVERGENCE_HEADROOM)
            assert (b.peak_lr > b.max_lr) == ("one-cycle peak_lr" in b.max_rationale)
            if b.best_lr is not None:
                assert b.max_lr <= b.best_lr
    else:
        assert b.reason and b.next_step
    for text in (b.base_rationale, b.max_rationale, b.reason or ""):
        for number in re.findall(r"\d[\d.e+-]*", text.replace("(2017)", "")):
            digits = number.split("e")[0].replace(".", "").lstrip("0")
            assert len(digits) <= 2, f"{number!r} in {text!r} has more than 2 significant digits"


# == smooth ==================================================================================================


@pytest.mark.parametrize("window", [None, 3, 7, 31, 151])
def test_smooth_does_not_lag_a_ramp_even_at_the_ends(window):
    ramp = np.linspace(-3.0, 5.0, 400)
    assert smooth(ramp, window) == pytest.approx(ramp, abs=1e-9)


def test_smooth_keeps_a_falling_edge_where_it_is():
    # An EMA would move the mid-point of the fall to later steps; a centred fit keeps it at step 100.
    x = np.arange(200.0)
    y = 1.0 / (1.0 + np.exp((x - 100.0) / 10.0)) + 0.05 * np.random.default_rng(0).standard_normal(200)
    s = smooth(y, 21)
    assert abs(int(np.argmin(np.abs(s - 0.5))) - 100) <= 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_smooth_treats_non_finite_as_missing_without_spreading(bad):
    ramp = np.linspace(0.0, 1.0, 60)
    y = ramp.copy()
    y[[20, 21, 45]] = bad
    s = smooth(y, 9)
    assert s.shape == y.shape
    assert np.isnan(s[[20, 21, 45]]).all()
    keep = np.isfinite(y)
    assert s[keep] == pytest.approx(ramp[keep], abs=1e-9)


def test_smooth_ignores_spikes_and_handles_degenerate_input():
    y = np.linspace(1.0, 0.0, 100)
    y[[1, 2, 50]] += 10.0
    s = smooth(y)
    assert np.abs(s - np.linspace(1.0, 0.0, 100))[[0, 1, 2, 3, 49, 50, 51]].max() < 0.02
    assert np.isnan(smooth(np.full(5, np.nan))).all()
    assert smooth(np.array([2.0])) == pytest.approx([2.0])
    assert smooth(np.array([])).size == 0


def test_smooth_never_leaves_the_raw_values_around_it():
    """A sharp drop at the end once made a local line overshoot to a negative cross-entropy: each smoothed point
    stays within the finite raw losses of its window, across NaN and inf too."""
    y = np.linspace(2.3, 2.0, 100)
    y[96:] = 0.01  # the loss falls to almost nothing in the last steps
    y[[10, 40, 60]] = [np.nan, np.inf, -np.inf]
    s = smooth(y)
    assert np.isnan(s[[10, 40, 60]]).all()
    assert np.nanmin(s) >= 0.01 and s[-1] == pytest.approx(0.01)


@pytest.mark.parametrize("seed", range(6))
def test_smooth_stays_within_each_windows_finite_values(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = np.cumsum(rng.standard_normal(n)) + np.where(np.arange(n) > n // 2, -20.0, 0.0)  # a walk with a cliff
    y[rng.integers(0, n, size=n // 10)] = rng.choice([np.nan, np.inf, -np.inf, 50.0], size=n // 10)
    window = int(rng.choice([5, 9, 31]))
    s = smooth(y, window)
    half = min(window // 2, (n - 1) // 2)
    for i in np.flatnonzero(np.isfinite(y)):
        near = y[max(0, i - half) : i + half + 1]
        near = near[np.isfinite(near)]
        assert near.min() - 1e-9 <= s[i] <= near.max() + 1e-9, i


def test_smooth_of_a_long_curve_is_not_swamped_by_a_blowup_at_its_end():
    """A window past 64 points is applied through the FFT, whose rounding error is ~1e-16 of the largest value
    spread over every point: a last loss of 1e29 made a loss of 1.5 come out near 200. Far from that loss the
    curve must come out as without it."""
    rng = np.random.default_rng(0)
    y = 1.0 + np.exp(-np.arange(900) / 200) + 0.1 * rng.standard_normal(900)
    window = 101  # through the FFT for an ordinary curve
    clean = smooth(y, window)
    s = smooth(np.r_[y, 1e29], window)
    # rel=1e-3: one more point moves the outlier weights a little
    assert s[: 900 - window] == pytest.approx(clean[: 900 - window], rel=1e-3)


def test_a_fall_stands_out_of_float32_rounding_of_its_own_levels_not_of_a_blowup():
    """Float32 rounding of a change is measured at the levels it lies between: a blow-up whose last loss is 1e29
    must not hide a fall from 2.0 to 1.0 as "rounding" (1e-6 of 1e29 is 1e23)."""
    lrs = lr_ladder(1e-4, 1.0, 400, "exp")
    y = 1.5 - 0.5 * np.tanh((np.log10(lrs) + 2.5) * 3) + 0.02 * np.random.default_rng(1).standard_normal(400)
    y[-1] = 1e29
    bounds = suggest_bounds(lrs, y, mode="exp", stop_reason="diverged")
    assert bounds.max_lr is not None and 1e-3 < bounds.max_lr < 0.1
    assert bounds.divergence_lr == pytest.approx(lrs[-1])


# == divergence ==============================================================================================


def blowup(seed: int = 0, n: int = 300, start: int = 220, scale: float = 1.0, shift: float = 0.0):
    """A ramp down, then a blow-up that doubles every ~2 steps from `start`."""
    rng = np.random.default_rng(seed)
    y = 2.3 - 2.0 * np.minimum(np.arange(n) / 150, 1.0) + 0.05 * rng.standard_normal(n)
    y[start:] += 2.0 * np.exp(np.arange(n - start) / 3.0)
    return scale * y + shift


def with_nan(y: np.ndarray, at: int, value: float = np.nan) -> np.ndarray:
    y = y.copy()
    y[at] = value
    return y


@pytest.mark.parametrize(
    ("losses", "reason"),
    [
        (blowup(0), "diverged"),
        (blowup(1, scale=1e-6), "diverged"),
        (blowup(2, shift=-10.0), "diverged"),
        (with_nan(blowup(3, start=10_000)[:300], 123), "non-finite"),
        (with_nan(blowup(4, start=10_000)[:300], 77, np.inf), "non-finite"),
        (blowup(5, start=10_000)[:300], None),
        (np.r_[np.full(12, 1.0), np.linspace(1.0, 30.0, 40)], "diverged"),  # before the noise window fills
    ],
)
def test_monitor_fed_in_chunks_agrees_with_find_divergence(losses, reason):
    index, found = find_divergence(losses)
    assert found == reason
    rng = np.random.default_rng(7)
    for _ in range(5):
        monitor = DivergenceMonitor(total_steps=losses.size)
        at = 0
        while at < losses.size and not monitor.update(losses[at : at + (k := int(rng.integers(1, 65)))]):
            at += k
        assert (monitor.stop_index, monitor.stop_reason) == (index, reason)


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (1e-6, 0.0), (1.0, -10.0), (50.0, 3.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_monitor_stops_within_5_steps_of_a_clear_blowup(scale, shift, seed):
    monitor = DivergenceMonitor(total_steps=300, lrs=np.linspace(0.01, 3.0, 300))
    monitor.update(blowup(seed, scale=scale, shift=shift))
    assert monitor.stop_reason == "diverged"
    assert 220 <= monitor.stop_index <= 225
    assert "rose above" in monitor.detail and "at lr" in monitor.detail
    # It names the causal median it judged, not "smoothed loss" (the plot's smoother has another minimum).
    assert monitor.detail.startswith("median of 5 losses ") and "(best median " in monitor.detail
    assert monitor.update(np.zeros(0)) is True  # stopped: later calls are no-ops


def test_monitor_stops_at_the_non_finite_step_and_ignores_the_rest():
    monitor = DivergenceMonitor(total_steps=100)
    assert monitor.update(np.full(40, 1.0)) is False
    assert monitor.update(np.array([0.9, 0.8, np.nan, 0.7])) is True
    assert (monitor.stop_index, monitor.stop_reason) == (42, "non-finite")
    assert monitor.update(np.full(10, 1e9)) is True
    assert monitor.stop_index == 42 and "nan" in monitor.detail


@pytest.mark.parametrize("seed", [0, 1])
def test_monitor_without_rise_stops_only_on_a_non_finite_loss(seed):
    """A stay at one LR (the self-check's hold) is judged by its caller: the same blow-up that stops a ladder goes
    on to the end, and only a non-finite loss stops it, at its own step."""
    y = blowup(seed)
    monitor = DivergenceMonitor(total_steps=y.size, rise=False)
    assert monitor.update(y) is False and monitor.stop_reason is None
    assert monitor.quiet_band()[1] == math.inf  # no finite loss can lead to a stop
    late = DivergenceMonitor(total_steps=y.size, rise=False)
    y[250] = math.inf
    assert late.update(y) is True and (late.stop_index, late.stop_reason) == (250, "non-finite")


def test_monitor_never_fires_on_an_early_spike():
    y = blowup(0, start=10_000)[:300]
    y[1:4] += 50.0  # the first steps of a fresh model can be wild
    assert find_divergence(y) == (None, None)
    monitor = DivergenceMonitor(total_steps=300)
    for i in range(300):
        assert monitor.update(y[i : i + 1]) is False


@pytest.mark.parametrize("heavy_tails", [False, True])
def test_monitor_has_no_false_alarms_on_long_flat_noise(heavy_tails):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        noise = rng.standard_t(4, 3000) if heavy_tails else rng.standard_normal(3000)
        assert find_divergence(2.3 + 0.3 * noise) == (None, None), seed


def heavy(seed: int, n: int = 900, blow: int | None = None) -> np.ndarray:
    """A fall under squared t(1.5) noise (a regression's MSE with heavy-tailed targets): about one loss in ten
    jumps many times the step noise above its neighbours, often three in a row; maybe a blow-up at `blow`."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 1.0 + 2.0 * np.exp(-t / 100) + 0.5 * rng.standard_t(1.5, n) ** 2
    if blow is not None:
        y += np.exp(np.minimum((t - blow) / 15, 50.0)) - np.exp(-blow / 15)
    return y


def test_monitor_waits_out_heavy_tails_but_not_a_blowup():
    """Chance runs of 3 over-levels come from the curve's own jumps, so the confirmation waits as long as their
    rate makes needed; the rule without the wait (FALSE_ALARMS huge) fires on a third of these curves."""
    alarms = [find_divergence(heavy(seed))[0] for seed in range(100)]
    assert sum(a is not None for a in alarms) <= 2
    for seed in range(10):
        monitor = DivergenceMonitor(total_steps=900)
        monitor.update(heavy(seed, blow=700))
        assert monitor.stop_reason == "diverged" and 700 < monitor.stop_index < 780, seed
    assert "confirmed over" in monitor.detail and "chance" in monitor.detail


def test_monitor_without_wait_stops_after_persistence_as_a_trial_needs():
    """`wait=False` (a self-check trial) takes `persistence` over-levels at face value, chance runs included."""
    waited = [find_divergence(heavy(seed))[0] for seed in range(30)]
    plain = []
    for seed in range(30):
        monitor = DivergenceMonitor(total_steps=900, wait=False)
        monitor.update(heavy(seed))
        plain.append(monitor.stop_index)
        assert "confirmed over" not in monitor.detail
    assert sum(i is not None for i in plain) >= 5 > sum(i is not None for i in waited)
    for a, b in zip(waited, plain, strict=True):
        assert a is None or (b is not None and b <= a)  # never later than the waiting monitor


def test_monitor_reports_a_waited_divergence_where_the_run_began():
    """The wait only rules out chance: the stop is reported at the step where `persistence` levels were over,
    also when a non-finite loss or the end of the test comes before the wait is over."""
    y = heavy(0, blow=700)
    index, _ = find_divergence(y)
    whole = DivergenceMonitor(total_steps=y.size)
    whole.update(y)
    need = int(re.search(r"confirmed over (\d+) steps", whole.detail)[1])  # type: ignore[index]
    assert need > whole.persistence
    for cut in range(index + 1, index + need - whole.persistence + 1):
        ended = DivergenceMonitor(total_steps=cut)
        ended.update(y[:cut])
        broken = DivergenceMonitor(total_steps=y.size)
        broken.update(np.r_[y[:cut], np.nan])
        assert (ended.stop_index, ended.stop_reason) == (index, "diverged")
        assert (broken.stop_index, broken.stop_reason, broken.detail) == (index, "diverged", whole.detail)


def test_confirm_steps_counts_the_runs_that_chance_can_make():
    """The over-patterns behind a run of levels, checked by brute force, and the confirmation they imply."""
    import itertools

    from clrfind.analysis.divergence import MEDIAN_SPAN, _over_patterns, confirm_steps

    for runs in range(1, 5):
        width = runs + MEDIAN_SPAN - 1
        brute = [0] * (width + 1)
        for bits in itertools.product((0, 1), repeat=width):
            if all(sum(bits[i : i + MEDIAN_SPAN]) > MEDIAN_SPAN // 2 for i in range(runs)):
                brute[sum(bits)] += 1
        assert list(_over_patterns(runs)) == brute
    assert confirm_steps(0, 500, 3000, 3) == 3  # no jumps: the plain persistence
    assert confirm_steps(1, 500, 300, 3) == 3  # one jump in 500 makes no chance run in 300 steps
    # 10% of the losses over: 3 in a row at ~1% a step would be ~3 chance stops in 300 steps.
    waits = [confirm_steps(jumps, 1000, 300, 3) for jumps in (30, 100, 160, 300)]
    assert waits == sorted(waits) and 3 < waits[0] < waits[-1] <= 50


def test_monitor_quiet_band_holds_a_flat_curve_and_nothing_after_a_stop():
    """The band a caller may hold losses back in: empty during the warm-up, wide enough on a flat noisy curve
    that most losses are quiet, never holding a non-finite loss, and empty again once the run stopped."""
    rng = np.random.default_rng(3)
    flat = 2.3 + 0.05 * rng.standard_normal(400)
    monitor = DivergenceMonitor(total_steps=flat.size)
    monitor.update(flat[:20])
    assert monitor.quiet_band() == (math.inf, -math.inf)  # the noise window is not full yet
    monitor.update(flat[20:200])
    low, high = monitor.quiet_band()
    assert low == flat[:200].min() and high > 2.3 + 0.1
    assert np.mean((low <= flat[200:]) & (flat[200:] <= high)) > 0.9
    for bad in (math.nan, math.inf, -math.inf):
        assert not low <= bad <= high
    # a blow-up leaves the band long before the monitor confirms it, and a stopped monitor holds nothing back
    blowup = np.concatenate([flat[200:250], 2.3 + np.geomspace(0.5, 50.0, 20)])
    first_out = int(np.argmax(~((low <= blowup) & (blowup <= high))))
    monitor.update(blowup)
    assert monitor.stopped and first_out < monitor.stop_index - 200
    assert monitor.quiet_band() == (math.inf, -math.inf)


def test_monitor_rebased_band_after_a_new_lowest_loss():
    """A new lowest loss lowers the band's top; the band holds only if the losses just before it stay under it."""
    rng = np.random.default_rng(4)
    flat = 2.3 + 0.05 * rng.standard_normal(200)
    monitor = DivergenceMonitor(total_steps=300)
    monitor.update(flat)
    low, high = monitor.quiet_band()
    calm = [*flat[-4:], low - 0.01]
    assert max(flat[-4:]) < monitor._band_top(low - 0.01)
    assert monitor.rebased_band(calm) == (low - 0.01, monitor._band_top(low - 0.01))
    new_high = monitor.rebased_band(calm)[1]
    assert new_high < high  # a lower floor, a lower top
    # a loss between the new and the old top, two steps back, may be part of a stop: no band
    assert monitor.rebased_band([*flat[-3:-1], (new_high + high) / 2, flat[-1], low - 0.01]) is None
    # ... also when it was fed already and only the new loss is held back
    fed = DivergenceMonitor(total_steps=300)
    fed.update([*flat, (new_high + high) / 2, flat[-1]])
    assert fed.rebased_band([low - 0.01]) is None
    assert fed.rebased_band([-math.inf]) is None


def test_monitor_rejects_overfeeding_and_bad_arguments():
    monitor = DivergenceMonitor(total_steps=5)
    with pytest.raises(ValueError, match="monitor of 5 steps"):
        monitor.update(np.ones(6))
    with pytest.raises(ValueError):
        DivergenceMonitor(total_steps=0)
    with pytest.raises(ValueError):
        DivergenceMonitor(total_steps=5, lrs=np.ones(4))


# == suggest_bounds: curves with a known answer ==============================================================


def spiked(y: np.ndarray, where: slice, by: float) -> np.ndarray:
    y = y.copy()
    y[where] += by
    return y


CLEAN_LIN = lin_case()[1]


@pytest.mark.parametrize(
    ("losses", "max_rel"),
    [
        pytest.param(CLEAN_LIN, 0.05, id="clean"),
        pytest.param(lin_case(0.05, seed=1)[1], 0.1, id="noise-5%"),
        pytest.param(lin_case(0.15, seed=2)[1], 0.15, id="noise-15%"),
        pytest.param(spiked(CLEAN_LIN, slice(1, 3), 5.0), 0.05, id="spike-steps-1-2"),
        pytest.param(spiked(CLEAN_LIN, slice(0, 3), 5.0), 0.05, id="spike-steps-0-2"),
        pytest.param(spiked(CLEAN_LIN, slice(2, 5), -3.0), 0.05, id="dip-steps-2-4"),
        pytest.param(spiked(CLEAN_LIN, slice(100, 102), 8.0), 0.05, id="spike-mid-descent"),
    ],
)
def test_linear_u_curve(losses, max_rel):
    lrs = lin_case()[0]
    b = suggest_bounds(lrs, losses, mode="linear")
    assert_sound(b)
    assert b.max_lr == pytest.approx(lin_max(b), rel=max_rel)
    assert b.base_lr == pytest.approx(0.1, rel=0.35)  # where the smoothed loss is 5% of its fall down
    assert b.divergence_lr == pytest.approx(0.81, abs=0.03)
    assert b.confidence in ("high", "medium")
    assert b.max_rationale.startswith("loss stopped falling at") and "diverged at" in b.max_rationale


def test_early_spike_does_not_move_the_bounds():
    lrs = lin_case()[0]
    clean = suggest_bounds(lrs, CLEAN_LIN)
    for where in (slice(0, 2), slice(1, 4), slice(2, 3)):
        b = suggest_bounds(lrs, spiked(CLEAN_LIN, where, 10.0))
        assert (b.base_lr, b.max_lr) == pytest.approx((clean.base_lr, clean.max_lr), rel=0.03)


@pytest.mark.parametrize(("noise", "seed"), [(0.0, 0), (0.05, 1), (0.1, 2), (0.2, 3)])
def test_exp_ladder_bounds_on_the_log_axis(noise, seed):
    lrs, losses = exp_case(noise, seed)
    b = suggest_bounds(lrs, losses, mode="exp")
    assert_sound(b)
    assert 0.8 < b.divergence_lr < 2.5  # the blow-up gives back half the fall near u = 0 (later when noisy)
    assert math.log10(b.max_lr) == pytest.approx(exp_max(b), abs=0.3)
    assert "stayed level up to" in b.max_rationale and "(log midpoint)" in b.max_rationale
    # the start of the fall, unless that is more than MAX_RATIO below max_lr (then base_lr is raised to it)
    expected = max(EXP_START, math.log10(b.max_lr / MAX_RATIO))
    assert math.log10(b.base_lr) == pytest.approx(expected, abs=0.35)
    assert b.base_lr >= b.max_lr / MAX_RATIO * (1 - 1e-9)
    assert b.base_rationale.startswith("loss starts falling clearly at")


@pytest.mark.parametrize("n", [80, 150, 400, 1500])
def test_exp_bounds_do_not_depend_on_the_number_of_steps(n):
    lrs, losses = exp_case(0.05, seed=n, n=n)
    b = suggest_bounds(lrs, losses, mode="exp")
    assert math.log10(b.max_lr) == pytest.approx(exp_max(b), abs=0.3)


def test_slopes_are_taken_on_the_sampled_axis():
    # Lightning #14248: slopes of an exp ladder taken against the linear LR blow up at the tiny LRs, and the
    # "steepest" point lands there. Judged on the axis it was sampled on, the curve gives the right bounds.
    lrs, losses = exp_case(0.02, seed=4)
    right = suggest_bounds(lrs, losses, mode="exp")
    wrong = suggest_bounds(lrs, losses, mode="linear")
    assert math.log10(right.max_lr) == pytest.approx(exp_max(right), abs=0.3)

    def start(b) -> float:
        return float(re.search(r"starts falling clearly at ([\d.e+-]+)", b.base_rationale).group(1))

    assert start(right) == pytest.approx(10**EXP_START, rel=0.5)
    assert start(wrong) < start(right) / 10


def test_plateau_then_cliff():
    lrs = lr_ladder(1e-3, 1.0, 300, "linear")
    losses = np.where(lrs < 0.5, 2.3, 0.5) + 0.01 * np.random.default_rng(0).standard_normal(300)
    b = suggest_bounds(lrs, losses)
    assert_sound(b)
    assert b.max_lr == pytest.approx(0.5, abs=0.05)
    assert b.base_lr == pytest.approx(b.max_lr / 4)  # a cliff has no start below max_lr / 4: the paper's rule
    assert "max_lr/4" in b.base_rationale


def test_falling_from_the_first_step_has_no_clear_start():
    lrs = lr_ladder(1e-3, 1.0, 300, "linear")
    losses = 0.3 + 2.0 * np.exp(-lrs / 0.1) + np.exp((lrs - 0.8) / 0.03)
    b = suggest_bounds(lrs, losses)
    assert_sound(b)
    assert b.base_lr == pytest.approx(b.max_lr / 4)
    assert b.base_rationale.startswith("start of the fall unclear (falling from the first step)")


def test_descent_plateau_then_sudden_blowup():
    lrs, losses = lin_case(0.01, seed=5, c=0.15, w=0.03, d=5.0)
    losses = np.where(lrs > 0.7, losses + 5.0, losses)
    b = suggest_bounds(lrs, losses)
    assert_sound(b)
    assert b.divergence_lr == pytest.approx(0.71, abs=0.03)
    # level from the end of the fall (0.24) to the cliff: max_lr is their log midpoint with divergence_lr / 2
    end = 0.15 + 2.94 * 0.03
    assert b.max_lr == pytest.approx(math.sqrt(end * b.divergence_lr / DIVERGENCE_HEADROOM), rel=0.1)
    # ... and one cycle peaks at divergence_lr / 2 itself, which the level stretch reaches
    assert b.peak_lr == pytest.approx(b.divergence_lr / DIVERGENCE_HEADROOM)
    assert f"one-cycle peak_lr {b.peak_lr:.2g}" in b.max_rationale


def test_peak_lr_stops_where_the_level_stretch_ends():
    """A loss that creeps up before it diverges: the peak stays at the last LR where the curve was still level."""
    lrs, losses = lin_case(0.0, c=0.15, w=0.03, d=5.0)
    # fall ends at 0.24; the loss creeps up by 30% of its fall between 0.38 and 0.44, then blows up at 0.95
    creeping = losses + 0.6 * np.clip((lrs - 0.38) / 0.06, 0.0, 1.0)
    creeping = np.where(lrs > 0.95, creeping + 5.0, creeping)
    b = suggest_bounds(lrs, creeping)
    assert_sound(b)
    assert b.divergence_lr / DIVERGENCE_HEADROOM > 0.45  # divergence/2 lies past the level stretch ...
    assert b.max_lr < 0.36 and 0.4 < b.peak_lr < 0.45  # ... so the peak stops where the creep passes 25%
    assert "the end of the level stretch" in b.max_rationale


def test_max_lr_stays_below_a_rise_that_starts_right_after_the_fall():
    """A loss that climbs again right after its minimum (no level stretch) keeps max_lr at the end of the fall."""
    lrs, losses = exp_case(0.0)
    u = np.log10(lrs)
    slanted = losses + 2.0 * np.clip(u - EXP_END, 0.0, None)  # +2 per decade: 25% of the fall in 0.25 decades
    level = suggest_bounds(lrs, losses, mode="exp")
    b = suggest_bounds(lrs, slanted, mode="exp")
    assert_sound(b)
    assert math.log10(b.max_lr) < EXP_END + 0.3 < math.log10(level.max_lr)
    # the peak, too, stops where the rise passes the level tolerance, far below the level curve's peak
    assert math.log10(b.peak_lr) < EXP_END + 0.5 < math.log10(level.peak_lr)


def test_a_steep_then_slow_fall_ends_at_its_bend_on_every_seed():
    """A language model's curve: a steep fall, then a slow one over more than a decade, then the blow-up. The
    slow part's slope sits near any fixed fraction of the steepest, so where it first crosses one moved 4x between
    noise seeds; the knee stays at the bend."""
    lrs = lr_ladder(1e-5, 1.0, 300, "exp")
    u = np.log10(lrs)
    clean = (
        4.5
        - 1.2 / (1 + np.exp(-(u + 3.5) / 0.15))
        - 0.35 * np.clip(u + 3.0, 0, 1.6)
        + np.exp((u + 0.9) / 0.08)
    )
    ends = []
    for seed in range(10):
        b = suggest_bounds(
            lrs, clean + 0.03 * np.random.default_rng(seed).standard_normal(u.size), mode="exp"
        )
        assert_sound(b)
        ends.append(float(re.search(r"stopped falling at ([\d.e+-]+)", b.max_rationale).group(1)))
    assert min(ends) > 3e-4 and max(ends) < 2e-3  # the bend: the steep fall is over by 1e-3
    assert max(ends) / min(ends) < 2.0


@pytest.mark.parametrize(("second", "ends_after"), [(0.6, 1e-2), (0.2, None)])
def test_a_fall_that_pauses_and_falls_again_ends_at_its_last_bend(second, ends_after):
    """Two falls with a pause between (easy features first, the rest only at a higher LR): the loss stopped
    falling after the second, so max_lr is its bend, on every seed. A second dip under a quarter of the whole
    fall is the tail of the first, whose bend stays the end."""
    lrs = lr_ladder(1e-5, 1.0, 300, "exp")
    u = np.log10(lrs)
    clean = (
        2.8
        - 1.0 / (1 + np.exp(-(u + 3.6) / 0.15))
        - second / (1 + np.exp(-(u + 1.9) / 0.15))
        + np.exp((u + 0.4) / 0.1)
    )
    for seed in range(5):
        b = suggest_bounds(
            lrs, clean + 0.02 * np.random.default_rng(seed).standard_normal(u.size), mode="exp"
        )
        assert_sound(b)
        end = float(re.search(r"stopped falling at ([\d.e+-]+)", b.max_rationale).group(1))
        if ends_after is None:
            assert 3e-4 < end < 3e-3, end  # the first fall's bend
        else:
            assert ends_after < end < 0.1, end  # the second's: it is over by ~0.05


def test_a_fall_that_runs_into_the_divergence_keeps_max_lr_within_2x_of_it():
    """No level stretch between the end of the fall and the blow-up: the end of the fall is the edge itself, so
    max_lr (and the one-cycle peak) stop at divergence_lr / 2, Smith's upper estimate, as they do with a stretch."""
    lrs = lr_ladder(1e-4, 1.0, 300, "exp")
    u = np.log10(lrs)
    fall = 2.3 - 2.0 * np.clip((u + 3.0) / 2.9, 0.0, 1.0)  # falls evenly up to 0.79, where the blow-up starts
    losses = np.where(u > -0.1, fall + np.expm1((u + 0.1) / 0.01), fall)
    losses = losses + 0.003 * np.random.default_rng(0).standard_normal(lrs.size)
    b = suggest_bounds(lrs, losses, mode="exp")
    assert_sound(b)
    assert 10**-0.1 < b.divergence_lr < 1.0  # the blow-up starts at 0.79; the monitor needs a few steps
    assert b.max_lr == pytest.approx(b.divergence_lr / DIVERGENCE_HEADROOM) and b.peak_lr == b.max_lr
    assert "within 2x of the largest LR that still converges" in b.max_rationale


def test_a_loss_still_falling_when_it_turns_non_finite_keeps_max_lr_within_2x_of_it():
    lrs = lr_ladder(1e-4, 1.0, 300, "exp")
    falling = 2.3 - 2.0 * (np.log10(lrs) + 4.0) / 4.0 + 0.003 * np.random.default_rng(0).standard_normal(300)
    b = suggest_bounds(lrs, np.where(lrs > 0.5, np.nan, falling), mode="exp")
    assert b.confidence == "low" and "still falling" in b.max_rationale
    assert b.max_lr == pytest.approx(b.divergence_lr / DIVERGENCE_HEADROOM) and b.divergence_lr > 0.5


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_in_the_middle_ends_the_analysis_there(bad):
    lrs = lin_case()[0]
    losses = CLEAN_LIN.copy()
    losses[200] = bad  # after the descent, before the blow-up
    losses[201:] = 1e30  # whatever follows must not matter
    b = suggest_bounds(lrs, losses)
    assert_sound(b)
    assert b.max_lr == pytest.approx(lin_max(b), rel=0.05)
    assert b.divergence_lr == pytest.approx(lrs[200])
    assert "became non-finite at" in b.max_rationale
    assert find_divergence(losses) == (200, "non-finite")


def test_non_finite_while_still_falling_is_low_confidence():
    lrs = lin_case()[0]
    b = suggest_bounds(lrs, with_nan(CLEAN_LIN, 150))
    assert_sound(b)
    # the last LR before, but no closer to the non-finite step than 2x
    assert b.divergence_lr == lrs[150] and b.max_lr == pytest.approx(lrs[150] / DIVERGENCE_HEADROOM)
    assert b.confidence == "low" and "still falling" in b.max_rationale


@pytest.mark.parametrize(
    ("scale", "shift"), [(1.0, -5.0), (1e-6, 0.0), (1e-6, 3e-6), (250.0, 1000.0), (0.5, -0.4)]
)
@pytest.mark.parametrize("case", ["linear", "exp"])
def test_bounds_are_invariant_to_shifting_and_scaling_the_loss(scale, shift, case):
    lrs, losses = lin_case(0.05, seed=8) if case == "linear" else exp_case(0.05, seed=8)
    base = suggest_bounds(lrs, losses, mode=case)
    moved = suggest_bounds(lrs, scale * losses + shift, mode=case)
    assert base.usable
    assert moved.confidence == base.confidence
    for key in ("base_lr", "max_lr", "best_lr", "divergence_lr"):
        assert getattr(moved, key) == pytest.approx(getattr(base, key), rel=1e-9), key


def test_negative_losses_diverging_back_to_their_start():
    # A negative log-likelihood that falls below zero, then collapses back to where it started (not higher):
    # a "4x the best loss" rule cannot fire on it; a rule relative to the fall does.
    lrs = lr_ladder(1e-3, 1.0, 300, "linear")
    losses = _curve(lrs, c=0.3, w=0.08, d=5.0, dw=0.03) - 1.5
    losses[230:] = losses[0]
    b = suggest_bounds(lrs, losses)
    assert_sound(b)
    assert b.divergence_lr == pytest.approx(lrs[230], abs=0.02)
    assert b.max_lr == pytest.approx(lin_max(b), rel=0.05)


# == suggest_bounds: curves that cannot give a reliable answer ===============================================


def test_never_diverges_gives_bounds_and_asks_for_a_larger_range():
    lrs, losses = lin_case(0.02, seed=1, d=5.0)
    b = suggest_bounds(lrs, losses, planned_max_lr=1.0)
    assert_sound(b)
    assert b.max_lr == pytest.approx(lin_max(b), rel=0.1)
    assert b.confidence == "medium"
    assert b.divergence_lr is None
    assert "nothing diverged up to 1" in b.max_rationale
    assert "--max-lr 10" in b.next_step
    assert b.peak_lr == b.max_lr  # the fall ended past half the last LR


def test_without_divergence_one_cycle_peaks_at_half_the_last_lr():
    """Level from the end of the fall (0.24) to the end of the range: the largest LR that converged is at least
    the last one, so one cycle peaks at half of it, as it would at half a divergence LR."""
    lrs, losses = lin_case(0.02, seed=1, c=0.15, w=0.03, d=5.0)
    b = suggest_bounds(lrs, losses, planned_max_lr=1.0)
    assert_sound(b)
    assert b.divergence_lr is None and b.confidence == "medium"
    assert b.max_lr < 0.3 and b.peak_lr == pytest.approx(0.5)
    assert "one-cycle peak_lr 0.5 (1/2)" in b.max_rationale


def test_without_divergence_the_peak_stops_where_the_level_stretch_ends():
    """A loss that creeps up but never diverges: one cycle peaks at the end of the level stretch."""
    lrs, losses = lin_case(0.0, c=0.15, w=0.03, d=5.0)
    creeping = losses + 0.6 * np.clip((lrs - 0.3) / 0.06, 0.0, 1.0)  # +30% of the fall between 0.3 and 0.36
    b = suggest_bounds(lrs, creeping, planned_max_lr=1.0)
    assert_sound(b)
    assert b.divergence_lr is None and b.confidence == "medium"
    assert b.max_lr < 0.3 and 0.3 < b.peak_lr < 0.36
    assert "(the end of the level stretch)" in b.max_rationale


def test_still_falling_at_the_end_of_the_range():
    lrs, losses = lin_case(0.02, seed=1, c=0.8, w=0.1, d=5.0)
    b = suggest_bounds(lrs, losses, planned_max_lr=1.0)
    assert_sound(b)
    assert b.max_lr == pytest.approx(1.0) and b.confidence == "low"
    assert "still falling" in b.reason and "--max-lr 10" in b.next_step


def test_a_fall_seen_to_slow_only_in_the_last_half_window_of_the_range_is_still_falling():
    """Where the range ends nothing happened to the curve, and the smoother sees one side of it only: a fall that
    slows only within the last half-window has not shown that it ended, so the test runs again up to a 10x higher
    end. The same fall a tenth of a decade earlier slows on both sides' evidence and ends inside the range."""
    lrs = lr_ladder(1e-5, 1.0, 300, "exp")
    late = _curve(np.log10(lrs), c=-0.5, w=0.12, d=5.0, dw=0.15, noise=0.01)
    b = suggest_bounds(lrs, late, planned_max_lr=1.0, mode="exp")
    assert_sound(b)
    assert b.wider_max_lr == pytest.approx(10.0) and b.confidence == "low" and "still falling" in b.reason
    earlier = _curve(np.log10(lrs), c=-0.6, w=0.12, d=5.0, dw=0.15, noise=0.01)
    b = suggest_bounds(lrs, earlier, planned_max_lr=1.0, mode="exp")
    assert_sound(b)
    assert b.wider_max_lr is None and 0.3 < b.max_lr < 0.6 and b.confidence == "medium"


def test_never_falls():
    lrs = lr_ladder(1e-3, 1.0, 300, "linear")
    losses = 2.3 + 3.0 * lrs + 0.02 * np.random.default_rng(0).standard_normal(300)
    b = suggest_bounds(lrs, losses)
    assert_sound(b)
    assert b.base_lr is None and b.max_lr is None and b.confidence == "none"
    assert "never falls" in b.reason and b.level_until_lr is None  # worse from the start: no level stretch
    # a lower start on a linear ladder over 4 decades would change nothing: the advice says to go exp
    assert "--min-lr 0.0001 --mode exp" in b.next_step


def test_level_for_decades_then_worse_is_not_read_as_worse_from_the_start():
    # A model that learns nothing at any LR in the range (a plateau it needs many steps to leave) until the LR is
    # high enough to blow it up: lowering the start would only add more of the same level stretch.
    lrs = lr_ladder(1e-5, 10.0, 300, "exp")
    losses = (
        2.3
        + 0.02 * np.random.default_rng(0).standard_normal(300)
        + 0.3 * np.clip(np.log10(lrs / 3.0), 0, None)
    )
    b = suggest_bounds(lrs, losses, mode="exp", planned_max_lr=10.0)
    assert_sound(b)
    assert b.max_lr is None and b.confidence == "none"
    assert "stays level from lr 1e-05 to" in b.reason and "then gets worse" in b.reason
    level_to = float(b.reason.split(" to ")[1].split(",")[0])
    assert 1.0 <= level_to <= 4.0
    # ... and where, for the self-check's trials that look for an LR that learns (`verify.rescue`)
    assert b.level_until_lr == pytest.approx(level_to, rel=0.01)
    assert "lower start only adds more of the level stretch" in b.next_step and "--min-lr" not in b.next_step


def test_noise_then_a_blow_up_marks_where_the_level_stretch_ended():
    """No fall stands out of the noise before the loss blows up at the top of the range: the self-check searches
    below where the curve was last level, as after a level stretch that gets worse."""
    lrs = lr_ladder(1e-5, 10.0, 300, "exp")
    losses = 2.3 + 0.05 * np.random.default_rng(1).standard_normal(300)
    losses[280:] += 2.0 * np.exp(np.arange(20) / 3.0)
    b = suggest_bounds(lrs, losses, mode="exp", planned_max_lr=10.0)
    assert b.max_lr is None and b.confidence == "none" and "before it diverged at lr" in b.reason
    assert b.divergence_lr is not None and lrs[250] < b.level_until_lr <= b.divergence_lr


def test_flat_curve():
    lrs = lr_ladder(1e-6, 1e-4, 200, "exp")
    losses = 2.3 + 0.02 * np.random.default_rng(0).standard_normal(200)
    b = suggest_bounds(lrs, losses, mode="exp", planned_max_lr=1e-4)
    assert_sound(b)
    assert b.max_lr is None and b.confidence == "none"
    assert "flat" in b.reason and "--max-lr 0.001" in b.next_step and "--mode" not in b.next_step


@pytest.mark.parametrize("n", [200, 1000, 5000])
def test_pure_noise_never_gets_bounds(n):
    lrs = lr_ladder(1e-4, 1.0, n, "exp")
    for seed in range(10):
        losses = 2.3 + 0.1 * np.random.default_rng(seed).standard_normal(n)
        assert suggest_bounds(lrs, losses, mode="exp").max_lr is None


def test_too_short():
    lrs, losses = lin_case(n=8)
    b = suggest_bounds(lrs, losses)
    assert b.max_lr is None and b.confidence == "none"
    assert b.next_step == "run more steps: --steps 300"


def test_diverging_after_a_few_steps_asks_for_a_lower_range():
    lrs = lr_ladder(1e-3, 1.0, 100, "linear")
    losses = np.full(100, 2.3)
    losses[6] = np.nan
    b = suggest_bounds(lrs, losses)
    assert b.max_lr is None and b.divergence_lr == pytest.approx(lrs[6])
    assert f"--max-lr {lrs[6]:.2g}" in b.next_step


@pytest.mark.parametrize("losses", [np.full(50, np.nan), np.r_[np.inf, np.ones(49)]])
def test_non_finite_from_the_first_step_points_at_the_setup(losses):
    b = suggest_bounds(lr_ladder(1e-3, 1.0, 50, "linear"), losses)
    assert b.max_lr is None and "first loss is non-finite" in b.reason and "clrfind check" in b.next_step


def test_very_noisy_curve_is_low_confidence():
    lrs, losses = lin_case(0.8, seed=2, n=2000)
    b = suggest_bounds(lrs, losses)
    assert_sound(b)
    assert b.confidence == "low"
    assert "noisy" in b.reason and "larger batch" in b.next_step


@pytest.mark.parametrize(
    ("stop_reason", "expected"), [("completed", "high"), ("interrupted", "medium"), ("error", "medium")]
)
def test_stop_reason_lowers_confidence(stop_reason, expected):
    lrs, losses = lin_case()
    b = suggest_bounds(lrs, losses, stop_reason=stop_reason, planned_max_lr=1.0)
    assert b.confidence == expected
    if stop_reason != "completed":
        assert stop_reason in b.reason and "rerun it to completion" in b.next_step


def test_stop_reason_diverged_marks_the_last_step():
    lrs, losses = lin_case(d=5.0)
    b = suggest_bounds(lrs[:250], losses[:250], stop_reason="diverged")
    assert b.divergence_lr == pytest.approx(lrs[249])


def test_many_random_curves_stay_sound():
    for seed in range(40):
        rng = np.random.default_rng(seed)
        mode = "exp" if seed % 2 else "linear"
        lrs = lr_ladder(1e-4, 1.0, int(rng.integers(10, 500)), mode)
        u = sample_axis(lrs, mode)
        span = u[-1] - u[0]
        losses = rng.uniform(-3, 3) + rng.uniform(1e-3, 10) * _curve(
            u,
            c=u[0] + rng.uniform(-0.2, 1.0) * span,
            w=rng.uniform(0.01, 0.2) * span,
            d=u[0] + rng.uniform(0.3, 1.5) * span,
            dw=rng.uniform(0.01, 0.1) * span,
            noise=rng.uniform(0.0, 1.0),
            seed=seed,
        )
        assert_sound(suggest_bounds(lrs, losses, mode=mode))


def test_ten_thousand_points():
    # Correctness on a long curve only: speed is a benchmark's job, never a timed unit test.
    lrs, losses = lin_case(0.1, seed=1, n=10_000)
    b = suggest_bounds(lrs, losses)
    assert b.max_lr == pytest.approx(lin_max(b), rel=0.1)


def test_length_mismatch_and_bad_mode_raise():
    with pytest.raises(ValueError):
        suggest_bounds(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        suggest_bounds(np.ones(3), np.ones(3), mode="cosine")


# == suggest_bounds_from_metric ==============================================================================


def metric_lrs(points: int = 30) -> np.ndarray:
    return lr_ladder(1e-3, 1.0, 300, "linear")[:: 300 // points]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_rises_then_falls(seed):
    lrs = metric_lrs()
    sig = 1.0 / (1.0 + np.exp(-(lrs - 0.4) / 0.06))  # flat at chance until ~0.23, up by 0.58
    collapse = 1.0 / (1.0 + np.exp(-(lrs - 0.75) / 0.03))
    acc = 0.1 + 0.8 * sig - 0.8 * collapse + 0.02 * np.random.default_rng(seed).standard_normal(lrs.size)
    b = suggest_bounds_from_metric(lrs, acc, higher_is_better=True)
    assert_sound(b)
    assert b.method == "accuracy"
    # the end of the rise, but no closer than 2x to where the accuracy fell (~0.9)
    assert b.max_lr == pytest.approx(min(0.4 + 2.94 * 0.06, b.divergence_lr / DIVERGENCE_HEADROOM), rel=0.15)
    assert b.base_rationale.startswith("accuracy starts rising clearly at 0.2")
    assert "accuracy stopped rising at" in b.max_rationale and "fell at" in b.max_rationale


def test_val_loss_falls_then_diverges():
    lrs = metric_lrs(40)
    values = _curve(lrs, **LIN, noise=0.03, seed=3)
    b = suggest_bounds_from_metric(lrs, values, higher_is_better=False, name="val_loss")
    assert_sound(b)
    assert b.method == "val_loss"
    assert b.max_lr == pytest.approx(lin_max(b), rel=0.15)
    assert "val_loss stopped falling at" in b.max_rationale


def test_metric_with_too_few_points():
    lrs = metric_lrs(30)[:8]
    b = suggest_bounds_from_metric(lrs, np.linspace(0.1, 0.9, 8), higher_is_better=True)
    assert b.max_lr is None and "evaluate the metric more often" in b.next_step


def test_metric_and_loss_paths_agree_on_the_same_curve():
    lrs, losses = lin_case(0.02, seed=9)
    by_loss = suggest_bounds(lrs, losses)
    by_metric = suggest_bounds_from_metric(lrs, -losses, higher_is_better=True)
    assert (by_metric.base_lr, by_metric.max_lr) == pytest.approx((by_loss.base_lr, by_loss.max_lr))


@pytest.mark.parametrize("seed", range(12))
def test_monitor_answer_does_not_depend_on_chunking(seed: int) -> None:
    """The engine feeds chunks of 1-4 losses, `find_divergence` the whole curve: same stop, same detail."""
    rng = np.random.default_rng(seed)
    n = 400
    x = np.linspace(0, 1, n)
    blow = rng.uniform(0.5, 1.2)
    curve = (
        2.0
        - 1.5 * np.tanh(5 * x)
        + 40 * np.clip(x - blow, 0, None) ** 2
        + rng.normal(0, rng.uniform(0.01, 0.3), n)
    )
    curve = curve * rng.uniform(1e-3, 1e3) + rng.normal(0, 10)
    chunked = DivergenceMonitor(total_steps=n)
    i = 0
    while i < n and not chunked.update(curve[i : i + (size := int(rng.integers(1, 5)))].tolist()):
        i += size
    whole = DivergenceMonitor(total_steps=n)
    whole.update(curve)
    assert (chunked.stop_index, chunked.stop_reason, chunked.detail) == (
        whole.stop_index,
        whole.stop_reason,
        whole.detail,
    )


def ragged(seed: int, n: int = 300, turn: int = 120) -> np.ndarray:
    """A fall, then past `turn` a ragged climb: 6x the noise at once, spikes of 10-1000x, NaN at the end."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 1.0 + 1.3 / (1.0 + np.exp((t - 40) / 6.0)) + np.where(t > turn, 0.01 * (t - turn), 0.0)
    y = level + rng.normal(0.0, 0.08, n) * np.where(t > turn, 6.0, 1.0)
    spikes = rng.choice(np.arange(turn, n - 20), 8, replace=False)
    y[spikes] *= rng.uniform(10.0, 1000.0, spikes.size)
    y[n - 10 :] = np.nan
    return y


@pytest.mark.parametrize("seed", range(6))
def test_monitor_stops_on_a_ragged_climb_long_before_the_nan(seed: int) -> None:
    """Spikes and growing noise past the best must not raise the bar (the noise counts only up to the best)."""
    index, reason = find_divergence(ragged(seed))
    assert reason == "diverged"
    assert 120 < index < 180  # the level is 0.36 above its best (4.5 noise std at the best) from step 156 on


@pytest.mark.parametrize("seed", range(6))
def test_monitor_follows_noise_that_grows_on_the_way_down(seed: int) -> None:
    """Noise that grows 5x while the loss still falls raises the bar: a late, noisy best is no divergence."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, 1000)
    y = 1.0 + 1.3 / (1.0 + np.exp((t - 0.3) * 30)) - 0.2 * t + (0.03 + 0.15 * t) * rng.standard_normal(t.size)
    assert find_divergence(y) == (None, None)


def test_monitor_spans_are_odd() -> None:
    """The monitor's full-window path takes the middle element as the median: that needs odd window spans."""
    from clrfind.analysis.divergence import MEDIAN_SPAN, NOISE_SPAN

    assert MEDIAN_SPAN % 2 == 1 and NOISE_SPAN % 2 == 1


def converged_curve(floor: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An easy task: the loss falls from 1.4 to `floor` by lr 0.03 and stays there up to 10 (nothing diverges)."""
    lrs = lr_ladder(1e-4, 10.0, 120, "exp")
    u = np.log10(lrs)
    y = floor + (1.4 - floor) / (1.0 + np.exp((u + 2.5) / 0.15))
    return lrs, y + 0.002 * floor * np.random.default_rng(seed).standard_normal(lrs.size)


def test_a_converged_test_says_nothing_about_higher_lrs():
    """Its loss at ~0, the model survives any LR: no one-cycle peak at half the last LR (5), a lower confidence,
    and the advice to see higher LRs before the model converges."""
    lrs, losses = converged_curve(floor=0.001)
    b = suggest_bounds(lrs, losses, mode="exp", planned_max_lr=10.0)
    assert_sound(b)
    assert b.peak_lr == b.max_lr < 0.1 and b.confidence == "medium"
    assert "converged" in (b.reason or "") and "--steps" in (b.next_step or "")
    level = suggest_bounds(lrs, converged_curve(floor=1.0)[1] + 1.0, mode="exp", planned_max_lr=10.0)
    assert level.peak_lr > 1.0  # the same shape on a high floor is a level stretch: one cycle may go higher


@pytest.mark.parametrize("second", [0.15, 0.3], ids=["second-fall", "slow-second-fall"])
def test_a_converged_fall_ends_where_it_converged_not_at_a_pause(second):
    """A CTC model's test: the loss first falls 9.6 -> 2.6 (it learns to predict blanks), pauses, then falls again
    to 0.2 (the labels), slower than the first fall, and stays there until it diverges. It converged, but not by
    the first bend, where a quarter of the fall was still to come: max_lr is the second fall's bend, on every
    seed, however slow that fall (a converged test is never read past its end, so its end must be the real one).
    """
    lrs = lr_ladder(1e-5, 1.0, 300, "exp")
    u = np.log10(lrs)
    clean = (
        9.6
        - 7.0 / (1 + np.exp(-(u + 3.6) / 0.1))
        - 2.4 / (1 + np.exp(-(u + 2.4) / second))
        + np.exp((u + 0.6) / 0.1)
    )
    for seed in range(5):
        losses = clean + 0.02 * np.random.default_rng(seed).standard_normal(u.size)
        for adaptive in (None, "Adam"):
            b = suggest_bounds(lrs, losses, mode="exp", adaptive=adaptive)
            assert_sound(b)
            assert "converged" in (b.reason or "")
            assert 2e-3 < b.max_lr < 0.1, (seed, adaptive, b.max_lr)


def test_adaptive_optimizers_peak_at_max_lr():
    """Smith's 2x-from-divergence extrapolation is SGD's; for Adam and the like one cycle peaks at max_lr."""
    lrs, losses = lin_case(0.02, seed=1, c=0.15, w=0.03, d=5.0)
    sgd = suggest_bounds(lrs, losses, planned_max_lr=1.0)
    adam = suggest_bounds(lrs, losses, planned_max_lr=1.0, adaptive="AdamW")
    assert sgd.peak_lr > sgd.max_lr
    assert (adam.base_lr, adam.max_lr) == (sgd.base_lr, sgd.max_lr) and adam.peak_lr == adam.max_lr
    assert "AdamW scales its steps to the gradients" in adam.max_rationale
    # The self-check may raise it half a decade at most, and only where the loss was still falling.
    assert sgd.peak_ceiling_lr is None and adam.peak_ceiling_lr is not None
    limit = (adam.divergence_lr or 1.0) / 2  # nothing diverged up to 1.0: half of it, as for peak_lr
    assert adam.max_lr < adam.peak_ceiling_lr <= min(adam.max_lr * 10**0.5, adam.best_lr, limit)


def test_a_converged_test_leaves_higher_peaks_to_the_self_check() -> None:
    """The curve past a converged loss says nothing about higher LRs, so the exported peak stays at max_lr; the
    trials, which train from the initial weights, may raise it as far as Smith's upper estimate (half the last LR
    here, nothing diverged), and an adaptive optimizer's half a decade at most, as elsewhere."""
    lrs, losses = converged_curve(floor=0.001)
    sgd = suggest_bounds(lrs, losses, mode="exp", planned_max_lr=10.0)
    adam = suggest_bounds(lrs, losses, mode="exp", planned_max_lr=10.0, adaptive="Adam")
    for b in (sgd, adam):
        assert b.peak_lr == b.max_lr < 0.1 and "converged" in (b.reason or "")
    assert sgd.peak_ceiling_lr == pytest.approx(5.0)
    assert adam.peak_ceiling_lr == pytest.approx(adam.max_lr * 10**0.5)
    # a divergence sets the ceiling at half of it
    diverging = np.where(lrs > 1.0, losses + 50.0 * (lrs - 1.0), losses)
    capped = suggest_bounds(lrs, diverging, mode="exp", planned_max_lr=10.0)
    assert capped.divergence_lr is not None and "converged" in (capped.reason or "")
    assert capped.peak_ceiling_lr == pytest.approx(capped.divergence_lr / 2)


def test_no_ceiling_for_an_adaptive_peak_where_the_curve_shows_nothing_above_max_lr() -> None:
    """A loss still falling at the end of the range (max_lr is already the last LR) gives the self-check nowhere
    to raise the peak to."""
    lrs = lr_ladder(1e-4, 1.0, 200, "exp")
    falling = suggest_bounds(
        lrs, 2.0 - 0.3 * np.log10(lrs / 1e-4), mode="exp", planned_max_lr=1.0, adaptive="Adam"
    )
    assert falling.usable and falling.peak_ceiling_lr is None
