"""clrfind's own files: atomic writes (a crash or Ctrl-C mid-write never leaves a truncated output behind) and
one reader for the JSON/YAML files it wrote (results, schedules, sweeps), with the same one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from clrfind.errors import ClrfindError


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`.

    The rename is atomic on POSIX and Windows, so readers see the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` if needed and prove a file can be written there, before any training time is spent.

    Raises:
        OSError: the folder cannot be created or written to.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".clrfind-write-check.", dir=path)
    os.close(fd)
    os.unlink(tmp)
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
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(
                f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
                "the file may be truncated",
                hint=hint,
            ) from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}: not valid YAML{at}", hint=hint) from exc
