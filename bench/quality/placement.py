"""Where a suggested LR sits against the grid's best one, in decades: is a method systematically too high or too low?

A score says how well a suggestion trained; it does not say which way a miss went. A rule fitted to a few tasks can
score well there while leaning one way, and that lean is what carries over to training nobody tried. So for each
(task, seed) the suggestion is compared with the LR the grid trains best with, for the schedule kind the method
trains: clrfind's one-cycle peak with the grid's best one-cycle peak, a peer's LR and the default LR with the grid's
best constant LR. The grid is ~3.2x apart; the best point and its two neighbours are refined by a parabola in log
LR (the mean metric over the seeds), so offsets below half a grid step still mean something. A best point at the
grid's edge is taken as is: the true optimum may lie beyond it.

Pure functions of numbers; `bench.quality.run` feeds them the runs and prints the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A suggestion within 2x of the grid's optimum is placed well (the grid itself is 3.2x apart) ...
NEAR = math.log10(2.0)
# ... and one more than 3x off is a miss worth counting, high or low.
FAR = math.log10(3.0)


def grid_optimum(lrs: Sequence[float], means: Sequence[float], *, higher_is_better: bool) -> float:
    """log10 of the best LR of one schedule kind on the grid: the best point, moved to the vertex of the parabola
    through it and its neighbours (which lies within half a grid step of it)."""
    x = np.log10(np.asarray(lrs, dtype=float))
    y = np.asarray(means, dtype=float) * (1.0 if higher_is_better else -1.0)
    order = np.argsort(x)
    x, y = x[order], y[order]
    i = int(np.argmax(y))
    if i == 0 or i == x.size - 1:
        return float(x[i])
    (x0, x1, x2), (y0, y1, y2) = x[i - 1 : i + 2], y[i - 1 : i + 2]
    # The parabola through the three points, equally spaced or not (Newton's divided differences):
    # p(x) = y0 + d01 (x - x0) + a (x - x0)(x - x1). It is concave (a < 0): argmax takes the first of tied
    # points, so y0 < y1 >= y2. A tie with the right neighbour puts the vertex halfway between the two.
    d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    a = (d12 - d01) / (x2 - x0)
    vertex = (x0 + x1) / 2 - d01 / (2 * a)
    return float(min(max(vertex, x0), x2))


@dataclass(frozen=True)
class Placement:
    """The offsets (decades, + = above the grid's best) of one method's suggestions over a set of tasks."""

    offsets: tuple[float, ...]
    # The task whose seeds sit highest and lowest on average, with that mean offset: where to look first.
    highest: tuple[str, float]
    lowest: tuple[str, float]

    @property
    def median(self) -> float:
        return float(np.median(self.offsets))

    @property
    def median_abs(self) -> float:
        return float(np.median(np.abs(self.offsets)))

    @property
    def near(self) -> int:
        return int(np.sum(np.abs(self.offsets) <= NEAR))

    @property
    def high(self) -> int:
        return int(np.sum(np.asarray(self.offsets) > FAR))

    @property
    def low(self) -> int:
        return int(np.sum(np.asarray(self.offsets) < -FAR))


def placement(per_task: dict[str, Sequence[float]]) -> Placement | None:
    """Summarize {task: offsets of its seeds} (tasks without a suggestion left out); None when there are none."""
    pairs = [(task, off) for task, offs in per_task.items() for off in offs]
    if not pairs:
        return None
    means = {task: float(np.mean(offs)) for task, offs in per_task.items() if len(offs)}
    hi = max(means, key=lambda t: means[t])
    lo = min(means, key=lambda t: means[t])
    return Placement(tuple(off for _, off in pairs), (hi, means[hi]), (lo, means[lo]))
