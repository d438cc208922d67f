"""The LR ladder: the learning rate applied at each optimizer step of the range test."""

from __future__ import annotations

from typing import Literal

import numpy as np

Mode = Literal["linear", "exp"]


def lr_ladder(min_lr: float, max_lr: float, steps: int, mode: Mode = "linear") -> np.ndarray:
    """Return `steps` learning rates from `min_lr` to `max_lr`, both ends included.

    Linear is the paper's range test (triangular policy with stepsize = the whole run); exp spaces the rungs evenly in
    log LR, which covers several decades in few steps. Step ``i`` always trains at ``ladder[i]``: no uneven first rung.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
    if mode == "linear":
        return np.linspace(min_lr, max_lr, steps)
    if mode == "exp":
        return np.geomspace(min_lr, max_lr, steps)
    raise ValueError(f"mode must be 'linear' or 'exp', got {mode!r}")


def sample_axis(lrs: np.ndarray, mode: Mode) -> np.ndarray:
    """The axis the ladder is evenly spaced on: LR for linear, log10 LR for exp.

    Slopes and smoothing windows are taken on this axis, so an exp test is not judged as if it were linear.
    """
    lrs = np.asarray(lrs, dtype=float)
    return np.log10(lrs) if mode == "exp" else lrs
