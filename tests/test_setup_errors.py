"""Setup errors through the CLI, one case per row: a one-line error naming the file, the key and the fix, exit 2.

The spec loader's own table is in test_spec.py and target resolution in test_targets.py; these rows check what
reaches the user: exit code, stderr, empty stdout, and that nothing was written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASE_SPEC, write_spec
from typer.testing import CliRunner

from clrfind.cli import app

# Targets and setup: checked before anything trains; through the CLI, so exit code and stderr are asserted too.
TARGET_CASES = [
    ("no module", ("task.py:Net,", "Net,"), ["model.target", "has no module", "models.py:Net"]),
    (
        "module missing",
        ("torch.nn.CrossEntropyLoss", "torchx.nn.Loss"),
        ["loss.target", "No module named 'torchx'"],
    ),
    (
        "attr missing",
        ("task.py:Net,", "task.py:Nett,"),
        ["model.target", "no attribute 'Nett'", "did you mean 'Net'"],
    ),
    ("file missing", ("task.py:Net,", "nothere.py:Net,"), ["model.target", "nothere.py", "not found"]),
    ("not callable", ("torch.nn.CrossEntropyLoss", "torch.pi"), ["loss", "not callable"]),
    (
        "bad kwarg",
        ("{hidden: 16}", "{hiden: 16}"),
        ["model.kwargs.hiden", "did you mean 'hidden'"],
    ),
    ("optimizer kwarg", ("{momentum: 0.9}", "{momentun: 0.9}"), ["optimizer.kwargs", "momentun", "momentum"]),
    (
        "not a dataset",
        ("task.py:blobs, kwargs: {n: 1024}", "task.py:not_a_dataset"),
        ["data.train", "not a Dataset"],
    ),
    ("empty dataset", ("task.py:blobs, kwargs: {n: 1024}", "task.py:empty"), ["data.train", "empty dataset"]),
    (
        "not a pair",
        ("task.py:blobs, kwargs: {n: 1024}", "task.py:triples"),
        ["not an (inputs, targets) pair", "step:"],
    ),
    (
        "loss rejects shapes",
        ("task.py:blobs, kwargs: {n: 1024}", "task.py:wrong_classes"),
        ["loss.target", "Tensor[64, 2]", "Tensor[64]"],
    ),
    (
        "non-scalar loss",
        ("torch.nn.CrossEntropyLoss}", "torch.nn.CrossEntropyLoss, kwargs: {reduction: none}}"),
        ["not a scalar"],
    ),
    (
        "closure optimizer",
        ("torch.optim.SGD, kwargs: {momentum: 0.9}", "torch.optim.LBFGS"),
        ["optimizer.target 'torch.optim.LBFGS'", "needs a closure", "line_search_fn"],
    ),
    (
        "optimizer ignores lr",
        ("torch.optim.SGD, kwargs: {momentum: 0.9}", "torch.optim.Rprop"),
        ["optimizer.target 'torch.optim.Rprop'", "first step size", "etas and step_sizes"],
    ),
    ("no cuda", ("device: cpu", "device: cuda"), ["device", "CUDA is not available"]),
    (
        "bad checkpoint",
        ("kwargs: {hidden: 16}}", "kwargs: {hidden: 16}, checkpoint: none.pt}"),
        ["model.checkpoint", "no such file"],
    ),
]


def _cli_error(tmp_path: Path, spec: Path, exit_code: int) -> str:
    """`range-test SPEC` through the CLI: the exit code, nothing on stdout, one `error: ` line on stderr (returned)."""
    res = CliRunner().invoke(app, ["range-test", str(spec), "--quiet", "--out", str(tmp_path / "run")])
    assert res.exit_code == exit_code, res.stderr
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def _cli_runs(tmp_path: Path, spec: Path) -> None:
    """`range-test SPEC` through the CLI finishes (exit 0)."""
    res = CliRunner().invoke(app, ["range-test", str(spec), "--quiet", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.stderr


@pytest.mark.parametrize(("edit", "needles"), [c[1:] for c in TARGET_CASES], ids=[c[0] for c in TARGET_CASES])
def test_setup_errors_through_the_cli(tmp_path: Path, edit: tuple[str, str], needles: list[str]) -> None:
    assert edit[0] in BASE_SPEC
    spec = write_spec(tmp_path, BASE_SPEC.replace(edit[0], edit[1]))
    if "no cuda" in str(needles) or "CUDA" in " ".join(needles):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    line = _cli_error(tmp_path, spec, 2)
    for needle in needles:
        assert needle in line
    assert not (tmp_path / "run" / "range_test.json").exists()


def test_dict_batches_with_a_step(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        BASE_SPEC.replace("task.py:blobs, kwargs: {n: 1024}", "task.py:dict_blobs").replace(
            "steps: 60", "steps: 20"
        )
        + "step: {target: task.py:dict_step}\n",
    )
    _cli_runs(tmp_path, spec)


def test_checkpoint_is_loaded_weights_only(tmp_path: Path) -> None:
    import torch

    spec = write_spec(
        tmp_path, BASE_SPEC.replace("kwargs: {hidden: 16}}", "kwargs: {hidden: 16}, checkpoint: w.pt}")
    )
    import importlib.util

    mod_spec = importlib.util.spec_from_file_location("task_ckpt", tmp_path / "task.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    torch.save(mod.Net(hidden=16).state_dict(), tmp_path / "w.pt")
    res = CliRunner().invoke(app, ["check", str(spec)])
    assert res.exit_code == 0, res.stderr
    torch.save({"evil": object()}, tmp_path / "w.pt")  # not loadable with weights_only=True
    res = CliRunner().invoke(app, ["check", str(spec)])
    assert res.exit_code == 2 and "weights_only=True" in res.stderr
    assert "\x1b" not in res.stderr  # torch's message is styled (bold) for a terminal: the quote drops it


@pytest.mark.parametrize(
    ("optimizer", "needle"),
    [("LBFGS", "needs a closure"), ("Rprop", "first step size")],
    ids=["LBFGS", "Rprop"],
)
def test_optimizers_a_range_test_cannot_drive_are_refused_before_a_step(tiny_task, optimizer, needle) -> None:
    import torch

    import clrfind
    from clrfind.errors import SetupError

    model, loader, loss_fn, _ = tiny_task
    before = [p.detach().clone() for p in model.parameters()]
    opt = getattr(torch.optim, optimizer)(model.parameters())
    with pytest.raises(SetupError, match=f"^optimizer: .*{needle}"):
        clrfind.range_test(model, loader, loss_fn, opt, min_lr=1e-3, max_lr=1.0, steps=10)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert not opt.state  # not one step taken


def test_a_setup_where_nothing_the_optimizer_steps_trains_is_refused(tiny_task) -> None:
    # Before: a frozen model read "loss ... returned a loss that does not require grad (compute it ... without
    # torch.no_grad() or .detach())", blaming the loss; an optimizer over the frozen part ran a flat curve.
    import torch

    import clrfind
    from clrfind.errors import SetupError

    model, loader, loss_fn, _ = tiny_task
    first, *rest = list(model.parameters())
    first.requires_grad_(False)
    with pytest.raises(SetupError, match=r"^optimizer: none of the 1 parameters it steps requires grad"):
        clrfind.range_test(model, loader, loss_fn, torch.optim.SGD([first], lr=0.1), min_lr=1e-3, max_lr=1.0,
                           steps=10)  # fmt: skip
    for p in rest:
        p.requires_grad_(False)
    n = len(rest) + 1
    with pytest.raises(SetupError, match=rf"^model: none of its {n} parameters requires grad") as caught:
        clrfind.range_test(model, loader, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1), min_lr=1e-3,
                           max_lr=1.0, steps=10)  # fmt: skip
    assert "requires_grad_(True)" in caught.value.hint


def test_an_optimizer_over_another_models_parameters_is_refused(tiny_task) -> None:
    # A notebook cell that builds the model again after the optimizer: the optimizer steps the old model, and the
    # range test ran a flat curve (no bounds, then three times as many steps to make sure).
    import copy

    import torch

    import clrfind
    from clrfind.errors import SetupError

    model, loader, loss_fn, optimizer = tiny_task
    rebuilt = copy.deepcopy(model)
    with pytest.raises(SetupError, match=r"^optimizer: none of the 4 parameters it steps belongs to model \(nor to "
                       r"loss_fn\), so no step changes the model") as caught:  # fmt: skip
        clrfind.range_test(rebuilt, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=1.0, steps=10)
    assert "a notebook cell run twice" in caught.value.hint
    assert not optimizer.state  # not one step taken

    # What the default step trains includes the loss's own parameters; a step function may train anything.
    weighted = torch.nn.Module()
    weighted.scale = torch.nn.Parameter(torch.ones(()))
    weighted.forward = lambda out, y: weighted.scale * loss_fn(out, y)
    head_only = torch.optim.SGD([weighted.scale], lr=0.1)
    ran = clrfind.range_test(model, loader, weighted, head_only, min_lr=1e-3, max_lr=1.0, steps=10,
                             verify_bounds=False)  # fmt: skip
    assert ran.steps_run >= 10  # it trained (a rerun may add more)

    def step(m, batch, fn):
        x, y = batch
        return fn(rebuilt(x) + m(x), y)

    # An optimizer over only what the step function adds to the model.
    other = torch.optim.SGD(rebuilt.parameters(), lr=0.1)
    ran = clrfind.range_test(model, loader, loss_fn, other, min_lr=1e-3, max_lr=1.0, steps=10, step_fn=step,
                             verify_bounds=False)  # fmt: skip
    assert ran.steps_run >= 10  # it trained (a rerun may add more)


BN_TASK = """
import torch
from torch.utils.data import TensorDataset


class BNNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(2, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
        )

    def forward(self, x):
        return self.body(x)


def odd(n=129):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x[:, 0] > 0).long())
"""


def test_one_sample_left_over_for_batch_norm_points_at_drop_last(tmp_path: Path) -> None:
    # 129 = 2 x 64 + 1: the third batch of every pass holds one sample, which batch norm cannot train on.
    import json

    (tmp_path / "bn.py").write_text(BN_TASK)
    body = BASE_SPEC.replace("task.py:Net, kwargs: {hidden: 16}", "bn.py:BNNet").replace(
        "task.py:blobs, kwargs: {n: 1024}", "bn.py:odd"
    )
    spec = write_spec(tmp_path, body.replace("steps: 60", "steps: 20") + "verify_bounds: false\n")
    line = _cli_error(tmp_path, spec, 1)
    assert line.startswith(
        "error: model.target 'bn.py:BNNet' raised ValueError at step 2: Expected more than 1"
    )
    assert line.endswith(
        "(a batch of one sample reached batch norm in training mode (a pass's last, partial batch): set "
        "data.drop_last: true, or a batch_size that leaves no single sample over)"
    )
    assert (tmp_path / "run" / "range_test.json").exists()  # the two steps before it are kept

    spec.write_text(spec.read_text().replace("batch_size: 64", "batch_size: 64\n  drop_last: true"))
    res = CliRunner().invoke(app, ["range-test", str(spec), "--quiet", "--out", str(tmp_path / "run2")])
    assert res.exit_code == 0, res.stderr
    saved = json.loads((tmp_path / "run2" / "range_test.json").read_text())
    assert len(saved["losses"]) == 20 and saved["steps_per_epoch"] == 2 and saved["spec"]["data"]["drop_last"]


def test_batch_norm_at_batch_size_one_is_told_to_batch_more(tmp_path: Path) -> None:
    (tmp_path / "bn.py").write_text(BN_TASK)
    body = BASE_SPEC.replace("task.py:Net, kwargs: {hidden: 16}", "bn.py:BNNet").replace(
        "batch_size: 64", "batch_size: 1"
    )
    line = _cli_error(tmp_path, write_spec(tmp_path, body), 2)
    assert line.startswith(
        "error: spec.yaml: model.target 'bn.py:BNNet': the model failed on inputs Tensor[1, 2] "
    )
    assert line.endswith("(batch norm normalises over the batch, and one sample has no spread: set data.batch_size "
                         "to 2 or more)")  # fmt: skip


def test_a_library_loader_with_one_sample_left_over_is_told_to_drop_it() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import clrfind
    from clrfind.errors import RunError

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    x = torch.randn(65, 2)
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RunError, match="raised ValueError at step 2") as caught:
        clrfind.range_test(model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=1e-3, max_lr=1.0,
                           steps=10, verify_bounds=False)  # fmt: skip
    assert caught.value.hint is not None and caught.value.hint.endswith(
        "pass a DataLoader with drop_last=True"
    )


def test_a_model_that_returns_a_tuple_is_pointed_at_a_step(tmp_path: Path) -> None:
    (tmp_path / "rnn.py").write_text(
        "import torch\n\n\n"
        "class WithState(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.rnn = torch.nn.GRU(2, 2, batch_first=True)\n\n"
        "    def forward(self, x):\n"
        "        return self.rnn(x.unsqueeze(1))  # (outputs, hidden), as torch's recurrent layers return\n"
    )
    spec = write_spec(tmp_path, BASE_SPEC.replace("task.py:Net, kwargs: {hidden: 16}", "rnn.py:WithState"))
    line = _cli_error(tmp_path, spec, 2)
    assert line.startswith(
        "error: spec.yaml: loss.target 'torch.nn.CrossEntropyLoss': the loss rejected model output ("
    )
    assert line.endswith("(the model returns more than one thing: add `step: {target: file.py:fn}` with fn(model, "
                         "batch, loss_fn) that passes the loss the right one)")  # fmt: skip


BAD_DATA_PY = """
import torch
from torch.utils.data import TensorDataset


