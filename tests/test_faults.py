"""Faults during a run: out-of-memory advice with partial results, and atomic writes that never truncate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import BASE_SPEC, write_spec
from typer.testing import CliRunner

from clrfind.cli import app
from clrfind.errors import OutputError
from clrfind.fileio import write_atomic

OOM_STEP = """
import torch
calls = {"n": 0}
def oom_step(model, batch, loss_fn):
    calls["n"] += 1
    if calls["n"] == 7:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    x, y = batch
    return loss_fn(model(x), y)
"""


def test_out_of_memory_gives_batch_size_advice_and_keeps_results(tmp_path: Path) -> None:
    (tmp_path / "oom.py").write_text(OOM_STEP)
    spec = write_spec(tmp_path, BASE_SPEC + "step: {target: oom.py:oom_step}\n")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["range-test", str(spec), "--out", str(out), "--quiet"])
    assert res.exit_code == 1 and res.stdout == ""
    line = res.stderr.strip()
    assert "\n" not in line and "out of memory" in line and "batch_size 64" in line and "accumulate" in line
    data = json.loads((out / "range_test.json").read_text())
    assert data["stop_reason"] == "error" and len(data["lrs"]) == 6


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "range_test.json"
    write_atomic(target, '{"old": true}')

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OutputError, match=r"range_test\.json: cannot write the file \(disk full\)"):
        write_atomic(target, '{"new": true, "long": "' + "x" * 100_000 + '"}')
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["range_test.json"]  # no temporary file left behind


def test_optimizer_without_lr_is_a_setup_error(tmp_path: Path) -> None:
    (tmp_path / "opt.py").write_text(
        "import torch\n"
        "class NoLr(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr=None):\n"
        "        super().__init__(params, {'scale': 1.0})\n"
        "    def step(self, closure=None):\n"
        "        return None\n"
    )
    spec = write_spec(tmp_path, BASE_SPEC.replace("torch.optim.SGD, kwargs: {momentum: 0.9}", "opt.py:NoLr"))
    res = CliRunner().invoke(app, ["range-test", str(spec), "--quiet", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "no 'lr' in its param groups" in res.stderr
