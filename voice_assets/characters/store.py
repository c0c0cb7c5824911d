"""The voice ledger on disk: one JSON file per series, changed only under an exclusive lock.

Episode runs of one series may run side by side; each links its speakers while holding the
series lock, so the second sees the voices the first created and never mints a duplicate.
The file is replaced atomically, so a crash leaves the previous ledger intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from voice_assets.atomic import atomic_path
from voice_assets.characters.naming import Reference
from voice_assets.characters.voices import Ledger
from voice_assets.errors import VoiceAssetsError

LEDGER_FILE = "voices.json"
REFERENCES_FILE = "references.json"


def ledger_path(home: Path, series: str) -> Path:
    return Path(home) / "characters" / series / LEDGER_FILE


def read_ledger(home: Path, series: str) -> Ledger:
    """The series' ledger (empty when no episode has been mapped yet)."""
    path = ledger_path(home, series)
    if not path.is_file():
        return Ledger(series)
    try:
        return Ledger.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise VoiceAssetsError(
            f"{path}: the voice ledger is unreadable ({exc}); restore it from a backup, or "
            "delete it and re-materialize character_map for every episode of the series "
            "(voice ids are then dealt afresh)"
        ) from exc


def write_ledger(home: Path, ledger: Ledger) -> Path:
    path = ledger_path(home, ledger.series)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(ledger.to_json(), indent=1, sort_keys=True), encoding="utf-8")
    return path


@contextlib.contextmanager
def locked_ledger(home: Path, series: str) -> Iterator[Ledger]:
    """Hold the series lock; yield the current ledger (write it back with ``write_ledger``)."""
    lock = ledger_path(home, series).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield read_ledger(home, series)
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


MAP_TABLE = "character_map"


def load_maps(database: Path, series: str | None = None) -> pl.DataFrame:
    """Materialized ``character_map`` rows (of one series), empty before the first map."""
    from voice_assets.review.corrections import load_table

    if series is None:
        return load_table(database, MAP_TABLE)
    return load_table(database, MAP_TABLE, "series = ?", [series])


def write_references(home: Path, series: str, refs: list[Reference]) -> None:
    """The reference-clip embeddings the last map used, so a sensor can re-resolve names
    without loading a speaker model."""
    path = ledger_path(home, series).with_name(REFERENCES_FILE)
    data = [{"name": r.name, "embedding": [round(v, 6) for v in r.embedding], "model": r.model,
             "path": r.path} for r in refs]
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")


def read_references(home: Path, series: str) -> list[Reference]:
    path = ledger_path(home, series).with_name(REFERENCES_FILE)
    if not path.is_file():
        return []
    return [Reference(d["name"], tuple(d["embedding"]), d["model"], d["path"])
            for d in json.loads(path.read_text(encoding="utf-8"))]
