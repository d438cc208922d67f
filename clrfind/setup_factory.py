"""A spec's `setup:` factory: one function that builds model, data, loss and optimizer together.

Training scripts often build everything in one function (the optimizer needs the model, the loss needs class
weights from the data); naming that function is simpler than splitting it into four targets. The factory returns
a dict (or a dataclass or named tuple) with the keys of `SETUP_KEYS`; a piece it does not return comes from the
spec's block of the same name, and a piece both give is an error (which one would be meant is a guess). Every
problem names the spec file, the factory and the key to fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clrfind.errors import SetupError, short_repr
from clrfind.spec import closest
from clrfind.targets import instantiate

if TYPE_CHECKING:
    from clrfind.spec import LoadedSpec, Spec

# The keys a factory may return, and the spec block each one replaces.
SETUP_KEYS = {
    "model": "model",
    "data": "data.train",
    "val_data": "data.val",
    "loss": "loss",
    "optimizer": "optimizer",
}
# What each key must hold, for messages.
_EXPECTED = {
    "model": "a torch.nn.Module",
    "data": "a Dataset or DataLoader",
    "val_data": "a Dataset or DataLoader",
    "loss": "a loss function or module",
    "optimizer": "a torch.optim optimizer over the model's parameters",
}
_SHAPE = (
    "a dict (or a dataclass or named tuple) with keys model, data, loss, optimizer and optionally val_data"
)


def from_setup(loaded: LoadedSpec, name: str) -> str:
    """How messages name a piece the factory returned: ``data (from setup.target 'train.py:setup')``."""
    assert loaded.spec.setup is not None
    return f"{name} (from {loaded.target_key('setup')} '{loaded.spec.setup.target}')"


def is_dataset(obj: Any) -> bool:
    """What a data target or factory may give: a DataLoader, an IterableDataset, or a map-style dataset."""
    import torch.utils.data as tud

    return isinstance(obj, (tud.DataLoader, tud.IterableDataset)) or (
        hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
    )


def setup_parts(loaded: LoadedSpec, factory: Any) -> dict[str, Any]:
    """Call the spec's `setup:` factory and check what it returned against the spec's own blocks.

    Returns:
        The pieces the factory returned (keys of `SETUP_KEYS`, None values left out), each of the right type.

    Raises:
        SetupError: the factory raised, returned something else than a mapping of pieces, returned an unknown
            key, a piece of the wrong type, a piece the spec also has a block for, or left out a piece the spec has
            no block for.
    """
    spec = loaded.spec
    assert spec.setup is not None
    key = loaded.target_key("setup")
    where = f"{loaded.source}: {key} '{spec.setup.target}'"
    made = instantiate(
        factory, kwargs=spec.setup.kwargs, key=key, source=loaded.source, target=spec.setup.target
    )
    parts = _as_dict(made, where)
    for name in parts:
        if name not in SETUP_KEYS:
            close = closest(str(name), SETUP_KEYS)
            guess = f"did you mean {close!r}? " if close else ""
            raise SetupError(
                f"{where} returned an unknown key {short_repr(name)}", hint=f"{guess}return {_SHAPE}"
            )
    parts = {name: value for name, value in parts.items() if value is not None}
    if "optimizer" in parts and "model" not in parts:
        raise SetupError(
            f"{where} returned an optimizer but not the model it trains",
            hint="return the model under 'model' too (the spec's model: block builds a different one)",
        )
    for name, value in parts.items():
        block = SETUP_KEYS[name]
        if _spec_block(spec, block) is not None:
            raise SetupError(
                f"{where} returned {name!r} and the spec has a {block}: block too",
                hint=f"keep one: remove {block} from the spec, or {name!r} from what the factory returns",
            )
        if not _fits(name, value, parts.get("model")):
            # The class where an instance goes: nn.CrossEntropyLoss, torch.optim.SGD.
            if isinstance(value, type):
                got, fix = f"the class {value.__name__}", f"return an instance of it ({value.__name__}(...))"
            else:
                got, fix = type(value).__name__, f"return {_EXPECTED[name]}"
            raise SetupError(
                f"{where} returned {name}={got}, not {_EXPECTED[name]}", hint=f"{fix} under the key {name!r}"
            )
    for name in ("model", "data", "optimizer", "loss"):
        block = SETUP_KEYS[name]
        if name in parts or _spec_block(spec, block) is not None:
            continue
        if name == "loss":
            if spec.step is not None:
                continue  # the step computes the loss itself
            raise SetupError(
                f"{where} returned no 'loss', and the spec has neither loss: nor step:",
                hint="return the loss function under 'loss', add loss: {target: torch.nn.CrossEntropyLoss}, "
                "or a step: whose function returns the loss itself",
            )
        raise SetupError(
            f"{where} returned no {name!r}, and the spec has no {block}: block",
            hint=f"return {_EXPECTED[name]} under the key {name!r}, or add {block}: to the spec",
        )
    return parts


def _as_dict(made: Any, where: str) -> dict[Any, Any]:
    if isinstance(made, Mapping):
        return dict(made)
    if dataclasses.is_dataclass(made) and not isinstance(made, type):
        return {f.name: getattr(made, f.name) for f in dataclasses.fields(made)}
    if isinstance(made, tuple) and hasattr(made, "_asdict"):  # a named tuple
        return dict(made._asdict())
    raise SetupError(
        f"{where} returned {type(made).__name__}, not a mapping of pieces", hint=f"return {_SHAPE}"
    )


def _spec_block(spec: Spec, block: str) -> Any:
    """The spec's block at a dotted path (``"data.train"``), or None when the spec leaves it out."""
    node: Any = spec
    for part in block.split("."):
        node = getattr(node, part, None) if node is not None else None
    return node


def _fits(name: str, value: Any, model: Any) -> bool:
    import torch

    if name == "model":
        return isinstance(value, torch.nn.Module)
    if name in ("data", "val_data"):
        return is_dataset(value)
    if name == "loss":
        # A loss's class is callable too, and calling it with (output, targets) builds nonsense.
        return callable(value) and not isinstance(value, type)
    # An optimizer over other parameters than the model's would leave the model untrained: a silent flat curve.
    if not isinstance(value, torch.optim.Optimizer) or "lr" not in value.param_groups[0]:
        return False
    own = {id(p) for p in model.parameters()} if isinstance(model, torch.nn.Module) else set()
    return all(id(p) in own for group in value.param_groups for p in group["params"])
