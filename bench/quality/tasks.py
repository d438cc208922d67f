"""The benchmark's training tasks: small, real, CPU-only, nothing downloaded.

Each task fixes everything except the learning rate: data and its train/val split (always seed 0), the model, the
loss, the optimizer and its non-LR settings, the batch size and the epoch budget. The seed of a run only changes
the model's initial weights and the order of the batches. Every method and the oracle train the same task through
`bench.quality.train`, so the LR schedule is the only thing that differs between them.

The tasks come in two halves and a third set. `dev`: the seven tasks clrfind's rules were fitted to, and four
new ones of kinds they lacked; look at these while changing clrfind. `heldout`: new tasks only, to check a change on
tasks it was not tuned to. `fresh`: written after the first round's rules were fixed and first scored with them,
with optimizers, models and data none of the others use (NAdam, Adagrad, Adamax; a CNN without batch norm, a GRU
classifier, a Transformer trained with SGD; batch 4), and a second batch written the same way later (Adadelta,
RAdam; an autoencoder, a batch-norm MLP under plain SGD, a deep tanh MLP) and a third (a deep sigmoid MLP under
SGD, a GRU under SGD, a 1-D CNN with dropout under AdamW) and a fourth (long budgets of 900-1550 steps; Adam with
coupled L2 and a Huber loss, a LayerNorm/GELU MLP, a CNN under Adam; one epoch under Adam) and a fifth (losses none
of the others use: binary and multi-label BCE on logits, a Gaussian NLL that goes negative, label smoothing) and a
sixth (noisy labels, the one kind of training where clrfind fell short of the default LR on the held-out half,
under AdamW, RMSprop, plain SGD, a CNN with batch norm and a long budget), and a seventh written to test the one
failure the sixth found (a small noisy dataset, a model that can memorize it, a long budget) on other data and
another optimizer, and an eighth (batch norm at batch 8 under AdamW, an EmbeddingBag text classifier, a Transformer
classifier, an L1 loss, dropout with a large batch under plain SGD) and a ninth (raw unstandardized features, an
unscaled regression target, group norm, a linear model, a deep residual MLP without normalization) and a tenth
(Adafactor, SGD with momentum 0.99, a vision Transformer, weights in bfloat16, fine-tuning under AdamW) and an
eleventh written to test the one change the tenth prompted (momenta of 0.95 and 0.98), and a twelfth (gradient
clipping under plain SGD and under AdamW, full-batch gradient descent, weight normalization, AMSGrad) and a
thirteenth written to test the one change the twelfth prompted (clipping under SGD on a GRU language model, an LSTM
classifier and an MLP regression) and a fourteenth (a recurrent regression, matrix factorization, a convolutional
denoising autoencoder, embeddings of tabular categories, a self-normalizing SELU network, RMSprop with momentum)
and a fifteenth (a hinge loss, Poisson counts through an exponential output, a bidirectional LSTM tagger, a set
model with sum pooling, distillation onto soft targets, a cosine classifier head) and a sixteenth (a coordinate
network with sine activations fitting a photo, a graph convolution network, averaged SGD, a loss summed over the
batch, a mixture of experts, spectral normalization) and a seventeenth (a variational autoencoder, a dilated causal
convolution language model, batch 1, data augmentation, a linear probe on a frozen body, heavy-tailed target
noise) and an eighteenth (a focal loss on imbalanced classes, a depthwise-separable CNN under RMSprop with momentum,
a convolutional forecaster, a pairwise ranking loss, RMSprop on a GRU language model, AdamW on a residual CNN with
batch norm) and a nineteenth (an MLP-Mixer, quantile regression on the pinball loss, a deep plain ReLU MLP under
SGD, channel dropout under NAdam with decoupled weight decay, a convolutional text classifier under Adagrad, a
LLaMA-style language model under Adam with beta2 0.95) and a twentieth (per-pixel segmentation with a U-Net, LoRA
adapters on a frozen pretrained body, a deep linear network, 1-D batch norm on waveforms under Nesterov SGD, a
skip-gram word model, a post-norm Transformer) and a twenty-first (torch's Muon, which orthogonalizes each matrix's
update, on an MLP classifier and an MLP regression) and a twenty-second (a plain tanh RNN, unclipped, under SGD
with momentum and under Adam) and a twenty-third (density models: a normalizing flow, a mixture density network) and
a twenty-fourth (CTC on unsegmented sequences, a two-headed model on a summed loss) and a twenty-fifth (losses over
the whole batch: a Cox partial likelihood, a contrastive loss) and a twenty-sixth (ordinal thresholds, a triplet
margin loss) and a twenty-seventh to thirtieth (one MLP on one dataset at three batch sizes, at three widths, for
three budgets, under three weight decays) and a thirty-first (Hugging Face GPT-2 and BERT, built from configs):
how the rules fare where nobody looked.
Data comes from code, from sklearn's generators and bundled datasets, from the text of sklearn's dataset
descriptions (`sklearn/datasets/descr/*.rst`) and from Python's own help topics (`pydoc_data`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import math
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(".bench-cache") / "quality"

Family = Literal["sgd", "adaptive"]
FAMILIES: tuple[Family, ...] = get_args(Family)
Metric = Literal["accuracy", "mse", "nats", "loss"]
Half = Literal["dev", "heldout", "fresh"]
HALVES: tuple[Half, ...] = ("dev", "heldout", "fresh")
SGD_DEFAULT_LR = 0.01


@dataclass(frozen=True)
class TaskData:
    """Tensors of one task; `chance` is the metric of a model that learned nothing (the score's zero, and the
    floor for failed runs): the majority class's val accuracy, the val MSE of predicting the train mean,
    ln(vocabulary) nats per token (a uniform guess) for language models, or for a task scored on its own loss the
    val loss of a model that learned only the training data's moments or frequencies (a Gaussian fitted to them, a
    uniform guess)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    chance: float


@dataclass(frozen=True)
class Task:
    """One benchmark task. `epochs * steps_per_epoch` optimizer steps is the training budget of every run.

    `prepare` (optional) makes what the model needs once, in the main process, before any worker starts (the
    pretrained body of a fine-tuning task); `make_model` must also work without it.
    """

    name: str
    description: str
    half: Half
    optimizer: str
    optimizer_kwargs: dict[str, Any]
    batch_size: int
    epochs: int
    metric: Metric
    make_data: Callable[[], TaskData]
    make_model: Callable[[], nn.Module]
    make_loss: Callable[[], nn.Module] = nn.CrossEntropyLoss
    prepare: Callable[[], Any] | None = None
    extra_key: dict[str, Any] = field(default_factory=dict)
    # The oracle's LR grid (low, high) when the family's does not hold the optimizer's own default (Adadelta's 1.0).
    grid: tuple[float, float] | None = None
    # Gradient clipping by total norm before every optimizer step, as the task's training does (None: none).
    clip_grad_norm: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    @property
    def family(self) -> Family:
        """`sgd` for plain gradient steps (SGD; ASGD, SGD with a decaying step and an average kept aside), or
        `adaptive` for the optimizers with per-parameter step sizes (Adam, AdamW, RMSprop)."""
        return "sgd" if optimizer_class(self.optimizer) in (torch.optim.SGD, torch.optim.ASGD) else "adaptive"

    @property
    def default_lr(self) -> float:
        """The LR a user who tunes nothing gets: 0.01 for SGD (the usual choice), torch's own default for the
        others (Adam/AdamW 1e-3, RMSprop 1e-2)."""
        if self.family == "sgd":
            return SGD_DEFAULT_LR
        return float(inspect.signature(optimizer_class(self.optimizer)).parameters["lr"].default)

    @property
    def unit(self) -> str:
        return {"accuracy": "val acc %", "mse": "val MSE", "nats": "val nats/char", "loss": "val loss"}[
            self.metric
        ]

    def data(self) -> TaskData:
        return _cached_data(self.name)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data().x_train) // self.batch_size  # loaders drop the last partial batch

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def optimizer_cls(self) -> type[torch.optim.Optimizer]:
        """The optimizer class every run of the task trains with: the named one, as the task's loop runs it."""
        return self.in_loop(optimizer_class(self.optimizer))

    def in_loop(self, cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
        """`cls` as the task's training loop steps it: clipping first when the task clips (`clipping`)."""
        return cls if self.clip_grad_norm is None else clipping(cls, self.clip_grad_norm)

    def build_optimizer(self, params: Any, lr: float) -> torch.optim.Optimizer:
        """The task's optimizer at `lr`, with its fixed non-LR settings."""
        return self.optimizer_cls(params, lr=lr, **self.optimizer_kwargs)

    def fingerprint(self) -> str:
        """A hash of everything that defines the task (settings and the code it runs), for the cache key."""
        settings = repr((self.name, self.optimizer, sorted(self.optimizer_kwargs.items()), self.batch_size,
                         self.epochs, self.metric, sorted(self.extra_key.items())))  # fmt: skip
        if self.grid is not None:
            settings += repr(self.grid)
        if self.clip_grad_norm is not None:
            settings += f"clip_grad_norm={self.clip_grad_norm!r}"
        roots = (self.make_data, self.make_model, self.make_loss, self.prepare)
        return hashlib.sha256((settings + code_closure(*roots)).encode()).hexdigest()[:12]


def optimizer_class(target: str) -> type[torch.optim.Optimizer]:
    """`torch.optim.SGD` -> the class (only torch.optim optimizers are used here)."""
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


@functools.cache
def clipping(cls: type[torch.optim.Optimizer], max_norm: float) -> type[torch.optim.Optimizer]:
    """`cls` that clips the gradients' total norm to `max_norm` right before each step.

    Clipping lives in the optimizer so that every loop that trains a task clips where a training loop does,
    between backward and step, without knowing about it: the benchmark's own loop, torch-lr-finder's and the
    fastai reimplementation's range tests (backward, then `step()`), and Lightning's, whose `step(closure)` runs
    the forward and backward inside the call. clrfind's range test clips by its spec's `clip_grad_norm` instead.
    """

    class Clipped(cls):  # type: ignore[misc,valid-type]
        def step(self, closure: Callable[[], Any] | None = None) -> Any:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            super().step()
            return loss

    Clipped.__name__ = Clipped.__qualname__ = f"Clipped{cls.__name__}"
    return Clipped


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(obj)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _names(obj: Any) -> set[str]:
    """Global names a function (or every method of a class) refers to."""
    if inspect.isclass(obj):
        return set().union(*(_names(v) for v in vars(obj).values() if inspect.isfunction(v)))
    code = getattr(obj, "__code__", None)
    return _code_names(code) if code is not None else set()


def code_closure(*roots: Any) -> str:
    """The source of `roots` and of every function, class and constant of this module they reach, recursively.

    A task's cache key hashes this, so editing a helper a task uses (a model block, a data helper) invalidates
    that task's cached runs and no other task's.
    """
    module = globals()
    parts = [_source(r) if getattr(r, "__module__", None) == __name__ else repr(r) for r in roots]
    seen: dict[str, str] = {}
    todo = sorted(set().union(*(_names(r) for r in roots)))
    while todo:
        name = todo.pop()
        if name in seen or name not in module or name.startswith("__"):
            continue
        value = module[name]
        if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == __name__:
            seen[name] = _source(value)
            todo.extend(sorted(_names(value) - seen.keys()))
        elif isinstance(value, (int, float, str, tuple)):
            seen[name] = f"{name} = {value!r}"
    return "\n".join(parts + [seen[k] for k in sorted(seen)])


# -- data --------------------------------------------------------------------------------------------------------


def _split(
    x: np.ndarray, y: np.ndarray, n_val: int, *, regression: bool = False, standardize: bool = True
) -> tuple[torch.Tensor, ...]:
    """A fixed random split (seed 0); features standardized with the train statistics (constant ones left)."""
    order = np.random.default_rng(0).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    if standardize:
        mean, std = x[train].mean(0), x[train].std(0)
        x = (x - mean) / np.where(std > 1e-6, std, 1.0)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32 if regression else torch.long)
    if regression and yt.dim() == 1:
        yt = yt.unsqueeze(1)
    return xt[train], yt[train], xt[val], yt[val]


def _majority(y: torch.Tensor) -> float:
    return float(torch.bincount(y).max()) / len(y)


def _noisy_labels(y: torch.Tensor, fraction: float) -> torch.Tensor:
    """`fraction` of the labels replaced by a different class, drawn uniformly (seed 0): exactly that many wrong."""
    rng = np.random.default_rng(0)
    classes = int(y.max()) + 1
    idx = torch.tensor(rng.choice(len(y), size=round(fraction * len(y)), replace=False))
    shift = torch.tensor(rng.integers(1, classes, size=len(idx)))
    y = y.clone()
    y[idx] = (y[idx] + shift) % classes
    return y


def _classification(
    x: np.ndarray, y: np.ndarray, n_val: int, *, label_noise: float = 0.0, **kw: Any
) -> TaskData:
    """A classification split; `label_noise` corrupts that fraction of the training labels (val stays clean)."""
    xt, yt, xv, yv = _split(x, y, n_val, **kw)
    if label_noise:
        yt = _noisy_labels(yt, label_noise)
    return TaskData(xt, yt, xv, yv, chance=_majority(yv))


def _with_noisy_labels(data: TaskData, fraction: float) -> TaskData:
    """`data` with `fraction` of its training labels wrong (`_noisy_labels`); val stays clean."""
    return TaskData(data.x_train, _noisy_labels(data.y_train, fraction), data.x_val, data.y_val, data.chance)


def _labels(x: np.ndarray, y: np.ndarray, n_val: int) -> TaskData:
    """Binary or multi-label targets as floats (N, labels) for a BCE loss on logits; chance is the majority of
    each label, averaged over the labels."""
    xt, yt, xv, yv = _split(x, y, n_val, regression=True)
    share = yv.mean(0)
    return TaskData(xt, yt, xv, yv, chance=float(torch.maximum(share, 1 - share).mean()))


def _mse_chance(y_train: torch.Tensor, y_val: torch.Tensor) -> float:
    """A regression's chance level: the val MSE of predicting the train mean of each output."""
    return float(((y_val - y_train.mean(0)) ** 2).mean())


def _frequency_chance(train_tokens: torch.Tensor, val_targets: torch.Tensor, vocab: int) -> float:
    """A token model's chance level: the val cross-entropy of the training tokens' frequencies (add-one smoothed),
    what a model that learned only how common each token is scores."""
    freq = torch.bincount(train_tokens.flatten(), minlength=vocab).double() + 1.0
    return float(-(freq / freq.sum()).log()[val_targets.flatten()].mean())


def _regression(x: np.ndarray, y: np.ndarray, n_val: int, *, standardize: bool = True) -> TaskData:
    """A regression split with the target standardized (train stats), so val MSE ~1.0 = predicting the mean;
    `standardize=False` leaves the features as they are (ids that must stay ids)."""
    xt, yt, xv, yv = _split(x, y, n_val, regression=True, standardize=standardize)
    mean, std = yt.mean(), yt.std()
    yt, yv = (yt - mean) / std, (yv - mean) / std
    return TaskData(xt, yt, xv, yv, chance=_mse_chance(yt, yv))


def moons_data() -> TaskData:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.25, random_state=0)
    return _classification(x, y, n_val=1000)


def circles_data() -> TaskData:
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=2000, noise=0.06, factor=0.8, random_state=0)
    return _classification(x, y, n_val=1000)


def classification_data(*, label_noise: float = 0.0) -> TaskData:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=4000, n_features=20, n_informative=12, n_redundant=4, n_classes=4, n_clusters_per_class=2,
        class_sep=1.0, random_state=0,
    )  # fmt: skip
    return _classification(x, y, n_val=1500, label_noise=label_noise)


def clusters_data() -> TaskData:
    """Four well separated Gaussian clusters in 8 dimensions: an MLP's loss is near zero within a few dozen steps."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=2000, n_features=8, centers=4, cluster_std=1.0, center_box=(-10, 10),
                      random_state=0)  # fmt: skip
    return _classification(x, y, n_val=1000)


def large_data() -> TaskData:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=24000, n_features=40, n_informative=20, n_redundant=5, n_classes=8, n_clusters_per_class=2,
        class_sep=1.0, random_state=2,
    )  # fmt: skip
    return _classification(x, y, n_val=4000)


def hastie_data() -> TaskData:
    """Hastie et al. 10.2: y = 1 when the sum of squares of 10 Gaussian features exceeds the chi^2 median."""
    from sklearn.datasets import make_hastie_10_2

    x, y = make_hastie_10_2(n_samples=6000, random_state=0)
    return _classification(x, (y > 0).astype(np.int64), n_val=2000)


def iris_data() -> TaskData:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return _classification(x, y, n_val=60)


def wine_data() -> TaskData:
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    return _classification(x, y, n_val=58)


def cancer_data() -> TaskData:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return _classification(x, y, n_val=169)


def digits_data(*, label_noise: float = 0.0) -> TaskData:
    """load_digits as 64 standardized features (1797 images of 8x8)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _classification(x, y, n_val=597, label_noise=label_noise)


def cancer_labels_data() -> TaskData:
    """load_breast_cancer with its label as one float target, for a single-logit BCE head."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return _labels(x, y, n_val=169)


def multilabel_data() -> TaskData:
    """make_multilabel_classification: 20 count features, 8 labels, about 3 on per sample."""
    from sklearn.datasets import make_multilabel_classification

    x, y = make_multilabel_classification(
        n_samples=3000, n_features=20, n_classes=8, n_labels=3, random_state=12
    )
    return _labels(x, y, n_val=1000)


def heteroscedastic_data() -> TaskData:
    """y = sin(2 x0) + x1 x2 / 2 plus Gaussian noise whose scale grows with |x3| (0.1 to ~2): a regression whose
    noise a Gaussian NLL head can learn, standardized target."""
    rng = np.random.default_rng(21)
    x = rng.normal(size=(3000, 4))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + (0.1 + 0.6 * np.abs(x[:, 3])) * rng.normal(size=3000)
    return _regression(x, y, n_val=1000)


def digits_autoencoder_data() -> TaskData:
    """load_digits as 64 standardized features, reconstructed from themselves; chance = the val MSE of the train
    mean image."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    xt, _, xv, _ = _split(x, y, n_val=597)
    return TaskData(xt, xt, xv, xv, chance=_mse_chance(xt, xv))


def _generated(n_val: int, **kwargs: Any) -> TaskData:
    """make_classification(**kwargs), split with `n_val` samples for validation (the later tasks' data)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(**kwargs)
    return _classification(x, y, n_val=n_val)


def blobs4_data() -> TaskData:
    return _generated(1000, n_samples=3000, n_features=20, n_informative=10, n_redundant=2, n_classes=4,
                      n_clusters_per_class=2, class_sep=0.9, random_state=7)  # fmt: skip


def five_class_data() -> TaskData:
    return _generated(1500, n_samples=3500, n_features=24, n_informative=14, n_redundant=4, n_classes=5,
                      n_clusters_per_class=2, class_sep=1.1, random_state=11)  # fmt: skip


# `six_class_data`'s training samples: 375 steps an epoch at batch 32, 23 at batch 512.
SIX_CLASS_TRAIN = 12000


def six_class_data() -> TaskData:
    """make_classification (24 features, 6 classes), SIX_CLASS_TRAIN samples to train on, for the twenty-seventh
    batch's three batch sizes."""
    return _generated(2000, n_samples=SIX_CLASS_TRAIN + 2000, n_features=24, n_informative=14, n_redundant=4,
                      n_classes=6, n_clusters_per_class=2, class_sep=1.0, random_state=27)  # fmt: skip


def spirals_data() -> TaskData:
    """Two interleaved spirals (1.5 turns each, Gaussian noise 0.3), 1000 points to train on."""
    rng = np.random.default_rng(4)
    n = 1000
    t = np.sqrt(rng.uniform(0.05, 1.0, 2 * n)) * 3 * np.pi
    label = np.repeat([0, 1], n)
    sign = np.where(label == 0, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], 1) + rng.normal(0, 0.3, (2 * n, 2))
    return _classification(x, label, n_val=1000)


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    """load_digits as 1x8x8 images scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[:, None].astype(np.float32) / 16.0, digits.target


def digit_images_data() -> TaskData:
    x, y = _digit_images()
    return _classification(x, y, n_val=597, standardize=False)


FINETUNE_PER_CLASS = 20


def finetune_data() -> TaskData:
    """Digits 5-9 (relabelled 0-4): FINETUNE_PER_CLASS training images per class (seed 0), the rest for val."""
    x, y = _digit_images()
    keep = y >= 5
    x, y = x[keep], y[keep] - 5
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:FINETUNE_PER_CLASS] for c in range(5)])
    val = np.setdiff1d(np.arange(len(y)), train)
    xt, yt = torch.tensor(x), torch.tensor(y, dtype=torch.long)
    return TaskData(xt[train], yt[train], xt[val], yt[val], chance=_majority(yt[val]))


def friedman_data() -> TaskData:
    """Friedman #1 regression; the target is standardized (train stats), so val MSE 1.0 = predicting the mean."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=3000, n_features=10, noise=1.0, random_state=0)
    return _regression(x, y, n_val=1000)


def diabetes_data() -> TaskData:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return _regression(x, y, n_val=142)


def shapes_data() -> TaskData:
    """16x16 images of four shapes, from the sample configs' generator (loaded by path: it is not a package)."""
    path = REPO / "sample_configs" / "data.py"
    spec = importlib.util.spec_from_file_location("clrfind_sample_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, val = module.shapes(n=2048, seed=0), module.shapes(n=1024, seed=1)
    return TaskData(*train.tensors, *val.tensors, chance=_majority(val.tensors[1]))


SEQ_LEN, VOCAB = 10, 12


def noisy_shapes_data() -> TaskData:
    return _with_noisy_labels(shapes_data(), 0.25)


def noisy_hastie_data() -> TaskData:
    return _with_noisy_labels(hastie_data(), 0.2)


def noisy_classes_data(
    n_train: int, n_features: int, n_classes: int, *, label_noise: float, random_state: int
) -> TaskData:
    """make_classification (one cluster per class, two thirds of the features informative) with `label_noise` of
    the `n_train` training labels wrong and 1500 clean val samples. With few training samples a 128-wide MLP can
    memorize the training set, wrong labels and all."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n_train + 1500, n_features=n_features, n_informative=n_features * 2 // 3, n_redundant=2,
        n_classes=n_classes, n_clusters_per_class=1, class_sep=1.2, random_state=random_state,
    )  # fmt: skip
    return _classification(x, y, n_val=1500, label_noise=label_noise)


def reverse_data() -> TaskData:
    """Random token sequences; the target is the sequence reversed (per-token classification)."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (6000, SEQ_LEN), generator=g)
    x, y = tokens, tokens.flip(1)
    return TaskData(x[:4000], y[:4000], x[4000:], y[4000:], chance=1.0 / VOCAB)


COUNT_LEN, COUNT_VOCAB, COUNT_CLASSES = 30, 5, 10


def count_data() -> TaskData:
    """Random sequences of COUNT_LEN tokens out of COUNT_VOCAB; the label is how often token 0 occurs (0-8, and
    9 for 9 or more)."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, COUNT_VOCAB, (6000, COUNT_LEN), generator=g)
    y = (tokens == 0).sum(1).clamp(max=COUNT_CLASSES - 1)
    return TaskData(tokens[:4000], y[:4000], tokens[4000:], y[4000:], chance=_majority(y[4000:]))


MODE_LEN, MODE_VOCAB = 20, 6


def mode_data() -> TaskData:
    """Random sequences of MODE_LEN tokens out of MODE_VOCAB; the label is the most frequent token (the smallest
    on a tie)."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, MODE_VOCAB, (6000, MODE_LEN), generator=g)
    counts = torch.nn.functional.one_hot(tokens, MODE_VOCAB).sum(1)
    y = counts.argmax(1)  # argmax returns the first maximum: the smallest token on a tie
    return TaskData(tokens[:4000], y[:4000], tokens[4000:], y[4000:], chance=_majority(y[4000:]))


# The padding token of variable-length count sequences: one past the vocabulary.
COUNT_PAD = COUNT_VOCAB


def packed_count_data() -> TaskData:
    """count_data's task on sequences of random length (COUNT_LEN // 3 to COUNT_LEN tokens), padded at the end
    with COUNT_PAD; the label counts the 0s among the real tokens."""
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, COUNT_VOCAB, (6000, COUNT_LEN), generator=g)
    lengths = torch.randint(COUNT_LEN // 3, COUNT_LEN + 1, (6000, 1), generator=g)
    tokens[torch.arange(COUNT_LEN) >= lengths] = COUNT_PAD
    y = (tokens == 0).sum(1).clamp(max=COUNT_CLASSES - 1)
    return TaskData(tokens[:4000], y[:4000], tokens[4000:], y[4000:], chance=_majority(y[4000:]))


def quantiles_data() -> TaskData:
    """Nested Gaussian shells (make_gaussian_quantiles, 3 classes in 4 dimensions), 600 samples to train on."""
    from sklearn.datasets import make_gaussian_quantiles

    x, y = make_gaussian_quantiles(n_samples=1600, n_features=4, n_classes=3, random_state=3)
    return _classification(x, y, n_val=1000)


def nadam_data() -> TaskData:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=3000, n_features=16, n_informative=8, n_redundant=2, n_classes=3, n_clusters_per_class=3,
        class_sep=0.8, flip_y=0.02, random_state=5,
    )  # fmt: skip
    return _classification(x, y, n_val=1000)


