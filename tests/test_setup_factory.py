"""`setup:` factories (one function returning model, data, loss and optimizer) and specs whose `step:` computes
the loss itself (no `loss:` block), through the CLI: exit code, stdout and stderr asserted separately."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BASE_SPEC, write_spec
from typer.testing import CliRunner

from clrfind.cli import app

# Beside conftest's task.py: the same model and data as BASE_SPEC, built by factories in every shape they may
# take, and a model that computes its own loss as Hugging Face models do.
FACTORIES_PY = '''
import collections
import dataclasses

import torch

import task


def setup(hidden=16):
    # Built in the order a spec builds them (model, then data), so the same seed gives the same weights.
    model = task.Net(hidden=hidden)
    return {
        "model": model,
        "data": task.blobs(n=1024),
        "loss": torch.nn.CrossEntropyLoss(),
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
    }


@dataclasses.dataclass
class Parts:
    model: torch.nn.Module
    data: object
    loss: object = None
    optimizer: object = None


def setup_dataclass():
    return Parts(model=task.Net(), data=task.blobs(n=256), loss=torch.nn.CrossEntropyLoss())


Pieces = collections.namedtuple("Pieces", ["model", "data"])


class SelfLoss(torch.nn.Module):
    """Computes its loss from the batch, as model(**batch).loss does in Hugging Face models."""

    def __init__(self):
        super().__init__()
        self.net = task.Net()

    def forward(self, x, y):
        return type("Output", (), {"loss": torch.nn.functional.cross_entropy(self.net(x), y)})()


def setup_self_loss():
    return Pieces(model=SelfLoss(), data=task.dict_blobs(n=256))


def loss_step(model, batch, loss_fn):
    return model(**batch).loss


def pair_step(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def loss_fn_step(model, batch, loss_fn):
    return loss_fn(model.net(batch["x"]), batch["y"])


def returns_int():
    return 3


def misspelt():
    model = task.Net()
    return {"model": model, "data": task.blobs(), "loss": torch.nn.CrossEntropyLoss(), "optimiser": None}


def model_is_text():
    return {"model": "Net", "data": task.blobs(), "loss": torch.nn.CrossEntropyLoss()}


def no_optimizer():
    return {"model": task.Net(), "data": task.blobs(), "loss": torch.nn.CrossEntropyLoss()}


def foreign_optimizer():
    other = task.Net()
    return {"model": task.Net(), "data": task.blobs(), "loss": torch.nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(other.parameters(), lr=0.1)}


def loss_class():
    model = task.Net()
    return {"model": model, "data": task.blobs(), "loss": torch.nn.CrossEntropyLoss,
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}


def no_loss():
    model = task.Net()
    return {"model": model, "data": task.blobs(), "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}


def boom():
    raise ValueError("no data here")
'''

SETUP_SPEC = """
setup: {target: factories.py:setup, kwargs: {hidden: 16}}
data: {batch_size: 64}
range_test: {min_lr: 1.0e-3, max_lr: 2.0, steps: 60}
device: cpu
seed: 0
"""

# A spec whose step computes the loss itself: no loss block.
SELF_LOSS_SPEC = """
model: {target: factories.py:SelfLoss}
data: {train: {target: task.py:dict_blobs, kwargs: {n: 256}}, batch_size: 32}
optimizer: {target: torch.optim.SGD, kwargs: {momentum: 0.9}}
step: {target: factories.py:loss_step}
range_test: {min_lr: 1.0e-3, max_lr: 2.0, steps: 30}
device: cpu
seed: 0
"""


def _spec(folder: Path, body: str) -> Path:
    path = write_spec(folder, body)
    (folder / "factories.py").write_text(FACTORIES_PY)
    return path


def _run(spec: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["range-test", str(spec), "--quiet", "--out", str(out), *extra])


def _one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_a_setup_factory_measures_what_the_same_blocks_measure(tmp_path: Path) -> None:
    from clrfind.api import run_spec
    from clrfind.spec import load_spec

    quick = {"verify_bounds": False}  # the self-check is not what differs
    blocks = run_spec(
        load_spec(write_spec(_mkdir(tmp_path / "blocks"), BASE_SPEC), quick), write=False
    ).result
    factory = run_spec(load_spec(_spec(_mkdir(tmp_path / "factory"), SETUP_SPEC), quick), write=False).result
    assert factory.losses == blocks.losses
    assert factory.bounds == blocks.bounds and factory.bounds.usable
    # The results name the factory's optimizer, so an exported schedule rebuilds it.
    assert factory.optimizer.name == "SGD" and factory.optimizer.kwargs == {"momentum": 0.9}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize(
    "spec",
    [
        # A dataclass with the spec's optimizer block; the data gets the spec's batch size.
        "setup: {target: factories.py:setup_dataclass}\ndata: {batch_size: 16}\n"
        "optimizer: {target: torch.optim.SGD}\n",
        # A named tuple without a loss: the step computes it.
        "setup: {target: factories.py:setup_self_loss}\noptimizer: {target: torch.optim.Adam}\n"
        "step: {target: factories.py:loss_step}\n",
    ],
    ids=["dataclass", "namedtuple-with-step"],
)
def test_factories_return_dicts_dataclasses_or_named_tuples(tmp_path: Path, spec: str) -> None:
    path = _spec(tmp_path, spec + "range_test: {min_lr: 1.0e-4, max_lr: 1.0, steps: 20}\ndevice: cpu\n")
    res = CliRunner().invoke(app, ["check", str(path)])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    assert "batch_size 16" in res.stdout if "dataclass" in spec else "batch_size 32" in res.stdout


SETUP_ERRORS = [
    ("not a mapping", "setup: {target: factories.py:returns_int}",
     ["setup.target 'factories.py:returns_int' returned int, not a mapping", "return a dict (or a dataclass"]),
    ("unknown key", "setup: {target: factories.py:misspelt}",
     ["returned an unknown key 'optimiser'", "did you mean 'optimizer'?"]),
    ("wrong type", "setup: {target: factories.py:model_is_text}\noptimizer: {target: torch.optim.SGD}",
     ["returned model=str, not a torch.nn.Module", "under the key 'model'"]),
    ("missing piece", "setup: {target: factories.py:no_optimizer}",
     ["returned no 'optimizer', and the spec has no optimizer: block", "add optimizer: to the spec"]),
    ("both", "setup: {target: factories.py:setup}\nloss: {target: torch.nn.CrossEntropyLoss}",
     ["returned 'loss' and the spec has a loss: block too", "keep one"]),
    ("foreign optimizer", "setup: {target: factories.py:foreign_optimizer}",
     ["returned optimizer=SGD, not a torch.optim optimizer over the model's parameters"]),
    ("a loss's class", "setup: {target: factories.py:loss_class}",
     ["returned loss=the class CrossEntropyLoss, not a loss function or module (return an instance of it "
      "(CrossEntropyLoss(...)) under the key 'loss')"]),
    ("no loss", "setup: {target: factories.py:no_loss}",
     ["returned no 'loss', and the spec has neither loss: nor step:", "returns the loss itself"]),
    ("a loss beside a step that takes none", "setup: {target: factories.py:setup}\nstep: {target: "
     "factories.py:pair_step}", ["spec.yaml: step.target: 'factories.py:pair_step' takes (model, batch), no loss_fn, "
     "so the loss (from setup.target 'factories.py:setup') would go unused (return no loss from setup, or give the "
     "step a third argument, loss_fn, and use it)"]),
    ("raises", "setup: {target: factories.py:boom}",
     ["setup.target 'factories.py:boom' raised ValueError: no data here"]),
    ("bad kwarg", "setup: {target: factories.py:setup, kwargs: {hiden: 3}}",
     ["setup.kwargs.hiden", "did you mean 'hidden'?"]),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "needles"), [c[1:] for c in SETUP_ERRORS], ids=[c[0] for c in SETUP_ERRORS])
def test_setup_factory_errors_name_the_file_the_factory_and_the_fix(
    tmp_path: Path, spec: str, needles: list[str]
) -> None:
    path = _spec(tmp_path, spec + "\ndevice: cpu\n")
    line = _one_line_error(_run(path, tmp_path / "run"))
    assert line.startswith("error: spec.yaml: ")
    for needle in needles:
        assert needle in line
    assert not (tmp_path / "run" / "range_test.json").exists()


def test_a_step_that_returns_the_loss_needs_no_loss_block(tmp_path: Path) -> None:
    res = _run(_spec(tmp_path, SELF_LOSS_SPEC), tmp_path / "run", "--no-verify-bounds")
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    result = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert len(result["losses"]) >= 10 and result["spec"]["loss"] is None


def test_without_loss_or_step_nothing_computes_the_loss(tmp_path: Path) -> None:
    spec = SELF_LOSS_SPEC.replace("step: {target: factories.py:loss_step}\n", "")
    line = _one_line_error(_run(_spec(tmp_path, spec), tmp_path / "run"))
    assert "spec.yaml: loss: missing required key: nothing computes the loss" in line
    assert "add loss: {target: torch.nn.CrossEntropyLoss}, or a step: whose function returns the loss" in line


def test_a_step_that_calls_the_missing_loss_fn_is_told_why(tmp_path: Path) -> None:
    spec = SELF_LOSS_SPEC.replace("factories.py:loss_step", "factories.py:loss_fn_step")
    line = _one_line_error(_run(_spec(tmp_path, spec), tmp_path / "run"))
    assert "step.target 'factories.py:loss_fn_step' failed on the first batch" in line
    assert "the spec has no loss:, so the step's loss_fn is None" in line


def test_the_library_takes_no_loss_fn_when_the_step_computes_the_loss(tiny_task) -> None:
    import torch

    import clrfind
    from clrfind.errors import UsageError

    model, loader, _, optimizer = tiny_task

    def step(model, batch, loss_fn):
        assert loss_fn is None
        inputs, targets = batch
        return torch.nn.functional.cross_entropy(model(inputs), targets)

    result = clrfind.range_test(
        model, loader, None, optimizer, min_lr=1e-3, max_lr=1.0, steps=20, step_fn=step, verify_bounds=False
    )
    assert result.steps_run >= 10
    with pytest.raises(UsageError, match="loss_fn is None and there is no step_fn"):
        clrfind.range_test(model, loader, None, optimizer, min_lr=1e-3, max_lr=1.0, steps=20)


def test_the_readme_example_runs(tmp_path: Path) -> None:
    """The README's `setup:` example, its train.py and its spec as written, through a range test."""
    from conftest import REPO

    section = (REPO / "README.md").read_text().split("### One function that builds everything", 1)[1]
    factory = section.split("```python\n", 1)[1].split("```", 1)[0]
    spec = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "train.py").write_text(factory)
    (tmp_path / "spec.yaml").write_text(spec)
    res = _run(tmp_path / "spec.yaml", tmp_path / "run")
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    assert "suggested: base_lr" in res.stdout
    result = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert result["optimizer"]["kwargs"] == {"momentum": 0.9, "weight_decay": 0.0005}
