"""ConfigurableResources that wrap models and services, and the default set."""

from __future__ import annotations

from typing import Any

from voice_assets.paths import Layout
from voice_assets.profiles import Profile, active_profile
from voice_assets.resources.asr import AlignmentResource, ASRResource
from voice_assets.resources.diarizer import DiarizerResource
from voice_assets.resources.emotion import EmotionRecognizer
from voice_assets.resources.faces import FaceDetectorResource
from voice_assets.resources.label_studio import label_studio_resource
from voice_assets.resources.separator import SeparatorResource
from voice_assets.resources.storage import StorageResource
from voice_assets.resources.tables import tables_io_manager
from voice_assets.resources.voice_trainer import VoiceTrainerResource


def model_resources(layout: Layout, profile: Profile) -> dict[str, Any]:
    """The model resources with the profile's backends (the bench builds its stages from
    these too, so it measures what the code location runs)."""
    home = str(layout.home)
    cfg = profile.resource_settings
    return {
        "separator": SeparatorResource(**cfg("separator")),
        "diarizer": DiarizerResource(**cfg("diarizer")),
        "asr": ASRResource(home=home, **cfg("asr")),
        "alignment": AlignmentResource(**cfg("alignment")),
        "emotion_recognizer": EmotionRecognizer(home=home, **cfg("emotion_recognizer")),
        "face_detector": FaceDetectorResource(**cfg("face_detector")),
        "voice_trainer": VoiceTrainerResource(**cfg("voice_trainer")),
    }


def default_resources(layout: Layout | None = None,
                      profile: Profile | None = None) -> dict[str, Any]:
    """The resources the code location runs with, rooted at $VOICE_ASSETS_HOME, with the
    backends of $VOICE_ASSETS_PROFILE (default: cpu)."""
    layout = layout or Layout.from_env()
    return {
        "io_manager": tables_io_manager(layout.database),
        "storage": StorageResource(home=str(layout.home)),
        "label_studio": label_studio_resource(layout),
        **model_resources(layout, profile or active_profile()),
    }
