"""The converged cluster case: a test whose loss reaches its floor early must not turn "nothing diverged up to 10"
into a one-cycle peak that trains the model to NaN (an easy 4-class, 8-feature cluster MLP, SGD momentum 0.9,
1e-4 -> 10 over 60 steps, exported over 5 epochs)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import clrfind

EPOCHS = 5


def clusters(seed: int = 0, n: int = 1024) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(seed)
    centers = 4.0 * torch.randn(4, 8, generator=g)
    labels = torch.randint(0, 4, (2 * n,), generator=g)
    x = centers[labels] + torch.randn(2 * n, 8, generator=g)
    return TensorDataset(x[:n], labels[:n]), TensorDataset(x[n:], labels[n:])


def model_for(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 4),
    )


def loader(train: TensorDataset, seed: int) -> DataLoader:
    return DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))


def train(seed: int, make_scheduler, lr: float) -> float:
    """Validation accuracy after EPOCHS epochs (NaN if the loss became non-finite)."""
    train_set, val_set = clusters()
    model = model_for(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        for x, y in loader(train_set, seed):
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                return math.nan
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    x, y = val_set.tensors
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


@pytest.mark.slow
def test_the_exported_one_cycle_trains_within_1pct_of_the_best_constant_lr(tmp_path) -> None:
    seed = 0
    train_set, _ = clusters()
    model = model_for(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    result = clrfind.range_test(
        model,
        loader(train_set, seed),
        torch.nn.CrossEntropyLoss(),
        optimizer,
        min_lr=1e-4,
        max_lr=10.0,
        steps=60,
    )
    b = result.bounds
    assert b is not None and b.usable
    assert b.peak_lr is not None and b.peak_lr < 1.0  # never "nothing diverged up to 10, so peak at 5"
    path = clrfind.write_schedule(result, tmp_path / "schedule.yaml", epochs=EPOCHS)
    exported = train(seed, lambda opt: clrfind.load_schedule(path, opt), lr=1.0)
    constants = {lr: train(seed, lambda opt: None, lr) for lr in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)}
    best = max(v for v in constants.values() if not math.isnan(v))
    assert not math.isnan(exported)
    assert exported >= best - 0.01, (exported, constants, b)
