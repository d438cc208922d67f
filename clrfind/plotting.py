"""The range-test plot, from a results object alone: curves, suggested bounds, where it diverged, and why.

Figures are built with `matplotlib.figure.Figure` on an Agg canvas, never pyplot: no global state, no display,
safe in threads, servers and notebooks alike. Every number the plot shows is written on it as text too (legend
labels, footnote), so the figure is readable without judging positions by eye.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clrfind.errors import UsageError
from clrfind.fileio import write_atomic

if TYPE_CHECKING:  # the plot reads what a result carries; it never builds one
    from matplotlib.text import Annotation, Text

    from clrfind.results import Bounds, RangeTestResult, RunCurve

# 1600 x 1000 px: readable on a laptop screen and in a README without zooming.
FIGSIZE = (10.0, 6.25)
DPI = 160
LOSS_COLOR = "tab:blue"
BOUND_COLOR = "tab:green"
STOP_COLOR = "tab:red"
METRIC_COLOR = "tab:purple"
BEST_COLOR = "black"
# Raw losses outside these quantiles (before divergence) may fall off the axis: one spike must not flatten it.
RAW_QUANTILES = (0.02, 0.98)
# Fewer raw points than this are all shown: quantiles of a handful of points would clip real ones.
MIN_QUANTILE_POINTS = 20
# Margins around the focused y range, as fractions of it: more on top for the bound labels.
Y_MARGIN_BOTTOM = 0.06
Y_MARGIN_TOP = 0.18
# A rise after the minimum of more than BLOWUP_RISE x the fall is a blow-up: the y range stops BLOWUP_HEADROOM
# x the fall above the start level, so the descent keeps most of the height.
BLOWUP_RISE = 2.0
BLOWUP_HEADROOM = 0.5
# Footnote: characters per line at fontsize 8 across a 10-inch figure, and at most this many lines.
FOOTNOTE_WIDTH = 165
FOOTNOTE_LINES = 4
# Where the stop marker's label may go, in order (offset in points, horizontal alignment): left of the x and just
# below it, then right of it, then above on either side, then further down on the left, past a bound's label.
STOP_LABEL_PLACES: tuple[tuple[tuple[float, float], str], ...] = (
    ((-8, -14), "right"),
    ((8, -14), "left"),
    ((-8, 8), "right"),
    ((8, 8), "left"),
    *(((-8, -14 - 12 * k), "right") for k in range(1, 9)),
)


def plot_result(result: RangeTestResult, *, log_x: bool | None = None) -> Figure:
    """Loss (raw and smoothed) against LR with the suggested bounds, the stop point and the best point marked.

    Args:
        result: one range test, or an aggregate of repeated runs (`result.runs`), drawn with a min-max band.
        log_x: LR axis scale; default log for an exponential ladder, linear for a linear one.
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    lrs = _array(result.lrs)
    raw = _array(result.losses)
    smoothed = _array(result.smoothed)
    bounds = result.bounds
    end = _end_index(lrs, raw, bounds, result.stop_reason)
    runs = result.runs if result.runs is not None and len(result.runs) >= 2 else None
    focus: list[tuple[np.ndarray, np.ndarray, int]] = [(raw, smoothed, end)]

    raw_label = "mean loss of the runs" if runs else "raw loss"
    ax.plot(lrs, raw, color=LOSS_COLOR, lw=0.8, alpha=0.35, label=raw_label)
    if runs:
        focus += _draw_runs_band(ax, runs, end, len(lrs))
    smooth_label = f"mean of {len(runs)} runs, smoothed" if runs else "smoothed loss"
    ax.plot(lrs, smoothed, color=LOSS_COLOR, lw=2.2, label=smooth_label)

    limits = _focus_limits(focus)
    if limits is not None:
        ax.set_ylim(*limits)
    bad = ~np.isfinite(raw)
    if bad.any():
        # Gaps alone are easy to miss: a rug at the bottom says where (and how many) losses were NaN/inf.
        ax.plot(
            lrs[bad],
            np.full(int(bad.sum()), 0.02),
            ls="",
            marker="|",
            ms=9,
            color=STOP_COLOR,
            transform=ax.get_xaxis_transform(),
            label=f"non-finite loss ({int(bad.sum())} steps)",
        )

    bound_labels = _draw_bounds(ax, result)
    _draw_best(ax, lrs, smoothed, end)
    stop_label = _draw_stop(ax, result, lrs, raw, smoothed, end)
    _draw_trials(ax, result)
    handles, labels = ax.get_legend_handles_labels()
    if result.metric is not None:
        metric_ax = ax.twinx()
        metric = result.metric
        used = bounds is not None and bounds.method == metric.name
        metric_ax.plot(
            _array(metric.lrs),
            _array(metric.values),
            color=METRIC_COLOR,
            marker="o",
            ms=3.5,
            lw=1.3,
            label=f"{metric.name} (validation subsample){', bounds read from it' if used else ''}",
        )
        metric_ax.set_ylabel(metric.name.replace("_", " "), color=METRIC_COLOR)
        metric_ax.tick_params(axis="y", colors=METRIC_COLOR)
        more_handles, more_labels = metric_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
        # The loss axes on top (with a transparent background): the loss curve and the bounds, what the plot is
        # for, are drawn over the metric.
        ax.set_zorder(metric_ax.get_zorder() + 1)
        ax.patch.set_visible(False)
    # Below the plot, not on it: the raw loss spans the whole plot, so no place inside is free, and "best" placement
    # put the legend over the suggested range and the bounds' labels.
    ax.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False,
    )  # fmt: skip

    _set_x_scale(ax, lrs, result.mode if log_x is None else ("exp" if log_x else "linear"))
    ax.set_ylabel("training loss")
    ax.set_title(_title(result), fontsize=10.5)
    _finish(fig, _footnote(result))
    if stop_label is not None:
        _clear_of(fig, ax, stop_label, bound_labels)
    return fig


