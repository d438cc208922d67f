"""The library API: results, bounds, save/plot, and the caller's state left bit-for-bit as it was."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_same_state, state_of, warm_up

import clrfind
from clrfind.errors import RunError, SetupError, UsageError
from clrfind.results import load_results


def test_range_test_returns_bounds_and_restores_state(tiny_task, tmp_path) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    warm_up(model, loader, loss_fn, optimizer)
    model.eval()
    before = state_of(model, optimizer)
    result = clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=80)
    assert_same_state(before, model, optimizer)
    assert result.mode == "exp"  # "auto" over 4.3 decades
    assert result.lrs[1] == pytest.approx(1e-3 * 20_000 ** (1 / 79))
    assert result.steps_run >= 10
    assert result.bounds is not None
    assert result.optimizer is not None and result.optimizer.target == "torch.optim.sgd.SGD"
    assert result.optimizer.kwargs == {"momentum": 0.9}
    saved = result.save(tmp_path)
    assert saved.name == "range_test.json" and load_results(saved) == result
    fig = result.plot()
    assert fig.axes
    # The README's library example, through to a torch scheduler.
    assert result.bounds.usable
    path = clrfind.write_schedule(result, tmp_path / "schedule.yaml", epochs=3)
    scheduler = clrfind.load_schedule(path, optimizer)
    assert type(scheduler).__name__ == "OneCycleLR"  # policy auto with a known length
    # A slip in the export's keywords names the argument meant, as range_test's do.
    for slip, meant in [("format", "fmt"), ("num_epochs", "epochs")]:
        with pytest.raises(UsageError, match=f"write_schedule\\(\\) takes no argument '{slip}'") as info:
            clrfind.write_schedule(result, tmp_path / "other.yaml", **{slip: 3})
        assert info.value.hint == f"did you mean {meant}=?"
    assert not (tmp_path / "other.yaml").exists()


def test_failure_in_user_code_restores_state_and_raises_run_error(tiny_task) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    warm_up(model, loader, loss_fn, optimizer)
    before = state_of(model, optimizer)
    calls = {"n": 0}

    def step(m, batch, lf):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("user bug")
        x, y = batch
        return lf(m(x), y)

    with pytest.raises(RunError, match="step 5"):
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=1.0, steps=30, step_fn=step)
    assert_same_state(before, model, optimizer)


def test_a_step_fn_that_computes_the_loss_itself_takes_model_and_batch(tiny_task) -> None:
    import torch.nn.functional as F

    model, loader, loss_fn, optimizer = tiny_task

    def own(m, batch):
        return F.cross_entropy(m(batch[0]), batch[1])

    result = clrfind.range_test(
        model, loader, None, optimizer, min_lr=1e-3, max_lr=1.0, steps=30, step_fn=own
    )
    assert result.steps_run > 0 and result.bounds.max_lr is not None
    with pytest.raises(
        UsageError, match=r"step_fn takes \(model, batch\), no loss_fn, so loss_fn would go unused"
    ):
        clrfind.range_test(model, loader, loss_fn, optimizer, steps=30, step_fn=own)


def test_bad_arguments_are_usage_errors(tiny_task) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    with pytest.raises(UsageError, match="min_lr"):
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1.0, max_lr=0.1, steps=30)
    with pytest.raises(UsageError, match="steps"):
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=0.1, steps=1)
    with pytest.raises(UsageError, match="'auto', 'linear' or 'exp'"):
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=0.1, mode="log")  # type: ignore[arg-type]
    # A call written from a peer's docs is pointed at clrfind's name for the argument, not at Python's TypeError.
    for peer, ours in [
        ("end_lr", "max_lr"),
        ("num_iter", "steps"),
        ("start_lr", "min_lr"),
        ("step_mode", "mode"),
    ]:
        with pytest.raises(UsageError, match=f"range_test\\(\\) takes no argument '{peer}'") as info:
            clrfind.range_test(model, loader, loss_fn, optimizer, **{peer: 10})
        assert info.value.hint == f"did you mean {ours}=?"
    with pytest.raises(UsageError) as info:
        clrfind.range_test(model, loader, loss_fn, optimizer, learning_rate=0.1)
    assert info.value.hint == "help(clrfind.range_test) lists the arguments"
    with pytest.raises(UsageError, match="verify_on"):
        clrfind.range_test(model, loader, loss_fn, optimizer, verify_on="train")


def test_verify_on_val_without_val_data_fails_before_a_step_and_leaves_the_model(tiny_task) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(
        SetupError, match="verify_on 'val' judges the self-check's trials on the validation data"
    ) as info:
        clrfind.range_test(model, loader, loss_fn, optimizer, steps=30, verify_on="val", progress=False)
    assert info.value.hint == "pass val_loader=..., or use verify_on='auto'"
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # with the validation data the trials are judged on it
    result = clrfind.range_test(
        model, loader, loss_fn, optimizer, steps=60, verify_on="val", val_loader=loader, progress=False
    )
    assert result.verification is not None and result.verification.judged_on == "the validation data"


# A notebook's slips, each refused before anything runs (they failed as AttributeErrors deep in the run, or trained
# one sample per step): (what to pass instead of each part, the error's start, its hint's start).
SLIPS = [
    ({"model": lambda m, o: _make_model}, "model: got function '_make_model', not a torch.nn.Module",
     "pass the model itself, _make_model(...)"),
    ({"optimizer": lambda m, o: torch.optim.Adam}, "optimizer: got the class Adam, not an optimizer",
     "pass one built over the model's parameters: torch.optim.Adam(model.parameters(), lr=1e-3)"),
    ({"optimizer": lambda m, o: list(m.parameters())}, "optimizer: got list, not an optimizer",
     "pass one built over the model's parameters: torch.optim.SGD("),
    ({"loss_fn": lambda m, o: torch.nn.CrossEntropyLoss}, "loss_fn: got the class CrossEntropyLoss, not a loss",
     "pass an instance: CrossEntropyLoss()"),
    ({"train_loader": lambda m, o: o.dataset}, "train_loader: a TensorDataset, which iterates one sample at a time",
     "pass DataLoader(dataset, batch_size=64, shuffle=True)"),
    ({"train_loader": lambda m, o: o.dataset.tensors}, "train_loader: a tuple of tensors, which iterates one sample",
     "pass DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)"),
]  # fmt: skip


def _make_model() -> torch.nn.Module:
    return torch.nn.Linear(2, 2)


@pytest.mark.parametrize(("swap", "message", "hint"), SLIPS)
def test_a_class_a_builder_or_samples_where_the_part_goes_are_refused(tiny_task, swap, message, hint) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    parts = {"model": model, "train_loader": loader, "loss_fn": loss_fn, "optimizer": optimizer}
    parts.update({name: make(model, loader) for name, make in swap.items()})
    with pytest.raises(UsageError) as caught:
        clrfind.range_test(**parts, steps=30)
    assert str(caught.value).startswith(message) and caught.value.hint.startswith(hint)


def test_the_range_defaults_to_the_specs(tiny_task) -> None:
    result = clrfind.range_test(*tiny_task, steps=30, verify_bounds=False)
    assert result.min_lr == 1e-5 and result.max_lr >= 1.0  # 1.0, or higher when the curve still fell there


def test_optimizer_ref_records_non_default_kwargs() -> None:
    from clrfind.api import optimizer_ref

    p = [torch.nn.Parameter(torch.zeros(2))]
    ref = optimizer_ref(torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95)))
    assert ref.target == "torch.optim.adamw.AdamW"
    assert ref.kwargs == {"weight_decay": 0.05, "betas": [0.9, 0.95]}


def test_a_notebook_users_bad_batch_gets_advice_in_python_terms(tiny_task) -> None:
    """No spec in sight: the error names range_test()'s arguments and a fix in code, not spec keys."""
    from clrfind.errors import SetupError

    model, _, loss_fn, optimizer = tiny_task
    triples = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 2), torch.randn(8, 2))
    loader = torch.utils.data.DataLoader(triples, batch_size=4)
    before = state_of(model, optimizer)
    with pytest.raises(SetupError) as info:
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=1.0, steps=20)
    text = str(info.value)
    assert text.startswith(
        "train_loader: a batch is [Tensor[4, 2] float32, Tensor[4, 2] float32, Tensor[4, 2] float32], not an "
        "(inputs, targets) pair"
    )
    assert text.endswith(
        "(for a model of several inputs, pass step_fn=fn(model, batch, loss_fn) that returns "
        "loss_fn(model(*batch[:-1]), batch[-1]))"
    )
    assert "data.train" not in text and "step:" not in text and "spec" not in text
    assert_same_state(before, model, optimizer)


