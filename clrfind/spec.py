"""Load and validate the YAML spec: unknown keys rejected at every level, every problem named by its key path.

A spec is a partial description of a training run (model, data, loss, optimizer, range-test settings); the code
supplies the runtime inputs. Validation is pydantic (strict: ``"64"`` is not an integer), but pydantic's wording is
translated into one-line, Hydra-style messages (``spec.yaml: data.batch_size: expected an integer, got 'abc' (str)``)
and every problem is collected into one `SpecError` instead of stopping at the first.

Targets are only checked here for shape (a non-empty string); importing them is `clrfind.targets`' job, and device
availability (which needs torch) is the build step's.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from clrfind.errors import SpecError, UsageError, describe_exception, one_line, short_repr
from clrfind.settings import (
    ClipThreshold,
    FrozenModel,
    LadderSettings,
    Positive,
    Precision,
    RunSettings,
    Seed,
    TrainingLength,
    VerifyOn,
    clip_problem,
    length_and_range_problem,
)

# More DataLoader workers than any machine has cores is a typo, and would try to start that many processes.
MAX_WORKERS = 512
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
# Names people reach for that difflib would map to the wrong device ("gpu" is closest to "cpu").
_DEVICE_ALIASES = {"gpu": "cuda", "cuda0": "cuda:0", "metal": "mps", "apple": "mps"}


# -- YAML ----------------------------------------------------------------------------------------------------------


# libyaml's parser when PyYAML was built with it (10x faster); the constructor stays the safe Python one.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """SafeLoader with YAML 1.2 floats and duplicate keys rejected.

    PyYAML follows YAML 1.1, where ``1e-4`` (no dot, unsigned exponent) is a *string*: the most common way to write
    a learning rate would fail type checks. And PyYAML silently keeps the last of two equal keys, which hides typos
    made by copy-paste; a spec is short enough that a duplicate is always a mistake.
    """

    def get_single_data(self) -> Any:
        # The node graph is measured before anything is built from it: construction is recursive (deep nesting
        # overflows the stack) and aliases share nodes (a 600-byte file can expand to gigabytes once copied).
        node = self.get_single_node()
        if node is None:
            return None
        _check_node_size(node)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            # Merge keys (<<) may legitimately repeat what they merge; only explicit scalar keys are compared.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}; each key may appear once", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# What a spec (or a schedule file) may expand to. Real specs hold a few dozen values a few levels deep; the limits
# leave room for long kwargs (class weights, layer lists) and stop alias bombs and nesting meant to crash.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 100


class YAMLLimitError(yaml.YAMLError):
    """YAML that parses but is refused: it would expand past MAX_YAML_VALUES values, nests deeper than
    MAX_YAML_DEPTH, refers to itself, or holds a value Python cannot build (an integer of 5000 digits)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


