"""A rich progress bar fed by the engine's callback: LR, loss, best loss and ETA, one line, redrawn in place.

The engine only calls `update(event)`; this module owns all rendering. When output is not a terminal, or with
--quiet, the bar is disabled and costs nothing.
"""

from __future__ import annotations

import math
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from clrfind.events import StepEvent


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "nan" if value is not None else "-"
    return f"{value:.4g}"


class _FieldColumn(ProgressColumn):
    """Shows one number from the task's fields, e.g. the current LR."""

    def __init__(self, label: str, field: str, style: str) -> None:
        super().__init__()
        self.label = label
        self.field = field
        self.style = style

    def render(self, task: Task) -> Text:
        return Text(f"{self.label} {_fmt(task.fields.get(self.field))}", style=self.style)


class RangeTestProgress:
    """Context manager that renders the range test's progress; pass `update` as the engine callback."""

    def __init__(
        self, total: int | None, *, console: Console | None = None, disable: bool = False, title: str = ""
    ) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=28),
            MofNCompleteColumn(),
            _FieldColumn("lr", "lr", "cyan"),
            _FieldColumn("loss", "loss", "yellow"),
            _FieldColumn("best", "best", "green"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=disable,
            transient=False,
        )
        self.task = self.progress.add_task(title or "range test", total=total, lr=None, loss=None, best=None)

    def __enter__(self) -> RangeTestProgress:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def update(self, event: StepEvent) -> None:
        self.progress.update(
            self.task,
            completed=event.step,
            total=event.total,
            lr=event.lr,
            loss=event.loss,
            best=event.best_loss,
        )