def friedman3_data() -> TaskData:
    """Friedman #3 regression (an arctan of a ratio of the features), a little noise, standardized target."""
    from sklearn.datasets import make_friedman3

    x, y = make_friedman3(n_samples=3000, noise=0.05, random_state=4)
    return _regression(x, y, n_val=1000)


def friedman2_data() -> TaskData:
    """Friedman #2 regression (an impedance from four circuit values), noise 150, standardized target."""
    from sklearn.datasets import make_friedman2

    x, y = make_friedman2(n_samples=3000, noise=150.0, random_state=8)
    return _regression(x, y, n_val=1000)


def swissroll_data() -> TaskData:
    """The position along a noisy swiss roll (noise 3.0) from its 3-D point, standardized target."""
    from sklearn.datasets import make_swiss_roll

    x, t = make_swiss_roll(n_samples=3000, noise=3.0, random_state=6)
    return _regression(x, t, n_val=1000)


BOW_VOCAB, BOW_CLASSES, BOW_LEN, BOW_TOPIC = 400, 4, 24, 40


def bag_of_words_data() -> TaskData:
    """Documents of BOW_LEN word ids: each word comes from the class's own BOW_TOPIC topic words with
    probability 0.15, else from a Zipf-like background over the whole vocabulary (topic words included), so a
    document holds about three words that give its class away among common ones that do not."""
    rng = np.random.default_rng(8)
    n = 4000
    y = rng.integers(0, BOW_CLASSES, n)
    background = 1.0 / np.arange(1, BOW_VOCAB + 1)
    background = rng.permutation(background / background.sum())
    words = rng.choice(BOW_VOCAB, size=(n, BOW_LEN), p=background)
    topical = rng.random((n, BOW_LEN)) < 0.15
    topic_words = rng.permutation(BOW_VOCAB)[: BOW_CLASSES * BOW_TOPIC].reshape(BOW_CLASSES, BOW_TOPIC)
    own = topic_words[y[:, None], rng.integers(0, BOW_TOPIC, (n, BOW_LEN))]
    x = torch.tensor(np.where(topical, own, words))
    yt = torch.tensor(y, dtype=torch.long)
    return TaskData(x[:3000], yt[:3000], x[3000:], yt[3000:], chance=_majority(yt[3000:]))


def wide_classes_data() -> TaskData:
    """make_classification (30 features, 6 classes), 20000 samples to train on: a large batch still leaves
    39 steps an epoch."""
    return _generated(2000, n_samples=22000, n_features=30, n_informative=16, n_redundant=4, n_classes=6,
                      n_clusters_per_class=2, class_sep=0.9, random_state=17)  # fmt: skip


def raw_cancer_data() -> TaskData:
    """load_breast_cancer with its raw features (from 0.001 to 4000 in scale), as a user who skips standardizing
    hands them over: the largest feature sets how high an LR can go, the smallest how slowly they learn."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return _classification(x, y, n_val=169, standardize=False)


def diabetes_raw_target_data() -> TaskData:
    """load_diabetes with the raw target (25-346, mean 152) left unscaled: the MSE starts near 3e4 and most of
    its first fall is the output bias catching up. chance = the val MSE of the train mean, in the same units."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    xt, yt, xv, yv = _split(x, y, 142, regression=True)
    return TaskData(xt, yt, xv, yv, chance=_mse_chance(yt, yv))


def deep_classes_data() -> TaskData:
    return _generated(1500, n_samples=4000, n_features=20, n_informative=12, n_redundant=2, n_classes=5,
                      n_clusters_per_class=2, class_sep=1.0, random_state=23)  # fmt: skip


SINE_LEN = 24


def sines_data() -> TaskData:
    """Forecast the next value of a noisy sum of two sines (random periods of 4-20 steps, phases and amplitudes;
    noise 0.1) from its last SINE_LEN values: 4000 series, 1000 for validation; target standardized."""
    rng = np.random.default_rng(31)
    n = 4000
    t = np.arange(SINE_LEN + 1)
    freq = rng.uniform(0.05, 0.25, (n, 2, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 2, 1))
    amp = rng.uniform(0.5, 1.5, (n, 2, 1))
    series = (amp * np.sin(2 * np.pi * freq * t + phase)).sum(1) + rng.normal(0, 0.1, (n, SINE_LEN + 1))
    return _regression(series[:, :SINE_LEN, None], series[:, SINE_LEN], n_val=1000)


USERS, ITEMS, RANK = 300, 200, 4


def ratings_data() -> TaskData:
    """Ratings of USERS x ITEMS from a rank-RANK model with user and item offsets and noise (std 0.5): 12000
    observed (user, item) pairs, 3000 for validation; inputs are the two ids (as floats), the target is
    standardized."""
    rng = np.random.default_rng(37)
    users, items = rng.normal(0, 1, (USERS, RANK)), rng.normal(0, 1, (ITEMS, RANK))
    pairs = rng.choice(USERS * ITEMS, size=12000, replace=False)
    u, i = pairs // ITEMS, pairs % ITEMS
    rating = (users[u] * items[i]).sum(1) / math.sqrt(RANK) + rng.normal(0, 0.5, USERS)[u]
    rating += rng.normal(0, 0.5, ITEMS)[i] + rng.normal(0, 0.5, len(pairs))
    # ids stay ids (as floats, exact; the model casts them back)
    return _regression(np.stack([u, i], 1), rating, 3000, standardize=False)


def denoise_data() -> TaskData:
    """load_digits images (flattened, in [0, 1]) with Gaussian noise (std 0.25, seed 0) in, the clean image out;
    chance = the val MSE of the train mean image."""
    x, _ = _digit_images()
    clean = x.reshape(len(x), -1)
    noisy = clean + np.random.default_rng(0).normal(0, 0.25, clean.shape).astype(np.float32)
    xt, yt, xv, yv = _split(noisy, clean, n_val=597, regression=True, standardize=False)
    return TaskData(xt, yt, xv, yv, chance=_mse_chance(yt, yv))


CARDINALITIES = (12, 30, 80)
NUMERIC = 4


def tabular_data() -> TaskData:
    """6000 rows of len(CARDINALITIES) categorical columns (their codes, as floats) and NUMERIC standardized
    numeric ones; 3 classes from random per-category effects plus a linear term and Gumbel noise; 2000 for val."""
    rng = np.random.default_rng(41)
    n = 6000
    codes = np.stack([rng.integers(0, c, n) for c in CARDINALITIES], 1)
    numeric = rng.normal(0, 1, (n, NUMERIC))
    logits = sum(rng.normal(0, 1.0, (c, 3))[codes[:, k]] for k, c in enumerate(CARDINALITIES))
    logits = logits + numeric @ rng.normal(0, 0.7, (NUMERIC, 3)) + rng.gumbel(0, 1, (n, 3))
    x = np.concatenate([codes, numeric], 1)
    return _classification(x, logits.argmax(1), n_val=2000, standardize=False)


def poisson_data() -> TaskData:
    """Counts drawn from a Poisson whose log-rate is a smooth function of 8 standardized features (rates 0.1 to
    about 30, mean about 3): 5000 rows, 1500 for validation; the target is the raw count, chance = the val MSE
    of the train mean count."""
    rng = np.random.default_rng(43)
    x = rng.normal(0, 1, (5000, 8))
    w = rng.normal(0, 0.35, 8)
    log_rate = 1.0 + x @ w + 0.4 * np.sin(2 * x[:, 0]) * x[:, 1] - 0.15 * x[:, 2] ** 2
    counts = rng.poisson(np.exp(np.clip(log_rate, -2.3, 3.4))).astype(np.float64)
    xt, yt, xv, yv = _split(x, counts, 1500, regression=True)
    return TaskData(xt, yt, xv, yv, chance=_mse_chance(yt, yv))


TAG_LEN, TAG_VOCAB, TAG_CLASSES = 20, 10, 3


def tagging_data() -> TaskData:
    """Random sequences of TAG_LEN tokens out of TAG_VOCAB; each token's tag is (left neighbour + right
    neighbour) mod TAG_CLASSES (0 past either end), so a tag needs context from both sides."""
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, TAG_VOCAB, (6000, TAG_LEN), generator=g)
    padded = nn.functional.pad(tokens, (1, 1))
    tags = (padded[:, :-2] + padded[:, 2:]) % TAG_CLASSES
    return TaskData(
        tokens[:4000], tags[:4000], tokens[4000:], tags[4000:], chance=_majority(tags[4000:].flatten())
    )


SET_MAX = 20


def sets_data() -> TaskData:
    """Sets of 3 to SET_MAX points in the plane, padded to SET_MAX rows of (x, y, present); the label is the
    quadrant holding the most points (the first on a tie). 6000 sets, 2000 for validation."""
    rng = np.random.default_rng(47)
    n = 6000
    points = rng.normal(0, 1, (n, SET_MAX, 2)) + rng.normal(0, 0.7, (n, 1, 2))
    present = np.arange(SET_MAX)[None] < rng.integers(3, SET_MAX + 1, n)[:, None]
    quadrant = (points[..., 0] < 0) * 2 + (points[..., 1] < 0)
    counts = np.stack([((quadrant == q) & present).sum(1) for q in range(4)], 1)
    x = np.concatenate([points * present[..., None], present[..., None]], 2).astype(np.float32)
    return _classification(x, counts.argmax(1), n_val=2000, standardize=False)


def distill_data() -> TaskData:
    """load_digits (standardized) with soft training targets: the class probabilities of a logistic-regression
    teacher fitted to the training labels, softened at temperature 2. Val keeps the true labels (accuracy)."""
    from sklearn.linear_model import LogisticRegression

    data = digits_data()
    teacher = LogisticRegression(max_iter=2000).fit(data.x_train.numpy(), data.y_train.numpy())
    soft = torch.tensor(teacher.decision_function(data.x_train.numpy()) / 2.0).softmax(1).float()
    return TaskData(data.x_train, soft, data.x_val, data.y_val, data.chance)


IMAGE_SIDE = 64


