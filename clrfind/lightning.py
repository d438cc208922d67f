"""The range test inside PyTorch Lightning: the LightningModule's own `training_step` and optimizer, on the trainer's
device, with its precision and gradient accumulation.

Two ways in, one run (`clrfind.api.range_test`, so the module and optimizer are restored bit-for-bit):

- `LRRangeTest`, a callback: `Trainer(callbacks=[LRRangeTest(min_lr=..., max_lr=...)])` runs the test when
  training starts, once Lightning has built the optimizer and the data, and by default trains with the one-cycle
  schedule it suggests;
- `range_test(trainer, module, train_loader, ...)` before `trainer.fit`, like Lightning's own `Tuner.lr_find`; the
  module's `configure_optimizers` then hands the result on with `optimizer_config`.

Both log the curve and the bounds to the trainer's loggers and return the library's `RangeTestResult`. Lightning is
imported only here, inside the functions: `import clrfind` never pays for it.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from clrfind.errors import SetupError, UsageError, describe_exception
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
    import lightning.pytorch as pl
    import torch
    from typing_extensions import Unpack

    from clrfind.results import RangeTestResult
    from clrfind.settings import TrainingLength

# Errors name the module's hooks, not range_test()'s arguments.
_NAMES: dict[Part, str] = {
    "data": "the training dataloader", "val_data": "the validation dataloader", "model": "the LightningModule",
    "loss": "training_step", "step": "training_step", "clip": "Trainer(gradient_clip_val=...)",
    "optimizer": "the optimizer of configure_optimizers()",
    "precision": "Trainer(precision=...)", "metric": "metric",
}  # fmt: skip
TERMS = Terms(_NAMES, "library")
# Lightning's mixed precision settings, as the engine's autocast; the others ("32-true", "bf16-true", ...) run
# the module in the dtype Lightning gave it, without autocast.
_PRECISION = {"16-mixed": "fp16", "bf16-mixed": "bf16"}


def range_test(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    train_dataloaders: Any = None,
    datamodule: pl.LightningDataModule | None = None,
    *,
    val_dataloaders: Any = None,
    **settings: Unpack[RangeTestSettings],
) -> RangeTestResult:
    """Run the range test through `module.training_step` with the optimizer its `configure_optimizers` returns.

    Call it before `trainer.fit`, with the data `fit` would get (a DataLoader, or a datamodule, or neither when the
    module defines `train_dataloader()`), and the range test's settings (`min_lr`, `max_lr`, `steps`, ... as for
    `clrfind.range_test`; see `clrfind.integration.RangeTestSettings`). The module is left exactly as it was; the
    optimizer is built for the test and dropped (`fit` builds its own). `self.log` calls in `training_step` are
    ignored during the test. `val_dataloaders` is the library's `val_loader`; with `verify_on="val"` and none
    given, the datamodule's or the module's `val_dataloader()`, as `fit` would validate on.

    Raises:
        UsageError: manual optimization, several optimizers, training or validation dataloaders, or no training
            data.
        SetupError: `configure_optimizers` failed (if it needs the fitting trainer, use `LRRangeTest`), or
            `verify_on="val"` without validation data.
        RunError: the module's code failed mid-run (after restoring it).
    """
    from lightning.pytorch import LightningDataModule

    settings = check_settings(settings, where="clrfind.lightning.range_test")
    if isinstance(train_dataloaders, LightningDataModule):  # as trainer.fit(module, datamodule) takes it
        train_dataloaders, datamodule = None, train_dataloaders
    loader = _fit_loader(module, train_dataloaders, datamodule)
    val_loader = _val_loader(module, val_dataloaders, datamodule, needed=judges_on_val(settings))
    try:
        config = module.configure_optimizers()
    except Exception as exc:
        raise SetupError(
            f"configure_optimizers() raised {describe_exception(exc)}",
            hint="if it needs the fitting trainer (self.trainer.estimated_stepping_batches), run the test with "
            "the LRRangeTest callback, which runs inside trainer.fit",
        ) from exc
    return _run(trainer, module, loader, _only_optimizer(config), settings, val_loader=val_loader)


class RangeTestCallback:
    """A Lightning callback that runs the range test when training starts, then (with `apply`) trains with the
    schedule it suggests; use it as `LRRangeTest`, which is this class with Lightning's `Callback` as a base.

    The test runs in `on_train_start`, on the optimizer and the training dataloader Lightning has set up (with
    `verify_on="val"`, its validation dataloader too), and restores both, so training starts from the same state.
    With `apply=True` (the default) and usable bounds, the optimizer then follows `optimizer_config`'s schedule (one
    cycle over the whole fit when its length is known), in place of the schedulers `configure_optimizers` returned.
    The result is in `.result`.

    Args:
        apply: train with the suggested schedule.
        policy: the schedule's policy (`clrfind export --policy`): `auto` is one-cycle when the fit's length is
            known.
        settings: the range test's (`min_lr`, `max_lr`, `steps`, ... as for `clrfind.range_test`; see
            `clrfind.integration.RangeTestSettings`).
    """

    def __init__(
        self, *, apply: bool = True, policy: str = "auto", **settings: Unpack[RangeTestSettings]
    ) -> None:
        self.settings = check_settings(settings, where="LRRangeTest")
        self.apply, self.policy = apply, policy
        self.result: RangeTestResult | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise UsageError(
                f"LRRangeTest: configure_optimizers() gave {len(optimizers)} optimizers; the range test needs one"
            )
        loader = _one_loader(trainer.train_dataloader)
        on_val = judges_on_val(self.settings)
        # Lightning has set up the fit's validation data by now if the fit validates in its first epoch; else the
        # module's or the datamodule's own val_dataloader().
        val_loader = _val_loader(
            pl_module, trainer.val_dataloaders if on_val else None, trainer.datamodule, needed=on_val,
            where="LRRangeTest", fix="give the fit validation data (a validation_step, and val_dataloaders in "
            "trainer.fit or val_dataloader() on the module or datamodule)",
        )  # fmt: skip
        # Told the fit's length, the test rehearses the run the schedule it applies will span.
        fit = whole_epochs(trainer.estimated_stepping_batches, _steps_per_epoch(trainer))
        self.result = _run(
            trainer, pl_module, loader, optimizers[0], self.settings, fit=fit, val_loader=val_loader
        )
        bounds = self.result.bounds
        if self.apply and bounds is not None and bounds.usable:
            from lightning.pytorch.utilities.types import LRSchedulerConfig

            config = optimizer_config(self.result, optimizers[0], trainer, policy=self.policy)
            trainer.strategy.lr_scheduler_configs = [LRSchedulerConfig(**config["lr_scheduler"])]


@functools.cache
def _callback_class() -> type:
    from lightning.pytorch.callbacks import Callback

    return type(
        "LRRangeTest", (RangeTestCallback, Callback), {"__module__": __name__, "__qualname__": "LRRangeTest"}
    )


def __getattr__(name: str) -> Any:
    # LRRangeTest subclasses Lightning's Callback, so it is made on first use: importing this module does not
    # import Lightning.
    if name == "LRRangeTest":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def optimizer_config(
    result: RangeTestResult, optimizer: torch.optim.Optimizer, trainer: pl.Trainer, *, policy: str = "auto"
) -> dict[str, Any]:
    """What `configure_optimizers` returns to train with the suggested schedule, stepped every optimizer step:
    ``{"optimizer": optimizer, "lr_scheduler": {"scheduler": ..., "interval": "step"}}``.

    The schedule is fitted to the fit's length (`trainer.estimated_stepping_batches`), so with `policy="auto"`
    one cycle spans the whole fit; a fit of unknown length gets triangular cycles. Sets the optimizer's lr.

    Raises:
        ExportError: the result has no usable bounds, or the fit is too short for the policy.
    """
    from clrfind.export import scheduler_for

    total = trainer.estimated_stepping_batches  # also loads the training data when it is not yet
    per_epoch = _steps_per_epoch(trainer) or result.steps_per_epoch
    length = whole_epochs(total, per_epoch)
    scheduler = scheduler_for(
        result, optimizer, policy=policy, epochs=length.epochs if length else None, steps_per_epoch=per_epoch
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _steps_per_epoch(trainer: pl.Trainer) -> int | None:
    """Optimizer steps in one epoch of the fit (None for a stream of unknown length)."""
    batches = trainer.num_training_batches
    return math.ceil(batches / trainer.accumulate_grad_batches) if math.isfinite(batches) else None


def log_result(result: RangeTestResult, loggers: Iterable[Any]) -> None:
    """Send the result to each of the trainer's loggers, under `clrfind/`. TensorBoard, W&B and MLflow loggers get
    what `--log` sends (curve, bounds, plot, schedule file) through the run they hold; any other logger gets the
    curve (one record a step) and the bounds with their rationale, through Lightning's own interface."""
    from clrfind.loggers import PREFIX, run_record

    receivers = [(logger, _tracker(logger)) for logger in loggers]
    # Only the trackers take the plot: a plain Lightning logger is not made to wait for a picture it cannot log.
    record = run_record(result, images=any(tracker is not None for _, tracker in receivers))
    for logger, tracker in receivers:
        if tracker is not None:
            tracker.log_range_test(record)
            continue
        steps: dict[int, dict[str, float]] = {}
        for tag, points in record.curves.items():
            for step, value in points:
                steps.setdefault(step, {})[f"{PREFIX}/{tag}"] = value
        for step in sorted(steps):
            logger.log_metrics(steps[step], step=step)
        hparams = {**record.params, "bounds": record.texts["bounds"]}
        logger.log_hyperparams({f"{PREFIX}/{k}": v for k, v in hparams.items()})
        logger.save()


