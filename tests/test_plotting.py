"""The plot from hand-built results: bounds, gaps, divergence, metric axis, repeated-run band, sweep, no
bounds; the PNG written atomically; and no pyplot anywhere."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

import clrfind.plotting as plotting
from clrfind.errors import UsageError
from clrfind.plotting import plot_result, plot_sweep, save_figure
from clrfind.results import Bounds, MetricCurve, RangeTestResult, RunCurve, Spread
from clrfind.settings import TrainingLength

LRS = np.geomspace(1e-3, 1.0, 80)
FALL = 1.8  # of the synthetic curve, from 2.3 to 0.5
DIV = float(LRS[76])  # where the analysis would confirm the blow-up that starts at 0.6, a few steps late
BOUNDS = Bounds(
    base_lr=0.012,
    max_lr=0.41,
    confidence="high",
    base_rationale="loss starts falling clearly at 0.012",
    max_rationale=f"loss stopped falling at 0.41 and diverged at {DIV:.2g}",
    divergence_lr=DIV,
)


def curve(seed: int = 0, noise: float = 0.03, blowup: bool = True) -> tuple[list[float], list[float]]:
    """(raw, smoothed): a plateau, a fall between ~0.01 and ~0.4, then (optionally) a blow-up past 0.6."""
    x = np.log10(LRS)
    clean = 2.3 - FALL / (1 + np.exp(-(x + 1.2) * 4))
    if blowup:
        clean += np.where(LRS > 0.6, np.expm1(20 * (LRS - 0.6)), 0.0)
    raw = clean + np.random.default_rng(seed).normal(0, noise, LRS.size)
    return [float(v) for v in raw], [float(v) for v in clean]


def make_result(**overrides: Any) -> RangeTestResult:
    raw, smoothed = curve()
    fields: dict[str, Any] = {
        "clrfind_version": "0.1.0",
        "mode": "exp",
        "min_lr": 1e-3,
        "max_lr": 1.0,
        "planned_steps": 80,
        "lrs": [float(v) for v in LRS],
        "losses": raw,
        "smoothed": smoothed,
        "stop_reason": "diverged",
        "bounds": BOUNDS,
        "spec_path": "/runs/cifar/spec.yaml",
        "spec": {"model": {"target": "task.py:Net"}},
    }
    fields.update(overrides)
    return RangeTestResult(**fields)


def legend_labels(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def all_text(fig: Figure) -> str:
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [t.get_text() for t in ax.texts] + [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return "\n".join(texts + legend_labels(fig))


def line(fig: Figure, label: str) -> Any:
    return next(ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == label)


def test_normal_result() -> None:
    fig = plot_result(make_result())
    assert tuple(fig.get_size_inches() * fig.dpi) == (1600, 1000)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = legend_labels(fig)
    assert {
        "raw loss",
        "smoothed loss",
        "base_lr 0.012",
        "max_lr 0.41",
        "suggested range (high confidence)",
    } <= set(labels)
    assert " base_lr 0.012 " in [
        t.get_text() for t in ax.texts
    ]  # written at the line, not only in the legend
    assert " max_lr 0.41 " in [t.get_text() for t in ax.texts]
    best = next(label for label in labels if label.startswith("lowest smoothed loss"))
    assert "at lr" in best
    title = ax.get_title()
    assert (
        "spec.yaml" in title
        and "task.py:Net" in title
        and "diverged" in title
        and "confidence: high" in title
    )
    assert "loss starts falling clearly at 0.012" in all_text(fig) and f"diverged at {DIV:.3g}" in all_text(
        fig
    )


def test_the_training_the_test_was_told_is_in_the_footnote() -> None:
    told = " ".join(
        all_text(plot_result(make_result(training=TrainingLength(epochs=20, steps_per_epoch=64)))).split()
    )
    assert "For a training of 20 epochs x 64 steps = 1280 steps (the exported schedule's length)." in told
    assert "For a training of" not in all_text(plot_result(make_result()))


def test_one_cycle_peak_is_marked_only_above_max_lr() -> None:
    fig = plot_result(make_result(bounds=BOUNDS.model_copy(update={"peak_lr": 0.5})))
    assert "one-cycle peak_lr 0.5" in legend_labels(fig)
    assert line(fig, "one-cycle peak_lr 0.5").get_xdata()[0] == 0.5
    # written at its line too, at the bottom: max_lr's label and the divergence text sit at the top
    text = next(t for t in fig.axes[0].texts if t.get_text() == " one-cycle peak_lr 0.5 ")
    assert text.get_position()[1] < 0.5 and text.get_va() == "bottom"
    for peak in (None, 0.41):  # results before schema 2, and a peak at max_lr itself: nothing extra drawn
        fig = plot_result(make_result(bounds=BOUNDS.model_copy(update={"peak_lr": peak})))
        assert not any("peak_lr" in label for label in legend_labels(fig))


@pytest.mark.parametrize(
    ("mode", "log_x", "scale"),
    [("linear", None, "linear"), ("exp", None, "log"), ("linear", True, "log"), ("exp", False, "linear")],
)
def test_log_x_follows_the_ladder_unless_given(mode: str, log_x: bool | None, scale: str) -> None:
    assert plot_result(make_result(mode=mode), log_x=log_x).axes[0].get_xscale() == scale


def test_nan_gaps_are_gaps() -> None:
    raw, smoothed = curve()
    for i in (20, 21, 22):
        raw[i] = None  # type: ignore[call-overload]
        smoothed[i] = None  # type: ignore[call-overload]
    fig = plot_result(make_result(losses=raw, smoothed=smoothed, stop_reason="completed"))
    y = line(fig, "raw loss").get_ydata()
    assert np.isnan(y[20:23]).all() and np.isfinite(y[:20]).all() and np.isfinite(y[23:]).all()
    assert np.isnan(line(fig, "smoothed loss").get_ydata()[21])
    assert "non-finite loss (3 steps)" in legend_labels(fig)


def test_divergence_is_marked_and_does_not_flatten_the_curve() -> None:
    result = make_result()
    assert max(v for v in result.losses if v is not None) > 100  # the blow-up is huge ...
    fig = plot_result(result)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert low > 0.0 and high - low < 2 * FALL  # ... but the fall keeps most of the height
    marker = line(fig, f"diverged at {DIV:.3g}")
    assert marker.get_marker() == "x" and marker.get_xdata()[0] == DIV
    assert low <= marker.get_ydata()[0] <= high  # pinned inside the axes even when the loss is off the top
    assert f"diverged at {DIV:.3g}" in [t.get_text() for t in ax.texts]


def test_the_stop_label_keeps_clear_of_the_bounds_labels() -> None:
    """max_lr 0.41 sits under half a decade below the divergence at the top edge: its vertical label runs down
    from the top right where the stop marker's text goes first, so that text moves (here, further down)."""
    fig = plot_result(make_result())
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    stop = next(t for t in ax.texts if t.get_text() == f"diverged at {DIV:.3g}")
    bounds = [t for t in ax.texts if t.get_text().strip().startswith(("base_lr", "max_lr"))]
    assert len(bounds) == 2
    box = stop.get_window_extent(renderer)
    assert not any(box.overlaps(t.get_window_extent(renderer)) for t in bounds)
    assert ax.get_window_extent(renderer).contains(box.x0, box.y0)
    assert stop.get_position() != plotting.STOP_LABEL_PLACES[0][0]  # the first place was taken
    # A run whose bounds sit far from the divergence keeps the first place, just below and left of the x.
    far = BOUNDS.model_copy(update={"base_lr": 0.002, "max_lr": 0.02})
    fig = plot_result(make_result(bounds=far))
    stop = next(t for t in fig.axes[0].texts if t.get_text() == f"diverged at {DIV:.3g}")
    assert stop.get_position() == plotting.STOP_LABEL_PLACES[0][0]


