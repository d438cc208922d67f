"""One exception family for everything a user can get wrong or a run can hit.

The CLI renders any `ClrfindError` as a one-line ``error: ...`` with the exit code the class carries; anything else
is a bug in clrfind and is shown as such. The library raises these and never prints or exits.
"""

from __future__ import annotations

import re
import reprlib
import signal
from typing import TypeVar

# What user code can raise that counts as a failure of that code: `sys.exit()` in a step, a model constructor or a
# dataset is a bug there, not a way out of clrfind (it would end the run silently, once with exit 0).
USER_FAILURES: tuple[type[BaseException], ...] = (Exception, SystemExit)

# Longest exception text quoted in a one-line error: enough for the message, short enough for one line.
QUOTE_LIMIT = 300


# Terminal control sequences (colour, bold) that quoted text may carry, as torch's weights_only message does: on
# stderr they would restyle the rest of the line, in a log they are noise.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b")


def without_escapes(text: str) -> str:
    """`text` without terminal control sequences."""
    return _ESCAPES.sub("", text)


def one_line(text: object, limit: int = QUOTE_LIMIT) -> str:
    """Text on one line, for one-line errors: terminal escapes dropped, whitespace and line breaks collapsed, long
    text cut with '...'."""
    flat = " ".join(without_escapes(str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def exception_text(exc: BaseException) -> str:
    """An exception's message on one line; `sys.exit(3) was called` for a SystemExit, whose message is its code."""
    if isinstance(exc, SystemExit):
        return f"sys.exit({exc.code!r}) was called"
    return one_line(exc)


# Longest value quoted in a message: a hostile file can hold a value of gigabytes (YAML aliases) or an integer of
# a million digits, and an error must never pay for printing it.
VALUE_LIMIT = 60
_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple, _REPR.maxset = 3, 6, 6, 6, 6
_REPR.maxstring = _REPR.maxother = VALUE_LIMIT


def short_repr(value: object, limit: int = VALUE_LIMIT) -> str:
    """repr() of a value, bounded in time and length: containers are cut after a few items, huge integers are
    described instead of converted (Python refuses str() of an int over 4300 digits anyway)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        text = _REPR.repr(value)
    except Exception:  # a user object whose __repr__ fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """`ValueError: bad shape` on one line; the class name alone when the exception has no message."""
    text = exception_text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_E = TypeVar("_E", bound="ClrfindError")


class ClrfindError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code: int = 1
    # Already reported by another process of the same job (the torchrun rank whose code failed): the CLI exits
    # with the code and prints nothing, so a failure is reported once.
    reported: bool = False

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None) -> None:
        self.message = message
        self.hint = hint
        # Every problem found when there were several (the message shows the first); `--debug` lists them all.
        self.problems = problems or []
        super().__init__(self.__str__())

    @classmethod
    def from_problems(cls: type[_E], problems: list[str]) -> _E:
        """One error for several problems: the first on one line, ``(+N more problems)``, all kept in `problems`
        (validation checks everything before it stops, so one run of `clrfind check` shows every typo)."""
        more = f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return cls(problems[0] + more, problems=problems)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def reworded(self, *, before: str = "", after: str = "") -> ClrfindError:
        """The same error with context around its message (which run of several, what was kept), hint last."""
        self.message = f"{before}{self.message}{after}"
        self.args = (str(self),)
        return self


class UsageError(ClrfindError):
    """Bad command-line usage or an option value out of range."""

    exit_code = 2


class SpecError(ClrfindError):
    """The spec file is missing, unreadable or invalid; carries every problem found, not just the first."""

    exit_code = 2


class TargetError(ClrfindError):
    """A `target:` cannot be imported, is not callable, or its kwargs do not fit its signature."""

    exit_code = 2


class ResultsError(ClrfindError):
    """A results file is missing, not JSON, truncated or of another schema version."""

    exit_code = 2


class ExportError(ClrfindError):
    """A schedule cannot be exported from the results (no bounds, bad policy or lengths)."""

    exit_code = 2


class SetupError(ClrfindError):
    """Building the model, data, loss or optimizer from the spec failed before training started."""

    exit_code = 2


class RunError(ClrfindError):
    """The range test failed while running; partial results may have been saved (see `partial_path`)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, partial_path: str | None = None) -> None:
        self.partial_path = partial_path
        super().__init__(message, hint=hint)


class OutputError(ClrfindError):
    """An output file could not be written (full disk, file size limit, permissions, a path that is a file)."""

    exit_code = 1


class RunInterrupted(ClrfindError):
    """Ctrl-C or SIGTERM stopped the run; whatever was recorded has been saved. Exits 128 + the signal's number
    (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process a signal ended."""

    def __init__(self, message: str, *, hint: str | None = None, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(message, hint=hint)


class ClrfindWarning(UserWarning):
    """Something works but may not do what the user expects (bounds measured with another optimizer); the library
    warns through `warnings` and never prints, so a caller can filter or raise it like any warning."""