def image_data() -> TaskData:
    """sklearn's bundled photo `china.jpg` in grey, its central 384x384 block-averaged to IMAGE_SIDE x IMAGE_SIDE:
    the input is a pixel's (row, column) in [-1, 1], the target its brightness (standardized). A random fifth of
    the pixels (seed 0) is the val set, so the fit is scored on pixels it never saw."""
    from sklearn.datasets import load_sample_image

    grey = load_sample_image("china.jpg").mean(2)
    top, left = (grey.shape[0] - 384) // 2, (grey.shape[1] - 384) // 2
    block = 384 // IMAGE_SIDE
    crop = grey[top : top + 384, left : left + 384]
    pixels = crop.reshape(IMAGE_SIDE, block, IMAGE_SIDE, block).mean((1, 3))
    axis = np.linspace(-1, 1, IMAGE_SIDE)
    rows, cols = np.meshgrid(axis, axis, indexing="ij")
    coords = np.stack([rows.ravel(), cols.ravel()], 1)
    return _regression(coords, pixels.ravel(), n_val=IMAGE_SIDE**2 // 5, standardize=False)


GRAPH_NODES, GRAPH_BLOCKS, GRAPH_FEATURES = 800, 4, 16


@functools.cache
def sbm_graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A stochastic block model (seed 53): GRAPH_NODES nodes in GRAPH_BLOCKS communities, an edge within a
    community with probability 0.02 and across with 0.004 (about 4 and 2.4 neighbours); each node's features are
    its community's direction (a random projection) scaled by 0.5 plus unit Gaussian noise, too weak alone.
    Returns the symmetrically normalized adjacency with self-loops, the features and the communities."""
    rng = np.random.default_rng(53)
    labels = rng.integers(0, GRAPH_BLOCKS, GRAPH_NODES)
    same = labels[:, None] == labels[None]
    upper = np.triu(rng.random((GRAPH_NODES, GRAPH_NODES)) < np.where(same, 0.02, 0.004), 1)
    adj = (upper | upper.T | np.eye(GRAPH_NODES, dtype=bool)).astype(np.float64)
    scale = 1 / np.sqrt(adj.sum(1))
    directions = rng.normal(0, 1, (GRAPH_BLOCKS, GRAPH_FEATURES))
    features = 0.5 * directions[labels] + rng.normal(0, 1, (GRAPH_NODES, GRAPH_FEATURES))
    return (
        torch.tensor(adj * scale[:, None] * scale[None], dtype=torch.float32),
        torch.tensor(features, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.long),
    )


def graph_data() -> TaskData:
    """Node classification on `sbm_graph`: a sample is a node's index (as a float, like every input here), its
    label the node's community; half the nodes (seed 0) train, the other half are the val set."""
    _, _, labels = sbm_graph()
    return _classification(np.arange(GRAPH_NODES), labels.numpy(), n_val=GRAPH_NODES // 2, standardize=False)


def experts_data() -> TaskData:
    """make_classification (12 features, 4 classes of 3 clusters each): regions a gate can hand to experts."""
    return _generated(1500, n_samples=4500, n_features=12, n_informative=8, n_redundant=0, n_classes=4,
                      n_clusters_per_class=3, class_sep=1.5, random_state=59)  # fmt: skip


def outlier_friedman_data() -> TaskData:
    """make_friedman1 (10 features) without its own noise; the training targets then get heavy-tailed noise
    (Student's t with 1.5 degrees of freedom: infinite variance, a few targets off by tens of the signal's standard
    deviations), the val targets unit Gaussian noise. Both are scaled by the clean training targets' mean and
    standard deviation, so the outliers do not set the scale; the val MSE is scored against clean-noise targets."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=3000, n_features=10, noise=0.0, random_state=61)
    xt, yt, xv, yv = _split(x, y, n_val=1000, regression=True)
    mean, std = yt.mean(), yt.std()
    rng = np.random.default_rng(61)
    yt = yt + torch.tensor(rng.standard_t(1.5, size=yt.shape), dtype=torch.float32)
    yv = yv + torch.tensor(rng.normal(size=yv.shape), dtype=torch.float32)
    yt, yv = (yt - mean) / std, (yv - mean) / std
    return TaskData(xt, yt, xv, yv, chance=_mse_chance(yt, yv))


def imbalanced_data() -> TaskData:
    """make_classification (20 features, 4 classes) with classes in proportion 55/25/15/5: the majority class
    alone is right 55% of the time, and the rarest has ~150 training samples."""
    return _generated(1000, n_samples=3000, n_features=20, n_informative=8, n_redundant=2, n_classes=4,
                      n_clusters_per_class=2, weights=[0.55, 0.25, 0.15, 0.05], class_sep=1.0,
                      random_state=71)  # fmt: skip


def moons_density_data() -> TaskData:
    """Two moons (noise 0.03) as a density to learn, the points as drawn (not standardized, so the NLL crosses zero
    as the density sharpens); the targets are zeros (there are no labels). chance = the val NLL of the Gaussian
    fitted to the training points: a density that learned their mean and covariance and nothing else."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=3000, noise=0.03, random_state=79)
    xt, _, xv, _ = _split(x, np.zeros(len(x)), n_val=1000, regression=True, standardize=False)
    mean, cov = xt.mean(0), torch.cov(xt.T)
    chance = -float(torch.distributions.MultivariateNormal(mean, cov).log_prob(xv).mean())
    return TaskData(xt, torch.zeros(len(xt), 1), xv, torch.zeros(len(xv), 1), chance)


def inverse_sine_data() -> TaskData:
    """Bishop's inverse problem: t ~ U(0, 1), x = t + 0.3 sin(2 pi t) + U(-0.1, 0.1); t is predicted from x, which
    has up to three values of t (x standardized, t as drawn). chance = the val NLL of the Gaussian fitted to the
    training targets, ignoring x."""
    rng = np.random.default_rng(83)
    t = rng.uniform(0, 1, 4000)
    x = t + 0.3 * np.sin(2 * np.pi * t) + rng.uniform(-0.1, 0.1, 4000)
    xt, yt, xv, yv = _split(x[:, None], t, n_val=1000, regression=True)
    chance = -float(torch.distributions.Normal(yt.mean(), yt.std()).log_prob(yv).mean())
    return TaskData(xt, yt, xv, yv, chance)


CTC_FRAMES, CTC_LABELS, CTC_FEATURES, CTC_CLASSES = 24, 4, 16, 10  # class 0 is CTC's blank


def ctc_frames_data() -> TaskData:
    """Unsegmented sequences, as speech or handwriting come: CTC_LABELS labels (1-9) spoken over CTC_FRAMES frames,
    each label held 3-5 frames, a silent (blank) frame between some of them and silence to the end; a frame is its
    label's fixed random prototype (16 features) plus noise of the same scale. The targets are the label sequences
    alone, without their timing. chance = the val CTC loss of a uniform guess over the classes on every frame."""
    rng = np.random.default_rng(89)
    n = 4000
    prototypes = rng.normal(0, 1, (CTC_CLASSES, CTC_FEATURES))
    labels = rng.integers(1, CTC_CLASSES, (n, CTC_LABELS))
    frames = np.zeros((n, CTC_FRAMES), dtype=np.int64)  # the class each frame shows (0: silence)
    for i in range(n):
        t = 0
        for label in labels[i]:
            t += int(rng.integers(0, 2))  # a silent frame before it, or none
            hold = int(rng.integers(3, 6))
            frames[i, t : t + hold] = label
            t += hold
    x = prototypes[frames] + rng.normal(0, 1, (n, CTC_FRAMES, CTC_FEATURES))
    xt, yt, xv, yv = _split(x, labels, n_val=1000, standardize=False)
    uniform = torch.full((len(xv), CTC_FRAMES, CTC_CLASSES), 0.0)
    return TaskData(xt, yt, xv, yv, chance=float(CTCLoss()(uniform, yv)))


def two_task_data() -> TaskData:
    """One input, two targets (a multi-task model's data): 20 Gaussian features, a class among 5 (the argmax of a
    random linear map of the features plus noise) and a real value (a smooth function of other directions plus
    noise, standardized); y holds the class and the value side by side. chance = the val loss of the training
    classes' frequencies and mean value."""
    rng = np.random.default_rng(97)
    x = rng.normal(0, 1, (4000, 20))
    scores = x @ rng.normal(0, 1, (20, 5)) / math.sqrt(20) + rng.normal(0, 0.5, (4000, 5))
    value = (
        np.sin(x @ rng.normal(0, 1, 20) / math.sqrt(20) * 2)
        + 0.5 * x[:, 0] * x[:, 1]
        + rng.normal(0, 0.3, 4000)
    )
    value = (value - value.mean()) / value.std()
    y = np.stack([scores.argmax(1).astype(np.float64), value], 1)
    xt, yt, xv, yv = _split(x, y, n_val=1000, regression=True)
    prior = torch.bincount(yt[:, 0].long(), minlength=5).float() / len(yt)
    guess = torch.cat([prior.log().expand(len(yv), 5), yt[:, 1].mean().expand(len(yv), 1)], 1)
    return TaskData(xt, yt, xv, yv, chance=float(TwoTaskLoss()(guess, yv)))


SURVIVAL_FEATURES = 20


def survival_data() -> TaskData:
    """Right-censored survival times: SURVIVAL_FEATURES Gaussian features set a log-hazard (a linear part and an
    interaction, scale about 1); event times are exponential with that hazard, censoring times exponential with a
    fixed rate (about 30% of the times censored). y holds (time, event) side by side. chance = the val Cox loss of
    equal risks for all, the log of each event's risk-set size."""
    rng = np.random.default_rng(101)
    n = 4000
    x = rng.normal(0, 1, (n, SURVIVAL_FEATURES))
    log_hazard = (
        x @ rng.normal(0, 1, SURVIVAL_FEATURES) / math.sqrt(SURVIVAL_FEATURES) + 0.5 * x[:, 0] * x[:, 1]
    )
    event_time = rng.exponential(1.0 / np.exp(log_hazard))
    censor_time = rng.exponential(2.5, n)
    time_seen = np.minimum(event_time, censor_time)
    event = (event_time <= censor_time).astype(np.float64)
    xt, yt, xv, yv = _split(x, np.stack([time_seen, event], 1), n_val=1000, regression=True)
    return TaskData(xt, yt, xv, yv, chance=float(CoxLoss()(torch.zeros(len(xv), 1), yv)))


def views_data() -> TaskData:
    """load_digits' 64 standardized features for a contrastive model, whose targets go unused (the labels are
    kept). chance = the val InfoNCE loss of a model that maps every view to one point: ln(2N - 1) for N samples."""
    d = digits_data()
    return TaskData(d.x_train, d.y_train, d.x_val, d.y_val, chance=math.log(2 * len(d.x_val) - 1))


ORDINAL_FEATURES, ORDINAL_LEVELS = 12, 6


def ordinal_data() -> TaskData:
    """Ordered grades, as ratings or severities come: a latent score (a linear part and a smooth nonlinear one of
    ORDINAL_FEATURES Gaussian features, plus logistic noise) cut at its quantiles into ORDINAL_LEVELS grades; a
    grade g is coded as ORDINAL_LEVELS - 1 binary targets, 1 for each threshold below it ("above threshold k").
    chance = the majority of each threshold, averaged over them."""
    rng = np.random.default_rng(103)
    n = 4000
    x = rng.normal(0, 1, (n, ORDINAL_FEATURES))
    latent = (
        x @ rng.normal(0, 1, ORDINAL_FEATURES) / math.sqrt(ORDINAL_FEATURES)
        + np.tanh(x[:, 0] * x[:, 1])
        + rng.logistic(0, 0.3, n)
    )
    cuts = np.quantile(latent, np.linspace(0, 1, ORDINAL_LEVELS + 1)[1:-1])
    grade = np.searchsorted(cuts, latent)
    above = (grade[:, None] > np.arange(ORDINAL_LEVELS - 1)[None, :]).astype(np.float64)
    return _labels(x, above, n_val=1000)


def triplets_data() -> TaskData:
    """Metric learning on load_digits: each sample is (anchor, positive, negative) images, the positive of the
    anchor's class and the negative of another (3000 training triplets from the 1200 training images, 1000 val
    triplets from the 597 val images); targets unused (zeros). chance = the val triplet loss of a model that maps
    every image to one point: the margin."""
    d = digits_data()
    rng = np.random.default_rng(107)

    def triplets(x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
        labels = y.numpy()
        anchor = rng.integers(0, len(labels), n)
        positive = np.array([rng.choice(np.flatnonzero(labels == labels[a])) for a in anchor])
        negative = np.array([rng.choice(np.flatnonzero(labels != labels[a])) for a in anchor])
        return torch.stack([x[anchor], x[positive], x[negative]], 1)

    xt, xv = triplets(d.x_train, d.y_train, 3000), triplets(d.x_val, d.y_val, 1000)
    zt, zv = torch.zeros(len(xt), dtype=torch.long), torch.zeros(len(xv), dtype=torch.long)
    return TaskData(xt, zt, xv, zv, chance=float(TripletLoss()(torch.zeros(len(xv), 3, 32), zv)))


PAIR_FEATURES = 10


def pairs_data() -> TaskData:
    """Which of two items is better: items of PAIR_FEATURES features with a hidden utility (linear plus an
    interaction, noise 0.3 on each comparison); 5000 random pairs, 1500 for validation. An input is (2, features),
    the label 1 when the first item wins."""
    rng = np.random.default_rng(73)
    items = rng.normal(0, 1, (800, PAIR_FEATURES))
    w = rng.normal(0, 1, PAIR_FEATURES)
    utility = items @ w / math.sqrt(PAIR_FEATURES) + 0.5 * np.sin(items[:, 0] * items[:, 1])
    a, b = rng.integers(0, len(items), 5000), rng.integers(0, len(items), 5000)
    label = (utility[a] - utility[b] + rng.normal(0, 0.3, 5000) > 0).astype(np.int64)
    return _classification(np.stack([items[a], items[b]], 1), label, n_val=1500, standardize=False)


# Characters: printable ASCII and newline; anything else reads as "?". chance = ln(CHARS) nats per character.
CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
CHAR_LEN = 32


def _char_ids(text: str) -> torch.Tensor:
    """`text` as ids into CHARS (anything else reads as "?")."""
    index = {c: i for i, c in enumerate(CHARS)}
    return torch.tensor([index.get(c, index["?"]) for c in text])


def _next_token_windows(ids: torch.Tensor, length: int, n_train: int | None) -> tuple[torch.Tensor, ...]:
    """Next-token prediction on `ids`: inputs are `length` tokens, targets the same shifted by one, as
    (x_train, y_train, x_val, y_val). Training windows start at `n_train` random places (seed 0) in the first 90%
    of `ids`, or with None follow one another (each window's last target is the next one's first input); the last
    10% is cut into consecutive windows for validation."""
    cut = int(len(ids) * 0.9)
    train, val = ids[:cut], ids[cut:]
    if n_train is None:
        windows = train.unfold(0, length + 1, length)
    else:
        starts = torch.randint(0, cut - length - 1, (n_train,), generator=torch.Generator().manual_seed(0))
        windows = torch.stack([train[s : s + length + 1] for s in starts.tolist()])
    val_windows = val.unfold(0, length + 1, length)
    return windows[:, :-1], windows[:, 1:], val_windows[:, :-1], val_windows[:, 1:]


def _char_windows(text: str, n_train: int) -> TaskData:
    """Next-character prediction on `text` (`_next_token_windows` of CHAR_LEN characters, `n_train` random ones
    to train on). Batches are (inputs, targets) token tensors of shape (B, CHAR_LEN)."""
    return TaskData(*_next_token_windows(_char_ids(text), CHAR_LEN, n_train), chance=math.log(len(CHARS)))


def descr_text() -> str:
    """sklearn's dataset descriptions (datasets/descr/*.rst, sorted by name), ~43k characters of English prose."""
    import sklearn

    files = sorted((Path(sklearn.__file__).parent / "datasets" / "descr").glob("*.rst"))
    return "\n\n".join(f.read_text(encoding="utf-8") for f in files)


def descr_chars_data() -> TaskData:
    return _char_windows(descr_text(), n_train=3200)


PYDOC_CHARS = 160_000


def pydoc_text() -> str:
    """Python's help topics (pydoc_data.topics, sorted by topic), the first PYDOC_CHARS characters."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))[:PYDOC_CHARS]


def pydoc_chars_data() -> TaskData:
    return _char_windows(pydoc_text(), n_train=4800)


SEG_SIZE, SEG_CLASSES = 16, 3


def segmentation_data() -> TaskData:
    """SEG_SIZExSEG_SIZE images each holding a square and a disk of random size and place, equally bright, under
    Gaussian noise (0.6); the target labels every pixel (0 background, 1 square, 2 disk, the disk on top), so a
    pixel's class depends on the shape around it, not on its own brightness. 2000 train, 500 val; chance is every
    pixel called background."""
    rng = np.random.default_rng(79)
    n = 2500
    rows, cols = np.mgrid[:SEG_SIZE, :SEG_SIZE]
    masks = np.zeros((n, SEG_SIZE, SEG_SIZE), np.int64)
    for i in range(n):
        for label in (1, 2):
            radius = rng.uniform(2.0, 4.0)
            cy, cx = rng.uniform(radius, SEG_SIZE - radius, 2)
            if label == 1:
                inside = (np.abs(rows - cy) <= 0.85 * radius) & (np.abs(cols - cx) <= 0.85 * radius)
            else:
                inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
            masks[i][inside] = label
    x = torch.tensor((masks > 0) + rng.normal(0, 0.6, masks.shape), dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(masks)
    return TaskData(x[:2000], y[:2000], x[2000:], y[2000:], chance=_majority(y[2000:].flatten()))


WAVE_LEN = 64


def waves_data() -> TaskData:
    """WAVE_LEN samples of a sine, square, sawtooth or triangle wave (the class) of 1.5-5 cycles, random phase,
    amplitude 0.5-1.5 and offset, under Gaussian noise (0.3): 3000 series, 1000 for validation, not standardized."""
    rng = np.random.default_rng(83)
    n = 3000
    kind = rng.integers(0, 4, n)
    t = np.arange(WAVE_LEN) / WAVE_LEN
    u = (rng.uniform(1.5, 5.0, (n, 1)) * t + rng.uniform(0, 1, (n, 1))) % 1.0  # the place within a cycle
    waves = np.stack(
        [np.sin(2 * np.pi * u), np.where(u < 0.5, 1.0, -1.0), 2 * u - 1, 1 - 4 * np.abs(u - 0.5)]
    )
    x = rng.uniform(0.5, 1.5, (n, 1)) * waves[kind, np.arange(n)] + rng.normal(0, 0.3, (n, 1))
    x = x + rng.normal(0, 0.3, x.shape)
    return _classification(x[:, None].astype(np.float32), kind, n_val=1000, standardize=False)


def linear_target_data() -> TaskData:
    """make_regression: 20 features, 12 of them informative, a linear target under noise 20 (standardized)."""
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=3000, n_features=20, n_informative=12, noise=20.0, random_state=89)
    return _regression(x, y, n_val=1000)


SKIPGRAM_VOCAB, SKIPGRAM_WINDOW = 300, 1


def skipgram_data() -> TaskData:
    """Skip-gram pairs from the words of Python's help topics: a word (input, shape (1,)) and one of its neighbours
    up to SKIPGRAM_WINDOW away (target). The SKIPGRAM_VOCAB - 1 commonest words keep their ids, every other word is
    id 0. The pairs of the first 90% of the words train, those of the last 10% validate.
    Chance is the val cross-entropy of the training pairs' target frequencies: a model that learned only how common
    each word is."""
    ids = _pydoc_word_ids(SKIPGRAM_VOCAB).numpy()
    offsets = [o for o in range(-SKIPGRAM_WINDOW, SKIPGRAM_WINDOW + 1) if o]
    middle = np.arange(SKIPGRAM_WINDOW, len(ids) - SKIPGRAM_WINDOW)
    centre = np.repeat(ids[middle], len(offsets))
    context = ids[(middle[:, None] + np.array(offsets)).ravel()]
    position = np.repeat(middle, len(offsets))
    cut = int(len(ids) * 0.9)
    train = np.flatnonzero(position < cut - SKIPGRAM_WINDOW)  # no training pair reaches into the val words
    val = np.flatnonzero(position >= cut)
    x, y = torch.tensor(centre).unsqueeze(1), torch.tensor(context).unsqueeze(1)
    return TaskData(
        x[train], y[train], x[val], y[val], chance=_frequency_chance(y[train], y[val], SKIPGRAM_VOCAB)
    )


WORDLM_VOCAB, WORDLM_LEN = 2000, 24


def _pydoc_word_ids(vocab: int) -> torch.Tensor:
    """The words of Python's help topics as ids: the `vocab` - 1 commonest words keep ids 1..., every other word
    is id 0."""
    import collections
    import re

    words = re.findall(r"[a-z_]+", pydoc_text().lower())
    common = [w for w, _ in collections.Counter(words).most_common(vocab - 1)]
    index = {w: i + 1 for i, w in enumerate(common)}
    return torch.tensor([index.get(w, 0) for w in words])


def _next_words(length: int, n_train: int | None) -> TaskData:
    """Next-word prediction on `_pydoc_word_ids` (`_next_token_windows` of `length` words). Chance is the val
    cross-entropy of the training words' frequencies: a model that learned only how common each word is."""
    ids = _pydoc_word_ids(WORDLM_VOCAB)
    xt, yt, xv, yv = _next_token_windows(ids, length, n_train)
    return TaskData(xt, yt, xv, yv, chance=_frequency_chance(ids[: int(len(ids) * 0.9)], yv, WORDLM_VOCAB))


def words_lm_data() -> TaskData:
    """WORDLM_LEN-word windows, 3000 at random places: each word is in about three of them."""
    return _next_words(WORDLM_LEN, 3000)


WORDS_BPTT = 35


def words_contiguous_data(length: int = WORDS_BPTT) -> TaskData:
    """`length`-word windows that follow one another, as torch's word language model example cuts its text (its
    bptt 35): no two share a word they predict."""
    return _next_words(length, None)


SOURCE_LEN, SOURCE_PER_CLASS = CHAR_LEN, 64


def source_data() -> TaskData:
    """Which text a SOURCE_LEN-character snippet comes from: sklearn's dataset descriptions (0) or Python's help
    topics (1). SOURCE_PER_CLASS snippets of each to train on, from the first 90% of each text (seed 0); 500 of
    each from the last 10% to validate."""
    g = torch.Generator().manual_seed(0)
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []
    for label, text in enumerate((descr_text(), pydoc_text())):
        ids = _char_ids(text)
        cut = int(len(ids) * 0.9)
        for lo, hi, n in ((0, cut, SOURCE_PER_CLASS), (cut, len(ids), 500)):
            starts = torch.randint(lo, hi - SOURCE_LEN, (n,), generator=g)
            parts.append(
                (torch.stack([ids[s : s + SOURCE_LEN] for s in starts.tolist()]), torch.full((n,), label))
            )
    (xt0, yt0), (xv0, yv0), (xt1, yt1), (xv1, yv1) = parts
    order = torch.randperm(2 * SOURCE_PER_CLASS, generator=g)
    xt, yt = torch.cat([xt0, xt1])[order], torch.cat([yt0, yt1])[order]
    xv, yv = torch.cat([xv0, xv1]), torch.cat([yv0, yv1])
    return TaskData(xt, yt, xv, yv, chance=_majority(yv))


DIFFUSION_STEPS, DIFFUSION_DRAWS = 100, 4


def diffusion_data() -> TaskData:
    """A DDPM's noise-prediction objective on load_digits: each image (flattened, scaled to [-1, 1]) with
    DIFFUSION_DRAWS draws (seed 0) of a step t of a DIFFUSION_STEPS-step linear beta schedule (1e-4 to 0.02, scaled to
    100 steps) and of Gaussian noise eps; the input is sqrt(abar_t) x + sqrt(1 - abar_t) eps with t / DIFFUSION_STEPS
    as a 65th column, the target eps. Images are split before the draws (597 for val), so no val image is trained
    on; chance = the val MSE of the train mean noise (about 1)."""
    x, _ = _digit_images()
    images = torch.tensor(x.reshape(len(x), -1) * 2.0 - 1.0)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    betas = torch.linspace(1e-4, 0.02, 1000)[:: 1000 // DIFFUSION_STEPS]
    abar = torch.cumprod(1.0 - betas * (1000 // DIFFUSION_STEPS), 0).clamp(min=1e-4)
    g = torch.Generator().manual_seed(0)

    def noised(clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clean = clean.repeat(DIFFUSION_DRAWS, 1)
        t = torch.randint(0, DIFFUSION_STEPS, (len(clean),), generator=g)
        eps = torch.randn(clean.shape, generator=g)
        a = abar[t].unsqueeze(1)
        inputs = a.sqrt() * clean + (1.0 - a).sqrt() * eps
        return torch.cat([inputs, (t.float() / DIFFUSION_STEPS).unsqueeze(1)], 1), eps

    xv, yv = noised(images[order[:597]])
    xt, yt = noised(images[order[597:]])
    # the draws of one image apart, as a real loader would see them
    shuffle = torch.randperm(len(xt), generator=g)
    xt, yt = xt[shuffle], yt[shuffle]
    return TaskData(xt, yt, xv, yv, chance=_mse_chance(yt, yv))


SORT_LEN, SORT_VOCAB = 12, 10


def sort_data() -> TaskData:
    """Sort SORT_LEN random tokens out of SORT_VOCAB (seed 3), as a sequence-to-sequence task with teacher forcing:
    the input is the source followed by the decoder's input (a start token SORT_VOCAB, then the sorted sequence
    shifted right), the target the sorted sequence; 4000 train, 2000 val; chance ln(SORT_VOCAB) nats per token."""
    g = torch.Generator().manual_seed(3)
    source = torch.randint(0, SORT_VOCAB, (6000, SORT_LEN), generator=g)
    target = source.sort(1).values
    start = torch.full((len(source), 1), SORT_VOCAB)
    x = torch.cat([source, start, target[:, :-1]], 1)
    return TaskData(x[:4000], target[:4000], x[4000:], target[4000:], chance=math.log(SORT_VOCAB))


MLM_RATE = 0.15
MLM_MASK = len(CHARS)  # the [MASK] token's id, one past the characters


def mlm_data() -> TaskData:
    """Masked language modelling on `pydoc_chars_data`'s windows (BERT's objective): MLM_RATE of the positions of
    each window (at least one; drawn once, seed 0) replaced by MLM_MASK, the target the original character there
    and -100 (ignored by the cross-entropy) everywhere else. Chance is the val cross-entropy of the training
    characters' frequencies: a model that learned only how common each character is."""
    chars = pydoc_chars_data()
    g = torch.Generator().manual_seed(0)

    def masked(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.rand(windows.shape, generator=g) < MLM_RATE
        mask[torch.arange(len(windows)), torch.randint(0, windows.shape[1], (len(windows),), generator=g)] = (
            True
        )
        return windows.masked_fill(mask, MLM_MASK), windows.masked_fill(~mask, -100)

    xt, yt = masked(chars.x_train)
    xv, yv = masked(chars.x_val)
    return TaskData(xt, yt, xv, yv, chance=_frequency_chance(chars.x_train, yv[yv >= 0], len(CHARS)))


# -- models ------------------------------------------------------------------------------------------------------


def mlp(in_features: int, out_features: int, hidden: int = 64, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_features))


def autoencoder(features: int, code: int) -> nn.Sequential:
    """features-32-code-32-features with ReLUs: a bottleneck the reconstruction has to pass through."""
    return nn.Sequential(
        nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, code), nn.ReLU(), nn.Linear(code, 32), nn.ReLU(),
        nn.Linear(32, features),
    )  # fmt: skip


def mlp_of(
    in_features: int, out_features: int, hidden: int, depth: int, after: Callable[[int], list[nn.Module]]
) -> nn.Sequential:
    """An MLP whose hidden Linear layers are each followed by `after(width)`: batch norm and ReLU (scale-invariant
    hidden layers, as in a CNN with batch norm), or a saturating tanh. `mlp` predates it and keeps its own code, so
    the cached runs of the tasks built on it stay valid."""
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), *after(hidden)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_features))


class SmallCNN(nn.Module):
    """Two conv blocks with batch norm and a linear head, for 1-channel images (16x16 shapes, 8x8 digits)."""

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


class PlainCNN(nn.Module):
    """Two conv layers without any normalization (each followed by ReLU, the first max-pooled) and a linear
    head: nothing makes it scale-invariant, unlike SmallCNN."""

    def __init__(self, num_classes: int, channels: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * channels, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResBlock(nn.Module):
    """A basic residual block: two 3x3 convs with batch norm, a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + self.skip(x))


class SmallResNet(nn.Module):
    """A stem conv (max-pooled to half the resolution with `pool_stem`, as ResNets do), a residual block at
    `channels`, one at 2x channels and half the resolution, a linear head."""

    def __init__(self, num_classes: int, channels: int = 8, pool_stem: bool = False) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.MaxPool2d(2) if pool_stem else nn.Identity(),
            ResBlock(c, c), ResBlock(c, 2 * c, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * c, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyTransformer(nn.Module):
    """A pre-norm Transformer encoder with learned positions and a per-token head; `causal` masks the future
    (a language model)."""

    def __init__(
        self, vocab: int = VOCAB, length: int = SEQ_LEN, dim: int = 32, heads: int = 2, layers: int = 2,
        causal: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.causal = causal
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, length, dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def encode(self, tokens: torch.Tensor, causal: bool | None = None) -> torch.Tensor:
        """The encoder's output; `causal` (by default the model's own) masks the future."""
        h = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        if self.causal if causal is None else causal:
            mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])
            return self.encoder(h, mask=mask, is_causal=True)
        return self.encoder(h)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(tokens))


class TutorialTransformer(nn.Module):
    """The model of torch's Transformer language-model tutorial, causal: post-norm encoder layers (torch's
    default), dropout 0.2, sinusoidal positions added to the embedding scaled by sqrt(dim), embedding and head
    weights uniform in +-0.1 and a zero head bias."""

    def __init__(self, vocab: int, length: int, dim: int = 64, heads: int = 2, layers: int = 2) -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        self.embed = nn.Embedding(vocab, dim)
        position = torch.arange(length).unsqueeze(1)
        rate = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(length, dim)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate)
        self.register_buffer("pe", pe)
        self.drop = nn.Dropout(0.2)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim, dropout=0.2, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.head.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.embed(tokens) * self.scale + self.pe[: tokens.shape[1]])
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])
        return self.head(self.encoder(h, mask=mask, is_causal=True))


class PackedGRU(nn.Module):
    """Embedding (the padding token's row held at zero), a GRU run over each sequence's real tokens only
    (`pack_padded_sequence`, as variable-length batches are usually fed), and a linear head on the state after its
    last real token."""

    def __init__(self, vocab: int, pad: int, classes: int, embed: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.pad = pad
        self.embed = nn.Embedding(vocab + 1, embed, padding_idx=pad)
        self.rnn = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != self.pad).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(tokens), lengths, batch_first=True, enforce_sorted=False
        )
        _, h = self.rnn(packed)
        return self.head(h[-1])


class SeqTransformerRegressor(nn.Module):
    """A pre-norm Transformer encoder over a real-valued sequence (B, L, 1): each value projected to `dim`, learned
    positions, 2 layers, and a linear head on the last position."""

    def __init__(self, length: int, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(1, dim)
        self.pos = nn.Parameter(torch.randn(1, length, dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos)
        return self.head(self.norm(h[:, -1]))


class RecurrentNet(nn.Module):
    """Embedding, a one-layer GRU or LSTM (`bidirectional`: one each way, the head reading both), and a linear
    head: on every step (`per_token`: a language model, or a tagger when bidirectional) or on the last one (a
    sequence classifier)."""

    def __init__(
        self,
        cell: type[nn.RNNBase],
        vocab: int,
        out: int,
        embed: int,
        hidden: int,
        per_token: bool,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.per_token = per_token
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = cell(embed, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(2 * hidden if bidirectional else hidden, out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embed(tokens))
        return self.head(h if self.per_token else h[:, -1])


class ConvSeq(nn.Module):
    """Embedding, one 1-D convolution (width 5) with ReLU and dropout, max over positions, a linear head: a
    sequence classifier without recurrence."""

    def __init__(
        self, vocab: int, out: int, embed: int = 16, channels: int = 32, dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.conv = nn.Sequential(
            nn.Conv1d(embed, channels, 5, padding=2), nn.ReLU(), nn.Dropout(dropout), nn.AdaptiveMaxPool1d(1),
            nn.Flatten(), nn.Linear(channels, out),
        )  # fmt: skip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.conv(self.embed(tokens).transpose(1, 2))


class BagOfWords(nn.Module):
    """The mean of the words' embeddings (EmbeddingBag), ReLU and a linear head: a fastText-style classifier,
    whose embedding rows each get a gradient only from the documents that hold the word."""

    def __init__(self, vocab: int, out: int, dim: int = 32) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(dim, out))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.bag(tokens))


class GroupNormCNN(nn.Module):
    """Two conv blocks with group norm (4 groups) and a linear head: normalized per sample, so unlike batch norm
    its output does not depend on the rest of the batch. Its own class: SmallCNN's code keys older tasks' caches."""

    def __init__(self, num_classes: int, channels: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.GroupNorm(4, channels), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.GroupNorm(4, 2 * channels), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * channels, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResidualMLP(nn.Module):
    """A linear stem, `depth` residual blocks h + W2 relu(W1 h) with no normalization, a linear head: the
    activations grow with every block, and with them how far one step at a high LR moves the output."""

    def __init__(self, in_features: int, out_features: int, width: int = 64, depth: int = 10) -> None:
        super().__init__()
        self.stem = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)) for _ in range(depth)
        )
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(nn.functional.relu(h))


class TransformerClassifier(nn.Module):
    """A pre-norm Transformer encoder with learned positions, a final LayerNorm, the mean over positions and a
    linear head: a sequence classifier."""

    def __init__(
        self, vocab: int, length: int, out: int, dim: int = 32, heads: int = 2, layers: int = 2
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, length, dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(tokens) + self.pos[:, : tokens.shape[1]])
        return self.head(self.norm(h).mean(1))


class PatchTransformer(nn.Module):
    """A vision Transformer for 1x8x8 images: 2x2 patches (16 tokens of 4 pixels) embedded linearly, learned
    positions, a pre-norm encoder, a final LayerNorm, the mean over patches and a linear head."""

    def __init__(
        self, num_classes: int, patch: int = 2, dim: int = 32, heads: int = 4, layers: int = 2
    ) -> None:
        super().__init__()
        self.patch = patch
        tokens = (8 // patch) ** 2
        self.embed = nn.Linear(patch * patch, dim)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        patches = x.unfold(2, p, p).unfold(3, p, p).reshape(x.shape[0], -1, p * p)  # (B, tokens, p*p)
        h = self.encoder(self.embed(patches) + self.pos)
        return self.head(self.norm(h).mean(1))


class Bfloat16(nn.Module):
    """`inner` with its weights in bfloat16, as in pure bf16 training: inputs are cast down, outputs back up for
    the loss. An update smaller than a weight's bf16 spacing (8 bits of mantissa) rounds away."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(torch.bfloat16)).float()


PRETRAIN_EPOCHS, PRETRAIN_BATCH = 10, 32


def _fit_epochs(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[..., torch.Tensor], x: torch.Tensor,
    y: torch.Tensor, epochs: int,
) -> None:  # fmt: skip
    """`epochs` shuffled passes over (x, y) in batches of PRETRAIN_BATCH: the pretraining of a fine-tuning task."""
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(PRETRAIN_BATCH):
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _made_once(keyed_by: Callable[..., Any], name: str, make: Callable[[], dict[str, torch.Tensor]]) -> Path:
    """The state dict `make()` returns, made once with torch seeded 0 (the caller's RNG, a run's seeded initial
    weights, left as it was) and saved as `.bench-cache/quality/pretrained-<name>-<key>.pt`, keyed by the code of
    `keyed_by`, so that editing the pretraining makes it again."""
    key = hashlib.sha256(code_closure(keyed_by).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"pretrained-{name}-{key}.pt"
    if path.exists():
        return path
    with torch.random.fork_rng():
        torch.manual_seed(0)
        state = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def pretrained_features() -> Path:
    """A SmallCNN trained on digits 0-4 (all 901 images, Adam 1e-3, PRETRAIN_EPOCHS epochs, seed 0); its
    `features`, saved once (`_made_once`)."""

    def make() -> dict[str, torch.Tensor]:
        x, y = _digit_images()
        keep = y < 5
        model = SmallCNN(num_classes=5)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = torch.tensor(x[keep]), torch.tensor(y[keep], dtype=torch.long)
        _fit_epochs(model, optimizer, nn.functional.cross_entropy, x, y, PRETRAIN_EPOCHS)
        return model.features.state_dict()

    return _made_once(pretrained_features, "digits04", make)


def finetune_model() -> SmallCNN:
    """The pretrained digits-0-4 body with a new (seeded) 5-way head."""
    model = SmallCNN(num_classes=5)
    model.features.load_state_dict(torch.load(pretrained_features(), weights_only=True))
    return model


LM_PRETRAIN_EPOCHS = 6


def lm_body() -> TinyTransformer:
    """The language model that is pretrained, then fine-tuned: causal, dim 48, 4 heads, 2 layers."""
    return TinyTransformer(len(CHARS), CHAR_LEN, dim=48, heads=4, causal=True)


def pretrained_lm() -> Path:
    """`lm_body` trained on sklearn's dataset descriptions (AdamW 1e-3, wd 0.1, batch 32, LM_PRETRAIN_EPOCHS
    epochs, seed 0), saved once (`_made_once`)."""

    def make() -> dict[str, torch.Tensor]:
        data = descr_chars_data()
        model = lm_body()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        _fit_epochs(model, optimizer, TokenCrossEntropy(), data.x_train, data.y_train, LM_PRETRAIN_EPOCHS)
        return model.state_dict()

    return _made_once(pretrained_lm, "descr-lm", make)


def finetune_lm_model() -> TinyTransformer:
    """The pretrained language model, every weight to be fine-tuned (the same characters: no new head)."""
    model = lm_body()
    model.load_state_dict(torch.load(pretrained_lm(), weights_only=True))
    return model


class SourceClassifier(nn.Module):
    """The pretrained language model's body (embedding, positions, encoder; bidirectional now: no causal mask) with
    a new (seeded) head on its mean-pooled output."""

    def __init__(self) -> None:
        super().__init__()
        self.body = finetune_lm_model()
        self.head = nn.Linear(self.body.head.in_features, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.body.encode(tokens, causal=False).mean(1))


FINETUNE_LM_WINDOWS = 960


def finetune_lm_data() -> TaskData:
    """FINETUNE_LM_WINDOWS training windows of Python's help topics, the usual val windows; the score's zero is
    the pretrained model's own val loss (what fine-tuning has to improve on), not a uniform guess."""
    data = _char_windows(pydoc_text(), n_train=FINETUNE_LM_WINDOWS)
    model = finetune_lm_model().eval()
    with torch.no_grad():
        logits = torch.cat([model(x) for x in data.x_val.split(512)])
    start = float(TokenCrossEntropy()(logits, data.y_val))
    return TaskData(data.x_train, data.y_train, data.x_val, data.y_val, chance=start)


def each_linear(model: nn.Module, parametrize: Callable[[nn.Module], Any]) -> nn.Module:
    """`model` with torch's `parametrize` on every Linear layer's weight: `weight_norm` (a direction times a
    learned norm: the direction's gradient is scale-invariant, as under batch norm, without normalizing any
    activation) or `spectral_norm` (the weight divided by its largest singular value, estimated by one power
    iteration per training forward: every layer 1-Lipschitz)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            parametrize(module)
    return model


class SeqRegressor(nn.Module):
    """A one-layer GRU over a real-valued sequence (B, L, 1) and a linear head on its last step."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.rnn = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)
        return self.head(h[:, -1])


class Factorization(nn.Module):
    """Matrix factorization: the dot product of a user's and an item's embedding plus their biases, for a
    (user, item) id pair (floats, as the data holds them). Each row of an embedding gets a gradient only from the
    batches that hold its id."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.users, self.items = nn.Embedding(USERS, dim), nn.Embedding(ITEMS, dim)
        self.user_bias, self.item_bias = nn.Embedding(USERS, 1), nn.Embedding(ITEMS, 1)
        for table in (self.users, self.items):
            nn.init.normal_(table.weight, std=0.1)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        u, i = ids[:, 0].long(), ids[:, 1].long()
        dot = (self.users(u) * self.items(i)).sum(1, keepdim=True)
        return dot + self.user_bias(u) + self.item_bias(i)


class DenoisingConvAE(nn.Module):
    """A convolutional autoencoder for flattened 8x8 images: two convs down to 32x4x4, a transposed conv back."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 1, 3, padding=1),
            nn.Flatten(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TabularNet(nn.Module):
    """An embedding per categorical column (codes in the first columns), concatenated with the numeric ones,
    then an MLP with dropout 0.1: the usual deep model for tabular data."""

    def __init__(self, out: int = 3, hidden: int = 64) -> None:
        super().__init__()
        dims = (4, 8, 12)
        self.tables = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(CARDINALITIES, dims, strict=True))
        self.mlp = nn.Sequential(
            nn.Linear(sum(dims) + NUMERIC, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, hidden),
            nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, out),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(CARDINALITIES)
        codes = x[:, :k].long()
        parts = [table(codes[:, j]) for j, table in enumerate(self.tables)]
        return self.mlp(torch.cat([*parts, x[:, k:]], 1))


def selu_mlp(in_features: int, out_features: int, hidden: int, depth: int) -> nn.Sequential:
    """A self-normalizing network: SELU activations with LeCun-normal weights (std 1/sqrt(fan_in)), zero biases,
    and no normalization layer."""
    model = mlp_of(in_features, out_features, hidden, depth, lambda _: [nn.SELU()])
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=1 / math.sqrt(module.in_features))
            nn.init.zeros_(module.bias)
    return model


class ExpRate(nn.Module):
    """An MLP whose output is exponentiated: a Poisson rate, positive, and exponential in the last layer."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.net = mlp(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).exp()


class DeepSets(nn.Module):
    """A set model: the same MLP on every point, a masked sum over the set (its scale grows with the set's
    size), and an MLP on the sum. Rows are (x, y, present)."""

    def __init__(self, out: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = mlp(hidden, out, hidden, depth=1)

    def forward(self, sets: torch.Tensor) -> torch.Tensor:
        return self.rho((self.phi(sets[..., :2]) * sets[..., 2:]).sum(1))


class CosineClassifier(nn.Module):
    """An MLP body and a cosine head: logits are `scale` times the cosine between the features and each class's
    weight vector, so the head's output does not change with the norm of either (a scale-invariant layer)."""

    def __init__(self, in_features: int, classes: int, hidden: int = 128, scale: float = 10.0) -> None:
        super().__init__()
        self.body = mlp(in_features, hidden, hidden, depth=1)
        self.weight = nn.Parameter(torch.randn(classes, hidden) / math.sqrt(hidden))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = nn.functional.normalize(self.body(x), dim=1)
        return self.scale * features @ nn.functional.normalize(self.weight, dim=1).T


class Siren(nn.Module):
    """A coordinate network with sine activations (SIREN): each hidden layer is sin(w0 * (W x + b)), its weights
    drawn so the activations spread over the sine's periods (first layer U(-1/in, 1/in), the others
    U(-sqrt(6/width)/w0, +)); it fits the fine detail a ReLU network blurs, and its step size is w0 times larger."""

    def __init__(self, in_features: int = 2, hidden: int = 128, depth: int = 3, w0: float = 30.0) -> None:
        super().__init__()
        widths = [in_features] + [hidden] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        with torch.no_grad():
            self.layers[0].weight.uniform_(-1 / in_features, 1 / in_features)
            for layer in self.layers[1:]:
                bound = math.sqrt(6 / hidden) / w0
                layer.weight.uniform_(-bound, bound)
        self.head = nn.Linear(hidden, 1)
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.sin(self.w0 * layer(x))
        return self.head(x)


class GCN(nn.Module):
    """Two graph convolutions (Kipf & Welling) on `sbm_graph`: each mixes a node's features with its neighbours'
    through the normalized adjacency, over the whole graph at every step, with dropout on the inputs of both;
    a batch of node indices picks whose outputs the loss sees."""

    def __init__(self, hidden: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        adj, features, _ = sbm_graph()
        # copies: the graph is cached per process, and a model's buffers are its own (a restore writes into them)
        self.register_buffer("adj", adj.clone())
        self.register_buffer("features", features.clone())
        self.lin1 = nn.Linear(GRAPH_FEATURES, hidden)
        self.lin2 = nn.Linear(hidden, GRAPH_BLOCKS)
        self.drop = nn.Dropout(dropout)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.adj @ self.lin1(self.drop(self.features)))
        return (self.adj @ self.lin2(self.drop(h)))[nodes.long()]


class MixtureOfExperts(nn.Module):
    """A softmax gate mixing `experts` one-hidden-layer MLPs (dense: every expert runs on every sample); gate and
    experts learn together, and a gate that settles on one expert early leaves the others untrained."""

    def __init__(self, in_features: int, out_features: int, experts: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.gate = nn.Linear(in_features, experts)
        self.experts = nn.ModuleList(mlp(in_features, out_features, hidden, depth=1) for _ in range(experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.gate(x).softmax(-1).unsqueeze(-1)
        return (weights * torch.stack([expert(x) for expert in self.experts], 1)).sum(1)


class VAE(nn.Module):
    """A variational autoencoder: an encoder to the mean and log-variance of a `code`-dimensional posterior, a
    sample from it (reparameterized, drawn from torch's generator) in training and its mean in eval mode, and a
    decoder. The output is (reconstruction, mean, log-variance) side by side: the loss reads all three, the val
    MSE the reconstruction alone."""

    def __init__(self, features: int, code: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.encoder = mlp(features, 2 * code, hidden, depth=1)
        self.decoder = mlp(code, features, hidden, depth=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
        return torch.cat([self.decoder(z), mean, logvar], 1)


class NegativeELBO(nn.Module):
    """The VAE's loss per sample: half the squared error summed over the features (a unit-variance Gaussian
    decoder) plus the KL divergence of the posterior from N(0, I), whose exp(log-variance) can overflow."""

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        features = target.shape[1]
        mean, logvar = out[:, features:].chunk(2, dim=1)
        reconstruction = 0.5 * ((out[:, :features] - target) ** 2).sum(1)
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(1)
        return (reconstruction + kl).mean()


class CausalConvLM(nn.Module):
    """A character language model without recurrence or attention (WaveNet-style, ungated): an embedding,
    `layers` residual blocks of kernel-2 convolutions with dilations 1, 2, 4, ..., each padded on the left so a
    position sees only the past (a receptive field of 2**layers characters), no normalization, a per-token head."""

    def __init__(self, vocab: int, dim: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, 2, dilation=2**i) for i in range(layers))
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens).transpose(1, 2)
        for conv in self.convs:
            h = h + torch.relu(conv(nn.functional.pad(h, (conv.dilation[0], 0))))
        return self.head(h.transpose(1, 2))


class RandomShift(nn.Module):
    """Data augmentation where a training pipeline applies it: in training mode each image is shifted by up to
    `pad` pixels each way (zero-padded, then cropped back at an offset drawn per image from torch's generator),
    so the loss of a batch is noisier than its images alone make it; in eval mode images pass unchanged."""

    def __init__(self, inner: nn.Module, pad: int = 1) -> None:
        super().__init__()
        self.inner = inner
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            n, _, height, width = x.shape
            padded = nn.functional.pad(x, (self.pad,) * 4)
            rows = torch.randint(0, 2 * self.pad + 1, (n, 1, 1)) + torch.arange(height).view(1, height, 1)
            cols = torch.randint(0, 2 * self.pad + 1, (n, 1, 1)) + torch.arange(width).view(1, 1, width)
            x = padded[torch.arange(n).view(n, 1, 1), 0, rows, cols].unsqueeze(1)
        return self.inner(x)


class LinearProbe(nn.Module):
    """The pretrained digits-0-4 body (`finetune_model`), frozen and kept in eval mode (its batch-norm statistics
    too), under a new trained head: a linear probe, the one model here of which only the last layer learns."""

    def __init__(self) -> None:
        super().__init__()
        self.model = finetune_model()
        self.model.features.requires_grad_(False)
        self.model.features.eval()

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        self.model.features.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GaussianHead(nn.Module):
    """Gaussian negative log-likelihood of a (mean, raw variance) head: the variance is softplus of the second
    output. The loss goes negative once the predicted variance is small, as a likelihood loss does."""

    def __init__(self) -> None:
        super().__init__()
        self.nll = nn.GaussianNLLLoss()

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.nll(out[:, :1], target, nn.functional.softplus(out[:, 1:]) + 1e-4)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017, gamma 2): cross-entropy scaled by (1 - p)**gamma, so samples the model already
    gets right weigh little and the rare, hard ones drive the gradient."""

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = nn.functional.cross_entropy(logits, target, reduction="none")
        return ((1.0 - torch.exp(-ce)) ** self.gamma * ce).mean()


def _dw_separable(cin: int, cout: int, stride: int) -> list[nn.Module]:
    """A MobileNet block: a depthwise 3x3 conv (one filter per channel), then a pointwise 1x1 conv, each with
    batch norm and ReLU6."""
    return [
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(),
    ]  # fmt: skip


class SeparableCNN(nn.Module):
    """A stem conv and two depthwise-separable blocks (the second at stride 2), global average pooling and a
    linear head: a MobileNet in miniature, for 1x8x8 digits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            *_dw_separable(16, 32, 1), *_dw_separable(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvForecaster(nn.Module):
    """A forecaster without recurrence: two 1-D convolutions over the window (width 5, the second dilated 2x) with
    GELU, then a linear head over every position."""

    def __init__(self, length: int, channels: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), nn.GELU(),
            nn.Conv1d(channels, channels, 5, padding=4, dilation=2), nn.GELU(), nn.Flatten(),
            nn.Linear(channels * length, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(1, 2))


class PairScorer(nn.Module):
    """One MLP scores each item of a pair; the logits are (second's score, first's score), so the class is which
    one wins, as a ranking model's pairwise comparison."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.score = mlp(features, 1, hidden=64, depth=2)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        s = self.score(pair).squeeze(-1)  # (B, 2): first, second
        return s.flip(-1)


class MarginRanking(nn.Module):
    """The hinge ranking loss (nn.MarginRankingLoss, margin 1) on a pair's two scores: zero once the winner
    leads by the margin, linear below it."""

    def __init__(self) -> None:
        super().__init__()
        self.loss = nn.MarginRankingLoss(margin=1.0)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # logits are (second, first): the first wins (target 1) when its score leads
        return self.loss(logits[:, 1], logits[:, 0], 2.0 * target.float() - 1.0)


class TokenCrossEntropy(nn.Module):
    """Cross-entropy over every token: logits (B, L, V), targets (B, L)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def he_mlp(in_features: int, out_features: int, hidden: int, depth: int) -> nn.Sequential:
    """`mlp` with He (Kaiming normal) weights and zero biases: the init that keeps a deep plain ReLU stack's signal
    at scale (torch's default shrinks it layer by layer, and 8 layers of it learn nothing at any LR)."""
    model = mlp(in_features, out_features, hidden=hidden, depth=depth)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return model


class MixerBlock(nn.Module):
    """An MLP-Mixer block: an MLP across the patches (token mixing), then one across the channels, each after a
    LayerNorm and added back: attention's role played by a plain MLP over the token axis."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tokens = nn.Sequential(nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens))
        self.channels = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.tokens(self.norm1(h).transpose(1, 2)).transpose(1, 2)
        return h + self.channels(self.norm2(h))


class Mixer(nn.Module):
    """An MLP-Mixer for 1x8x8 images: 2x2 patches embedded linearly, two Mixer blocks, LayerNorm, the mean over
    patches and a linear head."""

    def __init__(self, num_classes: int, patch: int = 2, dim: int = 32, blocks: int = 2) -> None:
        super().__init__()
        self.patch = patch
        tokens = (8 // patch) ** 2
        self.embed = nn.Linear(patch * patch, dim)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, dim) for _ in range(blocks)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        patches = x.unfold(2, p, p).unfold(3, p, p).reshape(x.shape[0], -1, p * p)
        return self.head(self.norm(self.blocks(self.embed(patches))).mean(1))


QUANTILES = (0.5, 0.1, 0.9)


class Pinball(nn.Module):
    """The pinball (quantile) loss of one output per quantile in QUANTILES, averaged; the median comes first, so
    the val MSE reads the median's prediction."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        q = torch.tensor(QUANTILES, dtype=pred.dtype, device=pred.device)
        error = target - pred  # (B, 1) against (B, len(QUANTILES))
        return torch.maximum(q * error, (q - 1) * error).mean()


class DropoutCNN(nn.Module):
    """Two conv layers with LeakyReLU and channel dropout (Dropout2d 0.2), no normalization, a linear head."""

    def __init__(self, num_classes: int, channels: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.LeakyReLU(0.1), nn.Dropout2d(0.2), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.LeakyReLU(0.1), nn.Dropout2d(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * channels, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TextCNN(nn.Module):
    """Word embeddings, one 1-D convolution over word trigrams, ReLU, the max over the document and a linear head:
    a Kim-style text classifier (a word order model, where the EmbeddingBag averages)."""

    def __init__(self, vocab: int, out: int, dim: int = 32, filters: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, filters, 3)
        self.head = nn.Linear(filters, out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(self.embed(tokens).transpose(1, 2)))
        return self.head(h.amax(-1))


class RMSNorm(nn.Module):
    """Scale by the root mean square (no centering, no bias), as in LLaMA-style models (nn.RMSNorm is torch 2.4+)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.weight * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)


class SwiGLUBlock(nn.Module):
    """A pre-norm decoder block: RMSNorm, causal self-attention, RMSNorm, a SwiGLU feed-forward (silu(x W1) * x W2,
    then W3), each added back."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, bias=False, batch_first=True)
        self.gate, self.up = nn.Linear(dim, 2 * dim, bias=False), nn.Linear(dim, 2 * dim, bias=False)
        self.down = nn.Linear(2 * dim, dim, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(h)
        h = h + self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]
        x = self.norm2(h)
        return h + self.down(nn.functional.silu(self.gate(x)) * self.up(x))


class SwiGLULM(nn.Module):
    """A small LLaMA-style causal language model: embeddings and learned positions, SwiGLU blocks with RMSNorm, a
    final RMSNorm and a per-token head."""

    def __init__(self, vocab: int, length: int, dim: int = 48, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, length, dim) / math.sqrt(dim))
        self.blocks = nn.ModuleList(SwiGLUBlock(dim, heads) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        mask = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), 1)
        h = self.embed(tokens) + self.pos[:, :length]
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.norm(h))


class PixelCrossEntropy(nn.Module):
    """Cross-entropy over every pixel of channels-last logits (B, H, W, classes) against labels (B, H, W)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten())


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class TinyUNet(nn.Module):
    """A U-Net in miniature for SEG_SIZE images: two poolings down, two transposed convolutions up, each level's
    features joined to the upsampled ones (skip connections), batch norm, a 1x1 head. Logits come channels last,
    (B, H, W, classes), so the bench's argmax over the last axis reads each pixel's class."""

    def __init__(self, classes: int = SEG_CLASSES, channels: int = 16) -> None:
        super().__init__()
        c = channels
        self.enc1, self.enc2, self.bottom = _conv_bn(1, c), _conv_bn(c, 2 * c), _conv_bn(2 * c, 4 * c)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2), _conv_bn(4 * c, 2 * c)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2), _conv_bn(2 * c, c)
        self.head = nn.Conv2d(c, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        b = self.bottom(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1).permute(0, 2, 3, 1)


class LoRAConv(nn.Module):
    """A frozen convolution plus a trained low-rank update: conv(x) + up(down(x)), `down` a `rank`-channel conv of
    the same kernel, `up` a 1x1 conv that starts at zero, so training starts from the pretrained body exactly."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        self.conv = conv.requires_grad_(False)
        self.down = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, padding=conv.padding, bias=False)
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.up(self.down(x))


class LoRAFinetune(nn.Module):
    """The pretrained digits-0-4 body (`finetune_model`) with its own weights frozen (batch norm's affine ones too;
    its statistics still follow the data in training mode), LoRA adapters of rank `rank` on both convolutions and
    a new head: parameter-efficient fine-tuning, where only the adapters and the head learn."""

    def __init__(self, rank: int = 4) -> None:
        super().__init__()
        self.model = finetune_model()
        features = self.model.features.requires_grad_(False)
        for i, layer in enumerate(features):
            if isinstance(layer, nn.Conv2d):
                features[i] = LoRAConv(layer, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def deep_linear(in_features: int, out_features: int, hidden: int, depth: int) -> nn.Sequential:
    """`depth` hidden Linear layers and no nonlinearity: a linear map, factored. Its loss surface is not convex
    (saddles where the factors are small, as they start under torch's default init)."""
    widths = [in_features] + [hidden] * depth + [out_features]
    return nn.Sequential(*[nn.Linear(a, b) for a, b in itertools.pairwise(widths)])


def bias_free_mlp(in_features: int, out_features: int, hidden: int, depth: int = 2) -> nn.Sequential:
    """A ReLU MLP whose every parameter is a matrix: torch's Muon steps only 2-D parameters."""
    widths = [in_features] + [hidden] * depth
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b, bias=False), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out_features, bias=False))


class WaveCNN(nn.Module):
    """Three 1-D convolutions (16, 32, 32 channels; kernels 7, 5, 3) with batch norm and ReLU, two max-pools, the
    mean over time and a linear head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, 16, 7, padding=3), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SkipGram(nn.Module):
    """word2vec's skip-gram with a full softmax: a word's embedding (dim 64), then a linear map to every word's
    logit. Bilinear, no hidden nonlinearity; each batch moves only the rows of the words in it."""

    def __init__(self, vocab: int = SKIPGRAM_VOCAB, dim: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(tokens))


class PostNormLM(TinyTransformer):
    """TinyTransformer as a causal language model, but post-norm (LayerNorm after each residual add, as in the
    original Transformer): the arrangement known to need a small LR or a warm-up at the start."""

    def __init__(self, vocab: int, length: int, dim: int = 64, heads: int = 4, layers: int = 2) -> None:
        # named, not super(): the cache key follows the names a class's code uses, and so reaches the base
        TinyTransformer.__init__(self, vocab, length, dim, heads, layers, causal=True)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class HuggingFaceLogits(nn.Module):
    """A Hugging Face model as the bench's loop calls every model: token ids in, logits out (no labels are passed,
    so the model computes no loss of its own; the task's loss is the one every method trains on)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens).logits


# The Hugging Face models' size: the bench's own Transformers' (two layers of width 64, four heads), so that what
# differs is how transformers builds them: its initialization (normal, std 0.02), dropout 0.1 everywhere, GELU.
HF_DIM, HF_LAYERS, HF_HEADS = 64, 2, 4


def hf_gpt2(vocab: int, length: int) -> HuggingFaceLogits:
    """GPT-2 (pre-norm, causal) built from a config, nothing downloaded."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab, n_positions=length, n_embd=HF_DIM, n_layer=HF_LAYERS, n_head=HF_HEADS,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    return HuggingFaceLogits(GPT2LMHeadModel(config))


def hf_bert(vocab: int, length: int, labels: int, *, per_token: bool) -> HuggingFaceLogits:
    """BERT (post-norm, bidirectional) built from a config, nothing downloaded, with a head per sequence or per
    token. Its padding id is one past the data's tokens: BERT keeps the padding token's embedding at zero, and
    every token of these tasks is a real one."""
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    config = BertConfig(
        vocab_size=vocab + 1, pad_token_id=vocab, hidden_size=HF_DIM, num_hidden_layers=HF_LAYERS,
        num_attention_heads=HF_HEADS, intermediate_size=2 * HF_DIM, max_position_embeddings=length,
        num_labels=labels,
    )  # fmt: skip
    head = BertForTokenClassification if per_token else BertForSequenceClassification
    return HuggingFaceLogits(head(config))


class HuggingFaceImageLogits(HuggingFaceLogits):
    """HuggingFaceLogits for a vision model: images in (as `pixel_values`), logits out."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=images).logits


def hf_distilbert(vocab: int, length: int, labels: int) -> HuggingFaceLogits:
    """DistilBERT (post-norm, bidirectional, a pre-classifier layer and dropout 0.2 before its head) built from a
    config; padding id one past the data's tokens, as in hf_bert."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=vocab + 1, pad_token_id=vocab, dim=HF_DIM, n_layers=HF_LAYERS, n_heads=HF_HEADS,
        hidden_dim=2 * HF_DIM, max_position_embeddings=length, num_labels=labels,
    )  # fmt: skip
    return HuggingFaceLogits(DistilBertForSequenceClassification(config))


def hf_roberta(vocab: int, length: int, labels: int) -> HuggingFaceLogits:
    """RoBERTa (BERT's layers, positions counted from one past the padding id, a two-layer head) built from a
    config: its position table needs the padding id plus the length plus one rows."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=vocab + 1, pad_token_id=vocab, hidden_size=HF_DIM, num_hidden_layers=HF_LAYERS,
        num_attention_heads=HF_HEADS, intermediate_size=2 * HF_DIM, max_position_embeddings=vocab + length + 1,
        num_labels=labels,
    )  # fmt: skip
    return HuggingFaceLogits(RobertaForSequenceClassification(config))


def hf_llama(vocab: int, length: int) -> HuggingFaceLogits:
    """Llama (pre-norm with RMSNorm, SwiGLU, rotary positions, no dropout) built from a config; its SwiGLU width is
    8/3 of the model's, as Llama sizes it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab, hidden_size=HF_DIM, intermediate_size=8 * HF_DIM // 3, num_hidden_layers=HF_LAYERS,
        num_attention_heads=HF_HEADS, num_key_value_heads=HF_HEADS, max_position_embeddings=length,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    return HuggingFaceLogits(LlamaForCausalLM(config))


def hf_vit(size: int, patch: int, labels: int) -> HuggingFaceImageLogits:
    """ViT (pre-norm, a class token, dropout 0) on one-channel square images, built from a config."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=size, patch_size=patch, num_channels=1, hidden_size=HF_DIM, num_hidden_layers=HF_LAYERS,
        num_attention_heads=HF_HEADS, intermediate_size=2 * HF_DIM, num_labels=labels,
    )  # fmt: skip
    return HuggingFaceImageLogits(ViTForImageClassification(config))


class AffineCoupling(nn.Module):
    """One RealNVP coupling in 2-D: one coordinate shifted and scaled by an MLP of the other, the log-scale bounded
    by tanh (as RealNVP bounds it); returns the new points and the log-determinant of the map."""

    def __init__(self, flip: bool, hidden: int = 64) -> None:
        super().__init__()
        self.flip = flip
        self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep, move = (x[:, 1:], x[:, :1]) if self.flip else (x[:, :1], x[:, 1:])
        log_scale, shift = self.net(keep).chunk(2, dim=1)
        log_scale = torch.tanh(log_scale)
        move = move * log_scale.exp() + shift
        out = torch.cat([move, keep], 1) if self.flip else torch.cat([keep, move], 1)
        return out, log_scale.sum(1)


class CouplingFlow(nn.Module):
    """A normalizing flow on 2-D points: `layers` affine couplings, alternating which coordinate moves, onto a
    standard normal; returns log p(x) per sample."""

    def __init__(self, layers: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.couplings = nn.ModuleList(AffineCoupling(i % 2 == 1, hidden) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_det = torch.zeros(len(x))
        for coupling in self.couplings:
            x, step = coupling(x)
            log_det = log_det + step
        return -0.5 * (x**2).sum(1) - math.log(2 * math.pi) + log_det


class NegativeLogLikelihood(nn.Module):
    """The mean of -log p(x) over the batch, for a model that returns log p(x) itself (the targets are unused)."""

    def forward(self, log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -log_p.mean()


class MixtureNLL(nn.Module):
    """A mixture density network's loss: -log of a mixture of Gaussians (logits, means, log-sigmas in thirds of the
    output) at the target, averaged over the batch; the sigmas are exp(log-sigma), unclamped."""

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, mean, log_sigma = out.chunk(3, dim=1)
        # Unvalidated, so a blow-up is a NaN loss the training loop reads as divergence (with validation, torch
        # raises on NaN parameters; clrfind reads that as a non-finite loss too, but the bench's loop would stop).
        log_p = torch.distributions.Normal(mean, log_sigma.exp(), validate_args=False).log_prob(target)
        return -torch.logsumexp(torch.log_softmax(logits, dim=1) + log_p, dim=1).mean()


class CTCLoss(nn.Module):
    """torch's CTC loss on a (batch, frames, classes) output and (batch, labels) targets of fixed lengths, blank 0:
    the mean over sequences of the loss divided by the target length, infinities kept (torch's defaults)."""

    def __init__(self) -> None:
        super().__init__()
        self.ctc = nn.CTCLoss(blank=0)

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = out.log_softmax(-1).transpose(0, 1)  # (frames, batch, classes)
        batch, frames = out.shape[0], out.shape[1]
        input_lengths = torch.full((batch,), frames, dtype=torch.long)
        target_lengths = torch.full((batch,), target.shape[1], dtype=torch.long)
        return self.ctc(log_probs, target, input_lengths, target_lengths)


class FrameTagger(nn.Module):
    """A bidirectional GRU over feature frames with a per-frame head (class scores, blank included): the acoustic
    model of a CTC recognizer."""

    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(features, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(frames)
        return self.head(h)


class TwoHeads(nn.Module):
    """A shared ReLU body (20-128-64) with a class head (5 scores) and a regression head (1 value), their outputs
    side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.classes = nn.Linear(64, 5)
        self.value = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return torch.cat([self.classes(h), self.value(h)], 1)


class TwoTaskLoss(nn.Module):
    """The multi-task loss: cross-entropy of the class head plus the squared error of the value head, unweighted."""

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        classes = nn.functional.cross_entropy(out[:, :5], target[:, 0].long())
        return classes + nn.functional.mse_loss(out[:, 5], target[:, 1])


class CoxLoss(nn.Module):
    """The Cox model's negative partial log-likelihood over the batch (Breslow, no tie correction): for each event,
    its risk score against the log-sum-exp of the scores of everyone still at risk at its time; the mean over the
    batch's events (0 when it has none). The risk set is the batch's, as in every minibatch Cox model."""

    def forward(self, risk: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        order = torch.argsort(target[:, 0], descending=True)
        risk, event = risk[order, 0], target[order, 1]
        at_risk = torch.logcumsumexp(risk, dim=0)  # everyone with a time at or after each one's
        return -((risk - at_risk) * event).sum() / event.sum().clamp(min=1.0)


class TwoViews(nn.Module):
    """A contrastive encoder (MLP 64-128-128-32, ReLU) applied to two augmented views of each sample (Gaussian noise
    of std 0.5 and a random 25% of the features zeroed, drawn afresh): (batch, 2, 32) unit-length embeddings. In
    eval mode the views are drawn from a fixed generator, so the val loss is one number."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = mlp_of(64, 32, 128, 2, lambda width: [nn.ReLU()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        generator = None if self.training else torch.Generator().manual_seed(0)
        views = []
        for _ in range(2):
            noise = torch.randn(x.shape, generator=generator)
            keep = (torch.rand(x.shape, generator=generator) >= 0.25).float()
            views.append(self.encoder((x + 0.5 * noise) * keep))
        return nn.functional.normalize(torch.stack(views, 1), dim=-1)


class InfoNCELoss(nn.Module):
    """SimCLR's NT-Xent loss at temperature 0.2: each of the 2N views must pick its sample's other view among the
    2N - 1 others by cosine similarity; the mean cross-entropy (the targets are unused)."""

    def forward(self, views: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = views.shape[0]
        z = views.transpose(0, 1).reshape(2 * n, -1)  # the first views, then the second ones
        logits = z @ z.T / 0.2
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        other = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return nn.functional.cross_entropy(logits, other)


class TripletLoss(nn.Module):
    """torch's triplet margin loss (margin 1, Euclidean) on a (batch, 3, dim) output; the targets are unused."""

    def __init__(self) -> None:
        super().__init__()
        self.triplet = nn.TripletMarginLoss(margin=1.0)

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.triplet(out[:, 0], out[:, 1], out[:, 2])


class NoisePredictor(nn.Module):
    """A DDPM's noise predictor for flattened 8x8 images: the noised image and sinusoidal features of its step
    (the input's last column) through an MLP of three SiLU layers of 256, out the noise."""

    def __init__(self, pixels: int = 64, width: int = 256, frequencies: int = 8) -> None:
        super().__init__()
        self.register_buffer("rates", torch.exp(torch.linspace(0.0, math.log(100.0), frequencies)))
        self.net = nn.Sequential(
            nn.Linear(pixels + 2 * frequencies, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(), nn.Linear(width, pixels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = x[:, -1:] * self.rates
        return self.net(torch.cat([x[:, :-1], angle.sin(), angle.cos()], 1))


class Seq2SeqTransformer(nn.Module):
    """torch's encoder-decoder `nn.Transformer` (post-norm, dropout 0.1) with learned positions, trained with
    teacher forcing: the input is the source's `length` tokens and then the decoder's, the decoder masked causally;
    out the logits of each target token."""

    def __init__(self, vocab: int, length: int, dim: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.length = length
        self.source = nn.Embedding(vocab, dim)
        self.target = nn.Embedding(vocab + 1, dim)  # and the start token
        self.pos = nn.Parameter(torch.randn(2, length, dim) / math.sqrt(dim))
        self.transformer = nn.Transformer(
            dim, heads, layers, layers, dim_feedforward=2 * dim, dropout=0.1, batch_first=True
        )
        self.head = nn.Linear(dim, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source, target = x[:, : self.length], x[:, self.length :]
        mask = nn.Transformer.generate_square_subsequent_mask(target.shape[1])
        h = self.transformer(
            self.source(source) + self.pos[0],
            self.target(target) + self.pos[1],
            tgt_mask=mask,
            tgt_is_causal=True,
        )
        return self.head(h)


class TiedLSTM(nn.Module):
    """The model of torch's word language model example: an embedding, a 2-layer LSTM with dropout around it and
    between its layers, and a decoder sharing the embedding's weight (tied); embedding uniform in +-0.1, decoder
    bias zero."""

    def __init__(self, vocab: int, dim: int = 128, layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(dim, vocab)
        self.head.weight = self.embed.weight
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.drop(self.embed(tokens)))
        return self.head(self.drop(h))


class SparseFactorization(Factorization):
    """`Factorization` with sparse embedding gradients (only the batch's rows), as torch.optim.SparseAdam needs."""

    def __init__(self) -> None:
        super().__init__()
        for table in (self.users, self.items, self.user_bias, self.item_bias):
            table.sparse = True


# -- the suite ---------------------------------------------------------------------------------------------------

SGD, ADAM, ADAMW, RMSPROP = "torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.RMSprop"
NADAM, ADAGRAD, ADAMAX = "torch.optim.NAdam", "torch.optim.Adagrad", "torch.optim.Adamax"
ADADELTA, RADAM = "torch.optim.Adadelta", "torch.optim.RAdam"
ADAFACTOR, ASGD, MUON = "torch.optim.Adafactor", "torch.optim.ASGD", "torch.optim.Muon"
SPARSE_ADAM = "torch.optim.SparseAdam"
NESTEROV = {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}


# `classes_task`'s optimizers: (the short name its task names end in, how its description names it).
_CLASSES_OPTIMIZERS = {SGD: ("sgd", "SGD momentum 0.9"), ADAM: ("adam", "Adam"), ADAMW: ("adamw", "AdamW")}


def classes_task(
    optimizer: str, *, batch_size: int = 128, width: int = 128, epochs: int = 4, weight_decay: float = 0.0
) -> Task:
    """The twenty-seventh to thirtieth batches: one MLP 24-width-width-6 on `six_class_data`, under SGD momentum 0.9,
    Adam or AdamW, named after what the batch varies from batch 128, width 128, four epochs and no weight decay
    (`classes-batch32-sgd`, `classes-width16-adam`, `classes-epochs16-sgd`, `classes-wd0.1-adamw`)."""
    kind, label = _CLASSES_OPTIMIZERS[optimizer]
    if weight_decay:
        varied = f"wd{weight_decay:g}"
    elif width != 128:
        varied = f"width{width}"
    elif epochs != 4:
        varied = f"epochs{epochs}"
    else:
        varied = f"batch{batch_size}"
    steps = epochs * (SIX_CLASS_TRAIN // batch_size)
    kwargs: dict[str, Any] = {"momentum": 0.9} if kind == "sgd" else {}
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    return Task(
        name=f"classes-{varied}-{kind}",
        description=f"make_classification (24 features, 6 classes, {SIX_CLASS_TRAIN // 1000}k train), MLP "
        f"24-{width}-{width}-6, {label}{f' (wd {weight_decay:g})' if weight_decay else ''}, batch {batch_size}, "
        f"{epochs} epoch{'s' if epochs > 1 else ''} ({steps} steps)",
        half="fresh",
        optimizer=optimizer,
        optimizer_kwargs=kwargs,
        batch_size=batch_size,
        epochs=epochs,
        metric="accuracy",
        make_data=six_class_data,
        make_model=lambda: mlp(24, 6, hidden=width),
    )


def by_name(tasks: list[Task]) -> dict[str, Task]:
    """{name: task}, refusing a name given twice: a dict built from the list would keep the later task silently."""
    named: dict[str, Task] = {}
    for task in tasks:
        if task.name in named:
            raise ValueError(f"two tasks are named {task.name!r}")
        named[task.name] = task
    return named


TASKS: dict[str, Task] = by_name(
    [
        # -- dev: the seven tasks clrfind's rules were fitted to ----------------------------------------------
        Task(
            name="moons",
            description="make_moons (noise 0.25), MLP 2-64-64-2, plain SGD",
            half="dev",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=moons_data,
            make_model=lambda: mlp(2, 2),
        ),
        Task(
            name="circles",
            description="make_circles (noise 0.06), MLP 2-64-64-2, Adam",
            half="dev",
            optimizer=ADAM,
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
            half="dev",
            optimizer=SGD,
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
            half="dev",
            optimizer=ADAMW,
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
            half="dev",
            optimizer=SGD,
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
            half="dev",
            optimizer=SGD,
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
            half="dev",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=64,
            epochs=2,
            metric="accuracy",
            make_data=reverse_data,
            make_model=TinyTransformer,
            make_loss=TokenCrossEntropy,
        ),
        # -- dev: new ------------------------------------------------------------------------------------------
        Task(
            name="clusters",
            description="easy: 4 well separated Gaussian clusters (make_blobs, 8 features), MLP 8-64-64-4, "
            "SGD momentum 0.9",
            half="dev",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=5,
            metric="accuracy",
            make_data=clusters_data,
            make_model=lambda: mlp(8, 4),
        ),
        Task(
            name="shapes-resnet",
            description="16x16 shape images, residual CNN with batch norm (pooled stem, 8/16 channels), SGD "
            "Nesterov 0.9, wd 5e-4, batch 256 (8 steps an epoch)",
            half="dev",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=256,
            epochs=25,
            metric="accuracy",
            make_data=shapes_data,
            make_model=lambda: SmallResNet(4, pool_stem=True),
        ),
        Task(
            name="noisy-classification",
            description="make_classification as `classification` with 30% of the training labels wrong "
            "(val clean), MLP 20-64-64-4, SGD momentum 0.9",
            half="dev",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=64,
            epochs=8,
            metric="accuracy",
            make_data=lambda: classification_data(label_noise=0.3),
            make_model=lambda: mlp(20, 4),
        ),
        Task(
            name="char-gru",
            description=f"character language model on sklearn's dataset descriptions ({CHAR_LEN}-char windows), "
            "GRU (embed 32, hidden 96), AdamW (wd 0.01)",
            half="dev",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=4,
            metric="nats",
            make_data=descr_chars_data,
            make_model=lambda: RecurrentNet(nn.GRU, len(CHARS), len(CHARS), 32, 96, per_token=True),
            make_loss=TokenCrossEntropy,
        ),
        # -- heldout: new tasks only ---------------------------------------------------------------------------
        Task(
            name="digits-resnet",
            description="load_digits 8x8 images, residual CNN with batch norm (8/16 channels), SGD Nesterov "
            "0.9, wd 5e-4, batch 256 (4 steps an epoch)",
            half="heldout",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=256,
            epochs=40,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: SmallResNet(10),
        ),
        Task(
            name="digits-noisy",
            description="load_digits (64 features) with 30% of the training labels wrong (val clean), "
            "MLP 64-128-128-10, SGD momentum 0.9",
            half="heldout",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=10,
            metric="accuracy",
            make_data=lambda: digits_data(label_noise=0.3),
            make_model=lambda: mlp(64, 10, hidden=128),
        ),
        Task(
            name="char-transformer",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), causal "
            "2-layer Transformer (dim 48, 4 heads), AdamW (wd 0.1)",
            half="heldout",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.1},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: TinyTransformer(len(CHARS), CHAR_LEN, dim=48, heads=4, causal=True),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="seq-lstm",
            description=f"count the 0s in a random {COUNT_LEN}-token sequence ({COUNT_CLASSES} classes), LSTM "
            "(hidden 64) classifier, RMSprop",
            half="heldout",
            optimizer=RMSPROP,
            optimizer_kwargs={},
            batch_size=64,
            epochs=5,
            metric="accuracy",
            make_data=count_data,
            make_model=lambda: RecurrentNet(nn.LSTM, COUNT_VOCAB, COUNT_CLASSES, 16, 64, per_token=False),
        ),
        Task(
            name="diabetes-adam",
            description="load_diabetes regression (standardized target, 300 train), MLP 10-64-64-1, Adam",
            half="heldout",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=16,
            epochs=20,
            metric="mse",
            make_data=diabetes_data,
            make_model=lambda: mlp(10, 1),
            make_loss=nn.MSELoss,
        ),
        Task(
            name="finetune",
            description=f"fine-tune: CNN body pretrained on digits 0-4, new head, {FINETUNE_PER_CLASS} images per "
            "class of digits 5-9, SGD momentum 0.9, wd 5e-4",
            half="heldout",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9, "weight_decay": 5e-4},
            batch_size=10,
            epochs=15,
            metric="accuracy",
            make_data=finetune_data,
            make_model=finetune_model,
            prepare=pretrained_features,
        ),
        Task(
            name="wine-easy",
            description="easy: load_wine (120 train), MLP 13-32-32-3, SGD Nesterov 0.9, wd 5e-4, batch 8",
            half="heldout",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=8,
            epochs=10,
            metric="accuracy",
            make_data=wine_data,
            make_model=lambda: mlp(13, 3, hidden=32),
        ),
        Task(
            name="cancer-adam",
            description="easy: load_breast_cancer (400 train), MLP 30-32-32-2, Adam",
            half="heldout",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=10,
            metric="accuracy",
            make_data=cancer_data,
            make_model=lambda: mlp(30, 2, hidden=32),
        ),
        Task(
            name="digits-1epoch",
            description="short budget: load_digits (64 features), MLP 64-128-128-10, plain SGD, batch 16, "
            "one epoch",
            half="heldout",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=16,
            epochs=1,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: mlp(64, 10, hidden=128),
        ),
        Task(
            name="large-batch",
            description="make_classification (40 features, 8 classes, 20k train), MLP 40-128-128-8, AdamW "
            "(wd 0.05), batch 512, 30 epochs",
            half="heldout",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.05},
            batch_size=512,
            epochs=30,
            metric="accuracy",
            make_data=large_data,
            make_model=lambda: mlp(40, 8, hidden=128),
        ),
        Task(
            name="hastie-rmsprop",
            description="make_hastie_10_2 (binary, 10 features), MLP 10-64-64-2, RMSprop",
            half="heldout",
            optimizer=RMSPROP,
            optimizer_kwargs={},
            batch_size=64,
            epochs=8,
            metric="accuracy",
            make_data=hastie_data,
            make_model=lambda: mlp(10, 2),
        ),
        # -- fresh: written after the first round's rules were fixed; first scored with them ---------------------
        Task(
            name="nadam-mlp",
            description="make_classification (16 features, 3 classes, 3 clusters each, 2% flipped labels), MLP "
            "16-64-64-3, NAdam",
            half="fresh",
            optimizer=NADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=nadam_data,
            make_model=lambda: mlp(16, 3),
        ),
        Task(
            name="friedman3-adagrad",
            description="make_friedman3 regression (standardized target), MLP 4-64-64-1, Adagrad",
            half="fresh",
            optimizer=ADAGRAD,
            optimizer_kwargs={},
            batch_size=64,
            epochs=10,
            metric="mse",
            make_data=friedman3_data,
            make_model=lambda: mlp(4, 1),
            make_loss=nn.MSELoss,
        ),
        Task(
            name="digits-plaincnn",
            description="load_digits 8x8 images, CNN without batch norm (16/32 channels), plain SGD, wd 1e-4",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"weight_decay": 1e-4},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: PlainCNN(10),
        ),
        Task(
            name="mode-gru",
            description=f"the most frequent of {MODE_VOCAB} tokens in a random {MODE_LEN}-token sequence, GRU "
            "(hidden 48) classifier, Adam",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=2,
            metric="accuracy",
            make_data=mode_data,
            make_model=lambda: RecurrentNet(nn.GRU, MODE_VOCAB, MODE_VOCAB, 16, 48, per_token=False),
        ),
        Task(
            name="reverse-sgd",
            description=f"reverse a random {SEQ_LEN}-token sequence, 2-layer Transformer encoder (dim 32), SGD "
            "momentum 0.9",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=2,
            metric="accuracy",
            make_data=reverse_data,
            make_model=lambda: TinyTransformer(),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="quantiles-batch4",
            description="make_gaussian_quantiles (3 nested shells in 4 dimensions, 600 train), MLP 4-64-64-3, "
            "SGD momentum 0.9, batch 4",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=4,
            epochs=2,
            metric="accuracy",
            make_data=quantiles_data,
            make_model=lambda: mlp(4, 3),
        ),
        Task(
            name="digits-deep-adamax",
            description="load_digits (64 features), 6-layer MLP 64-64x6-10 without normalization, Adamax, "
            "batch 64",
            half="fresh",
            optimizer=ADAMAX,
            optimizer_kwargs={},
            batch_size=64,
            epochs=12,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: mlp(64, 10, depth=6),
        ),
        # -- fresh, second batch: written after the knee (3202285), before any later rule; first scored with it --
        Task(
            name="digits-autoencoder",
            description="load_digits (64 standardized features) reconstructed through an 8-unit bottleneck, MLP "
            "64-32-8-32-64, MSE, SGD momentum 0.9",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=8,
            metric="mse",
            make_data=digits_autoencoder_data,
            make_model=lambda: autoencoder(64, 8),
            make_loss=nn.MSELoss,
        ),
        Task(
            name="blobs-adadelta",
            description="make_classification (20 features, 4 classes), MLP 20-64-64-4, Adadelta (its default LR, "
            "1.0, is the end of clrfind's default range)",
            half="fresh",
            optimizer=ADADELTA,
            optimizer_kwargs={},
            batch_size=32,
            epochs=4,
            metric="accuracy",
            make_data=blobs4_data,
            make_model=lambda: mlp(20, 4),
            grid=(1e-3, 30.0),
        ),
        Task(
            name="digits-radam-cnn",
            description="load_digits 8x8 images, CNN with batch norm (16/32 channels), RAdam, batch 64",
            half="fresh",
            optimizer=RADAM,
            optimizer_kwargs={},
            batch_size=64,
            epochs=6,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: SmallCNN(10),
        ),
        Task(
            name="bn-mlp-sgd",
            description="make_classification (24 features, 5 classes), MLP 24-128-128-5 with batch norm, plain SGD "
            "(no momentum), batch 128",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=128,
            epochs=20,
            metric="accuracy",
            make_data=five_class_data,
            make_model=lambda: mlp_of(24, 5, 128, 2, lambda width: [nn.BatchNorm1d(width), nn.ReLU()]),
        ),
        Task(
            name="spirals-tanh",
            description="two noisy spirals (1000 train), 6-layer tanh MLP 2-32x6-2, SGD Nesterov 0.9, wd 5e-4, "
            "batch 16",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=16,
            epochs=4,
            metric="accuracy",
            make_data=spirals_data,
            make_model=lambda: mlp_of(2, 2, 32, 6, lambda width: [nn.Tanh()]),
        ),
        # -- fresh, third batch: written with the self-check's search below a level curve (the rules of 8f3d497
        # and after), first scored with 8f3d497 --
        Task(
            name="digits-sigmoid-sgd",
            description="load_digits (64 features), 3-layer sigmoid MLP 64-64x3-10, SGD momentum 0.9, batch 32",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: mlp_of(64, 10, 64, 3, lambda width: [nn.Sigmoid()]),
        ),
        Task(
            name="count-gru-sgd",
            description=f"count the 0s in a random {COUNT_LEN}-token sequence ({COUNT_CLASSES} classes), GRU (hidden "
            "64) classifier, SGD momentum 0.9",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=3,
            metric="accuracy",
            make_data=count_data,
            make_model=lambda: RecurrentNet(nn.GRU, COUNT_VOCAB, COUNT_CLASSES, 16, 64, per_token=False),
        ),
        Task(
            name="count-conv-adamw",
            description=f"count the 0s in a random {COUNT_LEN}-token sequence, 1-D CNN (32 channels, dropout 0.3, "
            "max over positions), AdamW (wd 0.05), batch 64",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.05},
            batch_size=64,
            epochs=3,
            metric="accuracy",
            make_data=count_data,
            make_model=lambda: ConvSeq(COUNT_VOCAB, COUNT_CLASSES),
        ),
        # -- fresh, fourth batch: long budgets and kinds none of the others have, written and first scored with
        # cf81c80 --
        Task(
            name="digits-long-sgd",
            description="load_digits (64 features), MLP 64-128-128-10, SGD momentum 0.9, wd 5e-4, batch 32, 40 "
            "epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9, "weight_decay": 5e-4},
            batch_size=32,
            epochs=40,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: mlp(64, 10, 128),
        ),
        Task(
            name="friedman2-huber-adam",
            description="Friedman #2 regression, MLP 4-64-64-1 trained on a Huber loss, Adam with coupled L2 (wd "
            "1e-4), batch 32, 20 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={"weight_decay": 1e-4},
            batch_size=32,
            epochs=20,
            metric="mse",
            make_data=friedman2_data,
            make_model=lambda: mlp(4, 1),
            make_loss=nn.SmoothL1Loss,
        ),
        Task(
            name="five-class-ln-adamw",
            description="make_classification (24 features, 5 classes), MLP 24-128x4-5 with LayerNorm and GELU, "
            "AdamW (wd 0.01), batch 64, 40 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=64,
            epochs=40,
            metric="accuracy",
            make_data=five_class_data,
            make_model=lambda: mlp_of(24, 5, 128, 4, lambda width: [nn.LayerNorm(width), nn.GELU()]),
        ),
        Task(
            name="swissroll-sgd",
            description="swiss roll position regression, MLP 3-64x3-1, SGD momentum 0.9, batch 64, 50 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=64,
            epochs=50,
            metric="mse",
            make_data=swissroll_data,
            make_model=lambda: mlp(3, 1, depth=3),
            make_loss=nn.MSELoss,
        ),
        Task(
            name="digits-cnn-adam",
            description="load_digits as 8x8 images, CNN with batch norm, Adam, batch 32, 25 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=25,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: SmallCNN(10),
        ),
        Task(
            name="blobs-adam-1epoch",
            description="make_classification (20 features, 4 classes), MLP 20-64-64-4, Adam, batch 16, one epoch",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=16,
            epochs=1,
            metric="accuracy",
            make_data=blobs4_data,
            make_model=lambda: mlp(20, 4),
        ),
        # -- fresh, fifth batch: losses none of the others use (binary and multi-label BCE on logits, a Gaussian
        # NLL that goes negative, label smoothing), written and first scored with 770e54d --
        Task(
            name="cancer-bce-sgd",
            description="load_breast_cancer, MLP 30-64-64-1 on BCE with logits, SGD momentum 0.9, batch 16, 8 "
            "epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=16,
            epochs=8,
            metric="accuracy",
            make_data=cancer_labels_data,
            make_model=lambda: mlp(30, 1),
            make_loss=nn.BCEWithLogitsLoss,
        ),
        Task(
            name="multilabel-adam",
            description="make_multilabel_classification (20 features, 8 labels), MLP 20-64-64-8 on BCE with "
            "logits, Adam, batch 32, 6 epochs; metric: per-label val accuracy",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=multilabel_data,
            make_model=lambda: mlp(20, 8),
            make_loss=nn.BCEWithLogitsLoss,
        ),
        Task(
            name="gaussnll-adamw",
            description="heteroscedastic regression, MLP 4-64-64-2 as (mean, variance) on a Gaussian NLL (negative "
            "once fitted), AdamW (wd 0.01), batch 32, 10 epochs; metric: val MSE of the mean",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=10,
            metric="mse",
            make_data=heteroscedastic_data,
            make_model=lambda: mlp(4, 2),
            make_loss=GaussianHead,
        ),
        Task(
            name="digits-smooth-sgd",
            description="load_digits (64 features), MLP 64-128-128-10 on cross-entropy with label smoothing 0.1, "
            "SGD Nesterov momentum 0.9, wd 5e-4, batch 64, 15 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=64,
            epochs=15,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: mlp(64, 10, 128),
            make_loss=lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
        ),
        # sixth batch: noisy labels (the training labels only; val is clean), written before clrfind ran on them
        Task(
            name="digits-noisy-adamw",
            description="load_digits (64 features) with 30% of the training labels wrong, MLP 64-128-128-10, AdamW "
            "(wd 0.01), batch 32, 10 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=10,
            metric="accuracy",
            make_data=lambda: digits_data(label_noise=0.3),
            make_model=lambda: mlp(64, 10, hidden=128),
        ),
        Task(
            name="shapes-noisy-sgd",
            description="16x16 shape images with 25% of the training labels wrong, 2-block CNN with batch norm, SGD "
            "momentum 0.9, wd 5e-4, batch 64, 8 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9, "weight_decay": 5e-4},
            batch_size=64,
            epochs=8,
            metric="accuracy",
            make_data=noisy_shapes_data,
            make_model=SmallCNN,
        ),
        Task(
            name="hastie-noisy-sgd",
            description="make_hastie_10_2 (binary) with 20% of the training labels wrong, MLP 10-64-64-2, plain SGD, "
            "batch 32, 6 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=noisy_hastie_data,
            make_model=lambda: mlp(10, 2),
        ),
        Task(
            name="six-class-noisy-rmsprop",
            description="make_classification (16 features, 6 classes) with 40% of the training labels wrong, MLP "
            "16-64-64-6, RMSprop, batch 128, 12 epochs",
            half="fresh",
            optimizer=RMSPROP,
            optimizer_kwargs={},
            batch_size=128,
            epochs=12,
            metric="accuracy",
            make_data=lambda: noisy_classes_data(3500, 16, 6, label_noise=0.4, random_state=7),
            make_model=lambda: mlp(16, 6),
        ),
        Task(
            name="digits-noisy-long",
            description="load_digits (64 features) with 30% of the training labels wrong, MLP 64-128-128-10, SGD "
            "Nesterov 0.9, wd 5e-4, batch 32, 40 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=32,
            epochs=40,
            metric="accuracy",
            make_data=lambda: digits_data(label_noise=0.3),
            make_model=lambda: mlp(64, 10, hidden=128),
        ),
        # seventh batch: the sixth's failure (digits-noisy-long) on other data and another optimizer
        Task(
            name="six-class-memorize-sgd",
            description="make_classification (16 features, 6 classes), 600 training samples with 30% of the labels "
            "wrong, MLP 16-128-128-6, SGD momentum 0.9, batch 32, 60 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=60,
            metric="accuracy",
            make_data=lambda: noisy_classes_data(600, 16, 6, label_noise=0.3, random_state=11),
            make_model=lambda: mlp(16, 6, hidden=128),
        ),
        Task(
            name="eight-class-memorize-adam",
            description="make_classification (24 features, 8 classes), 800 training samples with 30% of the labels "
            "wrong, MLP 24-128-128-8, Adam, batch 32, 40 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=40,
            metric="accuracy",
            make_data=lambda: noisy_classes_data(800, 24, 8, label_noise=0.3, random_state=13),
            make_model=lambda: mlp(24, 8, hidden=128),
        ),
        # eighth batch: kinds of training none of the above has (batch norm at batch 8 under AdamW, an
        # EmbeddingBag text classifier, a Transformer classifier, an L1 loss, dropout with a large batch under
        # plain SGD), written and first scored with the rules as of d1f9285
        Task(
            name="digits-bncnn-batch8-adamw",
            description="load_digits 8x8 images, 2-block CNN with batch norm, AdamW (wd 0.01), batch 8 (batch norm "
            "statistics of 8 samples), 2 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=8,
            epochs=2,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: SmallCNN(num_classes=10),
        ),
        Task(
            name="bow-embbag-sgd",
            description=f"{BOW_CLASSES}-class documents of {BOW_LEN} words out of {BOW_VOCAB}, EmbeddingBag "
            "(mean, 32) + ReLU + linear head, SGD momentum 0.9, batch 32, 4 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=4,
            metric="accuracy",
            make_data=bag_of_words_data,
            make_model=lambda: BagOfWords(BOW_VOCAB, BOW_CLASSES),
        ),
        Task(
            name="count-transformer-adamw",
            description=f"count the 0s in a random {COUNT_LEN}-token sequence, 2-layer pre-norm Transformer "
            "encoder (dim 32) with mean pooling, AdamW (wd 0.1), batch 64, 4 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.1},
            batch_size=64,
            epochs=4,
            metric="accuracy",
            make_data=count_data,
            make_model=lambda: TransformerClassifier(COUNT_VOCAB, COUNT_LEN, COUNT_CLASSES),
        ),
        Task(
            name="friedman-l1-adamw",
            description="make_friedman1 (noise 1.0), MLP 10-64-64-1 trained on the L1 loss (gradients that do not "
            "shrink near the minimum), AdamW (wd 0.01), batch 32, 10 epochs; scored on val MSE",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=10,
            metric="mse",
            make_data=friedman_data,
            make_model=lambda: mlp(10, 1),
            make_loss=nn.L1Loss,
        ),
        Task(
            name="wide-dropout-sgd-batch512",
            description="make_classification (30 features, 6 classes, 20000 to train on), MLP 30-128-128-6 with "
            "dropout 0.3 after each hidden layer, plain SGD, batch 512, 20 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=512,
            epochs=20,
            metric="accuracy",
            make_data=wide_classes_data,
            make_model=lambda: mlp_of(30, 6, 128, 2, lambda w: [nn.ReLU(), nn.Dropout(0.3)]),
        ),
        # ninth batch: kinds of training none of the above has (raw unstandardized features, an unscaled
        # regression target, group norm, a linear model, a deep residual MLP without normalization), written and
        # first scored with the rules as of 14bfe31
        Task(
            name="cancer-raw-sgd",
            description="load_breast_cancer with raw, unstandardized features (0.001-4000), MLP 30-64-64-2, "
            "SGD momentum 0.9, batch 32, 15 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=15,
            metric="accuracy",
            make_data=raw_cancer_data,
            make_model=lambda: mlp(30, 2),
            # First scored on SGD's grid (1e-4..3), whose best point was its lowest: features of scale 4000 move
            # the stable LRs down by decades, so the grid spans 1e-6..3e-2 to hold the best one.
            grid=(1e-6, 3e-2),
        ),
        Task(
            name="diabetes-rawtarget-adam",
            description="load_diabetes with the raw target (mean 152, MSE of the mean ~5000), MLP 10-64-64-1, "
            "Adam, batch 16, 20 epochs; scored on val MSE in the target's units",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=16,
            epochs=20,
            metric="mse",
            make_data=diabetes_raw_target_data,
            make_model=lambda: mlp(10, 1),
            make_loss=nn.MSELoss,
            # The target's scale (a bias of 152 to learn) may put the best LR above the adaptive grid's 0.3.
            grid=(1e-4, 3.0),
        ),
        Task(
            name="digits-gncnn-sgd",
            description="load_digits 8x8 images, 2-block CNN with group norm (4 groups), SGD Nesterov 0.9, "
            "wd 5e-4, batch 32, 4 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=32,
            epochs=4,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: GroupNormCNN(num_classes=10),
        ),
        Task(
            name="digits-logreg-sgd",
            description="load_digits (64 standardized features), softmax regression (one linear layer: a convex "
            "loss), plain SGD, batch 64, 10 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=64,
            epochs=10,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: nn.Linear(64, 10),
        ),
        Task(
            name="deep-resmlp-adamw",
            description="make_classification (20 features, 5 classes), a 10-block residual MLP of width 64 without "
            "normalization, AdamW (wd 0.01), batch 64, 8 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=64,
            epochs=8,
            metric="accuracy",
            make_data=deep_classes_data,
            make_model=lambda: ResidualMLP(20, 5),
        ),
        # tenth batch: kinds of training none of the above has (Adafactor, SGD with momentum 0.99, a vision
        # Transformer, weights in bfloat16, fine-tuning under AdamW), written and first scored with the rules as of
        # d5bb89e
        Task(
            name="char-adafactor",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), causal "
            "2-layer Transformer (dim 48, 4 heads), torch's Adafactor (its defaults), batch 32, 2 epochs",
            half="fresh",
            optimizer=ADAFACTOR,
            optimizer_kwargs={},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: TinyTransformer(len(CHARS), CHAR_LEN, dim=48, heads=4, causal=True),
            make_loss=TokenCrossEntropy,
            # Adafactor's LR is a relative step (a fraction of each weight's RMS), capped by 1/sqrt(step): the
            # best one may sit above the adaptive grid's 0.3, and above ~1 only the cap acts.
            grid=(1e-4, 3.0),
        ),
        Task(
            name="blobs-momentum099-sgd",
            description="make_classification (20 features, 4 classes), MLP 20-64-64-4, SGD momentum 0.99 (an "
            "effective step 100x the LR), batch 32, 5 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.99},
            batch_size=32,
            epochs=5,
            metric="accuracy",
            make_data=blobs4_data,
            make_model=lambda: mlp(20, 4),
        ),
        Task(
            name="digits-vit-adamw",
            description="load_digits 8x8 images, a vision Transformer (2x2 patches, dim 32, 2 layers), AdamW "
            "(wd 0.05), batch 32, 8 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.05},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: PatchTransformer(num_classes=10),
        ),
        Task(
            name="digits-bf16-sgd",
            description="load_digits (64 standardized features), MLP 64-128-128-10 with its weights in bfloat16, "
            "SGD momentum 0.9, batch 32, 6 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: Bfloat16(mlp(64, 10, hidden=128)),
        ),
        Task(
            name="finetune-adamw",
            description=f"fine-tune: CNN body pretrained on digits 0-4, new head, {FINETUNE_PER_CLASS} images per "
            "class of digits 5-9, AdamW (wd 0.01), batch 10, 15 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=10,
            epochs=15,
            metric="accuracy",
            make_data=finetune_data,
            make_model=finetune_model,
            prepare=pretrained_features,
        ),
        # eleventh batch: written to test the tenth's one change (one cycle's momentum range moves with a momentum
        # above 0.9) on other momenta, models and data, and first scored with it, as of 13081ee
        Task(
            name="digits-cnn-nesterov098",
            description="load_digits 8x8 images, 2-block CNN with batch norm, SGD Nesterov momentum 0.98, wd 5e-4, "
            "batch 32, 6 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.98, "nesterov": True, "weight_decay": 5e-4},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: SmallCNN(num_classes=10),
        ),
        Task(
            name="friedman-momentum095-sgd",
            description="make_friedman1 regression (standardized target), MLP 10-64-64-1, SGD momentum 0.95, "
            "batch 32, 6 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.95},
            batch_size=32,
            epochs=6,
            metric="mse",
            make_data=friedman_data,
            make_model=lambda: mlp(10, 1),
            make_loss=nn.MSELoss,
        ),
        # twelfth batch: training the bench had not run (gradient clipping under plain SGD and under AdamW,
        # full-batch gradient descent, weight normalization, AMSGrad), written and first scored with the rules as
        # of 3f9e4d0
        Task(
            name="char-lstm-clip-sgd",
            description=f"character language model on sklearn's dataset descriptions ({CHAR_LEN}-char windows), "
            "LSTM (embed 32, hidden 128), plain SGD with gradients clipped to norm 0.25, batch 32, 4 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=4,
            metric="nats",
            make_data=descr_chars_data,
            make_model=lambda: RecurrentNet(nn.LSTM, len(CHARS), len(CHARS), 32, 128, per_token=True),
            make_loss=TokenCrossEntropy,
            clip_grad_norm=0.25,
            # a clipped step is at most lr * 0.25 long, so such language models train at LRs of 1-20 (torch's
            # word_language_model example: 20), above the SGD grid's 3
            grid=(1e-2, 100.0),
        ),
        Task(
            name="char-transformer-clip-adamw",
            description=f"character language model on sklearn's dataset descriptions ({CHAR_LEN}-char windows), "
            "causal 2-layer Transformer (dim 48, 4 heads), AdamW (betas 0.9/0.95, wd 0.1) with gradients clipped "
            "to norm 1, batch 32, 3 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"betas": (0.9, 0.95), "weight_decay": 0.1},
            batch_size=32,
            epochs=3,
            metric="nats",
            make_data=descr_chars_data,
            make_model=lambda: TinyTransformer(len(CHARS), CHAR_LEN, dim=48, heads=4, causal=True),
            make_loss=TokenCrossEntropy,
            clip_grad_norm=1.0,
        ),
        Task(
            name="cancer-fullbatch-sgd",
            description="load_breast_cancer (standardized), MLP 30-64-64-2, full-batch gradient descent (all 400 "
            "training samples a step) with momentum 0.9, 150 steps",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=400,
            epochs=150,
            metric="accuracy",
            make_data=cancer_data,
            make_model=lambda: mlp(30, 2),
        ),
        Task(
            name="digits-weightnorm-sgd",
            description="load_digits (64 features), MLP 64-128-128-10 with weight normalization on every layer, "
            "SGD momentum 0.9, batch 32, 6 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: each_linear(mlp(64, 10, hidden=128), nn.utils.parametrizations.weight_norm),
        ),
        Task(
            name="digits-plaincnn-amsgrad",
            description="load_digits 8x8 images, CNN without batch norm (16/32 channels), Adam with AMSGrad, "
            "batch 64, 8 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={"amsgrad": True},
            batch_size=64,
            epochs=8,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: PlainCNN(10),
        ),
        # thirteenth batch: written to test the one change the twelfth prompted (a peak the range's end capped is
        # checked again up to where a 10x wider test diverges) on other clipped training, and first scored with it
        Task(
            name="char-gru-clip-sgd",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), GRU (embed "
            "32, hidden 96), plain SGD with gradients clipped to norm 1, batch 32, 2 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: RecurrentNet(nn.GRU, len(CHARS), len(CHARS), 32, 96, per_token=True),
            make_loss=TokenCrossEntropy,
            clip_grad_norm=1.0,
            grid=(1e-2, 100.0),
        ),
        Task(
            name="mode-lstm-clip-sgd",
            description=f"the most frequent of {MODE_VOCAB} tokens in a random {MODE_LEN}-token sequence, LSTM "
            "(hidden 48) classifier, SGD momentum 0.9 with gradients clipped to norm 0.5, batch 32, 4 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=4,
            metric="accuracy",
            make_data=mode_data,
            make_model=lambda: RecurrentNet(nn.LSTM, MODE_VOCAB, MODE_VOCAB, 16, 48, per_token=False),
            clip_grad_norm=0.5,
            grid=(1e-3, 30.0),
        ),
        Task(
            name="friedman-clip-sgd",
            description="make_friedman1 regression (standardized target), MLP 10-64-64-1, SGD momentum 0.9 with "
            "gradients clipped to norm 1, batch 32, 6 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=6,
            metric="mse",
            make_data=friedman_data,
            make_model=lambda: mlp(10, 1),
            make_loss=nn.MSELoss,
            clip_grad_norm=1.0,
            grid=(1e-3, 30.0),
        ),
        # fourteenth batch: training the bench had not run (a recurrent regression, matrix factorization, a
        # convolutional denoising autoencoder, embeddings of tabular categories, a self-normalizing SELU network,
        # RMSprop with momentum), written and first scored with the rules as of 9963220
        Task(
            name="sines-gru-adam",
            description=f"forecast the next value of a noisy sum of two sines from its last {SINE_LEN}, GRU "
            "(hidden 32) regression, Adam, batch 32, 8 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=8,
            metric="mse",
            make_data=sines_data,
            make_model=SeqRegressor,
            make_loss=nn.MSELoss,
        ),
        Task(
            name="ratings-mf-sgd",
            description=f"matrix factorization of synthetic ratings ({USERS} users, {ITEMS} items, rank {RANK}, "
            "9000 observed), embeddings of 16 with biases, SGD momentum 0.9, wd 1e-4, batch 64, 4 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9, "weight_decay": 1e-4},
            batch_size=64,
            epochs=4,
            metric="mse",
            make_data=ratings_data,
            make_model=Factorization,
            make_loss=nn.MSELoss,
        ),
        Task(
            name="digits-denoise-adam",
            description="load_digits images with Gaussian noise in, clean images out, convolutional autoencoder "
            "(16/32 channels, a transposed conv back up), MSE, Adam, batch 32, 10 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=10,
            metric="mse",
            make_data=denoise_data,
            make_model=DenoisingConvAE,
            make_loss=nn.MSELoss,
        ),
        Task(
            name="tabular-embed-adamw",
            description=f"synthetic tabular data, {len(CARDINALITIES)} categorical columns "
            f"({'/'.join(map(str, CARDINALITIES))} categories) as embeddings and {NUMERIC} numeric ones, 3 "
            "classes, MLP with dropout 0.1, AdamW (wd 0.01), batch 128, 10 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=128,
            epochs=10,
            metric="accuracy",
            make_data=tabular_data,
            make_model=TabularNet,
        ),
        Task(
            name="digits-selu-sgd",
            description="load_digits (64 features), self-normalizing MLP 64-128x4-10 (SELU, LeCun-normal init, "
            "no normalization layer), plain SGD, batch 32, 8 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: selu_mlp(64, 10, hidden=128, depth=4),
        ),
        Task(
            name="shapes-rmsprop-momentum",
            description="16x16 shape images, 2-block CNN with batch norm, RMSprop with momentum 0.9, batch 64, "
            "6 epochs",
            half="fresh",
            optimizer=RMSPROP,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=64,
            epochs=6,
            metric="accuracy",
            make_data=shapes_data,
            make_model=lambda: SmallCNN(4),
        ),
        # fifteenth batch: training the bench had not run (a hinge loss, a Poisson regression through an
        # exponential output, a bidirectional sequence tagger, a set model with sum pooling, distillation onto soft
        # targets, a cosine classifier head), written and first scored with the rules as of c490b16
        Task(
            name="digits-hinge-sgd",
            description="load_digits (64 features), MLP 64-128-128-10 on the multi-class hinge loss "
            "(MultiMarginLoss: exactly zero once every margin is met), SGD momentum 0.9, batch 32, 6 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: mlp(64, 10, hidden=128),
            make_loss=nn.MultiMarginLoss,
        ),
        Task(
            name="counts-poisson-sgd",
            description="Poisson counts (rates 0.1-30) from 8 features, MLP 8-64-64-1 with an exponential output "
            "on the Poisson NLL, SGD momentum 0.9, batch 64, 8 epochs; scored on val MSE in counts",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=64,
            epochs=8,
            metric="mse",
            make_data=poisson_data,
            make_model=lambda: ExpRate(8),
            make_loss=lambda: nn.PoissonNLLLoss(log_input=False),
        ),
        Task(
            name="tagging-bilstm-adamw",
            description=f"tag every token of a random {TAG_LEN}-token sequence with (left + right neighbour) mod "
            f"{TAG_CLASSES}, bidirectional LSTM (hidden 32 each way) tagger, AdamW (wd 0.01), batch 32, 4 epochs; "
            "metric: per-token val accuracy",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=4,
            metric="accuracy",
            make_data=tagging_data,
            make_model=lambda: RecurrentNet(
                nn.LSTM, TAG_VOCAB, TAG_CLASSES, 16, 32, per_token=True, bidirectional=True
            ),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="sets-deepsets-sgd",
            description=f"sets of 3-{SET_MAX} points, label: the quadrant holding the most, DeepSets (per-point "
            "MLP, masked sum, MLP), plain SGD, batch 64, 10 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=64,
            epochs=10,
            metric="accuracy",
            make_data=sets_data,
            make_model=DeepSets,
        ),
        Task(
            name="digits-distill-adam",
            description="load_digits (64 features) distilled from a logistic-regression teacher's softened "
            "probabilities (temperature 2; cross-entropy on soft targets), MLP 64-64-64-10, Adam, batch 32, "
            "8 epochs; scored on val accuracy against the true labels",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=distill_data,
            make_model=lambda: mlp(64, 10),
        ),
        Task(
            name="classes-cosine-sgd",
            description="make_classification (20 features, 5 classes), MLP body 20-128-128 with a cosine head "
            "(scale 10, features and class weights normalized), SGD Nesterov 0.9, wd 5e-4, batch 64, 8 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=64,
            epochs=8,
            metric="accuracy",
            make_data=deep_classes_data,
            make_model=lambda: CosineClassifier(20, 5),
        ),
        # sixteenth batch: training the bench had not run (a coordinate network with sine activations, a graph
        # convolution network, averaged SGD, a loss summed over the batch, a mixture of experts, spectral
        # normalization), written and first scored with the rules as of 5d11e8a
        Task(
            name="image-siren-adam",
            description=f"fit a {IMAGE_SIDE}x{IMAGE_SIDE} grey photo (sklearn's china.jpg) from pixel coordinates, "
            "SIREN 2-128-128-128-1 (sine activations, w0 30), Adam, batch 256, 40 epochs; scored on val MSE at "
            "held-out pixels",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=256,
            epochs=40,
            metric="mse",
            make_data=image_data,
            make_model=Siren,
            make_loss=nn.MSELoss,
        ),
        Task(
            name="graph-gcn-adam",
            description=f"node classification on a {GRAPH_NODES}-node stochastic block model ({GRAPH_BLOCKS} "
            "communities, weak noisy features), two-layer GCN (hidden 32, dropout 0.5) over the whole graph at "
            "every step, Adam (L2 5e-4), batch 32 nodes, 20 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={"weight_decay": 5e-4},
            batch_size=32,
            epochs=20,
            metric="accuracy",
            make_data=graph_data,
            make_model=GCN,
        ),
        Task(
            name="classes-asgd",
            description="make_classification (24 features, 5 classes), MLP 24-64-64-5, averaged SGD (torch's "
            "ASGD, its defaults: no momentum, a step that decays with lambd 1e-4), batch 32, 6 epochs",
            half="fresh",
            optimizer=ASGD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=five_class_data,
            make_model=lambda: mlp(24, 5),
        ),
        Task(
            name="friedman-sumloss-sgd",
            description="make_friedman1 (10 features), MLP 10-64-64-1 on the squared error summed over the batch "
            "(MSELoss(reduction='sum'): gradients 64x the mean's), SGD momentum 0.9, batch 64, 8 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=64,
            epochs=8,
            metric="mse",
            make_data=friedman_data,
            make_model=lambda: mlp(10, 1),
            make_loss=lambda: nn.MSELoss(reduction="sum"),
        ),
        Task(
            name="classes-moe-adamw",
            description="make_classification (12 features, 4 classes of 3 clusters), a mixture of 4 experts "
            "(MLPs 12-32-4) under a softmax gate, AdamW (wd 0.01), batch 64, 6 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=64,
            epochs=6,
            metric="accuracy",
            make_data=experts_data,
            make_model=lambda: MixtureOfExperts(12, 4),
        ),
        Task(
            name="digits-spectral-sgd",
            description="load_digits (64 features), MLP 64-128-128-10 with spectral normalization on every "
            "Linear layer, SGD momentum 0.9, batch 32, 8 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: each_linear(mlp(64, 10, hidden=128), nn.utils.parametrizations.spectral_norm),
        ),
        # seventeenth batch: training the bench had not run (a variational autoencoder, a dilated causal
        # convolution language model, batch 1, data augmentation, a linear probe on a frozen body, heavy-tailed
        # target noise), written and first scored with the rules as of a6170e2
        Task(
            name="digits-vae-adam",
            description="load_digits (64 standardized features), variational autoencoder 64-64-(8+8) / 8-64-64 "
            "on the negative ELBO (squared error and KL), Adam, batch 32, 20 epochs; scored on the val MSE of the "
            "reconstruction from the posterior mean",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=20,
            metric="mse",
            make_data=digits_autoencoder_data,
            make_model=lambda: VAE(64),
            make_loss=NegativeELBO,
        ),
        Task(
            name="char-tcn-adam",
            description=f"character language model on sklearn's dataset descriptions ({CHAR_LEN}-char windows), "
            "dilated causal convolutions (embed 64, 4 residual layers, dilations 1-8, no normalization), Adam, "
            "batch 32, 4 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=4,
            metric="nats",
            make_data=descr_chars_data,
            make_model=lambda: CausalConvLM(len(CHARS)),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="blobs-batch1-sgd",
            description="make_classification (20 features, 4 classes), MLP 20-64-64-4, plain SGD on one sample "
            "a step (batch 1), 1 epoch of 2000 steps",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=1,
            epochs=1,
            metric="accuracy",
            make_data=blobs4_data,
            make_model=lambda: mlp(20, 4),
        ),
        Task(
            name="digits-augshift-sgd",
            description="load_digits 8x8 images shifted at random by up to 1 pixel in training (augmentation), "
            "CNN with batch norm (16/32 channels), SGD Nesterov 0.9, wd 5e-4, batch 64, 20 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=64,
            epochs=20,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: RandomShift(SmallCNN(num_classes=10)),
        ),
        Task(
            name="finetune-probe-sgd",
            description=f"linear probe: CNN body pretrained on digits 0-4, frozen (eval mode), a new head trained "
            f"on {FINETUNE_PER_CLASS} images per class of digits 5-9, SGD momentum 0.9, batch 10, 15 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=10,
            epochs=15,
            metric="accuracy",
            make_data=finetune_data,
            make_model=LinearProbe,
            prepare=pretrained_features,
        ),
        Task(
            name="friedman-outliers-sgd",
            description="make_friedman1 (10 features) with heavy-tailed training-target noise (Student's t, 1.5 "
            "degrees of freedom), MLP 10-64-64-1 on MSE, SGD momentum 0.9, batch 32, 10 epochs; scored against "
            "targets with Gaussian noise",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=10,
            metric="mse",
            make_data=outlier_friedman_data,
            make_model=lambda: mlp(10, 1),
            make_loss=nn.MSELoss,
        ),
        # eighteenth batch: training the bench had not run (a focal loss on imbalanced classes, a
        # depthwise-separable CNN under RMSprop with momentum, a convolutional forecaster, a pairwise ranking loss,
        # RMSprop on a GRU language model, AdamW on a residual CNN with batch norm), written and first scored with
        # the rules as of 3b2588c
        Task(
            name="imbalanced-focal-adam",
            description="make_classification (20 features, 4 classes in proportion 55/25/15/5), MLP 20-64-64-4, "
            "focal loss (gamma 2), Adam, batch 64, 8 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=64,
            epochs=8,
            metric="accuracy",
            make_data=imbalanced_data,
            make_model=lambda: mlp(20, 4),
            make_loss=FocalLoss,
        ),
        Task(
            name="digits-dwsep-rmsprop",
            description="load_digits 8x8 images, a MobileNet in miniature (stem and two depthwise-separable blocks, "
            "batch norm, ReLU6), RMSprop alpha 0.9 momentum 0.9 eps 1e-3, batch 32, 6 epochs",
            half="fresh",
            optimizer=RMSPROP,
            optimizer_kwargs={"alpha": 0.9, "momentum": 0.9, "eps": 1e-3},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=SeparableCNN,
        ),
        Task(
            name="sines-conv1d-adamw",
            description=f"next value of a noisy sum of two sines from its last {SINE_LEN}, two 1-D convolutions "
            "(32 channels, the second dilated) with GELU and a linear head, AdamW wd 0.05, batch 64, 10 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.05},
            batch_size=64,
            epochs=10,
            metric="mse",
            make_data=sines_data,
            make_model=lambda: ConvForecaster(SINE_LEN),
            make_loss=nn.MSELoss,
        ),
        Task(
            name="pairs-ranking-sgd",
            description=f"which of two items ({PAIR_FEATURES} features, a hidden utility) wins, one MLP "
            f"{PAIR_FEATURES}-64-64-1 scoring both, hinge ranking loss (margin 1), SGD momentum 0.9, batch 32, "
            "4 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=4,
            metric="accuracy",
            make_data=pairs_data,
            make_model=lambda: PairScorer(PAIR_FEATURES),
            make_loss=MarginRanking,
        ),
        Task(
            name="char-gru-rmsprop",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), GRU (embed "
            "32, hidden 96), RMSprop, batch 32, 2 epochs",
            half="fresh",
            optimizer=RMSPROP,
            optimizer_kwargs={},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: RecurrentNet(nn.GRU, len(CHARS), len(CHARS), 32, 96, per_token=True),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="digits-resnet-adamw",
            description="load_digits 8x8 images, small ResNet with batch norm (16/32 channels), AdamW wd 0.05, "
            "batch 64, 8 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.05},
            batch_size=64,
            epochs=8,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: SmallResNet(10, channels=16),
        ),
        # nineteenth batch: training the bench had not run (an MLP-Mixer, quantile regression on the pinball loss,
        # a deep plain ReLU MLP under SGD, channel dropout under NAdam with decoupled weight decay, a convolutional
        # text classifier under Adagrad, a LLaMA-style language model under Adam with beta2 0.95), written and
        # first scored with the rules as of 3b2588c (unchanged at e43aa4e)
        Task(
            name="digits-mixer-adamw",
            description="load_digits 8x8 images, an MLP-Mixer (2x2 patches, dim 32, 2 blocks), AdamW wd 0.05, "
            "batch 32, 8 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.05},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: Mixer(10),
        ),
        Task(
            name="friedman-pinball-adam",
            description="make_friedman1 regression (standardized target), MLP 10-64-64-3 predicting the 0.5, 0.1 and "
            "0.9 quantiles on the pinball loss (val MSE of the median), Adam, batch 32, 6 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=6,
            metric="mse",
            make_data=friedman_data,
            make_model=lambda: mlp(10, len(QUANTILES)),
            make_loss=Pinball,
        ),
        Task(
            name="digits-deepplain-sgd",
            description="load_digits (64 features), 8-layer ReLU MLP 64-64x8-10 without normalization or skips "
            "(He init), SGD momentum 0.9, batch 32, 10 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=10,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: he_mlp(64, 10, hidden=64, depth=8),
        ),
        Task(
            name="digits-dropout-nadamw",
            description="load_digits 8x8 images, CNN with LeakyReLU and channel dropout 0.2, no normalization, NAdam "
            "with decoupled weight decay 0.01, batch 64, 10 epochs",
            half="fresh",
            optimizer=NADAM,
            optimizer_kwargs={"weight_decay": 0.01, "decoupled_weight_decay": True},
            batch_size=64,
            epochs=10,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: DropoutCNN(10),
        ),
        Task(
            name="docs-textcnn-adagrad",
            description=f"{BOW_CLASSES}-class documents of {BOW_LEN} words out of {BOW_VOCAB}, word embeddings "
            "(dim 32), a trigram convolution (64 filters) max-pooled over the document, Adagrad, batch 32, 5 epochs",
            half="fresh",
            optimizer=ADAGRAD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=5,
            metric="accuracy",
            make_data=bag_of_words_data,
            make_model=lambda: TextCNN(BOW_VOCAB, BOW_CLASSES),
        ),
        Task(
            name="char-swiglu-adam",
            description=f"character language model on sklearn's dataset descriptions ({CHAR_LEN}-char windows), "
            "LLaMA-style 2-layer decoder (RMSNorm, SwiGLU, dim 48, 4 heads), Adam betas (0.9, 0.95), batch 32, "
            "2 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={"betas": (0.9, 0.95)},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=descr_chars_data,
            make_model=lambda: SwiGLULM(len(CHARS), CHAR_LEN),
            make_loss=TokenCrossEntropy,
        ),
        # twentieth batch: training the bench had not run (dense per-pixel segmentation with a U-Net, LoRA
        # adapters on a frozen pretrained body, a deep linear network under plain SGD, 1-D batch norm on waveforms
        # under Nesterov SGD, a skip-gram word model, a post-norm Transformer under Adam), written and first scored
        # with the rules as of 3b2588c (unchanged at b6d2b9d)
        Task(
            name="segment-unet-adam",
            description=f"per-pixel segmentation of a square and a disk in noisy {SEG_SIZE}x{SEG_SIZE} images, a "
            "U-Net in miniature (16/32/64 channels, batch norm, transposed convolutions, skips), Adam, batch 32, "
            "6 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=segmentation_data,
            make_model=TinyUNet,
            make_loss=PixelCrossEntropy,
        ),
        Task(
            name="digits-lora-adamw",
            description=f"LoRA: CNN body pretrained on digits 0-4, frozen, rank-4 adapters on both convolutions and "
            f"a new head trained on {FINETUNE_PER_CLASS} images per class of digits 5-9, AdamW (wd 0.01), batch 10, "
            "15 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=10,
            epochs=15,
            metric="accuracy",
            make_data=finetune_data,
            make_model=LoRAFinetune,
            prepare=pretrained_features,
        ),
        Task(
            name="linear-deeplinear-sgd",
            description="make_regression (20 features, a linear target, noise 20; standardized), a deep linear "
            "network 20-32x6-1 (no nonlinearity), plain SGD, batch 32, 4 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=4,
            metric="mse",
            make_data=linear_target_data,
            make_model=lambda: deep_linear(20, 1, hidden=32, depth=6),
            make_loss=nn.MSELoss,
        ),
        Task(
            name="waves-bn1d-nesterov",
            description=f"which of four noisy waveforms ({WAVE_LEN} samples, random frequency, phase, amplitude), "
            "1-D CNN with batch norm (16/32/32 channels), SGD Nesterov 0.9 wd 5e-4, batch 128, 20 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=128,
            epochs=20,
            metric="accuracy",
            make_data=waves_data,
            make_model=WaveCNN,
        ),
        Task(
            name="words-skipgram-sgd",
            description=f"skip-gram on the words of Python's help topics (a word predicts a neighbour within "
            f"{SKIPGRAM_WINDOW}; {SKIPGRAM_VOCAB} words), embeddings (dim 64) and a full softmax, plain SGD, "
            "batch 128, 3 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=128,
            epochs=3,
            metric="nats",
            make_data=skipgram_data,
            make_model=SkipGram,
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="char-postln-adam",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), a post-norm "
            "causal Transformer (2 layers, dim 64, 4 heads), Adam, batch 32, 2 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: PostNormLM(len(CHARS), CHAR_LEN),
            make_loss=TokenCrossEntropy,
        ),
        # twenty-first batch: an optimizer the bench had not run, torch's Muon (momentum 0.95, Nesterov, wd 0.1,
        # each matrix's update orthogonalized), on a classifier and a regression, written and first scored with the
        # rules as of 39966f2
        Task(
            name="digits-muon",
            description="load_digits (64 features), bias-free MLP 64-128-128-10, Muon (torch's defaults: momentum "
            "0.95, Nesterov, wd 0.1), batch 32, 8 epochs",
            half="fresh",
            optimizer=MUON,
            optimizer_kwargs={},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=digits_data,
            make_model=lambda: bias_free_mlp(64, 10, 128),
        ),
        Task(
            name="friedman-muon",
            description="make_friedman1 regression (standardized target), bias-free MLP 10-64-64-1, Muon (torch's "
            "defaults), batch 32, 6 epochs",
            half="fresh",
            optimizer=MUON,
            optimizer_kwargs={},
            batch_size=32,
            epochs=6,
            metric="mse",
            make_data=friedman_data,
            make_model=lambda: bias_free_mlp(10, 1, 64),
            make_loss=nn.MSELoss,
        ),
        # twenty-second batch: a plain (Elman) tanh RNN, whose gradients explode or vanish through time as the
        # gated cells' do not, unclipped, as a sequence classifier under SGD with momentum and as a character
        # language model under Adam; written and first scored with the rules as of 23f2e09
        Task(
            name="mode-rnn-sgd",
            description=f"the most frequent of {MODE_VOCAB} tokens in a random {MODE_LEN}-token sequence, a plain "
            "tanh RNN (embed 16, hidden 48) classifier, unclipped, SGD momentum 0.9, batch 32, 6 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=6,
            metric="accuracy",
            make_data=mode_data,
            make_model=lambda: RecurrentNet(nn.RNN, MODE_VOCAB, MODE_VOCAB, 16, 48, per_token=False),
        ),
        Task(
            name="char-rnn-adam",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), a plain tanh "
            "RNN (embed 32, hidden 128), unclipped, Adam, batch 32, 2 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: RecurrentNet(nn.RNN, len(CHARS), len(CHARS), 32, 128, per_token=True),
            make_loss=TokenCrossEntropy,
        ),
        # twenty-third batch: density models, whose loss is a negative log-likelihood that crosses zero as the
        # density sharpens (a normalizing flow on 2-D points, a mixture density network on a one-to-many
        # regression); written and first scored with the rules as of 537ba93
        Task(
            name="moons-flow-adam",
            description="two moons (noise 0.03) as a density, a RealNVP-style flow (8 affine couplings, MLPs "
            "1-64-64-2, tanh-bounded log-scales) on the negative log-likelihood, Adam, batch 64, 30 epochs; scored on "
            "the val NLL",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=64,
            epochs=30,
            metric="loss",
            make_data=moons_density_data,
            make_model=CouplingFlow,
            make_loss=NegativeLogLikelihood,
        ),
        Task(
            name="inverse-sine-mdn-adamw",
            description="Bishop's inverse sine problem (three values of t for one x), a mixture density network "
            "(tanh MLP 1-64-64, 5 Gaussians, unclamped log-sigmas) on the mixture NLL, AdamW, batch 64, 20 epochs; "
            "scored on the val NLL",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={},
            batch_size=64,
            epochs=20,
            metric="loss",
            make_data=inverse_sine_data,
            make_model=lambda: nn.Sequential(
                nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 15)
            ),
            make_loss=MixtureNLL,
        ),
        # twenty-fourth batch: an unsegmented sequence under CTC (a recognizer's loss, which sums over every
        # alignment of the labels to the frames) and a two-headed model on a summed classification and regression
        # loss; written and first scored with the rules as of f83f67a
        Task(
            name="frames-ctc-adam",
            description=f"{CTC_LABELS} labels (of 9) over {CTC_FRAMES} noisy feature frames without their timing, a "
            "bidirectional GRU (hidden 48) with a per-frame head on the CTC loss, Adam, batch 32, 8 epochs; scored "
            "on the val CTC loss",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=8,
            metric="loss",
            make_data=ctc_frames_data,
            make_model=lambda: FrameTagger(CTC_FEATURES, 48, CTC_CLASSES),
            make_loss=CTCLoss,
        ),
        Task(
            name="two-task-sgd",
            description="20 features to a class (of 5) and a real value, a shared MLP 20-128-64 with two heads on "
            "cross-entropy plus squared error, SGD momentum 0.9, batch 64, 10 epochs; scored on the val loss (both "
            "heads)",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=64,
            epochs=10,
            metric="loss",
            make_data=two_task_data,
            make_model=TwoHeads,
            make_loss=TwoTaskLoss,
        ),
        # twenty-fifth batch: losses over the whole batch, where each sample's term depends on the others in it (a
        # survival model's Cox partial likelihood over the batch's risk set, a contrastive loss over the batch's
        # views); written and first scored with the rules as of 55fdbd8
        Task(
            name="survival-cox-sgd",
            description=f"{SURVIVAL_FEATURES} features to a risk score for right-censored survival times (30% "
            "censored), MLP 20-64-64-1 on the Cox partial likelihood over the batch, SGD momentum 0.9, batch 64, 10 "
            "epochs; scored on the val Cox loss (the whole val set one risk set)",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=64,
            epochs=10,
            metric="loss",
            make_data=survival_data,
            make_model=lambda: mlp_of(SURVIVAL_FEATURES, 1, 64, 2, lambda width: [nn.ReLU()]),
            make_loss=CoxLoss,
        ),
        Task(
            name="digits-simclr-adamw",
            description="load_digits without labels, a contrastive MLP encoder 64-128-128-32 on two noisy, masked "
            "views of each image under SimCLR's NT-Xent loss (temperature 0.2), AdamW (wd 1e-4), batch 128, 30 "
            "epochs; scored on the val NT-Xent loss (all 597 val images one batch)",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 1e-4},
            batch_size=128,
            epochs=30,
            metric="loss",
            make_data=views_data,
            make_model=TwoViews,
            make_loss=InfoNCELoss,
        ),
        # twenty-sixth batch: an ordinal target as cumulative binary thresholds, and metric learning on a margin
        # loss that reaches exactly zero on every triplet it separates; written and first scored with the rules as
        # of 1ec89cf
        Task(
            name="ordinal-thresholds-radam",
            description=f"{ORDINAL_LEVELS} ordered grades of a latent score of {ORDINAL_FEATURES} features, coded as "
            f"{ORDINAL_LEVELS - 1} 'above threshold k' targets, MLP {ORDINAL_FEATURES}-64-64-{ORDINAL_LEVELS - 1} on "
            "BCE with logits, RAdam, batch 32, 15 epochs; metric: per-threshold val accuracy",
            half="fresh",
            optimizer=RADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=15,
            metric="accuracy",
            make_data=ordinal_data,
            make_model=lambda: mlp_of(ORDINAL_FEATURES, ORDINAL_LEVELS - 1, 64, 2, lambda width: [nn.ReLU()]),
            make_loss=nn.BCEWithLogitsLoss,
        ),
        Task(
            name="digits-triplet-nesterov",
            description="load_digits (anchor, positive, negative) triplets, an MLP embedder 64-128-32 on the triplet "
            "margin loss (margin 1), SGD Nesterov momentum 0.9 (wd 5e-4), batch 64, 10 epochs; scored on the val "
            "triplet loss",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs=NESTEROV,
            batch_size=64,
            epochs=10,
            metric="loss",
            make_data=triplets_data,
            # one MLP for the anchor, positive and negative alike (its layers act on the last axis): (batch, 3, 32)
            make_model=lambda: mlp_of(64, 32, 128, 1, lambda width: [nn.ReLU()]),
            make_loss=TripletLoss,
        ),
        # twenty-seventh batch: one model on one dataset for the same four epochs at three batch sizes, under SGD
        # with momentum and under Adam: the LR that trains best rises with the batch size while the default LR stays
        # put, so the range test has to follow it; written and first scored with the rules as of db23b6a
        *(classes_task(optimizer, batch_size=b) for optimizer in (SGD, ADAM) for b in (32, 128, 512)),
        # twenty-eighth batch: the twenty-seventh's batch-128 tasks at widths 16 and 1024 instead of 128: under
        # torch's default initialization the LR that trains best should fall as the layers widen (each output sums more
        # inputs moved by the same step); written and first scored with the rules as of f78ce4f
        *(classes_task(optimizer, width=w) for optimizer in (SGD, ADAM) for w in (16, 1024)),
        # twenty-ninth batch: the twenty-seventh's batch-128 tasks for 1 and 16 epochs instead of 4 (93 and 1,488
        # steps): the same curve, the same default LR, but a budget 16x shorter or 4x longer. A short run has to
        # move far in few steps, so the best peak should sit higher there; a long one reaches the same floor at a
        # lower peak and may start to overfit 12k samples. Told the training, the test lasts 300 steps for the
        # first (its minimum) and 1000 for the second (its maximum); written and first scored with the rules as of
        # 4d7a3e5
        *(classes_task(optimizer, epochs=e) for optimizer in (SGD, ADAM) for e in (1, 16)),
        # thirtieth batch: the batch-128 tasks with weight decay: AdamW's decoupled decay at 0.01 (torch's default),
        # 0.1 and 1, and SGD's L2 at 1e-4, 1e-3 and 1e-2. Each step shrinks the weights by lr x wd, so the LR that
        # trains best should fall as the decay grows (a one cycle at 0.03 with wd 1 takes 3% off every weight a step
        # at its peak), a cost that builds up over the run more than over a short test; written and first scored
        # with the rules as of 0d3e209
        *(classes_task(ADAMW, weight_decay=wd) for wd in (0.01, 0.1, 1.0)),
        *(classes_task(SGD, weight_decay=wd) for wd in (1e-4, 1e-3, 1e-2)),
        # thirty-first batch: models from Hugging Face transformers, built from a config (nothing downloaded), as
        # many users' are: GPT-2 on the character language model under AdamW and under SGD with momentum, BERT
        # classifying sequences under AdamW and under Adam. Their initialization (std 0.02) and their dropout of 0.1
        # differ from every other Transformer here; BERT is post-norm, which is known to want a lower LR or a
        # warm-up, GPT-2 pre-norm. Under AdamW the best peak should sit near the bench's own Transformers'
        # (1e-3 to 1e-2), under SGD one to two decades higher. (A BERT tagger of tagging-bilstm-adamw's task was
        # dropped before any run but one at the default LR: that reached 100%, nothing to tell LRs apart.) Written
        # and first scored with the rules as of 763eb1f
        Task(
            name="hf-gpt2-adamw",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), Hugging Face "
            f"GPT-2 from a config ({HF_LAYERS} layers, dim {HF_DIM}, {HF_HEADS} heads, dropout 0.1), AdamW (wd "
            "0.01), batch 32, 2 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: hf_gpt2(len(CHARS), CHAR_LEN),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="hf-gpt2-sgd",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), Hugging Face "
            f"GPT-2 from a config ({HF_LAYERS} layers, dim {HF_DIM}, {HF_HEADS} heads, dropout 0.1), SGD momentum "
            "0.9, batch 32, 2 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={"momentum": 0.9},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: hf_gpt2(len(CHARS), CHAR_LEN),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="hf-bert-count-adamw",
            description=f"count the 0s in a random {COUNT_LEN}-token sequence ({COUNT_CLASSES} classes), Hugging "
            f"Face BERT from a config ({HF_LAYERS} layers, dim {HF_DIM}, {HF_HEADS} heads, dropout 0.1) with its "
            "sequence-classification head, AdamW (wd 0.01), batch 64, 4 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=64,
            epochs=4,
            metric="accuracy",
            make_data=count_data,
            make_model=lambda: hf_bert(COUNT_VOCAB, COUNT_LEN, COUNT_CLASSES, per_token=False),
        ),
        Task(
            name="hf-bert-mode-adam",
            description=f"the most frequent of {MODE_VOCAB} tokens in a random {MODE_LEN}-token sequence, Hugging "
            f"Face BERT from a config ({HF_LAYERS} layers, dim {HF_DIM}, {HF_HEADS} heads, dropout 0.1) with its "
            "sequence-classification head, Adam, batch 32, 3 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=3,
            metric="accuracy",
            make_data=mode_data,
            make_model=lambda: hf_bert(MODE_VOCAB, MODE_LEN, MODE_VOCAB, per_token=False),
        ),
        # thirty-second batch: more Hugging Face models built from a config, the ones users train most after GPT-2
        # and BERT: DistilBERT classifying sequences under AdamW, RoBERTa on the count task that BERT under AdamW
        # failed in the thirty-first (here under Adam, batch 32: is that a fluke of one task or a kind of training?),
        # a Llama decoder on the character language model with the LLM recipe (AdamW betas (0.9, 0.95), wd 0.1),
        # and ViT on the 8x8 digits (digits-vit-adamw's training, the model built by transformers). Under Adam and
        # AdamW the best peak should sit near 1e-3 to 1e-2, lower for the post-norm encoders. Written and first
        # scored with the rules as of 80906a2
        Task(
            name="hf-distilbert-mode-adamw",
            description=f"the most frequent of {MODE_VOCAB} tokens in a random {MODE_LEN}-token sequence, Hugging "
            f"Face DistilBERT from a config ({HF_LAYERS} layers, dim {HF_DIM}, {HF_HEADS} heads) with its "
            "sequence-classification head, AdamW (wd 0.01), batch 32, 3 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=3,
            metric="accuracy",
            make_data=mode_data,
            make_model=lambda: hf_distilbert(MODE_VOCAB, MODE_LEN, MODE_VOCAB),
        ),
        Task(
            name="hf-roberta-count-adam",
            description=f"count the 0s in a random {COUNT_LEN}-token sequence ({COUNT_CLASSES} classes), Hugging "
            f"Face RoBERTa from a config ({HF_LAYERS} layers, dim {HF_DIM}, {HF_HEADS} heads, dropout 0.1) with its "
            "sequence-classification head, Adam, batch 32, 3 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=3,
            metric="accuracy",
            make_data=count_data,
            make_model=lambda: hf_roberta(COUNT_VOCAB, COUNT_LEN, COUNT_CLASSES),
        ),
        Task(
            name="hf-llama-char-adamw",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), Hugging Face "
            f"Llama from a config ({HF_LAYERS} layers, dim {HF_DIM}, {HF_HEADS} heads), AdamW betas (0.9, 0.95), "
            "wd 0.1, batch 32, 2 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"betas": (0.9, 0.95), "weight_decay": 0.1},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: hf_llama(len(CHARS), CHAR_LEN),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="hf-vit-digits-adamw",
            description=f"load_digits 8x8 images, Hugging Face ViT from a config (2x2 patches, {HF_LAYERS} layers, "
            f"dim {HF_DIM}, {HF_HEADS} heads), AdamW (wd 0.05), batch 32, 8 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.05},
            batch_size=32,
            epochs=8,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: hf_vit(8, 2, 10),
        ),
        # thirty-third batch: recipes users copy and a kind of training the bench lacks: torch's Transformer
        # tutorial (a post-norm encoder language model, plain SGD with its gradients clipped to 0.5), Adam with
        # coupled L2 weight decay (torch.optim.Adam's weight_decay, as older code has it) on a batch-norm CNN,
        # variable-length sequences fed packed to a GRU, and fine-tuning a pretrained language model on a little
        # text of another kind (every weight, AdamW; scored from the pretrained model's own loss). Written and first
        # scored with the rules as of d9ce114
        Task(
            name="char-tutorial-transformer-sgd",
            description=f"character language model on Python's help topics ({CHAR_LEN}-char windows), torch's "
            "Transformer tutorial model (post-norm, 2 layers, dim 64, 2 heads, dropout 0.2), plain SGD with "
            "gradients clipped to norm 0.5, batch 32, 2 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=32,
            epochs=2,
            metric="nats",
            make_data=pydoc_chars_data,
            make_model=lambda: TutorialTransformer(len(CHARS), CHAR_LEN),
            make_loss=TokenCrossEntropy,
            clip_grad_norm=0.5,
            # the tutorial trains at 5.0: a clipped step is at most lr * 0.5 long
            grid=(1e-2, 100.0),
        ),
        Task(
            name="digits-bncnn-adam-l2",
            description="load_digits as 8x8 images, CNN with batch norm, Adam with coupled L2 weight decay 5e-4, "
            "batch 64, 15 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={"weight_decay": 5e-4},
            batch_size=64,
            epochs=15,
            metric="accuracy",
            make_data=digit_images_data,
            make_model=lambda: SmallCNN(10),
        ),
        Task(
            name="count-packed-gru-adam",
            description=f"count the 0s in a random sequence of {COUNT_LEN // 3}-{COUNT_LEN} tokens, padded, GRU "
            "(hidden 64) over the packed sequences (pack_padded_sequence), Adam, batch 64, 6 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=64,
            epochs=6,
            metric="accuracy",
            make_data=packed_count_data,
            make_model=lambda: PackedGRU(COUNT_VOCAB, COUNT_PAD, COUNT_CLASSES),
        ),
        Task(
            name="char-finetune-transformer-adamw",
            description=f"fine-tune a causal Transformer language model (dim 48, 4 heads) pretrained on sklearn's "
            f"dataset descriptions on {FINETUNE_LM_WINDOWS} windows of Python's help topics, every weight, AdamW "
            "(wd 0.01), batch 16, 3 epochs; scored from the pretrained model's val loss",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=16,
            epochs=3,
            metric="nats",
            make_data=finetune_lm_data,
            make_model=finetune_lm_model,
            make_loss=TokenCrossEntropy,
            prepare=pretrained_lm,
        ),
        # thirty-fourth batch: a word-level language model (a 2000-word softmax under Adam), a Transformer
        # forecaster (real-valued inputs under AdamW) and fine-tuning the thirty-third batch's pretrained language
        # model as a classifier with a new head on little data (128 snippets). Written and first scored with the
        # rules as of d9ce114
        Task(
            name="words-lstm-adam",
            description=f"word language model on Python's help topics ({WORDLM_LEN}-word windows, {WORDLM_VOCAB} "
            "words), LSTM (embed 64, hidden 128), Adam, batch 32, 3 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=3,
            metric="nats",
            make_data=words_lm_data,
            make_model=lambda: RecurrentNet(nn.LSTM, WORDLM_VOCAB, WORDLM_VOCAB, 64, 128, per_token=True),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="sines-transformer-adamw",
            description=f"forecast the next value of a noisy sum of two sines from its last {SINE_LEN}, 2-layer "
            "Transformer encoder (dim 32, 4 heads) regression, AdamW (wd 0.01), batch 32, 6 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=6,
            metric="mse",
            make_data=sines_data,
            make_model=lambda: SeqTransformerRegressor(SINE_LEN),
            make_loss=nn.MSELoss,
        ),
        Task(
            name="source-finetune-adamw",
            description=f"which text a {SOURCE_LEN}-character snippet comes from (sklearn's descriptions or Python's "
            f"help topics), {SOURCE_PER_CLASS} of each: the pretrained language model's body, a new head, every "
            "weight fine-tuned, AdamW (wd 0.01), batch 8, 10 epochs",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=8,
            epochs=10,
            metric="accuracy",
            make_data=source_data,
            make_model=SourceClassifier,
            prepare=pretrained_lm,
        ),
        # thirty-fifth batch: kinds of training the bench lacks: a diffusion model's noise prediction (a loss
        # that stays high and noisy however well it trains: the noise at small steps cannot be told), an
        # encoder-decoder Transformer trained with teacher forcing under the "Attention is all you need" Adam
        # (betas 0.9/0.98, eps 1e-9), and BERT's masked language modelling (the loss on 15% of the positions).
        # Written and first scored with the rules as of b6c6b38
        Task(
            name="digits-diffusion-adam",
            description=f"a DDPM's noise prediction on load_digits ({DIFFUSION_STEPS} steps, {DIFFUSION_DRAWS} "
            "draws of step and noise per image), MLP of three SiLU layers of 256 with sinusoidal step features, "
            "MSE, Adam, batch 64, 8 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=64,
            epochs=8,
            metric="mse",
            make_data=diffusion_data,
            make_model=NoisePredictor,
            make_loss=nn.MSELoss,
        ),
        Task(
            name="sort-seq2seq-transformer-adam",
            description=f"sort {SORT_LEN} random tokens out of {SORT_VOCAB}, torch's encoder-decoder nn.Transformer "
            "(2+2 post-norm layers, dim 64, 4 heads, dropout 0.1) with teacher forcing, Adam betas (0.9, 0.98) "
            "eps 1e-9, batch 64, 4 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={"betas": (0.9, 0.98), "eps": 1e-9},
            batch_size=64,
            epochs=4,
            metric="nats",
            make_data=sort_data,
            make_model=lambda: Seq2SeqTransformer(SORT_VOCAB, SORT_LEN),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="char-mlm-encoder-adamw",
            description=f"masked language modelling on Python's help topics ({CHAR_LEN}-char windows, "
            f"{MLM_RATE:.0%} masked), 2-layer pre-norm Transformer encoder (dim 64, 4 heads), AdamW (wd 0.01), "
            "batch 32, 10 epochs; scored on the masked characters",
            half="fresh",
            optimizer=ADAMW,
            optimizer_kwargs={"weight_decay": 0.01},
            batch_size=32,
            epochs=10,
            metric="nats",
            make_data=mlm_data,
            make_model=lambda: TinyTransformer(len(CHARS) + 1, CHAR_LEN, dim=64, heads=4),
            make_loss=TokenCrossEntropy,
        ),
        # thirty-sixth batch: torch's word language model example as written (tied LSTM, dropout, plain SGD
        # clipped to 0.25, text cut into windows that follow one another), the thirty-fourth batch's word model on
        # such windows (where it failed, its windows overlapped), and sparse embedding gradients under SparseAdam.
        # Written and first scored with the rules as of b6c6b38
        Task(
            name="words-tied-lstm-sgd-clip",
            description=f"word language model on Python's help topics ({WORDS_BPTT}-word windows that follow one "
            f"another, {WORDLM_VOCAB} words), torch's example model (2-layer LSTM, 128, dropout 0.2, tied "
            "weights), plain SGD with gradients clipped to norm 0.25, batch 20, 10 epochs",
            half="fresh",
            optimizer=SGD,
            optimizer_kwargs={},
            batch_size=20,
            epochs=10,
            metric="nats",
            make_data=words_contiguous_data,
            make_model=lambda: TiedLSTM(WORDLM_VOCAB),
            make_loss=TokenCrossEntropy,
            clip_grad_norm=0.25,
            # the example trains at 20: a clipped step is at most lr * 0.25 long
            grid=(1e-2, 100.0),
        ),
        Task(
            name="words-contiguous-lstm-adam",
            description=f"words-lstm-adam's model and optimizer on {WORDLM_LEN}-word windows that follow one "
            "another (no word predicted twice), batch 32, 10 epochs",
            half="fresh",
            optimizer=ADAM,
            optimizer_kwargs={},
            batch_size=32,
            epochs=10,
            metric="nats",
            make_data=lambda: words_contiguous_data(WORDLM_LEN),
            make_model=lambda: RecurrentNet(nn.LSTM, WORDLM_VOCAB, WORDLM_VOCAB, 64, 128, per_token=True),
            make_loss=TokenCrossEntropy,
        ),
        Task(
            name="ratings-mf-sparseadam",
            description=f"ratings-mf-sgd's matrix factorization ({USERS} users, {ITEMS} items) with sparse "
            "embedding gradients, SparseAdam, batch 64, 4 epochs",
            half="fresh",
            optimizer=SPARSE_ADAM,
            optimizer_kwargs={},
            batch_size=64,
            epochs=4,
            metric="mse",
            make_data=ratings_data,
            make_model=SparseFactorization,
            make_loss=nn.MSELoss,
        ),
    ]
)


