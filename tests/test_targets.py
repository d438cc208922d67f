"""Target resolution, signature checks and instantiation: every failure is one TargetError/SetupError line."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch

from clrfind.errors import SetupError, TargetError
from clrfind.spec import load_spec
from clrfind.targets import USER_PACKAGE, check_call, instantiate, resolve_target, validate_spec_targets

HELPERS_PY = "WIDTH = 7\n\n\ndef lazy_value():\n    return 41\n"

MODELS_PY = """
import torch

import helpers


class SmallCNN(torch.nn.Module):
    def __init__(self, num_classes, width=helpers.WIDTH):
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.fc = torch.nn.Linear(width, num_classes)

    class Head:
        def __init__(self, dim=4):
            self.dim = dim


def build(*, depth, **extra):
    return depth, extra


def positional_only(a, /, b=1):
    return a, b


def uses_lazy_import():
    from helpers import lazy_value

    return lazy_value() + 1


def lm_step(model, batch, loss_fn):
    return loss_fn(model(batch[0]), batch[1])


def no_lr_optimizer(params, momentum=0.0):
    return params


def two_arg_step(model, batch):
    return batch


NOT_CALLABLE = 3
"""

DATA_PY = """
import torch
from torch.utils.data import TensorDataset


def train_set(n=32):
    return TensorDataset(torch.randn(n, 7), torch.randint(0, 3, (n,)))


READY = TensorDataset(torch.randn(8, 7), torch.randint(0, 3, (8,)))
"""


@pytest.fixture(autouse=True)
def _isolated_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Restore sys.path afterwards and forget modules imported from this test's folder (e.g. its `helpers`)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text(HELPERS_PY)
    (tmp_path / "models.py").write_text(MODELS_PY)
    (tmp_path / "data.py").write_text(DATA_PY)
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "sub" / "deep" / "nets.py").write_text("class Tiny:\n    pass\n")
    (tmp_path / "broken.py").write_text("x = 1\ny = 1 / 0\n")
    (tmp_path / "syntax.py").write_text("def f(:\n    pass\n")
    (tmp_path / "needs_dep.py").write_text("import numpyy_not_installed\n")
    (tmp_path / "folder.py").mkdir()
    # A name no other test can have made importable, for a dotted target meant as this file.
    (tmp_path / "beside_spec_only.py").write_text("class Block:\n    pass\n")
    return tmp_path


def resolve(target: str, base: Path, key: str = "model.target"):
    return resolve_target(target, base_dir=base, key=key, source="spec.yaml")


def assert_one_line(exc: Exception, *fragments: str, key: str = "model.target") -> None:
    message = str(exc)
    assert "\n" not in message
    assert message.startswith(f"spec.yaml: {key}"), message
    for fragment in fragments:
        assert fragment in message, message


# -- resolving -----------------------------------------------------------------------------------------------------


def test_file_target_relative_to_spec_folder_with_sibling_import(user_dir: Path) -> None:
    cls = resolve("models.py:SmallCNN", user_dir)
    assert cls.__name__ == "SmallCNN" and cls.__module__.startswith(f"{USER_PACKAGE}.models_")
    assert isinstance(cls(num_classes=3), torch.nn.Module)
    assert cls(num_classes=3).fc.in_features == 7  # the default came from the sibling helpers.py
    folder = str(user_dir.resolve())
    assert sys.path[0] != folder and folder in sys.path  # first only while importing; kept last afterwards
    assert resolve("models.py:uses_lazy_import", user_dir)() == 42  # an import inside a function still works


def test_each_spec_folder_gets_its_own_sibling_modules(user_dir: Path, tmp_path: Path) -> None:
    """Two spec folders with their own helpers.py: `import helpers` in each models.py gets the one beside it."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "helpers.py").write_text(HELPERS_PY.replace("WIDTH = 7", "WIDTH = 9"))
    (other / "models.py").write_text(MODELS_PY)
    first = resolve("models.py:SmallCNN", user_dir)
    second = resolve("models.py:SmallCNN", other)
    assert first(num_classes=2).fc.in_features == 7
    assert second(num_classes=2).fc.in_features == 9  # not the helpers the first folder left in sys.modules
    assert Path(sys.modules["helpers"].__file__).parent == user_dir.resolve()  # put back for the rest


