"""Repository hygiene: lint, format, the README's commands match CI, every sample config is valid."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

SAMPLE_SPECS = sorted(SAMPLES.glob("*.yaml"))


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    # The test extra's ruff, in the environment that runs the tests (whichever venv that is), else one on PATH.
    beside = Path(sys.executable).parent / "ruff"
    exe = str(beside) if beside.is_file() else shutil.which("ruff") or str(REPO / ".venv" / "bin" / "ruff")
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


def test_readme_names_the_results_schema_version_written() -> None:
    """The Outputs section says which schema version `range_test.json` has and which older ones load."""
    from clrfind.results import SCHEMA_VERSION

    readme = (REPO / "README.md").read_text()
    stated = re.search(
        r"`range_test.json` \(schema version (\d+); files of versions 1-(\d+) still load", readme
    )
    assert stated is not None
    assert (int(stated[1]), int(stated[2])) == (SCHEMA_VERSION, SCHEMA_VERSION - 1)


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


def _clrfind_imports(path) -> set[str]:
    """The clrfind modules a module imports when it runs (module level and inside functions), without the
    `if TYPE_CHECKING:` blocks, which never run."""
    import ast

    tree = ast.parse(path.read_text())
    skip = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clrfind"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("clrfind"))
    return found


def test_no_import_circle_in_the_package() -> None:
    package = REPO / "clrfind"
    modules = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
        for p in package.rglob("*.py")
    }
    graph = {
        name: {m for m in _clrfind_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its own submodules is not a circle: Python imports the package first.
    graph = {name: {m for m in deps if not m.startswith(name + ".")} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                pytest.fail("import circle: " + " -> ".join([*trail[trail.index(dep) :], dep]))
            if dep not in state:
                visit(dep, [*trail, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_function_over_120_lines() -> None:
    import ast

    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name}"
        for path in sorted((REPO / "clrfind").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 120
    ]
    assert not long, long
