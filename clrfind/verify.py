"""The self-check: before the schedule is written, train with it and keep only a peak that trains.

A range test reads the bounds off one short run whose LR keeps rising; the one-cycle peak extrapolates from it
(Smith: the best LR is within 2x of the largest that still converges). Neither is evidence that a *whole* run at
that peak trains: a model that already converged survives any LR, batch norm lets a short run survive rates a long
one does not, and a high LR can fit noisy labels or overfit a small dataset. So the self-check asks the task itself:
from the model's initial weights, it trains with the exported one-cycle schedule compressed to a few dozen steps,
once per candidate peak (half a decade apart, starting at max_lr, going up toward peak_lr or down; an adaptive
optimizer's peak, at max_lr, goes down first and up to its ceiling only when the lower side lost; a converged
test's, at max_lr, goes up first toward its ceiling), on the same batches in the same order, and judges them on
held-out samples when there are some (`clrfind.trials`); a higher peak's edge counts there only when at least half
of what it gains on its own training batches shows on the held-out samples, for the rest is a fit to those batches
that a whole run, longer than a trial, grows into overfitting (a small text, noisy labels). A trial that diverges,
turns non-finite, ends clearly higher than it started or no better on the held-out samples than the untrained model
fails; one whose loss neither falls nor rises beyond its noise shows nothing, and when no trial shows more the peak
is left unchecked at max_lr. Then the steps left in the budget hold the chosen peak: the same warm-up, then the peak
to the end. A whole run spends far longer near its peak than a compressed trial does, and an instability that grows
with that stay (a Transformer under SGD, units of a narrow ReLU layer dying one high-LR step at a time) shows only
there; a hold that turns non-finite, whose loss clearly rises over the stay, that ends no lower than it began (a
blow-up that settles at the untrained loss), or that stalls at the peak far short of where the peak's own trial got
as its LR came down (at the peak the model does not learn) lowers the peak to the highest lower trial that trained
(or half a decade). All trials together cost at most the range test's planned steps.

The search is asymmetric because short trials are: they favour a higher LR (a lower one has not caught up yet, and
the price of a high LR, a higher loss floor or a fit to noise, grows with the length of the run). So the peak goes up
only where a higher one ends clearly lower, and down wherever a lower one ends no worse than the best trial: a peak
that keeps up over a few dozen steps does at least as well over the whole run. The lowest peak within noise of the
best is kept, as the one-standard-error rule keeps the simplest model within noise of the best one; under SGD only
when the trials got as far as the range test did: trials that all stop clearly above the test's lowest losses are
sharing a plateau that none has left yet (a language model at its characters' frequencies), which a higher LR leaves
sooner, and there a tie says nothing. An adaptive optimizer's higher LR does not leave a plateau sooner by as much
(its steps are scaled to the gradients), and what it costs, a higher loss floor, is what short trials cannot see:
there the lowest peak within noise is kept either way.

Pure decisions on the trials' losses live here; running a trial is `clrfind.trials`', through the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from clrfind.analysis.bounds import DIVERGENCE_HEADROOM, HALF_DECADE, MIN_RATIO
from clrfind.analysis.divergence import two_digits
from clrfind.export import one_cycle_plan
from clrfind.results import CONFIDENCE_LEVELS, Bounds, OptimizerRef, Trial, Verification

# Candidate peaks are this far apart (half a decade): close enough to matter, far enough that a short trial can tell
# them apart.
STEP = HALF_DECADE
# Candidates closer than this factor are one candidate: a short trial cannot tell them apart.
NEAR = 1.2
# Trials: the one at max_lr, one or two steps up, then down while the lower peaks keep up.
MAX_TRIALS = 4
# The lowest peak tried is max_lr / FLOOR (three steps down): the range test's max_lr can sit well above where a
# long run trains best (an adaptive optimizer's loss floor, a small dataset it overfits), but further down the
# test itself would be wrong, not the peak.
FLOOR = STEP**3
# Shorter trials say nothing about a schedule: below this many steps each, there is no self-check.
MIN_TRIAL_STEPS = 12
# The final loss of a trial is the mean over its last 20% of steps (the annealed end of the cycle) ...
FINAL_FRACTION = 0.2
# ... and one trial beats another when, sample by sample on the held-out data (else step by step on the same
# training batches), its loss is lower by more than 2 standard errors of the paired difference and by more than 1% of
# the trial's fall: noise alone never moves the peak up, nor stops a lower peak that trains as well.
SIGNIFICANCE = 2.0
MIN_GAIN = 0.01
# A higher peak's win on the held-out samples counts only when at least this share of what it gained over the lower
# peak on its own training batches shows there too. The rest is a fit to the samples it trained on, which a run
# longer than the trial grows into overfitting while the held-out edge stays (Smith 2018 reads overfitting off short
# runs: the held-out loss stalls or rises while the training loss falls). Under half, the fit is most of the gain,
# and the two peaks tie: no evidence for the higher one, none against it. Half is "most", not a fitted value.
TRANSFER = 0.5
# A hold whose loss stalls at the peak (no fall over the stay beyond its noise) and ends short of where the kept
# peak's own trial ended by more than this share of that trial's fall fails: most of what the trial learned, it
# learned as its LR came down, and at the peak this model does not learn. Less than that is the noise floor of a
# constant LR, which the one cycle's annealing removes (Smith's super-convergence). Half is "most", not fitted.
STALL = 0.5


class TrialRunner(Protocol):
    """(LRs, momenta or None) -> (training losses, stop reason, held-out loss per check batch or None); a `hold`
    is stopped only by a non-finite loss (`_hold` judges its rise itself)."""

    def __call__(
        self, lrs: np.ndarray, momenta: np.ndarray | None, *, hold: bool = False
    ) -> tuple[np.ndarray, str, np.ndarray | None]: ...


def trial_schedule(
    base_lr: float, peak: float, optimizer: OptimizerRef, steps: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """(LR per step, momentum per step or None): the exported one cycle, compressed to `steps`, as torch's
    OneCycleLR computes it."""
    import torch

    _, kwargs, _ = one_cycle_plan(base_lr, peak, optimizer, steps)
    cycled = bool(kwargs.get("cycle_momentum"))
    param = torch.nn.Parameter(torch.zeros(1))
    dummy = torch.optim.SGD([param], lr=peak, momentum=0.9 if cycled else 0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(dummy, **kwargs)
    lrs, momenta = [], []
    for i in range(steps):
        lrs.append(dummy.param_groups[0]["lr"])
        momenta.append(dummy.param_groups[0]["momentum"])
        if i < steps - 1:
            dummy.step()
            scheduler.step()
    return np.array(lrs), (np.array(momenta) if cycled else None)


def _tail_size(steps: int) -> int:
    """How many of a `steps`-step run's last losses are its end (its annealed last FINAL_FRACTION)."""
    return max(2, round(FINAL_FRACTION * steps))


