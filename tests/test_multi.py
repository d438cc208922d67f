"""Repeats (spread over known seeds), sweeps (two values), and a 2-process gloo run under torch.distributed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE_SPEC, REPO, run_gloo_ranks, write_spec
from typer.testing import CliRunner

from clrfind.cli import app
from clrfind.multi import (
    SweepRun,
    aggregate_repeats,
    explain_per_key,
    mean_curve,
    recommend,
    spread_of,
    sweep_grid,
)
from clrfind.results import Bounds, RangeTestResult


def _result(
    seed: int, losses: list[float], bounds: tuple[float, float] | None, peak: float | None = None
) -> RangeTestResult:
    n = len(losses)
    return RangeTestResult(
        clrfind_version="0", seed=seed, min_lr=0.01, max_lr=1.0, planned_steps=n,
        lrs=list(np.linspace(0.01, 1.0, n)), losses=losses, smoothed=losses, stop_reason="completed",
        bounds=Bounds(base_lr=bounds[0], max_lr=bounds[1], peak_lr=peak, confidence="high") if bounds else None,
    )  # fmt: skip


def test_spread_of_known_values() -> None:
    s = spread_of([0.1, 0.2, 0.3, 0.4, None, float("nan")])
    assert s is not None
    assert (s.median, s.q1, s.q3, s.min, s.max, s.n) == pytest.approx((0.25, 0.175, 0.325, 0.1, 0.4, 4))
    assert spread_of([None]) is None


def test_mean_curve_keeps_steps_most_runs_reached() -> None:
    a = _result(0, [3.0, 2.0, 1.0, 0.5], None)
    b = _result(1, [5.0, 4.0, 3.0], None)
    c = _result(2, [1.0, 0.0], None)
    lrs, mean = mean_curve([a, b, c])
    assert mean.tolist() == pytest.approx([3.0, 2.0, 2.0])  # step 3 reached by 1 of 3 runs only: dropped
    assert len(lrs) == 3


def _same_curve_runs(bounds: list[tuple[float, float]]) -> list[RangeTestResult]:
    """One run per (base_lr, max_lr): a fall and a blow-up, each run's curve shifted up by 0.01 per seed."""
    x = np.linspace(0, 1, 80)
    curve = 2.0 - 1.5 * np.tanh(4 * x) + 3 * np.clip(x - 0.7, 0, None) ** 2 * 20
    return [_result(s, list(curve + 0.01 * s), b) for s, b in enumerate(bounds)]


def test_aggregate_repeats_records_every_run_and_spread() -> None:
    agg = aggregate_repeats(_same_curve_runs([(0.05, 0.4), (0.06, 0.5), (0.07, 0.6)]))
    assert agg.runs is not None and [r.seed for r in agg.runs] == [0, 1, 2]
    assert agg.spread is not None
    assert agg.spread["max_lr"].median == pytest.approx(0.5)
    assert agg.spread["base_lr"].min == pytest.approx(0.05) and agg.spread["base_lr"].max == pytest.approx(
        0.07
    )
    assert "peak_lr" not in agg.spread  # runs from before schema 2 carry no peak
    assert agg.bounds is not None
    assert "; base_lr median 0.06 over 3 runs" in agg.bounds.base_rationale
    assert "; max_lr median 0.5 over 3 runs" in agg.bounds.max_rationale


def test_aggregate_repeats_spreads_the_one_cycle_peak() -> None:
    """A fall, a level stretch and a blow-up: the mean curve has a peak above max_lr, and its spread is kept."""
    x = np.linspace(0, 1, 200)
    runs = [
        _result(
            s, list(2.0 - 1.5 * np.tanh(8 * x) + np.where(x > 0.8, 50.0, 0.0) + 0.01 * s), (0.05, 0.3), peak
        )
        for s, peak in enumerate([0.35, 0.4, 0.45])
    ]
    agg = aggregate_repeats(runs)
    assert agg.bounds is not None and agg.bounds.peak_above_max_lr is not None
    assert agg.spread is not None and agg.spread["peak_lr"].median == pytest.approx(0.4)
    assert agg.bounds.max_rationale.endswith("; peak_lr median 0.4 over 3 runs (IQR 0.38-0.43)")