def plot_sweep(results: Sequence[tuple[str, RangeTestResult]], *, log_x: bool | None = None) -> Figure:
    """Smoothed curves of several range tests overlaid, one legend entry per value, each run's max_lr marked.

    For Smith's (2018) weight-decay / batch-size sweeps: the value reaching the lowest loss with the largest
    max_lr wins.
    """
    if not results:
        raise UsageError("plot_sweep needs at least one (label, result) pair")
    fig = _new_figure()
    ax = fig.add_subplot()
    focus: list[tuple[np.ndarray, np.ndarray, int]] = []
    all_lrs: list[np.ndarray] = []
    for i, (label, result) in enumerate(results):
        color = f"C{i % 10}"
        lrs, raw, smoothed = _array(result.lrs), _array(result.losses), _array(result.smoothed)
        b = result.bounds
        end = _end_index(lrs, raw, b, result.stop_reason)
        focus.append((raw, smoothed, end))
        all_lrs.append(lrs)
        max_lr = b.max_lr if b is not None and b.usable else None
        text = f"{label}: max_lr {max_lr:.3g}" if max_lr is not None else f"{label}: no bounds"
        ax.plot(lrs, smoothed, color=color, lw=2.0, label=text)
        if max_lr is not None:
            ax.axvline(max_lr, color=color, ls=":", lw=1.1, alpha=0.8)
            ok = np.isfinite(smoothed)
            if ok.any():
                y = float(np.interp(max_lr, lrs[ok], smoothed[ok]))
                ax.plot([max_lr], [y], ls="", marker="v", ms=9, color=color, mec="black", mew=0.6, zorder=5)
    limits = _focus_limits(focus)
    if limits is not None:
        ax.set_ylim(*limits)
    ax.legend(loc="best", fontsize=8, framealpha=0.9, title="value: suggested max_lr", title_fontsize=8)
    first = results[0][1]
    _set_x_scale(ax, np.concatenate(all_lrs), first.mode if log_x is None else ("exp" if log_x else "linear"))
    ax.set_ylabel("training loss (smoothed)")
    name = f": {Path(first.spec_path).name}" if first.spec_path else ""
    ax.set_title(f"LR range test sweep{name}, {len(results)} runs", fontsize=10.5)
    _finish(
        fig,
        "Triangles and dotted lines: each run's max_lr. "
        "Smith (2018): prefer the value that reaches the lowest loss and still allows the largest max_lr.",
    )
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes, rendered in memory: written atomically afterwards, or with a run's other files."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Render to PNG in memory, then write it atomically: an interrupted save never leaves half a PNG."""
    return write_atomic(path, figure_png(fig))


# -- pieces --------------------------------------------------------------------------------------------------


def _new_figure() -> Figure:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)  # attaches itself to the figure; no pyplot figure manager involved
    return fig


