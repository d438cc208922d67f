"""The library in a notebook: a short repr, the CLI's summary, the plot shown inline, the public API listed, and
progress that shows on a terminal and is off with progress=False."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import BASE_SPEC, REPO, write_spec
from typer.testing import CliRunner

import clrfind
from clrfind.cli import app
from clrfind.results import RangeTestResult, load_results


def _run(tiny_task, **kwargs) -> RangeTestResult:
    model, loader, loss_fn, optimizer = tiny_task
    return clrfind.range_test(
        model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=60, verify_bounds=False, **kwargs
    )


def test_repr_shows_bounds_and_stop_not_the_curves(tiny_task, capsys, monkeypatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # a CI that forces a terminal would show the bar
        monkeypatch.delenv(name, raising=False)
    result = _run(tiny_task)
    b = result.bounds
    assert b is not None and b.usable
    peak = "" if b.peak_above_max_lr is None else f"peak_lr={float(f'{b.peak_above_max_lr:.3g}')}, "
    assert repr(result) == (
        f"RangeTestResult(base_lr={float(f'{b.base_lr:.3g}')}, max_lr={float(f'{b.max_lr:.3g}')}, {peak}"
        f"confidence={b.confidence!r}, stop_reason={result.stop_reason!r}, steps_run={result.steps_run}, "
        "planned_steps=60)"
    )
    empty = result.model_copy(update={"lrs": [], "losses": [], "smoothed": [], "bounds": None})
    assert repr(empty).startswith("RangeTestResult(bounds=None, confidence='none', ")
    # Not on a terminal (pytest captures stderr): no bar, and the library never writes to stdout.
    assert capsys.readouterr() == ("", "")


def test_repr_png_is_the_plot_and_none_without_steps(tiny_task) -> None:
    result = _run(tiny_task, progress=False)
    png = result._repr_png_()
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.model_copy(update={"lrs": [], "losses": [], "smoothed": []})._repr_png_() is None


def test_summary_is_what_the_cli_prints(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, BASE_SPEC)
    res = CliRunner().invoke(app, ["range-test", str(spec), "-q", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.stderr
    summary = load_results(tmp_path / "out").summary()
    assert summary.splitlines()[0].startswith("range test: ") and "\nsuggested: " in summary
    assert res.stdout.startswith(summary + "\nresults: ")


def test_dir_lists_the_public_api() -> None:
    names = dir(clrfind)
    assert names == sorted(clrfind.__all__)
    assert {"range_test", "RangeTestResult", "log_result", "StepEvent", "UsageError"} <= set(names)
    for name in names:
        assert getattr(clrfind, name) is not None


def test_progress_shows_on_a_terminal_and_is_off_with_progress_false(tiny_task, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat stderr as a terminal
    events: list[clrfind.StepEvent] = []
    _run(tiny_task, callback=events.append)
    out, err = capsys.readouterr()
    assert out == "" and "range test" in err and "lr " in err and "loss " in err
    assert events and events[-1].step >= 10  # the caller's callback runs beside the bar
    events.clear()
    _run(tiny_task, callback=events.append, progress=False)
    assert capsys.readouterr() == ("", "") and events


@pytest.mark.parametrize("quiet", [True, False])
def test_cli_bar_only_on_a_terminal(tmp_path: Path, monkeypatch, quiet: bool) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    spec = write_spec(tmp_path, BASE_SPEC + "verify_bounds: false\n")
    args = ["range-test", str(spec), "-o", str(tmp_path / "out"), "--steps", "30"]
    res = CliRunner().invoke(app, args + (["-q"] if quiet else []))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith("range test: ")
    assert ("spec" in res.stderr and "lr " in res.stderr) is not quiet


def test_the_readme_library_examples_run(tiny_task, tmp_path: Path, monkeypatch) -> None:
    """Every Python block of the README's library section, in order, on the tiny task."""
    pytest.importorskip("tensorboard")  # the example logs to TensorBoard
    section = (REPO / "README.md").read_text().split("\n## Library API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 3 and "callback=" in blocks[1] and "suggestion()" in blocks[1]
    monkeypatch.chdir(tmp_path)
    model, loader, loss_fn, optimizer = tiny_task
    names = {"model": model, "train_loader": loader, "loss_fn": loss_fn, "optimizer": optimizer}
    for block in blocks[:2]:
        exec(block, names)
    # The third shows groups by name: a model with a `backbone`, a norm layer and a head.
    import torch

    net = torch.nn.Module()
    net.backbone = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.LayerNorm(16), torch.nn.Tanh())
    net.head = torch.nn.Linear(16, 2)
    net.forward = lambda x: net.head(net.backbone(x))
    grouped = {"clrfind": clrfind, "torch": torch, "model": net, "train_loader": loader, "loss_fn": loss_fn}
    exec(blocks[2], grouped)
    assert [g.name for g in grouped["result"].param_groups] == ["no_decay", "backbone", "default"]
    assert (tmp_path / "runs" / "lr" / "range_test.json").is_file()
    assert (tmp_path / "runs" / "my" / "schedule.yaml").exists()
    assert type(names["scheduler"]).__name__ == "OneCycleLR"
    assert names["losses"] and 0 < names["base_lr"] < names["max_lr"]
    assert len(list((tmp_path / "runs" / "tb").glob("events.out.tfevents.*"))) == 1


def test_the_readme_documents_every_public_name() -> None:
    section = (REPO / "README.md").read_text().split("### Every public name", 1)[1]
    missing = [name for name in dir(clrfind) if f"`{name}" not in section]
    assert missing == []
    import inspect

    from clrfind import loggers

    documented = re.findall(r"`(\w+)=", section.split("- `RangeTestResult`", 1)[0])
    arguments = list(inspect.signature(clrfind.range_test).parameters)[4:]
    assert [a for a in arguments if a not in documented] == []
    for name in ("TensorBoard", "Wandb", "MLflow", "ExperimentLogger", "RunRecord", "run_record"):
        assert hasattr(loggers, name) and f"`{name}" in section