def test_aggregate_repeats_says_which_runs_it_left_out_and_which_bound_to_use() -> None:
    """A run without bounds is out of the spread, a long run's tail is out of the mean, and a mean-curve bound that
    no run found is answered with the runs' median."""
    x = np.linspace(0, 1, 80)

    def curve(seed: int, blow: float) -> list[float]:
        return list(2.0 - 1.5 * np.tanh(4 * x) + np.where(x > blow, 50 * (x - blow), 0) + 0.01 * seed)

    runs = [
        _result(0, curve(0, 0.5), (0.05, 0.4)),
        _result(1, curve(1, 0.6)[:60], (0.06, 0.45)),
        _result(2, [*curve(2, 0.7)[:50], float("nan")], None),
    ]
    runs[2] = runs[2].model_copy(
        update={"stop_reason": "non-finite", "stop_detail": "loss was nan at step 51"}
    )
    agg = aggregate_repeats(runs)
    assert agg.bounds is not None and agg.spread is not None
    notes = [n for n in agg.notes if n.startswith("run ")]
    assert notes == ["run 3 (seed 2) found no bounds (loss was nan at step 51), so it is not in their spread"]
    assert agg.spread["max_lr"].n == 2
    (cut,) = [n for n in agg.notes if n.startswith("the mean curve ends")]
    assert cut.startswith("the mean curve ends at step 60,") and cut.endswith(
        "of run 1 (seed 0) are not in it"
    )
    assert not agg.spread["max_lr"].min <= agg.bounds.max_lr <= agg.spread["max_lr"].max
    (use,) = [n for n in agg.notes if n.startswith("max_lr ")]
    assert "outside the runs' own range (0.4-0.45): use the runs' median, 0.425" in use
    # 0.45 is nearer 0.425 than 0.4 is, on the log axis: a file the user can take as it is.
    assert use.endswith("run 2's own schedule (run-2/schedule.yaml, max_lr 0.45) has the nearest)")


def test_aggregate_repeats_says_what_to_use_when_the_mean_curve_gives_no_bounds() -> None:
    """Runs that each found bounds, whose mean curve is flat: the runs' medians are the answer, and said."""
    rng = np.random.default_rng(0)
    runs = [
        _result(s, list(1.0 + 0.01 * rng.standard_normal(80)), b)
        for s, b in enumerate([(0.05, 0.4), (0.06, 0.5), (0.08, 0.7)])
    ]
    agg = aggregate_repeats(runs)
    assert agg.bounds is not None and not agg.bounds.usable
    (use,) = [n for n in agg.notes if n.startswith("the mean curve gives no bounds")]
    assert use == (
        "the mean curve gives no bounds, but 3 of the 3 runs did: use their medians, base_lr 0.06 and max_lr 0.5 "
        "(no schedule was written from the mean; run 2's own schedule (run-2/schedule.yaml, max_lr 0.5) has the "
        "nearest max_lr)"
    )


def test_aggregate_repeats_adds_no_notes_when_the_runs_agree() -> None:
    agg = aggregate_repeats(_same_curve_runs([(0.03, 0.3), (0.06, 0.5), (0.2, 0.9)]))
    assert agg.bounds is not None and agg.bounds.usable
    assert agg.notes == []


def test_aggregate_repeats_reads_the_bounds_from_the_mean_metric() -> None:
    """Runs that measured accuracy give bounds from its mean, as one run's come from its own accuracy: the rise to a
    plateau and the fall, not the loss; an evaluation step fewer than half the runs reached ends the mean."""
    from clrfind.results import MetricCurve

    runs = _same_curve_runs([(0.05, 0.4), (0.06, 0.5), (0.07, 0.6)])
    steps = list(range(0, 80, 4))
    x = np.linspace(0, 1, 80)[steps]
    rise_and_fall = 0.3 + 0.6 * np.tanh(6 * x) - 2.0 * np.clip(x - 0.6, 0, None)
    curves = []
    for seed, run in enumerate(runs):
        values: list[float | None] = list(rise_and_fall + 0.01 * seed)
        if seed:  # runs 2 and 3 stop before the last evaluation: only run 1 reached it
            values[-1] = None
        curve = MetricCurve(
            name="accuracy",
            higher_is_better=True,
            steps=steps,
            lrs=[run.lrs[s] for s in steps],
            values=values,
        )
        curves.append(run.model_copy(update={"metric": curve}))
    agg = aggregate_repeats(curves)
    assert agg.metric is not None and agg.metric.steps == steps[:-1]
    assert agg.metric.values[0] == pytest.approx(0.31)  # the mean of 0.30, 0.31 and 0.32
    assert agg.bounds is not None and agg.bounds.method == "accuracy" and agg.bounds.usable
    without = aggregate_repeats(runs)
    assert without.metric is None and without.bounds is not None and without.bounds.method == "loss"


