"""clrfind: learning-rate bounds for PyTorch with Leslie Smith's LR range test.

The library API is re-exported here lazily, so `import clrfind` (and `clrfind --help`) does not import torch or
matplotlib until a function that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Bounds",
    "ClrfindError",
    "ClrfindWarning",
    "ExportError",
    "OutputError",
    "RangeTestResult",
    "ResultsError",
    "RunError",
    "RunInterrupted",
    "SetupError",
    "StepEvent",
    "TrainingLength",
    "UsageError",
    "__version__",
    "load_results",
    "load_schedule",
    "log_result",
    "param_groups",
    "range_test",
    "write_schedule",
]

_LAZY = {
    "range_test": "clrfind.api",
    "load_schedule": "clrfind.export",
    "param_groups": "clrfind.groups",
    "write_schedule": "clrfind.export",
    "load_results": "clrfind.results",
    "log_result": "clrfind.loggers",
    "RangeTestResult": "clrfind.results",
    "Bounds": "clrfind.results",
    "StepEvent": "clrfind.events",
    "TrainingLength": "clrfind.settings",
    "ClrfindError": "clrfind.errors",
    "ClrfindWarning": "clrfind.errors",
    "ExportError": "clrfind.errors",
    "OutputError": "clrfind.errors",
    "ResultsError": "clrfind.errors",
    "RunError": "clrfind.errors",
    "RunInterrupted": "clrfind.errors",
    "SetupError": "clrfind.errors",
    "UsageError": "clrfind.errors",
}

if TYPE_CHECKING:
    from clrfind.api import range_test
    from clrfind.errors import (
        ClrfindError,
        ClrfindWarning,
        ExportError,
        OutputError,
        ResultsError,
        RunError,
        RunInterrupted,
        SetupError,
        UsageError,
    )
    from clrfind.events import StepEvent
    from clrfind.export import load_schedule, write_schedule
    from clrfind.groups import param_groups
    from clrfind.loggers import log_result
    from clrfind.results import Bounds, RangeTestResult, load_results
    from clrfind.settings import TrainingLength


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clrfind' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    """The public API, for `dir(clrfind)` and tab completion: the lazy names are not module globals until used."""
    return sorted(__all__)
