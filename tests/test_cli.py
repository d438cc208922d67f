"""Each command through CliRunner: exit code, stdout and stderr asserted separately."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BASE_SPEC, write_spec
from typer.testing import CliRunner

from clrfind.cli import app
from clrfind.results import SCHEMA_VERSION


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path, BASE_SPEC)


@pytest.fixture
def run_dir(runner: CliRunner, spec: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.stderr
    return out


def test_range_test_writes_results_plot_schedule(runner: CliRunner, spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(out), "--quiet", "--steps", "50"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    assert "suggested: base_lr" in res.stdout and "stopped:" in res.stdout
    assert f"results: {out / 'range_test.json'}" in res.stdout
    data = json.loads((out / "range_test.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["planned_steps"] == 50
    assert data["spec"]["range_test"]["steps"] == 50
    assert data["mode"] == "exp"  # the spec leaves mode at "auto" and its range spans 3.3 decades
    assert data["stop_reason"] in ("completed", "diverged", "non-finite")
    assert (out / "range_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sched = yaml.safe_load((out / "schedule.yaml").read_text())
    assert sched["scheduler"]["target"] == "torch.optim.lr_scheduler.CyclicLR"
    assert sched["optimizer"]["kwargs"]["momentum"] == 0.9


def test_summary_names_the_one_cycle_peak_when_above_max_lr() -> None:
    """The run summary adds peak_lr only when one cycle goes above max_lr."""
    from rich.console import Console

    from clrfind.api import RunFiles
    from clrfind.cli import _print_summary
    from clrfind.results import Bounds, RangeTestResult, Timing

    def summary(peak: float | None, seconds: float = 0.0) -> str:
        bounds = Bounds(base_lr=0.01, max_lr=0.1, peak_lr=peak, confidence="high")
        result = RangeTestResult(
            clrfind_version="0.1.0", min_lr=1e-3, max_lr=1.0, planned_steps=3, lrs=[0.001, 0.01, 0.1],
            losses=[2.0, 1.0, 0.5], smoothed=[2.0, 1.0, 0.5], stop_reason="completed", bounds=bounds,
            timing=Timing(seconds=seconds),
        )  # fmt: skip
        console = Console(record=True, width=200)
        _print_summary(result, RunFiles(Path("."), Path("r.json"), None, None), console)
        return console.export_text()

    assert "suggested: base_lr 0.01  max_lr 0.1  one-cycle peak_lr 0.3  (from loss" in summary(0.3)
    assert "peak_lr" not in summary(0.1) and "peak_lr" not in summary(None)
    # A test that took under a second reads in milliseconds, not as "0.0 s" (`clrfind check` estimates alike).
    assert "3/3 steps on cpu in 42 ms (" in summary(None, seconds=0.042)
    assert "3/3 steps on cpu in 2.5 s (" in summary(None, seconds=2.46)


def test_mode_option_overrides_auto(runner: CliRunner, spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["range-test", str(spec), "--out", str(out), "-q", "--steps", "30", "--mode", "linear"]
    )
    assert res.exit_code == 0, res.stderr
    assert "(linear, lr" in res.stdout
    assert json.loads((out / "range_test.json").read_text())["mode"] == "linear"
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(out), "-q", "--mode", "log"])
    assert res.exit_code == 2 and res.stdout == ""
    flat = " ".join(res.stderr.replace("│", " ").split())  # Typer's error box wraps lines
    assert "'log' is not one of 'auto', 'linear', 'exp'" in flat


def test_bf16_runs_end_to_end_on_cpu(runner: CliRunner, tmp_path: Path) -> None:
    """precision: bf16 (autocast) through the whole command; the results record it. CUDA is the same path."""
    spec = write_spec(tmp_path, BASE_SPEC + "precision: bf16\n")
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == "" and "suggested: base_lr" in res.stdout
    data = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert data["precision"] == "bf16" and data["bounds"]["max_lr"] is not None


def test_default_out_dir_is_named_after_the_spec(
    runner: CliRunner, spec: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["range-test", str(spec), "--quiet", "--steps", "20"])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "clrfind-runs" / "spec" / "range_test.json").exists()


def test_plot_rerenders_from_results(runner: CliRunner, run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "again.png"
    res = runner.invoke(app, ["plot", str(run_dir / "range_test.json"), "--out", str(target), "--log-x"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == f"plot: {target}" and res.stderr == ""
    assert target.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("fmt", "suffix"), [("yaml", ".yaml"), ("json", ".json"), ("python", ".py")])
def test_export_formats(runner: CliRunner, run_dir: Path, fmt: str, suffix: str) -> None:
    res = runner.invoke(
        app, ["export", str(run_dir), "--format", fmt, "--policy", "one-cycle", "--epochs", "6", "--verify"]
    )
    assert res.exit_code == 0, res.stderr
    path = run_dir / f"schedule{suffix}"
    assert res.stdout.strip() == f"schedule: {path}"
    text = path.read_text()
    if fmt == "yaml":
        assert yaml.safe_load(text)["scheduler"]["target"] == "torch.optim.lr_scheduler.OneCycleLR"
    elif fmt == "json":
        assert json.loads(text)["scheduler"]["kwargs"]["total_steps"] > 0
    else:
        compile(text, str(path), "exec")


@pytest.mark.parametrize(
    ("args", "target"),
    [(["--epochs", "6"], "OneCycleLR"), ([], "CyclicLR")],
)
def test_export_default_policy_follows_the_training_length(
    runner: CliRunner, run_dir: Path, args: list[str], target: str
) -> None:
    res = runner.invoke(app, ["export", str(run_dir), "--out", "-", *args])
    assert res.exit_code == 0, res.stderr
    # The fixture's 60-step test is under half what clrfind runs for any training, which a known length shows.
    short = "warning: a test of 60 steps is under half the 300 clrfind runs for the 96-step training: "
    assert res.stderr.startswith(short) if args else res.stderr == ""
    assert res.stderr.count("\n") == (1 if args else 0)
    schedule = yaml.safe_load(res.stdout)
    assert schedule["scheduler"]["target"] == f"torch.optim.lr_scheduler.{target}"
    assert schedule["notes"][0].startswith("policy auto:")


def test_export_to_stdout(runner: CliRunner, run_dir: Path) -> None:
    res = runner.invoke(
        app, ["export", str(run_dir / "range_test.json"), "--out", "-", "--policy", "triangular2"]
    )
    assert res.exit_code == 0, res.stderr
    assert yaml.safe_load(res.stdout)["scheduler"]["kwargs"]["mode"] == "triangular2"


def test_export_names_the_results_file(runner: CliRunner, run_dir: Path, spec: Path, tmp_path: Path) -> None:
    """The schedule records the results it came from; results without bounds are named in the error."""
    res = runner.invoke(app, ["export", str(run_dir), "--out", "-"])
    assert yaml.safe_load(res.stdout)["source"]["results"] == str(run_dir / "range_test.json")
    short = tmp_path / "short"
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(short), "--quiet", "--steps", "5"])
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(app, ["export", str(short), "--out", "-"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: {short / 'range_test.json'}: no usable bounds in the results: ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--policy", "sawtooth"], "sawtooth"),
        (["--epochs", "0"], "--epochs"),
        (["--steps-per-epoch", "-3"], "--steps-per-epoch"),
    ],
)
def test_export_bad_options(runner: CliRunner, run_dir: Path, args: list[str], needle: str) -> None:
    res = runner.invoke(app, ["export", str(run_dir), *args])
    assert res.exit_code == 2
    assert needle in res.stderr and res.stdout == ""


@pytest.mark.parametrize("command", ["plot", "export"])
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such results file"),
        ("{not json", "not valid JSON"),
        ('{"schema_version": 99}', "schema_version is 99"),
        ('{"schema_version": 1, "lrs": [0.1]', "truncated"),
        ('{"schema_version": 1, "lrs": "x"}', "key '"),
    ],
)
def test_bad_results_files(
    runner: CliRunner, tmp_path: Path, command: str, content: str | None, needle: str
) -> None:
    path = tmp_path / "range_test.json"
    if content is not None:
        path.write_text(content)
    res = runner.invoke(app, [command, str(path)])
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0] and str(path) in lines[0]


@pytest.mark.parametrize("command", ["plot", "export"])
@pytest.mark.parametrize(
    ("name", "what"),
    [("schedule.yaml", "a YAML file (a schedule or a spec)"), ("range_test.png", "an image")],
)
def test_a_run_folders_other_files_are_named_for_what_they_are(
    runner: CliRunner, tmp_path: Path, command: str, name: str, what: str
) -> None:
    (tmp_path / name).write_text("scheduler: {}\n")
    res = runner.invoke(app, [command, str(tmp_path / name)])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: {tmp_path / name}: {what}")
    assert res.stderr.rstrip().endswith("not the results of a range test (pass the range_test.json beside it, or "
                                        "its folder)")  # fmt: skip


@pytest.mark.parametrize(
    ("content", "needle"),
    [('{"kind": "clrfind-sweep", "runs": [', "not valid JSON at line 1"), (b"\xff\xfe", "not a text file")],
)
def test_bad_sweep_file_is_one_line_exit_2(runner: CliRunner, tmp_path: Path, content, needle: str) -> None:
    path = tmp_path / "sweep.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    res = runner.invoke(app, ["plot", str(path)])
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "re-run `clrfind sweep`" in lines[0]


def test_bad_spec_is_one_line_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC.replace("batch_size: 64", "batch_sise: 64"))
    res = runner.invoke(app, ["range-test", str(spec), "--quiet"])
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "spec.yaml" in lines[0] and "batch_sise" in lines[0] and "batch_size" in lines[0]
    )


def test_debug_shows_the_traceback(runner: CliRunner, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC.replace("batch_size: 64", "batch_sise: 64"))
    res = runner.invoke(app, ["--debug", "range-test", str(spec), "--quiet"])
    assert res.exit_code != 0
    from clrfind.errors import SpecError

    assert isinstance(res.exception, SpecError)


def test_error_mid_run_saves_partial_results_exit_1(runner: CliRunner, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, BASE_SPEC.replace("task.py:Net, kwargs: {hidden: 16}", "task.py:Boom, kwargs: {at: 9}")
    )
    out = tmp_path / "run"
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(out), "--quiet"])
    assert res.exit_code == 1
    line = res.stderr.strip()
    assert (
        line.startswith("error: ")
        and "task.py:Boom" in line
        and "step 8" in line
        and "partial results" in line
    )
    data = json.loads((out / "range_test.json").read_text())
    assert data["stop_reason"] == "error" and len(data["lrs"]) == 8


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("file", "--out names a folder for the run's files, and {tmp}/file is a file (pass --out DIR with a folder "
                 "(new or existing))"),
        ("file/sub", "--out names a folder for the run's files, and {tmp}/file is a file (pass --out DIR with a "
                     "folder (new or existing))"),
        # A folder without write permission (root, who runs CI, writes anywhere: the check is denied instead).
        ("denied", "output directory is not writable (Permission denied) (pass --out DIR with a folder you can "
                   "write to)"),
    ],
)  # fmt: skip
def test_an_out_folder_that_cannot_take_the_files_fails_before_training(
    runner: CliRunner, spec: Path, tmp_path: Path, monkeypatch, out: str, message: str
) -> None:
    (tmp_path / "file").write_text("x")
    if out == "denied":

        def denied(path):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("clrfind.api.check_writable_dir", denied)
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(tmp_path / out), "--quiet"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == f"error: {tmp_path / out}: {message.format(tmp=tmp_path)}\n"


def test_check_command_reports_without_writing(
    runner: CliRunner, spec: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["check", str(spec)])
    assert res.exit_code == 0, res.stderr
    for label in (
        "parameters: 82",
        "batch: [Tensor[64, 2] float32, Tensor[64] int64]",
        "steps per epoch: 16",
        "planned steps: 60",
        "ladder: exp 0.001 -> 2 (auto: the range spans 3.3 decades)",
        "estimated run time",
        "device: cpu",
    ):
        assert label in res.stdout
    time = r"(\d+ ms|\d+\.\d s)"
    assert re.search(
        rf"estimated run time: {time} for the test; up to {time} with the self-check\n", res.stdout
    )
    unchecked = tmp_path / "unchecked.yaml"
    unchecked.write_text(spec.read_text() + "verify_bounds: false\n")
    res = runner.invoke(app, ["check", str(unchecked)])
    assert re.search(rf"estimated run time: {time}\n", res.stdout), res.stdout
    assert not (tmp_path / "clrfind-runs").exists()


def test_check_estimates_read_like_the_run_summary() -> None:
    """Under a second in milliseconds (not "0.0 s"), with the metric's evaluations named when there are some."""
    from clrfind.api import CheckReport

    def estimate(seconds_per_step: float, metric: str = "loss", verify: bool = False) -> str:
        report = CheckReport(
            spec_path=Path("s.yaml"), device="cpu", param_count=1, batch="x", batch_size=1, batches_per_epoch=1,
            steps_per_epoch=1, planned_steps=300, seconds_per_step=seconds_per_step, metric=metric, ladder="l",
            verify_bounds=verify,
        )  # fmt: skip
        return dict(report.rows())["estimated run time"]

    assert estimate(0.0002) == "60 ms"
    assert estimate(0.01) == "3.0 s"
    assert estimate(0.01, "accuracy") == "3.0 s (+ metric evaluations)"
    # The self-check trains at most as many steps again as the test.
    assert estimate(0.01, verify=True) == "3.0 s for the test; up to 6.0 s with the self-check"