def test_sweep_grid_and_recommendation() -> None:
    grid = sweep_grid([("optimizer.kwargs.weight_decay", [0, 1e-4]), ("data.batch_size", [16, 32])])
    assert len(grid) == 4 and grid[1] == {"optimizer.kwargs.weight_decay": 0, "data.batch_size": 32}
    runs = [
        SweepRun(label="wd=0", overrides={}, results="", max_lr=0.3, lowest_loss=0.50),
        SweepRun(label="wd=1e-4", overrides={}, results="", max_lr=0.6, lowest_loss=0.51),
        SweepRun(label="wd=1e-3", overrides={}, results="", max_lr=0.9, lowest_loss=0.80),
    ]
    label, why = recommend(runs)
    assert label == "wd=1e-4" and "largest max_lr" in why and "tied" not in why
    # Equal max_lrs: the lower loss decides, whatever the order, and the reason says so.
    runs[0] = SweepRun(label="wd=0", overrides={}, results="", max_lr=0.6, lowest_loss=0.505)
    assert recommend(runs)[0] == recommend(runs[::-1])[0] == "wd=0"
    assert recommend(runs)[1].endswith("; tied on max_lr with wd=1e-4, it reaches the lower loss (0.505)")


def test_two_key_recommendation_is_explained_per_key() -> None:
    """Each key's line holds the other key at its recommended value and gives every value's max_lr and loss."""

    def run(wd: float, bs: int, max_lr: float | None, loss: float | None) -> SweepRun:
        label = f"weight_decay={wd},batch_size={bs}"
        overrides = {"optimizer.kwargs.weight_decay": wd, "data.batch_size": bs}
        return SweepRun(label=label, overrides=overrides, results="", max_lr=max_lr, lowest_loss=loss)

    runs = [run(0, 32, 0.3, 0.50), run(0.01, 32, 0.6, 0.51), run(0.1, 32, 0.9, 0.80), run(0, 64, 0.4, 0.52),
            run(0.01, 64, None, None), run(0.1, 64, 1.0, 0.90)]  # fmt: skip
    label, _ = recommend(runs)
    assert label == "weight_decay=0.01,batch_size=32"
    wd, bs = explain_per_key(runs, label)
    assert wd == (
        "weight_decay=0.01: at batch_size=32, the largest max_lr of the 2 values reaching the lowest loss (<= 0.54): "
        "0 max_lr 0.3 at loss 0.5; 0.01 max_lr 0.6 at loss 0.51; 0.1 max_lr 0.9 at loss 0.8 (above the limit)"
    )
    assert bs.startswith(
        "batch_size=32: at weight_decay=0.01, the only value reaching the lowest loss "
    ) and bs.endswith(": 32 max_lr 0.6 at loss 0.51; 64 no bounds")
    assert explain_per_key(runs[:3], "weight_decay=0,batch_size=32")[0].startswith("weight_decay=0: ")
    one_key = [SweepRun(label="wd=0", overrides={"wd": 0}, results="", max_lr=0.3, lowest_loss=0.5)]
    assert explain_per_key(one_key, "wd=0") == [] and explain_per_key(runs, None) == []


def test_sweep_command_explains_two_keys(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC + "verify_bounds: false\n")
    out = tmp_path / "sw"
    args = [
        "sweep",
        str(spec),
        "--set",
        "optimizer.kwargs.weight_decay=0,0.001",
        "--set",
        "data.batch_size=64",
    ]
    res = CliRunner().invoke(app, [*args, "--out", str(out), "--quiet", "--steps", "40"])
    assert res.exit_code == 0, res.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["schema_version"] == 3 and len(sweep["per_key"]) == 2
    lines = res.stdout.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("recommended: ")))
    assert lines[at + 1 : at + 3] == [f"  {line}" for line in sweep["per_key"]]
    assert lines[at + 1].startswith("  weight_decay=") and ": at batch_size=64, the " in lines[at + 1]


def test_repeats_command_writes_every_run(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC)
    out = tmp_path / "rep"
    res = CliRunner().invoke(
        app, ["range-test", str(spec), "--out", str(out), "--repeats", "3", "--quiet", "--steps", "40"]
    )
    assert res.exit_code == 0, res.stderr
    assert "3 runs" in res.stdout
    data = json.loads((out / "range_test.json").read_text())
    assert [r["seed"] for r in data["runs"]] == [0, 1, 2]
    runs_max = [r["bounds"]["max_lr"] for r in data["runs"] if r["bounds"] and r["bounds"]["max_lr"]]
    if runs_max:
        assert data["spread"]["max_lr"]["median"] == pytest.approx(float(np.median(runs_max)))
    assert (out / "range_test.png").exists()