def _unpaired_se(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of the difference of the means of `a` and `b`, taken on different batches or steps."""
    return math.sqrt(float(a.var(ddof=1)) / a.size + float(b.var(ddof=1)) / b.size)


@dataclass(frozen=True)
class _Run:
    """One trial's training losses, how it ended, and its loss on each held-out batch (None without any)."""

    peak: float
    losses: np.ndarray
    stop_reason: str
    check: np.ndarray | None = None
    # The untrained model's loss on the same held-out samples (None without any): what "it trained" is measured
    # against, beside its own fall.
    untrained: np.ndarray | None = None
    # The loss averages over its batch, so its held-out values (per sample, or per smaller batch) are in the training
    # loss's units: only then can what a trial gains on its training batches be set against what it gains on the
    # held-out samples (`_fits`). A loss that sums over its batch is not, read on held-out batches of another size.
    mean_loss: bool = False

    @property
    def tail(self) -> np.ndarray:
        return self.losses[-_tail_size(self.losses.size) :]

    @property
    def finished(self) -> bool:
        """It ran to the end with finite losses (held-out ones too)."""
        if self.stop_reason != "completed" or not np.isfinite(self.losses).all():
            return False
        return self.check is None or bool(np.isfinite(self.check).all())

    @property
    def fall(self) -> float:
        """Its mean loss over its first steps minus that over its last (as many of each)."""
        return float(self.losses[: self.tail.size].mean()) - float(self.tail.mean())

    @property
    def change(self) -> float:
        """How far its loss fell from its first steps to its last, in standard errors (different batches, so the
        two means are compared unpaired); +inf or -inf for a noiseless fall or rise."""
        head, tail = self.losses[: self.tail.size], self.tail
        fall = self.fall
        se = _unpaired_se(head, tail)
        return fall / se if se > 0 else math.copysign(math.inf, fall) if fall else 0.0

    @property
    def trained(self) -> bool:
        """It finished, its loss fell beyond its noise and it ends clearly better on the held-out samples than the
        untrained model: a trial that learned nothing in its few steps cannot show that a lower peak keeps up with a
        higher one, nor the other way round. The second test matters where a high LR first throws the loss up and
        it falls back only to where it started (a saturated sigmoid net on a plateau): a fall, but nothing learned."""
        if not (self.finished and self.change > SIGNIFICANCE):
            return False
        if self.check is None or self.untrained is None:
            return True
        return _clearly_lower(self.check, self.untrained, self.fall)

    @property
    def level(self) -> bool:
        """It finished and its loss neither fell nor rose beyond its noise: too short for this model to learn."""
        return self.finished and abs(self.change) <= SIGNIFICANCE

    @property
    def final(self) -> float | None:
        return float(self.tail.mean()) if self.trained else None

    def record(self) -> Trial:
        check = float(self.check.mean()) if self.check is not None and self.trained else None
        return Trial(
            peak=self.peak, steps=int(self.losses.size), final_loss=self.final, stop_reason=self.stop_reason,
            check_loss=check,
        )  # fmt: skip


def clearly_better(challenger: _Run, incumbent: _Run) -> bool:
    """True when `challenger` trained and ends clearly lower than `incumbent`: on the held-out batches when both
    have them (batch by batch), else on their last training steps (step by step, on the same batches). With
    held-out batches, a higher peak whose edge is mostly a fit to its training batches ties (`_fits`)."""
    if not challenger.trained:
        return False
    if not incumbent.trained:
        return True
    if challenger.check is not None and incumbent.check is not None:
        if _fits(*sorted((challenger, incumbent), key=lambda r: -r.peak)):
            return False  # no evidence for the higher peak, and none against it: a tie
        return _clearly_lower(challenger.check, incumbent.check, incumbent.fall)
    return _clearly_lower(challenger.tail, incumbent.tail, incumbent.fall)


def _fits(higher: _Run, lower: _Run) -> bool:
    """The higher peak ends clearly lower than the lower one on their training batches (the same ones), and less
    than TRANSFER of that gain shows on the held-out samples: it memorizes faster, it does not learn faster. False
    without held-out samples or with a loss that sums (`_Run.mean_loss`), where the two cannot be set side by side."""
    if not (higher.mean_loss and lower.mean_loss) or higher.check is None or lower.check is None:
        return False
    if not _clearly_lower(higher.tail, lower.tail, lower.fall):
        return False
    train_gain, held_gain = _gains(higher, lower)
    return held_gain < TRANSFER * train_gain


def _gains(higher: _Run, lower: _Run) -> tuple[float, float]:
    """(how much lower `higher` ends on the training batches, how much lower on the held-out samples)."""
    assert higher.check is not None and lower.check is not None
    n = min(higher.tail.size, lower.tail.size)
    return float((lower.tail[-n:] - higher.tail[-n:]).mean()), float(lower.check.mean() - higher.check.mean())


def _clearly_lower(losses: np.ndarray, than: np.ndarray, fall: float) -> bool:
    """`losses` are lower than `than`, pair by pair (the last pairs when their lengths differ), by more than
    SIGNIFICANCE standard errors of the difference and MIN_GAIN of a trial's `fall`."""
    n = min(losses.size, than.size)
    diff = than[-n:] - losses[-n:]
    gain = float(diff.mean())
    se = float(diff.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return gain > max(SIGNIFICANCE * se, MIN_GAIN * abs(fall))


def reached_losses(losses: np.ndarray, smoothed: np.ndarray, budget: int) -> np.ndarray | None:
    """The range test's training losses around its lowest smoothed loss, as many as a trial's end has (`_Run.tail`
    of a `budget // MAX_TRIALS`-step trial): how far the test itself got, for `_cut_short`."""
    finite = np.isfinite(smoothed)
    if not finite.any():
        return None
    i = int(np.nanargmin(np.where(finite, smoothed, np.nan)))
    half = _tail_size(budget // MAX_TRIALS) // 2
    window = losses[max(0, i - half) : i + half + 1]
    window = window[np.isfinite(window)]
    return window if window.size >= 2 else None


def _cut_short(run: _Run, reached: np.ndarray | None) -> bool:
    """The trial ended clearly above the losses the range test reached (unpaired: other batches, other steps).

    Then the trials stopped before the point the test got to, and a lower peak that ties with this one only shows
    that neither got there in a few dozen steps: on a plateau they all share (a language model at its characters'
    frequencies) a higher LR leaves sooner. The tie is evidence that the lower peak keeps up only where the trials
    reached what the test reached, as at a small dataset being memorized. Only SGD's descent asks (`verify`).
    """
    if reached is None or not run.trained:
        return False
    tail = run.tail
    gap = float(tail.mean()) - float(reached.mean())
    return gap > max(SIGNIFICANCE * _unpaired_se(tail, reached), MIN_GAIN * abs(run.fall))


def trial_ceiling(bounds: Bounds) -> float:
    """The highest peak the trials may try: the one-cycle peak, or the ceiling an adaptive optimizer's or a
    converged test's peak may be raised to, where that is higher."""
    top = bounds.peak_lr or bounds.max_lr
    assert top is not None
    return max(top, bounds.peak_ceiling_lr or top)


def candidate_peaks(max_lr: float, top: float) -> tuple[list[float], list[float]]:
    """(peaks above max_lr, peaks below it) the self-check may try, nearest first: up toward the range test's own
    upper estimate `top`, never past it; down as far as max_lr / FLOOR."""
    up: list[float] = []
    for k in (1, 2):
        # A step that lands within NEAR of the top is the top itself: two trials 1% apart tell nothing apart.
        peak = top if max_lr * STEP**k * NEAR >= top else max_lr * STEP**k
        if peak > (up[-1] if up else max_lr) * NEAR:
            up.append(peak)
    down = [max_lr / STEP**k for k in (1, 2, 3) if STEP**k <= FLOOR * (1 + 1e-9)]
    return up, down


def verify(
    bounds: Bounds,
    optimizer: OptimizerRef,
    budget: int,
    run_trial: TrialRunner,
    *,
    judged_on: str = "",
    prefer_lower: bool = True,
    untrained: np.ndarray | None = None,
    reached: np.ndarray | None = None,
    mean_loss: bool = False,
) -> tuple[Bounds, Verification]:
    """Check the one-cycle peak by training; return the bounds it supports and what was checked.

    `budget` is the number of steps all trials may take together (the range test's planned length);
    `run_trial(lrs, momenta)` trains from the initial weights on the usual batches and returns (losses, stop reason).
    Without `prefer_lower`, the descent stops at the first peak that trains instead of going on while lower ones
    keep up. `untrained`: the initial model's loss on the held-out samples the trials are judged on, which a trial
    must beat to count as trained. `reached`: the range test's training losses around its lowest point
    (`reached_losses`); under SGD a tie with a trial that ended clearly above them moves nothing (`_cut_short`),
    under an adaptive optimizer it lowers the peak as any tie does. `mean_loss`: the loss averages over its batch, so
    held-out losses are in the training loss's units (`_Run.mean_loss`).
    """
    assert bounds.base_lr is not None and bounds.max_lr is not None
    steps = budget // MAX_TRIALS
    top = bounds.peak_lr or bounds.max_lr
    # An adaptive optimizer's cycle peaks at max_lr; the trials may still raise it as far as its ceiling.
    ceiling = trial_ceiling(bounds)
    if steps < MIN_TRIAL_STEPS:
        why = (
            f"not run: a {budget}-step test leaves too few steps for {MAX_TRIALS} trials of {MIN_TRIAL_STEPS}"
        )
        return bounds, Verification(trials=[], steps=0, outcome=why, checked_peak=top, peak_lr=top)
    runs: dict[float, _Run] = {}

    def trial(peak: float) -> _Run:
        if peak not in runs:
            lrs, momenta = trial_schedule(bounds.base_lr, peak, optimizer, steps)  # type: ignore[arg-type]
            losses, stop, check = run_trial(lrs, momenta)
            runs[peak] = _Run(peak, np.asarray(losses, dtype=float), stop, check, untrained, mean_loss)
        return runs[peak]

    best = trial(bounds.max_lr)
    up, down = candidate_peaks(bounds.max_lr, ceiling)

    def climb(candidates: list[float], best: _Run) -> _Run:
        """Step through `candidates` while each beats the best so far, within the trial budget."""
        for peak in candidates:
            if len(runs) >= MAX_TRIALS:
                break
            challenger = trial(peak)
            if not clearly_better(challenger, best):
                break
            best = challenger
        return best

    short_of: list[tuple[_Run, _Run]] = []  # a tie set aside: (the lower trial, the one it tied with)

    def descend(candidates: list[float], best: _Run) -> _Run:
        """Step down through `candidates` while each trains no worse than the best trial so far; the lowest. The best
        changes only on a clear win, not on a tie, so a run of ties can drift down: short trials lean toward the
        higher LR (judging against the lowest trial instead moved nothing beyond noise and cost memorization)."""
        chosen = best if best.trained else None
        for peak in candidates:
            if len(runs) >= MAX_TRIALS or (chosen is not None and not prefer_lower):
                break
            challenger = trial(peak)
            if chosen is None:  # nothing trained yet: the first lower peak that trains is the one to beat
                if challenger.trained:
                    chosen = best = challenger
                continue
            if not challenger.trained or clearly_better(best, challenger):
                break
            if clearly_better(challenger, best):
                chosen = best = challenger
                continue
            if not optimizer.adaptive and _cut_short(best, reached):
                short_of.append((challenger, best))
                break
            chosen = challenger
        return chosen or best

    center = best
    if ceiling > top and optimizer.adaptive:
        # An adaptive optimizer's peak sits at max_lr for a reason a short trial cannot see (its loss floor): it
        # goes up only when the lower side lost too, so that both neighbours point the same way.
        best = descend(down, best)
        if best is center and best.trained:
            best = climb(up, best)
    else:
        best = climb(up, best)
        if best is center or not best.trained:
            best = descend(down, best)
    checked, record = _apply(bounds, best, runs, steps, top)
    if short_of and reached is not None:
        why = (
            f"{two_digits(short_of[0][0].peak)} tied with {two_digits(short_of[0][1].peak)}, but both ended short of "
            f"the range test's lowest loss ({two_digits(float(reached.mean()))}), so the tie says nothing"
        )
        record = record.model_copy(update={"outcome": f"{record.outcome} ({why})"})
    left = budget - steps * len(runs)
    if best.trained and left >= steps:
        checked, record = _hold(checked, record, runs, optimizer, left, run_trial)
    return checked, record.model_copy(update={"judged_on": judged_on})


def rescue(
    bounds: Bounds,
    optimizer: OptimizerRef,
    budget: int,
    run_trial: TrialRunner,
    *,
    judged_on: str = "",
    untrained: np.ndarray | None = None,
) -> tuple[Bounds, Verification]:
    """Look, by training, for an LR that learns when the range test's loss never fell: it stayed level up to
    `bounds.level_until_lr`, then got worse.

    A model that must spend many steps at one LR to leave a plateau (a deep net without normalization under plain
    SGD, a saddle at its initial weights) shows no fall on a ladder that gives each LR a few steps; a trial gives a
    cycle's peak a few dozen. The trials are the self-check's, with max_lr at half the top of the level stretch
    (past the top the loss got worse; half of it, as peak_lr is half the divergence) and base_lr Smith's 4x below:
    down half a decade at a time to the first that trains, then no further. On a plateau a lower LR that keeps up
    over a few dozen steps is no evidence, as both have learned little; a higher LR leaves a plateau sooner, and the
    hold that follows, at the peak for the steps the trials left, is what checks that a whole run can stay there.
    Bounds found so rest on trials, not on the curve: confidence low. Without a trial that trains, there are still
    no bounds, and the record says what was tried.
    """
    assert bounds.level_until_lr is not None
    level = f"the loss stayed level up to lr {two_digits(bounds.level_until_lr)}, then got worse"
    top = bounds.level_until_lr / DIVERGENCE_HEADROOM
    candidate = bounds.model_copy(
        update={
            "base_lr": top / MIN_RATIO,
            "max_lr": top,
            "peak_lr": top,
            "confidence": "low",
            "base_rationale": f"no fall on the curve to start from: {MIN_RATIO:g}x below max_lr (Smith 2017: 3-4x)",
            "max_rationale": (
                f"{level}, with no fall to read max_lr from: the self-check's one-cycle trials looked for the highest "
                f"LR that trains, from {two_digits(top)} (half of it) down"
            ),
        }
    )
    checked, record = verify(
        candidate, optimizer, budget, run_trial, judged_on=judged_on, prefer_lower=False, untrained=untrained
    )
    if not record.trials:  # the budget is too short for trials: the record says so
        return bounds, record
    steps = record.trials[0].steps
    if not any(t.final_loss is not None for t in record.trials):
        tried = ", ".join(
            f"{two_digits(t.peak)} -> {'did not train' if t.stop_reason == 'completed' else t.stop_reason}"
            for t in record.trials
        )
        outcome = (
            f"{level}; no one-cycle trial at or below it trained in {steps} steps either (peaks tried: {tried}): "
            "no bounds"
        )
        return bounds, record.model_copy(update={"outcome": outcome, "hold": None})
    found = (
        f"self-check: no LR made the loss fall on the range test's ladder, but a {steps}-step one cycle "
        f"peaking at {two_digits(checked.max_lr)} trained"  # type: ignore[arg-type]
    )
    return checked.model_copy(
        update={
            "confidence": "low",
            "reason": _join(bounds.reason, found),
            "next_step": (
                f"the bounds rest on short trials, not on the curve: confirm them with a longer test "
                f"(--steps {3 * budget}) or a few hundred steps at max_lr"
            ),
        }
    ), record.model_copy(update={"outcome": f"{level}: {record.outcome}"})


def hold_schedule(
    base_lr: float, peak: float, optimizer: OptimizerRef, steps: int
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(LR per step, momentum per step or None, first step at the peak): the trials' one cycle over `steps` up to
    its peak, then the peak (and the momentum there) to the end."""
    lrs, momenta = trial_schedule(base_lr, peak, optimizer, steps)
    top = int(np.argmax(lrs))
    lrs[top:] = peak
    if momenta is not None:
        momenta[top:] = momenta[top]
    return lrs, momenta, top


def _hold(
    bounds: Bounds,
    record: Verification,
    runs: dict[float, _Run],
    optimizer: OptimizerRef,
    steps: int,
    run_trial: TrialRunner,
) -> tuple[Bounds, Verification]:
    """Hold the kept peak for the `steps` left in the budget; lower it when the stay does not hold."""
    assert bounds.base_lr is not None and bounds.max_lr is not None and bounds.peak_lr is not None
    peak = bounds.peak_lr
    lrs, momenta, top = hold_schedule(bounds.base_lr, peak, optimizer, steps)
    # Only a non-finite loss stops the stay: the engine's monitor measures a rise against the fall so far, which
    # after a short warm-up is small, and a loss bouncing at a constant high LR crosses it while the run trains on.
    losses, stop, _check = run_trial(lrs, momenta, hold=True)
    whole = _Run(peak, np.asarray(losses, dtype=float), stop)
    held = _Run(peak, whole.losses[top:], stop)
    # A stay can also fail without a rise over it: the loss blows up early in the stay, then settles where the run
    # began (units that died, a network that predicts a constant), lower than its blow-up but no lower than the
    # untrained model's. A run whose loss ends no lower than it began, beyond its noise, has learned nothing.
    unlearned = held.finished and whole.change <= SIGNIFICANCE
    own = runs.get(peak)  # the kept peak's own trial, which a stay that stalls is measured against
    stalled = not unlearned and _stalled(held, own)
    failed = not held.finished or held.change < -SIGNIFICANCE or unlearned or stalled
    trial = Trial(
        peak=peak, steps=steps, final_loss=None if failed else float(held.tail.mean()), stop_reason=stop
    )
    stay = f"held at {two_digits(peak)} for {steps - top} steps after a {top}-step warm-up"
    update: dict[str, object] = {"hold": trial, "steps": record.steps + steps}
    if not failed:
        return bounds, record.model_copy(
            update={**update, "outcome": f"{record.outcome}; {stay}, it trained on"}
        )
    # Nothing but a non-finite loss stops a hold (`hold=True`): any other stop is named as it came.
    stopped = "it turned non-finite" if stop == "non-finite" else f"it stopped ({stop})"
    if not held.finished:
        how = stopped
    elif held.change < -SIGNIFICANCE:
        how = "its loss rose"
    elif unlearned:
        how = "its loss ended no lower than where the run began"
    else:
        assert own is not None  # `_stalled` is False without the peak's own trial
        how = (
            f"its loss stalled at {two_digits(float(held.tail.mean()))}, far short of the "
            f"{two_digits(float(own.tail.mean()))} its trial reached as its LR came down: at this peak the "
            "model does not learn"
        )
    lower = max((r.peak for r in runs.values() if r.trained and r.peak * NEAR < peak), default=peak / STEP)
    moved: dict[str, object] = {
        "peak_lr": lower,
        "max_rationale": f"{bounds.max_rationale}; {stay} {how}, so the self-check lowered the peak to "
        f"{two_digits(lower)}",
    }
    if lower < bounds.max_lr:
        moved.update(_bounds_down_to(bounds, lower))
    outcome = f"{record.outcome}; {stay} {how}: the peak is lowered to {two_digits(lower)}"
    return bounds.model_copy(update=moved), record.model_copy(
        update={**update, "outcome": outcome, "peak_lr": lower}
    )


def _stalled(held: _Run, trial: _Run | None) -> bool:
    """The stay at the peak learned nothing beyond its noise, and ended clearly above the kept peak's own trial, by
    more than STALL of that trial's fall: the trial learned, but as its LR came down, not at the peak (a
    Transformer that leaves its classes' frequencies only below its peak). Unpaired: other steps of the batches."""
    if trial is None or not trial.trained or not held.finished or held.change > SIGNIFICANCE:
        return False
    gap = float(held.tail.mean()) - float(trial.tail.mean())
    return gap > max(SIGNIFICANCE * _unpaired_se(held.tail, trial.tail), STALL * trial.fall)


def _apply(
    bounds: Bounds, best: _Run, runs: dict[float, _Run], steps: int, top: float
) -> tuple[Bounds, Verification]:
    """The bounds the trials support, and the record of what was checked."""
    assert bounds.base_lr is not None and bounds.max_lr is not None
    tried = ", ".join(
        f"{two_digits(r.peak)} -> {_score(r)}" for r in sorted(runs.values(), key=lambda r: r.peak)
    )
    record = Verification(
        trials=[r.record() for r in sorted(runs.values(), key=lambda r: r.peak)],
        steps=steps * len(runs),
        checked_peak=top,
        peak_lr=best.peak,
        outcome="",
    )
    if not best.trained and all(r.level for r in runs.values()):
        outcome = (
            f"no trial's loss fell beyond its noise in {steps} steps ({tried}), too short to tell the peaks apart: "
            "the bounds are kept, one cycle peaks at max_lr"
        )
        unchecked = bounds.model_copy(
            update={
                "peak_lr": bounds.max_lr,
                "confidence": min(bounds.confidence, "medium", key=CONFIDENCE_LEVELS.index),
                "reason": _join(
                    bounds.reason, f"self-check: no {steps}-step trial's loss fell beyond its noise"
                ),
                "next_step": _join(
                    bounds.next_step,
                    f"for trials long enough to show learning, test longer (--steps {3 * MAX_TRIALS * steps})",
                ),
            }
        )
        return unchecked, record.model_copy(update={"outcome": outcome})
    if not best.trained:
        outcome = (
            f"no trial trained ({tried}): the bounds are kept, one cycle peaks at max_lr, confidence low"
        )
        lowered = bounds.model_copy(
            update={
                "peak_lr": bounds.max_lr,
                "confidence": "low",
                "reason": _join(bounds.reason, f"self-check: no one-cycle trial trained ({tried})"),
                "next_step": _join(bounds.next_step, "check the setup on a longer run; lower the range 10x"),
            }
        )
        return lowered, record.model_copy(update={"outcome": outcome})
    peak = best.peak
    fitted = _fit_note(best, runs)
    if peak >= bounds.max_lr:
        if math.isclose(peak, top):
            what, note = "kept", "the self-check kept the one-cycle peak"
        else:
            moved = "raised" if peak > top else "lowered"
            what = f"{moved} from {two_digits(top)}"
            note = f"the self-check {moved} the one-cycle peak from {two_digits(top)} to {two_digits(peak)}"
            if peak > top:  # only up to a ceiling: an adaptive optimizer's, or a converged curve's
                note += " (a cycle peaking there trained clearly better from the initial weights)"
        outcome = f"one-cycle peak {two_digits(peak)} {what}; loss after {steps}-step trials: {tried}"
        if fitted:
            outcome = f"{outcome} ({fitted})"
        update: dict[str, object] = {"peak_lr": peak, "max_rationale": f"{bounds.max_rationale}; {note}"}
    else:
        at_max = runs[bounds.max_lr]
        if fitted:
            why = fitted
        elif at_max.trained:
            why = (
                f"a cycle peaking there trained no worse than one at max_lr {two_digits(bounds.max_lr)}, and short "
                "trials favour the higher LR"
            )
        else:
            why = (
                f"the highest that trained; the trial at max_lr {two_digits(bounds.max_lr)}: {_score(at_max)}"
            )
        outcome = (
            f"max_lr and the one-cycle peak lowered to {two_digits(peak)} ({why}); loss after {steps}-step trials: "
            f"{tried}"
        )
        update = {
            "peak_lr": peak,
            **_bounds_down_to(bounds, peak),
            "max_rationale": f"{bounds.max_rationale}; the self-check lowered it to {two_digits(peak)}"
            + (": higher peaks mostly fit their training batches" if fitted else ""),
        }
    return bounds.model_copy(update=update), record.model_copy(update={"outcome": outcome})


def _fit_note(best: _Run, runs: dict[float, _Run]) -> str | None:
    """What the highest trial whose edge over the trained `best` was mostly a fit (`_fits`) gained where, for the
    outcome (the descent ties lower peaks with the highest clear winner); None when there is none."""
    higher = [r for r in runs.values() if r.peak > best.peak and r.trained and _fits(r, best)]
    if not higher:
        return None
    top = max(higher, key=lambda r: r.peak)
    train_gain, held_gain = _gains(top, best)
    held = f"only {two_digits(held_gain)}" if held_gain > 0 else "no lower"
    return (
        f"{two_digits(top.peak)} ended {two_digits(train_gain)} lower than {two_digits(best.peak)} on its "
        f"training batches but {held} on held-out samples: under half of that edge is learning, the rest a fit to "
        "the batches, which a longer run grows"
    )


def _bounds_down_to(bounds: Bounds, peak: float) -> dict[str, object]:
    """The update that moves max_lr down to a lower checked `peak`, and base_lr with it (their ratio kept)."""
    assert bounds.base_lr is not None and bounds.max_lr is not None
    return {
        "max_lr": peak,
        "base_lr": bounds.base_lr * peak / bounds.max_lr,
        "base_rationale": f"{bounds.base_rationale}; lowered with max_lr by the self-check",
    }


def _score(run: _Run) -> str:
    """What a trial ended at, as the outcome line shows it: held-out loss when there is one, else training loss."""
    if not run.trained:
        if run.level:
            return "no clear fall"
        if run.stop_reason != "completed":
            return run.stop_reason
        if run.change > SIGNIFICANCE and run.check is not None and run.untrained is not None:
            return (
                f"{two_digits(float(run.check.mean()))}, no better than untrained "
                f"({two_digits(float(run.untrained.mean()))})"
            )
        return "did not train"
    value = run.check.mean() if run.check is not None else run.final
    return two_digits(float(value))  # type: ignore[arg-type]


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second
