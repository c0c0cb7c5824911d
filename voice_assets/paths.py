"""Where everything lives under $VOICE_ASSETS_HOME (default ./data)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = frozenset({".mkv", ".mp4", ".webm", ".avi", ".ts", ".m2ts"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".m4a", ".opus"})
MEDIA_SUFFIXES = VIDEO_SUFFIXES | AUDIO_SUFFIXES
SUBTITLE_SUFFIXES = (".ass", ".ssa", ".srt", ".vtt")


def default_home() -> Path:
    return Path(os.environ.get("VOICE_ASSETS_HOME", "data")).resolve()


@dataclass(frozen=True)
class Layout:
    """The on-disk layout: binaries per episode and asset, one DuckDB file for tables."""

    home: Path

    @classmethod
    def from_env(cls) -> Layout:
        return cls(default_home())

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def database(self) -> Path:
        # Not "voice_assets.duckdb": DuckDB names the catalog after the file, which would
        # clash with the schema "voice_assets".
        return self.home / "tables.duckdb"

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
        return self.home / "episodes" / episode / asset
