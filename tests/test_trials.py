"""What the self-check's trials train on and what judges them (`clrfind.trials.trial_data`): a held-out tenth of
the training data however it comes, never seen by the trials, and the same order for every trial."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    Sampler,
    TensorDataset,
    WeightedRandomSampler,
)

from clrfind.trials import CHECK_BATCHES, HOLD_EVERY, averages, loader_generators, per_sample, trial_data

N, BATCH = 200, 8
X = torch.arange(N, dtype=torch.float32).unsqueeze(1)
Y = torch.arange(N)  # the target is the sample's index: what a batch holds can be read off it
DATASET = TensorDataset(X, Y)
CPU = torch.device("cpu")


def seeded(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Stream(IterableDataset):
    """A stream with no length, in the same order every pass."""

    def __init__(self, n: int = N) -> None:
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            yield X[i], Y[i]


class Buckets(Sampler):
    """A custom batch sampler (as one that buckets by length would be): batches of 8 in a seeded order."""

    batch_size = BATCH

    def __init__(self) -> None:
        self.generator = seeded(3)

    def __iter__(self):
        order = torch.randperm(N, generator=self.generator).tolist()
        return iter([order[i : i + BATCH] for i in range(0, N, BATCH)])


def indices(batches) -> list[list[int]]:
    return [batch[1].tolist() for batch in batches]


def two_passes(loader) -> list[list[int]]:
    return indices(loader) + indices(loader)


LOADERS = {
    "shuffled": (lambda: DataLoader(DATASET, batch_size=BATCH, shuffle=True, generator=seeded()), "samples"),
    "weighted sampler": (
        lambda: DataLoader(
            DATASET, batch_size=BATCH, sampler=WeightedRandomSampler(torch.ones(N), N, generator=seeded())
        ),
        "samples",
    ),
    "batch sampler, no collation": (
        lambda: DataLoader(
            DATASET, sampler=BatchSampler(RandomSampler(DATASET, generator=seeded()), BATCH, True), batch_size=None
        ),
        "samples",
    ),
    "batch sampler": (
        lambda: DataLoader(
            DATASET, batch_sampler=BatchSampler(RandomSampler(DATASET, generator=seeded()), BATCH, True)
        ),
        "samples",
    ),
    "custom batch sampler": (lambda: DataLoader(DATASET, batch_sampler=Buckets()), "samples"),
    "stream": (lambda: DataLoader(Stream(), batch_size=BATCH), "batches"),
    "list of batches": (lambda: [(X[i : i + BATCH], Y[i : i + BATCH]) for i in range(0, N, BATCH)], "batches"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(LOADERS))
def test_a_tenth_of_the_training_data_judges_and_the_trials_never_see_it(name: str) -> None:
    make, unit = LOADERS[name]
    data = trial_data(make(), None, device=CPU)
    assert data.check is not None
    judged = [i for batch in indices(data.check) for i in batch]
    trained = {i for batch in two_passes(data.loader) for i in batch}
    # a tenth of the samples, or the batches at positions 0, 10 and 20 of the 25, each sample once
    assert len(judged) == len(set(judged)) == (N // 10 if unit == "samples" else 3 * BATCH)
    assert not set(judged) & trained
    assert f"training {unit} held out from the trials" in data.source


@pytest.mark.parametrize("name", [n for n, (_, unit) in LOADERS.items() if unit == "samples"])
def test_a_loss_read_per_batch_is_judged_on_the_same_samples_in_more_batches(name: str) -> None:
    """A step function gives one held-out value per batch: the tenth comes in CHECK_BATCHES small batches (here
    10 of 2) rather than the training's 3 of 8, so that a paired comparison has values to pair."""
    make, _ = LOADERS[name]
    small = trial_data(make(), None, device=CPU, by_sample=False)
    usual = trial_data(make(), None, device=CPU)
    assert small.check is not None and usual.check is not None
    judged = {
        name: sorted(i for batch in indices(d.check) for i in batch)
        for name, d in [("s", small), ("u", usual)]
    }
    assert judged["s"] == judged["u"]
    assert [len(b) for b in indices(small.check)] == [2] * 10
    assert len(usual.check) == 3


