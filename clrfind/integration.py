"""What the framework integrations (`clrfind.lightning`, `clrfind.transformers`) share: the settings a user gives
them, and one call of the library's range test on the framework's own objects.

A framework already knows the device, the precision, the gradient accumulation and how a batch becomes a loss;
the user gives only the range test's own settings, checked here as `clrfind.range_test` would check them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from clrfind.errors import SetupError, UsageError
from clrfind.ladder import ModeChoice
from clrfind.settings import TrainingLength, VerifyOn

if TYPE_CHECKING:
    import torch

    from clrfind.events import StepEvent
    from clrfind.faults import Terms
    from clrfind.results import RangeTestResult


class RangeTestSettings(TypedDict, total=False):
    """The range test's own settings, as `clrfind.range_test` takes them, each optional with its default there:
    `min_lr`, `max_lr` (the spec's 1e-5 and 1.0), `steps`, `mode`, `verify_bounds`, `verify_on` (`"val"`: the
    self-check's trials judged on the framework's validation data), `seed`, `callback` (a `StepEvent` a call),
    `progress` (the bar; by default as the framework shows its own), `save` (a folder for the results, plot and
    schedule, as the CLI writes them) and `training` (the run the bounds are for, as `clrfind.range_test` takes it;
    by default the framework's own length where it is known)."""

    min_lr: float
    max_lr: float
    steps: int
    mode: ModeChoice
    verify_bounds: bool
    verify_on: VerifyOn
    seed: int | None
    callback: Callable[[StepEvent], None] | None
    progress: bool
    save: str | os.PathLike[str] | None
    training: TrainingLength | Mapping[str, int] | None


SETTING_NAMES = sorted(RangeTestSettings.__required_keys__ | RangeTestSettings.__optional_keys__)


def check_settings(settings: Mapping[str, Any], *, where: str) -> RangeTestSettings:
    """The settings as given, or a `UsageError` naming an unknown one (with a suggestion)."""
    from clrfind.spec import likely_name

    for name in settings:
        if name not in SETTING_NAMES:
            close = likely_name(name, SETTING_NAMES)
            hint = f"did you mean {close!r}?" if close else f"the settings are: {', '.join(SETTING_NAMES)}"
            raise UsageError(f"{where}: unknown setting {name!r}", hint=hint)
    return settings  # type: ignore[return-value]


def judges_on_val(settings: RangeTestSettings) -> bool:
    """Whether the self-check will judge its trials on the validation data, which the framework must then find."""
    return settings.get("verify_on") == "val" and settings.get("verify_bounds", True)


def val_missing(where: str, fix: str) -> SetupError:
    """The error for `verify_on="val"` where the framework has no validation data; `fix` says how to give it some."""
    return SetupError(
        f"{where}: verify_on 'val' judges the self-check's trials on the validation data, and there is none",
        hint=f"{fix}, or use verify_on='auto'",
    )


def run_range_test(
    model: torch.nn.Module,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[..., Any],
    settings: RangeTestSettings,
    *,
    terms: Terms,
    device: torch.device | str,
    precision: str,
    accumulate: int,
    clip_grad_norm: float | None = None,
    clip_grad_value: float | None = None,
    fit: TrainingLength | None = None,
    val_loader: Iterable[Any] | None = None,
) -> RangeTestResult:
    """`clrfind.range_test` on a framework's objects: its step computes the loss, so there is no loss_fn; the
    framework's own gradient clipping (`gradient_clip_val`, `max_grad_norm`) is applied as its training applies it,
    since clipping lets a run survive higher LRs. `fit`: the framework's training length, the test's `training`
    unless the settings give `steps` or `training` (the test then rehearses the run its schedule spans).
    `val_loader`: the framework's validation data, the library's (what `verify_on="val"` judges the trials on)."""
    from clrfind.api import range_test

    if fit is not None and "steps" not in settings and "training" not in settings:
        settings = {**settings, "training": fit}

    return range_test(
        model, loader, None, optimizer, device=device, step_fn=step_fn, precision=precision, accumulate=accumulate,
        terms=terms, clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value, val_loader=val_loader,
        **settings,
    )  # fmt: skip


def whole_epochs(total_steps: float, steps_per_epoch: int | None) -> TrainingLength | None:
    """A framework's training of `total_steps` optimizer steps as the whole epochs that cover it, or None when its
    length is unknown or endless. Whole epochs: OneCycleLR fails when stepped past its total."""
    if not steps_per_epoch or not math.isfinite(total_steps) or total_steps <= 0:
        return None
    return TrainingLength(epochs=math.ceil(total_steps / steps_per_epoch), steps_per_epoch=steps_per_epoch)
