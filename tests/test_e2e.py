"""End-to-end runs of the shipped samples and of Ctrl-C, in real subprocesses (marked slow; they run in CI)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import BASE_SPEC, REPO, write_spec

pytestmark = pytest.mark.slow


def _clrfind(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clrfind", *args], capture_output=True, text=True, cwd=REPO, **kw
    )


def test_quickstart_end_to_end(tmp_path: Path) -> None:
    res = _clrfind(
        "range-test", "sample_configs/quickstart.yaml", "--out", str(tmp_path), "--quiet", "--device", "cpu"
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    data = json.loads((tmp_path / "range_test.json").read_text())
    bounds = data["bounds"]
    assert bounds["base_lr"] and bounds["max_lr"] and bounds["base_lr"] < bounds["max_lr"]
    assert data["stop_reason"] in ("diverged", "non-finite"), (
        "quickstart's range is meant to reach divergence"
    )
    assert bounds["confidence"] in ("high", "medium")
    sched = yaml.safe_load((tmp_path / "schedule.yaml").read_text())
    assert sched["scheduler"]["kwargs"]["max_lr"] == pytest.approx(bounds["max_lr"])
    assert (tmp_path / "range_test.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", ["sequence_step.yaml", "cnn_shapes.yaml"])
def test_other_samples_run(tmp_path: Path, name: str) -> None:
    res = _clrfind(
        "range-test", f"sample_configs/{name}", "--out", str(tmp_path), "--quiet", "--device", "cpu"
    )
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "range_test.json").read_text())
    assert data["steps_per_epoch"] == 32 and len(data["lrs"]) > 10
    if name == "cnn_shapes.yaml":
        assert data["metric"]["name"] == "accuracy" and len(data["metric"]["values"]) >= 5
        # the bundled sample reads usable bounds off its accuracy curve, as the paper's test does
        assert data["bounds"]["method"] == "accuracy" and data["bounds"]["max_lr"] is not None


SLOW_TASK = """
import time, pathlib
def slow_step(model, batch, loss_fn):
    pathlib.Path(__file__).with_name("started").touch()
    time.sleep(0.02)
    x, y = batch
    return loss_fn(model(x), y)
"""


def _start_slow_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    spec = write_spec(
        tmp_path, BASE_SPEC.replace("steps: 60", "steps: 5000") + "step: {target: slow.py:slow_step}\n"
    )
    (tmp_path / "slow.py").write_text(SLOW_TASK)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clrfind", "range-test", str(spec), "--out", str(out), "--quiet"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and children inherit that (clrfind then leaves Ctrl-C
        # alone, as under nohup): the run under test gets Ctrl-C's default, however pytest itself was started.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while not (tmp_path / "started").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # some steps recorded
    return proc, out


def test_ctrl_c_saves_partial_results_and_exits_130(tmp_path: Path) -> None:
    proc, out = _start_slow_run(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "partial results saved" in stderr
    assert "Traceback" not in stderr
    data = json.loads((out / "range_test.json").read_text())
    assert data["stop_reason"] == "interrupted" and 5 < len(data["lrs"]) < 5000
    assert (out / "range_test.png").exists()


def test_second_ctrl_c_exits_at_once_without_truncated_files(tmp_path: Path) -> None:
    proc, out = _start_slow_run(tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    results = out / "range_test.json"
    if results.exists():  # whatever was written is whole: writes are atomic
        json.loads(results.read_text())