def _array(values: Sequence[float | None]) -> np.ndarray:
    """Floats with None (a non-finite value in the results file) as NaN, which matplotlib draws as a gap."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _draw_runs_band(
    ax: Axes, runs: Sequence[RunCurve], end: int, length: int
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Min-max band of the repeated runs' smoothed curves (they share the ladder, so step i is the same LR).

    The band stops where the aggregate curve stops (`length`): one run that went on alone must not stretch the
    LR axis. Returns the runs as curves for the y-limits, each cut at the aggregate's divergence `end` at the latest,
    so the band cannot pull one run's blow-up into view.
    """
    n = min(max(len(run.lrs) for run in runs), length)
    table = np.full((len(runs), n), np.nan)
    focus = []
    for i, run in enumerate(runs):
        table[i, : min(len(run.smoothed), n)] = _array(run.smoothed)[:n]
        run_raw = _array(run.losses)
        run_end = _end_index(_array(run.lrs), run_raw, run.bounds, run.stop_reason)
        focus.append((run_raw, table[i], min(end, run_end)))
    finite = np.isfinite(table)
    seen = finite.any(axis=0)
    low = np.where(seen, np.where(finite, table, np.inf).min(axis=0), 0.0)
    high = np.where(seen, np.where(finite, table, -np.inf).max(axis=0), 0.0)
    x = _array(max(runs, key=lambda r: len(r.lrs)).lrs)[:n]
    ax.fill_between(
        x,
        low,
        high,
        where=seen,
        color=LOSS_COLOR,
        alpha=0.18,
        lw=0,
        label=f"min-max of {len(runs)} runs (smoothed)",
    )
    return focus


def _end_index(lrs: np.ndarray, raw: np.ndarray, bounds: Bounds | None, stop_reason: str) -> int:
    """Points before this index are the curve worth looking at.

    That is before the divergence, or the non-finite loss that ended the run (gaps in a run that went on are
    only gaps).
    """
    end = len(raw)
    bad = np.flatnonzero(~np.isfinite(raw))
    if bad.size and stop_reason == "non-finite":
        end = int(bad[0])
    if bounds is not None and bounds.divergence_lr is not None and lrs.size:
        end = min(end, int(np.searchsorted(lrs, bounds.divergence_lr)))
    return end


def _focus_limits(curves: Sequence[tuple[np.ndarray, np.ndarray, int]]) -> tuple[float, float] | None:
    """y-limits around the curves before they diverge: the smoothed range plus the bulk of the raw noise.

    A blow-up (or one spike) can be orders of magnitude above the interesting part: it runs off the top.
    """
    values: list[float] = []
    for raw, smoothed, end in curves:
        sm = smoothed[:end][np.isfinite(smoothed[:end])]
        rw = raw[:end][np.isfinite(raw[:end])]
        if rw.size == 0 and sm.size == 0:  # diverged at once: fall back to whatever is finite
            sm = smoothed[np.isfinite(smoothed)]
            rw = raw[np.isfinite(raw)]
        found: list[float] = []
        if sm.size:
            found += [float(sm.min()), float(sm.max())]
        if rw.size >= MIN_QUANTILE_POINTS:
            found += [float(q) for q in np.quantile(rw, RAW_QUANTILES)]
        elif rw.size:
            found += [float(rw.min()), float(rw.max())]
        cap = _blowup_cap(sm)
        values += [min(v, cap) for v in found]
    if not values:
        return None
    lo, hi = min(values), max(values)
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        span = max(abs(hi), 1.0) * 0.1
    return lo - Y_MARGIN_BOTTOM * span, hi + Y_MARGIN_TOP * span


