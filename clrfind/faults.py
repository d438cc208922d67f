"""What the engine found wrong, in terms of the run's parts, and its wording for a spec or for a library call.

The engine knows a run as parts (the data, the model, the loss, the step, the optimizer, ...), not as spec keys:
the same fault must read `data.train 'task.py:triples': a batch is ..., add step: {target: ...}` to someone
running a spec and `train_loader: a batch is ..., pass step_fn=...` to someone calling `range_test()` in a
notebook. The engine raises a `Fault` (kind, part, facts); `Terms` words it once, for one of the two paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from clrfind.errors import SetupError, exception_text

if TYPE_CHECKING:
    from clrfind.spec import LoadedSpec, TargetRef

Part = Literal["data", "val_data", "model", "loss", "step", "clip", "optimizer", "precision", "metric"]
Path_ = Literal["spec", "library"]

# BCELoss on raw scores: torch's error ("all elements of input should be between 0 and 1") on the first step, or
# mid-run once the scores leave [0, 1].
BCE_SCORES = (
    "BCELoss takes probabilities, and the model's outputs left [0, 1]: end the model with a sigmoid, or give its "
    "raw scores to torch.nn.BCEWithLogitsLoss (the same loss, numerically safer)"
)


def labels_range_advice(low: int, high: int, classes: int | None) -> str:
    """What to do about class indices outside 0..classes-1 (torch's 'Target N is out of bounds'), from the labels'
    range where it is known (the first batch's) and the number of class scores (None when unknown, mid-run)."""
    top = "the number of classes - 1" if classes is None else str(classes - 1)
    if low < 0:
        return (
            f"a label of {low}: labels run from 0 to {top}; if {low} marks samples without a label, set the loss's "
            f"ignore_index to it (ignore_index: {low} under loss.kwargs; CrossEntropyLoss(ignore_index={low}))"
        )
    if classes is not None and low == 1 and high == classes:
        return f"the labels run from 1 to {high}: subtract 1 in the data (y - 1), so that they run from 0 to {top}"
    more = f" ({high + 1})" if classes is not None else ""
    return (
        f"a label past the classes the model scores: labels run from 0 to {top} (relabel the data, or give the "
        f"model's last layer more outputs{more})"
    )


# kind -> (message, fix for a spec, fix for a library call). Messages name parts as {data}, {model}, ..., and the
# part the fault blames as {blamed}; the other fields ({batch}, {error}, ...) are the fault's facts.
_TEXTS: dict[str, tuple[str, str, str]] = {
    "batch_layout": (
        "{data}: a batch is {batch}, not an (inputs, targets) pair",
        "add `step: {{target: file.py:fn}}` with fn(model, batch, loss_fn) -> loss for other batch layouts",
        "pass step_fn=fn(model, batch, loss_fn) -> loss for other batch layouts",
    ),
    "batch_layout_several": (
        "{data}: a batch is {batch}, not an (inputs, targets) pair",
        "for a model of several inputs, add `step: {{target: file.py:fn}}` with fn(model, batch, loss_fn) that "
        "returns loss_fn(model(*batch[:-1]), batch[-1])",
        "for a model of several inputs, pass step_fn=fn(model, batch, loss_fn) that returns "
        "loss_fn(model(*batch[:-1]), batch[-1])",
    ),
    "model_input_several": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "the inputs are several tensors, and the default step passes them as one argument, model(inputs): add "
        "`step: {{target: file.py:fn}}` with fn(model, batch, loss_fn) that returns loss_fn(model(*inputs), "
        "targets)",
        "the inputs are several tensors, and the default step passes them as one argument, model(inputs): pass "
        "step_fn=fn(model, batch, loss_fn) that returns loss_fn(model(*inputs), targets)",
    ),
    "model_input": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "check the model's expected input shape against the batches of {data}",
        "check the model's expected input shape against the batches of {data}",
    ),
    "model_input_dtype": (
        "{model}: the model failed on inputs {inputs}, its weights being {weights}: {error}",
        "make the inputs {weights} in {data} (torch.as_tensor(x, dtype=torch.{weights}){numpy}){or_model}",
        "make the inputs {weights} in {data} (torch.as_tensor(x, dtype=torch.{weights}){numpy}){or_model}",
    ),
    "model_one_sample": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "batch norm normalises over the batch, and one sample has no spread: set data.batch_size to 2 or more",
        "batch norm normalises over the batch, and one sample has no spread: use a DataLoader with batch_size 2 or "
        "more",
    ),
    "model_input_ids": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "an embedding looks its inputs up as token ids, which must be integers: make the inputs of {data} torch.long",
        "an embedding looks its inputs up as token ids, which must be integers: make the inputs of {data} torch.long",
    ),
    "model_input_not_tensors": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "the samples of {data} are not tensors: turn each into one in the dataset (text into token ids with a "
        "tokenizer, an image with torchvision.transforms.ToTensor()), or add `step: {{target: file.py:fn}}` with "
        "fn(model, batch, loss_fn) that does",
        "the samples of {data} are not tensors: turn each into one in the dataset (text into token ids with a "
        "tokenizer, an image with torchvision.transforms.ToTensor()), or pass step_fn=fn(model, batch, loss_fn) "
        "that does",
    ),
    "model_input_mapping": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "the inputs are a dict, and the default step passes it as one argument, model(inputs): add `step: "
        "{{target: file.py:fn}}` with fn(model, batch, loss_fn) that returns loss_fn(model(**inputs), targets)",
        "the inputs are a dict, and the default step passes it as one argument, model(inputs): pass "
        "step_fn=fn(model, batch, loss_fn) that returns loss_fn(model(**inputs), targets)",
    ),
    "model_input_channels_last": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "the images are channels last, (B, H, W, C), as numpy and PIL hold them, and torch's convolutions read (B, "
        "C, H, W): permute each image in {data} (torch.as_tensor(img).permute(2, 0, 1), or "
        "torchvision.transforms.ToTensor())",
        "the images are channels last, (B, H, W, C), as numpy and PIL hold them, and torch's convolutions read (B, "
        "C, H, W): permute each image in {data} (torch.as_tensor(img).permute(2, 0, 1), or "
        "torchvision.transforms.ToTensor())",
    ),
    "model_input_no_channel": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "the images have no channel axis, (B, H, W), and a 2-D convolution reads (B, C, H, W) (it took the batch "
        "for one image's channels): add the axis in {data} (img.unsqueeze(0) on each image)",
        "the images have no channel axis, (B, H, W), and a 2-D convolution reads (B, C, H, W) (it took the batch "
        "for one image's channels): add the axis in {data} (img.unsqueeze(0) on each image)",
    ),
    "model_input_unflattened": (
        "{model}: the model failed on inputs {inputs}: {error}",
        "a Linear layer takes each sample flattened: put torch.nn.Flatten() before it in the model, or flatten "
        "each sample in {data} (x.flatten())",
        "a Linear layer takes each sample flattened: put torch.nn.Flatten() before it in the model, or flatten "
        "each sample in {data} (x.flatten())",
    ),
    "loss_input": (
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "make the model's output and the targets fit the loss (shapes, dtypes, number of classes)",
        "make the model's output and the targets fit the loss (shapes, dtypes, number of classes)",
    ),
    "loss_broadcast": (
        "{blamed} was given targets of shape {targets} for a model output of shape {output}, and broadcast them "
        "into a {shape} loss: every sample against every target (torch warns: 'likely incorrect results')",
        "give the targets the output's shape in {data} (y.view(-1, 1) or y.unsqueeze(1)), or squeeze the output",
        "give the targets the output's shape in {data} (y.view(-1, 1) or y.unsqueeze(1)), or squeeze the output",
    ),
    "loss_input_column": (  # integer targets of shape (B, 1)
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "class indices go as one label per sample, shape (B,): squeeze the targets' last axis in {data} "
        "(y.squeeze(1), or a label per item rather than a 1-element tensor)",
        "class indices go as one label per sample, shape (B,): squeeze the targets' last axis in {data} "
        "(y.squeeze(1), or a label per item rather than a 1-element tensor)",
    ),
    "loss_input_float_labels": (  # class indices as floats, one per sample
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "the targets are one class index per sample, stored as floats: make them integers in {data} (y.long())",
        "the targets are one class index per sample, stored as floats: make them integers in {data} (y.long())",
    ),
    "loss_input_label_names": (  # labels as strings: the default collate leaves them a tuple
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "the labels of {data} are not tensors: map each to its class index, 0 to the number of classes - 1, in the "
        "dataset (e.g. {{'cat': 0, 'dog': 1}}[label])",
        "the labels of {data} are not tensors: map each to its class index, 0 to the number of classes - 1, in the "
        "dataset (e.g. {{'cat': 0, 'dog': 1}}[label])",
    ),
    "loss_input_labels_range": (  # class indices outside 0..C-1: torch's "Target N is out of bounds"
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "{advice}",
        "{advice}",
    ),
    "loss_input_sequence": (  # (B, T, C) scores against (B, T) class indices
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "cross-entropy reads the classes from dim 1, (B, C, T), and the model gives them last, (B, T, C): add "
        "`step: {{target: file.py:fn}}` with fn(model, batch, loss_fn) that returns loss_fn(model(x).transpose(1, "
        "2), y) (or loss_fn(out.flatten(0, 1), y.flatten()))",
        "cross-entropy reads the classes from dim 1, (B, C, T), and the model gives them last, (B, T, C): pass "
        "step_fn=fn(model, batch, loss_fn) that returns loss_fn(model(x).transpose(1, 2), y) (or "
        "loss_fn(out.flatten(0, 1), y.flatten()))",
    ),
    "loss_input_column_output": (  # (B, 1) outputs against (B,) targets, where the loss refuses to broadcast
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "the model gives one value per sample as a column, (B, 1), and the targets are (B,): give the targets the "
        "output's shape in {data} ({unsqueeze})",
        "the model gives one value per sample as a column, (B, 1), and the targets are (B,): give the targets the "
        "output's shape in {data} ({unsqueeze})",
    ),
    "loss_bce_scores": (
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        BCE_SCORES,
        BCE_SCORES,
    ),
    "loss_input_int_targets": (
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "this loss computes with the targets as numbers, like the output: make the targets of {data} float "
        "(y.float(); 0.0/1.0 labels for a BCE loss)",
        "this loss computes with the targets as numbers, like the output: make the targets of {data} float "
        "(y.float(); 0.0/1.0 labels for a BCE loss)",
    ),
    "loss_input_structured": (  # the model returns several things (a tuple, a dict): the default step cannot pick
        "{loss}: the loss rejected model output {output} with targets {targets}: {error}",
        "the model returns more than one thing: add `step: {{target: file.py:fn}}` with fn(model, batch, loss_fn) "
        "that passes the loss the right one",
        "the model returns more than one thing: pass step_fn=fn(model, batch, loss_fn) that passes the loss the "
        "right one",
    ),
    "loss_nll_scores": (  # NLLLoss on raw scores or on probabilities
        "{blamed} takes log-probabilities, and the model's outputs {output} are not: {what}",
        "end the model with torch.nn.LogSoftmax(dim=1){instead}, or give its raw scores to "
        "torch.nn.CrossEntropyLoss, which takes the log_softmax itself",
        "end the model with torch.nn.LogSoftmax(dim=1){instead}, or give its raw scores to "
        "torch.nn.CrossEntropyLoss, which takes the log_softmax itself",
    ),
    "loss_ce_probabilities": (  # a softmax in the model and another in the loss
        "{blamed} takes the log_softmax of the model's outputs itself, and they are probabilities already "
        "({output}, each sample's summing to 1, as from a softmax): the second softmax flattens the gradients, and "
        "the loss cannot fall below {floor}",
        "drop the model's final softmax and give the loss raw scores (logits); take a softmax where probabilities "
        "are read",
        "drop the model's final softmax and give the loss raw scores (logits); take a softmax where probabilities "
        "are read",
    ),
    "step_failed": (
        "{step} failed on the first batch {batch}: {error}",
        "run `clrfind check SPEC --debug` for the full traceback",
        "the exception is chained as __cause__, with its traceback",
    ),
    "step_backward_twice": (
        "{step} called backward() on the loss itself, and the range test calls it on the loss the step returns "
        "(torch: 'Trying to backward through the graph a second time')",
        "return the loss without calling backward() or optimizer.step(): the test does both, once per step, at its "
        "own LR",
        "return the loss without calling backward() or optimizer.step(): the test does both, once per step, at its "
        "own LR",
    ),
    "step_failed_no_loss": (  # the step may have called loss_fn, which is None
        "{step} failed on the first batch {batch}: {error}",
        "the spec has no loss:, so the step's loss_fn is None: add loss: {{target: ...}} or compute the loss in "
        "the step",
        "loss_fn is None: pass a loss function, or compute the loss in step_fn",
    ),
    "loss_type": ("{blamed} returned {type}, not a loss tensor", "{advice}", "{advice}"),
    "loss_shape": (
        "{blamed} returned a loss of shape {shape}, not a scalar",
        "reduce it (e.g. reduction='mean' in the loss, or .mean() in the step)",
        "reduce it (e.g. reduction='mean' in the loss, or .mean() in the step)",
    ),
    "loss_no_grad": (
        "{blamed} returned a loss that does not require grad",
        "compute it from the model's output without torch.no_grad() or .detach()",
        "compute it from the model's output without torch.no_grad() or .detach()",
    ),
    "data_sorted": (
        "{data}: the loader does not shuffle, and the data looks sorted by class: its first batch ({size} samples) "
        "is all class {label}, and further on it holds others ({samples})",
        "set data.shuffle: true: unshuffled, each batch is one class, and the curve follows the classes, not the LR",
        "pass a DataLoader with shuffle=True: unshuffled, each batch is one class, and the curve follows the "
        "classes, not the LR",
    ),
    "data_empty": (
        "{data}: the data loader yielded no batches",
        "check that the dataset is not empty and that batch_size <= its length with drop_last",
        "check that the dataset is not empty and that batch_size <= its length with drop_last",
    ),
    "data_one_shot": (
        "{data}: the data yielded nothing on its second pass (a one-shot iterator?)",
        "return a Dataset or DataLoader that can be iterated again, or run fewer steps",
        "pass a DataLoader (it can be iterated again), not a generator, or run fewer steps",
    ),
    "val_empty": (
        "{val_data}: the validation loader yielded no batches",
        "check the val dataset",
        "check the val dataset",
    ),
    "val_missing": (
        "{metric}: {value} needs {val_data}",
        "add data.val to the spec, or use metric: loss",
        "pass val_loader=..., or use metric='loss'",
    ),
    "verify_val_missing": (
        "{val_data}: verify_on 'val' judges the self-check's trials on the validation data, and there is none",
        "add data.val to the spec (or return it from setup), or use verify_on: auto",
        "pass val_loader=..., or use verify_on='auto'",
    ),
    "accuracy_layout": (
        "{metric}: accuracy needs (inputs, targets) validation batches",
        "use metric: val_loss with a custom step, or return (inputs, targets) from data.val",
        "use metric='val_loss' with a step_fn, or give val_loader (inputs, targets) batches",
    ),
    "accuracy_shapes": (
        "{metric}: accuracy cannot read model outputs of shape {outputs} against targets of shape {targets}: it needs "
        "class scores with integer class indices (or class probabilities under a cross-entropy loss), or one score "
        "per label with 0/1 targets",
        "use metric: val_loss (or loss), which reads any loss",
        "use metric='val_loss' (or 'loss'), which reads any loss",
    ),
    "model_frozen": (
        "{model}: none of its {count} parameters requires grad, so no step can change it",
        "unfreeze the parameters to train (requires_grad_(True)) in the model's target",
        "unfreeze the parameters to train (requires_grad_(True)) before the range test",
    ),
    "optimizer_frozen": (
        "{optimizer}: none of the {count} parameters it steps requires grad, so no step changes {model}",
        "build the optimizer over the parameters to train (those with requires_grad=True)",
        "build the optimizer over the parameters to train (those with requires_grad=True)",
    ),
    "optimizer_foreign": (
        "{optimizer}: none of the {count} parameters it steps belongs to {model} (nor to {loss}), so no step "
        "changes the model",
        "build the optimizer over the parameters of the model the run trains",
        "build the optimizer over this model's parameters (torch.optim.X(model.parameters(), ...)): one made "
        "before the model was built again (a notebook cell run twice) steps the old one",
    ),
    "optimizer_closure": (
        "{optimizer}: its step() needs a closure that re-evaluates the loss (as LBFGS's line search does), and a "
        "range test takes one plain step per LR",
        "range-test an optimizer that steps without a closure (SGD, Adam, ...); LBFGS finds its own step length "
        "with line_search_fn='strong_wolfe'",
        "range-test an optimizer that steps without a closure (SGD, Adam, ...); LBFGS finds its own step length "
        "with line_search_fn='strong_wolfe'",
    ),
    "optimizer_lr_unused": (
        "{optimizer}: Rprop reads lr only as each weight's first step size and adapts it from the gradient's sign "
        "after that, so the LR a range test or a schedule sets changes nothing",
        "tune Rprop's etas and step_sizes instead, or range-test an optimizer whose steps scale with lr (SGD, "
        "Adam, ...)",
        "tune Rprop's etas and step_sizes instead, or range-test an optimizer whose steps scale with lr (SGD, "
        "Adam, ...)",
    ),
    "clip_sparse": (
        "{clip}: torch cannot clip sparse gradients, and {model} has some ({params})",
        "remove {clip}, or make those layers dense (e.g. nn.Embedding(..., sparse=False)): a training loop that "
        "clips them fails the same way",
        "pass {clip}=None, or make those layers dense (e.g. nn.Embedding(..., sparse=False)): a training loop that "
        "clips them fails the same way",
    ),
    "data_requires_grad": (
        "{data}: the batches carry an autograd graph ({tensors} require grad): each step's backward would go on "
        "into the graph that made them, and the second step fails (torch: 'backward through the graph a second "
        "time')",
        "make the data without a graph in {data}: compute it under torch.no_grad(), or .detach() the tensors",
        "make the data without a graph in {data}: compute it under torch.no_grad(), or .detach() the tensors",
    ),
    "data_nonfinite": (
        "{data}: a batch holds non-finite values ({values}), and training on it made the loss {value}",
        "fill or drop the missing (NaN) and infinite values in the data: a training run fails on them the same "
        "way, at any LR",
        "fill or drop the missing (NaN) and infinite values in the data: a training run fails on them the same "
        "way, at any LR",
    ),
    "model_nonfinite_start": (
        "{model}: its initial weights hold NaN or inf ({params}), and the first loss is {value}",
        "initialise every parameter (a layer built with torch.empty needs an init), or start from a checkpoint saved "
        "before the loss blew up",
        "initialise every parameter (a layer built with torch.empty needs an init), or start from a checkpoint saved "
        "before the loss blew up",
    ),
    "loss_nonfinite_start": (
        "{blamed} returned a loss of {value} on the first batch, at the initial weights, before any optimizer step",
        "no LR can cause that: check the loss on one batch for a log of 0 or a division by zero, and the model's "
        "initialisation",
        "no LR can cause that: check the loss on one batch for a log of 0 or a division by zero, and the model's "
        "initialisation",
    ),
    "fp16_overflow": (
        "{precision}: fp16 GradScaler skipped every step (gradients overflow)",
        "use precision: bf16 or fp32",
        "use precision='bf16' or 'fp32'",
    ),
}


