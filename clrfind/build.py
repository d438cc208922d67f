"""Build the model, data, loss, optimizer and step a spec names, fresh, on the chosen device.

Every target is resolved and its kwargs checked against its signature before anything is built, so a typo in the
last key of a spec costs nothing. torch is imported inside the functions: `clrfind --help` must not pay for it.
"""

from __future__ import annotations

import copy
import functools
import inspect
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clrfind.errors import USER_FAILURES, SetupError, UsageError, describe_exception, one_line
from clrfind.groups import check_group_options, param_groups
from clrfind.setup_factory import from_setup, is_dataset, setup_parts
from clrfind.spec import DEVICE_RE, DataSpec, LoadedSpec, TargetRef
from clrfind.targets import as_step, instantiate, is_loss_function, step_takes_loss, validate_spec_targets

if TYPE_CHECKING:
    import torch


@dataclass
class Components:
    """What a range test trains, built from a spec; owned by the run (nothing to restore afterwards)."""

    model: torch.nn.Module
    train_loader: Any
    val_loader: Any | None
    loss_fn: Callable[..., Any] | None  # None when the step computes the loss itself
    optimizer: torch.optim.Optimizer
    step_fn: Callable[..., Any] | None
    device: torch.device
    batch_size: int | None
    batches_per_epoch: int | None
    param_count: int
    world_size: int = 1


def resolve_device(requested: str, *, source: str = "spec") -> torch.device:
    """Map `auto|cpu|cuda|cuda:N|mps` to an available torch.device, or say why it is not available."""
    import torch

    if not DEVICE_RE.fullmatch(requested):
        raise UsageError(
            f"{source}: device: unknown device {requested!r}", hint="use auto, cpu, cuda, cuda:N or mps"
        )
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"{source}: device: {requested} requested but CUDA is not available to this torch "
                f"({torch.__version__})",
                hint="use device: auto or cpu, or install a CUDA build of torch",
            )
        index = int(requested.split(":")[1]) if ":" in requested else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"{source}: device: {requested} requested but only {torch.cuda.device_count()} GPU(s) are visible",
                hint=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}",
            )
        return torch.device("cuda", index)
    if requested == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise UsageError(f"{source}: device: mps requested but not available", hint="use device: auto or cpu")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so a spec's run is repeatable."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _is_loader(obj: Any) -> bool:
    import torch.utils.data as tud

    return isinstance(obj, tud.DataLoader)


def make_loader(
    obj: Any,
    *,
    key: str,
    source: str,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    device: torch.device,
    seed: int,
    sampler: Any | None = None,
    drop_last: bool = False,
) -> Any:
    """Wrap what a data target returned in a DataLoader, or take a DataLoader as it is.

    Map-style datasets get shuffling from a seeded generator (same order for the same seed), pinned memory on CUDA
    and persistent workers when there are workers, so re-cycling the loader does not respawn processes.
    """
    import torch
    import torch.utils.data as tud

    if _is_loader(obj):
        refuse_loader_repeating_stream(obj, f"{source}: {key}")
        return obj
    obj = _arrays_dataset(obj, key=key, source=source)
    _refuse_splits(obj, key=key, source=source)
    iterable = isinstance(obj, tud.IterableDataset)
    if iterable and num_workers > 1:
        refuse_repeating_stream(
            obj, batch_size=batch_size, num_workers=num_workers, where=f"{source}: {key}",
            fix="set data.num_workers to 0 or 1",
        )  # fmt: skip
    if not is_dataset(obj):
        raise SetupError(
            f"{source}: {key} returned {type(obj).__name__}, not a Dataset or DataLoader",
            hint="return a torch.utils.data.Dataset (e.g. TensorDataset), an IterableDataset or a DataLoader",
        )
    if not iterable and _length(obj, key=key, source=source) == 0:
        raise SetupError(f"{source}: {key} returned an empty dataset", hint="check the data it loads")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return tud.DataLoader(
        obj,
        batch_size=batch_size,
        shuffle=shuffle and not iterable and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        generator=generator,
        drop_last=drop_last,
    )


# sklearn's train_test_split(X, y) returns four arrays: (X_train, X_test, y_train, y_test).
SPLIT_ARRAYS = 4


