"""Divergence: the online monitor that stops a range test, and its offline twin for saved curves. Plain Python.

The rule is relative to the curve's own fall, noise and jumps (the loss gave back half of its fall, and more than
its noise allows, for longer than its jumps explain), so it works the same for negative and for tiny losses;
nothing is "4x the best loss". A non-finite loss stops the run at once.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from functools import cache
from typing import Literal

import numpy as np

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
# A stop needs `persistence` over-levels in a row, and a level is over when 3 of its 5 losses are. Losses with
# heavy tails (a t(1.5) target noise, rare huge batches) put single losses over the bar often enough that 3 in a
# row happen by chance: the confirmation then waits for as many over-levels as make the expected number of chance
# stops in the test at most FALSE_ALARMS, given the fraction of losses that jumped that far above their own median
# up to where the bar is set (the first step whose level rises past the best, as the noise is taken at the best).
# A curve without such jumps keeps `persistence`.
FALSE_ALARMS = 0.01
# ... but never longer than this: a fraction near 2/5 (the most a median of 5 leaves above it) needs ~40.
MAX_CONFIRM = 10 * MEDIAN_SPAN
# Relative float32 resolution: changes below 1e-6 of the loss's magnitude are rounding, not signal.
REL_EPS = 1e-6
# Median |x[t] - x[t-1]| of Gaussian noise is 0.954 sigma (sqrt(2) * 0.6745).
_DIFF_MAD_TO_SIGMA = 0.6745 * math.sqrt(2.0)


def two_digits(x: float) -> str:
    """Numbers in the texts people read (stop details, rationales): 2 significant digits."""
    return f"{x:.2g}"


@cache
def _over_patterns(runs: int) -> tuple[int, ...]:
    """How many 0/1 strings of the `runs + MEDIAN_SPAN - 1` losses behind `runs` consecutive levels put every
    level over (a majority of its window over), by their number of ones: the chance of such a run is then a
    polynomial in the rate of single losses over the bar."""
    majority = MEDIAN_SPAN // 2 + 1
    ways: dict[tuple[int, ...], dict[int, int]] = {(): {0: 1}}  # last MEDIAN_SPAN - 1 bits -> {ones: count}
    for _ in range(runs + MEDIAN_SPAN - 1):
        grown: dict[tuple[int, ...], dict[int, int]] = {}
        for tail, counts in ways.items():
            for bit in (0, 1):
                window = (*tail, bit)
                if len(window) == MEDIAN_SPAN:
                    if sum(window) < majority:
                        continue
                    window = window[1:]
                into = grown.setdefault(window, {})
                for ones, count in counts.items():
                    into[ones + bit] = into.get(ones + bit, 0) + count
        ways = grown
    total = [0] * (runs + MEDIAN_SPAN)
    for counts in ways.values():
        for ones, count in counts.items():
            total[ones] += count
    return tuple(total)


def _run_chance(runs: int, rate: float) -> float:
    """Chance that `runs` given consecutive levels are all over when each loss is over with probability `rate`."""
    patterns = _over_patterns(runs)
    width = len(patterns) - 1
    return sum(count * rate**ones * (1.0 - rate) ** (width - ones) for ones, count in enumerate(patterns))


@cache
def _rate_limits(total_steps: int, persistence: int) -> tuple[float, ...]:
    """For runs of persistence, persistence + 1, ... MAX_CONFIRM - 1 over-levels: the highest rate of single
    losses over the bar at which such a run by chance anywhere in the test stays within FALSE_ALARMS."""
    limits = []
    for runs in range(persistence, MAX_CONFIRM):
        low, high = 0.0, 1.0  # the chance grows with the rate: more losses over never end a run
        for _ in range(40):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if total_steps * _run_chance(runs, mid) <= FALSE_ALARMS else (low, mid)
        limits.append(low)
    return tuple(limits)


def confirm_steps(jumps: int, seen: int, total_steps: int, persistence: int) -> int:
    """Over-levels in a row that confirm a divergence when `jumps` of the `seen` losses so far lay above their
    own median by more than the bar allows: the fewest (from `persistence`, at most MAX_CONFIRM) whose chance of
    coming from such jumps alone, at any of the test's `total_steps`, is at most FALSE_ALARMS (a union bound over
    the steps, jumps taken as independent). No jumps: `persistence`."""
    if jumps <= 0 or seen <= 0 or persistence >= MAX_CONFIRM:
        return persistence
    limits = _rate_limits(total_steps, persistence)
    return persistence + bisect.bisect_left(limits, jumps / seen)


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
    `persistence` consecutive steps are over. When single losses up to the best jumped above their median by more
    than that margin (heavy-tailed losses), such runs also come by chance: with `wait` the confirmation then waits
    for `confirm_steps` over-steps in a row, and the stop is still reported where `persistence` of them were over.
    Everything is relative to the curve's own fall and noise, so it works the same for negative and for tiny
    losses. The noise stops growing at the best: a curve that turns ragged past it (the diverging part) must not
    raise its own bar, or its spikes would hide the divergence until the loss is non-finite.

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

    def __init__(
        self,
        *,
        total_steps: int,
        persistence: int = 3,
        lrs: np.ndarray | None = None,
        rise: bool = True,
        wait: bool = True,
    ) -> None:
        """`total_steps` caps the losses fed; `lrs` (the ladder), if given, names LRs in `detail`; without `rise`
        only a non-finite loss stops the run (the caller judges the rest, e.g. a stay at one LR).

        `wait` lets the curve's jumps lengthen the confirmation. It suits a range test, whose stop only ends the
        measurement and is reported where it began, so waiting costs nothing but a few steps; a self-check trial's
        stop is a verdict on the LR it tries, where a chance stop only lowers the peak but a spike waited out
        passes an LR that a whole run may not survive: there `persistence` steps count at face value.
        """
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if persistence < 1:
            raise ValueError(f"persistence must be >= 1, got {persistence}")
        self.total_steps = total_steps
        self.persistence = persistence
        self.rise = rise
        self.wait = wait
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
        self._jumps: list[float] = []  # sorted: how far each loss lay above its level, where it did
        # Over-levels in a row that confirm a stop, from the jumps when the bar was set.
        self._need = persistence
        self._onset = 0.0  # the level at the step where the run reached `persistence`
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
        if not self.rise:
            return math.inf
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
        levels, head, persistence, rise = self._levels, self._head, self.persistence, self.rise
        step, last, start, best = self._seen, self._last, self._start, self._best
        peak, noise, run, bar = self._peak, self._noise, self._run, self._bar
        jumps, need, onset = self._jumps, self._need, self._onset
        wait = self.wait and rise  # only then are the jumps ever counted
        mid_raw, mid_diffs = MEDIAN_SPAN >> 1, NOISE_SPAN >> 1
        hold_from = MEDIAN_SPAN + HOLD_STEPS - 2  # the first step whose held level spans full windows
        for v in values:
            if not isfinite(v):
                if run >= persistence:  # an open run that waited for more confirmation ends here
                    self._stop_diverged(step - 1 - (run - persistence), onset, best, start, noise, need)
                else:
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
            if wait and v > level and step >= MEDIAN_SPAN - 1:
                insort(jumps, v - level)
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
            if level <= best or step < WARMUP_STEPS or start is None or not rise:
                run = 0
                step += 1
                continue
            if bar is None:  # the bar moves only with the best and the noise (start is fixed by now)
                allowed = self._allowed(start, best, noise)
                bar = best + allowed
                # The jumps so far (this step's included) that would each put a level at the best over this bar.
                if wait:
                    over = len(jumps) - bisect.bisect_right(jumps, allowed)
                    need = confirm_steps(over, step - MEDIAN_SPAN + 2, self.total_steps, persistence)
            run = run + 1 if level > bar else 0
            if run >= persistence:
                if run == persistence:
                    onset = level
                if run >= need:
                    # Reported where `persistence` steps were over, as without the wait: the wait only rules
                    # out chance, it does not move a divergence.
                    self._stop_diverged(step - (run - persistence), onset, best, start, noise, need)
                    step += 1
                    break
            step += 1
        else:
            if step == self.total_steps and run >= persistence and self.stop_reason is None:
                # The test ended while the run waited for confirmation: no later step can settle it.
                self._stop_diverged(step - 1 - (run - persistence), onset, best, start, noise, need)
        self._seen, self._last, self._start, self._best = step, last, start, best
        self._peak, self._noise, self._run, self._bar = peak, noise, run, bar
        self._need, self._onset = need, onset
        return self.stop_reason is not None

    # -- internals --

    def _at(self, step: int, template: str) -> str:
        return template.format(two_digits(self._lrs[step])) if self._lrs is not None else ""

    def _stop(self, step: int, reason: Literal["diverged", "non-finite"], detail: str) -> None:
        self.stop_index, self.stop_reason, self.detail = step, reason, detail

    def _stop_diverged(self, step: int, s: float, best: float, start: float, noise: float, need: int) -> None:
        detail = self._describe(step, s, best, start, noise)
        if need > self.persistence:
            detail += (
                f", and confirmed over {need} steps (the losses before the best jumped this far above their "
                f"median often enough for {self.persistence} in a row to be chance)"
            )
        self._stop(step, "diverged", detail)

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
            margin = f"{RISE:g}x its fall of {two_digits(fall)}"
        elif allowed <= NOISE_RISE / _DIFF_MAD_TO_SIGMA * noise:  # as `update` computes it
            margin = f"{NOISE_RISE:g}x the step noise {two_digits(sigma)} at the best"
        else:
            margin = "float32 resolution"
        where = self._at(step, "lr {}") or f"step {step}"
        # Named for what it is: the plot's smoothed curve is another (non-causal) smoother with another minimum.
        rose = f"median of {MEDIAN_SPAN} losses {two_digits(s)} rose above {two_digits(best + allowed)}"
        rose += f" (best median {two_digits(best)} + {margin})"
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
