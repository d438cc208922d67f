"""Stop requests (Ctrl-C, SIGTERM) that never cost what a run measured.

A run can stop cleanly only where a stop is caught and turned into a saved result: between training steps (the
engine) and between the self-check's trials. Elsewhere after training starts (analysing the curve, writing the
files) a first stop is held until the block ends, so the files are written whole, and the command then ends with
128 + the signal's number; a second stop still exits at once (files are written atomically, never half).

The CLI installs the handlers (`stop_signals`); the library only marks its blocks (`deferred`, `allowed`), which
change nothing where no handler is installed: a notebook's Ctrl-C stays Python's KeyboardInterrupt.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clrfind.errors import RunInterrupted

# SIGTERM is what `timeout`, Slurm, Kubernetes and torchrun send before they kill: treated as Ctrl-C is.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt(KeyboardInterrupt):
    """A first stop signal, raised where the run can stop; a KeyboardInterrupt, so everything that stops cleanly on
    Ctrl-C stops on it too, and it carries the signal for the message and the exit code."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(stop_detail(self.signum))


def signal_of(exc: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: its own for an `Interrupt`, SIGINT for Python's."""
    return getattr(exc, "signum", int(signal.SIGINT))


def stop_verb(signum: int) -> str:
    """How a run that a signal stopped ended, for one-line errors: `interrupted`, `terminated by SIGTERM`."""
    if signum == signal.SIGINT:
        return "interrupted"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return f"terminated by {name}"


def stop_detail(signum: int) -> str:
    """The stop detail a result records."""
    return "interrupted by the user (Ctrl-C)" if signum == signal.SIGINT else stop_verb(signum)


@dataclass
class _State:
    deferring: bool = False
    pending: int | None = None


_state = _State()


def _request_stop(signum: int) -> None:
    """A first signal: raise where a stop is caught; hold it inside a deferred block."""
    if _state.deferring:
        _state.pending = signum
        return
    raise Interrupt(signum)


def take_pending() -> int | None:
    """The signal held back by a deferred block, if one arrived; cleared, so it is handled once."""
    signum, _state.pending = _state.pending, None
    return signum


@contextmanager
def deferred() -> Iterator[None]:
    """A block a first stop must not cut short (results are being analysed or written); it is held until the block
    ends, for `take_pending` or the next `allowed` block."""
    previous, _state.deferring = _state.deferring, True
    try:
        yield
    finally:
        _state.deferring = previous


@contextmanager
def allowed() -> Iterator[None]:
    """A block that turns a stop into a saved result (the training loop, the trials): a stop held back before it
    is raised at its start, and stops raise inside it."""
    previous, _state.deferring = _state.deferring, False
    try:
        signum = take_pending()
        if signum is not None:
            raise Interrupt(signum)
        yield
    finally:
        _state.deferring = previous


def raise_pending(saved: str) -> None:
    """After a deferred block: a stop that arrived during it ends the command now, saying what was saved."""
    signum = take_pending()
    if signum is not None:
        raise RunInterrupted(f"{stop_verb(signum)} while saving; {saved}", signum=signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Install the handlers for a command: a first Ctrl-C or SIGTERM stops the run cleanly (what was measured is
    saved), a second one exits at once with 128 + its number.

    A signal that is ignored when the command starts (SIGINT under nohup, or in a shell's background job) stays
    ignored, as the user asked. A stop held back after the command's last deferred block ends it here.
    """
    if sys.platform == "win32":
        yield
        return

    def second(signum: int, frame: Any) -> None:
        from clrfind.fileio import discard_staged

        discard_staged()  # files already renamed are whole; the half-staged ones go
        os._exit(128 + signum)

    def first(signum: int, frame: Any) -> None:
        for s in previous:
            signal.signal(s, second)
        _request_stop(signum)

    previous: dict[int, Any] = {}
    try:
        for s in STOP_SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:
                previous[s] = signal.signal(s, first)
    except ValueError:  # not the main thread (e.g. some test runners): keep Python's default behaviour
        pass
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    signum = take_pending()
    if signum is not None:
        raise Interrupt(signum)
