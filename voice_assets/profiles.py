"""Hardware profiles: which backend every model stage runs, chosen by one setting.

``VOICE_ASSETS_PROFILE=cpu`` (the default) runs the embedded models that ship inside PyPI
packages, sized for two cores. ``VOICE_ASSETS_PROFILE=gpu`` runs the design card's heavy
backends: HTDemucs separation, the pyannote.audio community-1 diarization pipeline, Whisper
large-v3 with WhisperX's wav2vec2 word alignment, and insightface faces. The GPU profile needs
its own environment (``VOICE_ASSETS_PROFILE=gpu scripts/setup.sh``: pyannote.audio and
whisperx pin a torch of their own) and its models (``voice-assets models pull --profile gpu``).

A profile only changes the resources' defaults; anything set in a run's config still wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

PROFILE_ENV = "VOICE_ASSETS_PROFILE"
# pyannote.audio and whisperx pin their own torch: they live in the GPU profile's environment.
GPU_ENVIRONMENT = "VOICE_ASSETS_PROFILE=gpu scripts/setup.sh"


@dataclass(frozen=True)
class Profile:
    """Resource settings (by resource key) and the models they need."""

    name: str
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Catalog names `models pull --profile NAME` fetches (embedded ones ship in packages).
    models: tuple[str, ...] = ()

    def resource_settings(self, key: str) -> dict[str, Any]:
        return dict(self.settings.get(key, {}))


# Embedded models from PyPI packages: Spleeter, Resemblyzer embed-cluster, faster-whisper
# tiny.en/base (int8), dlib faces: the resources' own defaults.
CPU = Profile(name="cpu")

# HTDemucs, pyannote community-1, Whisper large-v3 + WhisperX alignment, insightface buffalo_l.
GPU = Profile(
    name="gpu",
    settings={
        "separator": {"backend": "demucs", "demucs_model": "htdemucs"},
        "diarizer": {"backend": "pyannote"},
        "asr": {"backend": "whisperx", "model": "large-v3", "multilingual_model": "large-v3"},
        "face_detector": {"backend": "insightface"},
    },
    models=("htdemucs", "pyannote-diarization-community-1", "whisper-large-v3",
            "wav2vec2-base-960h", "nltk-punkt-tab", "insightface-buffalo_l"),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (CPU, GPU)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile '{name}' (set {PROFILE_ENV} to one of: "
                         f"{', '.join(PROFILES)})") from None


def active_profile() -> Profile:
    """The profile $VOICE_ASSETS_PROFILE names (default: cpu)."""
    return get_profile(os.environ.get(PROFILE_ENV, "").strip().lower() or CPU.name)
