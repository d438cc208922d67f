"""From a range-test curve to a (base_lr, max_lr) pair: smoothing, divergence, bounds. Pure numpy.

What the peer LR finders get wrong, and what this module does instead:

- An EMA lags, shifting every feature to a higher LR. `smooth` is a centered local-linear fit: no lag, exact
  on a ramp, and spikes found against a running median get no weight, so an early spike is never "steepest".
- Slopes are taken on the axis the ladder was sampled on (LR for linear, log10 LR for exp), not by index.
- Every decision needs persistence (several consecutive points), never one argmin of a noisy derivative.
- Every threshold is relative to the curve's own fall and noise, so the answer does not change when the loss
  is shifted or scaled (negative losses, losses at 1e-6); nothing is "4x the best loss".
- NaN/inf ends the analysis at that step: nothing after it, and nothing across it, is ever smoothed.
- When the curve gives no reliable answer, the result says why and what to run next, never a forced number.

The tunable constants are module-level names, each with the reason for its value, for a benchmark to tune.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from clrfind.ladder import AUTO_EXP_RATIO, Mode, sample_axis
from clrfind.results import Bounds, Confidence

# -- smoothing --
# Default window as a fraction of the points: wide enough that the slope of a noisy 100-point curve is usable,
# narrow enough that a descent spanning a fifth of the range keeps its shape.
WINDOW_FRAC = 0.08
# Below 5 points a local-linear fit is interpolation, not smoothing (and its noise cannot be measured).
MIN_WINDOW = 5
# Span of the running median that finds spikes: 7 points reject runs of up to 3 outliers, even at the ends.
OUTLIER_SPAN_MIN = 7
# Longer spans would start treating short real features (a sharp blow-up) as outliers.
OUTLIER_SPAN_MAX = 11
# Bisquare cutoff in typical residuals, the classic LOWESS value: Gaussian noise keeps ~all its weight.
OUTLIER_CUTOFF = 6.0
# Residuals under 1% of the curve's spread are never outliers, so noise-free curves are fitted as they are.
OUTLIER_FLOOR = 0.01
# Outliers keep this much weight, so a window holding nothing else (a blow-up at the end) is still fitted.
OUTLIER_MIN_WEIGHT = 1e-3

# -- divergence (online monitor and its offline twin) --
# Causal median of the last 5 raw losses: ignores spikes of 1-2 steps and lags a real blow-up by only 2 steps.
MEDIAN_SPAN = 5
# Steps whose losses only set the start level; nothing can be declared diverged before this.
WARMUP_STEPS = 10
# The step noise is the median |difference| over 31 losses; the bar uses its largest value up to the step where
# the best level was reached (at least one full window): it follows noise that grows with the LR on the way
# down, but a ragged stretch or blow-up past the best cannot raise the bar it is judged against.
NOISE_SPAN = 31
# The best level must be held for 5 steps (of the causal median): a few unusually easy batches are no best.
HOLD_STEPS = 5
# Diverged once the smoothed loss gave back half of its fall: a classifier that blows up collapses to the
# prior, i.e. back to the *start* level, so a rule needing a rise above the start (or 4x the best) misses it.
RISE = 0.5
# ... and the rise must also exceed 4.5 step-noise std, so a flat noisy curve (no fall yet) does not "diverge":
# no false alarm in 200 flat Gaussian or t(4) curves of 3,000 steps (4.0 had one).
NOISE_RISE = 4.5
# Relative float32 resolution: changes below 1e-6 of the loss's magnitude are rounding, not signal.
REL_EPS = 1e-6
# Median |x[t] - x[t-1]| of Gaussian noise is 0.954 sigma (sqrt(2) * 0.6745).
_DIFF_MAD_TO_SIGMA = 0.6745 * math.sqrt(2.0)
_MAD_TO_SIGMA = 1.4826
# Kernels longer than this are applied through the FFT.
_DIRECT_KERNEL = 64

# -- bounds --
# Fewer finite points than this cannot show a start, a descent and an end ...
MIN_POINTS = 10
# ... and under this many, noise can fake a fall now and then (1-3% of pure-noise curves): at most "medium".
SHORT_POINTS = 30
# A fall (or rise) counts only above 7 std of the smoothed curve's noise: between medians of pure noise, start
# to minimum, it stays below that in 99.9% of simulated flat curves of 30 to 10,000 points.
FLAT_SIGMAS = 7.0
# A fall of more than 3 of those std is too weak for bounds but too strong to claim the loss "never falls".
HINT_SIGMAS = 3.0
# The fall starts clearly once the smoothed curve is 5% of its total fall below the start, and stays there,
START_DROP = 0.05
# ... and at least 4 smoothed-noise std below it, so plateau noise cannot fake an early start.
START_SIGMAS = 4.0
# The clear descent ends where the slope (on the sampled axis) is flatter than 20% of the steepest slope for
# several points: for a sigmoid-shaped fall that is 95% of the way down, a bit before the minimum. The quality
# benchmark tried 0.0 (the end of the fall itself): better on seeds 0-2 (0.978) but worse on held-out seeds
# (0.809 vs 0.839), so 0.2 stays.
STOP_SLOPE_FRAC = 0.2
# Persistence of slope decisions, in points: at least this many, else half the smoothing window.
MIN_PERSIST = 2
# Slope decisions need the steepest slope 8x above the slope's own noise; the window widens (x1.5 a time, up
# to 30% of the points) until it is.
SLOPE_SNR = 8.0
MAX_WINDOW_FRAC = 0.3
# Step noise (raw-minus-smoothed robust std) relative to the total fall: above these, confidence drops to
# medium / low. (A fall hidden by noise altogether fails the FLAT_SIGMAS test first and gets no bounds.)
NOISY_MEDIUM = 0.25
NOISY_LOW = 0.5
# base_lr at most max_lr / 4: Smith (2017) sets base 3-4x below max, and the visible start of the fall lags
# the LR where learning starts (the loss needs steps to move), so a later start than max/4 is not trusted.
MIN_RATIO = 4.0
# ... and at least max_lr / 20: on an exponential ladder the visible start of the fall can sit decades below
# max_lr, and a cycle whose low end is that far down spends half its time barely training (quality benchmark:
# iris and classification gained most from this cap).
MAX_RATIO = 20.0
# max_lr goes past the end of the fall, toward the divergence LR / 2 (Smith: the best LR is within 2x of the
# largest that still converges), no further than the curve stays level: within 25% of its fall (and 4 noise std)
# of its minimum.
DIVERGENCE_HEADROOM = 2.0
FLAT_TOLERANCE = 0.25
# How far, on the log axis, max_lr moves from the end of the fall toward divergence_lr / 2 (0.5: log midpoint).
TOWARD_DIVERGENCE = 0.5
# peak_lr, one cycle's top, goes all the way (1.0): a single cycle spends little time at its peak and anneals
# afterwards, and Smith (2018) peaks it at the largest LR the test shows still training. In the quality benchmark
# one-cycle at this peak scored 0.989 / 0.993 / 1.006 / 1.027 on seeds 0-2 / 3-5 / 6-8 / 9-11 against 0.978 /
# 0.946 / 0.977 / 1.015 at max_lr; triangular CLR at this peak fell to 0.848 (seeds 0-2), so max_lr stays.
PEAK_TOWARD_DIVERGENCE = 1.0
# When nothing diverged, the largest LR that still converges is at least the range's last LR, so one cycle may
# peak this far toward last_lr / 2, no further than the curve stays level (0: at max_lr, as before). Quality
# benchmark: 0.988 / 0.993 / 1.001 / 1.027 against 0.989 / 0.993 / 1.006 / 1.027 at max_lr; it lifts iris on seeds
# 0-2 (0.85 -> 0.92) and costs circles on two seeds (1.27 -> 1.18 on 0-2, 0.99 -> 0.96 on 6-8).
PEAK_WITHOUT_DIVERGENCE = 1.0
# Advice for a range that was too narrow or too high: move the end by this factor.
RANGE_FACTOR = 10.0

_LEVELS: tuple[Confidence, ...] = ("none", "low", "medium", "high")


def _fmt(x: float) -> str:
    """Numbers in rationales: 2 significant digits."""
    return f"{x:.2g}"


# ============================================================================================================
# smoothing
# ============================================================================================================


def _default_window(n: int) -> int:
    """Odd window of about WINDOW_FRAC * n points, at least MIN_WINDOW.

    Not capped: the slope of a denser curve is smaller per point, so the window must grow with n to keep the
    slope's noise in proportion.
    """
    return max(round(WINDOW_FRAC * n) | 1, MIN_WINDOW)


def _kernel(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and tricube weights of a centered window: smooth taper, so the fit has no ringing."""
    d = np.arange(-half, half + 1, dtype=float)
    return d, (1.0 - (np.abs(d) / (half + 1)) ** 3) ** 3