class Fault(SetupError):
    """A setup problem the engine found before it could measure anything, or while running (the engine counts
    the step it happened at).

    Its own text names the parts generically; `Terms.error` gives the one a user reads.
    """

    def __init__(self, kind: str, part: Part, **facts: str) -> None:
        if kind not in _TEXTS:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.kind, self.part, self.facts = kind, part, facts
        message, _, fix = _TEXTS[kind]
        names = {p: p for p in _PART_NAMES}
        super().__init__(
            message.format(**names, blamed=part, **facts), hint=fix.format(**names, blamed=part, **facts)
        )


@dataclass(frozen=True)
class Terms:
    """The names of a run's parts, and which fixes apply: one vocabulary per way of starting a run."""

    names: Mapping[Part, str]
    path: Path_
    prefix: str = ""  # "spec.yaml: " on the spec path: every message names the file first

    def name(self, part: Part) -> str:
        return self.names[part]

    def error(self, fault: Fault) -> SetupError:
        """The fault as the one-line error this path's user reads (message and fix in their own words)."""
        message, spec_fix, library_fix = _TEXTS[fault.kind]
        fields = {**self.names, "blamed": self.names[fault.part], **fault.facts}
        fix = spec_fix if self.path == "spec" else library_fix
        return SetupError(self.prefix + message.format(**fields), hint=fix.format(**fields))

    def raised(self, part: Part, step: int, exc: BaseException) -> str:
        """A failure mid-run, for the stop detail and the run error: `data.train '...' raised ValueError at step 5:
        ...`, or the engine's own finding (the data ran dry on its second pass) with its step."""
        if isinstance(exc, Fault):
            return f"{self.error(exc).message} (at step {step})"
        text = exception_text(exc)
        return f"{self.name(part)} raised {type(exc).__name__} at step {step}" + (f": {text}" if text else "")


