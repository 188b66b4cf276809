"""Files written all-or-nothing: a crash or kill leaves the old file or the new one, never a torn one.

Writes go to a temporary file in the same directory, are flushed and fsync'ed, then moved over the
destination with ``os.replace`` (atomic on POSIX) and the directory is fsync'ed. Checkpoints,
plots, run records and downloads all write through here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = ["atomic_write", "write_json", "json_ready", "write_traceback"]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write ``path`` all-or-nothing: ``write(f)`` fills a temp file that then replaces ``path``.

    Args:
      path: destination file; its directory must exist.
      write: called with a binary file object open on a temporary file in the same directory.

    Returns:
      ``Path(path)``. If ``write`` (or anything else) fails, the temporary file is removed and
      an existing ``path`` is left untouched.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = atomic_write(os.path.join(d, "a.txt"), lambda f: f.write(b"hi"))
    ...     p.read_bytes(), os.listdir(d)
    (b'hi', ['a.txt'])
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make run files unreadable to others
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``json.dump(obj)`` to ``path`` atomically (indented, keys in insertion order)."""
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def _json_default(obj):
    """numpy/jax scalars and arrays as plain Python values."""
    if isinstance(obj, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def json_ready(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, arrays lists), for comparisons."""
    return json.loads(json.dumps(obj, default=_json_default))


def write_traceback(error: BaseException) -> Path:
    """Write the traceback of ``error`` to a new ``jaxnets-bug-*.txt`` in the temp directory; return its path."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    fd, path = tempfile.mkstemp(prefix="jaxnets-bug-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(path)
