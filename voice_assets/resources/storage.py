"""Where binaries go: the episode/asset folder layout under $VOICE_ASSETS_HOME."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from voice_assets.paths import Layout


class StorageResource(dg.ConfigurableResource):
    """Root of the on-disk store; assets ask it for their per-episode folder."""

    home: str

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.home))

    def episode_dir(self, episode: str, asset: str) -> Path:
        path = self.layout.episode_dir(episode, asset)
        path.mkdir(parents=True, exist_ok=True)
        return path