def _arrays_dataset(obj: Any, *, key: str, source: str) -> Any:
    """A tuple of arrays, `(X, y)` as a training script holds them, as the TensorDataset of their rows; anything
    else as it is. Read as a dataset, the tuple would be two samples, X and y, and fail at its first batch.

    A short list of arrays is read the same way: as a dataset of two to four samples it could not fill a batch,
    and it is what sklearn's train_test_split returns. numpy's float64, its default rather than a choice, becomes
    torch's default float dtype, which the model's weights have.
    """
    import numpy as np
    import torch

    short_list = isinstance(obj, list) and len(obj) <= SPLIT_ARRAYS
    if not ((isinstance(obj, tuple) or short_list) and obj and all(_is_array(a) for a in obj)):
        return obj
    arrays = [a if isinstance(a, torch.Tensor) else _numpy_tensor(np.asarray(a)) for a in obj]
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        a, b = lengths[:2]
        hint = (
            "these look like train_test_split's (X_train, X_test, y_train, y_test): return (X_train, y_train) here "
            "and (X_test, y_test) from data.val"
            if len(lengths) == SPLIT_ARRAYS and lengths == [a, b, a, b]
            else "return arrays with one row per sample each, of the same length"
        )
        raise SetupError(
            f"{source}: {key} returned arrays of {' and '.join(map(str, lengths))} rows, read as (inputs, targets) "
            "by row",
            hint=hint,
        )
    return torch.utils.data.TensorDataset(*arrays)


def _refuse_splits(obj: Any, *, key: str, source: str) -> None:
    """A data target that returns its splits together, `(train_set, val_set)` or `{"train": ..., "val": ...}`: as
    a dataset, each split would be one sample, and the first batch fails in the collate function."""
    import torch.utils.data as tud

    if isinstance(obj, Mapping):
        parts, names = list(obj.values()), f" ({', '.join(map(str, obj))})"
    elif isinstance(obj, (tuple, list)) and len(obj) <= SPLIT_ARRAYS:
        parts, names = list(obj), ""
    else:
        return
    loaders = all(isinstance(p, tud.DataLoader) for p in parts)
    if not parts or not (loaders or all(isinstance(p, (tud.Dataset, tud.DataLoader)) for p in parts)):
        return
    raise SetupError(
        f"{source}: {key} returned {len(parts)} {'DataLoaders' if loaders else 'datasets'}{names} together, where "
        "one goes",
        hint="return one split here (a kwarg can pick which); the validation split goes to "
        + ("data.val" if key.startswith("data.") else "the factory's 'val_data'"),
    )


def refuse_loader_repeating_stream(loader: Any, where: str) -> None:
    """A ready DataLoader (a spec's target, a library caller's) whose several workers each read its whole
    IterableDataset: `refuse_repeating_stream` with the loader's own batch size and collate function."""
    import torch.utils.data as tud

    if (
        isinstance(loader, tud.DataLoader)
        and isinstance(loader.dataset, tud.IterableDataset)
        and loader.num_workers > 1
        and loader.batch_size is not None
    ):
        refuse_repeating_stream(
            loader.dataset, batch_size=loader.batch_size, num_workers=loader.num_workers, where=where,
            fix="build the DataLoader with num_workers=0 or 1", collate_fn=loader.collate_fn,
        )  # fmt: skip


def refuse_repeating_stream(
    dataset: Any, *, batch_size: int, num_workers: int, where: str, fix: str, collate_fn: Any = None
) -> None:
    """A stream that every DataLoader worker reads whole (`unsharded_stream`) trains on every batch num_workers
    times: a setup error, `where` naming the data and `fix` the setting that turns the workers off."""
    if unsharded_stream(dataset, batch_size=batch_size, collate_fn=collate_fn):
        raise SetupError(
            f"{where}: its IterableDataset gives every DataLoader worker the whole stream: the first two batches, "
            f"from workers 0 and 1, are the same, so with num_workers={num_workers} each sample comes "
            f"{num_workers} times a pass",
            hint=f"split the stream in its __iter__ by torch.utils.data.get_worker_info() (id, num_workers), or {fix}",
        )


