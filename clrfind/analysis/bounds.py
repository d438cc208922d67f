"""From a range-test curve to bounds: base_lr, max_lr and one cycle's peak, each with its reason. Pure numpy.

- Slopes are taken on the axis the ladder was sampled on (LR for linear, log10 LR for exp), not by index.
- Every decision needs persistence (several consecutive points), never one argmin of a noisy derivative.
- Every threshold is relative to the curve's own fall and noise, so the answer does not change when the loss
  is shifted or scaled (negative losses, losses at 1e-6).
- NaN/inf ends the analysis at that step: nothing after it, and nothing across it, is ever smoothed.
- When the curve gives no reliable answer, the result says why and what to run next, never a forced number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

from clrfind.analysis.divergence import REL_EPS, find_divergence, two_digits
from clrfind.analysis.smoothing import default_window, local_fit
from clrfind.ladder import AUTO_EXP_RATIO, Mode, sample_axis
from clrfind.results import CONFIDENCE_LEVELS, Bounds, Confidence

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
# The fall has ended inside the range (it is not still falling at the end) once, past its steepest point, the
# slope (on the sampled axis) stays flatter than 20% of the steepest for several points ...
STOP_SLOPE_FRAC = 0.2
# ... and it ended at its knee, where it "slows" (Smith 2017): the point of the smoothed curve farthest below the
# chord from its steepest point to its minimum (`_knee`). Not where the slope first crosses a fraction of the
# steepest: a fall that goes on slowly after its steep part (a language model, an adaptive optimizer) keeps its
# slope near any such fraction for a long stretch, and that crossing jumped by a decade between seeds of the same
# task. The knee does not move with the scale or shift of either axis, and it is not the minimum itself, which a
# noisy curve does not place reliably.
# A fall that slows and then falls again, at least half as steep as its steepest and twice as steep as where it
# slowed, from where it slowed to more than FLAT_TOLERANCE of its whole fall below (so the slowdown was not on the
# level stretch by the minimum), ends at the later stage's knee (`_last_knee`). A slow tail after a steep fall (the
# language model above) never gets back to half the steepest slope; a second stage does.
RESUMED = 0.5
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
# max_lr, and a cycle whose low end is that far down spends half its time barely training.
MAX_RATIO = 20.0
# max_lr goes past the end of the fall, toward the divergence LR / 2 (Smith: the best LR is within 2x of the
# largest that still converges), no further than the curve stays level: within 25% of its fall (and 4 noise std)
# of its minimum.
DIVERGENCE_HEADROOM = 2.0
FLAT_TOLERANCE = 0.25
# How far, on the log axis, max_lr moves from the end of the fall toward divergence_lr / 2 (0.5: log midpoint).
TOWARD_DIVERGENCE = 0.5
# peak_lr, one cycle's top, goes all the way (1.0): a single cycle spends little time at its peak and anneals
# afterwards, and Smith (2018) peaks it at the largest LR the test shows still training. A repeating CLR cycle
# returns to its top again and again, so max_lr stays at the midpoint.
PEAK_TOWARD_DIVERGENCE = 1.0
# ... for SGD. An adaptive optimizer (Adam, RMSprop, ...) scales each step by its gradient's running size, so its
# steps do not shrink as the gradients do near a minimum: past the end of the fall a long run pays for a higher LR
# with a higher loss floor, which a short test never shows. Smith's "within 2x of the largest LR that converges"
# comes from SGD; for adaptive optimizers one cycle peaks at max_lr (`_one_cycle_peak`) ...
ADAPTIVE_PEAK_AT_MAX = True
# ... unless the self-check finds a cycle that ends clearly lower at most half a decade up, and no further than
# where the test's loss was still falling (its minimum, `best_lr`) nor past divergence_lr / 2. max_lr (the knee,
# where the fall slows, or past it toward divergence_lr / 2) need not be where the fall ends, and the floor
# argument above holds past the end of the fall, not inside it; but trials a few dozen steps long favour the
# higher LR, so they may move this peak one step only. A lower max_lr (the knee itself, or at most `best_lr`)
# rescues the count task under BERT and costs the character language models more (BENCHMARKS.md, screening).
HALF_DECADE = 10**0.5
# When nothing diverged, the largest LR that still converges is at least the range's last LR, so one cycle may
# peak this far toward last_lr / 2 (the same rule as divergence_lr / 2), no further than the curve stays level.
PEAK_WITHOUT_DIVERGENCE = 1.0
# A test whose loss fell to within 5% of zero (from a positive start) has converged: its gradients, and so its
# updates, have all but vanished (for cross-entropy they shrink with the loss itself), so the stretch after it
# survives any LR and says nothing about which LR is stable from the start. Nothing past the end of its fall counts:
# one cycle peaks at max_lr, and only the self-check's trials, which do train from the start, may raise it. So that
# end must be where it converged, level with its floor (`_converged_end`), not a pause between two stages.
CONVERGED_FRACTION = 0.05
# Advice for a range that was too narrow or too high: move the end by this factor.
RANGE_FACTOR = 10.0
# How the next step for a curve that did not diverge begins (`clrfind.api` takes that step itself, and drops it).
DIVERGENCE_STEP = "to see where it diverges"
# A curve that stays level over a decade and at least this share of its points before it gets worse never fell
# anywhere in the range: a lower start would only add more of the level stretch (`_level_until`).
LEVEL_SHARE = 1 / 3

# Median |x - median| of Gaussian noise is 0.6745 sigma.
_MAD_TO_SIGMA = 1.4826


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


def curve_quantity(metric: str | None = None, higher_is_better: bool = False) -> _Quantity:
    """How to talk about the curve the bounds are read from: the training loss, or the validation `metric`."""
    return _LOSS if metric is None else _metric_quantity(metric, higher_is_better)


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
    magnitude: float  # largest |level| of start, bottom and end, for the float32 floor
    floor: float  # the smoothed curve at its minimum: the level the loss reached


class _Top(NamedTuple):
    """max_lr, one cycle's peak and their rationale; for a peak left at max_lr (an adaptive optimizer's, a
    converged test's), how far up the self-check may raise it (`Bounds.peak_ceiling_lr`)."""

    max_lr: float
    peak_lr: float
    why: str
    ceiling: float | None = None


