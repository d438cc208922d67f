"""How a range test runs: one validated `RunSettings`, built from a spec or from `range_test()`'s arguments.

Everything downstream (the ladder, the engine, the result) reads these settings and derives nothing twice: the
number of steps, the steps per epoch, the evaluation interval and the ladder each have one method here. The field
constraints are shared with the spec's models (`clrfind.spec`), so a spec and a library call are checked by the
same rules; only the wording of a problem differs (a spec key path there, an argument name here).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clrfind.errors import SetupError, UsageError, short_repr
from clrfind.ladder import DEFAULT_STEPS, Mode, ModeChoice, lr_ladder, resolve_mode

Precision = Literal["fp32", "bf16", "fp16"]
MetricName = Literal["loss", "accuracy", "val_loss"]
# What the self-check's trials are judged on: `auto` (a held-out tenth of the training data when it can be held
# out by sample, else the validation data, else a tenth held out by position) or `val` (the validation data).
VerifyOn = Literal["auto", "val"]

# Longest test, in optimizer steps (also what `epochs` may come to): range tests run hundreds to thousands of
# steps; a billion is a typo that would train for days and hold the whole ladder in memory.
MAX_STEPS = 1_000_000
MAX_EPOCHS = 10_000

# The longest test a training length sets (`RunSettings.planned_steps`): the longest measured on the quality
# benchmark, whose runs of 1,000-2,000 steps it served (trials of 250); a run 100x longer would cost a test 100x
# longer for trials no one has measured.
LONGEST_FITTED_STEPS = 1000

# The constraints of each setting, one definition for the spec and the library.
LearningRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Steps = Annotated[int, Field(ge=2, le=MAX_STEPS)]
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
Positive = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Seed = Annotated[int, Field(ge=0, lt=2**64)]
# A gradient clipping threshold (max_norm of clip_grad_norm_, clip_value of clip_grad_value_).
ClipThreshold = Annotated[float, Field(gt=0, allow_inf_nan=False)]

DEFAULT_MIN_LR = 1e-5
DEFAULT_MAX_LR = 1.0
# With `eval_every` unset, about this many metric evaluations are spread over the run: enough points to read a
# curve from, few enough that evaluation does not dominate a short test.
TARGET_EVALUATIONS = 30


class FrozenModel(BaseModel):
    """Immutable, and unknown keys are an error: a typo in a spec or a results file is reported, never dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def clip_problem(clip_grad_norm: float | None, clip_grad_value: float | None) -> tuple[str, str] | None:
    """(field, problem) when both ways of clipping are set: a training loop clips one way, and the order of two
    would be a guess. One rule for spec and library."""
    if clip_grad_norm is not None and clip_grad_value is not None:
        return (
            "clip_grad_value",
            "set either clip_grad_norm or clip_grad_value, not both (clip the way you train)",
        )
    return None


def length_and_range_problem(
    min_lr: float, max_lr: float, steps: int | None, epochs: int | None
) -> tuple[str, str] | None:
    """(field, problem) when the LR range or the length is inconsistent, else None: one rule for spec and library."""
    if steps is not None and epochs is not None:
        return "epochs", "set either steps or epochs, not both"
    if min_lr >= max_lr:
        return "min_lr", f"must be below max_lr ({max_lr}), got {min_lr}"
    return None


def told_test_steps(training_steps: int | None) -> int:
    """The test's length when told a training of `training_steps` and given none of its own: about the
    training's, within DEFAULT_STEPS and LONGEST_FITTED_STEPS."""
    return min(max(training_steps or DEFAULT_STEPS, DEFAULT_STEPS), LONGEST_FITTED_STEPS)