@pytest.mark.parametrize("analysed", [True, False])
def test_single_spike_does_not_set_the_y_range(analysed: bool) -> None:
    raw, smoothed = curve(blowup=False)
    raw[30] = 1e6
    bounds = BOUNDS.model_copy(update={"divergence_lr": None}) if analysed else None
    fig = plot_result(make_result(losses=raw, smoothed=smoothed, bounds=bounds, stop_reason="completed"))
    assert fig.axes[0].get_ylim()[1] < 2.3 + 0.2 * FALL
    assert not any(ln.get_label().startswith(("diverged", "non-finite")) for ln in fig.axes[0].get_lines())


def test_divergence_found_without_saved_bounds() -> None:
    fig = plot_result(make_result(bounds=None))  # a results file written before any analysis
    low, high = fig.axes[0].get_ylim()
    assert high - low < 2 * FALL
    assert any(label.startswith("diverged at") for label in legend_labels(fig))


def test_non_finite_stop() -> None:
    raw, smoothed = curve()
    n = 60
    raw, smoothed = raw[:n], smoothed[:n]
    raw[-1] = None  # type: ignore[call-overload]
    smoothed[-1] = None  # type: ignore[call-overload]
    bounds = BOUNDS.model_copy(update={"divergence_lr": None})
    result = make_result(
        lrs=[float(v) for v in LRS[:n]],
        losses=raw,
        smoothed=smoothed,
        stop_reason="non-finite",
        bounds=bounds,
    )
    fig = plot_result(result)
    label = f"non-finite loss at {LRS[n - 1]:.3g}"
    assert label in legend_labels(fig)
    low, high = fig.axes[0].get_ylim()
    assert low <= line(fig, label).get_ydata()[0] <= high


