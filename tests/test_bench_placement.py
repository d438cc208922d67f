"""The quality bench's placement figures: where a suggestion sits against the grid's best LR (pure numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality.placement import FAR, NEAR, grid_optimum, placement

GRID = list(np.geomspace(1e-4, 3.0, 10))  # the bench's SGD grid, ~3.2x apart


def _parabola(center: float, *, sign: float = 1.0) -> list[float]:
    return [sign * (1.0 - (math.log10(lr) - center) ** 2) for lr in GRID]


@pytest.mark.parametrize("center", [-2.8, -1.5, -1.37, -0.2])
def test_optimum_between_grid_points_is_recovered(center: float) -> None:
    # A metric that is a parabola in log LR: the refined optimum is its vertex, not the nearest grid point.
    assert grid_optimum(GRID, _parabola(center), higher_is_better=True) == pytest.approx(center)


def test_lower_is_better_metrics_are_flipped() -> None:
    loss = _parabola(-1.37, sign=-1.0)  # an MSE: lowest at the vertex
    assert grid_optimum(GRID, loss, higher_is_better=False) == pytest.approx(-1.37)
    assert grid_optimum(GRID, loss, higher_is_better=True) != pytest.approx(-1.37)


def test_best_at_the_grid_edge_is_taken_as_is() -> None:
    rising = [float(i) for i in range(len(GRID))]
    assert grid_optimum(GRID, rising, higher_is_better=True) == pytest.approx(math.log10(3.0))
    assert grid_optimum(GRID, rising, higher_is_better=False) == pytest.approx(-4.0)


def test_ties_put_the_optimum_between_the_tied_points() -> None:
    # Two tied best points: the parabola through them and the lower outer neighbour peaks halfway between them.
    means = [0.1] * len(GRID)
    means[3], means[4], means[5] = 0.5, 0.9, 0.9
    middle = (math.log10(GRID[4]) + math.log10(GRID[5])) / 2
    assert grid_optimum(GRID, means, higher_is_better=True) == pytest.approx(middle)
    # More tied points: the first two count (the first best in grid order); a flat metric keeps the first point.
    means[6] = 0.9
    assert grid_optimum(GRID, means, higher_is_better=True) == pytest.approx(middle)
    assert grid_optimum(GRID, [0.5] * len(GRID), higher_is_better=True) == pytest.approx(-4.0)


def test_placement_counts_offsets_each_way() -> None:
    found = placement({"a": [0.0, 0.1, -0.2], "b": [0.9, 0.6], "c": [-1.0], "none": []})
    assert found is not None
    assert found.offsets == (0.0, 0.1, -0.2, 0.9, 0.6, -1.0)
    assert found.median == pytest.approx(0.05)
    assert found.median_abs == pytest.approx(0.4)
    assert found.near == sum(abs(o) <= NEAR for o in found.offsets) == 3
    assert (found.high, found.low) == (2, 1)
    assert found.highest == ("b", pytest.approx(0.75))
    assert found.lowest == ("c", -1.0)
    assert FAR > NEAR
    assert placement({"a": []}) is None
