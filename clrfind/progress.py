"""A rich progress bar fed by the engine's callback: LR, loss, best loss and ETA, one line, redrawn in place.

The engine only calls `update(event)`; this module owns all rendering. The CLI and `clrfind.range_test` both get
the bar from `progress_callback`: on a terminal it is redrawn in place, in a Jupyter notebook rich renders it in the
cell's output; elsewhere (a pipe, a log file, CI), or with --quiet / `progress=False`, nothing is rendered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def progress_callback(
    title: str,
    total: int | None,
    *,
    console: Console | None = None,
    enabled: bool = True,
    also: Callable[[StepEvent], None] | None = None,
) -> Iterator[Callable[[StepEvent], None] | None]:
    """The engine's callback while the block runs: the bar's `update` (on `console`, default stderr), followed by
    `also` (a caller's own callback) when given.

    No bar where nobody would see it (disabled, or the console is neither a terminal nor a notebook): a bar written
    to a pipe or a log is noise. The callback is then `also`, or None.
    """
    console = console or Console(stderr=True)
    if not enabled or not (console.is_terminal or console.is_jupyter):
        yield also
        return
    with RangeTestProgress(total, console=console, title=title) as bar:
        if also is None:
            yield bar.update
            return

        def both(event: StepEvent) -> None:
            bar.update(event)
            also(event)

        yield both