# The first task of each fresh batch, in the order the batches were written (TASKS keeps that order): a batch was
# first scored with the rules of its day, so the bench can say how each one fares now.
FRESH_BATCH_STARTS = (
    "nadam-mlp", "digits-autoencoder", "digits-sigmoid-sgd", "digits-long-sgd", "cancer-bce-sgd",
    "digits-noisy-adamw", "six-class-memorize-sgd", "digits-bncnn-batch8-adamw", "cancer-raw-sgd", "char-adafactor",
    "digits-cnn-nesterov098", "char-lstm-clip-sgd", "char-gru-clip-sgd", "sines-gru-adam", "digits-hinge-sgd",
    "image-siren-adam", "digits-vae-adam", "imbalanced-focal-adam", "digits-mixer-adamw", "segment-unet-adam",
    "digits-muon", "mode-rnn-sgd", "moons-flow-adam",
    "frames-ctc-adam", "survival-cox-sgd", "ordinal-thresholds-radam", "classes-batch32-sgd",
    "classes-width16-sgd", "classes-epochs1-sgd", "classes-wd0.01-adamw", "hf-gpt2-adamw",
    "hf-distilbert-mode-adamw", "char-tutorial-transformer-sgd", "words-lstm-adam", "digits-diffusion-adam",
    "words-tied-lstm-sgd-clip",
)  # fmt: skip