def _blowup_cap(smoothed: np.ndarray) -> float:
    """The highest loss worth showing for a curve that falls, then blows up: a little above its start level.

    The divergence is confirmed a few steps after the blow-up starts, so the analysed part can still end in
    it. Curves whose lowest point is at the very start (the loss never fell) are shown whole: the rise is
    their story.
    """
    if smoothed.size < 3:
        return math.inf
    i = int(np.argmin(smoothed))
    best = float(smoothed[i])
    start = float(smoothed[: i + 1].max())
    fall, rise = start - best, float(smoothed[i:].max()) - best
    if fall <= 0 or rise <= BLOWUP_RISE * fall or i < max(3, smoothed.size // 10):
        return math.inf
    return start + BLOWUP_HEADROOM * fall


def _draw_bounds(ax: Axes, result: RangeTestResult) -> list[Text]:
    """The suggested range and a line per bound; returns the bounds' labels, which other labels must keep clear of."""
    b = result.bounds
    if b is None or (b.base_lr is None and b.max_lr is None):
        why = (b.reason if b is not None else None) or "the results hold no analysis"
        text = "\n".join(textwrap.wrap(f"No bounds suggested: {why}", 70))
        ax.text(
            0.5,
            0.55,
            text,
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=10,
            color=STOP_COLOR,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": STOP_COLOR, "alpha": 0.9},
        )
        return []
    if b.base_lr is not None and b.max_lr is not None:
        ax.axvspan(
            b.base_lr,
            b.max_lr,
            color=BOUND_COLOR,
            alpha=0.12,
            lw=0,
            label=f"suggested range ({b.confidence} confidence)",
        )
    spread = result.spread or {}
    texts: list[Text] = []
    # base_lr's label sits left of its line, max_lr's right of it, so neither covers the band; the one-cycle peak's
    # goes at the bottom, clear of max_lr's label and of the divergence marker's text, both near the top.
    for value, name, key, ls, ha, y, va in (
        (b.base_lr, "base_lr", "base_lr", "--", "right", 0.97, "top"),
        (b.max_lr, "max_lr", "max_lr", "-", "left", 0.97, "top"),
        (b.peak_above_max_lr, "one-cycle peak_lr", "peak_lr", ":", "left", 0.03, "bottom"),
    ):
        if value is None:
            continue
        label = f"{name} {value:.3g}"
        if key in spread:
            s = spread[key]
            label += f" (runs: IQR {s.q1:.2g}-{s.q3:.2g})"
        ax.axvline(value, color=BOUND_COLOR, ls=ls, lw=1.5, label=label)
        text = ax.text(
            value,
            y,
            f" {label} ",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha=ha,
            va=va,
            fontsize=9,
            color="darkgreen",
        )
        texts.append(text)
    return texts


def _draw_best(ax: Axes, lrs: np.ndarray, smoothed: np.ndarray, end: int) -> None:
    """The lowest smoothed loss before divergence (after it, only the blow-up is left)."""
    part = smoothed[:end] if np.isfinite(smoothed[:end]).any() else smoothed
    if not np.isfinite(part).any():
        return
    i = int(np.nanargmin(part))
    ax.plot(
        [lrs[i]],
        [part[i]],
        ls="",
        marker="o",
        ms=7,
        mfc="white",
        mec=BEST_COLOR,
        mew=1.8,
        zorder=5,
        label=f"lowest smoothed loss {part[i]:.3g} at lr {lrs[i]:.3g}",
    )


def _draw_stop(
    ax: Axes, result: RangeTestResult, lrs: np.ndarray, raw: np.ndarray, smoothed: np.ndarray, end: int
) -> Annotation | None:
    """An x where the run diverged, hit a non-finite loss, or was cut short, and its label; nothing for a completed
    run."""
    if lrs.size == 0:
        return None
    div_lr = result.bounds.divergence_lr if result.bounds else None
    if result.stop_reason in ("diverged", "non-finite") or div_lr is not None or end < lrs.size:
        i = min(end, lrs.size - 1)
        what = "non-finite loss" if not math.isfinite(raw[i]) else "diverged"
    elif result.stop_reason in ("interrupted", "error"):
        i, what = lrs.size - 1, f"stopped ({result.stop_reason})"
    else:
        return None
    label = f"{what} at {lrs[i]:.3g}"
    lo, hi = ax.get_ylim()
    y = next((float(v[i]) for v in (raw, smoothed) if math.isfinite(v[i])), hi)
    # A blow-up lies far above the focused range: pin the marker to the top edge, where the curve leaves.
    y = min(max(y, lo), hi - 0.02 * (hi - lo))
    ax.plot([lrs[i]], [y], ls="", marker="x", ms=11, mew=2.5, color=STOP_COLOR, zorder=6, label=label)
    return ax.annotate(
        label,
        (lrs[i], y),
        xytext=STOP_LABEL_PLACES[0][0],
        textcoords="offset points",
        ha=STOP_LABEL_PLACES[0][1],
        fontsize=9,
        color=STOP_COLOR,
        # Readable where it crosses a bound's line or the raw loss.
        bbox={"boxstyle": "square,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
    )


def _clear_of(fig: Figure, ax: Axes, label: Annotation, others: list[Text]) -> None:
    """Move `label` to the first of STOP_LABEL_PLACES inside the axes where it covers none of `others`: a max_lr
    close to the divergence puts its vertical label right where the stop marker's text goes. Positions are only
    final after the layout, so this runs last; it keeps the first place when none is free."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    boxes = [t.get_window_extent(renderer) for t in others]
    for offset, ha in STOP_LABEL_PLACES:
        label.set_position(offset)
        label.set_horizontalalignment(ha)
        box = label.get_window_extent(renderer)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        if inside and not any(box.overlaps(other) for other in boxes):
            return
    label.set_position(STOP_LABEL_PLACES[0][0])
    label.set_horizontalalignment(STOP_LABEL_PLACES[0][1])


def _draw_trials(ax: Axes, result: RangeTestResult) -> None:
    """The self-check's trials along the top edge: a dot per peak that trained (the kept one filled), an x per peak
    that did not; the footnote gives their final losses."""
    check = result.verification
    if check is None or not check.trials:
        return
    top = ax.get_xaxis_transform()
    for trial in check.trials:
        kept = math.isclose(trial.peak, check.peak_lr, rel_tol=1e-9)
        edge = BOUND_COLOR if trial.final_loss is not None else STOP_COLOR
        face = edge if kept or trial.final_loss is None else "white"
        marker = "o" if trial.final_loss is not None else "X"
        ax.plot([trial.peak], [1.0], transform=top, ls="", marker=marker, ms=8, mfc=face, mec=edge, mew=1.5,
                zorder=7, clip_on=False)  # fmt: skip
    ax.plot([], [], ls="", marker="o", ms=8, mfc=BOUND_COLOR, mec=BOUND_COLOR,
            label=f"self-check: one-cycle trials ({check.trials[0].steps} steps each), kept peak filled")  # fmt: skip


def _set_x_scale(ax: Axes, lrs: np.ndarray, mode: str) -> None:
    positive = lrs[np.isfinite(lrs)]
    log = mode == "exp" and positive.size > 0 and bool((positive > 0).all())
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"learning rate ({'log' if log else 'linear'} scale)")
    ax.grid(True, which="major", alpha=0.3)
    if log:
        ax.grid(True, which="minor", alpha=0.1)


def _title(result: RangeTestResult) -> str:
    head = "LR range test"
    if result.spec_path:
        head += f": {Path(result.spec_path).name}"
    model = result.spec.get("model") if isinstance(result.spec, dict) else None
    if isinstance(model, dict) and isinstance(model.get("target"), str):
        head += f" (model {model['target']})"
    if result.from_trained_state:  # the curve starts where that training was, not from a fresh start
        head += " - re-tested from a trained state"
    stop = result.stop_reason  # the detail is a sentence: it goes to the footnote, where it has room
    confidence = result.bounds.confidence if result.bounds else "none"
    runs = f", {len(result.runs)} runs" if result.runs else ""
    return (
        f"{head}\nstopped: {stop} | confidence: {confidence} | "
        f"{result.steps_run} of {result.planned_steps} steps{runs}, "
        f"{result.mode} ladder {result.min_lr:.3g} to {result.max_lr:.3g}"
    )


def _footnote(result: RangeTestResult) -> str:
    b = result.bounds
    if b is None:
        return "No analysis in the results: re-run the range test."
    parts = [f"{label}: {text}." for label, text in b.explanation()]
    parts += _training_notes(result)
    if result.verification is not None:
        check = result.verification
        parts.append(
            f"Self-check: {check.outcome}" + (f" (judged on {check.judged_on})." if check.judged_on else ".")
        )
    if result.stop_detail:
        parts.append(f"Stopped: {result.stop_detail}.")
    return " ".join(parts)


def _training_notes(result: RangeTestResult) -> list[str]:
    """How the test trained, where it differs from one LR for all and plain steps: the training it was told, the
    groups' ratios, clipping, and a start from a trained state."""
    notes = []
    if result.training is not None:
        notes.append(f"For a training of {result.training.described} (the exported schedule's length).")
    groups = result.param_groups or []
    if len(groups) > 1:
        top = max(groups, key=lambda g: g.lr_ratio)
        ratios = ", ".join(f"{g.name} {g.lr_ratio:g}x" for g in groups)
        notes.append(f"Parameter groups: {ratios} (the LR axis is {top.name}'s; the others moved with it).")
    if result.clip_grad_norm is not None:
        notes.append(f"Gradients clipped to norm {result.clip_grad_norm:g}.")
    if result.clip_grad_value is not None:
        notes.append(f"Gradients clipped to +-{result.clip_grad_value:g}.")
    if result.from_trained_state:
        notes.append(
            "Re-tested from a trained state: the optimizer's state (momentum, moments) was carried in, so the "
            "curve starts where that training was."
        )
    return notes


def _finish(fig: Figure, footnote: str) -> None:
    """Footnote at the bottom, tight layout above it."""
    lines = textwrap.wrap(footnote, FOOTNOTE_WIDTH)
    if len(lines) > FOOTNOTE_LINES:
        lines = [
            *lines[: FOOTNOTE_LINES - 1],
            textwrap.shorten(" ".join(lines[FOOTNOTE_LINES - 1 :]), FOOTNOTE_WIDTH),
        ]
    bottom = 0.0
    if lines:
        fig.text(0.01, 0.012, "\n".join(lines), ha="left", va="bottom", fontsize=8, color="0.25")
        bottom = 0.02 + 0.026 * len(lines)
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
