"""Experiment loggers: a TensorBoard event file read back with TensorBoard's own reader, the record every tracker
gets, one-line errors for an unknown name or a missing package (before anything trains), and wandb (offline) and
MLflow (a file store) when they are installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import BASE_SPEC, REPO, write_spec
from typer.testing import CliRunner

import clrfind
from clrfind.cli import app
from clrfind.errors import OutputError, UsageError
from clrfind.export import build_schedule, render_schedule
from clrfind.loggers import RunRecord, log_result, run_record
from clrfind.results import RangeTestResult, load_results

SPEC = BASE_SPEC + "verify_bounds: false\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> RangeTestResult:
    """One short spec run, with a validation metric so the record has a metric curve too."""
    folder = tmp_path_factory.mktemp("run")
    spec = SPEC.replace(
        "  batch_size: 64", "  val: {target: task.py:blobs, kwargs: {n: 256, seed: 1}}\n  batch_size: 64"
    )
    spec = spec.replace("steps: 60}", "steps: 60, metric: val_loss, eval_every: 3}")
    res = CliRunner().invoke(
        app, ["range-test", str(write_spec(folder, spec)), "-q", "-o", str(folder / "out")]
    )
    assert res.exit_code == 0, res.stderr
    return load_results(folder / "out")


class Recorder:
    """An ExperimentLogger of the test's own: keeps what it was sent."""

    def __init__(self) -> None:
        self.records: list[RunRecord] = []

    def log_range_test(self, record: RunRecord) -> str:
        self.records.append(record)
        return "recorder"


def test_the_record_holds_curve_bounds_plot_and_schedule(result: RangeTestResult) -> None:
    record = run_record(result)
    assert [v for _, v in record.curves["lr"]] == result.lrs
    assert len(record.curves["loss"]) == sum(v is not None for v in result.losses)
    assert len(record.curves["smoothed_loss"]) == sum(v is not None for v in result.smoothed)
    assert result.metric is not None and [s for s, _ in record.curves["val_loss"]] == result.metric.steps
    b = result.bounds
    assert b is not None and b.usable
    assert record.params["base_lr"] == b.base_lr and record.params["max_lr"] == b.max_lr
    assert record.params["stop_reason"] == result.stop_reason and record.params["confidence"] == b.confidence
    assert record.params["total_steps"] == result.timing.total_steps >= result.steps_run
    assert record.texts["bounds"].startswith(f"base_lr: {b.base_rationale}\nmax_lr: {b.max_rationale}")
    assert record.texts["summary"] == result.summary()
    assert record.images["range_test"][:4] == b"\x89PNG"
    assert record.files == {"schedule.yaml": render_schedule(build_schedule(result))}
    # A logger object is used as it is, and returns where it put the record.
    recorder = Recorder()
    assert log_result(result, [recorder]) == ["recorder"] and recorder.records == [record]


