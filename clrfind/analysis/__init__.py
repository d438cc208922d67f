"""From a range-test curve to (base_lr, max_lr): smoothing, divergence, bounds. Pure numpy, no torch.

Three modules: `smoothing` (a centred robust fit, no lag), `divergence` (the online monitor that stops a run and
its offline twin) and `bounds` (the suggestion and its rationale). Their tunable constants live beside the code
that uses them.
"""

from __future__ import annotations

from clrfind.analysis.bounds import bounds_for, suggest_bounds, suggest_bounds_from_metric
from clrfind.analysis.divergence import DivergenceMonitor, find_divergence
from clrfind.analysis.smoothing import smooth

__all__ = [
    "DivergenceMonitor",
    "bounds_for",
    "find_divergence",
    "smooth",
    "suggest_bounds",
    "suggest_bounds_from_metric",
]
