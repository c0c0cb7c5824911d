"""The picture track: the speaking character's face, its mouth opening with the speech.

Faces are real photos cropped from an image that ships in the insightface package, so the
default face detectors (OpenCV Haar, dlib HOG) find them; the mouth is a dark ellipse whose
height follows the character's speech envelope frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from voice_assets.models import package_file

WIDTH, HEIGHT, FPS = 320, 240, 10
FACE_SIZE = 200
# Face boxes (x, y, size) that OpenCV's frontal Haar cascade finds in insightface's t1.jpg.
_FACE_BOXES = ((448, 271, 139), (561, 386, 116), (729, 356, 114))


@dataclass(frozen=True)
class Face:
    pixels: np.ndarray  # FACE_SIZE x FACE_SIZE x 3 RGB
    mouth: tuple[int, int]  # (x, y) in face pixels
    mouth_width: int


@cache
def faces() -> tuple[Face, ...]:
    import cv2

    path = package_file("insightface", "insightface/data/images/t1.jpg")
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    out = []
    for x, y, s in _FACE_BOXES:
        margin = int(0.45 * s)
        x0, y0 = max(0, x - margin), max(0, y - margin)
        crop = image[y0 : y + s + margin, x0 : x + s + margin]
        scale = FACE_SIZE / crop.shape[0]
        crop = cv2.resize(crop, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
        mouth = (int((x + s / 2 - x0) * scale), int((y + 0.80 * s - y0) * scale))
        out.append(Face(crop, mouth, int(0.16 * s * scale)))
    return tuple(out)


def render(speaker_at: list[int], openness: np.ndarray) -> list[np.ndarray]:
    """One RGB frame per video frame: `speaker_at[i]` is the character index on screen,
    `openness[i]` in [0, 1] how far its mouth is open."""
    import cv2

    cast = faces()
    frames = []
    for who, amount in zip(speaker_at, openness, strict=True):
        frame = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        face = cast[who % len(cast)]
        pic = face.pixels.copy()
        if amount > 0.05:
            axes = (face.mouth_width, max(1, int(amount * face.mouth_width * 0.8)))
            cv2.ellipse(pic, face.mouth, axes, 0, 0, 360, (60, 15, 20), -1)
        top, left = (HEIGHT - FACE_SIZE) // 2, (WIDTH - FACE_SIZE) // 2
        frame[top : top + FACE_SIZE, left : left + FACE_SIZE] = pic
        frames.append(frame)
    return frames
