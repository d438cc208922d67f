"""The quality bench's clipping optimizers: every loop that trains a clipping task clips where a training loop does,
whether it calls `step()` after its own backward or hands `step` a closure (Lightning)."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.quality.tasks import TASKS, Task, clipping, optimizer_class, task_spec

MAX_NORM = 0.05


def _model_and_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3), torch.randn(16, 4), torch.randn(16, 3)


def _by_hand(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    torch.nn.functional.mse_loss(model(x), y).backward()
    assert torch.nn.utils.clip_grad_norm_(list(model.parameters()), MAX_NORM) > MAX_NORM  # the clip acts
    optimizer.step()


@pytest.mark.parametrize("with_closure", [False, True])
def test_clipping_optimizer_steps_as_clip_then_step(with_closure: bool) -> None:
    model, x, y = _model_and_batch()
    expected = copy.deepcopy(model)
    _by_hand(expected, x, y)

    optimizer = clipping(torch.optim.SGD, MAX_NORM)(model.parameters(), lr=0.5, momentum=0.9)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    if with_closure:
        assert torch.isfinite(optimizer.step(closure))
    else:
        closure()
        optimizer.step()
    for got, want in zip(model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(got, want)


def test_clipping_tasks_clip_in_every_run_and_in_clrfinds_spec(monkeypatch) -> None:
    # The spec's training length counts the task's data, which needs the bench extra (sklearn): not this test's part.
    monkeypatch.setattr(Task, "steps_per_epoch", property(lambda task: 10))
    task = next(t for t in TASKS.values() if t.clip_grad_norm is not None)
    assert task_spec(task, 0)["training"] == {"epochs": task.epochs, "steps_per_epoch": 10}
    assert task.optimizer_cls is clipping(optimizer_class(task.optimizer), task.clip_grad_norm)
    assert task_spec(task, 0)["clip_grad_norm"] == task.clip_grad_norm
    plain = next(t for t in TASKS.values() if t.clip_grad_norm is None)
    assert "clip_grad_norm" not in task_spec(plain, 0)