@functools.cache
def fresh_batches() -> dict[str, int]:
    """Each fresh task's batch, numbered from 1 in the order they were written."""
    batch, out = 0, {}
    for name, task in TASKS.items():
        if task.half != "fresh":
            continue
        if name in FRESH_BATCH_STARTS:
            batch += 1
        if batch == 0:
            raise ValueError(
                f"fresh task {name} comes before the first batch's start ({FRESH_BATCH_STARTS[0]})"
            )
        out[name] = batch
    return out


@functools.cache
def _cached_data(name: str) -> TaskData:
    """Data is made once per process: every run of a task shares it (read-only)."""
    return TASKS[name].make_data()


# -- spec targets: what a user's spec names for a task (`clrfind range-test SPEC` builds from these) -------------


def spec_train_set(task: str) -> torch.utils.data.TensorDataset:
    """The task's training split as a Dataset, for `data.train` in a spec."""
    data = TASKS[task].data()
    return torch.utils.data.TensorDataset(data.x_train, data.y_train)


def spec_val_set(task: str) -> torch.utils.data.TensorDataset:
    """The task's validation split, for `data.val` (`--clrfind-data val`: a user who gives clrfind their val data)."""
    data = TASKS[task].data()
    return torch.utils.data.TensorDataset(data.x_val, data.y_val)


