"""Face detectors behind one Protocol: boxes, landmarks where the model has them, embeddings.

- ``dlib``: HOG detector, 68-point landmarks and the 128-d ResNet embedding; the weights ship
  in the face-recognition-models package. Real faces and most frontal drawn ones.
- ``insightface``: SCRFD detection (5 keypoints) and ArcFace 512-d embedding, ONNX files from
  the models dir (``voice-assets models pull insightface-buffalo_l``): the choice for films
  and 3D animation.
- ``haar``: OpenCV's frontal-face cascade (ships in opencv): no landmarks, no learned
  embedding; a cheap detector for flat drawn faces.

Every detection also carries an appearance vector (colour histogram of the face), which tells
drawn characters apart where face-identity models, trained on photographs, cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from voice_assets.errors import ModelMissingError

APPEARANCE_BINS = (8, 4, 4)  # hue, saturation, value


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float
    landmarks: np.ndarray | None = None  # (n, 2) image pixels: dlib 68 or SCRFD 5 points

    @property
    def size(self) -> float:
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class FaceDetector(Protocol):
    name: str
    embedding_dim: int

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image (boxes, scores, landmarks where the model has them)."""
        ...

    def embed(self, image: np.ndarray, detection: Detection) -> np.ndarray | None:
        """The identity embedding of one detected face (unit vector), None without a model.
        Separate from ``detect`` because it costs more: a track embeds only a few faces."""
        ...

    def refine(self, image: np.ndarray, box: tuple[float, float, float, float]
               ) -> Detection | None:
        """The face in ``box`` again with fresh landmarks, without a detector pass (frames
        between detections); None when the backend has no landmark model of its own."""
        ...


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def appearance(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Unit HSV histogram of the face box widened to take in hair: a drawn character's
    colours are its identity as much as its shape."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    xa, xb = int(max(0, x0 - 0.15 * bw)), int(min(w, x1 + 0.15 * bw))
    ya, yb = int(max(0, y0 - 0.35 * bh)), int(min(h, y1 + 0.05 * bh))
    if xb <= xa or yb <= ya:
        return np.zeros(int(np.prod(APPEARANCE_BINS)), np.float32)
    hsv = cv2.cvtColor(np.ascontiguousarray(image[ya:yb, xa:xb]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(APPEARANCE_BINS),
                        [0, 180, 0, 256, 0, 256])
    return _unit(np.sqrt(hist.reshape(-1)))


class DlibDetector:
    """dlib's HOG frontal-face detector, 68 landmarks and ResNet embedding (weights from the
    face-recognition-models package)."""

    name = "dlib"
    embedding_dim = 128

    def __init__(self, upsample: int = 1, min_score: float = 0.3) -> None:
        import dlib
        import face_recognition_models as weights

        self.upsample, self.min_score = upsample, min_score
        self._detector = dlib.get_frontal_face_detector()
        self._shapes = dlib.shape_predictor(weights.pose_predictor_model_location())
        self._encoder = dlib.face_recognition_model_v1(weights.face_recognition_model_location())
        self._dlib = dlib

    def detect(self, image: np.ndarray) -> list[Detection]:
        image = np.ascontiguousarray(image)
        rects, scores, _ = self._detector.run(image, self.upsample, self.min_score)
        out = []
        for rect, score in zip(rects, scores, strict=True):
            shape = self._shapes(image, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            box = (float(rect.left()), float(rect.top()), float(rect.right()),
                   float(rect.bottom()))
            out.append(Detection(box, float(score), points))
        return out

    def embed(self, image: np.ndarray, detection: Detection) -> np.ndarray | None:
        x0, y0, x1, y1 = (round(v) for v in detection.box)
        rect = self._dlib.rectangle(x0, y0, x1, y1)
        image = np.ascontiguousarray(image)
        shape = self._shapes(image, rect)
        return _unit(np.array(self._encoder.compute_face_descriptor(image, shape)))

    def refine(self, image: np.ndarray, box: tuple[float, float, float, float]
               ) -> Detection | None:
        x0, y0, x1, y1 = (round(v) for v in box)
        shape = self._shapes(np.ascontiguousarray(image), self._dlib.rectangle(x0, y0, x1, y1))
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        return Detection(box, 0.0, points)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (shipped with opencv): boxes only."""

    name = "haar"
    embedding_dim = 0

    def __init__(self, min_size: int = 40, min_neighbors: int = 5) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ModelMissingError("haarcascade_frontalface_default", path,
                                    "pip install 'opencv-python-headless<5'")
        self.min_size, self.min_neighbors = min_size, min_neighbors

    def detect(self, image: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        return [Detection((float(x), float(y), float(x + w), float(y + h)), float(s))
                for (x, y, w, h), s in zip(boxes, np.ravel(weights), strict=True)]

    def embed(self, image: np.ndarray, detection: Detection) -> np.ndarray | None:
        return None

    def refine(self, image: np.ndarray, box: tuple[float, float, float, float]
               ) -> Detection | None:
        return None


class InsightFaceDetector:
    """SCRFD + ArcFace through insightface's own model classes, from local ONNX files."""

    name = "insightface"
    embedding_dim = 512

    def __init__(self, detector_path: Path, recognizer_path: Path | None,
                 det_size: int = 640, det_thresh: float = 0.5) -> None:
        from insightface.model_zoo import get_model

        if not Path(detector_path).is_file():
            raise ModelMissingError("insightface detector", detector_path,
                                    "voice-assets models pull insightface-buffalo_l")
        self._det = get_model(str(detector_path), providers=["CPUExecutionProvider"])
        self._det.prepare(ctx_id=-1, input_size=(det_size, det_size), det_thresh=det_thresh)
        self._rec = None
        if recognizer_path is not None:
            if not Path(recognizer_path).is_file():
                raise ModelMissingError("insightface recognizer", recognizer_path,
                                        "voice-assets models pull insightface-buffalo_l")
            self._rec = get_model(str(recognizer_path), providers=["CPUExecutionProvider"])
            self._rec.prepare(ctx_id=-1)

    def detect(self, image: np.ndarray) -> list[Detection]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        boxes, kps = self._det.detect(bgr)
        return [Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(b[4]),
                          kps[i].astype(np.float32) if kps is not None else None)
                for i, b in enumerate(boxes)]

    def embed(self, image: np.ndarray, detection: Detection) -> np.ndarray | None:
        from insightface.app.common import Face

        if self._rec is None or detection.landmarks is None:
            return None
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        face = Face(bbox=np.array(detection.box), kps=detection.landmarks,
                    det_score=detection.score)
        return _unit(self._rec.get(bgr, face))

    def refine(self, image: np.ndarray, box: tuple[float, float, float, float]
               ) -> Detection | None:
        return None  # SCRFD's five keypoints have no lips
