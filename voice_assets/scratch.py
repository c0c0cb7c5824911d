"""Per-run scratch folders and run-worker liveness (no dagster).

Every process that executes a run writes its temp files into one folder,
``$VOICE_ASSETS_HOME/tmp/<run id>-<pid>/``, instead of beside each artifact. A run killed
with ``kill -9`` therefore leaves one folder, which the next run removes once it sees that the
process that owned it is gone; a live concurrent run keeps its own.

A worker is named ``<host>:<pid>:<process start time>``: a pid reused by a later process is
not mistaken for the old one (the start time differs), and a worker on another host is never
judged from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

OWNER_FILE = "owner.json"
SCRATCH_DIR = "tmp"
# A folder without an owner file (killed between mkdir and writing it) is left this long.
ORPHAN_GRACE_S = 600.0


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat.rsplit(")", 1)[-1].split() or None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, None where unknown."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def worker_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie (exited, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return fields is None or fields[0] != "Z"


def worker_alive(worker: str) -> bool | None:
    """True/False for a worker of this host, None for another host's (or a malformed name)."""
    host, _, rest = worker.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if not pid_alive(pid):
        return False
    now = _start_time(pid)
    return started in ("?", "") or now is None or now == started


def scratch_root(home: Path) -> Path:
    return Path(home) / SCRATCH_DIR


def open_scratch(home: Path, run_id: str) -> Path:
    """Create this process's scratch folder for ``run_id`` and record its owner."""
    folder = scratch_root(home) / f"{run_id}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    owner = {"worker": worker_id(), "run_id": run_id, "created": time.time()}
    (folder / OWNER_FILE).write_text(json.dumps(owner))
    return folder


def close_scratch(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _owner_gone(folder: Path, now: float) -> bool:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        worker = str(owner["worker"])
    except (OSError, ValueError, KeyError, TypeError):
        with contextlib.suppress(OSError):
            return now - folder.stat().st_mtime > ORPHAN_GRACE_S
        return False
    return worker_alive(worker) is False


def sweep(home: Path) -> list[Path]:
    """Remove the scratch folders of processes that are gone; return what was removed."""
    root = scratch_root(home)
    if not root.is_dir():
        return []
    removed: list[Path] = []
    now = time.time()
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and _owner_gone(folder, now):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
