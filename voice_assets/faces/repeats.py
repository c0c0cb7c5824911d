"""Work not done twice on a face or a frame that has not changed.

Animation holds its drawings: a character's face comes back pixel for pixel whenever the same
setup returns (a conversation cutting between two angles), and within a shot only the mouth
moves. Two savings follow, both exact where the pixels repeat and inert where they do not:

- ``ReusedEmbeddings``: a face whose eye-aligned grey thumbnail matches one already embedded in
  this episode (correlation >= ``min_correlation``) takes that embedding instead of another
  ResNet pass (77 ms on 2 cores with dlib). On live action the same person's thumbnails
  correlate below the threshold, so every face is embedded as before.
- ``PassMemory``: a detector pass on a frame that differs from an earlier pass's frame only by
  a mouth's worth of pixels (the same shot held, or the same setup cut back to) reuses that
  pass's boxes; the caller reads the landmarks again. A pan, a move or a new face changes far
  more pixels, and gets a detector pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from voice_assets.faces.detect import Detection

THUMB = 40  # side of the aligned face thumbnail
FRAME_THUMB = (80, 60)  # the frame, shrunk, for the still-frame test
REUSE_CORRELATION = 0.95  # thumbnails this alike share an embedding
Embedder = Callable[[np.ndarray, Detection], "np.ndarray | None"]


def _eyes(det: Detection) -> tuple[np.ndarray, np.ndarray] | None:
    marks = det.landmarks
    if marks is None:
        return None
    if len(marks) == 68:
        return marks[36:42].mean(axis=0), marks[42:48].mean(axis=0)
    if len(marks) == 5:  # SCRFD: left eye, right eye, nose, mouth corners
        return marks[0], marks[1]
    return None


def face_thumbnail(image: np.ndarray, det: Detection) -> np.ndarray:
    """The face as a zero-mean, unit-norm grey thumbnail, rotated and scaled so the eyes sit at
    fixed points (the box alone where there are no eye landmarks)."""
    eyes = _eyes(det)
    if eyes is not None and float(np.linalg.norm(eyes[1] - eyes[0])) > 2.0:
        left, right = eyes
        # Eyes at 30% and 70% of the width, 40% down: the face from brow to chin.
        dx, dy = right - left
        scale = 0.4 * THUMB / float(np.hypot(dx, dy))
        angle = float(np.degrees(np.arctan2(dy, dx)))
        centre = (float((left[0] + right[0]) / 2), float((left[1] + right[1]) / 2))
        m = cv2.getRotationMatrix2D(centre, angle, scale)
        m[0, 2] += 0.5 * THUMB - centre[0]
        m[1, 2] += 0.4 * THUMB - centre[1]
        patch = cv2.warpAffine(np.ascontiguousarray(image), m, (THUMB, THUMB),
                               flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    else:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = (round(v) for v in det.box)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return np.zeros(THUMB * THUMB, np.float32)
        patch = cv2.resize(np.ascontiguousarray(image[y0:y1, x0:x1]), (THUMB, THUMB),
                           interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32).reshape(-1)
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-6)


class ReusedEmbeddings:
    """An embedder that embeds each distinct look of a face once per episode (see module)."""

    def __init__(self, embed: Embedder, min_correlation: float = REUSE_CORRELATION) -> None:
        self._embed, self.min_correlation = embed, min_correlation
        self._thumbs: list[np.ndarray] = []
        self._embeddings: list[np.ndarray] = []
        self.computed = self.reused = 0

    def __call__(self, image: np.ndarray, det: Detection) -> np.ndarray | None:
        thumb = face_thumbnail(image, det)
        if self._thumbs:
            corr = np.stack(self._thumbs) @ thumb
            best = int(np.argmax(corr))
            if corr[best] >= self.min_correlation:
                self.reused += 1
                return self._embeddings[best]
        emb = self._embed(image, det)
        self.computed += 1
        if emb is not None:
            self._thumbs.append(thumb)
            self._embeddings.append(emb)
        return emb


def frame_thumbnail(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(np.ascontiguousarray(image), FRAME_THUMB, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32).reshape(-1)


@dataclass(frozen=True)
class _Pass:
    thumb: np.ndarray
    detections: list[Detection]
    full: bool  # run on the full-size frame (finds the smallest faces)


class PassMemory:
    """The episode's recent detector passes, to reuse on a frame that has not changed.

    A frame matches a pass when at most ``max_changed`` of the thumbnails' pixels differ by
    more than ``level`` grey levels (two talking mouths are well under 1%). A pass that must
    run at full size only reuses a full-size pass.
    """

    def __init__(self, size: int = 64, max_changed: float = 0.01, level: float = 12.0) -> None:
        self.size, self.max_changed, self.level = size, max_changed, level
        self._passes: list[_Pass] = []

    def match(self, thumb: np.ndarray, full: bool) -> list[Detection] | None:
        candidates = [p for p in self._passes if p.full or not full]
        if not candidates:
            return None
        changed = (np.abs(np.stack([p.thumb for p in candidates]) - thumb) > self.level).mean(
            axis=1)
        best = int(np.argmin(changed[::-1]))  # the most recent of the closest
        best = len(candidates) - 1 - best
        return candidates[best].detections if changed[best] <= self.max_changed else None

    def remember(self, thumb: np.ndarray, detections: list[Detection], full: bool) -> None:
        self._passes.append(_Pass(thumb, detections, full))
        del self._passes[:-self.size]
