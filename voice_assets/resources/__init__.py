"""ConfigurableResources that wrap models and services, and the default set."""

from __future__ import annotations

from typing import Any

from voice_assets.paths import Layout
from voice_assets.resources.asr import AlignmentResource, ASRResource
from voice_assets.resources.diarizer import DiarizerResource
from voice_assets.resources.emotion import EmotionRecognizer
from voice_assets.resources.faces import FaceDetectorResource
from voice_assets.resources.label_studio import label_studio_resource
from voice_assets.resources.separator import SeparatorResource
from voice_assets.resources.storage import StorageResource
from voice_assets.resources.tables import tables_io_manager
from voice_assets.resources.voice_trainer import VoiceTrainerResource


def default_resources(layout: Layout | None = None) -> dict[str, Any]:
    """The resources the code location runs with, rooted at $VOICE_ASSETS_HOME."""
    layout = layout or Layout.from_env()
    return {
        "io_manager": tables_io_manager(layout.database),
        "storage": StorageResource(home=str(layout.home)),
        "separator": SeparatorResource(),
        "diarizer": DiarizerResource(),
        "label_studio": label_studio_resource(layout),
        "asr": ASRResource(home=str(layout.home)),
        "alignment": AlignmentResource(),
        "emotion_recognizer": EmotionRecognizer(home=str(layout.home)),
        "face_detector": FaceDetectorResource(),
        "voice_trainer": VoiceTrainerResource(),
    }