def test_held_out_batches_read_per_batch_never_hold_one_sample() -> None:
    # 170 samples: 17 held out, in 8 batches of 2 or 3 (a step that squeezes the batch axis fails on one sample).
    loader = DataLoader(TensorDataset(X[:170], Y[:170]), batch_size=BATCH, shuffle=True, generator=seeded())
    data = trial_data(loader, None, device=CPU, by_sample=False)
    assert data.check is not None
    sizes = [len(batch) for batch in indices(data.check)]
    assert sum(sizes) == 17 and len(sizes) == 8 and min(sizes) >= 2


def test_the_held_out_loss_is_read_per_sample_only_for_an_averaging_loss_without_a_step() -> None:
    assert per_sample(torch.nn.CrossEntropyLoss(), None)
    assert not per_sample(torch.nn.MSELoss(reduction="sum"), None)
    assert not per_sample(torch.nn.CrossEntropyLoss(), lambda model, batch, loss_fn: loss_fn(*batch))
    assert not per_sample(torch.nn.functional.cross_entropy, None)  # a function has no reduction to switch


def test_only_a_loss_that_says_it_sums_is_in_other_units_than_a_mean_over_its_batch() -> None:
    """What a trial gains on held-out samples is set against what it gains on its training batches only in the same
    units (`clrfind.verify._fits`): a summed loss on held-out batches of another size is not."""
    assert averages(torch.nn.CrossEntropyLoss()) and averages(torch.nn.functional.cross_entropy)
    assert averages(None)  # a step function's loss
    assert not averages(torch.nn.MSELoss(reduction="sum"))


@pytest.mark.parametrize("name", ["shuffled", "batch sampler, no collation", "batch sampler", "stream"])
def test_held_out_samples_leave_the_trials_batches_full(name: str) -> None:
    make, _ = LOADERS[name]
    data = trial_data(make(), None, device=CPU)
    sizes = [len(batch) for batch in two_passes(data.loader)]
    assert sizes.count(BATCH) >= len(sizes) - 2  # only a pass's last batch may be short


@pytest.mark.parametrize("name", [n for n in LOADERS if n != "list of batches"])
def test_every_trial_sees_the_same_batches_once_rewound(name: str) -> None:
    """TrialRunner rewinds the generators `loader_generators` finds; a split loader must keep them findable."""
    make, _ = LOADERS[name]
    data = trial_data(make(), None, device=CPU)
    states = [(g, g.get_state()) for g in loader_generators(data.loader)]
    first = two_passes(data.loader)
    for generator, state in states:
        generator.set_state(state)
    assert two_passes(data.loader) == first


def test_a_stream_in_the_same_order_every_pass_holds_out_every_tenth_batch() -> None:
    data = trial_data(DataLoader(Stream(), batch_size=BATCH), None, device=CPU)
    assert indices(data.check or []) == [
        list(range(p * BATCH, (p + 1) * BATCH)) for p in (0, HOLD_EVERY, 2 * HOLD_EVERY)
    ]
    assert data.source == f"3 training batches held out from the trials (every {HOLD_EVERY}th of a pass)"


def test_a_long_stream_gives_at_most_check_batches_and_is_not_read_to_its_end() -> None:
    seen: list[int] = []

    class Endless(IterableDataset):
        def __iter__(self):
            i = 0
            while True:
                seen.append(i)
                yield X[i % N], Y[i % N]
                i += 1

    data = trial_data(DataLoader(Endless(), batch_size=BATCH), None, device=CPU)
    assert len(data.check or []) == CHECK_BATCHES
    assert len(seen) <= (HOLD_EVERY * CHECK_BATCHES + 1) * BATCH


@pytest.mark.parametrize(
    ("loader", "why"),
    [
        (DataLoader(Stream(HOLD_EVERY * BATCH), batch_size=BATCH), "a pass of 10 batches cannot spare one"),
        (iter([(X[:BATCH], Y[:BATCH])] * 50), "an iterator: what a pass takes away is gone"),
    ],
)
def test_data_that_cannot_spare_a_tenth_judges_the_trials_on_their_own_loss(loader, why: str) -> None:
    data = trial_data(loader, None, device=CPU)
    assert data.check is None, why
    assert data.loader is loader
    assert data.source == "the trial's own training loss (the data cannot be split)"


VAL = TensorDataset(X[:40] + 1000, Y[:40] + 1000)  # told apart from training samples by their targets


