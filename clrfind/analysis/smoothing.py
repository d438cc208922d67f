"""Smoothing a range-test curve without lag: a robust, centred local-linear fit. Pure numpy.

An EMA (what the peer LR finders use) lags, shifting every feature to a higher LR. `smooth` fits a straight line in
a tricube window around each point instead: no lag, exact on a ramp and at the ends, and spikes, found against a
running median, get no weight, so an early spike is never "steepest". Non-finite points are missing, never spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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
# Kernels longer than this are applied through the FFT.
_DIRECT_KERNEL = 64
# ... unless the largest input is this many times the typical one: the FFT spreads a rounding error of ~1e-16 of
# the largest input over every output, and a blow-up to 1e29 at the end of a curve would swamp all the rest.
_FFT_RANGE = 1e6


def default_window(n: int) -> int:
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

    Direct for short kernels and for inputs of extreme range; through the FFT for long ones, which keeps a
    10,000-point curve with an 800-point window at O(n log n).
    """
    if f.size <= _DIRECT_KERNEL or np.abs(a).max() > _FFT_RANGE * np.median(np.abs(a)):
        return np.convolve(a, f[::-1], mode="same")
    half = f.size // 2
    size = 1 << int(a.size + f.size - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(f[::-1], size), size)
    return full[half : half + a.size]


@dataclass(frozen=True)
class LocalFit:
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


def _window_extremes(values: np.ndarray, half: int, op: np.ufunc) -> np.ndarray:
    """`op` (np.minimum or np.maximum) over the points within `half` of each point, in O(n) for any window.

    Van Herk/Gil-Werman: cut the padded array into blocks of one window's length; a window spans the tail of one
    block and the head of the next, so it is `op` of a suffix and a prefix accumulation. `values` must hold op's
    neutral value (+inf for minimum, -inf for maximum) where points are missing, which also pads the ends.
    """
    width = 2 * half + 1
    neutral = values.dtype.type(np.inf if op is np.minimum else -np.inf)
    blocks = -(-(values.size + 2 * half) // width)
    padded = np.full(blocks * width, neutral)
    padded[half : half + values.size] = values
    table = padded.reshape(blocks, width)
    prefix = op.accumulate(table, axis=1).ravel()
    suffix = op.accumulate(table[:, ::-1], axis=1)[:, ::-1].ravel()
    return op(suffix[: values.size], prefix[width - 1 : width - 1 + values.size])


def local_fit(values: np.ndarray, window: int | None = None) -> LocalFit:
    """Robust local-linear fit of evenly sampled values; non-finite inputs are missing and come out NaN."""
    y = np.asarray(values, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {y.shape}")
    mask = np.isfinite(y)
    if window is None:
        window = default_window(y.size)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    half = min(window // 2, (y.size - 1) // 2)
    if half <= 0 or mask.sum() < 3:
        return LocalFit(np.where(mask, y, np.nan), np.zeros(y.size), 0)
    weights = _outlier_weights(y, mask, 2 * half + 1)
    centre = float(np.median(y[mask]))  # fit around 0: the sums stay well conditioned for shifted losses
    level, slope = _local_linear(y - centre, weights, half)
    level += centre
    # A line fitted across a corner (a sharp drop, the start of a blow-up) can overshoot past every value it was
    # fitted to: a cross-entropy came out negative. The smoothed point stays within the finite raw values of its
    # own window; the slope is left as fitted (it is the local trend, not a level).
    low, high = (
        _window_extremes(np.where(mask, y, np.inf), half, np.minimum),
        _window_extremes(np.where(mask, y, -np.inf), half, np.maximum),
    )
    level = np.clip(level, low, high)
    level[~mask] = np.nan
    slope[~mask] = np.nan
    return LocalFit(level, slope, half)


def smooth(values: np.ndarray, window: int | None = None) -> np.ndarray:
    """Centered (zero-phase) robust smoother for evenly sampled points; same length as the input.

    A local-linear fit with a tricube window: it does not lag (a straight ramp comes out unchanged, ends
    included), and isolated spikes get no weight. Non-finite inputs are treated as missing, never spread to
    their neighbours, and come out as NaN at their own index. `window` None picks ~8% of the points (odd, at
    least 5).
    """
    return local_fit(values, window).level
