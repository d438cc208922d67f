"""The benchmark's training tasks: small, real, CPU-only, nothing downloaded.

Each task fixes everything except the learning rate: data and its train/val split (always seed 0), the model, the
loss, the optimizer family and its non-LR settings, the batch size and the epoch budget. The seed of a run only
changes the model's initial weights and the order of the batches. Every method and the oracle train the same task
through `bench.quality.train`, so the LR schedule is the only thing that differs between them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]

Family = Literal["sgd", "adam"]
Metric = Literal["accuracy", "mse"]


@dataclass(frozen=True)
class TaskData:
    """Tensors of one task; `chance` is the metric of a model that learned nothing (floor for failed runs)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    chance: float


@dataclass(frozen=True)
class Task:
    """One benchmark task. `epochs * steps_per_epoch` optimizer steps is the training budget of every run."""

    name: str
    description: str
    family: Family
    optimizer: str
    optimizer_kwargs: dict[str, Any]
    batch_size: int
    epochs: int
    metric: Metric
    make_data: Callable[[], TaskData]
    make_model: Callable[[], nn.Module]
    make_loss: Callable[[], nn.Module] = nn.CrossEntropyLoss
    extra_key: dict[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    @property
    def default_lr(self) -> float:
        """The LR a user who tunes nothing gets: 0.01 for SGD, 1e-3 for Adam/AdamW (the usual defaults)."""
        return 0.01 if self.family == "sgd" else 1e-3

    def data(self) -> TaskData:
        return _cached_data(self.name)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data().x_train) // self.batch_size  # loaders drop the last partial batch

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def build_optimizer(self, params: Any, lr: float) -> torch.optim.Optimizer:
        """The task's optimizer at `lr`, with its fixed non-LR settings."""
        return optimizer_class(self.optimizer)(params, lr=lr, **self.optimizer_kwargs)

    def fingerprint(self) -> str:
        """A hash of everything that defines the task (settings and the source of its code), for the cache key."""
        parts = [
            repr((self.name, self.family, self.optimizer, sorted(self.optimizer_kwargs.items()), self.batch_size,
                  self.epochs, self.metric, sorted(self.extra_key.items()))),
            *(_source(fn) for fn in (self.make_data, self.make_model, self.make_loss)),
            *(_source(fn) for fn in (_split, _classification, mlp)),  # shared helpers the lambdas call
        ]  # fmt: skip
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def optimizer_class(target: str) -> type[torch.optim.Optimizer]:
    """`torch.optim.SGD` -> the class (only torch.optim optimizers are used here)."""
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _source(fn: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return repr(fn)


# -- data --------------------------------------------------------------------------------------------------------


def _split(x: np.ndarray, y: np.ndarray, n_val: int, *, regression: bool = False) -> tuple[torch.Tensor, ...]:
    """A fixed random split (seed 0); features standardized with the train statistics."""
    order = np.random.default_rng(0).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    x = (x - mean) / std
    xt = torch.tensor(x, dtype=torch.float32)
    yt = (
        torch.tensor(y, dtype=torch.float32).unsqueeze(1) if regression else torch.tensor(y, dtype=torch.long)
    )
    return xt[train], yt[train], xt[val], yt[val]


def _classification(x: np.ndarray, y: np.ndarray, n_val: int) -> TaskData:
    xt, yt, xv, yv = _split(x, y, n_val)
    majority = float(torch.bincount(yv).max()) / len(yv)
    return TaskData(xt, yt, xv, yv, chance=majority)


def moons_data() -> TaskData:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.25, random_state=0)
    return _classification(x, y, n_val=1000)


def circles_data() -> TaskData:
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=2000, noise=0.06, factor=0.8, random_state=0)
    return _classification(x, y, n_val=1000)


def classification_data() -> TaskData:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=4000, n_features=20, n_informative=12, n_redundant=4, n_classes=4, n_clusters_per_class=2,
        class_sep=1.0, random_state=0,
    )  # fmt: skip
    return _classification(x, y, n_val=1500)


def iris_data() -> TaskData:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return _classification(x, y, n_val=60)


