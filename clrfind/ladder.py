"""The LR ladder: the learning rate applied at each optimizer step of the range test."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Mode = Literal["linear", "exp"]
ModeChoice = Literal["auto", "linear", "exp"]

# "auto" picks exp when max_lr / min_lr is above this (1.5 decades): a linear ladder over a wider range puts almost
# all its steps in the top decade, and its second rung already sits at max_lr / steps.
AUTO_EXP_RATIO = 30.0
# Steps when a spec gives neither steps nor epochs: over several decades the loss needs dozens of steps at each
# decade of LR to show its effect (100 steps read the bounds too low; see BENCHMARKS.md).
DEFAULT_STEPS = 300


def resolve_mode(min_lr: float, max_lr: float, mode: str) -> Mode:
    """The ladder to run: `mode` itself, or for "auto" exp when the range spans more than AUTO_EXP_RATIO."""
    if mode == "auto":
        return "exp" if max_lr / min_lr > AUTO_EXP_RATIO else "linear"
    if mode in ("linear", "exp"):
        return mode  # type: ignore[return-value]
    raise ValueError(f"mode must be 'auto', 'linear' or 'exp', got {mode!r}")


def describe_ladder(min_lr: float, max_lr: float, mode: str) -> str:
    """`exp 1e-05 -> 1 (auto: the range spans 5.0 decades)`: the ladder a spec runs, and why when `auto` chose."""
    text = f"{resolve_mode(min_lr, max_lr, mode)} {min_lr:.3g} -> {max_lr:.3g}"
    if mode == "auto":
        text += f" (auto: the range spans {math.log10(max_lr / min_lr):.1f} decades)"
    return text


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
