"""Tiny CPU fixtures: an XOR-like task an MLP learns in a few dozen steps, seeded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_configs"


@pytest.fixture
def tiny_task():
    """(model, loader, loss_fn, optimizer) for a 2-D blobs problem; fresh and seeded for every test."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x = torch.randn(512, 2)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    loader = DataLoader(
        TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, loader, loss_fn, optimizer


@pytest.fixture
def progress_seen(monkeypatch) -> list[bool]:
    """The `progress` each `clrfind.api.range_test` call got (an integration passes it on), in call order."""
    import clrfind.api

    return keyword_spy(monkeypatch, clrfind.api, "range_test", "progress")


def keyword_spy(monkeypatch, module, name: str, keyword: str) -> list:
    """Wrap `module.name` so that each call's `keyword` argument is recorded, in call order; the list is returned."""
    seen: list = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(kwargs[keyword])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def state_of(model, optimizer) -> tuple:
    """Everything `range_test` promises to leave as it was: weights, optimizer state, RNG states, train mode."""
    import copy
    import random

    import numpy as np
    import torch

    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        copy.deepcopy(optimizer.state_dict()),  # state_dict() holds live tensors
        torch.get_rng_state().clone(),
        np.random.get_state()[1].copy(),
        random.getstate(),
        model.training,
    )


def assert_same_state(before: tuple, model, optimizer) -> None:
    """`state_of(model, optimizer)` is still `before`, bit for bit."""
    import random

    import numpy as np
    import torch

    state, opt_state, rng, np_rng, py_rng, training = before
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    now = optimizer.state_dict()
    assert now["param_groups"] == opt_state["param_groups"]
    assert now["state"].keys() == opt_state["state"].keys()
    for idx, st in now["state"].items():
        for key, value in st.items():
            assert torch.equal(value, opt_state["state"][idx][key])
    assert torch.equal(torch.get_rng_state(), rng)
    assert (np.random.get_state()[1] == np_rng).all()
    assert random.getstate() == py_rng
    assert model.training == training


def warm_up(model, loader, loss_fn, optimizer, steps: int = 4) -> None:
    """Train a few steps: the optimizer gets real momentum buffers, so a restore (or a re-test) is not trivial."""
    for i, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
        if i == steps - 1:
            break


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_gloo_ranks(script: Path, *args: str, ranks: int = 2) -> None:
    """Run `script ARGS` as the `ranks` processes of one job on this machine, with the variables torchrun sets
    (RANK, LOCAL_RANK, WORLD_SIZE, a free MASTER_PORT); every one must exit 0."""
    import subprocess
    import sys

    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(ranks),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, str(script), *args], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(ranks)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err


def write_spec(folder: Path, body: str, name: str = "spec.yaml") -> Path:
    """Write a spec plus a `task.py` with a tiny model and data next to it (targets are relative to the spec)."""
    (folder / "task.py").write_text(TASK_PY)
    path = folder / name
    path.write_text(body)
    return path


TASK_PY = '''
import torch
from torch.utils.data import TensorDataset


class Net(torch.nn.Module):
    def __init__(self, hidden=16, classes=2):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, classes))

    def forward(self, x):
        return self.body(x)


def blobs(n=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def empty():
    return TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def not_a_dataset():
    return 42


def triples(n=64):
    x = torch.randn(n, 2)
    return TensorDataset(x, x, x)


def wrong_classes(n=64):
    x = torch.randn(n, 2)
    return TensorDataset(x, torch.full((n,), 7))


class Boom(torch.nn.Module):
    """Raises at a chosen forward call, to test faults mid-run."""

    def __init__(self, at=5):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.calls = 0
        self.at = at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("kaboom")
        return self.lin(x)


def dict_blobs(n=128):
    class D(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            x = torch.randn(2, generator=g)
            return {"x": x, "y": int((x[0] > 0) ^ (x[1] > 0))}

    return D()


def dict_step(model, batch, loss_fn):
    return loss_fn(model(batch["x"]), batch["y"])
'''

BASE_SPEC = """
model: {target: task.py:Net, kwargs: {hidden: 16}}
data:
  train: {target: task.py:blobs, kwargs: {n: 1024}}
  batch_size: 64
loss: {target: torch.nn.CrossEntropyLoss}
optimizer: {target: torch.optim.SGD, kwargs: {momentum: 0.9}}
range_test: {min_lr: 1.0e-3, max_lr: 2.0, steps: 60}
device: cpu
seed: 0
"""
