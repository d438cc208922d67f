"""A custom step for batches that are not `(inputs, targets)`: fn(model, batch, loss_fn) -> scalar loss."""

from __future__ import annotations

from collections.abc import Callable

import torch


def sequence_step(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], loss_fn: Callable[..., torch.Tensor]
) -> torch.Tensor:
    """Per-token cross-entropy for a dict batch {tokens, targets} of shape (batch, length)."""
    logits = model(batch["tokens"])
    return loss_fn(logits.flatten(0, 1), batch["targets"].flatten())