def test_dry_run_is_check(runner: CliRunner, spec: Path) -> None:
    res = runner.invoke(app, ["range-test", str(spec), "--dry-run"])
    assert res.exit_code == 0 and "nothing was written" in res.stdout


def test_version(runner: CliRunner) -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("clrfind ")


def test_the_self_check_runs_by_default_and_can_be_turned_off(
    runner: CliRunner, spec: Path, tmp_path: Path
) -> None:
    res = runner.invoke(
        app, ["range-test", str(spec), "--out", str(tmp_path / "on"), "--quiet", "--steps", "80"]
    )
    assert res.exit_code == 0, res.stderr
    check = json.loads((tmp_path / "on" / "range_test.json").read_text())["verification"]
    assert check is not None and check["trials"] and check["steps"] <= 80
    assert "self-check: " in res.stdout and "trial steps in" in res.stdout
    res = runner.invoke(
        app,
        [
            "range-test",
            str(spec),
            "--out",
            str(tmp_path / "off"),
            "--quiet",
            "--steps",
            "80",
            "--no-verify-bounds",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert json.loads((tmp_path / "off" / "range_test.json").read_text())["verification"] is None
    assert "self-check" not in res.stdout


def test_verify_on_val_judges_the_trials_on_data_val_and_needs_it(
    runner: CliRunner, spec: Path, tmp_path: Path
) -> None:
    with_val = tmp_path / "with_val.yaml"
    with_val.write_text(
        spec.read_text().replace(
            "  batch_size: 64", "  val: {target: task.py:blobs, kwargs: {n: 256, seed: 1}}\n  batch_size: 64"
        )
    )
    out = tmp_path / "val"
    args = ["range-test", str(with_val), "--out", str(out), "--quiet", "--steps", "80", "--verify-on", "val"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.stderr
    data = json.loads((out / "range_test.json").read_text())
    assert data["spec"]["verify_on"] == "val"
    assert data["verification"]["judged_on"] == "the validation data"
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(tmp_path / "none"), "--verify-on", "val"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(
        "error: spec.yaml: verify_on (as the command line set it): verify_on 'val' needs data.val (add val:"
    )
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()


def test_ctrl_c_during_the_self_check_saves_everything_and_exits_130(
    runner: CliRunner, spec: Path, tmp_path: Path, monkeypatch
) -> None:
    import clrfind.verify

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(clrfind.verify, "trial_schedule", interrupted)
    out = tmp_path / "run"
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(out), "--quiet"])
    assert res.exit_code == 130, res.stderr
    assert "interrupted during the self-check" in res.stderr and res.stdout == ""
    data = json.loads((out / "range_test.json").read_text())
    assert data["verification"]["outcome"].startswith("interrupted by the user (Ctrl-C)")
    assert data["bounds"]["peak_lr"] == data["bounds"]["max_lr"]  # unchecked: no extrapolated peak
    assert (out / "schedule.yaml").exists() and (out / "range_test.png").exists()


def _help_texts() -> list[tuple[str, str | None]]:
    """(where, help) for every command and every option and argument of each, found by walking Click's tree."""
    import typer.main

    out: list[tuple[str, str | None]] = []

    def walk(command: Any, path: str) -> None:
        out.append((path, command.help))
        out.extend((f"{path} {param.name}", getattr(param, "help", None)) for param in command.params)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "clrfind")
    return out