def blobs_with(n=1024, bad_input=None, bad_target=None, value="nan", label=None, dtype=None):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    if dtype is not None:
        x = x.to(getattr(torch, dtype))
    if bad_input is not None:
        x[bad_input, 1] = float(value)
    if label is not None:
        y[label] = 2  # the model has two outputs: classes 0 and 1
    if bad_target is not None:
        y = y.float().unsqueeze(1)
        y[bad_target] = float(value)
    return TensorDataset(x, y)


class Bag(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(10, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, ids):
        return self.head(self.embed(ids))


def flat_targets(n=1024, width=None):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    y = x[:, 0] + 0.5 * x[:, 1]  # shape (n,): a regression's targets as a 1-D array
    return TensorDataset(x, y if width is None else y.unsqueeze(1).repeat(1, width))


class Warns(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(2, 1)

    def forward(self, x):
        import warnings

        warnings.warn("the model's own warning", UserWarning)
        return self.body(x)


def by_class(n=1024, sort=True, majority=None):
    g = torch.Generator().manual_seed(0)
    if majority is None:
        y = torch.randint(0, 2, (n,), generator=g)
    else:  # one class at `majority`, in no order, and a first batch all of it (as it may be by chance)
        y = (torch.rand(n, generator=g) > majority).long()
        y[:64] = 0
    y = y.sort().values if sort else y
    return TensorDataset(torch.randn(n, 2, generator=g) + y.unsqueeze(1), y)


def labels_from(n=1024, start=0, negative=None):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long() + start
    if negative is not None:
        y[negative] = -1  # a sample without a label, as some datasets mark them
    return TensorDataset(x, y)


def column_labels(n=1024):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x[:, :1] > 0).long())  # labels of shape (n, 1)


def int_multilabel(n=1024):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x > 0).long())  # two 0/1 labels per sample, as integers


class Uninitialised(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((2, 2), float("nan")))  # as torch.empty may leave it

    def forward(self, x):
        return x @ self.weight


class ZeroLog(torch.nn.Module):
    def forward(self, out, y):
        return torch.log((out - out).abs().mean())  # log(0): -inf whatever the weights


class Scores(torch.nn.Module):
    def __init__(self, end="none", outputs=2):
        super().__init__()
        self.body = torch.nn.Linear(2, outputs)
        self.end = {"none": torch.nn.Identity(), "softmax": torch.nn.Softmax(dim=1),
                    "log_softmax": torch.nn.LogSoftmax(dim=1)}[end]

    def forward(self, x):
        return self.end(self.body(x))


def positions(n=1024):
    x = torch.randn(n, 4, 2, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x[..., 0] > 0).long())  # a class per position: targets (n, 4)


class PerPosition(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(2, 3)

    def forward(self, x):
        return self.head(x)  # (B, 4, 3): the classes last, as a sequence model gives them


def float_column(n=1024):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x[:, :1] > 0).float())


def words(n=1024):
    return [(f"sample {i}", i % 2) for i in range(n)]  # text not yet tokenized


def named_labels(n=1024):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return [(x[i], "cat" if x[i, 0] > 0 else "dog") for i in range(n)]


def images(n=1024, layout="nchw"):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x = {"nchw": x, "nhwc": x.permute(0, 2, 3, 1), "nhw": x[:, 0]}[layout]
    return TensorDataset(x, (x.mean(dim=(1, 2, 3) if layout == "nchw" else (1, 2)) > 0.5).long().view(-1))


class Pair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(4, 2)

    def forward(self, a, b):  # two inputs, as two arguments
        return self.head(torch.cat([a, b], dim=1))


def pairs(n=1024, nested=True):
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    a, b, y = x[:, :2], x[:, 2:], (x[:, 0] > x[:, 2]).long()
    return [((a[i], b[i]), y[i]) for i in range(n)] if nested else TensorDataset(a, b, y)


def tokenized(n=1024):
    ids = torch.randint(0, 10, (n, 4), generator=torch.Generator().manual_seed(0))
    return [({"input_ids": ids[i], "attention_mask": torch.ones(4, dtype=torch.long)}, int(ids[i, 0] % 2))
            for i in range(n)]


def conv():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 2))


def dense():
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def arrays(n=1024, short=0, form="tuple"):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    x, y = x.double().numpy(), (x[:, 0] > 0).long()[: n - short]  # numpy's float64, as a script loads it
    if form == "split":  # sklearn's train_test_split
        return [x[:800], x[800:], y[:800], y[800:]]
    return [x, y] if form == "list" else (x, y)


def splits(n=1024, form="tuple"):  # the training and validation data together
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    train, val = TensorDataset(x[:800], y[:800]), TensorDataset(x[800:], y[800:])
    if form == "loaders":
        return torch.utils.data.DataLoader(train, batch_size=64), torch.utils.data.DataLoader(val, batch_size=64)
    return {"train": train, "val": val} if form == "dict" else (train, val)


def graph_features(n=1024):  # features from a model, computed without torch.no_grad()
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return TensorDataset(torch.nn.Linear(2, 2)(x), (x[:, 0] > 0).long())