def test_file_target_forms(user_dir: Path) -> None:
    assert resolve("sub/deep/nets.py:Tiny", user_dir).__name__ == "Tiny"
    absolute = str((user_dir / "sub" / "deep" / "nets.py").resolve())
    assert resolve(f"{absolute}:Tiny", Path("/")) is resolve("sub/deep/nets.py:Tiny", user_dir)
    head = resolve("models.py:SmallCNN.Head", user_dir)
    assert head.__qualname__ == "SmallCNN.Head" and head().dim == 4


def test_one_module_per_file(user_dir: Path) -> None:
    cls = resolve("models.py:SmallCNN", user_dir)
    build = resolve("models.py:build", user_dir)
    assert sys.modules[cls.__module__] is sys.modules[build.__module__]
    assert resolve("models.py:SmallCNN", user_dir) is cls
    # Instances of classes from file targets pickle (e.g. torch.save of a whole model).
    restored = pickle.loads(pickle.dumps(resolve("models.py:SmallCNN.Head", user_dir)(dim=9)))
    assert restored.dim == 9


def test_edited_file_is_imported_again(user_dir: Path) -> None:
    path = user_dir / "sub" / "deep" / "nets.py"
    first = resolve("sub/deep/nets.py:Tiny", user_dir)
    path.write_text("class Tiny:\n    edited = True\n")
    second = resolve("sub/deep/nets.py:Tiny", user_dir)
    assert second is not first and second.edited is True


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("torch.nn.CrossEntropyLoss", torch.nn.CrossEntropyLoss),
        ("torch.nn:CrossEntropyLoss", torch.nn.CrossEntropyLoss),
        ("torch.optim.SGD", torch.optim.SGD),
        ("torch.nn.modules.loss.MSELoss", torch.nn.MSELoss),
        ("collections.OrderedDict", __import__("collections").OrderedDict),
        ("os.path:join", __import__("os").path.join),
        ("  torch.optim:AdamW  ", torch.optim.AdamW),
    ],
)
def test_module_targets(tmp_path: Path, target: str, expected: object) -> None:
    assert resolve(target, tmp_path) is expected


