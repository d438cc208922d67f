"""Hydra's `_target_` and torchtune's `_component_` as spellings of `target`, with the other keys as kwargs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import BASE_SPEC, REPO, SAMPLES, write_spec
from typer.testing import CliRunner

from clrfind.cli import app
from clrfind.errors import SpecError, TargetError
from clrfind.spec import load_spec
from clrfind.targets import validate_spec_targets

# BASE_SPEC with every target block written as a Hydra or torchtune config writes it.
HYDRA_SPEC = """
model:
  _target_: task.py:Net
  hidden: 16
data:
  train: {_component_: task.py:blobs, n: 1024}
  batch_size: 64
loss: {_target_: torch.nn.CrossEntropyLoss}
optimizer:
  _target_: torch.optim.SGD
  _partial_: true
  momentum: 0.9
range_test: {min_lr: 1.0e-3, max_lr: 2.0, steps: 60}
device: cpu
seed: 0
"""


def test_hydra_blocks_load_as_the_same_spec(tmp_path: Path) -> None:
    plain = load_spec(write_spec(tmp_path, BASE_SPEC, "plain.yaml")).spec
    hydra = load_spec(write_spec(tmp_path, HYDRA_SPEC, "hydra.yaml")).spec
    assert hydra == plain
    assert hydra.model.kwargs == {"hidden": 16} and hydra.optimizer.kwargs == {"momentum": 0.9}
    # The results file records the spec in clrfind's own form.
    assert hydra.resolved()["data"]["train"] == {"target": "task.py:blobs", "kwargs": {"n": 1024}}


def test_a_bare_string_is_the_target_alone(tmp_path: Path) -> None:
    """`loss: torch.nn.CrossEntropyLoss` is `loss: {target: torch.nn.CrossEntropyLoss}`, in every target block."""
    plain = load_spec(write_spec(tmp_path, BASE_SPEC, "plain.yaml")).spec
    short = BASE_SPEC.replace("loss: {target: torch.nn.CrossEntropyLoss}", "loss: torch.nn.CrossEntropyLoss")
    short = short.replace("{target: torch.optim.SGD, kwargs: {momentum: 0.9}}", "torch.optim.SGD")
    spec = load_spec(write_spec(tmp_path, short + "step: task.py:step\n", "short.yaml")).spec
    assert spec.loss == plain.loss and spec.optimizer is not None
    assert (spec.optimizer.target, spec.optimizer.kwargs) == ("torch.optim.SGD", {})
    assert spec.step is not None and spec.step.target == "task.py:step"
    with pytest.raises(SpecError, match=r"loss\.target: must not be empty"):
        load_spec(
            write_spec(tmp_path, BASE_SPEC.replace("{target: torch.nn.CrossEntropyLoss}", "''"), "e.yaml")
        )


def test_alias_keeps_the_blocks_own_keys(tmp_path: Path) -> None:
    """`checkpoint` is the model block's own key beside `_target_`, and `kwargs:` alone is still clrfind's."""
    spec = HYDRA_SPEC.replace("  hidden: 16\n", "  checkpoint: w.pt\n  kwargs: {hidden: 8}\n")
    model = load_spec(write_spec(tmp_path, spec)).spec.model
    assert model.checkpoint == "w.pt" and model.kwargs == {"hidden": 8}


def test_the_readme_example_passes_clrfind_check(tmp_path: Path) -> None:
    """The README's `_target_` example, beside the sample configs' models.py and data.py, builds and trains."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Configs you already have", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "_target_:" in example and "_component_:" in example
    for name in ("models.py", "data.py"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    (tmp_path / "spec.yaml").write_text(example + "device: cpu\n")
    res = CliRunner().invoke(app, ["check", str(tmp_path / "spec.yaml")])
    assert res.exit_code == 0, res.stderr
    assert "parameters: 5,764" in res.stdout and "ok: the spec builds" in res.stdout


def test_kwargs_problems_name_the_keys_as_written(tmp_path: Path) -> None:
    """A loose kwarg is reported where it is in the file (model.hiden), not under a kwargs: the file lacks."""
    spec = HYDRA_SPEC.replace("hidden: 16", "hiden: 16").replace("momentum: 0.9", "momentum: 0.9\n  lr: 0.1")
    with pytest.raises(TargetError) as info:
        validate_spec_targets(load_spec(write_spec(tmp_path, spec)))
    problems = info.value.problems
    assert any(p.startswith("spec.yaml: model.hiden: ") and "did you mean 'hidden'?" in p for p in problems)
    assert not any("optimizer.lr" in p for p in problems)  # a training config's lr is kept, not refused
    bad_target = HYDRA_SPEC.replace("task.py:Net", "task.py:Nett")
    with pytest.raises(TargetError, match=r"^spec\.yaml: model\._target_: .*did you mean 'Net'"):
        validate_spec_targets(load_spec(write_spec(tmp_path, bad_target)))


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        (
            "model: {target: task.py:Net, _target_: task.py:Net}",
            "both 'target' and '_target_' name the target",
        ),
        ("model: {_target_: task.py:Net, _component_: task.py:Net}", "both '_target_' and '_component_'"),
        (
            "model: {_target_: task.py:Net, hidden: 16, kwargs: {classes: 2}}",
            "arguments both beside _target_",
        ),
        ("model: {_target_: task.py:Net, _partial_: 1}", "model._partial_: expected true or false"),
        (
            "model: {_target_: task.py:Net, _recursive_: false}",
            "model._recursive_: Hydra's _recursive_ is not",
        ),
        (
            "model: {_target_: task.py:Net, _convert_: all}",
            "model._convert_: Hydra's _convert_ is not supported",
        ),
        (
            "model: {_target_: task.py:Net, body: {_target_: torch.nn.Linear}}",
            "body is a nested _target_ block",
        ),
        (
            "model: {target: task.py:Net, kwargs: {b: [1, {_component_: x}]}}",
            "kwargs.b[1] is a nested _target_",
        ),
    ],
)
def test_ambiguous_blocks_are_one_line_naming_the_block(tmp_path: Path, block: str, fragment: str) -> None:
    spec = BASE_SPEC.replace("model: {target: task.py:Net, kwargs: {hidden: 16}}", block)
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path, spec))
    message = str(info.value)
    assert message.startswith("spec.yaml: model") and fragment in message and "\n" not in message, message


