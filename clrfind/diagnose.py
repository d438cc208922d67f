"""What a run's setup gets wrong, found before the loop measures anything, or from a non-finite loss: each finding
is a `Fault` in the run's own parts, which `clrfind.faults.Terms` words for a spec or a library call.

The engine asks at three moments: before the first step (`refuse_undrivable`, `refuse_sorted`: an optimizer or
data that no LR could test), on the first batch (`diagnose_first_batch` for a failure, `judged_warnings` and
`nonfinite_data_fault` / `nonfinite_weights_fault` for a step that ran but measured nothing), and on a non-finite
loss mid-run (`nonfinite_data_fault`). Everything here reads torch's own errors, warnings and tensors; nothing steps.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import numbers
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from clrfind.errors import USER_FAILURES, describe_exception, one_line
from clrfind.faults import (
    Fault,
    Part,
    is_bce_of_scores,
    is_one_sample_norm,
    label_out_of_range,
    labels_range_advice,
)

StepFn = Callable[[torch.nn.Module, Any, Callable[..., torch.Tensor]], torch.Tensor]


def describe_batch(batch: Any) -> str:
    """Shapes of a batch for messages and `clrfind check`: `(Tensor[64, 3, 32, 32] float32, Tensor[64] int64)`."""
    if isinstance(batch, torch.Tensor):
        return f"Tensor[{', '.join(map(str, batch.shape))}] {str(batch.dtype).removeprefix('torch.')}"
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{k}: {describe_batch(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (list, tuple)):
        parts = [describe_batch(v) for v in batch]
        # A collated list of non-tensors (32 strings) reads as its count, not 32 names.
        inner = f"{len(parts)} x {parts[0]}" if len(parts) > 3 and len(set(parts)) == 1 else ", ".join(parts)
        return f"({inner})" if isinstance(batch, tuple) else f"[{inner}]"
    return type(batch).__name__


def _named_tensors(x: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors nested in a batch's tuples, lists and dicts, each with its place (`name[0]['ids']`)."""
    if isinstance(x, torch.Tensor):
        yield name, x
    elif isinstance(x, Mapping):
        for key, value in x.items():
            yield from _named_tensors(value, f"{name}[{key!r}]")
    elif isinstance(x, (list, tuple)):
        for k, value in enumerate(x):
            yield from _named_tensors(value, f"{name}[{k}]")


def _has_tensor(x: Any) -> bool:
    """Whether a batch's part holds a tensor at all: untokenized text or label names collate to tuples of str."""
    return next(_named_tensors(x, ""), None) is not None