def test_dotted_attr_and_unimported_submodule(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg_clrfind_t"
    (pkg / "inner").mkdir(parents=True)
    (pkg / "__init__.py").write_text("class Outer:\n    class inner:\n        pass\n")
    (pkg / "inner" / "__init__.py").write_text("")
    (pkg / "inner" / "leaf.py").write_text("def make():\n    return 'leaf'\n")
    sys.path.insert(0, str(tmp_path))
    assert resolve("pkg_clrfind_t:Outer.inner", tmp_path).__qualname__ == "Outer.inner"
    assert resolve("pkg_clrfind_t.Outer.inner", tmp_path).__qualname__ == "Outer.inner"
    # `inner.leaf` is never imported by the package itself: the walk imports it.
    assert resolve("pkg_clrfind_t:inner.leaf.make", tmp_path)() == "leaf"


def test_import_errors_are_told_apart(tmp_path: Path) -> None:
    pkg = tmp_path / "raises_clrfind_t"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('needs the cuda extension')\n")
    (tmp_path / "dep_clrfind_t.py").write_text("import numpyy_not_installed\n")
    sys.path.insert(0, str(tmp_path))
    with pytest.raises(TargetError) as info:
        resolve("raises_clrfind_t:Thing", tmp_path)
    assert_one_line(info.value, "importing 'raises_clrfind_t' raised ImportError: needs the cuda extension")
    assert "could not import" not in str(info.value)
    with pytest.raises(TargetError) as info:
        resolve("dep_clrfind_t.Thing", tmp_path)
    assert_one_line(
        info.value,
        "importing 'dep_clrfind_t' raised ModuleNotFoundError: No module named 'numpyy_not_installed'",
    )
    assert "(at dep_clrfind_t.py:1)" in str(info.value)


# fmt: off
BAD_TARGETS = [
    ("Net", "'Net' has no module: write 'models.py:Net' or 'pkg.mod:Net'"),
    ("models.py", "'models.py' names a file but no attribute: write 'models.py:MyNet'"),
    ("models.py:SmalCNN", "module 'models.py' has no attribute 'SmalCNN' (did you mean 'SmallCNN'?)"),
    ("models.py:SmallCNN.Haed", "'models.py:SmallCNN' has no attribute 'Haed' (did you mean 'Head'?)"),
    ("nope.py:Net", "file 'nope.py' not found (looked for {base}/nope.py)"),
    ("sub/nope.py:Net", "file 'sub/nope.py' not found (looked for {base}/sub/nope.py)"),
    ("folder.py:Net", "is not a file"),
    ("broken.py:x", "importing 'broken.py' raised ZeroDivisionError: division by zero (at broken.py:2)"),
    ("syntax.py:f", "importing 'syntax.py' raised SyntaxError"),
    ("needs_dep.py:x", "raised ModuleNotFoundError: No module named 'numpyy_not_installed'"),
    ("no_such_pkg_xyz.mod:Net", "could not import 'no_such_pkg_xyz.mod' for 'no_such_pkg_xyz.mod:Net' "
     "(No module named 'no_such_pkg_xyz')"),
    ("no_such_pkg_xyz.mod.Net", "(No module named 'no_such_pkg_xyz')"),
    ("troch.nn.CrossEntropyLoss", "(No module named 'troch') (did you mean 'torch'?)"),
    ("CrossEntropyLoss", "'CrossEntropyLoss' has no module: write 'torch.nn.CrossEntropyLoss' for torch's"),
    ("nn.CrossEntropyLoss", "(No module named 'nn'): write 'torch.nn.CrossEntropyLoss' for torch's, or the module's "
     "full name"),
    ("beside_spec_only.Block", "(No module named 'beside_spec_only'): write 'beside_spec_only.py:Block' for the "
     "file beside_spec_only.py beside the spec"),
    ("beside_spec_only:Block", "(No module named 'beside_spec_only'): write 'beside_spec_only.py:Block' for the "
     "file beside_spec_only.py beside the spec"),
    ("torch.nn:CrossEntropyLos", "module 'torch.nn' has no attribute 'CrossEntropyLos' (did you mean"),
    ("torch.nn.NoSuchLayerAtAll", "module 'torch.nn' has no attribute 'NoSuchLayerAtAll'"),
    ("", "empty target"),
    (":Net", "needs a module and an attribute around ':'"),
    ("torch.nn:", "needs a module and an attribute around ':'"),
    ("my models:Net", "'my models' in 'my models:Net' is not a module name"),
    ("models.py:Small-CNN", "'Small-CNN' in 'models.py:Small-CNN' is not an attribute name"),
    ("torch..nn.Linear", "is not a target"),
]
# fmt: on


@pytest.mark.parametrize(("target", "fragment"), BAD_TARGETS, ids=[t or "empty" for t, _ in BAD_TARGETS])
def test_bad_target_is_one_line(user_dir: Path, target: str, fragment: str) -> None:
    with pytest.raises(TargetError) as info:
        resolve(target, user_dir)
    assert_one_line(info.value, fragment.format(base=user_dir.resolve()))


def test_failed_file_import_leaves_no_module_behind(user_dir: Path) -> None:
    before = set(sys.modules)
    with pytest.raises(TargetError):
        resolve("broken.py:x", user_dir)
    assert not {m for m in set(sys.modules) - before if m.startswith(f"{USER_PACKAGE}.broken")}


# -- signature checks ----------------------------------------------------------------------------------------------


def check(obj, kwargs, key: str = "model.target", **options) -> None:
    check_call(obj, kwargs, key=key, source="spec.yaml", **options)


def test_check_call_accepts_fitting_calls(user_dir: Path) -> None:
    check(resolve("models.py:SmallCNN", user_dir), {"num_classes": 3})
    check(resolve("models.py:SmallCNN", user_dir), {"num_classes": 3, "width": 5})
    check(resolve("models.py:build", user_dir), {"depth": 2, "anything": 1})  # **extra takes the rest
    check(torch.optim.SGD, {"momentum": 0.9, "lr": 0.1}, positional=1, key="optimizer.target")
    check(torch.nn.CrossEntropyLoss, {"label_smoothing": 0.1})
    check(resolve("models.py:lm_step", user_dir), {}, positional=3, key="step.target")
    check(resolve("collections.OrderedDict", user_dir), {"anything": 1})  # no inspectable signature: passes


# fmt: off
CALL_CASES = [
    ("models.py:SmallCNN", {"num_clases": 3}, 0,
     "spec.yaml: model.kwargs.num_clases: 'models.py:SmallCNN' has no argument 'num_clases' "
     "(did you mean 'num_classes'?)"),
    ("models.py:SmallCNN", {}, 0,
     "spec.yaml: model.kwargs: 'models.py:SmallCNN' needs argument 'num_classes': add num_classes: <value>"),
    ("models.py:SmallCNN", {"num_classes": 1, "zzz": 2}, 0, "has no argument 'zzz' (it accepts: num_classes, width)"),
    ("models.py:build", {}, 0, "needs argument 'depth'"),
    ("models.py:positional_only", {"a": 1}, 0, "has no argument 'a'"),
    ("models.py:two_arg_step", {}, 3,
     "spec.yaml: model.target: 'models.py:two_arg_step' must accept 3 positional arguments (x, y, z)"),
    ("models.py:NOT_CALLABLE", {}, 0, "spec.yaml: model.target: 'models.py:NOT_CALLABLE' is not callable (got int)"),
    ("torch.optim.adam", {}, 0, "'torch.optim.adam' is not callable (got module): did you mean 'torch.optim.Adam'?"),
    ("torch.optim.SGD", {"params": [], "momentum": 0.9}, 1, "model.kwargs.params: 'params' is supplied by clrfind"),
    ("torch.nn.CrossEntropyLoss", {"smoothing": 0.1}, 0, "(did you mean 'label_smoothing'?)"),
]
# fmt: on


@pytest.mark.parametrize(("target", "kwargs", "positional", "fragment"), CALL_CASES)
def test_check_call_rejects(
    user_dir: Path, target: str, kwargs: dict, positional: int, fragment: str
) -> None:
    obj = resolve(target, user_dir)
    with pytest.raises(TargetError) as info:
        check(
            obj, kwargs, positional=positional, target=target, positional_names=("x", "y", "z")[:positional]
        )
    assert_one_line(info.value, fragment, key="model.")


def test_check_call_reports_every_problem(user_dir: Path) -> None:
    with pytest.raises(TargetError) as info:
        check(resolve("models.py:SmallCNN", user_dir), {"num_clases": 3, "depth": 2})
    assert str(info.value).endswith("(+1 more problems)")  # num_classes is not also reported missing


# -- instantiate ---------------------------------------------------------------------------------------------------


def test_instantiate_builds_with_supplied_args(user_dir: Path) -> None:
    cls = resolve("models.py:SmallCNN", user_dir)
    model = instantiate(cls, kwargs={"num_classes": 2}, key="model.target", source="spec.yaml")
    # A stand-in optimizer: the first torch.optim construction costs seconds of lazy imports.
    opt = instantiate(
        resolve("models.py:no_lr_optimizer", user_dir),
        model.parameters(),
        kwargs={"momentum": 0.5},
        key="optimizer.target",
        source="spec.yaml",
    )
    assert isinstance(model, torch.nn.Module) and len(list(opt)) == 2


def test_instantiate_wraps_user_exception(user_dir: Path) -> None:
    cls = resolve("models.py:SmallCNN", user_dir)
    with pytest.raises(SetupError) as info:
        instantiate(
            cls,
            kwargs={"num_classes": 0},
            key="model.target",
            source="spec.yaml",
            target="models.py:SmallCNN",
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "spec.yaml: model.target 'models.py:SmallCNN' raised ValueError: num_classes must be >= 1 (at models.py:"
    )
    assert isinstance(info.value.__cause__, ValueError)


def test_instantiate_checks_before_calling() -> None:
    calls = []

    def factory(size: int) -> int:
        calls.append(size)
        return size

    with pytest.raises(TargetError) as info:
        instantiate(factory, kwargs={"sise": 3}, key="data.train.target", source="spec.yaml")
    assert calls == [] and "spec.yaml: data.train.kwargs.sise:" in str(info.value)
    assert "did you mean 'size'?" in str(info.value)


# -- a whole spec --------------------------------------------------------------------------------------------------

SPEC = """
model: {target: models.py:SmallCNN, kwargs: {num_classes: 3}}
data:
  train: {target: data.py:train_set, kwargs: {n: 16}}
  val: {target: data.py:READY}
  batch_size: 8
loss: {target: torch.nn.CrossEntropyLoss}
optimizer: {target: torch.optim.SGD, kwargs: {momentum: 0.9}}
step: {target: models.py:lm_step}
range_test: {steps: 10}
"""


def test_validate_spec_targets_resolves_everything(user_dir: Path) -> None:
    (user_dir / "spec.yaml").write_text(SPEC)
    resolved = validate_spec_targets(load_spec(user_dir / "spec.yaml"))
    assert set(resolved) == {"model", "data.train", "data.val", "loss", "optimizer", "step"}
    assert resolved["optimizer"] is torch.optim.SGD and resolved["loss"] is torch.nn.CrossEntropyLoss
    assert isinstance(resolved["data.val"], torch.utils.data.TensorDataset)  # a ready Dataset is used as is


def test_validate_spec_targets_collects_every_problem(user_dir: Path) -> None:
    bad = (
        SPEC.replace("num_classes: 3", "num_clases: 3")
        .replace("data.py:train_set", "dta.py:train_set")
        .replace("momentum: 0.9", "momentum: 0.9, lr: 0.1")  # a training config's lr: no problem
        .replace("models.py:lm_step", "models.py:two_arg_step")
        .replace("target: data.py:READY}", "target: data.py:READY, kwargs: {n: 3}}")
    )
    (user_dir / "spec.yaml").write_text(bad)
    with pytest.raises(TargetError) as info:
        validate_spec_targets(load_spec(user_dir / "spec.yaml"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("spec.yaml: model.kwargs.num_clases: ")
    assert message.endswith("(+3 more problems)")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            ("models.py:lm_step", "models.py:two_arg_step"),
            "spec.yaml: step.target: 'models.py:two_arg_step' takes (model, batch), no loss_fn, so the spec's loss: "
            "would go unused: remove loss:, or give the step a third argument, loss_fn, and use it",
        ),
        (("data.py:train_set", "dta.py:train_set"), "spec.yaml: data.train.target: file 'dta.py' not found"),
        (
            ("target: data.py:READY}", "target: data.py:READY, kwargs: {n: 3}}"),
            "spec.yaml: data.val.kwargs: 'data.py:READY' is a TensorDataset instance, which takes no kwargs",
        ),
        (
            ("torch.optim.SGD", "models.py:no_lr_optimizer"),
            "spec.yaml: optimizer.target: 'models.py:no_lr_optimizer' has no lr argument",
        ),
        (
            ("torch.nn.CrossEntropyLoss", "models.py:NOT_CALLABLE"),
            "spec.yaml: loss.target: 'models.py:NOT_CALLABLE'",
        ),
    ],
)
def test_validate_spec_targets_single_problem(user_dir: Path, edit: tuple[str, str], fragment: str) -> None:
    assert edit[0] in SPEC
    (user_dir / "spec.yaml").write_text(SPEC.replace(*edit))
    loaded = load_spec(user_dir / "spec.yaml")
    with pytest.raises(TargetError) as info:
        validate_spec_targets(loaded)
    assert "\n" not in str(info.value) and str(info.value).startswith(fragment), str(info.value)
    assert "more problems" not in str(info.value)


SPAWN_DATA_PY = """
import torch
from torch.utils.data import Dataset

import helpers


class Squares(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.tensor([float(i * i + helpers.WIDTH)])
"""


@pytest.mark.slow
def test_file_target_classes_reach_spawned_dataloader_workers(user_dir: Path) -> None:
    """Spawn/forkserver workers unpickle the dataset by module name; clrfind_user's finder re-imports the file."""
    import pickle

    (user_dir / "spawn_data.py").write_text(SPAWN_DATA_PY)
    dataset = resolve("spawn_data.py:Squares", user_dir, key="data.train.target")()
    name = type(dataset).__module__
    assert pickle.loads(pickle.dumps(dataset)).__class__ is type(dataset)  # same process: the cached module
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, num_workers=1, multiprocessing_context="spawn"
    )
    batches = [b.flatten().tolist() for b in loader]
    assert batches == [[7.0, 8.0], [11.0, 16.0]]  # helpers.WIDTH = 7, imported beside the file in the worker
    assert name.startswith(f"{USER_PACKAGE}.spawn_data_")