@pytest.mark.parametrize("name", ["shuffled", "weighted sampler", "custom batch sampler"])
def test_held_out_training_samples_judge_even_when_there_is_validation_data(name: str) -> None:
    """The same spec gets the same schedule with or without `data.val`, and the validation set stays the user's."""
    make, _ = LOADERS[name]
    with_val = trial_data(make(), DataLoader(VAL, batch_size=BATCH), device=CPU)
    without = trial_data(make(), None, device=CPU)
    assert with_val.source == without.source == "20 training samples held out from the trials"
    assert indices(with_val.check or []) == indices(without.check or [])


@pytest.mark.parametrize("name", ["stream", "list of batches"])
def test_validation_data_judges_data_that_can_only_be_held_out_by_position(name: str) -> None:
    """A stream reshuffled every pass can show the trials batches held out by position again; validation data
    is surely unseen."""
    make, _ = LOADERS[name]
    loader = make()
    data = trial_data(loader, DataLoader(VAL, batch_size=BATCH), device=CPU)
    assert data.loader is loader and data.source == "the validation data"
    assert [i for batch in indices(data.check or []) for i in batch] == list(range(1000, 1040))


@pytest.mark.parametrize("name", list(LOADERS))
def test_verify_on_val_judges_on_the_validation_data_and_the_trials_train_on_all_the_training_data(
    name: str,
) -> None:
    """`verify_on: val`: where training samples overlap (windows of one text), held-out ones share what the trials
    train on, so the validation data judges, and no training sample is set aside."""
    make, _ = LOADERS[name]
    loader = make()
    data = trial_data(loader, DataLoader(VAL, batch_size=BATCH), device=CPU, prefer_val=True)
    assert data.loader is loader and data.source == "the validation data"
    assert [i for batch in indices(data.check or []) for i in batch] == list(range(1000, 1040))
    # without validation data it falls back to the usual judge
    assert (
        trial_data(make(), None, device=CPU, prefer_val=True).source
        == trial_data(make(), None, device=CPU).source
    )


def test_a_shard_of_distributed_data_is_split_only_by_a_plain_sampler() -> None:
    """Every rank must judge on as many samples as the others: a custom sampler or a stream is not split then."""
    for name in ("weighted sampler", "custom batch sampler", "stream"):
        make, _ = LOADERS[name]
        loader = make()
        assert trial_data(loader, None, device=CPU, sharded=True).check is None, name
    plain = trial_data(LOADERS["shuffled"][0](), None, device=CPU, sharded=True)
    assert plain.check is not None


def test_data_left_unsplit_comes_in_the_order_it_would_have_come_in() -> None:
    """Looking for positions to hold out reads a pass; a loader left as it was must not lose its place."""

    def shuffled() -> (
        DataLoader
    ):  # 10 batches a pass: a tenth is less than a batch, and no position spares one
        return DataLoader(TensorDataset(X[:72], Y[:72]), batch_size=BATCH, shuffle=True, generator=seeded())

    loader = shuffled()
    data = trial_data(loader, None, device=CPU)
    assert data.check is None and data.loader is loader
    assert two_passes(loader) == two_passes(shuffled())


@pytest.mark.parametrize("persistent", [True, False])
def test_a_loader_with_worker_processes_serves_the_test_the_trials_and_the_caller_after(
    tiny_task, persistent: bool
) -> None:
    """Each loop stops its loader's workers on the way out; a loader with persistent workers kept that stopped
    iterator for its next pass, and the next trial (or the caller's own training) failed: 'Queue is closed'."""
    import clrfind

    model, plain, loss_fn, optimizer = tiny_task
    loader = DataLoader(
        plain.dataset,
        batch_size=32,
        shuffle=True,
        generator=seeded(),
        num_workers=1,
        persistent_workers=persistent,
    )
    result = clrfind.range_test(
        model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=3.0, steps=48, progress=False
    )
    assert result.verification is not None and result.verification.trials
    assert sum(len(batch[1]) for batch in loader) == len(plain.dataset)  # the caller's next epoch