def float_labels(n=1024):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x[:, 0] > 0).float())  # class indices, as floats
"""


def _bad_data_spec(
    tmp_path: Path,
    kwargs: str,
    *,
    data: str = "blobs_with",
    loss: str = "torch.nn.CrossEntropyLoss",
    model: str | None = None,
) -> Path:
    """The base spec on bad.py's `data`, in order (batch k holds samples 64k..64k+63), without the self-check; the
    tiny net has one output under an MSE loss, two otherwise, unless `model` names another."""
    (tmp_path / "bad.py").write_text(BAD_DATA_PY)
    body = BASE_SPEC.replace("task.py:blobs, kwargs: {n: 1024}", f"bad.py:{data}, kwargs: {kwargs}")
    body = body.replace("batch_size: 64", "batch_size: 64\n  shuffle: false").replace(
        "torch.nn.CrossEntropyLoss", loss
    )
    net = model or "task.py:Net, kwargs: {hidden: 16, classes: " + ("1}" if "MSE" in loss else "2}")
    return write_spec(
        tmp_path, body.replace("task.py:Net, kwargs: {hidden: 16}", net) + "verify_bounds: false\n"
    )


# Bad data and setups that the first steps reveal, on bad.py's data in order (batch k: samples 64k..64k+63):
# (id, _bad_data_spec's arguments, exit code, what the error line holds). Exit 2 measured nothing and wrote
# nothing; exit 1 saved the steps before the failure.
BAD_DATA_CASES = [
    ("nan target", {"kwargs": "{bad_target: 0}", "loss": "torch.nn.MSELoss"}, 2, [
        "error: spec.yaml: data.train 'bad.py:blobs_with': a batch holds non-finite values (targets Tensor[64, 1] "
        "float32: 1 NaN), and training on it made the loss nan (fill or drop the missing (NaN) and infinite values "
        "in the data: a training run fails on them the same way, at any LR)"]),
    # The tiny net's tanh turns an inf input into a finite loss; its weight's gradient is not finite, so the next
    # step's loss is NaN on a clean batch, and the batch before it is the one named.
    ("inf seen by the gradients", {"kwargs": "{bad_input: 7, value: inf}"}, 1, [
        "error: spec.yaml: data.train 'bad.py:blobs_with': a batch holds non-finite values (inputs Tensor[64, 2] "
        "float32: 1 inf), and training on it made the loss nan (at step 1); partial results saved to "]),
    ("log of 0", {"kwargs": "{}", "loss": "bad.py:ZeroLog"}, 2, [
        "error: spec.yaml: loss.target 'bad.py:ZeroLog' returned a loss of -inf on the first batch, at the initial "
        "weights, before any optimizer step (no LR can cause that: check the loss on one batch for a log of 0 or a "
        "division by zero, and the model's initialisation)"]),
    ("nan weights", {"kwargs": "{}", "model": "bad.py:Uninitialised"}, 2, [
        "error: spec.yaml: model.target 'bad.py:Uninitialised': its initial weights hold NaN or inf (weight), and "
        "the first loss is nan (initialise every parameter (a layer built with torch.empty needs an init), or start "
        "from a checkpoint saved before the loss blew up)"]),
    ("label past the classes mid-run", {"kwargs": "{label: 200}"}, 1, [
        "error: data.train 'bad.py:blobs_with' raised IndexError at step 3: Target 2 is out of bounds",
        "(a label past the classes the model scores: labels run from 0 to the number of classes - 1 (relabel the "
        "data, or give the model's last layer more outputs))"]),
    ("labels from 1", {"kwargs": "{start: 1}", "data": "labels_from"}, 2, [
        "with targets Tensor[64] int64: IndexError: Target 2 is out of bounds.", "(the labels run from 1 to 2: "
        "subtract 1 in the data (y - 1), so that they run from 0 to 1)"]),
    ("a label of -1", {"kwargs": "{negative: 5}", "data": "labels_from"}, 2, [
        "IndexError: Target -1 is out of bounds. (a label of -1: labels run from 0 to 1; if -1 marks samples without "
        "a label, set the loss's ignore_index to it (ignore_index: -1 under loss.kwargs; "
        "CrossEntropyLoss(ignore_index=-1)))"]),
    ("float64 inputs", {"kwargs": "{dtype: float64}", "model": "task.py:Net"}, 2, [
        "error: spec.yaml: model.target 'task.py:Net': the model failed on inputs Tensor[64, 2] float64, its "
        "weights being float32", "(make the inputs float32 in data.train 'bad.py:blobs_with' (torch.as_tensor(x, "
        "dtype=torch.float32); numpy arrays are float64 unless told otherwise), or the model float64 "
        "(model.to(torch.float64)))"]),
    ("integer inputs", {"kwargs": "{dtype: int64}", "model": "task.py:Net"}, 2, [
        "on inputs Tensor[64, 2] int64, its weights being float32", "(make the inputs float32 in data.train "
        "'bad.py:blobs_with' (torch.as_tensor(x, dtype=torch.float32)))"]),
    ("float ids", {"kwargs": "{}", "model": "bad.py:Bag"}, 2, [
        "on inputs Tensor[64, 2] float32: RuntimeError: Expected tensor for argument #1 'indices'", "(an embedding "
        "looks its inputs up as token ids, which must be integers: make the inputs of data.train "
        "'bad.py:blobs_with' torch.long)"]),
    ("targets broadcast", {"kwargs": "{}", "data": "flat_targets", "loss": "torch.nn.MSELoss"}, 2, [
        "error: spec.yaml: loss.target 'torch.nn.MSELoss' was given targets of shape [64] for a model output of "
        "shape [64, 1], and broadcast them into a [64, 64] loss: every sample against every target (torch warns: "
        "'likely incorrect results') (give the targets the output's shape in data.train 'bad.py:flat_targets' "
        "(y.view(-1, 1) or y.unsqueeze(1)), or squeeze the output)"]),
    ("labels as a column", {"kwargs": "{}", "data": "column_labels"}, 2, [
        "error: spec.yaml: loss.target 'torch.nn.CrossEntropyLoss': the loss rejected model output Tensor[64, 2] "
        "float32 with targets Tensor[64, 1] int64: ", "(class indices go as one label per sample, shape (B,): "
        "squeeze the targets' last axis in data.train 'bad.py:column_labels' (y.squeeze(1), or a label per item "
        "rather than a 1-element tensor))"]),
    ("integer targets for BCE", {"kwargs": "{}", "data": "int_multilabel", "loss": "torch.nn.BCEWithLogitsLoss"}, 2, [
        "with targets Tensor[64, 2] int64: RuntimeError: result type Float can't be cast", "(this loss computes with "
        "the targets as numbers, like the output: make the targets of data.train 'bad.py:int_multilabel' float "
        "(y.float(); 0.0/1.0 labels for a BCE loss))"]),
    ("NLL of raw scores", {"kwargs": "{}", "loss": "torch.nn.NLLLoss", "model": "bad.py:Scores"}, 2, [
        "error: spec.yaml: loss.target 'torch.nn.NLLLoss' takes log-probabilities, and the model's outputs Tensor[64, "
        "2] float32 are not: exp of each sample's outputs sums to ", "over the classes, not 1, so the loss can fall "
        "without end as they grow (end the model with torch.nn.LogSoftmax(dim=1), or give its raw scores to "
        "torch.nn.CrossEntropyLoss, which takes the log_softmax itself)"]),
    ("NLL of probabilities", {"kwargs": "{}", "loss": "torch.nn.functional.nll_loss",
                              "model": "bad.py:Scores, kwargs: {end: softmax}"}, 2, [
        "error: spec.yaml: loss.target 'torch.nn.functional.nll_loss' takes log-probabilities, and the model's "
        "outputs Tensor[64, 2] float32 are not: they are probabilities (each sample's sum to 1), as from a softmax "
        "(end the model with torch.nn.LogSoftmax(dim=1) instead of its softmax, or give"]),
    ("cross-entropy of probabilities", {"kwargs": "{}", "model": "bad.py:Scores, kwargs: {end: softmax, outputs: 4}"},
     2, ["error: spec.yaml: loss.target 'torch.nn.CrossEntropyLoss' takes the log_softmax of the model's outputs "
         "itself, and they are probabilities already (Tensor[64, 4] float32, each sample's summing to 1, as from a "
         "softmax): the second softmax flattens the gradients, and the loss cannot fall below 0.744 (drop the model's "
         "final softmax and give the loss raw scores (logits); take a softmax where probabilities are read)"]),
    ("classes last in a sequence", {"kwargs": "{}", "data": "positions", "model": "bad.py:PerPosition"}, 2, [
        "with targets Tensor[64, 4] int64: RuntimeError: Expected target size [64, 3], got [64, 4] (cross-entropy "
        "reads the classes from dim 1, (B, C, T), and the model gives them last, (B, T, C): add `step: {target: "
        "file.py:fn}` with fn(model, batch, loss_fn) that returns loss_fn(model(x).transpose(1, 2), y) (or "
        "loss_fn(out.flatten(0, 1), y.flatten())))"]),
    ("BCE of raw scores", {"kwargs": "{}", "data": "float_column", "loss": "torch.nn.BCELoss",
                           "model": "bad.py:Scores, kwargs: {outputs: 1}"}, 2, [
        "RuntimeError: all elements of input should be between 0 and 1 (BCELoss takes probabilities, and the "
        "model's outputs left [0, 1]: end the model with a sigmoid, or give its raw scores to "
        "torch.nn.BCEWithLogitsLoss (the same loss, numerically safer))"]),
    ("a column of outputs, a row of targets", {"kwargs": "{}", "loss": "torch.nn.BCEWithLogitsLoss",
                                               "model": "bad.py:Scores, kwargs: {outputs: 1}"}, 2, [
        "with targets Tensor[64] int64: ValueError: Target size (torch.Size([64])) must be the same as input size "
        "(torch.Size([64, 1])) (the model gives one value per sample as a column, (B, 1), and the targets are (B,): "
        "give the targets the output's shape in data.train 'bad.py:blobs_with' (y.float().unsqueeze(1)))"]),
    ("text not tokenized", {"kwargs": "{}", "data": "words", "model": "bad.py:Bag"}, 2, [
        "error: spec.yaml: model.target 'bad.py:Bag': the model failed on inputs (64 x str): ", "(the samples of "
        "data.train 'bad.py:words' are not tensors: turn each into one in the dataset (text into token ids with a "
        "tokenizer, an image with torchvision.transforms.ToTensor()), or add `step: {target: file.py:fn}` with "
        "fn(model, batch, loss_fn) that does)"]),
    ("two inputs, then the targets", {"kwargs": "{nested: false}", "data": "pairs", "model": "bad.py:Pair"}, 2, [
        "error: spec.yaml: data.train 'bad.py:pairs': a batch is [Tensor[64, 2] float32, Tensor[64, 2] float32, "
        "Tensor[64] int64], not an (inputs, targets) pair (for a model of several inputs, add `step: {target: "
        "file.py:fn}` with fn(model, batch, loss_fn) that returns loss_fn(model(*batch[:-1]), batch[-1]))"]),
    ("two inputs for two arguments", {"kwargs": "{}", "data": "pairs", "model": "bad.py:Pair"}, 2, [
        "on inputs [Tensor[64, 2] float32, Tensor[64, 2] float32]: TypeError: ", "(the inputs are several tensors, "
        "and the default step passes them as one argument, model(inputs): add `step: {target: file.py:fn}` with "
        "fn(model, batch, loss_fn) that returns loss_fn(model(*inputs), targets))"]),
    ("a dict of inputs", {"kwargs": "{}", "data": "tokenized", "model": "bad.py:Bag"}, 2, [
        "on inputs {input_ids: Tensor[64, 4] int64, attention_mask: Tensor[64, 4] int64}: ", "(the inputs are a dict, "
        "and the default step passes it as one argument, model(inputs): add `step: {target: file.py:fn}` with "
        "fn(model, batch, loss_fn) that returns loss_fn(model(**inputs), targets))"]),
    ("labels as names", {"kwargs": "{}", "data": "named_labels"}, 2, [
        "with targets (64 x str): TypeError: ", "(the labels of data.train 'bad.py:named_labels' are not tensors: "
        "map each to its class index, 0 to the number of classes - 1, in the dataset (e.g. {'cat': 0, 'dog': "
        "1}[label]))"]),
    ("images channels last", {"kwargs": "{layout: nhwc}", "data": "images", "model": "bad.py:conv"}, 2, [
        "on inputs Tensor[64, 8, 8, 1] float32: RuntimeError: ", "(the images are channels last, (B, H, W, C), as "
        "numpy and PIL hold them, and torch's convolutions read (B, C, H, W): permute each image in data.train "
        "'bad.py:images' (torch.as_tensor(img).permute(2, 0, 1), or torchvision.transforms.ToTensor()))"]),
    ("images without a channel axis", {"kwargs": "{layout: nhw}", "data": "images", "model": "bad.py:conv"}, 2, [
        "on inputs Tensor[64, 8, 8] float32: RuntimeError: ", "(the images have no channel axis, (B, H, W), and a "
        "2-D convolution reads (B, C, H, W) (it took the batch for one image's channels): add the axis in "
        "data.train 'bad.py:images' (img.unsqueeze(0) on each image))"]),
    ("images into a Linear layer", {"kwargs": "{}", "data": "images", "model": "bad.py:dense"}, 2, [
        "on inputs Tensor[64, 1, 8, 8] float32: RuntimeError: mat1 and mat2 shapes cannot be multiplied", "(a Linear "
        "layer takes each sample flattened: put torch.nn.Flatten() before it in the model, or flatten each sample in "
        "data.train 'bad.py:images' (x.flatten()))"]),
    ("arrays of unequal length", {"kwargs": "{short: 3}", "data": "arrays"}, 2, [
        "error: spec.yaml: data.train returned arrays of 1024 and 1021 rows, read as (inputs, targets) by row "
        "(return arrays with one row per sample each, of the same length)"]),
    ("train_test_split's four arrays", {"kwargs": "{form: split}", "data": "arrays"}, 2, [
        "error: spec.yaml: data.train returned arrays of 800 and 224 and 800 and 224 rows, read as (inputs, targets) "
        "by row (these look like train_test_split's (X_train, X_test, y_train, y_test): return (X_train, y_train) "
        "here and (X_test, y_test) from data.val)"]),
    ("the splits together", {"kwargs": "{}", "data": "splits"}, 2, [
        "error: spec.yaml: data.train returned 2 datasets together, where one goes (return one split here (a kwarg "
        "can pick which); the validation split goes to data.val)"]),
    ("the splits' loaders together", {"kwargs": "{form: loaders}", "data": "splits"}, 2, [
        "data.train returned 2 DataLoaders together, where one goes"]),
    ("the splits by name", {"kwargs": "{form: dict}", "data": "splits"}, 2, [
        "data.train returned 2 datasets (train, val) together, where one goes"]),
    ("data with an autograd graph", {"kwargs": "{}", "data": "graph_features"}, 2, [
        "error: spec.yaml: data.train 'bad.py:graph_features': the batches carry an autograd graph (inputs "
        "Tensor[64, 2] float32 require grad): ", "(make the data without a graph in data.train "
        "'bad.py:graph_features': compute it under torch.no_grad(), or .detach() the tensors)"]),
    ("class indices as floats", {"kwargs": "{}", "data": "float_labels"}, 2, [
        "with targets Tensor[64] float32: RuntimeError: ", "(the targets are one "
        "class index per sample, stored as floats: make them integers in data.train 'bad.py:float_labels' "
        "(y.long()))"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("loss", "model"),
    [
        ("torch.nn.NLLLoss", "bad.py:Scores, kwargs: {end: log_softmax}"),
        (
            "torch.nn.CrossEntropyLoss",
            "bad.py:Scores, kwargs: {end: log_softmax}",
        ),  # log_softmax twice: the same
        ("torch.nn.CrossEntropyLoss", "bad.py:Scores"),
    ],
)
def test_class_scores_of_the_right_kind_run(tmp_path: Path, loss: str, model: str) -> None:
    _cli_runs(tmp_path, _bad_data_spec(tmp_path, "{}", loss=loss, model=model))


@pytest.mark.parametrize("form", ["tuple", "list"])
def test_a_tuple_of_arrays_is_read_by_row(tmp_path: Path, form: str) -> None:
    import json

    # The inputs are numpy's float64, the model's weights float32: they are read as float32.
    _cli_runs(tmp_path, _bad_data_spec(tmp_path, f"{{form: {form}}}", data="arrays"))
    saved = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert (
        saved["steps_per_epoch"] == 16 and saved["bounds"]["max_lr"] is not None
    )  # 1024 rows, batches of 64


@pytest.mark.parametrize(
    ("args", "exit_code", "needles"), [c[1:] for c in BAD_DATA_CASES], ids=[c[0] for c in BAD_DATA_CASES]
)
def test_bad_data_and_setups_through_the_cli(
    tmp_path: Path, args: dict[str, str], exit_code: int, needles: list[str]
) -> None:
    line = _cli_error(tmp_path, _bad_data_spec(tmp_path, **args), exit_code)
    for needle in needles:
        assert needle in line
    assert (tmp_path / "run" / "range_test.json").exists() == (exit_code == 1)


def test_a_nan_in_the_data_mid_run_is_named_as_the_datas_not_the_lrs(tmp_path: Path) -> None:
    import json

    # Sample 323 is in batch 5: at a small LR of a rising ladder the loss turns NaN there, and only there.
    spec = _bad_data_spec(tmp_path, "{bad_input: 323}")
    line = _cli_error(tmp_path, spec, 1)
    assert line.startswith(
        "error: spec.yaml: data.train 'bad.py:blobs_with': a batch holds non-finite values (inputs Tensor[64, 2] "
        "float32: 1 NaN), and training on it made the loss nan (at step 5); partial results saved to "
    )
    assert line.endswith("(fill or drop the missing (NaN) and infinite values in the data: a training run fails on "
                         "them the same way, at any LR)")  # fmt: skip
    saved = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert saved["stop_reason"] == "error" and len(saved["losses"]) == 5  # the steps before it, all finite
    assert all(isinstance(v, float) for v in saved["losses"])


def test_a_library_loader_with_a_nan_mid_run_is_named() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import clrfind
    from clrfind.errors import RunError

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(256, 2)
    y = (x[:, 0] > 0).long()
    x[100, 0] = float("nan")  # batch 3 of 32
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RunError) as caught:
        clrfind.range_test(model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=1e-4, max_lr=1e-2,
                           steps=20, verify_bounds=False)  # fmt: skip
    assert str(caught.value).startswith(
        "train_loader: a batch holds non-finite values (inputs Tensor[32, 2] float32: 1 NaN), and training on it made "
        "the loss nan (at step 3)"
    )
    assert caught.value.hint is not None and caught.value.hint.startswith("fill or drop the missing (NaN)")


def test_the_first_steps_other_warnings_are_passed_on(tmp_path: Path) -> None:
    # (64, 1) outputs against (64, 3) targets broadcast within the targets' own shape: torch's warning is passed
    # on as it came, with the model's own, and the run goes on.
    spec = _bad_data_spec(
        tmp_path, "{width: 3}", data="flat_targets", loss="torch.nn.MSELoss", model="bad.py:Warns"
    )
    with pytest.warns(UserWarning) as record:
        _cli_runs(tmp_path, spec)
    texts = [str(w.message) for w in record]
    assert "the model's own warning" in texts
    assert any(t.startswith("Using a target size (torch.Size([64, 3]))") for t in texts)


def test_unshuffled_data_sorted_by_class_is_refused(tmp_path: Path) -> None:
    # Before: 'diverged at lr 3e-05 ... the range starts too high: lower the start 10x' (each batch one class).
    spec = _bad_data_spec(tmp_path, "{}", data="by_class")
    line = _cli_error(tmp_path, spec, 2)
    assert line.startswith(
        "error: spec.yaml: data.train 'bad.py:by_class': the loader does not shuffle, and the data looks sorted by "
        "class: its first batch (64 samples) is all class 0, and further on it holds others (sample 512: class 1, "
    )
    assert line.endswith("(set data.shuffle: true: unshuffled, each batch is one class, and the curve follows the "
                         "classes, not the LR)")  # fmt: skip
    spec.write_text(spec.read_text().replace("shuffle: false", "shuffle: true"))
    _cli_runs(tmp_path, spec)


@pytest.mark.parametrize(
    "kwargs", ["{sort: false}", "{sort: false, majority: 0.97}"], ids=["mixed", "imbalanced"]
)
def test_unshuffled_data_in_no_order_runs(tmp_path: Path, kwargs: str) -> None:
    _cli_runs(tmp_path, _bad_data_spec(tmp_path, kwargs, data="by_class"))


def test_a_library_loader_over_sorted_classes_is_told_to_shuffle() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import clrfind
    from clrfind.errors import SetupError

    y = torch.arange(4).repeat_interleave(128)
    model = torch.nn.Linear(2, 4)
    loader = DataLoader(TensorDataset(torch.randn(512, 2), y), batch_size=32)
    with pytest.raises(SetupError, match=r"^train_loader: the loader does not shuffle") as caught:
        clrfind.range_test(model, loader, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters()),
                           min_lr=1e-3, max_lr=1.0, steps=10)  # fmt: skip
    assert caught.value.hint is not None and caught.value.hint.startswith(
        "pass a DataLoader with shuffle=True"
    )


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"module." + k: v for k, v in sd.items()},  # DataParallel / DDP
        lambda sd: {"_orig_mod." + k: v for k, v in sd.items()},  # torch.compile
        lambda sd: {"model": sd, "epoch": 3},  # a training script's dict
        lambda sd: {"state_dict": {"model." + k: v for k, v in sd.items()}, "epoch": 3},  # Lightning
    ],
    ids=["plain", "ddp", "compiled", "nested", "lightning"],
)
def test_a_checkpoint_is_read_as_training_code_saves_it(tmp_path: Path, wrap) -> None:
    import torch

    from clrfind.build import load_checkpoint

    torch.manual_seed(0)
    saved = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.save(wrap(saved.state_dict()), tmp_path / "w.pt")
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    load_checkpoint(model, tmp_path / "w.pt", source="spec.yaml")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), saved.state_dict().values(), strict=True)
    )


def test_a_checkpoint_that_fits_no_reading_is_refused_with_its_own_keys(tmp_path: Path) -> None:
    import torch

    from clrfind.build import load_checkpoint
    from clrfind.errors import SetupError

    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.save({"state_dict": {"model.0.weight": torch.zeros(4, 2)}, "epoch": 3}, tmp_path / "w.pt")
    with pytest.raises(SetupError) as caught:
        load_checkpoint(model, tmp_path / "w.pt", source="spec.yaml")
    assert str(caught.value).startswith(
        f"spec.yaml: model.checkpoint: {tmp_path / 'w.pt'} does not fit the model: 4 missing keys (0.weight, "
        "0.bias, 2.weight, ...); 1 unexpected keys (model.0.weight)"
    )
    assert (
        caught.value.hint is not None
        and "with every key behind one of module., _orig_mod., model." in caught.value.hint
    )


@pytest.mark.parametrize("loss", ["torch.nn.CrossEntropyLoss", "torch.nn.functional.cross_entropy"])
def test_a_list_where_the_loss_takes_a_tensor_is_made_one(tmp_path: Path, loss: str) -> None:
    import torch

    from clrfind.build import build_components
    from clrfind.spec import load_spec

    body = BASE_SPEC.replace("loss: {target: torch.nn.CrossEntropyLoss}", f"loss: {{target: {loss}, kwargs: "
                             "{weight: [1, 3], label_smoothing: 0.1}}")  # fmt: skip
    loss_fn = build_components(load_spec(write_spec(tmp_path, body)), device=torch.device("cpu")).loss_fn
    weight = loss_fn.weight if isinstance(loss_fn, torch.nn.Module) else loss_fn.keywords["weight"]
    assert weight.dtype == torch.float32 and weight.tolist() == [1.0, 3.0]
    out, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    expected = torch.nn.functional.cross_entropy(out, y, weight=torch.tensor([1.0, 3.0]), label_smoothing=0.1)
    assert torch.equal(loss_fn(out, y), expected)


def test_bce_of_scores_that_leave_0_1_mid_run_gets_the_fix() -> None:
    from clrfind.api import _error_hint
    from clrfind.faults import BCE_SCORES, library_terms

    exc = RuntimeError("all elements of input should be between 0 and 1")
    assert _error_hint(exc, library_terms(step_fn=False), drop_last="") == BCE_SCORES


BUILT_PY = """
import torch
from torch.utils.data import DataLoader, TensorDataset

