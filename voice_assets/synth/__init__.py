"""Demo and test episodes generated from scratch, with their ground truth (no dagster)."""

from voice_assets.synth.episode import (
    EpisodeSpec,
    SynthEpisode,
    Utterance,
    cached_episode,
    demo_episode,
    generate_episode,
)

__all__ = [
    "EpisodeSpec",
    "SynthEpisode",
    "Utterance",
    "cached_episode",
    "demo_episode",
    "generate_episode",
]
