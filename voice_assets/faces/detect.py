"""Face detectors behind one Protocol: boxes, landmarks where the model has them, embeddings.

- ``dlib``: HOG detector, 68-point landmarks and the 128-d ResNet embedding; the weights ship
  in the face-recognition-models package. Real faces and most frontal drawn ones.
- ``insightface``: SCRFD detection (5 keypoints) and ArcFace 512-d embedding, ONNX files from
  the models dir (``voice-assets models pull insightface-buffalo_l``): the choice for films
  and 3D animation.
- ``haar``: OpenCV's frontal-face cascade (ships in opencv): no landmarks, no learned
  embedding; a cheap detector for flat drawn faces.
- ``animeface``: nagadomi's AnimeFace (imager nvxs) detector for anime-style faces, compiled
  into the ``animeface`` package (``pip install animeface==2.0.3``): eyes, nose, mouth and
  chin points, no learned embedding. It looks for anime proportions (large eyes): western
  cartoon faces, like the synthetic demo's Joe, Grace and Rex, are not found.

Every detection also carries an appearance vector (colour histogram of the face), which tells
drawn characters apart where face-identity models, trained on photographs, cannot.
"""

from __future__ import annotations

import ctypes
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
    # (n, 2) image pixels: dlib 68, SCRFD 5, or animeface 6 (ANIMEFACE_POINTS)
    landmarks: np.ndarray | None = None

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
        self.min_face_px = 80.0 / 2 ** upsample  # HOG's 80 px window, upsampled
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
        self.min_face_px = float(min_size)

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


ANIMEFACE_POINTS = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right", "chin")
"""What ``AnimeFaceDetector`` landmarks hold, row by row ("left" and "right" as seen in the
image): eye and mouth-corner points from the eye and mouth boxes, then nose tip and chin."""


class _NvxsImage(ctypes.Structure):
    """Pillow 4.2.1's ``ImagingMemoryInstance``: the layout animeface's ``_nvxs`` extension
    was compiled against (its own ``third_party/Pillow-4.2.1`` headers). Pillow 12 made the
    first field an enum, so from Pillow 12 on, ``animeface.detect(PIL.Image)`` reads the
    height as 0 and finds nothing, silently; this struct gives the extension the layout it
    expects, filled from a numpy image, whatever Pillow is installed."""

    _fields_ = [("mode", ctypes.c_char * 7), ("type", ctypes.c_int), ("depth", ctypes.c_int),
                ("bands", ctypes.c_int), ("xsize", ctypes.c_int), ("ysize", ctypes.c_int),
                ("palette", ctypes.c_void_p), ("image8", ctypes.c_void_p),
                ("image32", ctypes.c_void_p), ("image", ctypes.c_void_p),
                ("block", ctypes.c_void_p), ("pixelsize", ctypes.c_int),
                ("linesize", ctypes.c_int), ("destroy", ctypes.c_void_p)]


class AnimeFaceDetector:
    """AnimeFace (nagadomi's nvxs, compiled into the ``animeface`` package): frontal anime
    faces (+-30 degrees) from about 43 px, with eyes, nose, mouth and chin; no identity
    model (a drawn character's colours, the appearance vector, tell characters apart)."""

    name = "animeface"
    embedding_dim = 0

    def __init__(self) -> None:
        try:
            import animeface
            from animeface import _nvxs
        except ImportError as exc:
            raise ModelMissingError("animeface", "installed Python packages",
                                    "pip install animeface==2.0.3") from exc
        if str(getattr(_nvxs, "__file__", "")).endswith(".py"):  # the stub: no compiled nvxs
            raise ModelMissingError("animeface nvxs extension", _nvxs.__file__,
                                    "pip install --force-reinstall animeface==2.0.3")
        self._face, self._nvxs = animeface.Face, _nvxs
        # The extension reads the image pointer right after the object header, where a ctypes
        # object keeps the address of its buffer (CPython's CDataObject.b_ptr): check it.
        probe = _NvxsImage()
        slot = ctypes.c_void_p.from_address(id(probe) + object.__basicsize__).value
        if slot != ctypes.addressof(probe):
            raise RuntimeError("animeface: cannot hand images to its nvxs extension on this "
                               "Python (CPython's ctypes object layout expected)")

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        pixels = np.zeros((h, w, 4), np.uint8)  # RGBX rows, as Pillow stores "RGB"
        pixels[:, :, :3] = image
        rows = pixels.ctypes.data + np.arange(h, dtype=np.uint64) * np.uint64(4 * w)
        im = _NvxsImage(mode=b"RGB", type=0, depth=8, bands=3, xsize=w, ysize=h,
                        image=rows.ctypes.data, block=pixels.ctypes.data, pixelsize=4,
                        linesize=4 * w)
        out = []
        for raw in self._nvxs.detect(im):
            f = self._face(raw)
            box = f.face.pos
            eyes = sorted((e.x + e.width / 2, e.y + e.height / 2)
                          for e in (f.left_eye.pos, f.right_eye.pos))
            m = f.mouth.pos
            points = np.array([*eyes, (f.nose.pos.x, f.nose.pos.y),
                               (m.x, m.y + m.height / 2), (m.x + m.width, m.y + m.height / 2),
                               (f.chin.pos.x, f.chin.pos.y)], dtype=np.float32)
            out.append(Detection((float(box.x), float(box.y), float(box.x + box.width),
                                  float(box.y + box.height)), float(f.likelihood), points))
        return out

    def embed(self, image: np.ndarray, detection: Detection) -> np.ndarray | None:
        return None

    def refine(self, image: np.ndarray, box: tuple[float, float, float, float]
               ) -> Detection | None:
        return None  # the parts come from the detector pass only