def test_interrupted_run_is_marked() -> None:
    fig = plot_result(
        make_result(stop_reason="interrupted", bounds=BOUNDS.model_copy(update={"divergence_lr": None}))
    )
    assert f"stopped (interrupted) at {LRS[-1]:.3g}" in legend_labels(fig)


def test_metric_on_a_second_axis() -> None:
    steps = list(range(0, 80, 8))
    metric = MetricCurve(
        name="accuracy",
        higher_is_better=True,
        steps=steps,
        lrs=[float(LRS[s]) for s in steps],
        values=[0.1, 0.2, 0.4, 0.6, 0.75, 0.8, 0.82, 0.7, None, 0.1],
    )
    fig = plot_result(make_result(metric=metric))
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "accuracy"
    assert "accuracy (validation subsample)" in legend_labels(fig)
    assert np.isnan(line(fig, "accuracy (validation subsample)").get_ydata()[8])
    assert "max_lr 0.41" in legend_labels(fig)  # one legend holds both axes' entries


def test_the_legend_covers_neither_the_plot_nor_the_footnote() -> None:
    """The raw loss spans the whole plot, so a legend inside it hides the range or the bounds' labels."""
    metric = MetricCurve(
        name="accuracy", higher_is_better=True, steps=[0, 40], lrs=[float(LRS[0]), float(LRS[40])],
        values=[0.1, 0.5],
    )  # fmt: skip
    fig = plot_result(make_result(metric=metric))
    fig.canvas.draw()  # positions are final only once drawn
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    assert legend.y1 <= fig.axes[0].xaxis.label.get_window_extent(renderer).y0  # below the axis label
    for other in [
        fig.axes[0].get_window_extent(renderer),
        *(t.get_window_extent(renderer) for t in fig.texts),
    ]:
        assert not legend.overlaps(other)