@pytest.mark.parametrize("typo", ["_targt_", "traget", "_taget_", "_componnt_"])
def test_misspelt_target_key_suggests_target(tmp_path: Path, typo: str) -> None:
    spec = BASE_SPEC.replace("{target: task.py:Net", "{" + typo + ": task.py:Net")
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path, spec))
    assert f"spec.yaml: model.{typo}: unknown key (did you mean 'target'?)" in info.value.problems


def test_debug_lists_every_problem(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, BASE_SPEC.replace("batch_size: 64", "batch_sise: 64").replace("seed: 0", "sed: 0")
    )
    quiet = CliRunner().invoke(app, ["check", str(spec)])
    assert quiet.exit_code == 2 and "(+1 more problems)" in quiet.stderr
    res = CliRunner().invoke(app, ["--debug", "check", str(spec)])
    assert isinstance(res.exception, SpecError)
    assert "spec.yaml: data.batch_sise: unknown key" in res.stderr
    assert "spec.yaml: sed: unknown key" in res.stderr


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        # built, but not a model: the build step's own check
        (
            "_target_: task.py:Net\n  hidden: 16",
            "_target_: task.py:not_a_dataset",
            "model._target_ returned int",
        ),
        # the constructor raises: instantiate's message
        ("hidden: 16", "hidden: -1", "model._target_ 'task.py:Net' raised RuntimeError"),
        (
            "{_target_: torch.nn.CrossEntropyLoss}",
            "{_target_: task.py:not_a_dataset}",
            "loss._target_ returned int",
        ),
    ],
)
def test_build_errors_name_the_key_as_written(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    """A Hydra-style block's failure names `model._target_`, the key the user can find, not `model.target`."""
    res = CliRunner().invoke(app, ["check", str(write_spec(tmp_path, HYDRA_SPEC.replace(old, new)))])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("error: spec.yaml: ") and fragment in res.stderr, res.stderr
    assert ".target" not in res.stderr


def test_run_failures_name_the_key_as_written(tmp_path: Path) -> None:
    """An exception in the model mid-run names the target by the key the file uses."""
    spec = HYDRA_SPEC.replace("_target_: task.py:Net\n  hidden: 16", "_target_: task.py:Boom\n  at: 5")
    res = CliRunner().invoke(
        app, ["range-test", str(write_spec(tmp_path, spec)), "-q", "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 1 and res.stdout == ""
    assert "model._target_ 'task.py:Boom'" in res.stderr and "kaboom" in res.stderr, res.stderr