def test_help_strings_read_as_sentences() -> None:
    """Each help text ends in a period, with no space before it, as rendered: Typer reads help as Rich markup,
    where "[default: x]" is a style tag that vanishes and left "Output folder ." on screen."""
    from rich.text import Text

    texts = _help_texts()
    assert len(texts) > 30  # every command's options were found
    for where, text in texts:
        assert text, f"{where}: no help"
        shown = Text.from_markup(text.strip()).plain
        assert shown.endswith(".") and not shown.endswith(" .") and "  " not in shown, f"{where}: {shown!r}"
        assert len(shown) >= len(text.strip()) - 1, f"{where}: markup ate part of {text!r}"


def test_rendered_help_keeps_the_defaults_it_names(runner: CliRunner) -> None:
    res = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "(default: beside the results)." in res.stdout


def test_an_lr_in_the_optimizer_kwargs_is_not_used_and_is_placed_against_the_bounds(
    runner: CliRunner, tmp_path: Path
) -> None:
    """A training config copied as it is keeps its lr: the test sets every LR and says where that lr sits."""
    spec = write_spec(tmp_path, BASE_SPEC.replace("{momentum: 0.9}", "{momentum: 0.9, lr: 100.0}"))
    res = runner.invoke(app, ["range-test", str(spec), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    saved = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert saved["optimizer"]["kwargs"] == {"momentum": 0.9}  # as the test ran it
    max_lr = saved["bounds"]["max_lr"]
    note = f"the spec's optimizer lr (100.0) was not used: the test sets every LR itself; 100 is {100 / max_lr:.2g}x"
    assert f"note: {note} above max_lr" in res.stdout and any(n.startswith(note) for n in saved["notes"])
    assert "lr: 100" not in (tmp_path / "run" / "schedule.yaml").read_text()
    # `clrfind check` says so before the run, and only for a spec that gives one.
    res = runner.invoke(app, ["check", str(spec)])
    assert res.exit_code == 0 and res.stderr == ""
    assert (
        "note: the spec's optimizer lr (100.0) will not be used: the test sets every LR itself\n"
        in res.stdout
    )
    plain = write_spec(tmp_path, BASE_SPEC)
    assert "note:" not in runner.invoke(app, ["check", str(plain)]).stdout


@pytest.mark.parametrize(
    ("lr", "ending"),
    [
        (0.05, "; 0.05 is within the suggested range (0.01 to 0.1)"),
        (1e-4, "; 0.0001 is 1e+02x below base_lr 0.01"),
        (0.3, "; 0.3 is 3x above max_lr 0.1"),
        ("3e-4x", ""),  # not a number: nothing to place
        (float("nan"), ""),
        (True, ""),
    ],
)
def test_the_given_lr_note_places_a_number_and_only_a_number(lr: Any, ending: str) -> None:
    from clrfind.api import given_lr_note
    from clrfind.results import Bounds

    bounds = Bounds(base_lr=0.01, max_lr=0.1, peak_lr=0.1, method="loss", confidence="high")
    assert bounds.usable
    note = given_lr_note(lr, bounds)
    assert note.startswith("the spec's optimizer lr (") and note.endswith(
        f"the test sets every LR itself{ending}"
    )
    assert given_lr_note(0.05, None).endswith("itself")


def test_train_epochs_sizes_the_test_and_the_schedule(runner: CliRunner, tmp_path: Path) -> None:
    # 1024 samples in batches of 64: 16 steps an epoch; 25 epochs are 400 steps, and the test lasts as long.
    spec = write_spec(tmp_path, BASE_SPEC.replace(", steps: 60}", "}"))
    out = tmp_path / "run"
    res = runner.invoke(app, ["range-test", str(spec), "-o", str(out), "-q", "--train-epochs", "25"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    assert "for a training of 25 epochs x 16 steps = 400 steps (the exported schedule's length)" in res.stdout
    data = json.loads((out / "range_test.json").read_text())
    assert data["planned_steps"] == 400 and data["training"] == {"epochs": 25, "steps_per_epoch": 16}
    written = yaml.safe_load((out / "schedule.yaml").read_text())  # the run's own schedule spans the training
    assert written["scheduler"]["kwargs"]["total_steps"] == 400
    same = runner.invoke(app, ["export", str(out), "--out", "-"])
    assert same.exit_code == 0 and same.stderr == ""
    assert yaml.safe_load(same.stdout)["training"]["total_steps"] == 400
    other = runner.invoke(app, ["export", str(out), "--out", "-", "--epochs", "10"])
    assert other.exit_code == 0, other.stderr
    assert other.stderr.startswith(
        "warning: this schedule trains 160 optimizer steps, the range test was told"
    )
    assert yaml.safe_load(other.stdout)["training"]["total_steps"] == 160
    assert "note: a test of" not in res.stdout  # the length clrfind chose is no short test


def test_a_test_set_under_half_clrfind_s_own_length_says_so(runner: CliRunner, tmp_path: Path) -> None:
    """A short ladder shows the fall, and so the bounds, at higher LRs: the run's notes say so and export warns."""
    spec = write_spec(tmp_path, BASE_SPEC)  # its own 60 steps, where told 25 epochs it would run 400
    out = tmp_path / "run"
    res = runner.invoke(app, ["range-test", str(spec), "-o", str(out), "-q", "--train-epochs", "25"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    said = (
        "a test of 60 steps is under half the 400 clrfind runs for the 400-step training: a shorter test shows the "
        "loss's fall, and so the bounds, at higher LRs (the loss needs steps to move)"
    )
    assert f"note: {said}; leave the test's length out and clrfind chooses it\n" in res.stdout
    assert json.loads((out / "range_test.json").read_text())["notes"][-1].startswith(said)
    again = runner.invoke(app, ["export", str(out), "--out", "-"])
    assert again.exit_code == 0, again.stderr
    assert again.stderr == f"warning: {said}; re-run the range test without a length of its own\n"
    assert yaml.safe_load(again.stdout)["warnings"] == [
        f"{said}; re-run the range test without a length of its own"
    ]
    untold = runner.invoke(
        app, ["range-test", str(spec), "-o", str(tmp_path / "untold"), "-q", "--steps", "150"]
    )
    assert untold.exit_code == 0, untold.stderr
    assert "note: a test of" not in untold.stdout  # half the 300 it runs untold is not under half


def test_train_epochs_must_be_positive(runner: CliRunner, spec: Path) -> None:
    res = runner.invoke(app, ["range-test", str(spec), "-q", "--train-epochs", "0"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("error: ") and "training.epochs" in res.stderr


@pytest.mark.parametrize("command", ["plot", "export"])
def test_a_reader_that_leaves_early_ends_the_command_quietly(
    run_dir: Path, tmp_path: Path, command: str
) -> None:
    # `clrfind ... | head`: the pipe is closed before the command writes; no error blames the spec's code.
    out = ["--out", str(tmp_path / "again.png")] if command == "plot" else ["--out", "-"]  # rich; sys.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "clrfind", command, str(run_dir / "range_test.json"), *out],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and err == b""
    if command == "plot":
        assert (tmp_path / "again.png").exists()  # done before the reader was found gone
