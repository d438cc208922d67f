"""Parameter groups: built from name patterns as a spec writes them, described for the results, and the LR ratios a
range test keeps between them.

Users train with groups (no weight decay on biases and norm layers, a lower LR for a pretrained body than for a new
head), and a range test that sets one LR for all of them tests another training. So the test keeps the ratios of the
groups' LRs as the optimizer has them when it starts, and moves all groups together: the ladder drives the group
with the largest LR, the others follow at their ratio. The results record each group, and the export writes each
group's bounds (`clrfind.export`).

torch is not imported here: the groups are built from the model the caller hands over.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from clrfind.errors import SetupError, UsageError, one_line
from clrfind.results import ParamGroup
from clrfind.spec import DEFAULT_GROUP, ParamGroupSpec, closest

if TYPE_CHECKING:
    import torch

# The module selector for every normalisation layer: torch's own and, by class name, the many written outside it
# (RMSNorm in language models, FrozenBatchNorm2d in torchvision), which subclass nothing common.
NORM = "norm"
# Group options the results do not record: the parameters themselves, the LR (a ratio is recorded) and what
# schedulers and torch add to a group.
_NOT_OPTIONS = ("params", "lr", "initial_lr", "name", "param_names")
# Significant digits of a recorded ratio: 0.1 * lr / lr is 0.09999999999999999 in floats, and the schedule a user
# copies should say 0.1.
_RATIO_DIGITS = 12


def lr_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's LR as a fraction of the largest: what the ladder's LR is multiplied by for that group.

    All groups at the same LR (the common case) give 1.0 each, so the ladder's LR is set as it is.
    """
    lrs = [float(group["lr"]) for group in optimizer.param_groups]
    top = max(lrs, default=0.0)
    if not top > 0 or not math.isfinite(top):
        return [1.0] * len(lrs)
    return [float(f"{lr / top:.{_RATIO_DIGITS}g}") for lr in lrs]


def group_specs(
    groups: Sequence[ParamGroupSpec | Mapping[str, Any]], *, key: str = "groups"
) -> list[ParamGroupSpec]:
    """Groups as a spec writes them, from the models or plain dicts (the library's form), validated.

    Raises:
        UsageError: a group is not a mapping of the spec's keys; names the group and the key.
    """
    out = []
    for i, group in enumerate(groups):
        if isinstance(group, ParamGroupSpec):
            out.append(group)
            continue
        try:
            out.append(ParamGroupSpec.model_validate(dict(group) if isinstance(group, Mapping) else group))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            what = (err.get("ctx") or {}).get("detail") or err["msg"]
            if err["type"] == "extra_forbidden":
                hint = closest(str(err["loc"][-1]), ParamGroupSpec.model_fields)
                fix = f"did you mean {hint!r}?" if hint else "put optimizer options under kwargs"
                what = f"unknown key ({fix})"
            raise UsageError(f"{key}[{i}]{'.' + where if where else ''}: {what}") from None
    return out


def param_groups(
    model: torch.nn.Module,
    groups: Sequence[ParamGroupSpec | Mapping[str, Any]],
    *,
    lr: float | None = None,
    key: str = "groups",
    source: str | None = None,
) -> list[dict[str, Any]]:
    """torch param groups for `model` from name patterns: what a spec's `optimizer.groups` builds.

    Each group is ``{"params": ["*.bias"], "modules": ["norm"], "lr_scale": 0.1, "kwargs": {...}, "name": ...}``
    (see `clrfind.spec.ParamGroupSpec`). A parameter goes to the first group that selects it; the parameters no
    group selects form a last group named `default` (left out when there are none). Pass the list to the
    optimizer: ``torch.optim.SGD(clrfind.param_groups(model, groups, lr=0.1), lr=0.1, momentum=0.9)``.

    Args:
        lr: the optimizer's LR; a group with `lr_scale` gets ``lr * lr_scale`` (needed when any group scales).
        key / source: where the groups were written, for messages (``optimizer.groups`` in ``spec.yaml``).

    Raises:
        UsageError: a group is malformed, or `lr_scale` without `lr`.
        SetupError: a group selects no parameter, or only parameters an earlier group took.
    """
    specs = group_specs(groups, key=key)
    where = f"{source}: {key}" if source else key
    if lr is None and any(g.lr_scale != 1.0 for g in specs):
        raise UsageError(f"{where}: lr_scale needs the optimizer's lr: pass lr=")
    named = dict(model.named_parameters())
    selected = [_selected(model, named, g) for g in specs]
    members: list[list[str]] = [[] for _ in specs]
    rest: list[str] = []
    for name in named:
        first = next((i for i, names in enumerate(selected) if name in names), None)
        (rest if first is None else members[first]).append(name)
    for i, (g, names) in enumerate(zip(specs, members, strict=True)):
        if names:
            continue
        if selected[i]:
            owner = next(j for j in range(i) if set(members[j]) & selected[i])
            problem = (
                f"every parameter it selects is in group {_name(specs[owner], owner)!r} before it (a parameter "
                "goes to the first group that selects it): move this group up, or narrow the earlier one"
            )
        else:
            problem = f"no parameter matches it; parameter names look like {', '.join(list(named)[:4])}"
        raise SetupError(f"{where}[{i}] ({_name(g, i)}, {_selection(g)}): {problem}")
    built = []
    for i, (g, names) in enumerate(zip(specs, members, strict=True)):
        group: dict[str, Any] = {"params": [named[n] for n in names], "name": _name(g, i), **g.kwargs}
        if lr is not None and g.lr_scale != 1.0:
            group["lr"] = lr * g.lr_scale
        built.append(group)
    if rest:
        built.append({"params": [named[n] for n in rest], "name": DEFAULT_GROUP})
    return built