def _check_node_size(root: yaml.Node) -> None:
    """Count the values the node graph expands to (an alias counts as often as it is used), without recursion.

    Sizes of shared nodes are memoised, so the count is linear in the document even when its expansion is not.

    Raises:
        YAMLLimitError: too many values, too deep, or a node that contains itself (a recursive alias).
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_VALUES:
                raise YAMLLimitError(
                    f"it expands to more than {MAX_YAML_VALUES:,} values (aliases repeating a structure?)",
                    node.start_mark,
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YAMLLimitError("an alias refers to a structure that contains it", node.start_mark)
        on_path.add(key)
        if len(on_path) > MAX_YAML_DEPTH:
            raise YAMLLimitError(f"it nests deeper than {MAX_YAML_DEPTH} levels", node.start_mark)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def yaml_load(text: str) -> Any:
    """Parse YAML safely (no object construction) with the spec's rules: 1e-4 is a float, duplicate keys fail.

    Raises:
        yaml.YAMLError: the text is not valid YAML, or too large or deep once aliases are expanded
            (`YAMLLimitError`).
    """
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a safe loader: no object construction
    except RecursionError:  # the pure-Python parser (PyYAML without libyaml) recurses while it parses
        raise YAMLLimitError(f"it nests deeper than {MAX_YAML_DEPTH} levels", None) from None
    except yaml.YAMLError:
        raise
    # PyYAML's constructors on odd scalars: `!!int` alone, an int of 5000 digits, ...
    except Exception as exc:
        raise YAMLLimitError(f"a value cannot be read ({describe_exception(exc)})", None) from None


# -- the spec models -----------------------------------------------------------------------------------------------


class _Strict(FrozenModel):
    # strict: a spec is typed by hand, and "64" or `true` where a number belongs is a mistake to report, not coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _rule(detail: str, field: str | None = None) -> PydanticCustomError:
    """A cross-field problem, tagged with the field it belongs to (pydantic would only give the model's path)."""
    return PydanticCustomError("spec_rule", "{detail}", {"detail": detail, "field": field or ""})


# Hydra's and torchtune's names for `target`: with either, the block's other keys are the kwargs, as those configs
# write them, so their `model:` and `optimizer:` blocks can be pasted into a spec.
TARGET_ALIASES = ("_target_", "_component_")
_TARGET_KEYS = ("target", *TARGET_ALIASES)
# Hydra's instantiate options that would change what gets built. (`_partial_` does not: it asks for a callable that
# takes the remaining arguments later, which is how clrfind calls every target; it is accepted and dropped.)
_HYDRA_OPTIONS = {
    "_recursive_": "clrfind does not build nested _target_ blocks",
    "_convert_": "clrfind passes kwargs as plain YAML values",
    "_args_": "clrfind passes keyword arguments only, besides the inputs it supplies",
}


def _clrfind_form(data: Any, own: typing.Collection[str]) -> Any:
    """A target block in clrfind's form (`target` and `kwargs`), whichever way it was written.

    A bare string is the target alone (`loss: torch.nn.CrossEntropyLoss`), as users write it when nothing needs
    arguments.

    Args:
        data: the block as read from YAML (anything else than a mapping or a string is left to the type check).
        own: the block's own keys (`target`, `kwargs`, and `checkpoint` for the model), which keep their meaning
            beside `_target_`; every other key is a kwarg there.
    """
    if isinstance(data, str):
        return {"target": data}
    if not isinstance(data, dict):
        return data
    named = [k for k in _TARGET_KEYS if k in data]
    if len(named) > 1:
        raise _rule(f"both {named[0]!r} and {named[1]!r} name the target: keep one")
    for key, why in _HYDRA_OPTIONS.items():
        if key in data:
            raise _rule(f"Hydra's {key} is not supported ({why}): remove it", key)
    out = {k: v for k, v in data.items() if k != "_partial_"}
    if "_partial_" in data and not isinstance(data["_partial_"], bool):
        raise _rule(f"expected true or false, got {_show(data['_partial_'])}", "_partial_")
    alias = named[0] if named and named[0] in TARGET_ALIASES else None
    if alias is not None:
        out["target"] = out.pop(alias)
        loose = {k: v for k, v in out.items() if k not in own}
        if loose and "kwargs" in out:
            names = ", ".join(short_repr(k) for k in loose)
            raise _rule(
                f"arguments both beside {alias} ({names}) and under kwargs: write them one way (an override "
                "such as optimizer.kwargs.x=... adds kwargs: set optimizer.x on such a block)"
            )
        if loose:
            out = {k: v for k, v in out.items() if k in own} | {"kwargs": loose}
    nested = _nested_target(out.get("kwargs"))
    if nested is not None:
        where = nested if alias else f"kwargs.{nested}"
        raise _rule(
            f"{where} is a nested _target_ block, which clrfind does not build: build that object inside a factory "
            "function and name the factory here (target: models.py:make_model)"
        )
    return out


def _nested_target(value: Any, path: str = "") -> str | None:
    """The key path, inside kwargs, of the first mapping that names a target with `_target_` or `_component_`."""
    if isinstance(value, dict):
        if path and any(k in value for k in TARGET_ALIASES):
            return path
        items: typing.Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, child in items:
        child_path = f"{path}{key}" if str(key).startswith("[") else f"{path}.{key}" if path else str(key)
        found = _nested_target(child, child_path)
        if found is not None:
            return found
    return None


class TargetRef(_Strict):
    """A callable named by import path or file, and the keyword arguments it is called with.

    Also written as Hydra's ``{_target_: torch.optim.SGD, momentum: 0.9}`` or torchtune's ``_component_``: the
    other keys of the block are then its kwargs.
    """

    target: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return _clrfind_form(data, cls.model_fields)

    @field_validator("target")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise _rule("must not be empty (e.g. target: models.py:MyNet or target: torch.optim.SGD)")
        return value.strip()


class ModelRef(TargetRef):
    """The model, optionally started from a saved state_dict (a range test before fine-tuning)."""

    checkpoint: str | None = None


# The name of the group that takes the parameters no group selected.
DEFAULT_GROUP = "default"


class ParamGroupSpec(_Strict):
    """One parameter group: the parameters it selects, its LR relative to the optimizer's, its own options.

    A parameter goes to the first group that selects it (by a name pattern or by its module), in the order the
    groups are written; parameters no group selects form the group `default`, last.

    Attributes:
        name: the group's name in the results and the schedule (default `group<i>`, its index from 0).
        params: fnmatch patterns on `model.named_parameters()` names (`*.bias`, `backbone.*`).
        modules: `norm` (every normalisation layer: torch's BatchNorm, LayerNorm, GroupNorm, ..., and any module
            class whose name contains `Norm`, such as RMSNorm) or a module class name (`Embedding`); selects
            every parameter of such modules.
        lr_scale: the group's LR is this times the optimizer's (0.1 for a pretrained body under a new head).
        kwargs: the group's own optimizer options (`weight_decay: 0`), checked against the optimizer's.
    """

    name: str | None = None
    params: list[str] = Field(default_factory=list)
    modules: list[str] = Field(default_factory=list)
    lr_scale: float = Field(1.0, gt=0, allow_inf_nan=False)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _selects(self) -> ParamGroupSpec:
        if not self.params and not self.modules:
            raise _rule(
                "selects nothing: give name patterns under params (e.g. ['*.bias']) or modules ([norm])"
            )
        if "lr" in self.kwargs:
            raise _rule(
                "the test sets lr; scale this group's LR with lr_scale (e.g. lr_scale: 0.1)", "kwargs"
            )
        if "params" in self.kwargs:
            raise _rule("the group's parameters are selected by params and modules; remove it", "kwargs")
        if self.name == DEFAULT_GROUP:
            raise _rule(
                f"{DEFAULT_GROUP!r} names the group of the parameters no group selects; pick another", "name"
            )
        return self


class OptimizerSpec(TargetRef):
    """The optimizer, optionally with parameter groups built from name patterns (`groups`)."""

    groups: list[ParamGroupSpec] | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> OptimizerSpec:
        names = [g.name for g in self.groups or [] if g.name is not None]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise _rule(f"group name {twice[0]!r} is used twice; give each group its own name", "groups")
        return self


@dataclass(frozen=True)
class _Absent:
    """Stands in for a block a spec must have and left out (or set to null), so that its absence is reported with
    every other problem: which blocks a spec must have depends on its other keys (see `Spec._required_blocks`)."""

    path: tuple[str, ...]
    null: bool

    def problem(self) -> PydanticCustomError:
        detail = "expected a mapping, got null" if self.null else "missing required key"
        if self.path == ("loss",):  # without a step: neither gives a loss
            fix = "add loss: {target: torch.nn.CrossEntropyLoss}, or a step: whose function returns the loss"
            return _rule(f"{detail}: nothing computes the loss ({fix} itself, as model(**batch).loss does)")
        example = _EXAMPLES.get(self.path)
        return _rule(f"{detail} (e.g. {example})" if example else detail)


def _mark_absent(
    data: dict[str, Any], keys: typing.Iterable[str], parent: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`data` with an `_Absent` in place of each of `keys` that is missing or null."""
    return {**data, **{k: _Absent((*parent, k), k in data) for k in keys if data.get(k) is None}}


def _reject_absent(value: Any) -> Any:
    if isinstance(value, _Absent):
        raise value.problem()
    return value


class DataSpec(_Strict):
    """Where batches come from: callables returning a Dataset (map-style or iterable) or a ready DataLoader.

    `train` may be left out when a `setup:` factory returns the data; the other keys then still apply to it.
    """

    train: TargetRef | None = None
    val: TargetRef | None = None
    batch_size: int = Field(32, gt=0)
    shuffle: bool = True
    num_workers: int = Field(0, ge=0, le=MAX_WORKERS)
    # Drop each pass's last, partial batch of the training data, as a loop with batch norm must when the dataset's
    # length leaves one sample over (batch norm cannot normalise a batch of one in training mode).
    drop_last: bool = False

    _present = field_validator("train", mode="before")(_reject_absent)


class RangeTestSpec(LadderSettings):
    """The LR ladder and what is measured along it: `RunSettings`' own fields and constraints, typed strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # Neither steps nor epochs: the length comes from `training:` when given, else DEFAULT_STEPS
    # (`RunSettings.planned_steps`); the results record the length that ran (`planned_steps`).

    @model_validator(mode="after")
    def _consistent(self) -> RangeTestSpec:
        problem = length_and_range_problem(self.min_lr, self.max_lr, self.steps, self.epochs)
        if problem is not None:
            field, detail = problem
            raise _rule(detail, None if field == "epochs" else field)
        return self


class TrainingSpec(TrainingLength):
    """The training the bounds are for (`training:`): `TrainingLength`'s fields and constraints, typed strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Spec(_Strict):
    """A whole range-test spec; see the module docstring and ``sample_configs/`` for examples.

    model, data (its `train`), loss and optimizer are required, except that `loss` may be left out when a `step:`
    computes the loss itself, and any of them when a `setup:` factory returns them instead (`clrfind.build`).
    """

    model: ModelRef | None = None
    data: DataSpec | None = None
    loss: TargetRef | None = None
    optimizer: OptimizerSpec | None = None
    step: TargetRef | None = None
    setup: TargetRef | None = None
    range_test: RangeTestSpec = Field(default_factory=RangeTestSpec)
    training: TrainingSpec | None = None
    device: str = "auto"
    seed: Seed = 0
    precision: Precision = "fp32"
    accumulate: Positive = 1
    compile: bool = False
    channels_last: bool = False
    verify_bounds: bool = True
    verify_on: VerifyOn = "auto"
    clip_grad_norm: ClipThreshold | None = None
    clip_grad_value: ClipThreshold | None = None

    @model_validator(mode="before")
    @classmethod
    def _required_blocks(cls, data: Any) -> Any:
        """Mark the blocks this spec must have: without `setup:` all of them, but `loss` only without a `step:`."""
        if not isinstance(data, dict) or data.get("setup") is not None:
            return data
        needed = ["model", "data", "optimizer"] + (["loss"] if data.get("step") is None else [])
        out = _mark_absent(data, needed)
        if isinstance(out["data"], dict):
            out["data"] = _mark_absent(out["data"], ["train"], ("data",))
        return out

    _present = field_validator("model", "data", "loss", "optimizer", mode="before")(_reject_absent)

    @field_validator("device")
    @classmethod
    def _device_shape(cls, value: str) -> str:
        if not DEVICE_RE.fullmatch(value):
            close = _DEVICE_ALIASES.get(value.lower()) or closest(value, ["auto", "cpu", "cuda", "mps"])
            guess = f" (did you mean '{close}'?)" if close else ""
            raise _rule(f"expected one of {', '.join(DEVICE_CHOICES)}, got {value!r}{guess}")
        return value

    @model_validator(mode="after")
    def _uses_of_val_need_it(self) -> Spec:
        # A setup factory may return the validation data: the run checks for it when it starts.
        if self.setup is not None or not self.data or self.data.val is not None:
            return self
        add = "add val: {target: data.py:val_set} under data"
        if self.range_test.metric != "loss":
            raise _rule(
                f"metric {self.range_test.metric!r} needs data.val ({add}, or use metric: loss)", "metric"
            )
        if self.verify_on == "val":
            raise _rule(f"verify_on 'val' needs data.val ({add}, or use verify_on: auto)", "verify_on")
        return self

    @model_validator(mode="after")
    def _one_clip(self) -> Spec:
        problem = clip_problem(self.clip_grad_norm, self.clip_grad_value)
        if problem is not None:
            raise _rule(problem[1], problem[0])
        return self

    def settings(self) -> RunSettings:
        """How this spec's test runs; valid by construction (the spec passed the same constraints)."""
        return RunSettings(
            **self.range_test.model_dump(), precision=self.precision, accumulate=self.accumulate,
            compile=self.compile, channels_last=self.channels_last, seed=self.seed, verify_bounds=self.verify_bounds,
            verify_on=self.verify_on,
            clip_grad_norm=self.clip_grad_norm, clip_grad_value=self.clip_grad_value,
            training=self.training.model_dump() if self.training else None,
        )  # fmt: skip

    def resolved(self) -> dict[str, Any]:
        """The validated spec with defaults filled in, as plain JSON values (stored in the results file).

        Goes through pydantic's JSON serialiser so that anything YAML can put into kwargs (dates, bytes, NaN)
        comes out as standard JSON instead of failing when the results are written.
        """
        return json.loads(self.model_dump_json())


# Spec's model validator carries the metric rule; report it under range_test.metric, not at the top.
_RULE_PARENT = {("metric",): ("range_test",)}


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec and where it came from (file targets and the checkpoint are relative to `base_dir`)."""

    spec: Spec
    path: Path
    base_dir: Path
    name: str
    raw: dict[str, Any]

    @property
    def source(self) -> str:
        """The file name at the start of every message about this spec."""
        return self.path.name

    def resolved_dict(self) -> dict[str, Any]:
        return self.spec.resolved()

    def target_key(self, block: str) -> str:
        """The key path of a block's target as the file writes it (``"model.target"``, ``"model._target_"``), so
        messages name the key the user can find."""
        node: Any = self.raw
        for part in block.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        written = next((k for k in TARGET_ALIASES if isinstance(node, dict) and k in node), "target")
        return f"{block}.{written}"

    def with_overrides(self, overrides: Mapping[str, Any]) -> LoadedSpec:
        """The same spec with dotted keys set (a repeat's seed, a sweep's value, a rank's device), validated
        again from the mapping already read: the file is read once per command, however many runs it makes."""
        if not overrides:
            return self
        raw = apply_overrides(self.raw, overrides, source=self.source)
        return dataclasses.replace(self, spec=_validate(raw, self.source, overrides), raw=raw)


# -- loading -------------------------------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> LoadedSpec:
    """Read, override and validate a spec file.

    Args:
        path: the YAML spec.
        overrides: dotted keys set on the raw mapping before validation, e.g. ``{"range_test.steps": 50}``; the
            CLI options and sweeps both go through here. Setting steps drops epochs and vice versa.

    Raises:
        SpecError: the file is missing or unreadable, not YAML, not a mapping, or invalid; `problems` lists all.
    """
    given = Path(path)
    shown = _shown_path(given)
    source = one_line(given.name or str(given), limit=100)
    try:
        resolved = given.expanduser().resolve()
        if not resolved.exists():
            raise SpecError.from_problems(
                [f"{shown}: no such spec file (looked for {_shown_path(resolved)})"]
            )
        if resolved.is_dir():
            raise SpecError.from_problems(
                [f"{shown}: is a folder, not a spec file (pass the .yaml file inside it)"]
            )
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a loop of links
        raise SpecError.from_problems([f"{shown}: not a usable path ({one_line(exc)})"]) from exc
    try:
        text = resolved.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError.from_problems(
            [f"{shown}: not a text file ({exc.reason} at byte {exc.start}); pass a YAML spec"]
        ) from exc
    except OSError as exc:
        raise SpecError.from_problems(
            [f"{shown}: cannot read the file ({exc.strerror or exc}); check its permissions"]
        ) from exc
    try:
        raw = yaml_load(text)
    except yaml.YAMLError as exc:
        what = "refused" if isinstance(exc, YAMLLimitError) else "not valid YAML"
        raise SpecError.from_problems([f"{source}: {what} {_yaml_where(exc)}"]) from exc
    if raw is None:
        raise SpecError.from_problems(
            [f"{source}: the file is empty; a spec needs at least model, data, loss and optimizer"]
        )
    if not isinstance(raw, dict):
        raise SpecError.from_problems(
            [
                f"{source}: expected a mapping of keys (model, data, loss, optimizer, ...) at the top, "
                f"got {_show(raw)}"
            ]
        )
    raw = apply_overrides(raw, overrides or {}, source=source)
    spec = _validate(raw, source, overrides or {})
    return LoadedSpec(spec=spec, path=resolved, base_dir=resolved.parent, name=resolved.stem, raw=raw)


def _shown_path(path: Path) -> str:
    """A path for a one-line message: control characters escaped (a path can hold anything), bounded."""
    return one_line(repr(str(path))[1:-1], limit=200)


def _validate(raw: dict[str, Any], source: str, overrides: Mapping[str, Any]) -> Spec:
    """The validated spec, or a SpecError carrying every problem found; a key the command line set is said to be
    from there, since the file's own value is not the one at fault."""
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(err, source) for err in exc.errors(include_url=False)]
    for key in overrides:
        where = f"{source}: {key}: "
        problems = [p.replace(where, f"{source}: {key} (as the command line set it): ", 1) for p in problems]
    raise SpecError.from_problems(problems) from None


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """A deep copy of `raw` with each dotted key set to its value (intermediate mappings created as needed).

    Only the top-level key is checked here (with a suggestion); deeper unknown keys are caught by validation, which
    names them with the same key path.

    Raises:
        SpecError: an empty or unknown top-level key, or a path that runs through a value that is not a mapping.
    """
    out = copy.deepcopy(dict(raw))
    problems: list[str] = []
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        if not all(parts):
            problems.append(
                f"{source}: override {dotted!r}: empty key part; write keys like range_test.steps"
            )
            continue
        if parts[0] not in Spec.model_fields:
            problems.append(
                f"{source}: override {dotted!r}: unknown key {parts[0]!r}{_did_you_mean(parts[0], Spec.model_fields)}"
            )
            continue
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                problems.append(f"{source}: override {dotted!r}: {where} is {_show(child)}, not a mapping")
                break
            node = child
        else:
            node[parts[-1]] = copy.deepcopy(value)
            # steps and epochs are two ways to give one length: an override of one replaces the other.
            if parts[:-1] == ["range_test"] and parts[-1] in ("steps", "epochs"):
                node.pop("epochs" if parts[-1] == "steps" else "steps", None)
    if problems:
        raise SpecError.from_problems(problems)
    return out


def parse_override(text: str) -> tuple[str, list[Any]]:
    """Split ``"key=v1,v2,..."`` into the dotted key and its YAML-parsed values (``1e-4`` -> float).

    Commas inside brackets or quotes do not split, so ``kwargs.betas=[0.9,0.99]`` is one value.

    Raises:
        UsageError: no ``=``, an empty key or value, or a value that is not valid YAML.
    """
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"override {text!r}: expected key=value[,value...], e.g. range_test.steps=50,100")
    if not all(re.fullmatch(r"[A-Za-z0-9_\-]+", part) for part in key.split(".")):
        raise UsageError(
            f"override {text!r}: {key!r} is not a dotted key path like optimizer.kwargs.weight_decay"
        )
    values: list[Any] = []
    for piece in _split_top_level(rest):
        if not piece.strip():
            raise UsageError(f"override {text!r}: empty value; write {key}=value[,value...]")
        try:
            values.append(yaml_load(piece))
        except yaml.YAMLError as exc:
            raise UsageError(
                f"override {text!r}: value {piece!r} is not valid YAML {_yaml_where(exc)}"
            ) from exc
    return key, values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are outside brackets, braces and quotes."""
    pieces: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return pieces


# -- messages ------------------------------------------------------------------------------------------------------

_EXAMPLES = {
    ("model",): "model: {target: models.py:MyNet}",
    ("model", "target"): "target: models.py:MyNet",
    ("data",): "data: {train: {target: data.py:train_set}, batch_size: 64}",
    ("data", "train"): "train: {target: data.py:train_set}",
    ("data", "train", "target"): "target: data.py:train_set",
    ("data", "val", "target"): "target: data.py:val_set",
    ("loss",): "loss: {target: torch.nn.CrossEntropyLoss}",
    ("loss", "target"): "target: torch.nn.CrossEntropyLoss",
    ("optimizer",): "optimizer: {target: torch.optim.SGD, kwargs: {momentum: 0.9}}",
    ("optimizer", "target"): "target: torch.optim.SGD",
    ("step", "target"): "target: steps.py:my_step",
    ("setup", "target"): "target: train.py:setup",
}

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


_BOUND_WORDS = {
    "greater_than": "greater than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = one_line(getattr(exc, "problem", None) or str(exc))
    if mark is None:
        return f"({what})"
    return f"at line {mark.line + 1}, column {mark.column + 1} ({what})"


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML terms, with its type: ``'abc' (str)``, ``null``, ``true (bool)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (bool)"
    return f"{short_repr(value)} ({type(value).__name__})"


def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif re.fullmatch(r"[A-Za-z0-9_\-]+", str(part)):
            parts.append(str(part))
        else:
            parts.append(short_repr(part))
    return ".".join(parts).replace(".[", "[") or "<top>"


def closest(word: str, choices: typing.Iterable[str]) -> str | None:
    """The choice the user most likely meant: same name in another case, a completion of it, or a near spelling."""
    choices = [str(c) for c in choices]
    word = str(word)
    for choice in choices:
        if choice.lower() == word.lower():
            return choice
    if len(word) >= 3:
        prefixed = [c for c in choices if c.lower().startswith(word.lower())]
        if len(prefixed) == 1:
            return prefixed[0]
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


# What the peers call the range test's keys (torch-lr-finder's range_test(end_lr, num_iter, step_mode), fastai's
# lr_find(start_lr, end_lr, num_it), Lightning's lr_find(min_lr, max_lr, num_training)): a spec written from their
# docs is pointed at the key that means the same, not at the nearest spelling (end_lr is nearest to min_lr).
PEER_NAMES = {
    "start_lr": "min_lr", "end_lr": "max_lr", "lr_min": "min_lr", "lr_max": "max_lr", "num_iter": "steps",
    "num_it": "steps", "num_training": "steps", "num_steps": "steps", "iterations": "steps", "step_mode": "mode",
}  # fmt: skip


def likely_name(
    word: str, choices: typing.Iterable[str], aliases: Mapping[str, str] | None = None
) -> str | None:
    """The one of `choices` the user most likely meant by `word`; None when nothing is close. `aliases` are other
    spellings, each read as the name it stands for; by default the peers' names for the range test's settings
    (`end_lr`, `num_iter`) among `choices`."""
    choices = list(choices)
    if aliases is None:
        aliases = {alias: name for alias, name in PEER_NAMES.items() if name in choices}
    close = closest(word, [*choices, *aliases])
    return aliases.get(close, close) if close else None


P = typing.ParamSpec("P")
R = typing.TypeVar("R")


def known_keywords(fn: typing.Callable[P, R]) -> typing.Callable[P, R]:
    """`fn` refusing a keyword it does not take with a `UsageError` that names the one meant: a call written from
    torch-lr-finder's or fastai's docs (`end_lr=10`, `num_iter=100`) or a near spelling (`format=` for `fmt=`) is
    pointed at the argument meant, not left to Python's TypeError."""
    import functools
    import inspect

    parameters = inspect.signature(fn).parameters

    @functools.wraps(fn)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        unknown = next((name for name in kwargs if name not in parameters), None)
        if unknown is not None:
            close = likely_name(unknown, parameters)
            raise UsageError(
                f"{fn.__name__}() takes no argument {unknown!r}",
                hint=f"did you mean {close}=?"
                if close
                else f"help(clrfind.{fn.__name__}) lists the arguments",
            )
        return fn(*args, **kwargs)

    return checked


def _did_you_mean(word: str, choices: typing.Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """`` (did you mean 'x'?)``, else the allowed names; `aliases` as for `likely_name`, none by default."""
    choices = list(choices)
    close = likely_name(word, choices, aliases or {})
    return f" (did you mean {close!r}?)" if close else f" (allowed: {', '.join(choices)})"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model class that sits at key path `loc`, following field annotations (Optional and list
    unwrapped: the index into a list of models, as in ``optimizer.groups[0]``, keeps the element's class)."""
    cls: type[BaseModel] | None = Spec
    for part in loc:
        if isinstance(part, int) and cls is not None:
            continue
        field = cls.model_fields.get(part) if cls is not None and isinstance(part, str) else None
        if field is None:
            return None
        candidates = [field.annotation]
        origin = typing.get_origin(field.annotation)
        if origin is typing.Union or origin is types.UnionType:
            candidates = list(typing.get_args(field.annotation))
        candidates = [typing.get_args(c)[0] if typing.get_origin(c) is list else c for c in candidates]
        cls = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return cls


def _describe(err: Any, source: str) -> str:
    """Translate one pydantic error into ``file: key.path: what is wrong (the fix)``."""
    loc = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "spec_rule":
        field = ctx.get("field")
        if field:
            loc = (*_RULE_PARENT.get((field,), loc), field)
        return f"{source}: {_key_path(loc)}: {ctx.get('detail')}"
    if len(loc) >= 2 and loc[-1] == "[key]":
        return f"{source}: {_key_path(loc[:-2])}: keyword names must be strings, got {_show(loc[-2])}"
    where = _key_path(loc)
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        # A misspelt alias ("_targt_") is pointed at `target`, the spelling every example uses.
        aliases = dict.fromkeys(TARGET_ALIASES, "target") if model and issubclass(model, TargetRef) else None
        if model is RangeTestSpec:
            aliases = PEER_NAMES
        hint = _did_you_mean(str(loc[-1]), model.model_fields, aliases) if model is not None else ""
        return f"{source}: {where}: unknown key{hint}"
    if kind == "missing":
        example = _EXAMPLES.get(loc)
        return f"{source}: {where}: missing required key" + (f" (e.g. {example})" if example else "")
    if kind in _TYPE_WORDS:
        detail = f"expected {_TYPE_WORDS[kind]}, got {_show(value)}"
        if loc == ("data",) and isinstance(value, str):  # a target alone is the training data's
            detail += f" (write {{train: {one_line(value, limit=80)}}})"
        elif kind in ("int_type", "float_type") and isinstance(value, str) and _is_number(value):
            detail += " (remove the quotes)"
        return f"{source}: {where}: {detail}"
    if kind == "literal_error":
        choices = [c.strip().strip("'") for c in re.split(r",| or ", ctx.get("expected", "")) if c.strip()]
        close = closest(value, choices) if isinstance(value, str) else None
        guess = f" (did you mean {close!r}?)" if close else ""
        return f"{source}: {where}: expected one of {', '.join(choices)}, got {_show(value)}{guess}"
    if kind in _BOUND_WORDS:
        bound = next(ctx[k] for k in ("gt", "ge", "lt", "le") if k in ctx)
        bound = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"{source}: {where}: must be {_BOUND_WORDS[kind]} {bound}, got {_show_number(value)}"
    if kind == "finite_number":
        return f"{source}: {where}: must be a finite number, got {value}"
    return f"{source}: {where}: {one_line(err['msg'])}, got {_show(value)}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _show_number(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return short_repr(value)