def spec_train_loader(task: str, seed: int) -> torch.utils.data.DataLoader:
    """The task's training split as a ready DataLoader over a batch sampler (`--clrfind-data loader`), the loader
    the benchmark itself trains with: batches sliced from the tensors in one go, a common way to load fast."""
    from bench.quality.train import train_loader

    return train_loader(TASKS[task], seed)


class TrainStream(torch.utils.data.IterableDataset):
    """The task's training split as a stream (`--clrfind-data stream`): an IterableDataset with no length that
    yields the samples in a new random order every pass, as a user streaming their data writes it. clrfind can
    neither split it by sample nor rewind its order."""

    def __init__(self, task: str, seed: int) -> None:
        super().__init__()
        self.task = task
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data = TASKS[self.task].data()
        for i in torch.randperm(len(data.x_train), generator=self.generator).tolist():
            yield data.x_train[i], data.y_train[i]


def spec_model(task: str) -> nn.Module:
    """A fresh model of the task, for `model.target` (clrfind seeds before building it, as `fresh_model` does)."""
    return TASKS[task].make_model()


def spec_loss(task: str) -> nn.Module:
    return TASKS[task].make_loss()


# How a user may hand the training data over (`--clrfind-data`): a dataset (clrfind builds the loader), the dataset
# and the validation split, a ready DataLoader over a batch sampler, or a stream clrfind cannot split by sample.
DATA_MODES = ("dataset", "val", "loader", "stream")