net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))  # unseeded, at import
loss = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
x = torch.randn(1024, 2)
loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=32, shuffle=True)
"""


def test_a_model_and_a_loss_built_at_a_files_top_level_are_used_as_they_are(tmp_path: Path) -> None:
    import json

    (tmp_path / "built.py").write_text(BUILT_PY)
    body = BASE_SPEC.replace("task.py:Net, kwargs: {hidden: 16}", "built.py:net").replace(
        "torch.nn.CrossEntropyLoss", "built.py:loss"
    )
    spec = write_spec(tmp_path, body + "verify_bounds: false\n")
    losses = []
    for _ in range(2):  # the file is imported after the spec's seed: the same weights, the same curve
        _cli_runs(tmp_path, spec)
        losses.append(json.loads((tmp_path / "run" / "range_test.json").read_text())["losses"])
    assert losses[0] == losses[1] and len(losses[0]) > 10
    line = _cli_error(
        tmp_path, write_spec(tmp_path, body.replace("built.py:net", "built.py:net, kwargs: {a: 1}")), 2
    )
    assert line == ("error: spec.yaml: model.target is a Sequential built already, so it takes no kwargs (point "
                    "model.target at its class or at a function that builds it, or drop the kwargs)")  # fmt: skip


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ("batch_size: 64", "data.batch_size is 64, the loader's 32"),
        ("batch_size: 32\n  shuffle: false\n  drop_last: true", "data.shuffle is False, the loader's True; "
         "data.drop_last is True, the loader's False"),
        ("batch_size: 32", None),  # what the loader does: nothing to contradict
    ],
)  # fmt: skip
def test_a_dataloader_target_contradicted_by_the_specs_data_keys_is_refused(
    tmp_path: Path, keys: str, error: str | None
) -> None:
    (tmp_path / "built.py").write_text(BUILT_PY)
    body = BASE_SPEC.replace("task.py:blobs, kwargs: {n: 1024}", "built.py:loader").replace(
        "batch_size: 64", keys
    )
    spec = write_spec(tmp_path, body + "verify_bounds: false\n")
    if error is None:
        _cli_runs(tmp_path, spec)
        return
    line = _cli_error(tmp_path, spec, 2)
    assert line == (f"error: spec.yaml: data.train is a DataLoader, which makes its own batches, and the spec's data "
                    f"keys say otherwise: {error} (drop those keys (the loader's settings train), or make the target "
                    "return a Dataset, which the spec's keys then batch)")  # fmt: skip


STEPS_PY = """
def pair(model, batch, loss_fn):
    out = model(batch[0])
    return loss_fn(out, batch[1]), out