def _tracker(logger: Any) -> Any:
    """The `clrfind.loggers` tracker writing into the run a Lightning logger holds, or None for other loggers."""
    from lightning.pytorch import loggers as pl_loggers

    from clrfind import loggers

    if isinstance(logger, pl_loggers.TensorBoardLogger):
        return loggers.TensorBoard(writer=logger.experiment)
    if isinstance(logger, pl_loggers.WandbLogger):
        return loggers.Wandb(run=logger.experiment)
    if isinstance(logger, pl_loggers.MLFlowLogger):
        return loggers.MLflow(run_id=logger.run_id, client=logger.experiment)
    return None


def _run(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    settings: RangeTestSettings,
    *,
    fit: TrainingLength | None = None,
    val_loader: Iterable[Any] | None = None,
) -> RangeTestResult:
    """The range test of both entry points, its result logged to the trainer's loggers; `fit`: the fit's length,
    where it is known (inside the fit); `val_loader`: the validation data, where the test is to have it."""
    if not module.automatic_optimization:
        raise UsageError(
            "the module uses manual optimization: its training_step steps the optimizer itself, so the range test "
            "cannot set the LR of each step",
            hint="run clrfind.range_test on its model, data and optimizer with a step_fn that returns the loss",
        )
    # Lightning clips by norm unless told "value" (Trainer(gradient_clip_algorithm=...)), as its training will.
    clip = float(trainer.gradient_clip_val) if trainer.gradient_clip_val else None
    algorithm = trainer.gradient_clip_algorithm  # None (norm) or a GradClipAlgorithmType, a str enum
    by_value = getattr(algorithm, "value", algorithm) == "value"
    with _log_calls_ignored(module):
        result = run_range_test(
            module, loader, optimizer, _TrainingStep(module),
            {"progress": trainer.progress_bar_callback is not None, **settings}, terms=TERMS,
            device=trainer.strategy.root_device, precision=_PRECISION.get(str(trainer.precision), "fp32"),
            accumulate=trainer.accumulate_grad_batches, clip_grad_norm=None if by_value else clip,
            clip_grad_value=clip if by_value else None, fit=fit, val_loader=val_loader,
        )  # fmt: skip
    log_result(result, trainer.loggers)
    return result


