"""Running the self-check's trials: the data they train on, the held-out batches that judge them, one trial.

A trial is judged on data it did not train on: a short run cannot show that a high LR fits noisy labels or overfits
a small dataset in its training loss, but it shows in the loss on held-out samples (Smith 2018 reads under- and
overfitting off the validation loss), and judging on the trial's own training loss measurably costs the suggestion
on the quality bench. The judge, in order:
- a tenth of the training data (at most CHECK_BATCHES batches) held out by sample, from any DataLoader over a
  map-style dataset whatever its sampler (the trials' sampler skips the held-out indices). Preferred to the
  validation data: the same spec gets the same schedule with or without `data.val`, the validation set stays the
  user's to judge their training on, and the held-out samples come through the training pipeline the schedule is
  for. On the quality bench, judging on the validation split instead trained no better (lower on the held-out
  half on two draws of seeds, mixed over all tasks; with noisy labels a clean validation split is a sharper judge
  and shows more of the short trials' lean toward the higher LR);
- the validation data, when the training data cannot be held out by sample;
- a tenth held out by position, from a stream or any other iterable: the batches at positions 0, HOLD_EVERY, ... of
  a pass judge, the trials skip those positions every pass. Exact when the order repeats; a stream reshuffled every
  pass shows the trials some of those samples again in their later passes;
- else (a one-shot iterator, a pass too short to spare a batch, a custom sampler or stream sharded by
  torch.distributed, where every rank must judge on as many samples) the trial's own training loss.
`verify_on: val` puts the validation data first: where training samples overlap (windows of one text at random
offsets, augmented copies of one image), or the validation data comes from elsewhere, held-out ones resemble what
the trials train on, and a high LR that memorizes passes for one that learns (on the quality bench's word language
model on overlapping windows, trials as long as the training reach 2.6 nats on the held-out ones, and the training
they choose 6.5 on its validation split).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clrfind.errors import USER_FAILURES

if TYPE_CHECKING:
    import torch

    from clrfind.api import Trainer
    from clrfind.settings import RunSettings
    from clrfind.state import StateSnapshot

# Held-out batches a trial is judged on, and at most this share of the training data held out for them: enough
# batches for a paired comparison, little enough that the trials train on almost everything.
CHECK_BATCHES = 16
CHECK_FRACTION = 0.1
# The held-out samples, and the trials' order over the rest, are drawn from the run's seed (offset by CHECK_SEED):
# the same for every run of a spec, another draw for another seed, so the seed covers all of a run's randomness
# (which samples judge decides between trials that tie, and a second seed shows that spread too).
CHECK_SEED = 0
# Data split by position: the batches at positions 0, HOLD_EVERY, 2 * HOLD_EVERY, ... of a pass judge (a tenth).
HOLD_EVERY = round(1 / CHECK_FRACTION)


class TrialDataFailed(Exception):
    """The training data raised while the self-check read its held-out batches or trained a trial: a verdict on
    the data, not on a trial's LR, so the self-check stops rather than count it against that LR."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class TrialData:
    """What the trials train on, what judges them, and in words, where the judging data comes from."""

    loader: Iterable[Any]
    check: list[Any] | None
    source: str


def per_sample(loss_fn: Any, step_fn: Any) -> bool:
    """Whether the held-out loss can be read per sample: the default step with a loss that averages (read with
    reduction "none"). A step function, or a loss that sums, gives one value per batch."""
    return step_fn is None and getattr(loss_fn, "reduction", None) == "mean"


def averages(loss_fn: Any) -> bool:
    """Whether the loss is taken as a mean over its batch: any loss but one that says it sums (`reduction="sum"`);
    a custom module, a function or none (a step function's own loss) cannot say, and a mean is the rule. Then a loss
    on held-out samples, per sample or per batch of any size, is in the training loss's units."""
    return getattr(loss_fn, "reduction", "mean") != "sum"