_PART_NAMES: tuple[Part, ...] = (
    "data",
    "val_data",
    "model",
    "loss",
    "step",
    "clip",
    "optimizer",
    "precision",
    "metric",
)


def label_out_of_range(exc: BaseException) -> int | None:
    """The class index in torch's 'Target N is out of bounds' (cross-entropy, NLL), else None: a label of the
    data's that the model has no class for."""
    found = re.search(r"Target (-?\d+) is out of bounds", str(exc)) if isinstance(exc, IndexError) else None
    return int(found.group(1)) if found else None


def is_bce_of_scores(exc: BaseException) -> bool:
    """torch's error for BCELoss given values outside [0, 1] (raw scores where it takes probabilities)."""
    return "should be between 0 and 1" in str(exc)


def is_one_sample_norm(exc: BaseException) -> bool:
    """torch's error for batch norm given one sample in training mode: mid-run, the usual cause is a dataset whose
    length leaves one sample over for the last batch of a pass (which the user's own loop meets too); on the first
    step, a batch size of 1."""
    return isinstance(exc, ValueError) and "Expected more than 1 value per channel when training" in str(exc)


def clip_key(clip_grad_value: float | None) -> str:
    """The clipping a run names, as a spec key or an argument: a run sets at most one of the two."""
    return "clip_grad_value" if clip_grad_value is not None else "clip_grad_norm"