def check_group_options(
    optimizer: torch.optim.Optimizer, specs: Sequence[ParamGroupSpec], *, key: str, source: str
) -> None:
    """Every group option is one of the optimizer's: torch keeps an unknown key in a group silently, so a typo
    (`weight_decy: 0`) would train with weight decay and say nothing.

    Raises:
        SetupError: names the group, the option and the closest option the optimizer has.
    """
    options = [k for k in optimizer.defaults if k not in _NOT_OPTIONS]
    for i, g in enumerate(specs):
        for option in g.kwargs:
            if option not in optimizer.defaults:
                close = closest(option, options)
                fix = f"did you mean {close!r}?" if close else f"it has: {', '.join(options)}"
                raise SetupError(
                    f"{source}: {key}[{i}].kwargs.{option}: {type(optimizer).__name__} has no option {option!r} ({fix})"
                )


def describe_groups(
    optimizer: torch.optim.Optimizer, specs: Sequence[ParamGroupSpec] | None = None
) -> list[ParamGroup]:
    """The optimizer's groups as the results record them: name, LR ratio, size, and the options that differ from
    the optimizer's defaults; `specs` (a spec's groups) add the patterns each group was selected with."""
    by_name = {_name(g, i): g for i, g in enumerate(specs or [])}
    out = []
    for i, (group, ratio) in enumerate(zip(optimizer.param_groups, lr_ratios(optimizer), strict=True)):
        name = group.get("name") if isinstance(group.get("name"), str) else f"group{i}"
        spec = by_name.get(name)
        out.append(
            ParamGroup(
                name=name,
                lr_ratio=ratio,
                param_count=sum(p.numel() for p in group["params"]),
                tensors=len(group["params"]),
                params=list(spec.params) if spec else [],
                modules=list(spec.modules) if spec else [],
                kwargs=_options(group, optimizer.defaults),
            )
        )
    return out


def _name(g: ParamGroupSpec, i: int) -> str:
    return g.name or f"group{i}"


def _selection(g: ParamGroupSpec) -> str:
    parts = [f"params {g.params}" if g.params else "", f"modules {g.modules}" if g.modules else ""]
    return one_line(" and ".join(p for p in parts if p), limit=120)


def _selected(model: torch.nn.Module, named: Mapping[str, Any], g: ParamGroupSpec) -> set[str]:
    """The names of the parameters a group selects, by pattern or by module; fnmatchcase, so `*.Bias` does not
    match on one OS and not on another."""
    chosen = {n for n in named if any(fnmatch.fnmatchcase(n, pattern) for pattern in g.params)}
    if g.modules:
        ids = {id(p) for _, m in model.named_modules() if _is_selected(m, g.modules) for p in m.parameters()}
        chosen |= {n for n, p in named.items() if id(p) in ids}
    return chosen


def _is_selected(module: torch.nn.Module, selectors: Sequence[str]) -> bool:
    classes = [c.__name__ for c in type(module).__mro__]
    return any((s == NORM and any("Norm" in c for c in classes)) or s in classes for s in selectors)


def _options(group: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A group's options that differ from the optimizer's defaults, as JSON values; values JSON cannot hold (a
    callable, a tensor of many elements) are left out."""
    out: dict[str, Any] = {}
    for k, v in group.items():
        if k in _NOT_OPTIONS or k not in defaults:
            continue
        value = json_option(v)
        if _json_value(value) and differs(value, json_option(defaults[k])):
            out[k] = value
    return out


def json_option(value: Any) -> Any:
    """An optimizer option as the results store it: a tuple (Adam's betas) as a list, a one-element tensor (an LR
    given as a tensor) as its number."""
    if hasattr(value, "item") and callable(getattr(value, "numel", None)) and value.numel() == 1:
        return value.item()
    return list(value) if isinstance(value, tuple) else value


def differs(value: Any, default: Any) -> bool:
    """True unless `value` equals `default`; values that cannot be compared differ."""
    try:
        return bool(value != default)
    except Exception:
        return True


def _json_value(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, str)):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_json_value(x) for x in v)
    return False