def test_repeated_runs_band() -> None:
    runs = []
    for seed in range(3):
        raw, _ = curve(seed=seed + 1)
        smoothed = [float(v) + 0.05 * (seed - 1) for v in curve()[1]]
        runs.append(
            RunCurve(
                seed=seed,
                lrs=[float(v) for v in LRS],
                losses=raw,
                smoothed=smoothed,
                stop_reason="diverged",
                bounds=BOUNDS,
            )
        )
    spread = {"max_lr": Spread(median=0.41, q1=0.38, q3=0.45, min=0.35, max=0.5, n=3)}
    fig = plot_result(make_result(runs=runs, spread=spread))
    labels = legend_labels(fig)
    assert "mean of 3 runs, smoothed" in labels and "max_lr 0.41 (runs: IQR 0.38-0.45)" in labels
    band = next(c for c in fig.axes[0].collections if c.get_label() == "min-max of 3 runs (smoothed)")
    assert isinstance(band, PolyCollection)
    ys = band.get_paths()[0].vertices[:, 1]
    table = np.array([r.smoothed for r in runs])
    assert ys.min() == pytest.approx(table.min()) and ys.max() == pytest.approx(table.max())
    assert "3 runs" in fig.axes[0].get_title()


def test_no_bounds() -> None:
    bounds = Bounds(
        reason="the loss is flat: no fall of the loss stands out of its noise",
        next_step="widen the range: raise the end 10x, e.g. --max-lr 10",
    )
    fig = plot_result(make_result(bounds=bounds, stop_reason="completed"))
    text = all_text(fig)
    assert "No bounds suggested: the loss is flat" in text.replace("\n", " ")
    assert "--max-lr 10" in text and "confidence: none" in text
    assert not any(label.startswith(("base_lr", "max_lr", "suggested")) for label in legend_labels(fig))


def test_degenerate_results_still_plot() -> None:
    empty = make_result(lrs=[], losses=[], smoothed=[], bounds=None, stop_reason="error")
    all_nan = make_result(losses=[None] * 80, smoothed=[None] * 80, bounds=None, stop_reason="non-finite")
    for result in (empty, all_nan):
        assert "No bounds suggested" in all_text(plot_result(result))


def test_sweep_overlay() -> None:
    results = []
    for i, (label, shift) in enumerate([("weight_decay=0", 1.0), ("weight_decay=0.0001", 0.8)]):
        raw, smoothed = curve(seed=i)
        bounds = BOUNDS.model_copy(update={"max_lr": 0.41 * shift})
        results.append((label, make_result(losses=raw, smoothed=smoothed, bounds=bounds)))
    results.append(("weight_decay=0.001", make_result(bounds=None)))
    fig = plot_sweep(results)
    labels = legend_labels(fig)
    assert labels == [
        "weight_decay=0: max_lr 0.41",
        "weight_decay=0.0001: max_lr 0.328",
        "weight_decay=0.001: no bounds",
    ]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and plot_sweep(results, log_x=False).axes[0].get_xscale() == "linear"
    triangles = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert sorted(ln.get_xdata()[0] for ln in triangles) == pytest.approx([0.328, 0.41])
    assert (
        ax.get_ylim()[1] - ax.get_ylim()[0] < 2 * FALL
    )  # the unanalysed run's blow-up does not flatten them
    with pytest.raises(UsageError):
        plot_sweep([])


def test_save_figure_writes_a_png_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = plotting.write_atomic

    def spy(path: Any, data: bytes) -> Path:
        calls.append(path)
        return real(path, data)

    monkeypatch.setattr(plotting, "write_atomic", spy)
    target = tmp_path / "plots" / "range_test.png"
    path = save_figure(plot_result(make_result()), target)
    data = path.read_bytes()
    assert path == target and calls == [target]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1600, 1000)  # IHDR width, height
    assert [p.name for p in target.parent.iterdir()] == ["range_test.png"]  # no temp file left behind


def test_importing_plotting_does_not_import_pyplot() -> None:
    code = "import sys, clrfind.plotting; print('matplotlib.pyplot' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "False"]
