"""Shared fixtures: generated demo episodes (cached on disk across runs)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voice_assets.synth import EpisodeSpec, SynthEpisode, cached_episode


@pytest.fixture(scope="session")
def demo_episode() -> SynthEpisode:
    """The default demo episode: three characters, music and effects, .ass subtitles."""
    return cached_episode(EpisodeSpec(series="demo", name="Episode 01", seed=0, index=1))


@pytest.fixture(scope="session")
def demo_episode_2() -> SynthEpisode:
    """A second episode of the same series: same characters, other lines."""
    return cached_episode(EpisodeSpec(series="demo", name="Episode 02", seed=1, index=2))


@pytest.fixture(scope="session")
def synth_episode() -> Callable[..., SynthEpisode]:
    """Factory for variants: synth_episode(silent=True), (music_intro_s=8), (styles="cycle")."""

    def make(**options: object) -> SynthEpisode:
        return cached_episode(EpisodeSpec(**options))  # type: ignore[arg-type]

    return make