def trial_data(
    loader: Iterable[Any],
    val_loader: Iterable[Any] | None,
    *,
    device: torch.device,
    sharded: bool = False,
    by_sample: bool = True,
    prefer_val: bool = False,
    seed: int = 0,
) -> TrialData:
    """A held-out tenth of the training data when it can be held out by sample, else the validation batches when
    there are some, else a tenth held out by position, else none; `prefer_val`: the validation batches first.

    `sharded`: the loader is one rank's shard under torch.distributed; only a plain sampler is split then, since
    every rank must judge on as many samples as the others, which a custom sampler or a stream does not promise.
    `by_sample`: the held-out loss is read per sample (`per_sample`); else the held-out samples are batched
    smaller, into CHECK_BATCHES batches, since a paired comparison of a trial's loss needs several values, and
    a tenth of a small dataset is one or two of the training's batches. `seed`: the run's, which draws the
    held-out samples and the trials' shuffled order (`_draw`).
    """
    from clrfind.engine import move_to_device

    def on_device(batches: Iterable[Any]) -> list[Any]:
        out = []
        with _reading():
            for batch in batches:
                out.append(move_to_device(batch, device, non_blocking=False))
                if len(out) >= CHECK_BATCHES:
                    break
        return out

    split = None
    if not (prefer_val and val_loader is not None):
        split = _split(loader, by_sample, seed)
        if split is None and not sharded:
            split = _split_indices(loader, by_sample, seed)
    if split is not None:
        trial_loader, check_loader, held = split
        return TrialData(
            trial_loader, on_device(check_loader), f"{held} training samples held out from the trials"
        )
    if val_loader is not None:
        return TrialData(loader, on_device(val_loader) or None, "the validation data")
    with _reading():
        by_position = None if sharded else _split_positions(loader)
    if by_position is None:
        return TrialData(loader, None, "the trial's own training loss (the data cannot be split)")
    trial_loader, check = by_position
    return TrialData(
        trial_loader,
        on_device(check),
        f"{len(check)} training batches held out from the trials (every {HOLD_EVERY}th of a pass)",
    )


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """What the data raises while the held-out batches are read is the data's failure (`TrialDataFailed`)."""
    try:
        yield
    except USER_FAILURES as exc:
        raise TrialDataFailed(exc) from exc


