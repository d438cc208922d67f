"""Spec loading: every bad input is one SpecError line naming the file and key path; overrides; property tests."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clrfind.errors import SetupError, SpecError, UsageError
from clrfind.ladder import DEFAULT_STEPS
from clrfind.settings import RunSettings, TrainingLength
from clrfind.spec import Spec, load_spec, parse_override, yaml_load

VALID = """\
model:
  target: models.py:SmallCNN
  kwargs: {num_classes: 10}
data:
  train: {target: data.py:train_set, kwargs: {}}
  val: {target: data.py:val_set}
  batch_size: 64
loss: {target: torch.nn.CrossEntropyLoss, kwargs: {}}
optimizer: {target: torch.optim.SGD, kwargs: {momentum: 0.9, weight_decay: 0.0005}}
range_test:
  min_lr: 1e-5
  max_lr: 1.0
  steps: 200
"""

MINIMAL = {
    "model": {"target": "models.py:SmallCNN"},
    "data": {"train": {"target": "data.py:train_set"}},
    "loss": {"target": "torch.nn.CrossEntropyLoss"},
    "optimizer": {"target": "torch.optim.SGD"},
}


def write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def dump(raw: dict[str, Any]) -> str:
    return yaml.dump(raw, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


def valid_raw() -> dict[str, Any]:
    return yaml_load(VALID)


def assert_spec_error(exc: SpecError, *, key: str | None, fragment: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert message.startswith("spec.yaml: ") or "spec.yaml" in message.split(":")[0]
    if key is not None:
        assert f"spec.yaml: {key}: " in message, message
    assert fragment in message, message
    assert exc.problems and exc.problems[0] in message
    assert all("\n" not in p for p in exc.problems)


# -- valid specs ---------------------------------------------------------------------------------------------------


def test_valid_spec_loads_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    loaded = load_spec(path)
    spec = loaded.spec
    assert loaded.path == path.resolve() and loaded.base_dir == tmp_path.resolve()
    assert loaded.name == "spec" and loaded.source == "spec.yaml"
    assert loaded.raw == valid_raw()
    assert spec.model.target == "models.py:SmallCNN" and spec.model.kwargs == {"num_classes": 10}
    assert spec.model.checkpoint is None
    assert spec.data.val is not None and spec.data.val.kwargs == {}
    assert (spec.data.batch_size, spec.data.shuffle, spec.data.num_workers) == (64, True, 0)
    rt = spec.range_test
    assert rt.min_lr == pytest.approx(1e-5) and isinstance(rt.min_lr, float)  # YAML 1.2 float, not a string
    assert (rt.steps, rt.epochs, rt.mode, rt.metric, rt.eval_every, rt.eval_batches) == (
        200,
        None,
        "auto",
        "loss",
        None,
        4,
    )
    assert (spec.device, spec.seed, spec.precision, spec.accumulate) == ("auto", 0, "fp32", 1)
    assert spec.compile is False and spec.channels_last is False and spec.step is None
    assert (
        spec.verify_bounds is True and spec.settings().verify_bounds is True
    )  # the self-check is on by default


def test_verify_bounds_is_a_boolean_spec_key(tmp_path: Path) -> None:
    off = load_spec(write(tmp_path, VALID + "verify_bounds: false\n")).spec
    assert off.verify_bounds is False and off.settings().verify_bounds is False
    with pytest.raises(SpecError, match="verify_bounds: expected true or false, got 'no'"):
        load_spec(write(tmp_path, VALID + "verify_bounds: 'no'\n"))


def test_minimal_spec_gets_default_length_and_range(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, dump(MINIMAL))).spec
    assert spec.range_test.steps is None and spec.range_test.epochs is None
    assert spec.settings().planned_steps(10) == DEFAULT_STEPS == 300
    assert 0 < spec.range_test.min_lr < spec.range_test.max_lr
    assert spec.data.batch_size > 0


def test_epochs_instead_of_steps(tmp_path: Path) -> None:
    raw = valid_raw()
    raw["range_test"] = {"epochs": 3, "metric": "accuracy"}
    spec = load_spec(write(tmp_path, dump(raw))).spec
    assert spec.range_test.epochs == 3 and spec.range_test.steps is None


def test_every_documented_choice_is_accepted(tmp_path: Path) -> None:
    raw = valid_raw()
    raw.update(
        device="cuda:1",
        seed=7,
        precision="bf16",
        accumulate=4,
        compile=True,
        channels_last=True,
        step={"target": "steps.py:lm_step"},
    )
    raw["model"]["checkpoint"] = "ckpt/weights.pt"
    raw["range_test"].update(mode="exp", metric="val_loss", eval_every=5, eval_batches=2)
    spec = load_spec(write(tmp_path, dump(raw))).spec
    assert spec.device == "cuda:1" and spec.precision == "bf16" and spec.accumulate == 4
    assert spec.model.checkpoint == "ckpt/weights.pt" and spec.step is not None
    assert spec.range_test.mode == "exp" and spec.range_test.metric == "val_loss"
    for device in ("auto", "cpu", "cuda", "cuda:0", "mps"):
        assert load_spec(write(tmp_path, VALID + f"device: {device}\n")).spec.device == device


def test_resolved_is_json_and_round_trips(tmp_path: Path) -> None:
    raw = valid_raw()
    raw["model"]["kwargs"].update(when="2020-01-01", ratio=float("nan"), blob=[1, {"a": None}])
    text = dump(raw).replace("'2020-01-01'", "2020-01-01")  # a YAML date object in kwargs
    loaded = load_spec(write(tmp_path, text))
    resolved = loaded.resolved_dict()
    json.dumps(resolved, allow_nan=False)  # storable in the results file as standard JSON
    assert resolved["range_test"]["steps"] == 200 and resolved["seed"] == 0 and resolved["step"] is None
    clean = load_spec(write(tmp_path, VALID))
    again = load_spec(write(tmp_path, dump(clean.resolved_dict()), name="again.yaml"))
    assert again.spec == clean.spec


def test_eval_interval(tmp_path: Path) -> None:
    settings = load_spec(write(tmp_path, VALID)).spec.settings()
    assert settings.eval_interval(300) == 10 and settings.eval_interval(10) == 1
    assert settings.eval_interval(50) == 1  # what the engine runs with: one place decides it
    settings = load_spec(
        write(tmp_path, VALID.replace("steps: 200", "steps: 200\n  eval_every: 7"))
    ).spec.settings()
    assert settings.eval_interval(300) == 7


def test_spec_settings_carry_every_run_setting(tmp_path: Path) -> None:
    text = VALID.replace("steps: 200", "epochs: 2\n  mode: exp") + "precision: bf16\naccumulate: 2\nseed: 7\n"
    settings = load_spec(write(tmp_path, text)).spec.settings()
    assert (settings.steps, settings.epochs, settings.mode, settings.precision) == (None, 2, "exp", "bf16")
    assert (settings.accumulate, settings.seed) == (2, 7)
    assert settings.steps_per_epoch(33) == 16 and settings.planned_steps(33) == 32


def test_yaml_floats_follow_yaml_1_2() -> None:
    assert yaml_load("[1e-4, 1E5, 1.0e-3, 2.5, .5, -3e2, 10]") == [1e-4, 1e5, 1e-3, 2.5, 0.5, -300.0, 10]
    assert isinstance(yaml_load("1e5"), float) and isinstance(yaml_load("10"), int)
    assert yaml_load("cuda:0") == "cuda:0" and yaml_load("models.py:Net") == "models.py:Net"


def test_yaml_loading_is_safe() -> None:
    with pytest.raises(yaml.YAMLError):
        yaml_load("!!python/object/apply:os.system ['true']")


# -- bad specs -----------------------------------------------------------------------------------------------------


def _set(path: str, value: Any):
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _drop(path: str):
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _rename(path: str, new: str):
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[new] = node.pop(last)

    return mutate


# fmt: off
BAD = [
    # (id, mutation, key path in the message, fragment)
    ("unknown-key", _rename("data.batch_size", "batch_sise"), "data.batch_sise",
     "unknown key (did you mean 'batch_size'?)"),
    ("unknown-top", _set("modle", 1), "modle", "did you mean 'model'?"),
    ("unknown-in-target", _rename("loss.kwargs", "kwarg"), "loss.kwarg", "did you mean 'kwargs'?"),
    ("unknown-no-match", _set("range_test.zzzz", 1), "range_test.zzzz", "allowed: min_lr, max_lr"),
    # The peers' names for the same keys point at ours, not at the nearest spelling (end_lr is nearest min_lr).
    ("peer-end-lr", _set("range_test.end_lr", 10), "range_test.end_lr", "unknown key (did you mean 'max_lr'?)"),
    ("peer-start-lr", _set("range_test.start_lr", 1e-6), "range_test.start_lr", "did you mean 'min_lr'?"),
    ("peer-num-iter", _set("range_test.num_iter", 100), "range_test.num_iter", "did you mean 'steps'?"),
    ("peer-step-mode", _set("range_test.step_mode", "exp"), "range_test.step_mode", "did you mean 'mode'?"),
    ("missing-target", _drop("model.target"), "model.target", "missing required key (e.g. target: models.py:MyNet)"),
    ("missing-section", _drop("optimizer"), "optimizer", "missing required key (e.g. optimizer: {target:"),
    ("missing-train", _drop("data.train"), "data.train", "missing required key"),
    ("batch-size-word", _set("data.batch_size", "abc"), "data.batch_size", "expected an integer, got 'abc' (str)"),
    ("batch-size-quoted", _set("data.batch_size", "64"), "data.batch_size", "got '64' (str) (remove the quotes)"),
    ("batch-size-bool", _set("data.batch_size", True), "data.batch_size", "expected an integer, got true (bool)"),
    ("batch-size-float", _set("data.batch_size", 64.5), "data.batch_size", "expected an integer, got 64.5 (float)"),
    ("batch-size-zero", _set("data.batch_size", 0), "data.batch_size", "must be greater than 0, got 0"),
    ("batch-size-null", _set("data.batch_size", None), "data.batch_size", "expected an integer, got null"),
    ("workers-negative", _set("data.num_workers", -1), "data.num_workers", "must be at least 0, got -1"),
    ("shuffle-word", _set("data.shuffle", "yes please"), "data.shuffle", "expected true or false"),
    ("steps-one", _set("range_test.steps", 1), "range_test.steps", "must be at least 2, got 1"),
    ("steps-zero", _set("range_test.steps", 0), "range_test.steps", "must be at least 2, got 0"),
    ("steps-negative", _set("range_test.steps", -5), "range_test.steps", "must be at least 2, got -5"),
    ("epochs-zero", _set("range_test.epochs", 0), "range_test.epochs", "must be at least 1"),
    ("steps-and-epochs", _set("range_test.epochs", 2), "range_test", "set either steps or epochs, not both"),
    ("min-above-max", _set("range_test.min_lr", 2.0), "range_test.min_lr", "must be below max_lr (1.0), got 2.0"),
    ("min-equals-max", _set("range_test.min_lr", 1.0), "range_test.min_lr", "must be below max_lr (1.0), got 1.0"),
    ("min-zero", _set("range_test.min_lr", 0), "range_test.min_lr", "must be greater than 0, got 0"),
    ("min-negative", _set("range_test.min_lr", -0.1), "range_test.min_lr", "must be greater than 0"),
    ("min-word", _set("range_test.min_lr", "tiny"), "range_test.min_lr", "expected a number, got 'tiny' (str)"),
    ("max-nan", _set("range_test.max_lr", float("nan")), "range_test.max_lr", "must be a finite number"),
    ("max-inf", _set("range_test.max_lr", float("inf")), "range_test.max_lr", "must be a finite number"),
    ("mode-unknown", _set("range_test.mode", "cosine"), "range_test.mode",
     "expected one of auto, linear, exp, got 'cosine'"),
    ("mode-typo", _set("range_test.mode", "expo"), "range_test.mode", "did you mean 'exp'?"),
    ("metric-unknown", _set("range_test.metric", "acc"), "range_test.metric", "did you mean 'accuracy'?"),
    ("metric-needs-val", lambda r: (_drop("data.val")(r), _set("range_test.metric", "accuracy")(r)),
     "range_test.metric", "needs data.val"),
    ("verify-on-needs-val", lambda r: (_drop("data.val")(r), _set("verify_on", "val")(r)),
     "verify_on", "verify_on 'val' needs data.val"),
    ("verify-on-unknown", _set("verify_on", "train"), "verify_on", "expected one of auto, val, got 'train'"),
    ("eval-every-zero", _set("range_test.eval_every", 0), "range_test.eval_every", "must be at least 1"),
    ("eval-batches-zero", _set("range_test.eval_batches", 0), "range_test.eval_batches", "must be at least 1"),
    ("device-gpu", _set("device", "gpu"), "device", "expected one of auto, cpu, cuda, cuda:N, mps, got 'gpu'"),
    ("device-gpu-hint", _set("device", "gpu"), "device", "did you mean 'cuda'?"),
    ("device-bad-index", _set("device", "cuda:x"), "device", "got 'cuda:x'"),
    ("device-upper", _set("device", "CUDA"), "device", "got 'CUDA'"),
    ("device-int", _set("device", 0), "device", "expected a string, got 0 (int)"),
    ("seed-negative", _set("seed", -1), "seed", "must be at least 0, got -1"),
    ("seed-string", _set("seed", "0"), "seed", "expected an integer"),
    ("precision", _set("precision", "fp8"), "precision", "expected one of fp32, bf16, fp16, got 'fp8'"),
    ("accumulate-zero", _set("accumulate", 0), "accumulate", "must be at least 1, got 0"),
    ("compile-word", _set("compile", "sure"), "compile", "expected true or false, got 'sure' (str)"),
    ("target-empty", _set("model.target", ""), "model.target", "must not be empty"),
    ("target-blank", _set("loss.target", "   "), "loss.target", "must not be empty"),
    ("target-number", _set("model.target", 5), "model.target", "expected a string, got 5 (int)"),
    ("target-null", _set("optimizer.target", None), "optimizer.target", "expected a string, got null"),
    ("section-number", _set("loss", 5), "loss", "expected a mapping, got 5 (int)"),
    ("data-string", _set("data", "data.py:train_set"), "data",
     "expected a mapping, got 'data.py:train_set' (str) (write {train: data.py:train_set})"),
    ("section-null", _set("data", None), "data", "expected a mapping, got null"),
    ("range-test-number", _set("range_test", 5), "range_test", "expected a mapping, got 5 (int)"),
    ("kwargs-list", _set("model.kwargs", [1, 2]), "model.kwargs", "expected a mapping, got [1, 2] (list)"),
    ("kwargs-int-key", _set("optimizer.kwargs", {1: 0.9}), "optimizer.kwargs", "keyword names must be strings"),
    ("checkpoint-number", _set("model.checkpoint", 3), "model.checkpoint", "expected a string"),
]
# fmt: on


@pytest.mark.parametrize(("mutate", "key", "fragment"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_bad_spec_is_one_line_naming_file_and_key(tmp_path: Path, mutate, key: str, fragment: str) -> None:
    raw = valid_raw()
    mutate(raw)
    path = write(tmp_path, dump(raw))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_spec_error(info.value, key=key, fragment=fragment)


FILE_CASES = [
    # (id, file text or None for "no file", fragment)
    ("empty", "", "the file is empty"),
    ("comments-only", "# nothing here\n\n", "the file is empty"),
    (
        "list",
        "- model\n- data\n",
        "expected a mapping of keys (model, data, loss, optimizer, ...) at the top, got",
    ),
    ("scalar", "just words\n", "at the top, got 'just words' (str)"),
    ("bad-yaml", "model:\n  target: [unclosed\ndata: 1\n", "not valid YAML at line 3, column"),
    ("bad-indent", "model:\n  target: a\n kwargs: {}\n", "not valid YAML at line 3"),
    ("tab", "model:\n\ttarget: a\n", "not valid YAML at line 2"),
    ("duplicate", VALID + "seed: 1\nseed: 2\n", "duplicate key 'seed'"),
    ("unsafe-tag", "model: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "fragment"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_unreadable_spec_file(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    assert_spec_error(info.value, key=None, fragment=fragment)


def test_missing_file_directory_and_binary(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "spec.yaml")
    assert_spec_error(
        info.value, key=None, fragment=f"no such spec file (looked for {tmp_path / 'spec.yaml'})"
    )
    (tmp_path / "spec.yaml").mkdir()
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "spec.yaml")
    assert_spec_error(info.value, key=None, fragment="is a folder, not a spec file")
    binary = tmp_path / "bin" / "spec.yaml"
    binary.parent.mkdir()
    binary.write_bytes(b"model: \xff\xfe\x00garbage")
    with pytest.raises(SpecError) as info:
        load_spec(binary)
    assert_spec_error(info.value, key=None, fragment="not a text file")


def test_every_problem_is_collected(tmp_path: Path) -> None:
    raw = valid_raw()
    raw["data"]["batch_sise"] = raw["data"].pop("batch_size")
    raw["range_test"]["mode"] = "cosine"
    raw["device"] = "gpu"
    del raw["optimizer"]["target"]
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, dump(raw)))
    exc = info.value
    assert len(exc.problems) == 4
    assert str(exc) == f"{exc.problems[0]} (+3 more problems)"
    joined = " | ".join(exc.problems)
    for key in ("data.batch_sise", "optimizer.target", "range_test.mode", "device"):
        assert f"spec.yaml: {key}: " in joined


# -- overrides -----------------------------------------------------------------------------------------------------


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    loaded = load_spec(
        path,
        {
            "range_test.steps": 50,
            "device": "cpu",
            "optimizer.kwargs.weight_decay": 1e-4,
            "data.shuffle": False,
        },
    )
    spec = loaded.spec
    assert spec.range_test.steps == 50 and spec.device == "cpu" and spec.data.shuffle is False
    assert spec.optimizer.kwargs == {"momentum": 0.9, "weight_decay": 1e-4}
    assert loaded.raw["range_test"]["steps"] == 50 and loaded.raw["device"] == "cpu"
    assert load_spec(path).spec.range_test.steps == 200  # the file and the first load are untouched


def test_override_creates_missing_sections(tmp_path: Path) -> None:
    spec = load_spec(
        write(tmp_path, dump(MINIMAL)), {"data.val.target": "data.py:val", "step.target": "s.py:f"}
    ).spec
    assert spec.data.val is not None and spec.data.val.target == "data.py:val"
    assert spec.step is not None and spec.step.target == "s.py:f"


def test_steps_and_epochs_overrides_replace_each_other(tmp_path: Path) -> None:
    with_steps = write(tmp_path, VALID)
    rt = load_spec(with_steps, {"range_test.epochs": 3}).spec.range_test
    assert (rt.steps, rt.epochs) == (None, 3)
    raw = valid_raw()
    raw["range_test"] = {"epochs": 2}
    with_epochs = write(tmp_path, dump(raw), name="epochs.yaml")
    rt = load_spec(with_epochs, {"range_test.steps": 40}).spec.range_test
    assert (rt.steps, rt.epochs) == (40, None)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            {"range_tset.steps": 5},
            "override 'range_tset.steps': unknown key 'range_tset' (did you mean 'range_test'?)",
        ),
        ({"zzz": 1}, "override 'zzz': unknown key 'zzz' (allowed: model, data"),
        (
            {"data.batch_size.x": 3},
            "override 'data.batch_size.x': data.batch_size is 64 (int), not a mapping",
        ),
        ({"range_test..steps": 3}, "empty key part"),
    ],
)
def test_bad_override_path(tmp_path: Path, overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, VALID), overrides)
    assert_spec_error(info.value, key=None, fragment=fragment)


def test_bad_override_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, VALID), {"range_test.steps": 1})
    assert_spec_error(
        info.value, key="range_test.steps (as the command line set it)", fragment="must be at least 2, got 1"
    )
    # The file's own bad value is the file's.
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, VALID.replace("steps: 200", "steps: 1")), {"seed": 3})
    assert_spec_error(info.value, key="range_test.steps", fragment="must be at least 2, got 1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("optimizer.kwargs.weight_decay=1e-4,5e-4,0", ("optimizer.kwargs.weight_decay", [1e-4, 5e-4, 0])),
        ("data.shuffle=true,false", ("data.shuffle", [True, False])),
        ("device=cuda:0", ("device", ["cuda:0"])),
        ("range_test.mode = exp", ("range_test.mode", ["exp"])),
        (
            "optimizer.kwargs.betas=[0.9,0.99],[0.8, 0.9]",
            ("optimizer.kwargs.betas", [[0.9, 0.99], [0.8, 0.9]]),
        ),
        ("model.kwargs.cfg={a: 1, b: 2}", ("model.kwargs.cfg", [{"a": 1, "b": 2}])),
        ("model.kwargs.name='a,b',c", ("model.kwargs.name", ["a,b", "c"])),
        ("model.checkpoint=null", ("model.checkpoint", [None])),
    ],
)
def test_parse_override(text: str, expected: tuple[str, list[Any]]) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["steps", "=1", "range_test.steps=", "x=1,,2", "x=[1", "a..b=1", "a b=1"])
def test_parse_override_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_override(text)
    assert "\n" not in str(info.value) and repr(text) in str(info.value)


def test_parsed_override_feeds_load_spec(tmp_path: Path) -> None:
    key, values = parse_override("optimizer.kwargs.weight_decay=1e-4,5e-4")
    decays = [
        load_spec(write(tmp_path, VALID), {key: v}).spec.optimizer.kwargs["weight_decay"] for v in values
    ]
    assert decays == [1e-4, 5e-4]


# -- property tests: any input is a spec or a SpecError ------------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    return out


def _full_raw() -> dict[str, Any]:
    raw = valid_raw()
    raw.update(step={"target": "steps.py:lm_step"}, device="cpu", seed=1, precision="fp16", compile=False)
    raw["range_test"].update(mode="exp", metric="accuracy", eval_every=3)
    return raw


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    raw = _full_raw()
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(raw)
        path = draw(st.sampled_from(paths)) if paths else ()
        parent: Any = raw
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["drop", "replace", "insert"]))
        if not path:
            break
        if op == "drop":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(JSONISH)
        else:
            target = parent[path[-1]] if isinstance(parent[path[-1]], dict) else parent
            target[draw(st.text(max_size=10))] = draw(JSONISH)
    return raw


def _check_outcome(path: Path, overrides: dict[str, Any] | None = None) -> None:
    try:
        loaded = load_spec(path, overrides)
    except SpecError as exc:
        assert "\n" not in str(exc) and exc.problems
        assert all("\n" not in p for p in exc.problems)
        return
    json.dumps(loaded.resolved_dict(), allow_nan=False)
    assert isinstance(loaded.spec, Spec)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_specs())
def test_mutated_specs_load_or_raise_spec_error(
    tmp_path_factory: pytest.TempPathFactory, raw: dict[str, Any]
) -> None:
    _check_outcome(write(tmp_path_factory.getbasetemp(), dump(raw), name="mutated.yaml"))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200) | st.builds(lambda a, b: a + b, st.just(VALID), st.text(max_size=40)))
def test_random_yaml_text_loads_or_raises_spec_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    _check_outcome(write(tmp_path_factory.getbasetemp(), text, name="random.yaml"))


@settings(max_examples=100, deadline=None)
@given(
    overrides=st.dictionaries(
        st.sampled_from([".".join(p) for p in _paths(_full_raw())]) | st.text(max_size=12),
        JSONISH,
        max_size=3,
    )
)
def test_random_overrides_load_or_raise_spec_error(
    tmp_path_factory: pytest.TempPathFactory, overrides: dict[str, Any]
) -> None:
    path = tmp_path_factory.getbasetemp() / "full.yaml"
    if not path.exists():
        write(path.parent, dump(_full_raw()), name="full.yaml")
    _check_outcome(path, copy.deepcopy(overrides))


@pytest.mark.parametrize(
    ("training", "range_test", "batches", "expected"),
    [
        ({"epochs": 2}, {}, 64, 300),  # shorter than the default: the default
        ({"epochs": 10}, {}, 64, 640),  # about as long as the training
        ({"epochs": 50}, {}, 64, 1000),  # never longer than LONGEST_FITTED_STEPS
        ({"epochs": 10, "steps_per_epoch": 70}, {}, 64, 700),  # the training's own steps per epoch
        ({"epochs": 10}, {"steps": 120}, 64, 120),  # the test's own length wins
        ({"epochs": 10}, {"epochs": 2}, 64, 128),
    ],
)
def test_the_training_length_sets_the_tests_unless_it_has_its_own(
    tmp_path: Path, training: dict, range_test: dict, batches: int, expected: int
) -> None:
    raw = {**valid_raw(), "training": training, "range_test": range_test}
    run = load_spec(write(tmp_path, dump(raw))).spec.settings()
    assert run.planned_steps(batches) == expected
    spe = training.get("steps_per_epoch", batches)
    assert run.training_length(batches) == TrainingLength(epochs=training["epochs"], steps_per_epoch=spe)


def test_accumulation_counts_in_the_trainings_steps_per_epoch() -> None:
    run = RunSettings(training=TrainingLength(epochs=10), accumulate=2)
    assert run.planned_steps(128) == 640  # 128 batches of 2 per step: 64 steps an epoch
    assert RunSettings().training_length(128) is None and RunSettings().planned_steps(128) == 300


def test_a_stream_needs_the_trainings_steps_per_epoch() -> None:
    run = RunSettings(training=TrainingLength(epochs=10), steps=100)
    with pytest.raises(
        SetupError, match=r"^spec.yaml: training.epochs: the training data has no length"
    ) as info:
        run.planned_steps(None, source="spec.yaml: ")  # checked even though the test has its own length
    assert info.value.hint == "give them as training.steps_per_epoch"
    given = RunSettings(training=TrainingLength(epochs=10, steps_per_epoch=50))
    assert given.planned_steps(None) == 500


@pytest.mark.parametrize(
    ("training", "needle"),
    [
        ({}, "training.epochs: "),
        ({"epochs": 0}, "training.epochs: "),
        ({"epochs": "20"}, "training.epochs: "),
        ({"epochs": 5, "steps_per_epoch": 0}, "training.steps_per_epoch: "),
        ({"epochs": 5, "steps": 100}, "training.steps: "),
        (20, "training: "),
    ],
)
def test_bad_training_blocks_name_their_key(tmp_path: Path, training: object, needle: str) -> None:
    raw = {**valid_raw(), "training": training}
    with pytest.raises(SpecError, match=re.escape(needle)):
        load_spec(write(tmp_path, dump(raw)))


def test_an_override_sets_the_training_length(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, dump(valid_raw())), {"training.epochs": 4}).spec
    assert spec.training is not None and spec.training.epochs == 4
    assert spec.resolved()["training"] == {"epochs": 4, "steps_per_epoch": None}