# The range test reads 1,536 samples: the held-out ones come next, then the trials'.
@pytest.mark.parametrize("fails_after", [1550, 2500], ids=["reading the held-out samples", "in a trial"])
def test_the_data_failing_in_the_self_check_stops_it_instead_of_failing_an_lr(
    tiny_task, fails_after: int
) -> None:
    import clrfind

    model, plain, loss_fn, optimizer = tiny_task

    class Corrupt(torch.utils.data.Dataset):
        """Fails once the range test is done: a corrupt record that only the trials' passes reach."""

        calls = 0

        def __len__(self) -> int:
            return len(plain.dataset)

        def __getitem__(self, i: int):
            Corrupt.calls += 1
            if Corrupt.calls > fails_after:
                raise RuntimeError("corrupt record")
            return plain.dataset[i]

    loader = DataLoader(Corrupt(), batch_size=32, shuffle=True, generator=seeded())
    result = clrfind.range_test(
        model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=3.0, steps=48, progress=False
    )
    assert result.steps_run == 48 and Corrupt.calls > fails_after
    assert result.verification is not None and not result.verification.trials
    assert result.verification.outcome == (
        "stopped: the training data raised RuntimeError: corrupt record: the range test's bounds are "
        "kept, one cycle peaks at max_lr"
    )
    assert result.bounds is not None and result.bounds.peak_lr == result.bounds.max_lr


def test_a_trial_whose_last_step_blows_the_weights_up_ends_non_finite() -> None:
    """A trial's losses can all be finite while its last step left NaN weights: it ends non-finite, and the
    held-out loss (which torch.distributions would refuse to compute on them) is not read."""
    from clrfind.api import Trainer
    from clrfind.settings import RunSettings
    from clrfind.state import StateSnapshot
    from clrfind.trials import TrialRunner

    torch.manual_seed(0)
    x = torch.randn(N, 2)
    loader = DataLoader(
        TensorDataset(x, (x[:, 0] > 0).long()), batch_size=BATCH, shuffle=True, generator=seeded()
    )
    model = torch.nn.Linear(2, 2)
    steps = 12

    class BlowsUpAtTheEnd(torch.optim.SGD):
        def step(self, closure=None):
            super().step(closure)
            self.steps = getattr(self, "steps", 0) + 1
            if self.steps == steps:
                with torch.no_grad():
                    model.weight.fill_(float("nan"))

    def categorical_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -torch.distributions.Categorical(logits=output, validate_args=True).log_prob(target).mean()

    optimizer = BlowsUpAtTheEnd(model.parameters(), lr=0.1)
    trainer = Trainer(model, loader, categorical_nll, optimizer, CPU, RunSettings())
    data = trial_data(loader, None, device=CPU, sharded=False, by_sample=False)
    assert data.check  # there are held-out batches to read
    runner = TrialRunner(trainer, StateSnapshot(model, optimizer), data, RunSettings())
    losses, stop, check = runner(torch.full((steps,), 0.05).numpy(), None)
    assert stop == "non-finite" and check is None and len(losses) == steps
    assert torch.isfinite(torch.as_tensor(losses)).all()


@pytest.mark.parametrize("name", [n for n, (_, unit) in LOADERS.items() if unit == "samples"])
def test_the_runs_seed_draws_the_held_out_samples_the_same_way_every_time(name: str) -> None:
    """A spec's run is repeatable, and its seed covers which samples judge: another seed, another draw."""
    make, _ = LOADERS[name]

    def judged(**seed: int) -> list[int]:
        data = trial_data(make(), None, device=CPU, **seed)
        return sorted(i for batch in indices(data.check) for i in batch)

    assert judged(seed=7) == judged(seed=7)
    assert judged(seed=7) != judged(seed=8)
    assert judged(seed=0) == judged()
    assert len(judged(seed=2**64 - 1)) == N // 10  # the largest seed a spec takes


def test_the_runs_seed_draws_the_trials_order_when_the_split_reshuffles() -> None:
    """A plain shuffled loader is rebuilt over the samples the trials keep; its order comes from the seed too."""
    make, _ = LOADERS["shuffled"]
    first = [indices(trial_data(make(), None, device=CPU, seed=s).loader) for s in (3, 3, 4)]
    assert first[0] == first[1] != first[2]


@pytest.mark.parametrize("seed", [None, 5])
def test_the_engine_hands_the_runs_seed_to_the_self_checks_data(
    tiny_task, monkeypatch, seed: int | None
) -> None:
    from conftest import keyword_spy

    import clrfind
    import clrfind.trials

    seen = keyword_spy(monkeypatch, clrfind.trials, "trial_data", "seed")
    model, loader, loss_fn, optimizer = tiny_task
    clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=120, seed=seed)
    assert seen == [seed or 0]
