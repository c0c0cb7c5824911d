"""Where everything lives under $VOICE_ASSETS_HOME (default ./data)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from voice_assets.errors import PartitionKeyError

VIDEO_SUFFIXES = frozenset({".mkv", ".mp4", ".webm", ".avi", ".ts", ".m2ts"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".m4a", ".opus"})
MEDIA_SUFFIXES = VIDEO_SUFFIXES | AUDIO_SUFFIXES
SUBTITLE_SUFFIXES = (".ass", ".ssa", ".srt", ".vtt")
MAX_COMPONENT_BYTES = 200


def component(name: str, what: str) -> str:
    """``name`` when it is one safe path component (no separator, not hidden, not '.' or
    '..', not too long); PartitionKeyError naming ``what`` otherwise. Every name that becomes a
    folder under the home (episode keys, series) passes here, so no write lands outside it."""
    bad = (
        not name
        or name.startswith(".")
        or any(ch in name for ch in "/\\\0")
        or len(name.encode("utf-8")) > MAX_COMPONENT_BYTES
    )
    if bad:
        raise PartitionKeyError(
            f"{what} {name!r} cannot name a folder (empty, hidden, a path, or over "
            f"{MAX_COMPONENT_BYTES} bytes); episode keys and series come from `voice-assets "
            "ingest` or the inbox folders, which make them safe"
        )
    return name


def default_home() -> Path:
    return Path(os.environ.get("VOICE_ASSETS_HOME", "data")).resolve()


@dataclass(frozen=True)
class Layout:
    """The on-disk layout: binaries per episode and asset; tables in one DuckDB file or in
    Parquet files (``voice_assets/parquet_store.py``)."""

    home: Path

    @classmethod
    def from_env(cls) -> Layout:
        return cls(default_home())

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def database(self) -> Path:
        """The tables: a DuckDB file, or a folder of Parquet files (VOICE_ASSETS_TABLES)."""
        from voice_assets.parquet_store import tables_location

        return tables_location(self.home)

    @property
    def models(self) -> Path:
        return Path(os.environ.get("VOICE_ASSETS_MODELS", self.home / "models"))

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    @property
    def label_studio(self) -> Path:
        return self.home / "label-studio"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    def episode_dir(self, episode: str, asset: str) -> Path:
        """Directory for one asset's binaries of one episode: episodes/<key>/<asset>/."""
        return self.home / "episodes" / component(episode, "episode key") / asset

    def series_dir(self, root: Path, series: str) -> Path:
        """``root/<series>`` for a per-series output (exports, split ledger)."""
        return Path(root) / component(series, "series")
