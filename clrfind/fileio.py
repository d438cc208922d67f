"""clrfind's own files: atomic writes (a crash or Ctrl-C mid-write never leaves a truncated output behind) and
one reader for the JSON/YAML files it wrote (results, schedules, sweeps), with the same one-line errors."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from clrfind.errors import ClrfindError, OutputError, UsageError, one_line

# Marks a folder a run is writing into (see `folder_lock`); hidden, and removed when the run ends.
LOCK_NAME = ".clrfind.lock"

# What a write error means for the person who reads it: the fix depends on errno, not on the file. Past a file size
# limit (ulimit -f) a write fails with EFBIG rather than killing the process: CPython ignores SIGXFSZ at startup.
_WRITE_FIXES = {
    errno.ENOSPC: "free some disk space, or pass --out on another disk",
    errno.EDQUOT: "free some of your disk quota, or pass --out on another disk",
    errno.EFBIG: "the file size limit is too low (ulimit -f); raise it",
    errno.EACCES: "check the folder's permissions, or pass --out with a folder you can write to",
    errno.EROFS: "the disk is read-only; pass --out with a folder you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder; pass another path",
    errno.EEXIST: "a part of the path is a file, not a folder; pass another path",
}


# Temporary files staged and not yet renamed or removed: a second Ctrl-C exits at once (`os._exit`, no `finally`),
# and removes these first so no hidden half-run file is left in the folder.
_STAGED: set[Path] = set()


def discard_staged() -> None:
    """Remove every staged temporary file; for an immediate exit, which skips the writers' own clean-up."""
    for tmp in list(_STAGED):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _STAGED.discard(tmp)


def _payload(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _stage(path: Path, payload: bytes) -> Path:
    """The payload in a new temporary file beside `path`, on disk (fsync): the half of a write that can fail.

    Created with mode 0666 minus the umask, as `open()` creates files: mkstemp's 0600 would make results a
    group shares unreadable to the group.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            _STAGED.add(tmp)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _unstage(tmp)
        raise
    return tmp


def _unstage(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    _STAGED.discard(tmp)


def _commit(tmp: Path, path: Path) -> None:
    """Rename the staged file over `path`: atomic on POSIX and Windows, so readers see the old file or the new."""
    try:
        os.replace(tmp, path)
        _STAGED.discard(tmp)
    except BaseException:
        _unstage(tmp)
        raise


def write_reason(exc: OSError) -> str:
    """Why a write failed, in words: `No space left on device`."""
    return exc.strerror or one_line(exc) or type(exc).__name__


def write_fix(exc: OSError) -> str | None:
    return _WRITE_FIXES.get(exc.errno) if exc.errno is not None else None


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash, a full disk or Ctrl-C mid-write leaves the old file or the new one, never half of one.

    Raises:
        OutputError: the file (or its folder) cannot be written; names the path and the reason.
    """
    path = Path(path)
    try:
        _commit(_stage(path, _payload(data)), path)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot write the file ({write_reason(exc)})", hint=write_fix(exc)
        ) from exc
    return path


def write_together(files: Mapping[Path, str | bytes], *, first: Path, stale: list[Path]) -> list[Path]:
    """Write one run's files into a folder so that it never holds files of two runs.

    Every file is staged first; `first` (the results) decides: when it cannot be written, nothing is replaced and
    the folder keeps the previous run as it was. Otherwise every staged file replaces its old one and each path of
    `stale` that this run did not write is removed, so an old plot or schedule never sits beside new results.

    Returns:
        The paths written.

    Raises:
        OutputError: some file could not be written; says which were written and which were not, and why.
    """
    staged: dict[Path, Path] = {}
    failed: dict[Path, OSError] = {}
    try:
        for path, data in files.items():
            try:
                staged[path] = _stage(path, _payload(data))
            except OSError as exc:
                failed[path] = exc
        # The results decide: without them nothing replaces the previous run's files.
        if first in failed:
            raise _not_written([], failed, kept=True)
        try:
            _commit(staged.pop(first), first)
        except OSError as exc:
            raise _not_written([], {first: exc, **failed}, kept=True) from exc
        written = [first]
        for path in list(staged):
            try:
                _commit(staged.pop(path), path)
                written.append(path)
            except OSError as exc:
                failed[path] = exc
    finally:
        for tmp in staged.values():  # only left when the results failed, or on an interrupt
            _unstage(tmp)
    for path in stale:
        if path not in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if failed:
        raise _not_written(written, failed, kept=False)
    return written


def _not_written(written: list[Path], failed: Mapping[Path, OSError], *, kept: bool) -> OutputError:
    """One line: what was written, what was not and why (the first reason; they are usually all the same)."""
    folder = next(iter(failed)).parent
    reason = next(iter(failed.values()))
    names = ", ".join(p.name for p in failed)
    done = f"wrote {', '.join(p.name for p in written)}; " if written else "wrote nothing; "
    keep = "; the folder keeps the previous run's files" if kept and any(p.exists() for p in failed) else ""
    return OutputError(
        f"{folder}: {done}could not write {names} ({write_reason(reason)}){keep}", hint=write_fix(reason)
    )


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder` for one run: a second run into it (another process) is refused instead of mixing files.

    An advisory lock (flock) on a lock file: the kernel drops it when its process dies, so a lock file left by a
    killed run is simply taken over; the file holds the owner's pid for the message. Where flock does not exist
    (Windows) folders are not guarded.

    Raises:
        UsageError: another live process holds the folder.
        OSError: the lock file cannot be created (the caller reports the folder as not writable).
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            raise UsageError(
                f"{folder}: another clrfind run is writing into this folder"
                + (f" (pid {owner})" if owner.isdigit() else ""),
                hint="wait for it to finish, or pass another --out",
            ) from None
        # The previous holder removes the file when it is done: when that happened between our open and our
        # lock, we hold a file nobody else sees, and must lock the one now at `path`.
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def output_file(out: str | None, default: Path) -> Path:
    """Where an `--out` option points: `default` when not given, `default`'s name inside `out` when `out` is a
    folder (an existing one, or a path written with a trailing slash), else `out` itself."""
    if out is None:
        return default
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir():
        return path / default.name
    return path


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` if needed and prove a file can be written there, before any training time is spent.

    Raises:
        OSError: the folder cannot be created or written to.
    """
    path = Path(path)
    _unstage(_stage(path / ".clrfind-write-check", b""))
    return path


def read_document(path: Path, *, error: type[ClrfindError], hint: str, as_json: bool | None = None) -> Any:
    """Decode a JSON or YAML file clrfind wrote; any problem is one `error` naming the file and where it broke.

    `as_json` None picks by suffix (.json is JSON, anything else YAML). Truncated and hand-edited files are the
    usual culprits, hence the line and column and the `hint` (how to write the file again).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a text file ({exc.reason})", hint=hint) from exc
    except OSError as exc:
        raise error(
            f"{path}: cannot read the file ({exc.strerror or exc})", hint="check its permissions"
        ) from exc
    if as_json or (as_json is None and path.suffix.lower() == ".json"):
        try:
            return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
        except json.JSONDecodeError as exc:
            raise error(
                f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
                "the file may be truncated",
                hint=hint,
            ) from exc
        except ValueError as exc:  # a number that is not finite: clrfind writes standard JSON only
            raise error(f"{path}: {exc}; clrfind writes standard JSON only", hint=hint) from exc
        except RecursionError:
            raise error(f"{path}: nested too deeply to be a file clrfind wrote", hint=hint) from None
    import yaml

    from clrfind.spec import yaml_load

    try:
        return yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}: not valid YAML{at}", hint=hint) from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return value
