"""Demo and test episodes generated from scratch, with their ground truth (no dagster)."""

from voice_assets.synth.episode import (
    EpisodeSpec,
    SynthEpisode,
    Utterance,
    cache_root,
    cached_episode,
    demo_episode,
    generate_episode,
)
from voice_assets.synth.script import CAST, DEFAULT_CAST

__all__ = [
    "CAST",
    "DEFAULT_CAST",
    "EpisodeSpec",
    "SynthEpisode",
    "Utterance",
    "cache_root",
    "cached_episode",
    "demo_episode",
    "generate_episode",
]
