"""Data made in code for the sample specs: nothing is downloaded."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset


def gaussian_blobs(
    n: int = 4096, features: int = 20, classes: int = 4, noise: float = 4.0, seed: int = 0
) -> TensorDataset:
    """Overlapping Gaussian clusters: a classification task an MLP learns in a few hundred steps."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, features, generator=g) * 0.5
    labels = torch.randint(0, classes, (n,), generator=g)
    x = centers[labels] + noise * torch.randn(n, features, generator=g) / features**0.5
    return TensorDataset(x, labels)


def shapes(n: int = 2048, size: int = 16, seed: int = 0) -> TensorDataset:
    """16x16 grayscale images of four shapes (square, cross, disc, bar) at random places, with noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.zeros(n, 1, size, size)
    labels = torch.randint(0, 4, (n,), generator=g)
    for i in range(n):
        cx, cy = torch.randint(4, size - 4, (2,), generator=g).tolist()
        r = int(torch.randint(2, 4, (1,), generator=g))
        kind = int(labels[i])
        if kind == 0:
            mask = ((xx - cx).abs() <= r) & ((yy - cy).abs() <= r)
        elif kind == 1:
            mask = (((xx - cx).abs() <= r) & ((yy - cy).abs() <= 0)) | (
                ((yy - cy).abs() <= r) & ((xx - cx).abs() <= 0)
            )
        elif kind == 2:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        else:
            mask = ((xx - cx).abs() <= r) & ((yy - cy).abs() <= 1)
        images[i, 0][mask] = 1.0
    images += 0.3 * torch.randn(images.shape, generator=g)
    return TensorDataset(images, labels)


class ReverseTask(Dataset):
    """Sequences of random tokens; the target is the sequence reversed. Items are dicts, as in many NLP pipelines."""

    def __init__(self, n: int = 2048, length: int = 12, vocab: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(1, vocab, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        seq = self.tokens[index]
        return {"tokens": seq, "targets": seq.flip(0)}