def _correlate(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """out[i] = sum_k a[i + k] * f[k + half]: a centered weighted sum (len(a) >= len(f)).

    Direct for short kernels; through the FFT for long ones, which keeps a 10,000-point curve with an
    800-point window at O(n log n).
    """
    if f.size <= _DIRECT_KERNEL:
        return np.convolve(a, f[::-1], mode="same")
    half = f.size // 2
    size = 1 << int(a.size + f.size - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(f[::-1], size), size)
    return full[half : half + a.size]


@dataclass(frozen=True)
class _Fit:
    """A local-linear fit: its level (the smoothed curve), slope per index, and the window it used."""

    level: np.ndarray
    slope: np.ndarray
    half: int

    def gains(self) -> tuple[float, float, float]:
        """(level, residual, slope-per-index) std of the interior fit, for white noise of std 1.

        Used to turn the residual spread into the raw step noise and to know how much noise the smoothed curve
        and its slope still carry, so thresholds scale with the data instead of being fixed numbers.
        """
        d, k = _kernel(self.half)
        s0, k2 = k.sum(), (k * k).sum()
        level = math.sqrt(k2) / s0
        residual = math.sqrt(max(1.0 - 2.0 * k[self.half] / s0 + k2 / s0**2, 1e-12))
        slope = math.sqrt((k * k * d * d).sum()) / (k * d * d).sum() if self.half else math.inf
        return level, residual, slope


def _local_linear(y: np.ndarray, w: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted centered local-linear regression: exact on straight lines, at the ends and across gaps too.

    `w` is 0 where a point is missing or an outlier. Where fewer than two points carry weight the fit falls
    back to the weighted mean (slope 0); where none do it is NaN.
    """
    d, k = _kernel(half)
    yw = np.where(w > 0, y, 0.0) * w
    s0, s1, s2 = _correlate(w, k), _correlate(w, k * d), _correlate(w, k * d * d)
    t0, t1 = _correlate(yw, k), _correlate(yw, k * d)
    det = s0 * s2 - s1 * s1
    with np.errstate(divide="ignore", invalid="ignore"):
        linear = det > 1e-9 * s0 * s2
        level = np.where(linear, (s2 * t0 - s1 * t1) / det, t0 / s0)
        slope = np.where(linear, (s0 * t1 - s1 * t0) / det, 0.0)
    level[s0 <= 0] = np.nan
    return level, slope


def _outlier_weights(y: np.ndarray, mask: np.ndarray, window: int) -> np.ndarray:
    """Bisquare weights from each point's distance to the running median of its neighbours; 0 if missing.

    The median is taken over the finite points only, with windows kept full-size at the ends, so a spike in
    the first steps is judged against clean neighbours. A run of outliers shorter than half the span gets no
    weight; longer features (a real cliff or blow-up) move the median and are kept.
    """
    weights = np.zeros(y.size)
    idx = np.flatnonzero(mask)
    values = y[idx]
    n = values.size
    span = min(max(window, OUTLIER_SPAN_MIN), OUTLIER_SPAN_MAX, n)
    span -= 1 - span % 2
    if span < 3:
        weights[idx] = 1.0
        return weights
    # Windows stay full-size at the ends, where the window's median sits a few points away: it is carried to
    # the point along the window's median step (exact on a ramp; a spike moves at most two of the steps).
    medians = np.median(sliding_window_view(values, span), axis=1)
    steps = np.median(sliding_window_view(np.diff(values), span - 1), axis=1)
    first = np.clip(np.arange(n) - span // 2, 0, n - span)
    resid = values - medians[first] - steps[first] * (np.arange(n) - first - span // 2)
    # The typical residual, or the typical step between points if larger: next to a spike the median moves by
    # one rank, and on a noise-free curve that one step must not make clean points look like outliers.
    typical = max(float(np.median(np.abs(resid))), float(np.median(np.abs(np.diff(values)))))
    spread = float(np.quantile(values, 0.95) - np.quantile(values, 0.05))
    cutoff = max(OUTLIER_CUTOFF * typical, OUTLIER_FLOOR * spread)
    if cutoff <= 0:
        weights[idx] = 1.0
        return weights
    u = resid / cutoff
    weights[idx] = np.maximum(np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0), OUTLIER_MIN_WEIGHT)
    return weights


def _fit(values: np.ndarray, window: int | None = None) -> _Fit:
    """Robust local-linear fit of evenly sampled values; non-finite inputs are missing and come out NaN."""
    y = np.asarray(values, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {y.shape}")
    mask = np.isfinite(y)
    if window is None:
        window = _default_window(y.size)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    half = min(window // 2, (y.size - 1) // 2)
    if half <= 0 or mask.sum() < 3:
        return _Fit(np.where(mask, y, np.nan), np.zeros(y.size), 0)
    weights = _outlier_weights(y, mask, 2 * half + 1)
    centre = float(np.median(y[mask]))  # fit around 0: the sums stay well conditioned for shifted losses
    level, slope = _local_linear(y - centre, weights, half)
    level += centre
    level[~mask] = np.nan
    slope[~mask] = np.nan
    return _Fit(level, slope, half)


def smooth(values: np.ndarray, window: int | None = None) -> np.ndarray:
    """Centered (zero-phase) robust smoother for evenly sampled points; same length as the input.

    A local-linear fit with a tricube window: it does not lag (a straight ramp comes out unchanged, ends
    included), and isolated spikes get no weight. Non-finite inputs are treated as missing, never spread to
    their neighbours, and come out as NaN at their own index. `window` None picks ~8% of the points (odd, at
    least 5).
    """
    return _fit(values, window).level


# ============================================================================================================
# divergence
# ============================================================================================================


def _median_sorted(ordered: list[float]) -> float:
    mid = len(ordered) >> 1
    return ordered[mid] if len(ordered) & 1 else 0.5 * (ordered[mid - 1] + ordered[mid])


class DivergenceMonitor:
    """Online divergence check, fed the raw per-step losses in chunks of any size (a whole curve too).

    A non-finite loss stops the run at once, at its own step (reason "non-finite"). Otherwise the rule runs on
    `s`, the causal median of the last MEDIAN_SPAN losses. The median of the first WARMUP_STEPS losses is the
    start level `s0`, and nothing is declared before that; `best` is the lowest level `s` held for HOLD_STEPS
    steps, and `noise` is the step noise (median |difference| over NOISE_SPAN steps), its largest value up to
    the step where that best was reached. A step is "over" when

        s > best + max(RISE * (s0 - best), NOISE_RISE * noise, REL_EPS * max(|s0|, |best|))

    i.e. the loss gave back half of its fall and more than its noise at the best allows; the run diverged once
    `persistence` consecutive steps are over. Everything is relative to the curve's own fall and noise, so it
    works the same for negative and for tiny losses. The noise stops growing at the best: a curve that turns
    ragged past it (the diverging part) must not raise its own bar, or its spikes would hide the divergence
    until the loss is non-finite.

    Plain Python on purpose: the engine feeds a few losses per call, where numpy's per-call overhead would cost
    more than a small model's training step. The running medians are sorted windows kept with `bisect`, and the
    whole chunk is processed in one loop over local variables (no Python call per loss): every call and attribute
    lookup saved is paid back once per training step. `quiet_band` tells a caller which losses cannot lead to a
    stop, so the engine can feed long chunks while the curve is quiet.

    Attributes:
        stop_index: the step where the stop was confirmed (for "non-finite": the step of the non-finite loss).
        stop_reason: "diverged", "non-finite", or None while running.
        detail: one line saying what was seen, for the run summary.
    """

    def __init__(self, *, total_steps: int, persistence: int = 3, lrs: np.ndarray | None = None) -> None:
        """`total_steps` caps the losses fed; `lrs` (the ladder), if given, names LRs in `detail`."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if persistence < 1:
            raise ValueError(f"persistence must be >= 1, got {persistence}")
        self.total_steps = total_steps
        self.persistence = persistence
        self._lrs = None if lrs is None else np.asarray(lrs, dtype=float).ravel()
        if self._lrs is not None and self._lrs.size != total_steps:
            raise ValueError(f"lrs has {self._lrs.size} entries, total_steps is {total_steps}")
        self._seen = 0
        self._low = math.inf  # the lowest loss fed, for quiet_band
        # Running medians: the window in arrival order and the same values sorted.
        self._raw: deque[float] = deque(maxlen=MEDIAN_SPAN)
        self._diffs: deque[float] = deque(maxlen=NOISE_SPAN)
        self._diffs_sorted: list[float] = []
        self._levels: deque[float] = deque(maxlen=HOLD_STEPS)
        self._last = 0.0
        self._head: list[float] = []  # warm-up losses, until s0 is known
        self._start: float | None = None
        self._best = math.inf
        self._peak = 0.0  # the largest median |difference| so far (full windows)
        self._noise = 0.0  # ... as it was when `best` was reached
        self._run = 0
        self._bar: float | None = None  # best + allowed, cached until the best or the noise moves
        self.stop_index: int | None = None
        self.stop_reason: Literal["diverged", "non-finite"] | None = None
        self.detail = ""

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def quiet_band(self) -> tuple[float, float]:
        """(low, high): while every new loss lies in this band, no stop can come, so a caller may feed them later.

        A stop needs a non-finite loss, or a level (median of MEDIAN_SPAN losses, so at least three of them) above
        the bar. The bar never falls below `high`: the best level is at least the lowest loss so far (`low`), the
        noise it uses never falls below min(noise, peak) from here on, and the bar is at least the best plus either
        RISE of the fall or NOISE_RISE noise. A loss below `low` lowers that floor: see `rebased_band`.
        Empty (inf, -inf) until the warm-up and the first full noise window are behind, and after a stop.
        """
        if not self._band_known:
            return math.inf, -math.inf
        return self._low, self._band_top(self._low)

    def rebased_band(self, held: list[float]) -> tuple[float, float] | None:
        """The quiet band after a new lowest loss, `held[-1]` (`held`: the losses not fed yet), or None if the
        losses just before it already lie above the lowered top, so a stop may be near: feed them soon."""
        low = held[-1]
        if not self._band_known or low == -math.inf:
            return None
        high = self._band_top(low)
        # A level over the bar needs 3 of 5 losses over it; if the newest of them came before this one, it is one
        # of the last two, and a stop confirmed 3 steps later still has it in its window: check the last four.
        recent = held[-MEDIAN_SPAN:-1]
        if len(recent) < MEDIAN_SPAN - 1:
            recent = [*self._raw, *held[:-1]][1 - MEDIAN_SPAN :]
        return None if max(recent, default=low) > high else (low, high)

    @property
    def _band_known(self) -> bool:
        """The start level and a full noise window are known, and the run goes on."""
        return self._start is not None and self._seen > NOISE_SPAN and self.stop_reason is None

    def _band_top(self, low: float) -> float:
        noise = min(self._noise, self._peak) * (NOISE_RISE / _DIFF_MAD_TO_SIGMA)
        return max((1.0 - RISE) * low + RISE * self._start, low + noise)  # type: ignore[operator]

    def update(self, losses: np.ndarray | list[float]) -> bool:
        """Feed the next raw losses; True once the run should stop (later calls are no-ops returning True)."""
        if self.stop_reason is not None:
            return True
        values = losses.ravel().tolist() if isinstance(losses, np.ndarray) else losses
        if self._seen + len(values) > self.total_steps:
            raise ValueError(
                f"fed {self._seen + len(values)} losses to a monitor of {self.total_steps} steps"
            )
        if values:
            # A NaN here can only make `low` NaN or leave it: either way the band is empty or the run stops.
            self._low = min(self._low, min(values))
        isfinite, insort, bisect_left = math.isfinite, bisect.insort, bisect.bisect_left
        raw, diffs, diffs_sorted = self._raw, self._diffs, self._diffs_sorted
        levels, head, persistence = self._levels, self._head, self.persistence
        step, last, start, best = self._seen, self._last, self._start, self._best
        peak, noise, run, bar = self._peak, self._noise, self._run, self._bar
        mid_raw, mid_diffs = MEDIAN_SPAN >> 1, NOISE_SPAN >> 1
        hold_from = MEDIAN_SPAN + HOLD_STEPS - 2  # the first step whose held level spans full windows
        for v in values:
            if not isfinite(v):
                self._stop(step, "non-finite", f"loss was {v} at step {step}{self._at(step, ' (lr {})')}")
                step += 1
                break
            raw.append(v)  # the last MEDIAN_SPAN losses; the level is their median
            if step > NOISE_SPAN:
                # Every window is full: the common case, kept to as few operations as possible. Both spans are
                # odd (a test checks it), so each median is the middle element.
                level = sorted(raw)[mid_raw]
                del diffs_sorted[bisect_left(diffs_sorted, diffs[0])]
                d = abs(v - last)
                diffs.append(d)  # drops diffs[0]
                insort(diffs_sorted, d)
                # The window's median was <= peak before; swapping in a difference <= peak cannot lift it above.
                if d > peak and diffs_sorted[mid_diffs] > peak:
                    peak = diffs_sorted[mid_diffs]
            else:
                level = _median_sorted(sorted(raw))
                # Step noise from the median |difference| (0 until there is a difference).
                local = 0.0
                if step:
                    d = abs(v - last)
                    diffs.append(d)
                    insort(diffs_sorted, d)
                    local = _median_sorted(diffs_sorted)
                if step == NOISE_SPAN:
                    peak = local
                if start is None:
                    head.append(v)
                    if len(head) == WARMUP_STEPS:
                        start = statistics.median(head)
                        head.clear()
            levels.append(level)
            # The held level is the max of the last HOLD_STEPS levels, so it can only beat the best when the
            # newest level does.
            if level < best and step >= hold_from:
                held = max(levels)
                if held < best:
                    best, noise, bar = held, peak, None
            if step <= NOISE_SPAN:
                # Too few differences for a peak: the local noise as it stands; at the first full window, a
                # best found early still gets its noise from that window.
                noise = local if step < NOISE_SPAN else max(noise, peak)
                bar = None
            last = v
            # Over the bar? `allowed` is never negative, so a level at or below the best needs no bar.
            if level <= best or step < WARMUP_STEPS or start is None:
                run = 0
                step += 1
                continue
            if bar is None:  # the bar moves only with the best and the noise (start is fixed by now)
                bar = best + self._allowed(start, best, noise)
            run = run + 1 if level > bar else 0
            if run >= persistence:
                self._stop(step, "diverged", self._describe(step, level, best, start, noise))
                step += 1
                break
            step += 1
        self._seen, self._last, self._start, self._best = step, last, start, best
        self._peak, self._noise, self._run, self._bar = peak, noise, run, bar
        return self.stop_reason is not None

    # -- internals --

    def _at(self, step: int, template: str) -> str:
        return template.format(_fmt(self._lrs[step])) if self._lrs is not None else ""

    def _stop(self, step: int, reason: Literal["diverged", "non-finite"], detail: str) -> None:
        self.stop_index, self.stop_reason, self.detail = step, reason, detail

    @staticmethod
    def _allowed(start: float, best: float, noise: float) -> float:
        """How far the level may rise above the best before it counts as over."""
        return max(
            RISE * (start - best),
            NOISE_RISE / _DIFF_MAD_TO_SIGMA * noise,
            REL_EPS * max(abs(start), abs(best)),
        )

    def _describe(self, step: int, s: float, best: float, start: float, noise: float) -> str:
        allowed = self._allowed(start, best, noise)
        fall, sigma = start - best, noise / _DIFF_MAD_TO_SIGMA
        if allowed <= RISE * fall:
            margin = f"{RISE:g}x its fall of {_fmt(fall)}"
        elif allowed <= NOISE_RISE / _DIFF_MAD_TO_SIGMA * noise:  # as `update` computes it
            margin = f"{NOISE_RISE:g}x the step noise {_fmt(sigma)} at the best"
        else:
            margin = "float32 resolution"
        where = self._at(step, "lr {}") or f"step {step}"
        # Named for what it is: the plot's smoothed curve is another (non-causal) smoother with another minimum.
        rose = f"median of {MEDIAN_SPAN} losses {_fmt(s)} rose above {_fmt(best + allowed)}"
        rose += f" (best median {_fmt(best)} + {margin})"
        return f"{rose} for {self.persistence} steps at {where}"


def find_divergence(losses: np.ndarray) -> tuple[int | None, str | None]:
    """Offline twin of `DivergenceMonitor` over a whole raw-loss array: (index, reason) or (None, None).

    It *is* the monitor, fed everything at once: analysing a saved curve agrees with what stopped the run.
    """
    x = np.asarray(losses, dtype=float).ravel()
    if x.size == 0:
        return None, None
    monitor = DivergenceMonitor(total_steps=x.size)
    monitor.update(x)
    return monitor.stop_index, monitor.stop_reason


# ============================================================================================================
# bounds
# ============================================================================================================


@dataclass(frozen=True)
class _Quantity:
    """How to talk about the curve: the loss falls when it improves, accuracy rises."""

    name: str
    improving: str  # "falling" / "rising"
    improves: str  # "falls" / "rises"
    improvement: str  # "fall" / "rise"
    worsened: str  # what a divergence looks like: "diverged" / "fell"
    more_points: str  # next step when there are too few points


_LOSS = _Quantity("loss", "falling", "falls", "fall", "diverged", "run more steps: --steps 300")


def _metric_quantity(name: str, higher_is_better: bool) -> _Quantity:
    more = "evaluate the metric more often or run more steps (at least 10 points)"
    if higher_is_better:
        return _Quantity(name, "rising", "rises", "rise", "fell", more)
    return _Quantity(name, "falling", "falls", "fall", "diverged", more)


@dataclass(frozen=True)
class _Cut:
    """Where the analysed part of the curve ends, and why."""

    end: int  # number of points analysed
    index: int | None  # step of the divergence (or non-finite value), when there was one
    kind: Literal["diverged", "non-finite"] | None


@dataclass(frozen=True)
class _Smoothed:
    """A smoothed curve, its slope on the sampled axis, and the noise each still carries."""

    level: np.ndarray
    slope: np.ndarray  # d level / d sampled axis
    half: int
    level_noise: float
    slope_noise: float
    i_min: int

    def steepest(self) -> int:
        """Index of the steepest fall before the minimum, clear of the one-sided (noisy) fits at the start."""
        lo = min(self.half, self.i_min)
        return lo + int(np.argmin(self.slope[lo : self.i_min + 1]))


@dataclass(frozen=True)
class _Stats:
    """The curve's robust levels (medians of raw points) and step noise: what every threshold scales with."""

    noise: float  # raw step noise (robust std of raw - smoothed, corrected for the fit)
    start: float  # median of the first window of raw points
    fall: float  # start minus the median around the smoothed minimum
    rise: float  # median of the last window minus the median around the smoothed minimum
    magnitude: float  # largest |level|, for the float32 floor


@dataclass(frozen=True)
class _Descent:
    i_start: int | None  # first point of the clear fall; None when the fall has no clear start
    i_end: int  # last point of the clear fall (never past the minimum)
    still_falling: bool  # the fall did not end inside the range


def _finite_prefix(axis: np.ndarray, y: np.ndarray) -> int:
    """Length of the curve before its first non-finite loss or LR: nothing after it is trusted."""
    bad = np.flatnonzero(~(np.isfinite(axis) & np.isfinite(y)))
    return int(bad[0]) if bad.size else y.size


def _cut(y: np.ndarray, n_finite: int, stop_reason: str) -> _Cut:
    """Analyse up to the divergence (inclusive) or up to the first non-finite point (exclusive)."""
    index, _ = find_divergence(y[:n_finite])
    if index is not None:
        return _Cut(index + 1, index, "diverged")
    if n_finite < y.size:
        return _Cut(n_finite, n_finite, "non-finite")
    if stop_reason in ("diverged", "non-finite") and n_finite:
        # The run says it stopped on a divergence its own monitor saw at the last recorded step.
        return _Cut(n_finite, n_finite - 1, "diverged" if stop_reason == "diverged" else "non-finite")
    return _Cut(n_finite, None, None)


def _smoothed(
    axis: np.ndarray, y: np.ndarray, window: int, noise: float | None = None
) -> tuple[_Smoothed, float]:
    """(curve, step noise) for `y` fitted with `window`; the noise comes from the residuals unless given."""
    fit = _fit(y, window)
    level_gain, residual_gain, slope_gain = fit.gains()
    if noise is None:
        resid = y - fit.level
        noise = _MAD_TO_SIGMA * float(np.median(np.abs(resid - np.median(resid)))) / residual_gain
    step = np.gradient(axis)
    curve = _Smoothed(
        level=fit.level,
        slope=fit.slope / step,  # chain rule: per index -> per unit of the sampled axis
        half=fit.half,
        level_noise=noise * level_gain,
        slope_noise=noise * slope_gain / float(np.median(np.abs(step))),
        i_min=int(np.argmin(fit.level)),
    )
    return curve, noise


def _level_near(y: np.ndarray, i: int, half: int) -> float:
    """Median of the raw points in the window around index i, kept inside the curve."""
    lo = min(max(i - half, 0), max(y.size - 2 * half - 1, 0))
    return float(np.median(y[lo : lo + 2 * half + 1]))


def _measure(axis: np.ndarray, y: np.ndarray) -> tuple[_Smoothed, _Stats]:
    """Smooth with the default window and take the curve's robust levels and noise.

    The levels are medians of raw points around the start, the minimum and the end: the extremes of the
    smoothed curve would add its noise (worst at the one-sided ends) to every fall.
    """
    curve, noise = _smoothed(axis, y, _default_window(y.size))
    start, bottom = _level_near(y, 0, curve.half), _level_near(y, curve.i_min, curve.half)
    stats = _Stats(
        noise=noise,
        start=start,
        fall=start - bottom,
        rise=_level_near(y, y.size - 1, curve.half) - bottom,
        magnitude=float(np.abs(curve.level).max()),
    )
    return curve, stats


def _refine(axis: np.ndarray, y: np.ndarray, curve: _Smoothed, noise: float) -> _Smoothed:
    """Widen the window until the steepest slope stands SLOPE_SNR times above the slope's own noise.

    As little smoothing as the noise allows: a clean curve keeps its shape, a noisy one gets the averaging its
    slope needs before any slope decision is made on it.
    """
    widest = max(round(MAX_WINDOW_FRAC * y.size) | 1, 2 * curve.half + 1)
    while -curve.slope[curve.steepest()] < SLOPE_SNR * curve.slope_noise and 2 * curve.half + 1 < widest:
        curve, _ = _smoothed(axis, y, min(round(3 * curve.half + 1.5) | 1, widest), noise)
    return curve


def _stands_out(delta: float, curve: _Smoothed, stats: _Stats) -> bool:
    """True when a change of the curve is more than its smoothed noise and more than float32 rounding."""
    return delta > FLAT_SIGMAS * curve.level_noise and delta > REL_EPS * stats.magnitude


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """Length of the run of True values starting at each index (0 where mask is False)."""
    idx = np.arange(mask.size)
    next_false = np.minimum.accumulate(np.where(mask, mask.size, idx)[::-1])[::-1]
    return next_false - idx


def _descent(curve: _Smoothed, stats: _Stats) -> _Descent | None:
    """Find the clear fall: where it starts and where it ends (None if the smoothed curve never falls)."""
    level, slope, i_min = curve.level, curve.slope, curve.i_min
    n = level.size
    persist = max(MIN_PERSIST, curve.half)
    i_steep = curve.steepest()
    steepest = slope[i_steep]
    if not steepest < 0:
        return None
    slow = slope > STOP_SLOPE_FRAC * steepest  # not falling clearly (flat, slowing or rising)

    # End: the first point past the steepest one from which the slope stays slow for `persist` points (or up
    # to the end of the curve, if at least 2 are left).
    run = _run_lengths(slow)
    stops = (run >= persist) | ((np.arange(n) + run == n) & (run >= min(persist, 2)))
    stops[: i_steep + 1] = False
    after = np.flatnonzero(stops)
    still_falling = after.size == 0 and i_min >= n - persist
    i_end = i_min if after.size == 0 else min(int(after[0]) - 1, i_min)

    # Start: the first point below the start level by a clear margin for good, and only after a plateau (a
    # slow stretch of `persist` points) that shows the fall did not begin before the first step.
    threshold = stats.start - max(START_DROP * stats.fall, START_SIGMAS * curve.level_noise)
    above = np.flatnonzero(level[: i_steep + 1] >= threshold)
    i_start: int | None = int(above[-1]) + 1 if above.size else 0
    plateau = bool((_run_lengths(slow[:i_start]) >= persist).any())
    if not plateau or i_start >= i_end:
        i_start = None
    return _Descent(i_start, i_end, still_falling)


@dataclass
class _Verdict:
    """Confidence and the reasons / next steps that lowered it, collected as the checks run."""

    confidence: Confidence = "high"
    reasons: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    def cap(self, most: Confidence, reason: str | None = None, step: str | None = None) -> None:
        self.confidence = min(self.confidence, most, key=_LEVELS.index)
        if reason:
            self.reasons.append(reason)
        if step:
            self.steps.append(step)

    def lower(self, reason: str, step: str) -> None:
        """One level down, never below "low": the curve still gave bounds."""
        self.cap(_LEVELS[max(_LEVELS.index(self.confidence) - 1, 1)], reason, step)


@dataclass(frozen=True)
class _Context:
    """What every message needs: the LRs, how to name the curve and its divergence, the advice for a rerun."""

    lrs: np.ndarray
    what: _Quantity
    method: str
    cut: _Cut
    stop_reason: str
    planned_max_lr: float | None
    mode: str

    @property
    def divergence_lr(self) -> float | None:
        index = self.cut.index
        return float(self.lrs[index]) if index is not None and index < self.lrs.size else None

    @property
    def worse(self) -> str:
        return "became non-finite" if self.cut.kind == "non-finite" else self.what.worsened

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason in ("interrupted", "error")

    @property
    def end(self) -> float:
        return self.planned_max_lr if self.planned_max_lr is not None else float(self.lrs[-1])

    def wider(self) -> str:
        return f"--max-lr {_fmt(RANGE_FACTOR * self.end)}{self._as_exp(self.lrs[0], RANGE_FACTOR * self.end)}"

    def lower(self) -> str:
        start = self.lrs[0] / RANGE_FACTOR
        return f"--min-lr {_fmt(start)}{self._as_exp(start, self.end)}"

    def _as_exp(self, low: float, high: float) -> str:
        """On a linear ladder over decades a lower start changes nothing: the second step stays near max/steps."""
        if self.mode != "linear" or high / low <= AUTO_EXP_RATIO:
            return ""
        return " --mode exp (a linear ladder over that range puts almost every step in its top decade)"

    def no_bounds(self, reason: str, next_step: str) -> Bounds:
        return Bounds(
            method=self.method,
            confidence="none",
            reason=reason,
            next_step=next_step,
            divergence_lr=self.divergence_lr,
        )


def _unreliable(ctx: _Context, curve: _Smoothed | None, stats: _Stats | None) -> Bounds | None:
    """No bounds but a reason and a next step, when the curve is too short, flat or never improves."""
    what, div_lr = ctx.what, ctx.divergence_lr
    if curve is None or stats is None:
        if ctx.cut.end == 0 and ctx.cut.kind == "non-finite":
            return ctx.no_bounds(
                f"the very first {what.name} is non-finite, before any LR could matter",
                "check the model, the data and the loss function on one batch (e.g. `clrfind check`)",
            )
        if div_lr is not None:
            return ctx.no_bounds(
                f"only {ctx.cut.end} finite points before the {what.name} {ctx.worse} at lr {_fmt(div_lr)}",
                f"the range starts too high: rerun with --max-lr {_fmt(div_lr)} so all steps land below it",
            )
        return ctx.no_bounds(f"only {ctx.cut.end} finite points (need {MIN_POINTS})", what.more_points)
    if _stands_out(stats.fall, curve, stats):
        return None
    if _stands_out(stats.rise, curve, stats) and stats.fall < HINT_SIGMAS * curve.level_noise:
        ends = f" and {ctx.worse} at lr {_fmt(div_lr)}" if div_lr is not None else ""
        return ctx.no_bounds(
            f"the {what.name} never {what.improves}: it gets worse from the start{ends}",
            f"the range starts too high: lower the start 10x, e.g. {ctx.lower()}",
        )
    hidden = (
        f"no {what.improvement} of the {what.name} stands out of its noise "
        f"(change {_fmt(stats.fall)}, step noise {_fmt(stats.noise)})"
    )
    if_noisy = "; if the curve is mostly noise, use a larger batch or more steps"
    if div_lr is not None:
        return ctx.no_bounds(
            f"{hidden} before it {ctx.worse} at lr {_fmt(div_lr)}",
            f"the range may start too high: lower the start 10x, e.g. {ctx.lower()}{if_noisy}",
        )
    return ctx.no_bounds(
        f"the {what.name} is flat: {hidden}",
        f"widen the range: raise the end 10x, e.g. {ctx.wider()}{if_noisy}",
    )


def _flat_until(curve: _Smoothed, stats: _Stats, descent: _Descent) -> int:
    """Last index, from the end of the descent on, before the smoothed curve rises clearly above its minimum."""
    level, i_min = curve.level, curve.i_min
    tolerance = max(FLAT_TOLERANCE * stats.fall, START_SIGMAS * curve.level_noise)
    risen = np.flatnonzero(level[i_min:] > level[i_min] + tolerance)
    last = i_min + int(risen[0]) - 1 if risen.size else level.size - 1
    return max(last, descent.i_end)


def _toward_divergence(end_lr: float, div_lr: float, weight: float) -> float:
    """`weight` of the way (on the log axis) from the end of the fall to divergence_lr / DIVERGENCE_HEADROOM."""
    return end_lr * (div_lr / DIVERGENCE_HEADROOM / end_lr) ** weight


def _one_cycle_peak(
    floor: float, end_lr: float, limit_lr: float, weight: float, flat_lr: float
) -> tuple[float, str]:
    """(peak_lr, rationale suffix): `weight` of the way from the end of the fall toward limit_lr / 2, no further
    than the level stretch and never below `floor` (max_lr); the suffix is empty when the peak is the floor."""
    peak = max(floor, min(_toward_divergence(end_lr, limit_lr, weight), flat_lr))
    if peak <= floor:
        return peak, ""
    top = "the end of the level stretch" if peak == flat_lr else f"{_fmt(limit_lr)}/{DIVERGENCE_HEADROOM:g}"
    return peak, f"; one-cycle peak_lr {_fmt(peak)} ({top})"


def _max_bound(
    ctx: _Context, curve: _Smoothed, stats: _Stats, descent: _Descent, verdict: _Verdict
) -> tuple[float, float, str]:
    """(max_lr, peak_lr, rationale): past the end of the clear descent toward where it diverged, while level.

    The end of the clear fall is a lower estimate of a good max_lr; Smith (2017) gives an upper one, "the optimum
    LR is usually within a factor of two of the largest LR that still converges", i.e. divergence_lr / 2. max_lr
    is their log midpoint, peak_lr (for one cycle) the upper one itself, but neither goes where the smoothed
    curve has already risen clearly above its minimum. Otherwise both stay at the end of the fall.
    """
    what, div_lr = ctx.what, ctx.divergence_lr
    max_lr = float(ctx.lrs[descent.i_end])
    if descent.still_falling and div_lr is not None:
        verdict.cap(
            "low",
            f"the {what.name} was still {what.improving} when it {ctx.worse}: max_lr is the last LR before",
            f"for a finer look at the end of the {what.improvement}, rerun with --max-lr {_fmt(div_lr)}",
        )
        why = f"{what.name} still {what.improving} at {_fmt(max_lr)} and {ctx.worse} at {_fmt(div_lr)}"
        return max_lr, max_lr, why
    if descent.still_falling:
        verdict.cap(
            "low",
            f"the {what.name} was still {what.improving} at the last LR, so max_lr is a lower estimate",
            f"widen the range: {ctx.wider()}",
        )
        return max_lr, max_lr, f"{what.name} still {what.improving} at the end of the range ({_fmt(max_lr)})"
    if div_lr is not None:
        stopped = f"{what.name} stopped {what.improving} at {_fmt(max_lr)}"
        flat_lr = float(ctx.lrs[_flat_until(curve, stats, descent)])
        target = min(_toward_divergence(max_lr, div_lr, TOWARD_DIVERGENCE), flat_lr)
        if target <= max_lr:  # then the peak, no further than either limit, is at max_lr too
            return max_lr, max_lr, f"{stopped} and {ctx.worse} at {_fmt(div_lr)}"
        why = (
            f"{stopped}, stayed level up to {_fmt(flat_lr)} and {ctx.worse} at {_fmt(div_lr)}: "
            f"max_lr {_fmt(target)}, between the end of the {what.improvement} and "
            f"{_fmt(div_lr)}/{DIVERGENCE_HEADROOM:g} (log midpoint)"
        )
        peak, peak_why = _one_cycle_peak(target, max_lr, div_lr, PEAK_TOWARD_DIVERGENCE, flat_lr)
        return target, peak, why + peak_why
    last_lr = float(ctx.lrs[ctx.cut.end - 1])
    step = (
        None if ctx.stopped_early else f"to see where it diverges, rerun with a larger range: {ctx.wider()}"
    )
    verdict.cap("medium", step=step)
    why = f"{what.name} stopped {what.improving} at {_fmt(max_lr)}; nothing diverged up to {_fmt(last_lr)}"
    flat_lr = float(ctx.lrs[_flat_until(curve, stats, descent)])
    peak, peak_why = _one_cycle_peak(max_lr, max_lr, last_lr, PEAK_WITHOUT_DIVERGENCE, flat_lr)
    return max_lr, peak, why + peak_why


def _min_bound(ctx: _Context, descent: _Descent, max_lr: float) -> tuple[float, str]:
    """min_lr: where the clear fall starts, at most max_lr / MIN_RATIO (the paper's rule if it is unclear)."""
    what = ctx.what
    paper = f"max_lr/{MIN_RATIO:g} per Smith (2017)"
    if descent.i_start is None:
        return (
            max_lr / MIN_RATIO,
            f"start of the {what.improvement} unclear ({what.improving} from the first step); {paper}",
        )
    start_lr = float(ctx.lrs[descent.i_start])
    clear = f"{what.name} starts {what.improving} clearly at {_fmt(start_lr)}"
    if start_lr > max_lr / MIN_RATIO:
        return max_lr / MIN_RATIO, f"{clear}, less than {MIN_RATIO:g}x below max_lr; {paper}"
    if start_lr < max_lr / MAX_RATIO:
        return (
            max_lr / MAX_RATIO,
            f"{clear}, more than {MAX_RATIO:g}x below max_lr; raised to max_lr/{MAX_RATIO:g}",
        )
    return start_lr, clear


def _suggest(
    lrs: np.ndarray,
    values: np.ndarray,
    *,
    mode: str,
    stop_reason: str,
    planned_max_lr: float | None,
    what: _Quantity,
    method: str,
) -> Bounds:
    """The machinery shared by the loss and the metric paths; `values` are oriented so lower is better."""
    lrs = np.asarray(lrs, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if lrs.size != y.size or lrs.size == 0:
        raise ValueError(f"need lrs and values of the same, non-zero length: got {lrs.size} and {y.size}")
    if mode not in ("linear", "exp"):
        raise ValueError(f"mode must be 'linear' or 'exp', got {mode!r}")
    # A non-positive LR on the log axis becomes a non-finite point, which ends the curve like a NaN loss.
    with np.errstate(divide="ignore", invalid="ignore"):
        axis = sample_axis(lrs, mode)  # type: ignore[arg-type]
    cut = _cut(y, _finite_prefix(axis, y), stop_reason)
    ctx = _Context(lrs, what, method, cut, stop_reason, planned_max_lr, mode)
    n = cut.end
    base, stats = _measure(axis[:n], y[:n]) if n >= MIN_POINTS else (None, None)
    unreliable = _unreliable(ctx, base, stats)
    if unreliable is not None:
        return unreliable
    assert base is not None and stats is not None
    curve = _refine(axis[:n], y[:n], base, stats.noise)
    descent = _descent(curve, stats)
    if descent is None:  # a fall that stands out has a negative steepest slope; kept as a guard
        return ctx.no_bounds(
            f"the {what.name} never {what.improves} clearly", f"lower the start 10x: {ctx.lower()}"
        )

    verdict = _Verdict()
    max_lr, peak_lr, max_rationale = _max_bound(ctx, curve, stats, descent, verdict)
    min_lr, min_rationale = _min_bound(ctx, descent, max_lr)
    noise_ratio = stats.noise / stats.fall
    if noise_ratio > NOISY_LOW:
        noisy = f"noisy: the step noise is {_fmt(noise_ratio)}x the {what.name}'s whole {what.improvement}"
        verdict.cap("low", noisy, "use a larger batch or more steps")
    elif noise_ratio > NOISY_MEDIUM:
        verdict.cap("medium")
    if n < SHORT_POINTS:
        verdict.cap("medium")
    if ctx.stopped_early:
        planned = f" of a planned {_fmt(planned_max_lr)}" if planned_max_lr is not None else ""
        verdict.lower(
            f"the run stopped early ({stop_reason}) at lr {_fmt(lrs[-1])}{planned}", "rerun it to completion"
        )
    return Bounds(
        min_lr=min_lr,
        max_lr=max_lr,
        peak_lr=peak_lr,
        method=method,
        confidence=verdict.confidence,
        min_rationale=min_rationale,
        max_rationale=max_rationale,
        reason="; ".join(verdict.reasons) or None,
        next_step="; ".join(verdict.steps) or None,
        best_lr=float(lrs[curve.i_min]),
        divergence_lr=ctx.divergence_lr,
    )


def suggest_bounds(
    lrs: np.ndarray,
    losses: np.ndarray,
    *,
    mode: Mode | str = "linear",
    stop_reason: str = "completed",
    planned_max_lr: float | None = None,
) -> Bounds:
    """base_lr/max_lr from a range test's loss curve (`Bounds.method` "loss").

    max_lr is the end of the clear descent: the last point before the slope of the smoothed loss (on the
    sampled axis) stays flatter than STOP_SLOPE_FRAC of its steepest value, never past the smoothed minimum or
    the divergence. min_lr is where the smoothed loss has clearly left its plateau, at most max_lr/4 (the
    paper's rule, also used when the start is not visible). Curves that cannot answer (too short, flat, never
    falling, a fall hidden in noise) get no bounds but a `reason` and a `next_step`; noisy, truncated or
    never-diverging ones get bounds with a lower `confidence` and the same two fields.
    """
    return _suggest(
        lrs,
        losses,
        mode=mode,
        stop_reason=stop_reason,
        planned_max_lr=planned_max_lr,
        what=_LOSS,
        method="loss",
    )


def suggest_bounds_from_metric(
    lrs: np.ndarray,
    values: np.ndarray,
    *,
    higher_is_better: bool,
    mode: Mode | str = "linear",
    name: str = "accuracy",
    stop_reason: str = "completed",
) -> Bounds:
    """The paper's own test on a sparse metric curve (10-60 evaluations): `Bounds.method` is `name`.

    base_lr is where accuracy starts to rise (or val_loss to fall), max_lr where it stops rising, turns ragged
    or falls; the same machinery as `suggest_bounds`, on the metric oriented so that lower is better.
    """
    y = np.asarray(values, dtype=float)
    return _suggest(
        lrs,
        -y if higher_is_better else y,
        mode=mode,
        stop_reason=stop_reason,
        planned_max_lr=None,
        what=_metric_quantity(name, higher_is_better),
        method=name,
    )