class _TrainingStep:
    """`module.training_step` as a clrfind step: batch_idx counted as Lightning counts it, the loss taken from a
    tensor or the "loss" of a dict (what else it returns, None included, is reported as not a loss)."""

    def __init__(self, module: pl.LightningModule) -> None:
        from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

        self.module = module
        self.takes_index = is_param_in_hook_signature(module.training_step, "batch_idx", min_args=2)
        self.batch_idx = 0

    def __call__(self, model: torch.nn.Module, batch: Any, loss_fn: Any) -> Any:
        args = (batch, self.batch_idx) if self.takes_index else (batch,)
        self.batch_idx += 1
        out = self.module.training_step(*args)
        return out.get("loss", out) if isinstance(out, Mapping) else out


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


@contextlib.contextmanager
def _log_calls_ignored(module: pl.LightningModule) -> Iterator[None]:
    """`self.log` and `self.log_dict` do nothing while the test runs: outside Lightning's loop they raise (no
    result collection) or warn (no trainer), and the test's steps are not the fit's metrics anyway."""
    module.log = _ignore  # type: ignore[method-assign]
    module.log_dict = _ignore  # type: ignore[method-assign]
    try:
        yield
    finally:
        del module.log, module.log_dict


def _fit_loader(
    module: pl.LightningModule, loaders: Any, datamodule: pl.LightningDataModule | None
) -> Iterable[Any]:
    """The training data `trainer.fit` would use: the loader given, the datamodule's, or the module's own."""
    if loaders is None and datamodule is not None:
        datamodule.prepare_data()
        datamodule.setup("fit")
        loaders = datamodule.train_dataloader()
    elif loaders is None:
        from lightning.pytorch.utilities.model_helpers import is_overridden

        if not is_overridden("train_dataloader", module):
            raise UsageError(
                "no training data: pass the training DataLoader (or a datamodule) as trainer.fit would get it, or "
                "define train_dataloader() on the module"
            )
        loaders = module.train_dataloader()
    return _one_loader(loaders)