def test_the_library_names_the_loss_and_the_val_loader(tiny_task) -> None:
    from clrfind.errors import SetupError

    model, loader, _, optimizer = tiny_task
    with pytest.raises(SetupError, match=r"^loss_fn: the loss rejected model output Tensor\[32, 2\]"):
        clrfind.range_test(model, loader, torch.nn.MSELoss(), optimizer, min_lr=1e-3, max_lr=1.0, steps=20)
    with pytest.raises(SetupError, match=r"^metric: accuracy needs val_loader \(pass val_loader="):
        clrfind.range_test(
            model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=1e-3, max_lr=1.0, metric="accuracy"
        )


class _Untouchable:
    """A loader and a model that fail the test if anything iterates or trains them."""

    def __iter__(self):
        raise AssertionError("the loader was iterated")

    def __len__(self) -> int:
        return 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "fp8"}, r"^precision: expected one of 'fp32', 'bf16' or 'fp16', got 'fp8'"),
        ({"metric": "acc"}, r"^metric: expected one of 'loss', 'accuracy' or 'val_loss', got 'acc'"),
        ({"accumulate": 0}, r"^accumulate: Input should be greater than or equal to 1, got 0"),
        ({"eval_batches": 0}, r"^eval_batches:"),
    ],
)
def test_bad_settings_are_rejected_before_any_step(tiny_task, kwargs, match) -> None:
    model, _, loss_fn, optimizer = tiny_task
    before = state_of(model, optimizer)
    with pytest.raises(UsageError, match=match):
        clrfind.range_test(model, _Untouchable(), loss_fn, optimizer, min_lr=1e-3, max_lr=1.0, **kwargs)
    assert_same_state(before, model, optimizer)