def test_tensorboard_event_file_reads_back(result: RangeTestResult, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    assert log_result(result, f"tensorboard:{tmp_path / 'tb'}") == [f"tensorboard: {tmp_path / 'tb'}"]
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    lrs = events.Scalars("clrfind/lr")
    assert [e.step for e in lrs] == list(range(result.steps_run))
    assert [e.value for e in lrs] == pytest.approx(result.lrs, rel=1e-6)  # stored as float32
    loss = [(e.step, e.value) for e in events.Scalars("clrfind/loss")]
    assert loss == [(i, pytest.approx(v, rel=1e-6)) for i, v in enumerate(result.losses) if v is not None]
    assert {"clrfind/smoothed_loss", "clrfind/val_loss"} <= set(tags["scalars"])
    (image,) = events.Images("clrfind/range_test")
    assert image.encoded_image_string[:4] == b"\x89PNG" and (image.width, image.height) == (1600, 1000)
    (text,) = events.Tensors("clrfind/bounds/text_summary")
    assert result.bounds is not None
    assert result.bounds.max_rationale in tensor_util.make_ndarray(text.tensor_proto).item().decode()
    assert "clrfind/summary/text_summary" in tags["tensors"]
    schedule = (tmp_path / "tb" / "schedule.yaml").read_text()
    assert schedule == render_schedule(build_schedule(result))


def test_cli_logs_to_tensorboard_in_the_run_folder(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["range-test", str(spec), "-q", "-o", str(out), "--steps", "30", "--log", "tensorboard"]
    )
    assert res.exit_code == 0, res.stderr
    (folder,) = (out / "tensorboard").iterdir()  # one folder per run, named by its time
    assert res.stdout.endswith(f"schedule: {out / 'schedule.yaml'}\nlogged: tensorboard: {folder}\n")
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert (folder / "schedule.yaml").read_text() == (out / "schedule.yaml").read_text()


def test_the_readme_log_example(tmp_path: Path, monkeypatch) -> None:
    """The README's `--log tensorboard` commands: the run logs where the second command looks."""
    pytest.importorskip("tensorboard")
    section = (REPO / "README.md").read_text().split("### Experiment loggers: `--log`", 1)[1]
    run, view = section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert run == "clrfind range-test sample_configs/quickstart.yaml --log tensorboard"
    monkeypatch.chdir(tmp_path)
    args = run.split()[1:]
    res = CliRunner().invoke(app, [*args[:1], str(REPO / args[1]), *args[2:]])
    assert res.exit_code == 0, res.stderr
    logdir = Path(view.removeprefix("tensorboard --logdir "))
    (folder,) = logdir.iterdir()
    assert res.stdout.endswith(f"\nlogged: tensorboard: {folder}\n")
    assert list(folder.glob("events.out.tfevents.*")) and (folder / "schedule.yaml").exists()


@pytest.mark.parametrize("name", ["wandb", "mlflow", "tensorboard"])
def test_a_missing_package_is_one_line_before_the_run(tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["range-test", str(write_spec(tmp_path, SPEC)), "-q", "-o", str(out), "--log", name]
    )
    assert res.exit_code == 2 and res.stdout == ""
    assert (
        res.stderr
        == f"error: --log {name}: the {name} package is not installed (pip install 'clrfind[{name}]')\n"
    )
    assert not out.exists()  # nothing ran
    if name == "wandb":  # the README quotes it
        assert f"`{res.stderr.strip()}`" in (REPO / "README.md").read_text()


def test_library_log_errors_come_before_the_model_is_touched(tiny_task, monkeypatch) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    monkeypatch.setitem(sys.modules, "wandb", None)
    calls: list[object] = []
    kwargs = {"min_lr": 1e-3, "max_lr": 1.0, "steps": 30, "callback": calls.append}
    with pytest.raises(UsageError, match=r"^log='wandb': the wandb package is not installed \(pip install"):
        clrfind.range_test(model, loader, loss_fn, optimizer, log="wandb", **kwargs)
    with pytest.raises(
        UsageError, match=r"^log='tensorbord': unknown logger \(did you mean 'tensorboard'\?\)"
    ):
        clrfind.range_test(model, loader, loss_fn, optimizer, log=["tensorbord"], **kwargs)
    with pytest.raises(UsageError, match=r"^log=: a int is not a logger"):
        clrfind.range_test(model, loader, loss_fn, optimizer, log=3, **kwargs)
    assert calls == []


def test_library_range_test_logs_its_result(tiny_task) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    recorder = Recorder()
    result = clrfind.range_test(
        model,
        loader,
        loss_fn,
        optimizer,
        min_lr=1e-3,
        max_lr=20.0,
        steps=40,
        verify_bounds=False,
        log=recorder,
    )
    (record,) = recorder.records
    assert record.texts["summary"] == result.summary()


def test_a_failing_tracker_is_one_line_naming_it(result: RangeTestResult) -> None:
    class Broken:
        name = "broken"

        def log_range_test(self, record: RunRecord) -> str:
            raise ConnectionError("no route to host")

    with pytest.raises(OutputError, match=r"^logging to broken failed: ConnectionError: no route to host$"):
        log_result(result, Broken())


def test_wandb_offline(result: RangeTestResult, tmp_path: Path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    from clrfind.loggers import Wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (where,) = log_result(result, "wandb:clrfind-test")  # a run of its own, finished after
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    files = run_dir / "files"
    assert where == f"wandb: {files}"
    assert (files / "clrfind" / "schedule.yaml").read_text() == render_schedule(build_schedule(result))
    assert len(list((files / "media" / "images" / "clrfind").glob("range_test_*.png"))) == 1
    # A run the caller holds (a Lightning logger's) is logged into and left open.
    run = wandb.init(project="clrfind-test", dir=tmp_path / "held")
    try:
        log_result(result, Wandb(run=run))
        assert result.bounds is not None and run.summary["clrfind/max_lr"] == result.bounds.max_lr
        assert run.summary["clrfind/step"] == result.steps_run - 1
        assert run.summary["clrfind/bounds"] == run_record(result).texts["bounds"]
        run.log({"after": 1.0})  # still open
    finally:
        run.finish()


def test_mlflow_file_store(result: RangeTestResult, tmp_path: Path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv(
        "MLFLOW_ALLOW_FILE_STORE", "true"
    )  # MLflow 3.x asks for it; earlier versions ignore it
    (where,) = log_result(result, "mlflow:clrfind-test")
    run_id = where.removeprefix("mlflow: run ")
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert result.bounds is not None and run.data.params["clrfind/max_lr"] == str(result.bounds.max_lr)
    history = client.get_metric_history(run_id, "clrfind/loss")
    assert len(history) == sum(v is not None for v in result.losses)
    artifacts = {a.path for a in client.list_artifacts(run_id, "clrfind")}
    assert {"clrfind/schedule.yaml", "clrfind/range_test.png", "clrfind/bounds.txt"} <= artifacts
    # An active run (the caller's) is logged into and left running.
    with mlflow.start_run() as active:
        assert log_result(result, "mlflow") == [f"mlflow: run {active.info.run_id}"]
        assert mlflow.active_run() is not None
        assert client.get_run(active.info.run_id).info.status == "RUNNING"