@dataclass(frozen=True)
class _Descent:
    i_start: int | None  # first point of the clear fall; None when the fall has no clear start
    i_end: int  # last point of the clear fall (never past the minimum)
    still_falling: bool  # the fall did not end inside the range
    converged: bool  # the loss fell to within CONVERGED_FRACTION of zero (`_converged`)


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
    fit = local_fit(y, window)
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
    curve, noise = _smoothed(axis, y, default_window(y.size))
    start, bottom = _level_near(y, 0, curve.half), _level_near(y, curve.i_min, curve.half)
    end = _level_near(y, y.size - 1, curve.half)
    stats = _Stats(
        noise=noise,
        start=start,
        fall=start - bottom,
        rise=end - bottom,
        # The levels the fall and the rise are measured between: a blow-up's last loss (1e29) rounds on its own.
        magnitude=max(abs(start), abs(bottom), abs(end)),
        floor=float(curve.level[curve.i_min]),
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


def _knee(axis: np.ndarray, level: np.ndarray, i_steep: int, i_min: int) -> int:
    """Where the fall bends from steep to slow: the point of the smoothed curve farthest below the chord from the
    steepest point to the minimum (on the sampled axis; unchanged by any scale or shift of either axis); the
    minimum itself when the stretch from one to the other has fewer than three points."""
    if i_steep >= i_min - 1:
        return i_min
    x, y = axis[i_steep : i_min + 1], level[i_steep : i_min + 1]
    chord = y[0] + (y[-1] - y[0]) * (x - x[0]) / (x[-1] - x[0])
    below = chord - y
    return i_steep + int(np.argmax(below)) if below.max() > 0 else i_min


def _last_knee(axis: np.ndarray, curve: _Smoothed, stats: _Stats, i_steep: int) -> int:
    """The knee of the fall's last stage: where the loss stops falling (Smith 2017), not where it first slows.

    A fall that slows and then falls clearly again (at least RESUMED as steep as its steepest, and more than
    1/RESUMED times as steep as where it slowed) by more than FLAT_TOLERANCE of its whole fall did not stop at
    its first knee: the model learned the easy part at low LRs and the rest only once the LR was high enough. Its
    end is the knee from the later stage's steepest point to the minimum.
    """
    level, slope, i_min = curve.level, curve.slope, curve.i_min
    while i_steep < i_min - 1:
        seg = slope[i_steep : i_min + 1]
        slowest = np.maximum.accumulate(seg)  # the slowest slope from the steep point up to each point
        again = np.flatnonzero((seg <= RESUMED * seg[0]) & (slowest >= RESUMED * seg))
        if not again.size:
            break
        k = i_steep + int(np.argmax(seg[: again[0]]))  # where it slowed
        left = float(level[k] - level[i_min])
        if left <= FLAT_TOLERANCE * stats.fall or not _stands_out(left, curve, stats):
            break
        i_steep = k + int(np.argmin(slope[k : i_min + 1]))
    return _knee(axis, level, i_steep, i_min)


def _converged_end(axis: np.ndarray, curve: _Smoothed, stats: _Stats, i_end: int) -> int:
    """Where a converged curve's fall ends: the first knee level with its floor.

    A converged test's max_lr stays where its fall ended, because past that point the converged model survives any
    LR. That holds only where the loss had converged: a knee more than FLAT_TOLERANCE of the fall above the floor
    (the level stretch's own tolerance) is a pause between two stages (a CTC model that first learns to predict
    blanks, then the labels), however slowly the later stage resumes, and the fall ends at the later stage's knee.
    """
    level, slope, i_min = curve.level, curve.slope, curve.i_min
    while i_end < i_min - 1 and level[i_end] - level[i_min] > FLAT_TOLERANCE * stats.fall:
        # The later stage's steepest point, then its bend: always past i_end, so the loop ends by i_min.
        i_steep = i_end + 1 + int(np.argmin(slope[i_end + 1 : i_min + 1]))
        i_end = _knee(axis, level, i_steep, i_min)
    return i_end


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """Length of the run of True values starting at each index (0 where mask is False)."""
    idx = np.arange(mask.size)
    next_false = np.minimum.accumulate(np.where(mask, mask.size, idx)[::-1])[::-1]
    return next_false - idx


def _descent(
    curve: _Smoothed, stats: _Stats, axis: np.ndarray, open_end: bool, converged: bool
) -> _Descent | None:
    """Find the clear fall: where it starts and where it ends (None if the smoothed curve never falls); a
    `converged` curve's fall ends where it came level with its floor (`_converged_end`)."""
    level, slope, i_min = curve.level, curve.slope, curve.i_min
    n = level.size
    persist = max(MIN_PERSIST, curve.half)
    i_steep = curve.steepest()
    steepest = slope[i_steep]
    if not steepest < 0:
        return None
    slow = slope > STOP_SLOPE_FRAC * steepest  # not falling clearly (flat, slowing or rising)

    # Still falling: no point past the steepest one from which the slope stays slow for `persist` points, and the
    # minimum at the end. A divergence is an event of the curve: a slow stretch up to it (at least 2 points) ends
    # the fall. The end of the range is none, and over its last half-window the smoother sees one side only: a fall
    # seen to slow only there has not shown that it ended: its slow stretch must begin before, else the test runs
    # again up to a higher end.
    run = _run_lengths(slow)
    if open_end:
        stops = (run >= persist) & (np.arange(n) < n - curve.half)
    else:
        stops = (run >= persist) | ((np.arange(n) + run == n) & (run >= min(persist, 2)))
    stops[: i_steep + 1] = False
    after = np.flatnonzero(stops)
    still_falling = after.size == 0 and i_min >= n - persist
    i_end = i_min if still_falling or i_min <= i_steep + 1 else _last_knee(axis, curve, stats, i_steep)
    if converged:  # a fall still going at the end already ends at the minimum
        i_end = _converged_end(axis, curve, stats, i_end)

    # Start: the first point below the start level by a clear margin for good, and only after a plateau (a
    # slow stretch of `persist` points) that shows the fall did not begin before the first step.
    threshold = stats.start - max(START_DROP * stats.fall, START_SIGMAS * curve.level_noise)
    above = np.flatnonzero(level[: i_steep + 1] >= threshold)
    i_start: int | None = int(above[-1]) + 1 if above.size else 0
    plateau = bool((_run_lengths(slow[:i_start]) >= persist).any())
    if not plateau or i_start >= i_end:
        i_start = None
    return _Descent(i_start, i_end, still_falling, converged)


@dataclass
class _Verdict:
    """Confidence and the reasons / next steps that lowered it, collected as the checks run."""

    confidence: Confidence = "high"
    reasons: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    # The 10x higher end to run the test again up to, when the curve shows the range ended too low.
    wider_max_lr: float | None = None

    def cap(self, most: Confidence, reason: str | None = None, step: str | None = None) -> None:
        self.confidence = min(self.confidence, most, key=CONFIDENCE_LEVELS.index)
        if reason:
            self.reasons.append(reason)
        if step:
            self.steps.append(step)

    def lower(self, reason: str, step: str) -> None:
        """One level down, never below "low": the curve still gave bounds."""
        self.cap(CONFIDENCE_LEVELS[max(CONFIDENCE_LEVELS.index(self.confidence) - 1, 1)], reason, step)


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
    adaptive: str | None = None  # the optimizer's name when it is adaptive (Adam, RMSprop, ...)

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
        return f"--max-lr {two_digits(RANGE_FACTOR * self.end)}{self._as_exp(self.lrs[0], RANGE_FACTOR * self.end)}"

    def lower(self) -> str:
        start = self.lrs[0] / RANGE_FACTOR
        return f"--min-lr {two_digits(start)}{self._as_exp(start, self.end)}"

    def _as_exp(self, low: float, high: float) -> str:
        """On a linear ladder over decades a lower start changes nothing: the second step stays near max/steps."""
        if self.mode != "linear" or high / low <= AUTO_EXP_RATIO:
            return ""
        return " --mode exp (a linear ladder over that range puts almost every step in its top decade)"

    def no_bounds(
        self,
        reason: str,
        next_step: str,
        *,
        wider_max_lr: float | None = None,
        level_until_lr: float | None = None,
    ) -> Bounds:
        return Bounds(
            method=self.method,
            confidence="none",
            reason=reason,
            next_step=next_step,
            divergence_lr=self.divergence_lr,
            wider_max_lr=wider_max_lr,
            level_until_lr=level_until_lr,
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
                f"only {ctx.cut.end} finite points before the {what.name} {ctx.worse} at lr {two_digits(div_lr)}",
                f"the range starts too high: rerun with --max-lr {two_digits(div_lr)} so all steps land below it",
            )
        return ctx.no_bounds(f"only {ctx.cut.end} finite points (need {MIN_POINTS})", what.more_points)
    if _stands_out(stats.fall, curve, stats):
        return None
    if _stands_out(stats.rise, curve, stats) and stats.fall < HINT_SIGMAS * curve.level_noise:
        ends = f" and {ctx.worse} at lr {two_digits(div_lr)}" if div_lr is not None else ""
        level_to = _level_until(curve, stats)
        if ctx.lrs[level_to] >= RANGE_FACTOR * ctx.lrs[0] and level_to >= LEVEL_SHARE * curve.level.size:
            return ctx.no_bounds(
                f"the {what.name} never {what.improves}: it stays level from lr {two_digits(ctx.lrs[0])} to "
                f"{two_digits(ctx.lrs[level_to])}, then gets worse{ends}",
                f"a lower start only adds more of the level stretch; {plateau_advice(None)}",
                level_until_lr=float(ctx.lrs[level_to]),
            )
        return ctx.no_bounds(
            f"the {what.name} never {what.improves}: it gets worse from the start{ends}",
            f"the range starts too high: lower the start 10x, e.g. {ctx.lower()}",
        )
    hidden = (
        f"no {what.improvement} of the {what.name} stands out of its noise "
        f"(change {two_digits(stats.fall)}, step noise {two_digits(stats.noise)})"
    )
    if_noisy = "; if the curve is mostly noise, use a larger batch or more steps"
    if div_lr is not None:
        # Level until it diverged: as for a level stretch that then got worse, the self-check searches below it.
        last = float(ctx.lrs[ctx.cut.end - 1])
        return ctx.no_bounds(
            f"{hidden} before it {ctx.worse} at lr {two_digits(div_lr)}",
            f"the range may start too high: lower the start 10x, e.g. {ctx.lower()}{if_noisy}",
            level_until_lr=last if last >= RANGE_FACTOR * ctx.lrs[0] else None,
        )
    return ctx.no_bounds(
        f"the {what.name} is flat: {hidden}",
        f"widen the range: raise the end 10x, e.g. {ctx.wider()}{if_noisy}",
        # A run that went to its end says only that the range ended too low; a stopped one may not have got there.
        wider_max_lr=None if ctx.stopped_early else RANGE_FACTOR * ctx.end,
    )


def _level_until(curve: _Smoothed, stats: _Stats) -> int:
    """Last index before the smoothed curve rises clearly (4 noise std) above where it started."""
    return max(_last_before(curve.level, 0, stats.start + START_SIGMAS * curve.level_noise), 0)


def _last_before(level: np.ndarray, first: int, limit: float) -> int:
    """Last index, from `first` on, before the smoothed curve goes above `limit` (the last index if it never does)."""
    risen = np.flatnonzero(level[first:] > limit)
    return first + int(risen[0]) - 1 if risen.size else level.size - 1


def plateau_advice(steps: int | None) -> str:
    """What to do when no LR in the range made the loss fall: check the setup, or give each LR more steps."""
    longer = f"--steps {3 * steps}" if steps else "3x the --steps"
    return (
        "check that the model learns this data at all (labels, loss, a few hundred steps at one LR); if it needs "
        f"many steps at one LR to leave a plateau, test longer ({longer}); if the curve is mostly noise, use a "
        "larger batch"
    )


def _converged(stats: _Stats) -> bool:
    """The loss fell from a positive start to within CONVERGED_FRACTION of zero, and its step noise is that small
    too (losses that can be negative or sit on an unknown floor are never called converged)."""
    limit = CONVERGED_FRACTION * stats.start
    return stats.start > 0 and 0 <= stats.floor <= limit and stats.noise <= limit


def _flat_until(curve: _Smoothed, stats: _Stats, descent: _Descent) -> int:
    """Last index, from the end of the descent on, before the smoothed curve rises clearly above its minimum."""
    level, i_min = curve.level, curve.i_min
    tolerance = max(FLAT_TOLERANCE * stats.fall, START_SIGMAS * curve.level_noise)
    return max(_last_before(level, i_min, level[i_min] + tolerance), descent.i_end)


def _toward_divergence(end_lr: float, div_lr: float, weight: float) -> float:
    """`weight` of the way (on the log axis) from the end of the fall to divergence_lr / DIVERGENCE_HEADROOM."""
    return end_lr * (div_lr / DIVERGENCE_HEADROOM / end_lr) ** weight


def _peak_ceiling(ctx: _Context, floor: float, limit_lr: float, best_lr: float | None) -> float | None:
    """How far up the self-check may raise a peak the curve left at `floor` (None: not at all).

    Never past Smith's upper estimate, limit_lr / 2; for an adaptive optimizer, whose higher LR costs a higher loss
    floor over a long run, half a decade above `floor` at most and no further than the curve's minimum (`best_lr`;
    None where the minimum says nothing, as on a converged curve).
    """
    ceiling = limit_lr / DIVERGENCE_HEADROOM
    if ctx.adaptive is not None:
        ceiling = min(ceiling, floor * HALF_DECADE)
        if best_lr is not None:
            ceiling = min(ceiling, best_lr)
    return ceiling if ceiling > floor else None


def _one_cycle_peak(
    ctx: _Context, floor: float, end_lr: float, limit_lr: float, weight: float, flat_lr: float, best_lr: float
) -> _Top:
    """One cycle's peak: `weight` of the way from the end of the fall toward limit_lr / 2, no further than the
    level stretch and never below `floor` (max_lr); the rationale suffix is empty when the peak is the floor. An
    adaptive optimizer's one cycle peaks at max_lr, with a ceiling the self-check may raise it to."""
    if ctx.adaptive is not None and ADAPTIVE_PEAK_AT_MAX:
        why = (
            f"; one cycle peaks at max_lr: {ctx.adaptive} scales its steps to the gradients, so a higher LR "
            "costs a higher loss floor over a long run (Smith's 2x-from-divergence rule is SGD's)"
        )
        return _Top(floor, floor, why, _peak_ceiling(ctx, floor, limit_lr, best_lr))
    peak = max(floor, min(_toward_divergence(end_lr, limit_lr, weight), flat_lr))
    if peak <= floor:
        return _Top(floor, peak, "")
    top = (
        "the end of the level stretch"
        if peak == flat_lr
        else f"{two_digits(limit_lr)}/{DIVERGENCE_HEADROOM:g}"
    )
    return _Top(floor, peak, f"; one-cycle peak_lr {two_digits(peak)} ({top})")


def _max_bound(ctx: _Context, curve: _Smoothed, stats: _Stats, descent: _Descent, verdict: _Verdict) -> _Top:
    """max_lr and one cycle's peak: past the end of the clear descent toward where it diverged, while level.

    The end of the clear fall is a lower estimate of a good max_lr; Smith (2017) gives an upper one, "the optimum
    LR is usually within a factor of two of the largest LR that still converges", i.e. divergence_lr / 2. max_lr
    is their log midpoint, peak_lr (for one cycle) the upper one itself, but neither goes where the smoothed
    curve has already risen clearly above its minimum. Otherwise both stay at the end of the fall.
    """
    what, div_lr = ctx.what, ctx.divergence_lr
    max_lr, best_lr = float(ctx.lrs[descent.i_end]), float(ctx.lrs[curve.i_min])
    last_lr = float(ctx.lrs[ctx.cut.end - 1])
    if descent.still_falling and div_lr is not None:
        verdict.cap(
            "low",
            f"the {what.name} was still {what.improving} when it {ctx.worse}: max_lr is the last LR before, "
            f"at most {two_digits(div_lr)}/{DIVERGENCE_HEADROOM:g}",
            f"for a finer look at the end of the {what.improvement}, rerun with --max-lr {two_digits(div_lr)}",
        )
        why = f"{what.name} still {what.improving} at {two_digits(max_lr)} and {ctx.worse} at {two_digits(div_lr)}"
        capped, cap_why = _within_2x(ctx, max_lr, div_lr)
        return _Top(capped, capped, why + cap_why)
    if descent.still_falling:
        verdict.cap(
            "low",
            f"the {what.name} was still {what.improving} at the last LR, so max_lr is a lower estimate",
            f"widen the range: {ctx.wider()}",
        )
        # The test never reached where the loss stops falling, the one thing it runs for: the range ended too low,
        # as for a flat curve, and a run that went to its end names the rerun (a stopped one may not have got there).
        verdict.wider_max_lr = None if ctx.stopped_early else RANGE_FACTOR * ctx.end
        why = f"{what.name} still {what.improving} at the end of the range ({two_digits(max_lr)})"
        return _Top(max_lr, max_lr, why)
    if descent.converged:
        floor = stats.floor
        verdict.cap(
            "medium",
            f"the loss converged (to {two_digits(floor)} from {two_digits(stats.start)}) by lr {two_digits(max_lr)}: "
            "a converged model survives LRs a fresh one does not, so the test says nothing about higher LRs",
            f"to see which higher LRs train from the start, rerun with fewer steps (--steps "
            f"{max(20, ctx.cut.end // 3)}), a harder subset of the data, or a range that starts higher",
        )
        # The self-check's trials train from the initial weights, which is what this curve cannot show: they may
        # raise the peak where a higher one trains clearly better. A converged curve's minimum is wherever the loss
        # happened to be lowest on its floor, so it does not cap an adaptive optimizer's ceiling.
        return _Top(
            max_lr,
            max_lr,
            f"loss stopped falling at {two_digits(max_lr)}, where it had converged: one cycle peaks at max_lr",
            _peak_ceiling(ctx, max_lr, div_lr if div_lr is not None else last_lr, None),
        )
    if div_lr is not None:
        stopped = f"{what.name} stopped {what.improving} at {two_digits(max_lr)}"
        flat_lr = float(ctx.lrs[_flat_until(curve, stats, descent)])
        target = min(_toward_divergence(max_lr, div_lr, TOWARD_DIVERGENCE), flat_lr)
        if target <= max_lr:  # then the peak, no further than either limit, is at max_lr too
            capped, cap_why = _within_2x(ctx, max_lr, div_lr)
            return _Top(capped, capped, f"{stopped} and {ctx.worse} at {two_digits(div_lr)}{cap_why}")
        why = (
            f"{stopped}, stayed level up to {two_digits(flat_lr)} and {ctx.worse} at {two_digits(div_lr)}: "
            f"max_lr {two_digits(target)}, between the end of the {what.improvement} and "
            f"{two_digits(div_lr)}/{DIVERGENCE_HEADROOM:g} (log midpoint)"
        )
        top = _one_cycle_peak(ctx, target, max_lr, div_lr, PEAK_TOWARD_DIVERGENCE, flat_lr, best_lr)
        return top._replace(why=why + top.why)
    step = None if ctx.stopped_early else f"{DIVERGENCE_STEP}, rerun with a larger range: {ctx.wider()}"
    verdict.cap("medium", step=step)
    why = f"{what.name} stopped {what.improving} at {two_digits(max_lr)}; nothing diverged up to {two_digits(last_lr)}"
    flat_lr = float(ctx.lrs[_flat_until(curve, stats, descent)])
    top = _one_cycle_peak(ctx, max_lr, max_lr, last_lr, PEAK_WITHOUT_DIVERGENCE, flat_lr, best_lr)
    return top._replace(why=why + top.why)


def _within_2x(ctx: _Context, max_lr: float, div_lr: float) -> tuple[float, str]:
    """(max_lr, rationale suffix): no closer to the divergence than Smith's upper estimate, divergence_lr / 2.

    A curve that falls right up to where it diverges has no level stretch to show an LR it survives: the end of its
    fall is the edge itself, which a short test crosses in a few steps and a whole run at it may not survive. With a
    level stretch max_lr never passes divergence_lr / 2 (`_toward_divergence`); without one it stops there too.
    """
    limit = div_lr / DIVERGENCE_HEADROOM
    if max_lr <= limit:
        return max_lr, ""
    if two_digits(limit) == two_digits(max_lr):  # a move the rationale's two digits would not show
        return limit, ""
    return limit, (
        f": max_lr {two_digits(limit)}, {two_digits(div_lr)}/{DIVERGENCE_HEADROOM:g} (Smith: within 2x of the "
        f"largest LR that still converges)"
    )


def _base_bound(ctx: _Context, descent: _Descent, max_lr: float) -> tuple[float, str]:
    """base_lr: where the clear fall starts, at most max_lr / MIN_RATIO (the paper's rule if it is unclear)."""
    what = ctx.what
    paper = f"max_lr/{MIN_RATIO:g} per Smith (2017)"
    if descent.i_start is None:
        return (
            max_lr / MIN_RATIO,
            f"start of the {what.improvement} unclear ({what.improving} from the first step); {paper}",
        )
    start_lr = float(ctx.lrs[descent.i_start])
    clear = f"{what.name} starts {what.improving} clearly at {two_digits(start_lr)}"
    if start_lr > max_lr / MIN_RATIO:
        return max_lr / MIN_RATIO, f"{clear}, less than {MIN_RATIO:g}x below max_lr; {paper}"
    if start_lr < max_lr / MAX_RATIO:
        return (
            max_lr / MAX_RATIO,
            f"{clear}, more than {MAX_RATIO:g}x below max_lr; raised to max_lr/{MAX_RATIO:g}",
        )
    return start_lr, clear


def _bounds_from(
    lrs: np.ndarray,
    values: np.ndarray,
    *,
    mode: str,
    stop_reason: str,
    planned_max_lr: float | None,
    what: _Quantity,
    method: str,
    adaptive: str | None,
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
    ctx = _Context(lrs, what, method, cut, stop_reason, planned_max_lr, mode, adaptive)
    n = cut.end
    base, stats = _measure(axis[:n], y[:n]) if n >= MIN_POINTS else (None, None)
    unreliable = _unreliable(ctx, base, stats)
    if unreliable is not None:
        return unreliable
    assert base is not None and stats is not None
    curve = _refine(axis[:n], y[:n], base, stats.noise)
    converged = method == "loss" and _converged(stats)
    descent = _descent(curve, stats, axis[:n], open_end=cut.kind is None, converged=converged)
    if descent is None:  # a fall that stands out has a negative steepest slope; kept as a guard
        return ctx.no_bounds(
            f"the {what.name} never {what.improves} clearly", f"lower the start 10x: {ctx.lower()}"
        )

    verdict = _Verdict()
    max_lr, peak_lr, max_rationale, ceiling = _max_bound(ctx, curve, stats, descent, verdict)
    base_lr, base_rationale = _base_bound(ctx, descent, max_lr)
    noise_ratio = stats.noise / stats.fall
    if noise_ratio > NOISY_LOW:
        noisy = (
            f"noisy: the step noise is {two_digits(noise_ratio)}x the {what.name}'s whole {what.improvement}"
        )
        verdict.cap("low", noisy, "use a larger batch or more steps")
    elif noise_ratio > NOISY_MEDIUM:
        verdict.cap("medium")
    if n < SHORT_POINTS:
        verdict.cap("medium")
    if ctx.stopped_early:
        planned = f" of a planned {two_digits(planned_max_lr)}" if planned_max_lr is not None else ""
        verdict.lower(
            f"the run stopped early ({stop_reason}) at lr {two_digits(lrs[-1])}{planned}",
            "rerun it to completion",
        )
    return Bounds(
        base_lr=base_lr,
        max_lr=max_lr,
        peak_lr=peak_lr,
        method=method,
        confidence=verdict.confidence,
        base_rationale=base_rationale,
        max_rationale=max_rationale,
        reason="; ".join(verdict.reasons) or None,
        next_step="; ".join(verdict.steps) or None,
        best_lr=float(lrs[curve.i_min]),
        divergence_lr=ctx.divergence_lr,
        wider_max_lr=verdict.wider_max_lr,
        peak_ceiling_lr=ceiling,
    )


def suggest_bounds(
    lrs: np.ndarray,
    losses: np.ndarray,
    *,
    mode: Mode | str = "linear",
    stop_reason: str = "completed",
    planned_max_lr: float | None = None,
    adaptive: str | None = None,
) -> Bounds:
    """base_lr/max_lr from a range test's loss curve (`Bounds.method` "loss").

    max_lr starts from the end of the clear descent: the knee of the smoothed loss (on the sampled axis) between
    its steepest point and its minimum, never past the divergence. base_lr is where the smoothed loss has clearly
    left its plateau, at most max_lr/4 (the paper's rule, also used when the start is not visible). Curves that
    cannot answer (too short, flat, never falling, a fall hidden in noise) get no bounds but a `reason` and a
    `next_step`; noisy, truncated or never-diverging ones get bounds with a lower `confidence` and the same two
    fields. `adaptive` names the optimizer when it is adaptive (Adam, RMSprop, ...): then one cycle peaks at
    max_lr (see ADAPTIVE_PEAK_AT_MAX), which the self-check may raise as far as `peak_ceiling_lr`.
    """
    return _bounds_from(
        lrs,
        losses,
        mode=mode,
        stop_reason=stop_reason,
        planned_max_lr=planned_max_lr,
        what=_LOSS,
        method="loss",
        adaptive=adaptive,
    )


def suggest_bounds_from_metric(
    lrs: np.ndarray,
    values: np.ndarray,
    *,
    higher_is_better: bool,
    mode: Mode | str = "linear",
    name: str = "accuracy",
    stop_reason: str = "completed",
    adaptive: str | None = None,
) -> Bounds:
    """The paper's own test on a sparse metric curve (10-60 evaluations): `Bounds.method` is `name`.

    base_lr is where accuracy starts to rise (or val_loss to fall), max_lr where it stops rising, turns ragged
    or falls; the same machinery as `suggest_bounds`, on the metric oriented so that lower is better.
    """
    y = np.asarray(values, dtype=float)
    return _bounds_from(
        lrs,
        -y if higher_is_better else y,
        mode=mode,
        stop_reason=stop_reason,
        planned_max_lr=None,
        what=_metric_quantity(name, higher_is_better),
        method=name,
        adaptive=adaptive,
    )


def bounds_for(
    lrs: np.ndarray,
    losses: np.ndarray,
    *,
    mode: str,
    stop_reason: str,
    max_lr: float,
    metric: Any | None,
    adaptive: str | None = None,
) -> Bounds:
    """Bounds from the metric when the test measured one (the paper's way), else from the loss."""
    if metric is not None and sum(v is not None for v in metric.values) >= 3:
        values = np.array([np.nan if v is None else v for v in metric.values], dtype=float)
        return suggest_bounds_from_metric(
            np.asarray(metric.lrs, dtype=float),
            values,
            higher_is_better=metric.higher_is_better,
            mode=mode,
            name=metric.name,
            stop_reason=stop_reason,
            adaptive=adaptive,
        )
    return suggest_bounds(
        lrs, losses, mode=mode, stop_reason=stop_reason, planned_max_lr=max_lr, adaptive=adaptive
    )
