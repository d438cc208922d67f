"""What the engine reports after each chunk of steps; kept torch-free so progress displays need no torch import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepEvent:
    """The state of the run once a chunk of losses reached the host."""

    step: int
    total: int
    lr: float
    loss: float
    best_loss: float
    metric: float | None = None
    epoch: int = 0
