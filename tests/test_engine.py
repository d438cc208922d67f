"""The training loop: ladder applied per step, chunked host copies, early stops, errors and interrupts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from clrfind.diagnose import describe_batch, nonfinite_values
from clrfind.engine import move_to_device, run_loop
from clrfind.errors import SetupError
from clrfind.faults import library_terms
from clrfind.ladder import lr_ladder
from clrfind.settings import RunSettings


class LrRecorder(torch.optim.SGD):
    """SGD that records the LR each step ran with."""

    def __init__(self, params, **kw) -> None:
        super().__init__(params, **kw)
        self.seen: list[float] = []

    def step(self, closure=None):
        self.seen.append(self.param_groups[0]["lr"])
        return super().step(closure)


def test_each_step_trains_at_its_rung(tiny_task) -> None:
    model, loader, loss_fn, _ = tiny_task
    opt = LrRecorder(model.parameters(), lr=0.5)
    lrs = lr_ladder(1e-3, 0.05, 25, "linear")
    out = run_loop(model, loader, loss_fn, opt, lrs, device=torch.device("cpu"))
    assert opt.seen == pytest.approx(lrs.tolist())
    assert out.lrs.tolist() == pytest.approx(lrs.tolist())
    assert len(out.losses) == 25 and np.isfinite(out.losses).all()
    assert out.stop_reason == "completed"
    assert out.steps_per_epoch == 16  # 512 samples / 32


def test_callback_reports_progress_and_the_best_loss(tiny_task, monkeypatch) -> None:
    """Every drain may report (no throttle here); the last event carries the whole curve's best finite loss."""
    from clrfind import engine

    monkeypatch.setattr(engine, "_CALLBACK_INTERVAL_S", 0.0)
    model, loader, loss_fn, opt = tiny_task
    events = []
    out = run_loop(
        model, loader, loss_fn, opt, lr_ladder(1e-3, 0.05, 30, "linear"), device=torch.device("cpu"),
        settings=RunSettings(sync_every=4), callback=events.append,
    )  # fmt: skip
    assert [e.step for e in events] == [*range(4, 30, 4), 30, 30]  # per chunk, then the final drain
    for e in events:
        assert e.best_loss == min(out.losses[: e.step]) and e.loss == out.losses[e.step - 1]
        assert e.total == 30 and e.lr == pytest.approx(out.lrs[e.step - 1])