SLOW_START_STEP = """
import time

calls = []


def slow_start(model, batch, loss_fn):
    # The first two steps pay a one-off cost (lazy set-up); every later one a steady 50 ms.
    calls.append(1)
    time.sleep(1.0 if len(calls) <= 2 else 0.05)
    x, y = batch
    return loss_fn(model(x), y)
"""


def test_check_times_steps_after_the_warm_up(tmp_path) -> None:
    """The estimate is the steady step's time: neither the slow first steps nor each engine call's start-up."""
    from conftest import BASE_SPEC, write_spec

    from clrfind.api import CHECK_WARMUP_STEPS, check_spec
    from clrfind.spec import load_spec
    from clrfind.targets import resolve_target

    (tmp_path / "steps.py").write_text(SLOW_START_STEP)
    spec = write_spec(tmp_path, BASE_SPEC + "step: {target: steps.py:slow_start}\n")
    report = check_spec(load_spec(spec), timed_steps=3)
    # Counting the second slow step as a timed one would give 0.37 s; the margin is for a loaded machine.
    assert 0.05 <= report.seconds_per_step < 0.25, report.seconds_per_step
    calls = resolve_target("steps.py:calls", base_dir=tmp_path, key="k", source="s")
    assert len(calls) == CHECK_WARMUP_STEPS + 3  # one engine call: warm-up and timed steps, nothing else


def test_a_training_length_sizes_the_library_test(tiny_task) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    told = clrfind.range_test(
        model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, training={"epochs": 40}, verify_bounds=False,
        progress=False,
    )  # fmt: skip
    per_epoch = len(loader)
    assert told.training == clrfind.TrainingLength(epochs=40, steps_per_epoch=per_epoch)
    assert told.planned_steps == min(max(40 * per_epoch, 300), 1000)
    with pytest.raises(UsageError, match="training"):
        clrfind.range_test(model, loader, loss_fn, optimizer, training={"epochs": 0})
