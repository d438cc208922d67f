"""Running the self-check's trials: the data they train on, the held-out batches that judge them, one trial.

A trial is judged on data it did not train on when there is any: the validation loader if the run has one, else a
tenth of the training set (at most CHECK_BATCHES batches) held out from the trials. A short run cannot show that a
high LR fits noisy labels or overfits a small dataset in its training loss, but it shows in the loss on held-out
samples (Smith 2018 reads under- and overfitting off the validation loss). Loaders that cannot be split (iterable
data, custom or distributed samplers) fall back to the trial's own training loss.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from clrfind.api import Trainer
    from clrfind.settings import RunSettings
    from clrfind.state import StateSnapshot

# Held-out batches a trial is judged on, and at most this share of the training data held out for them: enough
# batches for a paired comparison, little enough that the trials train on almost everything.
CHECK_BATCHES = 16
CHECK_FRACTION = 0.1
# The held-out samples are chosen by a fixed permutation: the same for every run of a spec.
CHECK_SEED = 0


@dataclass
class TrialData:
    """What the trials train on, what judges them, and in words, where the judging data comes from."""

    loader: Iterable[Any]
    check: list[Any] | None
    source: str


def trial_data(loader: Iterable[Any], val_loader: Iterable[Any] | None, *, device: torch.device) -> TrialData:
    """The validation batches when there are some, else a held-out tenth of the training set, else none."""
    from clrfind.engine import move_to_device

    def on_device(batches: Iterable[Any]) -> list[Any]:
        out = []
        for batch in batches:
            out.append(move_to_device(batch, device, non_blocking=False))
            if len(out) >= CHECK_BATCHES:
                break
        return out

    if val_loader is not None:
        return TrialData(loader, on_device(val_loader) or None, "the validation data")
    split = _split(loader)
    if split is None:
        return TrialData(loader, None, "the trial's own training loss (the data cannot be split)")
    trial_loader, check_loader, held = split
    return TrialData(
        trial_loader, on_device(check_loader), f"{held} training samples held out from the trials"
    )


def _split(loader: Iterable[Any]) -> tuple[Any, Any, int] | None:
    """(trial loader, held-out loader, held-out samples) for a DataLoader over a map-style dataset with plain
    shuffling or none, built like the original; None for anything else."""
    import torch
    from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler, Subset

    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        return None
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        return None
    if type(loader.sampler) not in (RandomSampler, SequentialSampler):
        return None
    n, batch = len(dataset), loader.batch_size
    held = min(CHECK_BATCHES * batch, int(CHECK_FRACTION * n))
    if held < batch or n - held < batch:
        return None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(CHECK_SEED)).tolist()
    common = {
        "batch_size": batch,
        "collate_fn": loader.collate_fn,
        "num_workers": loader.num_workers,
        "pin_memory": loader.pin_memory,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "persistent_workers": loader.persistent_workers,
    }
    shuffle = isinstance(loader.sampler, RandomSampler)
    generator = torch.Generator().manual_seed(CHECK_SEED) if shuffle else None
    trials = DataLoader(
        Subset(dataset, order[held:]),
        shuffle=shuffle,
        generator=generator,
        drop_last=loader.drop_last,
        **common,
    )
    check = DataLoader(Subset(dataset, order[:held]), shuffle=False, **common)
    return trials, check, held


def loader_generators(loader: Any, depth: int = 3) -> list[Any]:
    """The torch.Generators that decide a loader's order: its own and its samplers' (a BatchSampler wraps a
    RandomSampler, which may hold one), when seeded."""
    found: list[Any] = []
    owners = [loader]
    for _ in range(depth):
        nested = []
        for owner in owners:
            generator = getattr(owner, "generator", None)
            if hasattr(generator, "get_state") and all(generator is not g for g in found):
                found.append(generator)
            nested += [getattr(owner, name, None) for name in ("sampler", "batch_sampler")]
        owners = [o for o in nested if o is not None]
    return found


class TrialRunner:
    """Runs one trial: restore the initial state, rewind the data, train with the given schedule through the
    engine, and measure the held-out loss per check batch (all-reduced under torch.distributed)."""

    def __init__(
        self, trainer: Trainer, initial: StateSnapshot, data: TrialData, settings: RunSettings
    ) -> None:
        self.trainer, self.initial, self.data, self.settings = trainer, initial, data, settings
        self.generators = [(g, g.get_state()) for g in loader_generators(data.loader)]

    def rewind(self) -> None:
        for generator, state in self.generators:
            generator.set_state(state)

    def __call__(
        self, lrs: np.ndarray, momenta: np.ndarray | None, *, hold: bool = False
    ) -> tuple[np.ndarray, str, np.ndarray | None]:
        """(training losses, stop reason, held-out loss per check sample or None); a `hold` (a stay at one LR) is
        stopped only by a non-finite loss, and the caller judges its curve."""
        from clrfind.engine import run_loop
        from clrfind.stops import Interrupt

        t = self.trainer
        self.initial.restore()
        self.rewind()
        out = run_loop(
            t.model, self.data.loader, t.loss_fn, t.optimizer, lrs, device=t.device, settings=self.settings,
            step_fn=t.step_fn, reduce_loss=t.reduce_loss, momenta=momenta, stop_on_rise=not hold,
        )  # fmt: skip
        if out.stop_signal is not None:
            raise Interrupt(out.stop_signal)  # Ctrl-C or SIGTERM stops the self-check, not just this trial
        check = None
        if self.data.check and out.stop_reason == "completed":
            check = self._check_losses()
        return out.losses, out.stop_reason, check

    def _check_losses(self) -> np.ndarray:
        """The trained model's loss on each held-out sample (each batch, when the loss cannot be taken per sample),
        in eval mode, as it will be used: the more paired values, the smaller a difference the trials can tell."""
        import torch

        from clrfind.engine import autocast, default_step

        t = self.trainer
        step = t.step_fn or default_step
        per_sample = t.step_fn is None and getattr(t.loss_fn, "reduction", None) == "mean"
        was_training = t.model.training
        t.model.eval()
        losses = []
        try:
            if per_sample:
                t.loss_fn.reduction = "none"  # type: ignore[union-attr]
            with torch.no_grad(), autocast(t.device, self.settings.precision):
                for batch in self.data.check or []:
                    loss = step(t.model, batch, t.loss_fn).detach().float()
                    losses.append(
                        loss.reshape(loss.shape[0], -1).mean(1)
                        if per_sample and loss.dim()
                        else loss.reshape(1)
                    )
        finally:
            if per_sample:
                t.loss_fn.reduction = "mean"  # type: ignore[union-attr]
            t.model.train(was_training)
        stacked = torch.cat(losses)
        if t.reduce_loss is not None:
            stacked = t.reduce_loss(stacked)
        return np.asarray(stacked.cpu().tolist(), dtype=float)
