"""`clrfind --help`, `plot` and `export --format yaml` must never import torch (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PROBE = """
import sys
from typer.testing import CliRunner
from clrfind.cli import app
res = CliRunner().invoke(app, {args!r})
assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
print(" ".join(m for m in ("torch", "matplotlib") if m in sys.modules) or "none")
"""


def _heavy_modules(args: list[str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, cwd=REPO, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def test_help_imports_neither_torch_nor_matplotlib() -> None:
    assert _heavy_modules(["--help"]) == "none"
    assert _heavy_modules(["range-test", "--help"]) == "none"


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> Path:
    from clrfind.results import RangeTestResult

    lrs = [0.01 * (i + 1) for i in range(60)]
    losses = [2.0 - 1.5 * (lr / 0.4) if lr < 0.4 else 0.5 + 10 * (lr - 0.4) ** 2 for lr in lrs]
    import numpy as np

    from clrfind.analysis import smooth, suggest_bounds

    result = RangeTestResult(
        clrfind_version="0",
        min_lr=0.01,
        max_lr=0.6,
        planned_steps=60,
        lrs=lrs,
        losses=losses,
        smoothed=[float(v) for v in smooth(np.array(losses))],
        stop_reason="completed",
        bounds=suggest_bounds(np.array(lrs), np.array(losses)),
        steps_per_epoch=10,
        optimizer={"target": "torch.optim.SGD", "kwargs": {"momentum": 0.9}},
    )
    return result.save(tmp_path_factory.mktemp("run"))


def test_plot_does_not_import_torch(results_file: Path) -> None:
    assert _heavy_modules(["plot", str(results_file)]) == "matplotlib"


def test_export_yaml_imports_neither(results_file: Path) -> None:
    assert _heavy_modules(["export", str(results_file), "--format", "yaml"]) == "none"


def test_the_integrations_import_their_frameworks_only_when_used() -> None:
    """`import clrfind.lightning` / `clrfind.transformers` cost nothing until a function of theirs runs."""
    probe = (
        "import sys, clrfind.lightning, clrfind.transformers\n"
        "print(' '.join(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules) or 'none')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "none"