def outputs(model, batch, loss_fn):
    return {"loss": loss_fn(model(batch[0]), batch[1])}


def nothing(model, batch, loss_fn):
    loss_fn(model(batch[0]), batch[1])


def backward_too(model, batch, loss_fn):  # as the training loop it came from did
    loss = loss_fn(model(batch[0]), batch[1])
    loss.backward()
    return loss
"""


def test_a_spec_with_dataloader_workers_runs_the_test_and_the_self_check(tmp_path: Path) -> None:
    import json

    # Workers persist between passes; each loop stops them, and the next trial's pass used to find them gone.
    _cli_runs(
        tmp_path,
        write_spec(tmp_path, BASE_SPEC.replace("batch_size: 64", "batch_size: 64\n  num_workers: 2")),
    )
    saved = json.loads((tmp_path / "run" / "range_test.json").read_text())
    assert saved["verification"]["trials"] and saved["bounds"]["max_lr"] is not None


STREAMS_PY = """
import torch


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, sharded=False):
        self.sharded = sharded

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info and self.sharded else (0, 1)
        g = torch.Generator().manual_seed(0)
        for i in range(2048):
            x = torch.randn(2, generator=g)
            if i % workers == worker:
                yield x, int(x[0] > 0)
"""


@pytest.mark.parametrize("sharded", [False, True])
def test_a_stream_that_every_worker_reads_whole_is_refused(tmp_path: Path, sharded: bool) -> None:
    (tmp_path / "streams.py").write_text(STREAMS_PY)
    spec = BASE_SPEC.replace(
        "task.py:blobs, kwargs: {n: 1024}", f"streams.py:Stream, kwargs: {{sharded: {sharded}}}"
    )
    spec = write_spec(tmp_path, spec.replace("batch_size: 64", "batch_size: 64\n  num_workers: 2"))
    if sharded:  # split by get_worker_info(): each sample once a pass
        _cli_runs(tmp_path, spec)
        return
    assert _cli_error(tmp_path, spec, 2) == (
        "error: spec.yaml: data.train: its IterableDataset gives every DataLoader worker the whole stream: the first "
        "two batches, from workers 0 and 1, are the same, so with num_workers=2 each sample comes 2 times a pass "
        "(split the stream in its __iter__ by torch.utils.data.get_worker_info() (id, num_workers), or set "
        "data.num_workers to 0 or 1)"
    )


def test_a_ready_loader_whose_workers_each_read_the_whole_stream_is_refused(
    tmp_path: Path, monkeypatch
) -> None:
    """The same stream handed over as a DataLoader with two workers: as a spec's data.train target and to the
    library, refused before the first step; a sharded stream trains."""
    import importlib

    import torch

    import clrfind
    from clrfind.errors import SetupError

    (tmp_path / "streams.py").write_text(
        STREAMS_PY
        + "\n\ndef loader(sharded=False):\n    return torch.utils.data.DataLoader(Stream(sharded), "
        "batch_size=64, num_workers=2)\n"
    )
    spec = BASE_SPEC.replace("task.py:blobs, kwargs: {n: 1024}", "streams.py:loader")
    line = _cli_error(tmp_path, write_spec(tmp_path, spec), 2)
    assert line.startswith(
        "error: spec.yaml: data.train: its IterableDataset gives every DataLoader worker the whole stream: the first "
        "two batches, from workers 0 and 1, are the same, so with num_workers=2 each sample comes 2 times a pass"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    streams = importlib.import_module("streams")
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SetupError, match=r"^train_loader: its IterableDataset gives every DataLoader worker"):
        clrfind.range_test(model, streams.loader(), torch.nn.CrossEntropyLoss(), optimizer, steps=20)
    result = clrfind.range_test(
        model,
        streams.loader(sharded=True),
        torch.nn.CrossEntropyLoss(),
        optimizer,
        steps=20,
        verify_bounds=False,
    )
    assert result.steps_run > 0


def test_a_bad_argument_value_is_shown_with_the_target_as_written(tmp_path: Path) -> None:
    """A value the callee rejects from inside (torch's `momentum < 0.0` check on a string) is named by the target as
    the spec writes it, and the call's arguments are shown, since the traceback points into torch."""
    spec = BASE_SPEC.replace("kwargs: {momentum: 0.9}", "kwargs: {momentum: fast}")
    line = _cli_error(tmp_path, write_spec(tmp_path, spec), 2)
    assert line.startswith("error: spec.yaml: optimizer.target 'torch.optim.SGD' raised TypeError: ")
    assert "(it was called with {" in line and "'momentum': 'fast'" in line


def test_a_step_that_computes_the_loss_itself_may_take_no_loss_fn(tmp_path: Path) -> None:
    import json

    (tmp_path / "steps.py").write_text(
        "import torch.nn.functional as F\n\ndef own(model, batch):\n    return F.cross_entropy(model(batch[0]), "
        "batch[1])\n"
    )
    spec = BASE_SPEC.replace("loss: {target: torch.nn.CrossEntropyLoss}\n", "step: {target: steps.py:own}\n")
    _cli_runs(tmp_path, write_spec(tmp_path, spec))
    assert json.loads((tmp_path / "run" / "range_test.json").read_text())["bounds"]["max_lr"] is not None
    # With a loss: as well, the loss would go unused: refused before anything runs.
    line = _cli_error(tmp_path, write_spec(tmp_path, spec + "loss: {target: torch.nn.CrossEntropyLoss}\n"), 2)
    assert line == (
        "error: spec.yaml: step.target: 'steps.py:own' takes (model, batch), no loss_fn, so the spec's loss: would "
        "go unused: remove loss:, or give the step a third argument, loss_fn, and use it"
    )


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("pair", "returned tuple, not a loss tensor (return the loss alone, a scalar tensor (`return loss`, not "
                 "`return loss, logits` or a dict))"),
        ("outputs", "returned dict, not a loss tensor (return its loss alone, a scalar tensor (`return "
                    "out['loss']`; `out.loss` for a ModelOutput))"),
        ("nothing", "returned NoneType, not a loss tensor (it returns nothing: end it with `return loss`)"),
        ("backward_too", "called backward() on the loss itself, and the range test calls it on the loss the step "
                         "returns (torch: 'Trying to backward through the graph a second time') (return the loss "
                         "without calling backward() or optimizer.step(): the test does both, once per step, at its "
                         "own LR)"),
    ],
)  # fmt: skip
def test_a_step_that_does_not_hand_back_the_loss_is_told_how(tmp_path: Path, step: str, message: str) -> None:
    (tmp_path / "steps.py").write_text(STEPS_PY)
    spec = write_spec(tmp_path, BASE_SPEC + f"step: {{target: steps.py:{step}}}\n")
    line = _cli_error(tmp_path, spec, 2)
    assert line == f"error: spec.yaml: step.target 'steps.py:{step}' {message}"
    assert not (tmp_path / "run" / "range_test.json").exists()  # nothing was measured, nothing written


def test_a_failure_before_the_first_step_is_recorded_saves_no_empty_results(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, BASE_SPEC.replace("torch.optim.SGD, kwargs: {momentum: 0.9}", "torch.optim.SparseAdam")
    )
    line = _cli_error(tmp_path, spec, 1)
    assert line.startswith("error: optimizer.target 'torch.optim.SparseAdam' raised RuntimeError at step 0: SparseAdam "
                           "does not support dense gradients")  # fmt: skip
    assert "; nothing was measured, so nothing was saved (" in line
    assert not (tmp_path / "run" / "range_test.json").exists()