def unsharded_stream(dataset: Any, *, batch_size: int, collate_fn: Any = None) -> bool:
    """Whether an IterableDataset read by several DataLoader workers is iterated whole by each of them, because its
    __iter__ does not split the stream by torch.utils.data.get_worker_info(): every sample then comes num_workers
    times a pass, and the test (and the training) sees each batch repeated. Workers take turns batch by batch, so
    the first two batches, from workers 0 and 1, are the same exactly then. Read through a loader of its own with a
    generator of its own: the run's loader, its seeds and the dataset in this process are untouched. A stream that
    is short, fails or comes in another order per worker (its own per-worker randomness) passes here; the run
    shows whatever else is wrong."""
    import torch
    import torch.utils.data as tud

    from clrfind.engine import shut_down_workers

    probe = tud.DataLoader(
        dataset, batch_size=batch_size, num_workers=2, collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    iterator = iter(probe)
    try:
        first, second = next(iterator), next(iterator)
    except (StopIteration, *USER_FAILURES):
        return False
    finally:
        shut_down_workers(iterator, probe)
    return _same_batch(first, second)


def _same_batch(a: Any, b: Any) -> bool:
    """Two collated batches hold the same values (tensors compared whole, containers item by item)."""
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_batch(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_batch(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _numpy_tensor(array: Any) -> Any:
    """A numpy array (or a pandas frame's values) as a tensor; float64 as torch's default float dtype."""
    import numpy as np
    import torch

    return torch.as_tensor(array, dtype=torch.get_default_dtype() if array.dtype == np.float64 else None)


def _is_array(obj: Any) -> bool:
    """A tensor or a numpy array with at least one axis (numpy is read through the array protocol, not imported;
    torch.Size is a tuple)."""
    shape = getattr(obj, "shape", None)
    return hasattr(obj, "__array__") and isinstance(shape, tuple) and len(shape) >= 1


def _check_loader_agrees(loader: Any, data: DataSpec, *, key: str, source: str) -> None:
    """A DataLoader target makes its own batches, so the spec's data keys do not apply to it: one that the spec
    sets, and that the loader contradicts, is an error rather than ignored (the bounds hold for the loader's batch
    size, not the spec's; a sweep over data.batch_size would change nothing)."""
    import torch.utils.data as tud

    # Whether it shuffles shows only through torch's own batch sampler; a custom one may do either.
    batches = loader.batch_sampler
    sampler = batches.sampler if isinstance(batches, tud.BatchSampler) else None
    shuffles = {tud.RandomSampler: True, tud.SequentialSampler: False}.get(type(sampler))
    has = {"batch_size": loader.batch_size, "shuffle": shuffles, "drop_last": loader.drop_last,
           "num_workers": loader.num_workers}  # fmt: skip
    wrong = [
        f"data.{name} is {getattr(data, name)}, the loader's {has[name]}"
        for name in ("batch_size", "shuffle", "drop_last", "num_workers")
        if name in data.model_fields_set and has[name] is not None and has[name] != getattr(data, name)
    ]
    if wrong:
        raise SetupError(
            f"{source}: {key} is a DataLoader, which makes its own batches, and the spec's data keys say otherwise: "
            + "; ".join(wrong),
            hint="drop those keys (the loader's settings train), or make the target return a Dataset, which the "
            "spec's keys then batch",
        )


def _length(obj: Any, *, key: str, source: str) -> int:
    """len() of a dataset, whose own code may fail: reported as the data's fault."""
    try:
        return len(obj)
    except Exception as exc:
        raise SetupError(
            f"{source}: {key}: len() of the dataset raised {describe_exception(exc)}",
            hint="--debug shows the full traceback",
        ) from exc


def _data_object(target_obj: Any, block: TargetRef, *, key: str, source: str) -> Any:
    """A data target may be a factory (called with kwargs) or a ready Dataset/DataLoader instance; `key` is its
    target's key as the spec writes it (``data.train._target_``)."""
    import torch.utils.data as tud

    if isinstance(target_obj, (tud.Dataset, tud.DataLoader)) and not block.kwargs:
        return target_obj
    return instantiate(target_obj, kwargs=block.kwargs, key=key, source=source, target=block.target)


def load_checkpoint(model: torch.nn.Module, path: Path, *, source: str) -> None:
    """Load a state_dict for fine-tuning, with weights_only=True so a checkpoint cannot run code."""
    import torch

    if not path.exists():
        raise SetupError(
            f"{source}: model.checkpoint: no such file {path}", hint="fix the path (relative to the spec)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]  # torch's explanation goes on for lines
        raise SetupError(
            f"{source}: model.checkpoint: could not load {path} with weights_only=True: {one_line(first)}",
            hint="save it with torch.save(model.state_dict(), path)",
        ) from exc
    if not isinstance(state, dict):
        raise SetupError(
            f"{source}: model.checkpoint: {path} holds a {type(state).__name__}, not a state_dict",
            hint="save it with torch.save(model.state_dict(), path)",
        )
    # The state_dict as training code saves it: the first way of reading it that fits the model exactly.
    fits = next((c for c in _state_dict_readings(state) if state_dict_mismatch(model, c) is None), None)
    if fits is None:
        # A Lightning checkpoint's own mismatch, not its wrapper's.
        inner = state.get("state_dict")
        shown = inner if isinstance(inner, dict) else state
        raise SetupError(
            f"{source}: model.checkpoint: {path} does not fit the model: {state_dict_mismatch(model, shown)}",
            hint="the checkpoint must be a state_dict of the same architecture (read as saved, under 'state_dict', "
            f"'model', 'model_state_dict' or 'net', and with every key behind one of {', '.join(WRAPPER_PREFIXES)})",
        )
    state = fits
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise SetupError(
            f"{source}: model.checkpoint: {path} does not fit the model: {describe_exception(exc)}",
            hint="the checkpoint must be a state_dict of the same architecture",
        ) from exc


# Prefixes that wrappers put before every key of a model's state_dict: DataParallel and DDP, torch.compile, and a
# LightningModule holding the model as `self.model`.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


def _state_dict_readings(state: dict[Any, Any]) -> Iterator[dict[Any, Any]]:
    """A checkpoint's state_dict as saved, then as training code wraps one: under a key (a Lightning checkpoint's
    'state_dict', a training script's 'model', 'model_state_dict' or 'net'), with every key behind a wrapper's
    prefix, or both. Only one that fits the model exactly is loaded, so a reading cannot load the wrong weights."""
    nested = [
        state[k] for k in ("state_dict", "model", "model_state_dict", "net") if isinstance(state.get(k), dict)
    ]
    for inner in [state, *nested]:
        yield inner
        for prefix in WRAPPER_PREFIXES:
            if inner and all(isinstance(k, str) and k.startswith(prefix) for k in inner):
                yield {k[len(prefix) :]: v for k, v in inner.items()}


def state_dict_mismatch(model: torch.nn.Module, state: dict[Any, Any]) -> str | None:
    """How a state_dict differs from the model's: missing and unexpected keys, mismatched shapes, a few of each
    and the counts (torch's own message lists every key on many lines), or None when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [str(k) for k in state if k not in own]
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)} in the model"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = [
        f"{len(names)} {label} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        for label, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if names
    ]
    return one_line("; ".join(parts), limit=400) if parts else None


def _build_model(loaded: LoadedSpec, resolved: dict[str, Any]) -> torch.nn.Module:
    """The spec's model block: its target called with its kwargs, then its checkpoint loaded."""
    import torch

    spec, source = loaded.spec, loaded.path.name
    assert spec.model is not None  # the spec or its setup factory gives it (checked)
    key = loaded.target_key("model")  # as the file writes it (`model._target_` in a Hydra-style block)
    target = resolved["model"]
    if isinstance(target, torch.nn.Module):
        model = _built_module(target, spec.model.kwargs, key=key, source=source)
    else:
        model = instantiate(
            target, kwargs=spec.model.kwargs, key=key, source=source, target=spec.model.target
        )
    if not isinstance(model, torch.nn.Module):
        raise SetupError(
            f"{source}: {key} returned {type(model).__name__}, not a torch.nn.Module",
            hint=f"point {key} at an nn.Module class or a function returning one",
        )
    if spec.model.checkpoint:
        load_checkpoint(model, (loaded.base_dir / spec.model.checkpoint).resolve(), source=source)
    return model


def _build_loss(loaded: LoadedSpec, resolved: dict[str, Any]) -> Callable[..., Any]:
    """The spec's loss block: a loss function or a built loss module used as it is, or a loss class or factory
    called with its kwargs."""
    import torch

    spec, source = loaded.spec, loaded.path.name
    assert spec.loss is not None
    loss_target, key = resolved["loss"], loaded.target_key("loss")
    kwargs = _tensor_lists(loss_target, spec.loss.kwargs)
    if isinstance(loss_target, torch.nn.Module):
        loss_fn = _built_module(loss_target, kwargs, key=key, source=source)
    elif is_loss_function(loss_target, kwargs):  # e.g. torch.nn.functional.cross_entropy: used as is
        loss_fn = functools.partial(loss_target, **kwargs) if kwargs else loss_target
    else:
        loss_fn = instantiate(loss_target, kwargs=kwargs, key=key, source=source, target=spec.loss.target)
    if not callable(loss_fn):
        raise SetupError(
            f"{source}: {key} returned {type(loss_fn).__name__}, which is not callable",
            hint="use a loss class such as torch.nn.CrossEntropyLoss or a function (output, target) -> loss",
        )
    return loss_fn


def _built_module(
    target: torch.nn.Module, kwargs: dict[str, Any], *, key: str, source: str
) -> torch.nn.Module:
    """A target that is a module built already (`net = Net()` at a file's top level), used as it is rather than
    called (calling it runs its forward with no inputs); a copy, so that every run of the process (--repeats, a
    sweep) starts from the weights the file built."""
    if kwargs:
        raise SetupError(
            f"{source}: {key} is a {type(target).__name__} built already, so it takes no kwargs",
            hint=f"point {key} at its class or at a function that builds it, or drop the kwargs",
        )
    return copy.deepcopy(target)


def _tensor_lists(obj: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs with a list of numbers made a float tensor where the signature types the argument as a Tensor
    (CrossEntropyLoss's `weight`, BCEWithLogitsLoss's `pos_weight`): YAML can write the list, not the tensor."""
    import torch

    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return kwargs
    # Annotations are strings ('torch.Tensor | None') or typing objects (Optional[Tensor]) by torch version.
    tensors = {name for name, p in params.items() if re.search(r"\bTensor\b", str(p.annotation))}
    return {
        name: torch.tensor(value, dtype=torch.get_default_dtype())
        if name in tensors and _numbers(value)
        else value
        for name, value in kwargs.items()
    }


def _numbers(value: Any) -> bool:
    """A non-empty list of numbers, or of such lists (a matrix)."""
    if not isinstance(value, list) or not value:
        return False
    return all(
        _numbers(v) if isinstance(v, list) else isinstance(v, (int, float)) and not isinstance(v, bool)
        for v in value
    )


def _build_optimizer(
    loaded: LoadedSpec, resolved: dict[str, Any], model: torch.nn.Module
) -> torch.optim.Optimizer:
    """The spec's optimizer block over the model's parameters, starting at the test's lowest LR."""
    import torch

    spec, source = loaded.spec, loaded.path.name
    assert spec.optimizer is not None
    key = loaded.target_key("optimizer")
    groups = spec.optimizer.groups
    # With groups, the optimizer (or a factory) gets torch's param-group dicts, each with its own options and LR.
    params = (
        param_groups(model, groups, lr=spec.range_test.min_lr, key="optimizer.groups", source=source)
        if groups
        else model.parameters()
    )
    optimizer = instantiate(
        resolved["optimizer"],
        params,
        kwargs={**spec.optimizer.kwargs, "lr": spec.range_test.min_lr},
        key=key,
        source=source,
        target=spec.optimizer.target,
    )
    if not isinstance(optimizer, torch.optim.Optimizer) or "lr" not in optimizer.param_groups[0]:
        raise SetupError(
            f"{source}: {key} built {type(optimizer).__name__}, which has no 'lr' in its param groups",
            hint="use a torch.optim optimizer (SGD, Adam, AdamW, ...)",
        )
    if groups:
        check_group_options(optimizer, groups, key="optimizer.groups", source=source)
    return optimizer


def build_components(
    loaded: LoadedSpec,
    *,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> Components:
    """Resolve every target, check kwargs, then build everything fresh on `device`.

    Under torch.distributed (`world_size > 1`) the train set gets a DistributedSampler and the model is wrapped in
    DistributedDataParallel, so the test runs on the same global batch as training will.
    """
    import torch
    import torch.utils.data as tud

    spec = loaded.spec
    source = loaded.path.name
    # Seeded before the targets' files are imported too, so that what they build at import (`net = Net()` at a
    # file's top level) is the same on every run; and again after, so that building does not depend on that.
    seed_everything(spec.seed)
    resolved = validate_spec_targets(loaded)
    seed_everything(spec.seed)

    # A `setup:` factory's pieces replace the blocks of the same name (checked: never both, none missing).
    made = setup_parts(loaded, resolved["setup"]) if spec.setup is not None else {}
    model = made["model"] if "model" in made else _build_model(loaded, resolved)
    model.to(device)
    if spec.channels_last:
        model.to(memory_format=torch.channels_last)

    data = spec.data or DataSpec()
    train_obj, train_key = made.get("data"), "data.train"
    if train_obj is None:
        assert data.train is not None  # the spec or the factory gives it (checked)
        key = loaded.target_key("data.train")
        train_obj = _data_object(resolved["data.train"], data.train, key=key, source=source)
    else:
        train_key = from_setup(loaded, "data")
    sampler = None
    if world_size > 1 and not _is_loader(train_obj) and not isinstance(train_obj, tud.IterableDataset):
        sampler = tud.DistributedSampler(
            train_obj, num_replicas=world_size, rank=rank, shuffle=data.shuffle, seed=spec.seed
        )
    loader_args = {
        "source": source,
        "batch_size": data.batch_size,
        "shuffle": data.shuffle,
        "num_workers": data.num_workers,
        "device": device,
        "seed": spec.seed,
    }
    train_loader = make_loader(
        train_obj, key=train_key, sampler=sampler, drop_last=data.drop_last, **loader_args
    )
    if _is_loader(train_obj):
        _check_loader_agrees(train_obj, data, key=train_key, source=source)
    val_obj, val_key = made.get("val_data"), "data.val"
    if data.val is not None:
        val_obj = _data_object(
            resolved["data.val"], data.val, key=loaded.target_key("data.val"), source=source
        )
    elif val_obj is not None:
        val_key = from_setup(loaded, "val_data")
    val_loader = None
    if val_obj is not None:
        val_loader = make_loader(val_obj, key=val_key, **{**loader_args, "shuffle": False})

    # No loss at all is allowed with a step that computes the loss itself (spec and factory checked that).
    loss_fn = made["loss"] if "loss" in made else _build_loss(loaded, resolved) if spec.loss else None
    if isinstance(loss_fn, torch.nn.Module):
        loss_fn.to(device)

    param_count = sum(p.numel() for p in model.parameters())
    if param_count == 0:
        model_key = from_setup(loaded, "model") if "model" in made else loaded.target_key("model")
        raise SetupError(f"{source}: {model_key}: the model has no parameters", hint="nothing to train")
    train_model: torch.nn.Module = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if spec.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]

    optimizer = made["optimizer"] if "optimizer" in made else _build_optimizer(loaded, resolved, model)

    step_fn = resolved.get("step")
    if step_fn is not None and spec.step is not None and spec.step.kwargs:
        step_fn = functools.partial(step_fn, **spec.step.kwargs)  # validated against its signature already
    if step_fn is not None and spec.step is not None and not step_takes_loss(step_fn) and made.get("loss"):
        raise SetupError(
            f"{source}: {loaded.target_key('step')}: '{spec.step.target}' takes (model, batch), no loss_fn, so the "
            f"{from_setup(loaded, 'loss')} would go unused",
            hint="return no loss from setup, or give the step a third argument, loss_fn, and use it",
        )
    if step_fn is not None:
        step_fn = as_step(step_fn)
    from clrfind.engine import loader_length

    batches_per_epoch = loader_length(train_loader)
    return Components(
        model=train_model,
        train_loader=train_loader,
        val_loader=val_loader,
        loss_fn=loss_fn,
        optimizer=optimizer,
        step_fn=step_fn,
        device=device,
        batch_size=getattr(train_loader, "batch_size", None),
        batches_per_epoch=batches_per_epoch,
        param_count=param_count,
        world_size=world_size,
    )