def _batch_tensors(batch: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """A batch's tensors, named as the default contract reads them, `inputs` and `targets` for a pair, else by the
    batch's own indices and keys."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return itertools.chain(_named_tensors(batch[0], "inputs"), _named_tensors(batch[1], "targets"))
    return _named_tensors(batch, "batch")


def nonfinite_values(batch: Any) -> str | None:
    """Where a batch holds NaN or inf, as `inputs Tensor[32, 20] float32: 1 NaN`; None when every value is finite.

    Read only after a non-finite loss (a pass over the batch, and a sync on an accelerator). Names follow the
    default contract, `inputs` and `targets` for a pair, else the batch's own indices and keys.
    """
    found: list[str] = []
    for name, x in _batch_tensors(batch):
        if x.is_floating_point() or x.is_complex():
            counts = [(int(torch.isnan(x).sum()), "NaN"), (int(torch.isinf(x).sum()), "inf")]
            if any(n for n, _ in counts):
                what = ", ".join(f"{n} {word}" for n, word in counts if n)
                found.append(f"{name} {describe_batch(x)}: {what}")
    return "; ".join(found) or None


def graph_data_fault(batch: Any) -> Fault | None:
    """The fault of a batch whose tensors require grad: data computed by a model (features, a teacher's outputs)
    without torch.no_grad(). Each step's backward goes on into the graph that made them, and the second one fails
    ("backward through the graph a second time"), blamed on the model; None for data without a graph."""
    graph = [f"{name} {describe_batch(x)}" for name, x in _batch_tensors(batch) if x.requires_grad]
    return Fault("data_requires_grad", "data", tensors=", ".join(graph)) if graph else None


def nonfinite_data_fault(batch: Any, loss: float) -> Fault | None:
    """The fault of a non-finite loss that the batch explains (NaN or inf in its data); None when it does not, and
    the LR may be the cause. The step is the engine's to name (its count of steps taken)."""
    values = nonfinite_values(batch)
    return None if values is None else Fault("data_nonfinite", "data", values=values, value=str(loss))


def nonfinite_weights(model: torch.nn.Module) -> list[str]:
    """The names of the parameters and floating-point buffers (batch norm's running statistics) holding NaN or
    inf."""
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    return [name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def nonfinite_weights_fault(model: torch.nn.Module, loss: float) -> Fault | None:
    """A first loss that the model's initial weights explain: some hold NaN or inf (a layer left uninitialised with
    torch.empty, a checkpoint saved after a blow-up). None when every weight is finite."""
    bad = nonfinite_weights(model)
    if not bad:
        return None
    return Fault("model_nonfinite_start", "model", params=_some(bad), value=str(loss))


# Longest exception message quoted in a note on a refused non-finite step.
_RAISED_LIMIT = 120


def refused_nonfinite(model: torch.nn.Module, exc: BaseException) -> str | None:
    """Why a step that raised is a non-finite loss, not a failure: the step before made weights NaN or inf (the LR
    blew them up), and the user's code refused them, as torch.distributions refuses a NaN parameter, instead of
    returning a NaN loss. None when every weight is finite: then the failure is the code's."""
    bad = nonfinite_weights(model)
    if not bad:
        return None
    # Cut to one short line: torch.distributions' message prints the whole NaN tensor.
    text = one_line(describe_exception(exc), _RAISED_LIMIT)
    return f"{text}, on weights the step before had made non-finite ({_some(bad)})"


def check_scalar_loss(loss: Any, part: Part) -> None:
    """The first loss is a scalar that backpropagates; else the fault of `part`, the code that made it."""
    if not isinstance(loss, torch.Tensor):
        if loss is None:
            advice = "it returns nothing: end it with `return loss`"
        elif isinstance(loss, Mapping) and "loss" in loss:  # a Hugging Face ModelOutput, or a dict of outputs
            advice = (
                "return its loss alone, a scalar tensor (`return out['loss']`; `out.loss` for a ModelOutput)"
            )
        elif isinstance(loss, (tuple, list, Mapping)):
            advice = (
                "return the loss alone, a scalar tensor (`return loss`, not `return loss, logits` or a dict)"
            )
        else:
            advice = "return the scalar loss tensor (before .item())"
        raise Fault("loss_type", part, type=type(loss).__name__, advice=advice)
    if loss.numel() != 1:
        raise Fault("loss_shape", part, shape=str(tuple(loss.shape)))
    if not loss.requires_grad:
        raise Fault("loss_no_grad", part)


def judged_loss(loss_fn: Callable[..., torch.Tensor] | None) -> Callable[..., torch.Tensor] | None:
    """`loss_fn` for the default step's first batch: torch's cross-entropy or NLL loss, judging the output it is
    given (`_class_output_fault`) once it has computed the loss; any other loss as it is."""
    nll = isinstance(loss_fn, torch.nn.NLLLoss) or loss_fn is torch.nn.functional.nll_loss
    cross_entropy = (
        isinstance(loss_fn, torch.nn.CrossEntropyLoss) or loss_fn is torch.nn.functional.cross_entropy
    )
    if loss_fn is None or not (nll or cross_entropy):
        return loss_fn
    judged = loss_fn

    def judging(out: Any, targets: Any) -> torch.Tensor:
        loss = judged(out, targets)  # a shape or dtype the loss rejects is its own, clearer, error
        fault = _class_output_fault(out, nll=nll)
        if fault is not None:
            raise fault
        return loss

    return judging


def _class_output_fault(out: Any, *, nll: bool) -> Fault | None:
    """Class scores of the wrong kind for the loss, which trains on them without an error, and badly: raw scores
    or probabilities under NLLLoss, whose loss -output[target] falls without end as raw scores grow, and
    probabilities (a softmax in the model) under cross-entropy, which takes a second softmax. The class axis is
    dim 1, as both losses read it; log_softmax's log-probabilities are exact to ~1e-6, a softmax's sums too."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() < 2 or out.shape[1] < 2:
        return None
    with torch.no_grad():
        scores = out.detach().float()
        if not bool(scores.isfinite().all()):
            return None  # the first loss's own check names non-finite values
        sums = scores.sum(dim=1)
        probabilities = bool(
            (scores >= -1e-3).all() and (scores <= 1 + 1e-3).all() and (sums - 1).abs().max() < 1e-2
        )
        if nll:
            mass = scores.logsumexp(dim=1).exp()  # 1 for log-probabilities
            if float(mass.log().abs().median()) <= 0.05:
                return None
            if probabilities:
                what = "they are probabilities (each sample's sum to 1), as from a softmax"
                instead = " instead of its softmax"
            else:
                low, high = float(mass.min()), float(mass.max())
                what = (
                    f"exp of each sample's outputs sums to {low:.3g}-{high:.3g} over the classes, not 1, so the loss "
                    "can fall without end as they grow"
                )
                instead = ""
            return Fault("loss_nll_scores", "loss", output=describe_batch(out), what=what, instead=instead)
        if not probabilities:
            return None
        # The least cross-entropy of a softmax of probabilities: a one-hot p gives log(1 + (C - 1) / e).
        floor = math.log1p((out.shape[1] - 1) / math.e)
        return Fault("loss_ce_probabilities", "loss", output=describe_batch(out), floor=f"{floor:.3g}")


# torch's warning (mse_loss, l1_loss, huber_loss, ...) when the targets' shape is not the output's.
_BROADCAST = re.compile(
    r"Using a target size \(torch\.Size\(\[([\d, ]*)\]\)\) that is different to the input size "
    r"\(torch\.Size\(\[([\d, ]*)\]\)\)"
)


def _broadcast_fault(warning: warnings.WarningMessage, part: Part) -> Fault | None:
    """The fault in torch's broadcasting warning, where broadcasting makes a cross product: (N,) targets against an
    (N, 1) output give an (N, N) loss, every sample against every target, so each loss of the test is wrong and
    the curve of a model that learns stays level. A broadcast within one side's shape is left to the warning."""
    match = _BROADCAST.search(str(warning.message))
    if match is None:
        return None
    targets, output = (tuple(int(v) for v in group.split(",") if v.strip()) for group in match.groups())
    try:
        shape = tuple(torch.broadcast_shapes(targets, output))
    except RuntimeError:
        return None
    if math.prod(shape) <= max(math.prod(targets), math.prod(output)):
        return None
    return Fault(
        "loss_broadcast", part, targets=str(list(targets)), output=str(list(output)), shape=str(list(shape))
    )


@contextlib.contextmanager
def judged_warnings(part: Part) -> Iterator[None]:
    """The first step's warnings, passed on as they came, except a loss's broadcast of its targets against the
    model's output into a larger loss (`_broadcast_fault`), raised as the fault once the step has finished."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except BaseException:
        _pass_on(caught)
        raise
    faults = [_broadcast_fault(w, part) for w in caught]
    _pass_on([w for w, fault in zip(caught, faults, strict=True) if fault is None])
    found = next((fault for fault in faults if fault is not None), None)
    if found is not None:
        raise found


def _pass_on(caught: list[warnings.WarningMessage]) -> None:
    """Warn again what a `catch_warnings(record=True)` held back, under the caller's own filters."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def diagnose_first_batch(
    model: torch.nn.Module,
    batch: Any,
    loss_fn: Callable[..., torch.Tensor] | None,
    step_fn: StepFn | None,
    exc: BaseException,
) -> Fault:
    """Turn an exception on the very first batch into the fault of the part that did not fit."""
    if step_fn is None and not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        # Several tensors then the targets, (x1, x2, y): a model of several inputs, most likely.
        several = isinstance(batch, (tuple, list)) and len(batch) > 2
        return Fault(
            "batch_layout_several" if several else "batch_layout", "data", batch=describe_batch(batch)
        )
    if step_fn is None:
        inputs, targets = batch
        try:
            with torch.no_grad():
                out = model(inputs)
        except USER_FAILURES as inner:
            return _model_input_fault(model, inputs, inner)
        kind, facts = _loss_input_kind(out, targets, exc)
        return Fault(
            kind,
            "loss",
            output=describe_batch(out),
            targets=describe_batch(targets),
            error=describe_exception(exc),
            **facts,
        )
    kind = "step_failed" if loss_fn is not None else "step_failed_no_loss"
    return Fault(kind, "step", batch=describe_batch(batch), error=describe_exception(exc))


def _loss_input_kind(out: Any, targets: Any, exc: BaseException) -> tuple[str, dict[str, str]]:
    """Which fault the loss's rejection of the first output is, and its facts beyond the output, targets and error:
    the generic one, or one whose fix torch's error or the shapes pin down."""
    # Several outputs (a tuple, a dict, a Hugging Face ModelOutput): the default step passes them all on.
    if isinstance(out, (tuple, list)) or hasattr(out, "keys"):
        return "loss_input_structured", {}
    if isinstance(out, torch.Tensor) and not _has_tensor(targets):
        return "loss_input_label_names", {}
    if not (isinstance(out, torch.Tensor) and isinstance(targets, torch.Tensor)):
        return "loss_input", {}
    text = str(exc)
    integers = not targets.is_floating_point()
    if integers and label_out_of_range(exc) is not None and out.dim() >= 2 and targets.numel():
        low, high = int(targets.min()), int(targets.max())
        return "loss_input_labels_range", {"advice": labels_range_advice(low, high, out.shape[1])}
    # A sequence model's scores, (B, T, C), against a class per position, (B, T): cross-entropy wants (B, C, T).
    if integers and out.dim() == 3 and out.shape[:2] == targets.shape and "Expected target size" in text:
        return "loss_input_sequence", {}
    if is_bce_of_scores(exc):
        return "loss_bce_scores", {}
    # One output per sample as a column against a flat row of targets: BCE refuses to broadcast them (MSE only
    # warns, `_broadcast_fault`).
    if (
        out.dim() == 2
        and out.shape[1] == 1
        and targets.dim() == 1
        and len(targets) == len(out)
        and re.search(r"same (as input )?size", text)
    ):
        return "loss_input_column_output", {
            "unsqueeze": "y.float().unsqueeze(1)" if integers else "y.unsqueeze(1)"
        }
    # Class indices stored as floats (a label column read from a float array): cross-entropy and NLL take the
    # indices as integers, and floats only as class probabilities of the output's own shape.
    if not integers and out.dim() >= 2 and targets.shape == out.shape[:1] + out.shape[2:] and "Long" in text:
        return "loss_input_float_labels", {}
    if integers:
        # Class indices as a column, (B, 1), which cross-entropy and NLL take as several targets: a dataset that
        # returns each label as a 1-element tensor or array.
        if targets.dim() == 2 and targets.shape[1] == 1 and "multi-target not supported" in text:
            return "loss_input_column", {}
        # Integer targets for a loss that computes with them as numbers (BCE, MSE): torch's error names a cast.
        if "can't be cast to the desired output type" in text:
            return "loss_input_int_targets", {}
    return "loss_input", {}


def _model_input_fault(model: torch.nn.Module, inputs: Any, exc: BaseException) -> Fault:
    """The model's failure on the first inputs, with the fix where torch's error says what it is: batch norm given
    one sample, and the two usual dtype slips, float64 inputs (numpy's default) or integer ones into float32
    weights and float token ids into an embedding. Otherwise the shapes are the likelier cause."""
    facts = {"inputs": describe_batch(inputs), "error": describe_exception(exc)}
    if is_one_sample_norm(exc):
        return Fault("model_one_sample", "model", **facts)
    text = str(exc)
    if not _has_tensor(inputs):  # text, images as PIL objects, file names
        return Fault("model_input_not_tensors", "model", **facts)
    if isinstance(inputs, Mapping):  # a tokenizer's output: the model takes its keys as arguments
        return Fault("model_input_mapping", "model", **facts)
    # ((x1, x2), y) into a model whose forward takes x1 and x2 as two arguments: it was given one.
    if isinstance(inputs, (tuple, list)) and len(inputs) > 1 and "required positional argument" in text:
        return Fault("model_input_several", "model", **facts)
    if isinstance(inputs, torch.Tensor):
        kind = _image_layout_kind(inputs, text)
        if kind is not None:
            return Fault(kind, "model", **facts)
    weights = {p.dtype for p in model.parameters() if p.is_floating_point()}
    given = {x.dtype for _, x in _named_tensors(inputs, "inputs")}
    if "'indices'" in text and any(d.is_floating_point for d in given):
        return Fault("model_input_ids", "model", **facts)
    if len(weights) == 1 and re.search(r"dtype|scalar type|type \(\w+\) and", text) and not given <= weights:
        weight = str(next(iter(weights))).removeprefix("torch.")
        floats = sorted(str(d).removeprefix("torch.") for d in given if d.is_floating_point)
        or_model = f", or the model {floats[0]} (model.to(torch.{floats[0]}))" if len(floats) == 1 else ""
        numpy = "; numpy arrays are float64 unless told otherwise" if torch.float64 in given else ""
        return Fault("model_input_dtype", "model", weights=weight, or_model=or_model, numpy=numpy, **facts)
    return Fault("model_input", "model", **facts)


# torch's errors for a convolution given the wrong channel count, and a Linear layer the wrong width.
_CHANNELS = re.compile(r"expected input\[[\d, ]+\] to have (\d+) channels, but got (\d+) channels")
_MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \(\d+x\d+ and (\d+)x\d+\)")


def _image_layout_kind(inputs: torch.Tensor, text: str) -> str | None:
    """The fault of images laid out otherwise than the model reads them, where torch's error and the inputs' shape
    say which: channels last, (B, H, W, C), as numpy and PIL hold images, into a convolution that reads (B, C, H,
    W); no channel axis, (B, H, W), which a 2-D convolution takes as one unbatched image of B channels; images
    into a Linear layer that takes them flattened."""
    channels = _CHANNELS.search(text)
    if channels is not None:
        wanted, got = int(channels.group(1)), int(channels.group(2))
        if inputs.dim() == 4 and inputs.shape[-1] == wanted and inputs.shape[1] == got:
            return "model_input_channels_last"
        if inputs.dim() == 3 and got == inputs.shape[0]:
            return "model_input_no_channel"
    matmul = _MATMUL.search(text)
    if matmul is not None and inputs.dim() >= 3 and int(matmul.group(1)) == math.prod(inputs.shape[1:]):
        return "model_input_unflattened"
    return None


def refuse_undrivable(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Any, step_fn: StepFn | None
) -> None:
    """Setups whose LR cannot move the model, refused before the first step: nothing the optimizer steps requires
    grad (a frozen model, or an optimizer over its frozen part: the curve would be flat at every LR), an optimizer
    over another model's parameters, an optimizer whose step() needs a closure (the loop steps once per LR,
    without one), and Rprop, which takes lr only as its first step size (the ladder's later LRs would change
    nothing, and so would the schedule it exports)."""
    stepped = [p for group in optimizer.param_groups for p in group["params"]]
    if stepped and not any(p.requires_grad for p in stepped):
        if not any(p.requires_grad for p in model.parameters()):
            raise Fault("model_frozen", "model", count=str(len(list(model.parameters()))))
        raise Fault("optimizer_frozen", "optimizer", count=str(len(stepped)))
    # The default step trains only what the model and the loss hold; a step function may train anything else.
    if stepped and step_fn is None:
        own = {id(p) for p in model.parameters()}
        if isinstance(loss_fn, torch.nn.Module):
            own |= {id(p) for p in loss_fn.parameters()}
        if not any(id(p) in own for p in stepped):
            raise Fault("optimizer_foreign", "optimizer", count=str(len(stepped)))
    closure = inspect.signature(type(optimizer).step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise Fault("optimizer_closure", "optimizer")
    if isinstance(optimizer, torch.optim.Rprop):
        raise Fault("optimizer_lr_unused", "optimizer")


def refuse_sorted(loader: Iterable[Any]) -> None:
    """A loader that does not shuffle a dataset sorted by class, refused before the first step: each batch then
    holds one class, the loss falls as the model learns to say it and jumps when the next class comes, and the
    curve follows the classes, not the LR (a test on 4 sorted classes 'diverged' at lr 3e-05 and advised a lower
    start). Read from the dataset, not the loader: the first batch's labels all one class, and two of three
    samples further on (half way, three quarters, the last) of another; unsorted data with one class at 95% meets
    both about once in a thousand. Labels are read only from (inputs, label) samples."""
    inner = getattr(getattr(loader, "batch_sampler", None), "sampler", getattr(loader, "sampler", None))
    size = getattr(loader, "batch_size", None)
    if not isinstance(inner, torch.utils.data.SequentialSampler) or size is None or size < 8:
        return
    dataset = getattr(loader, "dataset", None)
    try:
        n = len(dataset)  # type: ignore[arg-type]
        if n < 4 * size:
            return
        first = _sample_label(dataset, 0)
        # Stops at the first other label: unsorted data costs a read or two, not a batch of them.
        if any(_sample_label(dataset, i) != first for i in range(1, size)):
            return
        later = {i: _sample_label(dataset, i) for i in (n // 2, 3 * n // 4, n - 1)}
    except USER_FAILURES:  # not labels, or not readable by index: whatever is wrong shows in the run itself
        return
    if sum(label != first for label in later.values()) >= 2:
        samples = ", ".join(f"sample {i}: class {label}" for i, label in later.items())
        raise Fault("data_sorted", "data", size=str(size), label=str(first), samples=samples)


def _sample_label(dataset: Any, i: int) -> int:
    """The integer class label of an (inputs, label) sample; ValueError for any other sample."""
    item = dataset[i]
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise ValueError("not an (inputs, label) sample")
    label = item[1]
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        return int(label)
    if isinstance(label, numbers.Integral) and not isinstance(label, bool):  # numpy's integers too
        return int(label)
    raise ValueError("not an integer label")


def refuse_sparse_clip(model: torch.nn.Module) -> None:
    """torch's clipping takes a norm or clamps in place, and neither works on a sparse gradient (an
    nn.Embedding(sparse=True)): say so in the setup's terms, not as a backend error from the optimizer's step."""
    sparse = [name for name, p in model.named_parameters() if p.grad is not None and p.grad.is_sparse]
    if sparse:
        raise Fault("clip_sparse", "clip", params=_some(sparse))


def _some(names: list[str]) -> str:
    """The first three of the parameters a fault names, and how many more: `a, b, c and 4 more`."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