def short_test(test_steps: int, training_steps: int | None) -> str | None:
    """Why a test of `test_steps` is too short for the bounds it gives, when it is under half the length clrfind
    chooses itself (`told_test_steps`), else None.

    The loss needs steps to move, so a shorter ladder shows its fall, and so the bounds, at higher LRs: on the
    quality benchmark, 100- and 60-step tests put max_lr higher and trained clearly worse than clrfind's own length
    (BENCHMARKS.md, "How long the test runs"). Half, as export warns for a run at least twice as long as the test
    it rehearsed.
    """
    own = told_test_steps(training_steps)
    if 2 * test_steps >= own:
        return None
    runs = f"for the {training_steps}-step training" if training_steps else "when not told the training"
    return (
        f"a test of {test_steps} steps is under half the {own} clrfind runs {runs}: a shorter test shows the "
        "loss's fall, and so the bounds, at higher LRs (the loss needs steps to move)"
    )


class TrainingLength(FrozenModel):
    """The training the bounds are for: the spec's `training:` section, `export --epochs/--steps-per-epoch`'s
    defaults.

    Told it, the test rehearses that run: unless its own length is given, the test lasts about as long as the
    training (DEFAULT_STEPS to LONGEST_FITTED_STEPS steps), so the self-check's trials, a quarter of the test,
    stand for a quarter of the run rather than for a fixed 75 steps; and the exported schedule spans the run.
    """

    epochs: Epochs
    # None: the range test's own steps per epoch (its data's batches over `accumulate`), filled in the results.
    steps_per_epoch: Positive | None = None

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps of the whole training, when the steps per epoch are known."""
        return self.epochs * self.steps_per_epoch if self.steps_per_epoch else None

    @property
    def described(self) -> str:
        """As the summary and the plot say it: '20 epochs x 64 steps = 1280 steps'."""
        if self.total_steps is None:
            return f"{self.epochs} epochs"
        return f"{self.epochs} epochs x {self.steps_per_epoch} steps = {self.total_steps} steps"


class LadderSettings(FrozenModel):
    """The LR ladder, the test's length and what is measured along it: the spec's `range_test:` section."""

    min_lr: LearningRate = DEFAULT_MIN_LR
    max_lr: LearningRate = DEFAULT_MAX_LR
    steps: Steps | None = None
    epochs: Epochs | None = None
    mode: ModeChoice = "auto"
    metric: MetricName = "loss"
    eval_every: Positive | None = None
    eval_batches: Positive = 4

    @model_validator(mode="after")
    def _consistent(self) -> LadderSettings:
        problem = length_and_range_problem(self.min_lr, self.max_lr, self.steps, self.epochs)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self


class RunSettings(LadderSettings):
    """The ladder plus how each step runs; validated once, read by the engine and the result.

    Attributes:
        steps / epochs: the length, one of the two (neither means DEFAULT_STEPS steps).
        mode: `auto` picks exp over more than 1.5 decades (see `clrfind.ladder`).
        metric: `loss`, or the paper's `accuracy` / `val_loss` on a validation subsample of `eval_batches`
            batches every `eval_every` steps.
        sync_every: steps per host read of the losses (None: the engine's choice).
        verify_bounds: train with the suggested one-cycle schedule, compressed, before trusting its peak
            (`clrfind.verify`).
        verify_on: what the trials are judged on (`VerifyOn`); `val` where held-out training samples would share
            what the trials train on (overlapping windows of one text, augmented copies of one image) or resemble
            it more than the validation data does.
        clip_grad_norm / clip_grad_value: clip the gradients between backward and the optimizer step with
            `torch.nn.utils.clip_grad_norm_` / `clip_grad_value_` (unscaled first under fp16), as the training the
            test stands for does: clipping changes which LRs diverge.
        training: the training the bounds are for; sets the length when neither steps nor epochs is given.
    """

    precision: Precision = "fp32"
    accumulate: Positive = 1
    compile: bool = False
    channels_last: bool = False
    seed: Seed | None = None
    sync_every: Positive | None = None
    verify_bounds: bool = True
    verify_on: VerifyOn = "auto"
    clip_grad_norm: ClipThreshold | None = None
    clip_grad_value: ClipThreshold | None = None
    training: TrainingLength | None = None

    @model_validator(mode="after")
    def _one_clip(self) -> RunSettings:
        problem = clip_problem(self.clip_grad_norm, self.clip_grad_value)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self

    @classmethod
    def from_arguments(cls, **arguments: Any) -> RunSettings:
        """Settings from `range_test()`'s keyword arguments; a bad one is a `UsageError` naming the argument.

        Checked before the model is touched, so `precision="fp8"` or `metric="acc"` fails in microseconds, not
        after a whole test.
        """
        try:
            return cls.model_validate(arguments)
        except ValidationError as exc:
            raise _usage_error(exc) from None

    # -- what the settings imply -------------------------------------------------------------------------------

    @property
    def ladder_mode(self) -> Mode:
        """The ladder that runs: `mode`, with `auto` resolved from the range."""
        return resolve_mode(self.min_lr, self.max_lr, self.mode)

    def steps_per_epoch(self, batches_per_epoch: int | None) -> int | None:
        """Optimizer steps in one pass over the data (`accumulate` batches make one step)."""
        return max(1, batches_per_epoch // self.accumulate) if batches_per_epoch else None

    def training_length(self, steps_per_epoch: int | None, *, source: str = "") -> TrainingLength | None:
        """`training` with its steps per epoch filled in from the test's data when it left them out.

        `source`: the spec file, as a prefix of a problem's key.
        """
        if self.training is None or self.training.steps_per_epoch is not None:
            return self.training
        if steps_per_epoch is None:
            raise SetupError(
                f"{source}training.epochs: the training data has no length, so an epoch's steps are unknown",
                hint="give them as training.steps_per_epoch",
            )
        return self.training.model_copy(update={"steps_per_epoch": steps_per_epoch})

    def planned_steps(self, batches_per_epoch: int | None, *, source: str = "") -> int:
        """`steps`, or `epochs` passes over the data, or about the training's length, or DEFAULT_STEPS.

        `source`: the spec file, as a prefix of a problem's key (`spec.yaml: `).
        """
        per_epoch = self.steps_per_epoch(batches_per_epoch)
        # Checked even when the test's own length is given: the results record it, and export reads it.
        training = self.training_length(per_epoch, source=source)
        if self.epochs is None:
            if self.steps is None and training is not None:
                return told_test_steps(training.total_steps)
            return self.steps or DEFAULT_STEPS
        if per_epoch is None:
            raise SetupError(
                f"{source}range_test.epochs: the training data has no length, so epochs cannot be counted",
                hint="give the length in steps instead",
            )
        if self.epochs * per_epoch > MAX_STEPS:
            raise SetupError(
                f"{source}range_test.epochs: {self.epochs} epochs of {per_epoch} steps is more than {MAX_STEPS:,} "
                "steps",
                hint="run fewer epochs, or give the length in steps",
            )
        return max(2, self.epochs * per_epoch)

    def eval_interval(self, planned_steps: int) -> int:
        """Steps between metric evaluations: `eval_every`, or about TARGET_EVALUATIONS over the run."""
        return self.eval_every or max(1, planned_steps // TARGET_EVALUATIONS)

    def ladder(self, planned_steps: int) -> np.ndarray:
        """The LR of every step."""
        return lr_ladder(self.min_lr, self.max_lr, planned_steps, self.ladder_mode)


def _usage_error(exc: ValidationError) -> UsageError:
    """The first problem of a library call in its argument's own name: `precision: expected one of ... got 'fp8'`."""
    problems = []
    for err in exc.errors(include_url=False):
        name = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            msg = f"expected one of {err['ctx']['expected']}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif not name and ":" in msg:  # a rule across fields names its field first
            name, _, msg = msg.partition(": ")
        problems.append(f"{name}: {msg}, got {short_repr(err['input'])}" if name and err["type"] != "value_error" else
                        f"{name}: {msg}" if name else msg)  # fmt: skip
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return UsageError(problems[0] + more)