def task_spec(task: Task, seed: int, data: str = "dataset") -> dict[str, Any]:
    """The spec a user writes for this task: model, data, loss and optimizer, and the training they will run
    (`training:`, its epochs and steps per epoch, as they would pass them to `export`), and nothing about the range
    test, so clrfind runs with its defaults; `data` is one of DATA_MODES."""
    train: dict[str, Any] = {"target": "bench.quality.tasks:spec_train_set", "kwargs": {"task": task.name}}
    if data in ("stream", "loader"):
        target = "TrainStream" if data == "stream" else "spec_train_loader"
        train = {"target": f"bench.quality.tasks:{target}", "kwargs": {"task": task.name, "seed": seed}}
    data_spec: dict[str, Any] = {"train": train, "batch_size": task.batch_size}
    if data == "val":
        data_spec["val"] = {"target": "bench.quality.tasks:spec_val_set", "kwargs": {"task": task.name}}
    spec: dict[str, Any] = {
        "model": {"target": "bench.quality.tasks:spec_model", "kwargs": {"task": task.name}},
        "data": data_spec,
        "loss": {"target": "bench.quality.tasks:spec_loss", "kwargs": {"task": task.name}},
        "optimizer": {"target": task.optimizer, "kwargs": dict(task.optimizer_kwargs)},
        "training": {"epochs": task.epochs, "steps_per_epoch": task.steps_per_epoch},
        "device": "cpu",
        "seed": seed,
    }
    if task.clip_grad_norm is not None:
        spec["clip_grad_norm"] = task.clip_grad_norm
    return spec
