"""Episode partitions: one dynamic partition per episode, keyed `<series>__<episode-stem>`."""

from __future__ import annotations

import dagster as dg

from voice_assets.episode_keys import assign_keys, episode_key, slug

episodes = dg.DynamicPartitionsDefinition(name="episodes")

__all__ = ["assign_keys", "episode_key", "episodes", "slug"]