def friedman_data() -> TaskData:
    """Friedman #1 regression; the target is standardized (train stats), so val MSE 1.0 = predicting the mean."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=3000, n_features=10, noise=1.0, random_state=0)
    xt, yt, xv, yv = _split(x, y, n_val=1000, regression=True)
    mean, std = yt.mean(), yt.std()
    yt, yv = (yt - mean) / std, (yv - mean) / std
    return TaskData(xt, yt, xv, yv, chance=float(((yv - yt.mean()) ** 2).mean()))


def shapes_data() -> TaskData:
    """16x16 images of four shapes, from the sample configs' generator (loaded by path: it is not a package)."""
    path = REPO / "sample_configs" / "data.py"
    spec = importlib.util.spec_from_file_location("clrfind_sample_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, val = module.shapes(n=2048, seed=0), module.shapes(n=1024, seed=1)
    yv = val.tensors[1]
    return TaskData(*train.tensors, *val.tensors, chance=float(torch.bincount(yv).max()) / len(yv))


SEQ_LEN, VOCAB = 10, 12


def reverse_data() -> TaskData:
    """Random token sequences; the target is the sequence reversed (per-token classification)."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (6000, SEQ_LEN), generator=g)
    x, y = tokens, tokens.flip(1)
    return TaskData(x[:4000], y[:4000], x[4000:], y[4000:], chance=1.0 / VOCAB)


# -- models ------------------------------------------------------------------------------------------------------


def mlp(in_features: int, out_features: int, hidden: int = 64, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_features))


class SmallCNN(nn.Module):
    """Two conv blocks with batch norm and a linear head, for 1x16x16 images."""

    def __init__(self, num_classes: int = 4, channels: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.head = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class TinyTransformer(nn.Module):
    """A 2-layer pre-norm Transformer encoder with learned positions and a per-token head."""

    def __init__(
        self, vocab: int = VOCAB, length: int = SEQ_LEN, dim: int = 32, heads: int = 2, layers: int = 2
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, length, dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens) + self.pos))


class TokenCrossEntropy(nn.Module):
    """Cross-entropy over every token: logits (B, L, V), targets (B, L)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


# -- the suite ---------------------------------------------------------------------------------------------------

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            name="moons",
            description="make_moons (noise 0.25), MLP 2-64-64-2, plain SGD",
            family="sgd",
            optimizer="torch.optim.SGD",
            optimizer_kwargs={},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=moons_data,
            make_model=lambda: mlp(2, 2),
        ),
        Task(
            name="circles",
            description="make_circles (noise 0.08), MLP 2-64-64-2, Adam",
            family="adam",
            optimizer="torch.optim.Adam",
            optimizer_kwargs={},
            batch_size=32,
            epochs=4,
            metric="accuracy",
            make_data=circles_data,
            make_model=lambda: mlp(2, 2),
        ),
        Task(
            name="classification",
            description="make_classification (20 features, 4 classes), MLP 20-64-64-4, SGD momentum 0.9",
            family="sgd",
            optimizer="torch.optim.SGD",
            optimizer_kwargs={"momentum": 0.9},
            batch_size=64,
            epochs=6,
            metric="accuracy",
            make_data=classification_data,
            make_model=lambda: mlp(20, 4),
        ),
        Task(
            name="iris",
            description="load_iris, MLP 4-32-32-3, AdamW (weight decay 0.01)",
            family="adam",
            optimizer="torch.optim.AdamW",
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=16,
            epochs=20,
            metric="accuracy",
            make_data=iris_data,
            make_model=lambda: mlp(4, 3, hidden=32),
        ),
        Task(
            name="friedman",
            description="make_friedman1 regression (standardized target), MLP 10-64-64-1, plain SGD",
            family="sgd",
            optimizer="torch.optim.SGD",
            optimizer_kwargs={},
            batch_size=32,
            epochs=6,
            metric="mse",
            make_data=friedman_data,
            make_model=lambda: mlp(10, 1),
            make_loss=nn.MSELoss,
        ),
        Task(
            name="shapes",
            description="16x16 shape images (4 classes), 2-block CNN with batch norm, SGD momentum 0.9, wd 5e-4",
            family="sgd",
            optimizer="torch.optim.SGD",
            optimizer_kwargs={"momentum": 0.9, "weight_decay": 5e-4},
            batch_size=64,
            epochs=6,
            metric="accuracy",
            make_data=shapes_data,
            make_model=SmallCNN,
        ),
        Task(
            name="reverse",
            description=f"reverse {SEQ_LEN}-token sequences, 2-layer pre-norm Transformer (dim 32), Adam",
            family="adam",
            optimizer="torch.optim.Adam",
            optimizer_kwargs={},
            batch_size=64,
            epochs=2,
            metric="accuracy",
            make_data=reverse_data,
            make_model=TinyTransformer,
            make_loss=TokenCrossEntropy,
        ),
    ]
}


@functools.cache
def _cached_data(name: str) -> TaskData:
    """Data is made once per process: every run of a task shares it (read-only)."""
    return TASKS[name].make_data()