def _check_batches(indices: list[int], batch: int, by_sample: bool) -> list[list[int]]:
    """The held-out indices in batches: the training's batch size when the loss is read per sample, else
    CHECK_BATCHES batches of near-equal size, at least 2 samples each (evaluation runs in eval mode, so any size
    serves, but a step that squeezes its batch axis would fail on one sample)."""
    if by_sample:
        return [indices[i : i + batch] for i in range(0, len(indices), batch)]
    count = max(1, min(CHECK_BATCHES, len(indices) // 2))
    return [chunk.tolist() for chunk in np.array_split(np.asarray(indices), count)]


def _split(loader: Iterable[Any], by_sample: bool, seed: int) -> tuple[Any, Any, int] | None:
    """(trial loader, held-out loader, held-out samples) for a DataLoader over a map-style dataset with plain
    shuffling or none, built like the original; None for anything else."""
    from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler, Subset

    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        return None
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        return None
    if type(loader.sampler) not in (RandomSampler, SequentialSampler):
        return None
    batch = loader.batch_size
    held_out = _held_out(len(dataset), batch, seed)
    if held_out is None:
        return None
    order, held = held_out
    args = _loader_args(loader)
    common = {"batch_size": batch, **args}
    shuffle = isinstance(loader.sampler, RandomSampler)
    generator = _draw(seed) if shuffle else None
    trials = DataLoader(
        Subset(dataset, order[held:]),
        shuffle=shuffle,
        generator=generator,
        drop_last=loader.drop_last,
        **common,
    )
    check = DataLoader(
        Subset(dataset, order[:held]),
        batch_sampler=_check_batches(list(range(held)), batch, by_sample),
        **args,
    )
    return trials, check, held


def _split_indices(loader: Iterable[Any], by_sample: bool, seed: int) -> tuple[Any, Any, int] | None:
    """(trial loader, held-out loader, held-out samples) for a DataLoader over a map-style dataset with any other
    sampler (weighted, bucketing, a batch sampler): a tenth of the indices, at most CHECK_BATCHES batches, is held
    out, and the trials' loader draws from the loader's own sampler, skipping them. None for anything else."""
    from torch.utils.data import DataLoader, IterableDataset

    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return None
    dataset, sampler, batch_sampler = loader.dataset, loader.sampler, loader.batch_sampler
    if not hasattr(dataset, "__len__"):
        return None
    # A loader that collates samples gets its batches of indices from a batch sampler; without collation, a
    # BatchSampler as `sampler` yields lists of indices, and plain keys (a batch each) cannot be counted.
    if batch_sampler is not None:
        batch = loader.batch_size or getattr(batch_sampler, "batch_size", None)
    else:
        batch = getattr(sampler, "batch_size", None)
    if not isinstance(batch, int) or batch < 1:
        return None
    held_out = _held_out(len(dataset), batch, seed)
    if held_out is None:
        return None
    order, held = held_out
    skipped = frozenset(order[:held])
    common = {**_loader_args(loader), "generator": loader.generator}
    held_batches = _check_batches(order[:held], batch, by_sample)
    if batch_sampler is None:
        trials = DataLoader(dataset, sampler=_without(sampler, skipped), batch_size=None, **common)
        check = DataLoader(dataset, sampler=held_batches, batch_size=None, **common)
        return trials, check, held
    if loader.batch_size is not None:  # the loader batches its sampler's indices: skip them there
        trials = DataLoader(
            dataset,
            sampler=_Skipping(sampler, skipped),
            batch_size=loader.batch_size,
            drop_last=loader.drop_last,
            **common,
        )
    else:
        trials = DataLoader(dataset, batch_sampler=_without(batch_sampler, skipped), **common)
    return trials, DataLoader(dataset, batch_sampler=held_batches, **common), held


def _without(batches: Any, skipped: frozenset[int]) -> Any:
    """A batch sampler like `batches`, without the `skipped` indices: a plain BatchSampler is rebuilt over its
    sampler so its batches stay full; a custom one (buckets by length) has the indices taken out of its batches."""
    from torch.utils.data import BatchSampler

    if type(batches) is BatchSampler:
        return BatchSampler(_Skipping(batches.sampler, skipped), batches.batch_size, batches.drop_last)
    return _Skipping(batches, skipped)


def _held_out(n: int, batch: int, seed: int) -> tuple[list[int], int] | None:
    """(a permutation of the n indices drawn from `seed`, how many of its first ones are held out): a tenth, at
    most CHECK_BATCHES batches; None when that is less than a batch or leaves less than one to train on."""
    import torch

    held = min(CHECK_BATCHES * batch, int(CHECK_FRACTION * n))
    if held < batch or n - held < batch:
        return None
    return torch.randperm(n, generator=_draw(seed)).tolist(), held


def _draw(seed: int) -> torch.Generator:
    """A generator for the run's `seed`, apart from the torch default one that the range test and trials draw
    from, so choosing held-out samples leaves the training's own randomness as it was."""
    import torch

    return torch.Generator().manual_seed((CHECK_SEED + seed) % 2**64)


def _loader_args(loader: Any) -> dict[str, Any]:
    """What a DataLoader built over the same dataset keeps of the original: how it loads and collates."""
    return {
        "collate_fn": loader.collate_fn,
        "num_workers": loader.num_workers,
        "pin_memory": loader.pin_memory,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "persistent_workers": loader.persistent_workers,
    }


class _Skipping:
    """A sampler (or batch sampler) that yields what `sampler` yields, without the indices in `skipped`; it keeps
    the original as `sampler` so its generator is found, and rewound, like the loader's own."""

    def __init__(self, sampler: Any, skipped: frozenset[int]) -> None:
        self.sampler, self.skipped = sampler, skipped

    def __iter__(self) -> Any:
        for item in self.sampler:
            if isinstance(item, (list, tuple)):  # a batch of indices
                kept = [i for i in item if int(i) not in self.skipped]
                if kept:
                    yield kept
            elif int(item) not in self.skipped:
                yield item


def _split_positions(loader: Iterable[Any]) -> tuple[Any, list[Any]] | None:
    """(trial loader, held-out batches) for data that can only be iterated: the batches at positions 0, HOLD_EVERY,
    2 * HOLD_EVERY, ... of one pass (at most CHECK_BATCHES) judge, and the trials' loader skips those positions in
    every pass. Exact for data that comes in the same order every pass; data reshuffled every pass that the trials
    run through more than once sees some held-out samples again in its later passes. None when a pass has too few
    batches to spare one, or the data cannot be iterated again."""
    from clrfind.engine import shut_down_workers

    # An iterator, not an iterable: what a pass takes away is gone (and calling iter() on a loader would draw).
    if isinstance(loader, Iterator):
        return None
    generators = [(g, g.get_state()) for g in loader_generators(loader)]
    check: list[Any] = []
    position = -1
    iterator = iter(loader)
    try:
        for position, batch in enumerate(iterator):
            if position % HOLD_EVERY == 0:
                if len(check) == CHECK_BATCHES:
                    break
                check.append(batch)
    finally:
        shut_down_workers(iterator, loader)
        # The trials' first pass comes in the order the check was taken from.
        for generator, state in generators:
            generator.set_state(state)
    if position < HOLD_EVERY:
        return None
    return _SkipPositions(loader), check


class _SkipPositions:
    """A loader's batches, every pass, without those at positions 0, HOLD_EVERY, 2 * HOLD_EVERY, ...; it keeps the
    loader's `sampler` and `generator` so the engine and the trials' rewind find them."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self.sampler = getattr(loader, "sampler", None)
        self.generator = getattr(loader, "generator", None)

    def __iter__(self) -> _SkippingIterator:
        return _SkippingIterator(iter(self.loader), self.loader)


class _SkippingIterator:
    """One pass of `_SkipPositions`."""

    def __init__(self, iterator: Any, loader: Iterable[Any]) -> None:
        self.iterator, self.loader, self.position = iterator, loader, -1

    def __iter__(self) -> _SkippingIterator:
        return self

    def __next__(self) -> Any:
        while True:
            batch = next(self.iterator)
            self.position += 1
            if self.position % HOLD_EVERY:
                return batch

    def _shutdown_workers(self) -> None:
        """`engine.shut_down_workers` stops a DataLoader's workers through this name."""
        from clrfind.engine import shut_down_workers

        shut_down_workers(self.iterator, self.loader)


def loader_generators(loader: Any, depth: int = 4) -> list[Any]:
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
        from clrfind.diagnose import nonfinite_weights
        from clrfind.engine import run_loop
        from clrfind.stops import Interrupt

        t = self.trainer
        self.initial.restore()
        self.rewind()
        out = t.counted(
            run_loop(
                t.model, self.data.loader, t.loss_fn, t.optimizer, lrs, device=t.device, settings=self.settings,
                step_fn=t.step_fn, reduce_loss=t.reduce_loss, momenta=momenta, stop_on_rise=not hold,
                wait_out_jumps=False,
            )
        )  # fmt: skip
        if out.stop_signal is not None:
            raise Interrupt(out.stop_signal)  # Ctrl-C or SIGTERM stops the self-check, not just this trial
        if out.stop_reason == "error" and out.error_part == "data" and out.error is not None:
            raise TrialDataFailed(out.error)
        if out.stop_reason == "completed" and nonfinite_weights(t.model):
            # The last step blew the weights up after its loss was read: the trial ends non-finite (and the
            # held-out loss, which a loss that validates its inputs would refuse to compute, is not read).
            return out.losses, "non-finite", None
        check = None
        if self.data.check and out.stop_reason == "completed" and not hold:  # a hold is judged on its curve
            check = self._check_losses()
        return out.losses, out.stop_reason, check

    def untrained(self) -> np.ndarray | None:
        """The initial model's loss on each held-out sample (None without any): what a trial must beat to have
        learned anything."""
        if not self.data.check:
            return None
        self.initial.restore()
        return self._check_losses()

    def _check_losses(self) -> np.ndarray:
        """The trained model's loss on each held-out sample (each batch, when the loss cannot be taken per sample),
        in eval mode, as it will be used: the more paired values, the smaller a difference the trials can tell."""
        import torch

        from clrfind.engine import autocast, default_step

        t = self.trainer
        step = t.step_fn or default_step
        by_sample = per_sample(t.loss_fn, t.step_fn)
        was_training = t.model.training
        t.model.eval()
        losses = []
        try:
            if by_sample:
                t.loss_fn.reduction = "none"  # type: ignore[union-attr]
            with torch.no_grad(), autocast(t.device, self.settings.precision):
                for batch in self.data.check or []:
                    loss = step(t.model, batch, t.loss_fn).detach().float()
                    losses.append(
                        loss.reshape(loss.shape[0], -1).mean(1)
                        if by_sample and loss.dim()
                        else loss.reshape(1)
                    )
        finally:
            if by_sample:
                t.loss_fn.reduction = "mean"  # type: ignore[union-attr]
            t.model.train(was_training)
        stacked = torch.cat(losses)
        if t.reduce_loss is not None:
            stacked = t.reduce_loss(stacked)
        return np.asarray(stacked.cpu().tolist(), dtype=float)
