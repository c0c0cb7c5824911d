"""Free space: fail before a run starts on a nearly full disk, and name a full disk when a
write fails on it (the raw errors are `[Errno 28]`, libsndfile's `System error.`, SQLite's
`disk I/O error` or DuckDB's I/O errors, none of which says what to do)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from voice_assets.errors import DiskFullError

# Below this a write that failed for an unclear reason is taken for a full disk.
NEARLY_FULL_BYTES = 64 * 2**20
# A run needs room for its stems and clips: refuse to start one with less than this free.
MIN_FREE_TO_RUN_BYTES = 512 * 2**20


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the filesystem of ``path`` (or of its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def as_disk_full(exc: BaseException, path: str | Path) -> DiskFullError | None:
    """A DiskFullError for ``exc`` when it was caused by a full disk at ``path``, else None."""
    if isinstance(exc, DiskFullError):
        return exc
    free = free_bytes(path)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(path, free, exc.strerror or "")
    text = str(exc).lower()
    io_like = any(t in text for t in ("no space left", "disk i/o error", "system error",
                                      "disk full", "could not write", "failed to write"))
    if io_like and free is not None and free < NEARLY_FULL_BYTES:
        return DiskFullError(path, free, str(exc).splitlines()[0][:200])
    return None


def require_free_space(path: str | Path, need: int = MIN_FREE_TO_RUN_BYTES) -> None:
    """Raise DiskFullError before any work when ``path``'s disk has less than ``need`` free."""
    free = free_bytes(path)
    if free is not None and free < need:
        raise DiskFullError(path, free, f"a run needs at least {need / 2**20:.0f} MiB")
