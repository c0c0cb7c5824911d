"""Atomic file writes: readers never see a half-written artifact, re-runs replace whole files.

Temp files go into the run's scratch folder (`use_scratch`, set by the storage resource for the
length of a run) when it is on the target's filesystem, so a killed run leaves its temp files
in one place that the next run removes (voice_assets/scratch.py); otherwise beside the target.
With a shared store (voice_assets/object_store.py) each committed file is uploaded there too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from voice_assets import object_store
from voice_assets.diskspace import as_disk_full

_scratch: list[Path] = []  # process-wide: domain code and its worker threads see it too
_PREFIX_CHARS = 48  # temp names stay far below the 255-byte file-name limit


@contextlib.contextmanager
def use_scratch(folder: Path) -> Iterator[Path]:
    """Put temp files of every atomic write in this process into ``folder`` meanwhile."""
    _scratch.append(Path(folder))
    try:
        yield Path(folder)
    finally:
        _scratch.remove(Path(folder))


def _temp_dir(target: Path) -> Path:
    """The scratch folder when it shares the target's filesystem (rename stays atomic)."""
    if _scratch:
        folder = _scratch[-1]
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_dev == target.parent.stat().st_dev:
                return folder
    return target.parent


def _prefix(target: Path) -> str:
    return f".{target.name[:_PREFIX_CHARS]}."


@contextlib.contextmanager
def _naming_a_full_disk(target: Path) -> Iterator[None]:
    """Turn the many shapes of "disk full" raised while writing ``target`` into one error
    that says where and what to do."""
    try:
        yield
    except Exception as exc:
        full = as_disk_full(exc, target)
        if full is None or full is exc:
            raise
        raise full from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path (in the run's scratch folder, else beside ``target``); rename it over
    ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=_prefix(target), suffix=suffix or target.suffix or ".tmp", dir=_temp_dir(target)
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _naming_a_full_disk(target):
            yield tmp_path
        # mkstemp creates 0600; give the artifact the permissions a plain open() would.
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
        object_store.committed(target)  # a shared store (VOICE_ASSETS_STORE) gets it too
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temp directory that replaces ``target`` as a whole when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), dir=_temp_dir(target)))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        with _naming_a_full_disk(target):
            yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(target), dir=tmp.parent)) / "old"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)
        object_store.committed(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | Path, text: str) -> Path:
    return write_bytes(target, text.encode("utf-8"))


def write_wav(
    target: str | Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16"
) -> Path:
    """Write float samples in [-1, 1] (frames x channels or mono) as a WAV, atomically."""
    with atomic_path(target, suffix=".wav") as tmp:
        sf.write(tmp, np.asarray(samples), sample_rate, subtype=subtype, format="WAV")
    return Path(target)
