"""Shared fixtures. Each block belongs to one area; add yours as a separate, labelled block."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from voice_assets.synth import EpisodeSpec, SynthEpisode, cached_episode

# --- synthetic demo episodes (voice_assets.synth) ----------------------------------------------
# Rendered once per spec into the synth cache ($VOICE_ASSETS_CACHE/synth, else
# ~/.cache/voice-assets/synth) and reused across sessions: the first run of a fresh machine
# pays ~10 s per episode, later runs nothing. Treat the files as read-only; copy to modify.

DEMO_SPEC = EpisodeSpec(series="demo", name="Episode 01", seed=0, index=1)
# Same series and cast, other lines (and seed), as `voice-assets demo --episodes 2` makes it.
DEMO_SPEC_2 = EpisodeSpec(series="demo", name="Episode 02", seed=1, index=2)


@pytest.fixture(scope="session")
def demo_episode() -> SynthEpisode:
    """The default demo episode: Joe, Grace and Rex over music and effects, ~56 s, .ass with
    Name fields, truth (RTTM, utterances, clean dialogue and background WAVs) beside it."""
    return cached_episode(DEMO_SPEC)


@pytest.fixture(scope="session")
def demo_episode_2() -> SynthEpisode:
    """A second episode of the same series: same characters and theme music, other lines."""
    return cached_episode(DEMO_SPEC_2)


@pytest.fixture(scope="session")
def synth_episode() -> Callable[..., SynthEpisode]:
    """Factory for variants, e.g. synth_episode(name="Silent", silent=True),
    (music_intro_s=8.0), (styles="cycle"), (subtitles=False), (silent=True,
    silent_noise_db=-60.0); any EpisodeSpec field, cached like the defaults."""

    def make(**options: Any) -> SynthEpisode:
        return cached_episode(None, **options)

    return make


# --- a CLI user's home --------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$VOICE_ASSETS_HOME for CLI tests, with no Dagster or Label Studio settings leaking in
    from the environment (a module may define its own `home`, which then wins)."""
    home = tmp_path / "home"
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(home))
    # The CLI sets DAGSTER_HOME itself; set-then-delete makes monkeypatch restore it after.
    monkeypatch.setenv("DAGSTER_HOME", "")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    return home


# --- the GPU profile's environment (tests/test_gpu_profile.py) ---------------------------------
# Those tests need pyannote.audio and whisperx, which pin a torch of their own and so live in
# the GPU profile's environment; `make test` runs them there after the main suite. In the
# main environment they are skipped, saying where they run. With VOICE_ASSETS_PROFILE=gpu a
# missing package is an error, never a skip: CI must not pass by skipping them.


def _gpu_profile_environment() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pyannote.audio", "whisperx"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import os

    if _gpu_profile_environment() or os.environ.get("VOICE_ASSETS_PROFILE") == "gpu":
        return
    skip = pytest.mark.skip(reason="runs in the GPU profile's environment (make test runs it "
                                   "there: VOICE_ASSETS_PROFILE=gpu scripts/setup.sh)")
    for item in items:
        if "gpu_profile" in item.keywords:
            item.add_marker(skip)