def _val_loader(
    module: pl.LightningModule,
    loaders: Any,
    datamodule: pl.LightningDataModule | None,
    *,
    needed: bool,
    where: str = "clrfind.lightning.range_test",
    fix: str = "pass val_dataloaders=... (as trainer.fit takes them), or define val_dataloader() on the module or "
    "datamodule",
) -> Iterable[Any] | None:
    """The validation data given, else (only when `needed`) the datamodule's or the module's `val_dataloader()`
    (the datamodule set up for the fit); a `SetupError` from `where`, saying how to `fix` it, when it is needed
    and there is none."""
    from lightning.pytorch.utilities.model_helpers import is_overridden

    if loaders is None and needed:
        for owner in (datamodule, module):
            if owner is not None and is_overridden("val_dataloader", owner):
                loaders = owner.val_dataloader()
                break
        else:
            raise val_missing(where, fix)
    return None if loaders is None else _one_loader(loaders, "validation")


def _one_loader(loaders: Any, kind: str = "training") -> Iterable[Any]:
    """The one `kind` dataloader in what Lightning holds or was given (it also takes lists and dicts)."""
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        if len(loaders) != 1:
            uses = "trains on one" if kind == "training" else "judges its self-check on one"
            raise UsageError(
                f"{len(loaders)} {kind} dataloaders: the range test {uses}", hint="pass one DataLoader"
            )
        return loaders[0]
    return loaders


def _only_optimizer(config: Any) -> torch.optim.Optimizer:
    """The one optimizer in what `configure_optimizers` returned, in any of the forms Lightning accepts."""
    import torch

    given = type(config).__name__
    if isinstance(config, Mapping):
        config = [config]
    elif isinstance(config, (list, tuple)) and len(config) == 2 and isinstance(config[0], (list, tuple)):
        config = config[0]  # ([optimizers], [schedulers])
    items = list(config) if isinstance(config, (list, tuple)) else [config]
    found = [item.get("optimizer") if isinstance(item, Mapping) else item for item in items]
    if len(found) != 1 or not isinstance(found[0], torch.optim.Optimizer):
        raise UsageError(
            f"configure_optimizers() returned {given}: the range test needs exactly one optimizer",
            hint="return one torch.optim optimizer (with or without schedulers)",
        )
    return found[0]