def test_sweep_command_two_values(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC)
    out = tmp_path / "sw"
    res = CliRunner().invoke(
        app,
        [
            "sweep",
            str(spec),
            "--set",
            "optimizer.kwargs.weight_decay=0,0.001",
            "--out",
            str(out),
            "--quiet",
            "--steps",
            "40",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert (
        "weight_decay=0 " in res.stdout
        and "weight_decay=0.001" in res.stdout
        and "recommended:" in res.stdout
    )
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["label"] for r in sweep["runs"]] == ["weight_decay=0", "weight_decay=0.001"]
    for run in sweep["runs"]:
        data = json.loads((out / run["results"]).read_text())
        assert (
            data["spec"]["optimizer"]["kwargs"]["weight_decay"]
            == run["overrides"]["optimizer.kwargs.weight_decay"]
        )
    assert (out / "sweep.png").exists()
    res = CliRunner().invoke(app, ["plot", str(out / "sweep.json"), "--out", str(tmp_path / "again.png")])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "again.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_bad_key_fails_before_running(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC)
    res = CliRunner().invoke(
        app, ["sweep", str(spec), "--set", "optimizer.kwargz.weight_decay=0,1", "--quiet"]
    )
    assert res.exit_code == 2 and res.stderr.startswith("error: ")


def test_sweeping_the_optimizers_lr_is_refused_before_running(tmp_path: Path) -> None:
    """The test sets every LR: values of the spec's lr would run one test N times and recommend among ties."""
    spec = write_spec(tmp_path, BASE_SPEC)
    res = CliRunner().invoke(
        app,
        [
            "sweep",
            str(spec),
            "--set",
            "optimizer.kwargs.lr=0.01,0.1",
            "--quiet",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and res.stdout == "" and not list((tmp_path / "o").glob("**/*.json"))
    assert res.stderr.startswith(
        "error: --set optimizer.kwargs.lr: the range test sets every LR itself, so each value would run the same "
        "test (sweep what shapes the curve instead: optimizer.kwargs.weight_decay"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RANK_WORKER = """
import json, os, sys
from pathlib import Path
from clrfind.api import run_spec
from clrfind.distributed import distributed_context, mean_over_ranks
from clrfind.spec import load_spec
spec, out = sys.argv[1], Path(sys.argv[2])
with distributed_context("cpu") as ctx:
    run = run_spec(load_spec(spec), out_dir=out / "files", rank=ctx.rank, world_size=ctx.world_size,
                   reduce_loss=mean_over_ranks(ctx.world_size))
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(run.result.losses))
"""


@pytest.mark.slow
def test_two_process_gloo_run_same_curve_files_once(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC.replace("steps: 60", "steps: 30"))
    worker = tmp_path / "worker.py"
    worker.write_text(RANK_WORKER)
    run_gloo_ranks(worker, str(spec), str(tmp_path))
    curves = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert curves[0] == curves[1] and len(curves[0]) >= 10
    data = json.loads((tmp_path / "files" / "range_test.json").read_text())
    assert data["world_size"] == 2 and data["global_batch_size"] == 128
    assert data["losses"] == curves[0]
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [
        "range_test.json",
        "range_test.png",
        "schedule.yaml",
    ]


def _torchrun(spec: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc-per-node 2 -m clrfind range-test SPEC --out OUT --quiet ARGS` on CPU (gloo)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
         "-m", "clrfind", "range-test", str(spec), "--out", str(out), "--quiet", *args],
        capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


@pytest.mark.slow
def test_torchrun_cli_writes_once(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC.replace("steps: 60", "steps: 30"))
    res = _torchrun(spec, tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("suggested:") == 1  # rank 0 alone prints
    data = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert data["world_size"] == 2


@pytest.mark.slow
def test_torchrun_repeats_run_on_every_rank(tmp_path: Path) -> None:
    """--repeats under torchrun: each repeat trains on both ranks (all-reduced), rank 0 writes the aggregate."""
    spec = write_spec(tmp_path, BASE_SPEC.replace("steps: 60", "steps: 25"))
    res = _torchrun(spec, tmp_path / "run", "--repeats", "2")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("suggested:") == 1 and "2 runs, 2 processes, global batch 128" in res.stdout
    data = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert data["world_size"] == 2 and data["global_batch_size"] == 128
    assert [r["seed"] for r in data["runs"]] == [0, 1]


def test_repeats_and_sweeps_read_the_spec_file_once(tmp_path: Path) -> None:
    """Each repeat and each sweep value derives its spec from the one already read (the file may be gone)."""
    from clrfind.runs import run, sweep
    from clrfind.spec import load_spec

    spec = write_spec(tmp_path, BASE_SPEC.replace("steps: 60", "steps: 20"))
    loaded = load_spec(spec)
    spec.unlink()
    outcome = run(loaded, out_dir=tmp_path / "rep", repeats=2)
    assert outcome.result.runs is not None and [r.seed for r in outcome.result.runs] == [0, 1]
    done = sweep(loaded, [("optimizer.kwargs.weight_decay", [0, 0.01])], out_dir=tmp_path / "sw")
    assert [r.label for r in done.sweep.runs] == ["weight_decay=0", "weight_decay=0.01"]
    assert all(r.error is None for r in done.sweep.runs)