def _chunked_twice(tiny_task, lrs: np.ndarray, sync_every: int) -> list:
    """The same run twice, from the same weights and in the same batch order: chunks of 1, then of `sync_every`."""
    model, loader, loss_fn, opt = tiny_task
    loader = torch.utils.data.DataLoader(loader.dataset, batch_size=32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    runs = []
    for every in (1, sync_every):
        model.load_state_dict(state)
        opt.state.clear()
        settings = RunSettings(sync_every=every)
        runs.append(run_loop(model, loader, loss_fn, opt, lrs, device=torch.device("cpu"), settings=settings))
    return runs


@pytest.mark.parametrize("sync_every", [1, 3, 7, 64])
def test_chunk_size_does_not_change_the_curve(tiny_task, sync_every: int) -> None:
    a, b = _chunked_twice(tiny_task, lr_ladder(1e-3, 0.05, 20, "linear"), sync_every)
    assert a.losses.tolist() == pytest.approx(b.losses.tolist(), rel=1e-6)


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_one_element_losses_of_any_shape_read_as_floats(tiny_task, shape: tuple[int, ...]) -> None:
    """A 0-d loss is read with the cheaper tolist(); other one-element shapes with item(): same curve."""
    model, loader, loss_fn, opt = tiny_task
    loader = torch.utils.data.DataLoader(loader.dataset, batch_size=32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    lrs = lr_ladder(1e-3, 0.05, 9, "linear")
    reference = run_loop(model, loader, loss_fn, opt, lrs, device=torch.device("cpu"))
    model.load_state_dict(state)
    opt.state.clear()

    def step(m, batch, fn):
        inputs, targets = batch
        return fn(m(inputs), targets).reshape(shape)

    out = run_loop(model, loader, loss_fn, opt, lrs, device=torch.device("cpu"), step_fn=step)
    assert out.stop_reason == "completed" and out.losses.dtype == np.float64
    assert out.losses.tolist() == pytest.approx(reference.losses.tolist(), rel=1e-6)


@pytest.mark.parametrize("sync_every", [3, 7, 64])
def test_a_diverged_curve_ends_where_the_stop_was_confirmed_whatever_the_chunks(
    tiny_task, sync_every: int
) -> None:
    """The loop runs on to the end of the chunk in which the monitor confirmed the stop, and on CPU chunks follow
    wall time: the curve (and the LR the test stopped at) must not, or two runs of one seed would differ."""
    a, b = _chunked_twice(tiny_task, lr_ladder(1e-3, 500.0, 400, "exp"), sync_every)
    assert a.stop_reason == b.stop_reason == "diverged" and len(a.losses) < 400
    assert b.losses.tolist() == pytest.approx(a.losses.tolist(), rel=1e-6, nan_ok=True)
    assert b.lrs.tolist() == a.lrs.tolist()
    # ... while the steps it trained past that are still counted (for the time per step)
    assert a.trained_steps == len(a.losses) and len(b.losses) <= b.trained_steps < len(b.losses) + sync_every


def test_divergence_stops_early_within_a_few_steps(tiny_task) -> None:
    model, loader, loss_fn, opt = tiny_task
    lrs = lr_ladder(1e-3, 500.0, 400, "exp")
    out = run_loop(model, loader, loss_fn, opt, lrs, device=torch.device("cpu"))
    assert out.stop_reason in ("diverged", "non-finite")
    assert len(out.losses) < 400
    assert out.stop_detail


def _scripted_curves(n: int, seed: int = 0):
    """Loss curves of every kind the monitor meets: U shapes, cliffs, spikes, flat noise, negative, NaN, inf."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        size = int(rng.integers(40, 300))
        x = np.linspace(0.0, 1.0, size)
        kind = k % 6
        if kind == 0:
            y = 4 * (x - 0.6) ** 2 + rng.normal(0, rng.uniform(0.0, 0.3), size)
        elif kind == 1:
            rise = np.where(x < 0.7, 1 - x, 0.3 + (x - 0.7) * rng.uniform(1, 30))
            y = rise + rng.standard_t(3, size) * rng.uniform(0.0, 0.2)
        elif kind == 2:
            y = rng.normal(0, 1, size)
        elif kind == 3:
            y = -5 + (x - 0.5) ** 2 + rng.normal(0, 0.05, size)
        elif kind == 4:
            y = 4 * (x - 0.6) ** 2 + rng.normal(0, 0.1, size)
            y[rng.integers(0, size)] = rng.choice([np.nan, np.inf, -np.inf])
        else:
            y = np.exp(rng.uniform(-3, 3)) * ((x - 0.5) ** 2 + rng.normal(0, 0.02, size))
            y[rng.random(size) < 0.05] *= 20
        yield y.astype(np.float32).astype(float)


def _scripted_step(losses: list[float]):
    values = iter(losses)

    def step(model, batch, loss_fn):
        return model.weight.sum() * 0.0 + next(values)  # the scripted loss, with a graph to step on

    return step


def test_long_cpu_chunks_stop_as_soon_as_short_ones(monkeypatch) -> None:
    """On CPU the engine holds losses back while they stay in the monitor's quiet band (as if every step were
    fast): every run still stops where the monitor, fed the whole curve, stops, at most 3 steps after it."""
    from clrfind import engine
    from clrfind.analysis import DivergenceMonitor, find_divergence

    monkeypatch.setattr(
        engine, "_CALLBACK_INTERVAL_S", 1e6
    )  # the longest chunks, whatever this machine's speed
    fed: list[int] = []
    update = DivergenceMonitor.update

    def counting(self, losses):
        fed.append(len(losses))
        return update(self, losses)

    monkeypatch.setattr(DivergenceMonitor, "update", counting)
    cpu, stops = torch.device("cpu"), 0
    for curve in _scripted_curves(120):
        model = torch.nn.Linear(1, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        step = _scripted_step(curve.tolist())
        loader = [(torch.zeros(1, 1), torch.zeros(1))] * 7
        lrs = lr_ladder(1e-3, 0.1, curve.size, "linear")
        out = run_loop(model, loader, torch.nn.MSELoss(), opt, lrs, device=cpu, step_fn=step)
        index, reason = find_divergence(curve)
        np.testing.assert_array_equal(out.losses, curve[: out.losses.size])
        if index is None:
            assert out.stop_reason == "completed" and out.losses.size == curve.size
        else:
            stops += 1
            assert out.stop_reason == reason
            assert index < out.losses.size <= index + 4  # the chunk of 4 it stopped in, at most
    assert stops > 30 and max(fed) > 16  # both stops and long chunks were exercised


def test_a_distributed_run_keeps_chunks_every_rank_can_agree_on(monkeypatch) -> None:
    """Under torch.distributed (a `reduce_loss`) chunk lengths must not follow one rank's step time: ranks that
    flushed at different steps would stop at different steps and hang the others in the all-reduce."""
    from clrfind import engine
    from clrfind.analysis import DivergenceMonitor

    monkeypatch.setattr(engine, "_CALLBACK_INTERVAL_S", 1e6)
    fed: list[int] = []
    update = DivergenceMonitor.update
    monkeypatch.setattr(
        DivergenceMonitor, "update", lambda self, losses: fed.append(len(losses)) or update(self, losses)
    )
    curve = (2.0 + 0.01 * np.random.default_rng(0).standard_normal(200)).tolist()
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = [(torch.zeros(1, 1), torch.zeros(1))] * 7
    lrs = lr_ladder(1e-3, 0.1, len(curve), "linear")
    cpu = torch.device("cpu")
    run_loop(model, loader, torch.nn.MSELoss(), opt, lrs, device=cpu, step_fn=_scripted_step(curve))
    assert max(fed) > 4  # alone, a quiet curve is fed in long chunks ...
    fed.clear()
    model.zero_grad()
    run_loop(
        model, loader, torch.nn.MSELoss(), opt, lrs, device=cpu, step_fn=_scripted_step(curve),
        reduce_loss=lambda loss: loss,
    )  # fmt: skip
    assert set(fed) == {4}  # ... under a reduce_loss, in chunks of sync_every, the same on every rank


def test_nan_loss_stops_at_once(tiny_task) -> None:
    model, loader, _, opt = tiny_task
    calls = {"n": 0}

    def loss_fn(output, target):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(output, target)
        return loss * float("nan") if calls["n"] == 12 else loss

    out = run_loop(
        model,
        loader,
        loss_fn,
        opt,
        lr_ladder(1e-3, 0.01, 50),
        device=torch.device("cpu"),
        settings=RunSettings(sync_every=1),
    )
    assert out.stop_reason == "non-finite"
    assert len(out.losses) == 12 and np.isnan(out.losses[-1])


def test_short_dataset_is_recycled_not_divergence(tiny_task) -> None:
    model, _, loss_fn, opt = tiny_task
    x = torch.randn(64, 2)
    y = (x[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    out = run_loop(model, loader, loss_fn, opt, lr_ladder(1e-3, 0.01, 30), device=torch.device("cpu"))
    assert out.stop_reason == "completed" and len(out.losses) == 30
    assert out.data_restarts == 7 and out.steps_per_epoch == 4
    assert any("restarted" in n for n in out.notes)


def test_accumulate_one_point_per_optimizer_step(tiny_task) -> None:
    model, loader, loss_fn, _ = tiny_task
    opt = LrRecorder(model.parameters(), lr=0.1)
    out = run_loop(
        model,
        loader,
        loss_fn,
        opt,
        lr_ladder(1e-3, 0.01, 10),
        device=torch.device("cpu"),
        settings=RunSettings(accumulate=4),
    )
    assert len(opt.seen) == 10 and len(out.losses) == 10
    assert out.steps_per_epoch == 4  # 16 batches / 4 micro-batches


def test_error_mid_run_is_returned_with_partial_curve(tiny_task) -> None:
    model, loader, loss_fn, opt = tiny_task
    calls = {"n": 0}

    def step(m, batch, lf):
        calls["n"] += 1
        if calls["n"] == 9:
            raise ValueError("bad batch")
        x, y = batch
        return lf(m(x), y)

    out = run_loop(
        model,
        loader,
        loss_fn,
        opt,
        lr_ladder(1e-3, 0.01, 30),
        device=torch.device("cpu"),
        step_fn=step,
        settings=RunSettings(sync_every=1),
    )
    assert out.stop_reason == "error" and isinstance(out.error, ValueError)
    assert out.error_step == 8 and len(out.losses) == 8
    assert out.error_part == "step"  # the caller names it: a spec key or an argument
    terms = library_terms(step_fn=True)
    assert out.stop_text(terms) == "step_fn raised ValueError at step 8: bad batch"


def test_keyboard_interrupt_keeps_what_was_measured(tiny_task) -> None:
    model, loader, loss_fn, opt = tiny_task
    calls = {"n": 0}

    def step(m, batch, lf):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        x, y = batch
        return lf(m(x), y)

    out = run_loop(
        model, loader, loss_fn, opt, lr_ladder(1e-3, 0.01, 30), device=torch.device("cpu"), step_fn=step
    )
    assert out.stop_reason == "interrupted" and len(out.losses) == 14


def test_first_batch_not_a_pair_is_a_setup_error(tiny_task) -> None:
    model, _, loss_fn, opt = tiny_task
    triples = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 2), torch.randn(8, 2))
    with pytest.raises(SetupError, match="not an \\(inputs, targets\\) pair"):
        run_loop(
            model,
            torch.utils.data.DataLoader(triples, batch_size=4),
            loss_fn,
            opt,
            lr_ladder(1e-3, 0.01, 5),
            device=torch.device("cpu"),
        )


def test_shape_mismatch_reports_both_shapes(tiny_task) -> None:
    model, _, _, opt = tiny_task
    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 3))
    with pytest.raises(SetupError) as info:
        run_loop(
            model,
            torch.utils.data.DataLoader(data, batch_size=4),
            torch.nn.MSELoss(),
            opt,
            lr_ladder(1e-3, 0.01, 5),
            device=torch.device("cpu"),
        )
    assert "Tensor[4, 2]" in str(info.value) and "Tensor[4, 3]" in str(info.value)


def test_non_scalar_loss_is_a_setup_error(tiny_task) -> None:
    model, loader, _, opt = tiny_task
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(SetupError, match="not a scalar"):
        run_loop(model, loader, loss_fn, opt, lr_ladder(1e-3, 0.01, 5), device=torch.device("cpu"))


def test_empty_loader_is_a_setup_error(tiny_task) -> None:
    model, _, loss_fn, opt = tiny_task
    with pytest.raises(SetupError, match="no batches"):
        run_loop(model, [], loss_fn, opt, lr_ladder(1e-3, 0.01, 5), device=torch.device("cpu"))


def test_accuracy_metric_on_fixed_val_subsample(tiny_task) -> None:
    model, loader, loss_fn, opt = tiny_task
    out = run_loop(
        model,
        loader,
        loss_fn,
        opt,
        lr_ladder(1e-3, 0.5, 40),
        device=torch.device("cpu"),
        val_loader=loader,
        settings=RunSettings(metric="accuracy", eval_every=5, eval_batches=2),
    )
    assert out.metric is not None and out.metric.name == "accuracy" and out.metric.higher_is_better
    assert out.metric.steps == [4, 9, 14, 19, 24, 29, 34, 39]
    assert all(0.0 <= v <= 1.0 for v in out.metric.values)


LOGITS = torch.tensor([[2.0, -1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0], [5.0, 0.0, 0.0]])
ONE_LOGIT = torch.tensor([[1.5], [-0.5], [0.2]])  # predicts 1, 0, 1


@pytest.mark.parametrize(
    ("outputs", "targets", "loss_fn", "expected"),
    [
        # class scores against class indices: argmax (rows predict 0, 1, 2, 0)
        (LOGITS, torch.tensor([0, 1, 0, 2]), torch.nn.CrossEntropyLoss(), (2, 4)),
        # a loss's ignore_index (padding in a language model) is not counted
        (LOGITS, torch.tensor([0, 1, -100, -100]), torch.nn.CrossEntropyLoss(), (2, 2)),
        # per-token scores (batch, time, vocabulary) against (batch, time) tokens
        (LOGITS.reshape(2, 2, 3), torch.tensor([[0, 1], [2, 1]]), torch.nn.CrossEntropyLoss(), (3, 4)),
        # class probabilities (one-hot) of the outputs' shape under a cross-entropy
        (LOGITS, torch.eye(3)[[0, 2, 2, 0]], torch.nn.CrossEntropyLoss(), (3, 4)),
        # one logit per sample against 0/1 targets: above 0 is 1
        (ONE_LOGIT, torch.tensor([[1.0], [1.0], [0.0]]), torch.nn.BCEWithLogitsLoss(), (1, 3)),
        # the same with a trailing 1 on the outputs only
        (ONE_LOGIT, torch.tensor([1.0, 0.0, 0.0]), torch.nn.BCEWithLogitsLoss(), (2, 3)),
        # multi-label probabilities under BCELoss: above 0.5 is 1, each label counts
        (torch.tensor([[0.9, 0.4], [0.6, 0.1]]), torch.tensor([[1, 1], [0, 0]]), torch.nn.BCELoss(), (2, 4)),
        # a regression has no accuracy; nor do class scores against float targets one dimension fewer
        (torch.tensor([[0.3], [1.2]]), torch.tensor([[0.5], [1.0]]), torch.nn.MSELoss(), None),
        (LOGITS, torch.tensor([0.0, 1.0, 2.0, 0.0]), torch.nn.MSELoss(), None),
        (LOGITS, torch.tensor([0, 1]), torch.nn.CrossEntropyLoss(), None),
    ],
)  # fmt: skip
def test_accuracy_reads_class_scores_and_per_label_scores_and_nothing_else(
    outputs, targets, loss_fn, expected
):
    from clrfind.engine import accuracy_counts

    counted = accuracy_counts(outputs, targets, loss_fn)
    assert (None if counted is None else (int(counted[0]), int(counted[1]))) == expected


def test_accuracy_on_outputs_it_cannot_read_fails_before_the_first_step() -> None:
    """A regression asked for accuracy: a setup error that names the shapes, before anything trains."""
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    model = torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SetupError, match=r"accuracy cannot read model outputs of shape \(16, 1\) against targets of "
                       r"shape \(16, 1\)") as caught:  # fmt: skip
        run_loop(
            model, loader, torch.nn.MSELoss(), opt, lr_ladder(1e-3, 0.1, 10), device=torch.device("cpu"),
            val_loader=loader, settings=RunSettings(metric="accuracy", eval_every=5),
        )  # fmt: skip
    assert "val_loss" in str(caught.value.hint)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_accuracy_reads_every_validation_batch_before_the_first_step() -> None:
    """0/1 targets in the first validation batch and a 2 in a later one: a setup error naming the shapes before
    anything trains, not a run that stops at its first evaluation."""
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    y = torch.zeros(32, 1)
    y[20] = 2.0  # in the second batch of 16
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SetupError, match=r"accuracy cannot read model outputs of shape \(16, 1\)"):
        run_loop(
            model, loader, torch.nn.BCEWithLogitsLoss(), opt, lr_ladder(1e-3, 0.1, 10), device=torch.device("cpu"),
            val_loader=loader, settings=RunSettings(metric="accuracy", eval_every=5),
        )  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_accuracy_of_a_multi_label_model_is_per_label() -> None:
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    y = (x[:, :2] > 0).float()  # two labels, each read off one input
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = run_loop(
        model, loader, torch.nn.BCEWithLogitsLoss(), opt, lr_ladder(0.1, 3.0, 60), device=torch.device("cpu"),
        val_loader=loader, settings=RunSettings(metric="accuracy", eval_every=10, eval_batches=4),
    )  # fmt: skip
    assert out.metric is not None and out.metric.values[-1] > 0.9  # both labels are linear in the inputs


def test_bf16_autocast_runs_on_cpu(tiny_task) -> None:
    model, loader, loss_fn, opt = tiny_task
    out = run_loop(
        model,
        loader,
        loss_fn,
        opt,
        lr_ladder(1e-3, 0.01, 8),
        device=torch.device("cpu"),
        settings=RunSettings(precision="bf16"),
    )
    assert out.stop_reason == "completed" and np.isfinite(out.losses).all()


def test_move_to_device_and_describe_nested() -> None:
    batch = {"a": torch.zeros(2, 3), "b": [torch.ones(4, dtype=torch.long), "text"]}
    moved = move_to_device(batch, torch.device("cpu"), non_blocking=False)
    assert moved["b"][1] == "text"
    assert describe_batch(batch) == "{a: Tensor[2, 3] float32, b: [Tensor[4] int64, str]}"


def test_move_to_device_fast_path_and_moves() -> None:
    """A flat batch already on the device comes back as is; anything else is moved or converted leaf by leaf."""
    cpu, meta = torch.device("cpu"), torch.device("meta")
    pair = (torch.zeros(2, 3), torch.ones(2, dtype=torch.long))
    assert move_to_device(pair, cpu, non_blocking=False) is pair
    moved = move_to_device(list(pair), meta, non_blocking=False)  # "meta" stands in for an accelerator
    assert type(moved) is list and all(t.device == meta for t in moved)
    mixed = (torch.zeros(2), "id", 3)
    assert move_to_device(mixed, meta, non_blocking=False)[1:] == ("id", 3)
    images = (torch.zeros(2, 3, 4, 4), torch.zeros(2))
    out = move_to_device(images, cpu, non_blocking=False, channels_last=True)
    assert out is not images and out[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_host_losses_keep_order_and_values_across_chunks(device: str) -> None:
    """CPU reads each loss at once; an accelerator ("meta" stands in: no CUDA here) copies whole chunks."""
    from clrfind.engine import _HostLosses

    host = _HostLosses(torch.device(device))
    losses = [torch.tensor(v, requires_grad=True) * 1.0 for v in (0.5, 0.25, float("nan"), 2.0, 3.0)]
    for i, loss in enumerate(losses):
        host.add(loss)
        if i in (1, 3):
            host.flush()
    host.flush()
    host.flush()  # an empty chunk adds nothing
    chunks = host.ready(wait=True)
    assert [len(c) for c in chunks] == [2, 2, 1]
    flat = [v for c in chunks for v in c]
    assert flat[:2] == [0.5, 0.25] and math.isnan(flat[2]) and flat[3:] == [2.0, 3.0]
    assert all(isinstance(v, float) for v in flat) and host.ready() == []


def test_nonfinite_values_names_each_tensor_that_holds_them() -> None:
    clean = torch.zeros(4, 3)
    bad = torch.tensor([[0.0, float("nan")], [float("inf"), -float("inf")]])
    assert nonfinite_values((clean, torch.arange(4))) is None
    assert nonfinite_values((bad, clean)) == "inputs Tensor[2, 2] float32: 1 NaN, 2 inf"
    assert nonfinite_values((clean, bad.double())) == "targets Tensor[2, 2] float64: 1 NaN, 2 inf"
    assert (
        nonfinite_values({"x": clean, "y": [torch.arange(2), bad]})
        == "batch['y'][1] Tensor[2, 2] float32: 1 NaN, 2 inf"
    )
    assert nonfinite_values([bad, clean, bad]) == (
        "batch[0] Tensor[2, 2] float32: 1 NaN, 2 inf; batch[2] Tensor[2, 2] float32: 1 NaN, 2 inf"
    )


def test_a_loss_that_diverges_to_nan_on_clean_data_is_still_the_curves_end() -> None:
    # The LR's NaN, not the data's: the run ends as it always did, with the steps before it and no error.
    torch.manual_seed(0)
    x = torch.randn(512, 4)
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=32, shuffle=True)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    out = run_loop(model, loader, torch.nn.MSELoss(), optimizer, lr_ladder(1e-3, 1e4, 200, "exp"),
                   device=torch.device("cpu"), stop_on_rise=False)  # fmt: skip
    assert out.error is None and out.stop_reason == "non-finite"
    assert 0 < len(out.losses) < 200 and not math.isfinite(out.losses[-1])


def test_a_loss_that_refuses_blown_up_weights_is_a_non_finite_step_not_a_failure(tiny_task) -> None:
    """torch.distributions validates its parameters: once a step has made the weights NaN, a loss built on it raises
    ValueError instead of returning NaN. That is the LR's blow-up, read as a NaN loss at the next step."""
    model, loader, _, _ = tiny_task

    class BlowsUp(torch.optim.SGD):
        """SGD whose eighth step leaves NaN weights, as a step at a far too high LR does."""

        def step(self, closure=None):
            super().step(closure)
            self.steps = getattr(self, "steps", 0) + 1
            if self.steps == 8:
                with torch.no_grad():
                    model[0].weight.fill_(math.nan)

    def categorical_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -torch.distributions.Categorical(logits=output, validate_args=True).log_prob(target).mean()

    out = run_loop(model, loader, categorical_nll, BlowsUp(model.parameters(), lr=0.1), lr_ladder(1e-3, 0.01, 30),
                   device=torch.device("cpu"), settings=RunSettings(sync_every=1))  # fmt: skip
    assert out.error is None and out.stop_reason == "non-finite"
    assert len(out.losses) == len(out.lrs) == 9
    assert np.isfinite(out.losses[:8]).all() and np.isnan(out.losses[8])
    (note,) = [n for n in out.notes if "read as a non-finite loss" in n]
    assert note.startswith("step 8 raised ValueError: Expected parameter logits")
    assert "on weights the step before had made non-finite (0.weight)" in note and len(note) < 300


def test_a_failure_on_finite_weights_stays_the_codes_failure(tiny_task) -> None:
    """The same ValueError with every weight finite is the code's failure, returned as before."""
    model, loader, loss_fn, opt = tiny_task
    calls = {"n": 0}

    def refusing(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 5:
            raise ValueError("Expected parameter loc to satisfy the constraint Real()")
        return loss_fn(output, target)

    out = run_loop(model, loader, refusing, opt, lr_ladder(1e-3, 0.01, 20), device=torch.device("cpu"),
                   settings=RunSettings(sync_every=1))  # fmt: skip
    assert out.stop_reason == "error" and isinstance(out.error, ValueError) and out.error_step == 4