def library_terms(*, step_fn: bool, clip_grad_value: float | None = None) -> Terms:
    """`range_test()`'s words: its argument names."""
    step = "step_fn" if step_fn else "the default step loss_fn(model(inputs), targets)"
    names: dict[Part, str] = {
        "data": "train_loader", "val_data": "val_loader", "model": "model", "loss": "loss_fn", "step": step,
        "clip": clip_key(clip_grad_value), "optimizer": "optimizer", "precision": "precision", "metric": "metric",
    }  # fmt: skip
    return Terms(names, "library")


def spec_terms(loaded: LoadedSpec) -> Terms:
    """A spec's words: its keys, with the target each one names (or the `setup:` factory that returned it)."""
    from clrfind.setup_factory import from_setup

    spec = loaded.spec
    data = spec.data

    def named(block: str, ref: TargetRef | None, piece: str, where: str | None = None) -> str:
        """The block's key as the file writes it (`model._target_`) and its target, or the factory's piece."""
        if ref is not None:
            return f"{where or loaded.target_key(block)} '{ref.target}'"
        return from_setup(loaded, piece) if spec.setup is not None else block

    model = named("model", spec.model, "model")
    names: dict[Part, str] = {
        "data": named("data.train", data and data.train, "data", "data.train"),
        "val_data": named("data.val", data and data.val, "val_data", "data.val"), "model": model,
        "loss": named("loss", spec.loss, "loss"),
        "step": named("step", spec.step, "step") if spec.step is not None else model,
        "clip": clip_key(spec.clip_grad_value),
        "optimizer": named("optimizer", spec.optimizer, "optimizer"), "precision": "precision",
        "metric": "range_test.metric",
    }  # fmt: skip
    return Terms(names, "spec", prefix=f"{loaded.source}: ")
