"""The face detector as a Dagster resource: which backend finds faces, and with what."""

from __future__ import annotations

import threading
from collections.abc import Callable

import dagster as dg
from pydantic import Field

from voice_assets.faces.detect import (
    AnimeFaceDetector,
    DlibDetector,
    FaceDetector,
    HaarDetector,
    InsightFaceDetector,
)
from voice_assets.models import get
from voice_assets.paths import Layout

INSIGHTFACE_DETECTOR = "det_10g.onnx"
INSIGHTFACE_RECOGNIZER = "w600k_r50.onnx"


class FaceDetectorResource(dg.ConfigurableResource):
    """Which detector finds faces in sampled frames.

    ``dlib`` (default: weights ship in a package, 68 landmarks for lip motion, works on
    frontal drawn faces), ``insightface`` (SCRFD + ArcFace from the models dir, for films and
    3D animation), ``haar`` (OpenCV's cascade: boxes only, the cheapest), ``animeface``
    (AnimeFace's detector for anime-style faces, eyes/nose/mouth/chin points; needs
    ``pip install animeface==2.0.3``).
    """

    backend: str = Field(default="dlib", description="dlib | insightface | haar | animeface")
    upsample: int = Field(default=1, description="dlib: image upsampling passes (small faces)")
    min_score: float = Field(default=0.3, description="dlib: HOG detection score to keep a face")
    insightface_model: str = Field(default="insightface-buffalo_l",
                                   description="models-dir entry holding SCRFD and ArcFace")
    det_size: int = Field(default=640, description="insightface: detector input size")
    det_thresh: float = Field(default=0.5, description="insightface: detection threshold")

    def detector(self, layout: Layout | None = None) -> FaceDetector:
        """The configured detector, loaded once per process and settings: runs after the
        first in a process (the daemon's, a celery worker's) reuse it."""
        layout = layout or Layout.from_env()
        try:
            make = BACKENDS[self.backend]
        except KeyError:
            raise ValueError(f"unknown face backend '{self.backend}'; choose one of "
                             f"{', '.join(sorted(BACKENDS))}") from None
        key = (self.model_dump_json(), str(layout.models))
        with _LOCK:
            if key not in _LOADED:
                _LOADED[key] = make(self, layout)
            return _LOADED[key]


_LOADED: dict[tuple[str, str], FaceDetector] = {}
_LOCK = threading.Lock()


def _insightface(res: FaceDetectorResource, layout: Layout) -> FaceDetector:
    root = get(res.insightface_model).require(layout)
    return InsightFaceDetector(root / INSIGHTFACE_DETECTOR, root / INSIGHTFACE_RECOGNIZER,
                               det_size=res.det_size, det_thresh=res.det_thresh)


BACKENDS: dict[str, Callable[[FaceDetectorResource, Layout], FaceDetector]] = {
    "dlib": lambda res, _layout: DlibDetector(upsample=res.upsample, min_score=res.min_score),
    "haar": lambda _res, _layout: HaarDetector(),
    "animeface": lambda _res, _layout: AnimeFaceDetector(),
    "insightface": _insightface,
}
