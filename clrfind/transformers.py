"""The range test for a Hugging Face `transformers.Trainer`: its model, its training dataloader, the optimizer it
would train with and the loss it computes, with its precision, gradient accumulation and seed.

`range_test(trainer, ...)` runs `clrfind.api.range_test` on those (the model and optimizer restored bit-for-bit)
and returns the library's `RangeTestResult`; `optimizers_for(trainer, result)` gives the `(optimizer, scheduler)`
pair the Trainer takes (`Trainer(optimizers=...)`, or `trainer.optimizer, trainer.lr_scheduler = ...` before
`trainer.train()`), the schedule fitted to the Trainer's own length. transformers is never imported here: the
Trainer passed in is used through its public methods.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from clrfind.errors import UsageError
from clrfind.faults import Part, Terms
from clrfind.integration import (
    RangeTestSettings,
    check_settings,
    judges_on_val,
    run_range_test,
    val_missing,
    whole_epochs,
)

if TYPE_CHECKING:
    import torch
    import transformers
    from typing_extensions import Unpack

    from clrfind.results import RangeTestResult
    from clrfind.settings import TrainingLength

# Errors name the Trainer's parts, not range_test()'s arguments.
_NAMES: dict[Part, str] = {
    "data": "trainer.get_train_dataloader()", "val_data": "the validation data", "model": "trainer.model",
    "loss": "trainer.compute_loss", "step": "trainer.compute_loss(model, batch)",
    "clip": "TrainingArguments(max_grad_norm=...)",
    "optimizer": "trainer.create_optimizer()", "precision": "TrainingArguments(bf16/fp16)", "metric": "metric",
}  # fmt: skip
TERMS = Terms(_NAMES, "library")


def range_test(trainer: transformers.Trainer, **settings: Unpack[RangeTestSettings]) -> RangeTestResult:
    """Run the range test as `trainer.train()` would train: on `trainer.get_train_dataloader()`, with the loss of
    `trainer.compute_loss` (the model's own `model(**batch).loss` unless the Trainer overrides it), the optimizer
    `trainer.create_optimizer()` builds from the TrainingArguments (or the one given to the Trainer), their bf16/fp16
    and gradient accumulation, and their seed unless `seed` is given; the bar shows unless they disable tqdm.

    `settings` are the range test's (`min_lr`, `max_lr`, `steps`, ... as for `clrfind.range_test`; see
    `clrfind.integration.RangeTestSettings`). The model and the optimizer are left exactly as they were; an
    optimizer the Trainer did not have before is dropped again, so `trainer.train()` builds its own as it would
    have. Gradients are clipped to `max_grad_norm`, as `trainer.train()` clips them. Unless `steps` or `training`
    is given, the test is told the Trainer's length (`max_steps`, else `num_train_epochs`), the one
    `optimizers_for` fits the schedule to. With `verify_on="val"` the self-check judges its trials on
    `trainer.get_eval_dataloader()`, the Trainer's `eval_dataset`.

    Raises:
        UsageError, SetupError, RunError: as `clrfind.range_test`, in the Trainer's terms (a `SetupError` for
            `verify_on="val"` without an `eval_dataset`, a `UsageError` with several).
    """
    settings = check_settings(settings, where="clrfind.transformers.range_test")
    val_loader = _eval_loader(trainer) if judges_on_val(settings) else None
    args = trainer.args
    had_optimizer = trainer.optimizer is not None
    optimizer = trainer.create_optimizer()  # the Trainer's own when it has one
    loader = trainer.get_train_dataloader()
    try:
        return run_range_test(
            trainer.model, loader, optimizer, _ComputeLoss(trainer),
            {"seed": args.seed, "progress": not args.disable_tqdm, **settings}, terms=TERMS, device=args.device,
            precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
            accumulate=args.gradient_accumulation_steps,
            clip_grad_norm=args.max_grad_norm or None, fit=_length(trainer, loader), val_loader=val_loader,
        )  # fmt: skip
    finally:
        if not had_optimizer:
            trainer.optimizer = None


def optimizers_for(
    trainer: transformers.Trainer, result: RangeTestResult, *, policy: str = "auto"
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The Trainer's optimizer and the suggested schedule on it, for `Trainer(optimizers=...)` or
    `trainer.optimizer, trainer.lr_scheduler = ...`; the scheduler steps once per optimizer step, as the Trainer
    steps it.

    The schedule is fitted to the Trainer's length (`max_steps`, else `num_train_epochs` of its dataloader), so
    with `policy="auto"` one cycle spans the whole training. Sets the optimizer's lr.

    Raises:
        ExportError: the result has no usable bounds, or the training is too short for the policy.
    """
    from clrfind.export import scheduler_for

    optimizer = trainer.create_optimizer()
    length = _length(trainer, trainer.get_train_dataloader())
    epochs, per_epoch = (length.epochs, length.steps_per_epoch) if length else (None, None)
    scheduler = scheduler_for(result, optimizer, policy=policy, epochs=epochs, steps_per_epoch=per_epoch)
    return optimizer, scheduler


def _eval_loader(trainer: transformers.Trainer) -> Any:
    """The Trainer's evaluation dataloader, what `verify_on="val"` judges the trials on."""
    data = trainer.eval_dataset
    if data is None:
        raise val_missing("clrfind.transformers.range_test", "give the Trainer an eval_dataset")
    if isinstance(data, dict):  # the Trainer evaluates each of several by name
        if len(data) != 1:
            raise UsageError(
                f"{len(data)} eval datasets ({', '.join(map(str, data))}): the range test judges its self-check on "
                "one",
                hint="give the Trainer one eval_dataset for the range test",
            )
        return trainer.get_eval_dataloader(next(iter(data)))
    return trainer.get_eval_dataloader()


def _length(trainer: transformers.Trainer, loader: Any) -> TrainingLength | None:
    """The Trainer's training in whole epochs of optimizer steps: `max_steps`, else `num_train_epochs` of its
    dataloader `loader` (None for a dataloader without a length and no `max_steps`)."""
    from clrfind.engine import loader_length

    args = trainer.args
    batches = loader_length(loader)
    per_epoch = math.ceil(batches / args.gradient_accumulation_steps) if batches else None
    if args.max_steps > 0:
        return whole_epochs(args.max_steps, per_epoch or args.max_steps)
    return whole_epochs(math.ceil(args.num_train_epochs * per_epoch), per_epoch) if per_epoch else None


class _ComputeLoss:
    """`trainer.compute_loss` as a clrfind step. It gets a shallow copy of the batch: it may pop the labels, and
    the self-check reuses its held-out batches."""

    def __init__(self, trainer: transformers.Trainer) -> None:
        self.trainer = trainer

    def __call__(self, model: torch.nn.Module, batch: Any, loss_fn: Any) -> Any:
        return self.trainer.compute_loss(model, dict(batch))
