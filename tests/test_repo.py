"""Repository hygiene: lint, format, the README's commands match CI, every sample config is valid."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import REPO, SAMPLES

SAMPLE_SPECS = sorted(SAMPLES.glob("*.yaml"))


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ruff") or str(REPO / ".venv" / "bin" / "ruff")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=REPO)


def test_ruff_check_clean() -> None:
    res = _ruff("check", "--no-cache", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_clean() -> None:
    res = _ruff("format", "--check", "--no-cache", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = ci.split("# README test command:\n", 1)[1].strip().splitlines()[0]
    assert command in readme
    assert "pytest" in command and "torch==2.13.0" in command


def test_readme_quickstart_command_names_a_real_spec() -> None:
    readme = (REPO / "README.md").read_text()
    specs = re.findall(r"clrfind range-test (sample_configs/\S+\.yaml)", readme)
    assert "sample_configs/quickstart.yaml" in specs
    for spec in specs:
        assert (REPO / spec).exists(), spec


@pytest.mark.parametrize("spec", SAMPLE_SPECS, ids=lambda p: p.name)
def test_sample_config_is_valid(spec) -> None:
    from clrfind.spec import load_spec

    first = spec.read_text().splitlines()[0]
    assert first == f"# Run: clrfind range-test sample_configs/{spec.name}"
    loaded = load_spec(spec)
    if "cifar" in spec.name:
        pytest.importorskip("torchvision")
    from clrfind.targets import validate_spec_targets

    validate_spec_targets(loaded)


@pytest.mark.parametrize("spec", [s for s in SAMPLE_SPECS if "cifar" not in s.name], ids=lambda p: p.name)
def test_sample_config_checks(spec) -> None:
    from clrfind.api import check_spec
    from clrfind.spec import load_spec

    report = check_spec(load_spec(spec, {"device": "cpu"}))
    assert report.param_count > 0 and report.planned_steps >= 50
