"""Partitions: one per episode (`<series>__<episode-stem>`) and one per series character
(`<series>__<character-slug>`, the voice models)."""

from __future__ import annotations

import dagster as dg

from voice_assets.episode_keys import assign_keys, episode_key, slug

episodes = dg.DynamicPartitionsDefinition(name="episodes")
characters = dg.DynamicPartitionsDefinition(name="characters")


def character_key(series: str, character: str) -> str:
    """The `characters` partition of a series character: `<series>__<character-slug>`."""
    return f"{series}__{slug(character)}"


__all__ = ["assign_keys", "character_key", "characters", "episode_key", "episodes", "slug"]
