"""Detections linked into face tracks, split at shot changes, with a mouth-activity series.

A track is one face within one shot. Detections (a few per second) are linked one-to-one to
the open tracks (Hungarian on box overlap, refused when the face's colours disagree); a shot
change (the frame's colour histogram jumps) ends every track, and a face unseen for
``max_gap_s`` ends its track. Between detections the mouth is read at frame rate from the
track's last box, so mouth activity (how much the mouth region changes from frame to frame:
pixel motion, which works for drawn mouths as for real ones, plus the lip-gap change where
68 landmarks exist) follows syllables, not just lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from voice_assets.faces.detect import Detection, appearance
from voice_assets.faces.speaking import TrackActivity

MOUTH_SIZE = (32, 16)  # width, height of the normalised mouth patch
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackConfig:
    min_iou: float = 0.3
    min_appearance: float = 0.6  # cosine of the colour histograms to link
    max_gap_s: float = 1.5
    follow_s: float = 0.8  # read the mouth from the last box for this long after a detection
    shot_change: float = 0.45  # 1 - correlation of frame histograms that marks a cut
    min_detections: int = 2
    crops_per_track: int = 3
    embed_after: int = 3  # detections before a track is worth an identity embedding
    max_mouth_step_s: float = 0.2  # consecutive mouth samples further apart are not compared


@dataclass
class Observation:
    t: float
    det: Detection
    appearance: np.ndarray
    mouth_region: Box
    crop: np.ndarray | None = None
    embedding: np.ndarray | None = None


@dataclass
class FaceTrack:
    track_id: int
    shot: int
    obs: list[Observation] = field(default_factory=list)
    mouth_t: list[float] = field(default_factory=list)
    mouth_patch: list[np.ndarray] = field(default_factory=list)
    mouth_open: list[float] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.obs[0].t

    @property
    def end(self) -> float:
        return max(self.obs[-1].t, self.mouth_t[-1] if self.mouth_t else self.obs[-1].t)

    @property
    def times(self) -> np.ndarray:
        """Times of the mouth samples (every frame read while the track was open)."""
        return np.array(self.mouth_t)

    def embedding(self) -> np.ndarray | None:
        embs = [o.embedding for o in self.obs if o.embedding is not None]
        if not embs:
            return None
        v = np.mean(np.stack(embs), axis=0)
        return v / max(float(np.linalg.norm(v)), 1e-9)

    def appearance(self) -> np.ndarray:
        v = np.mean(np.stack([o.appearance for o in self.obs]), axis=0)
        return v / max(float(np.linalg.norm(v)), 1e-9)

    def mean_box(self) -> Box:
        b = np.mean(np.array([o.det.box for o in self.obs]), axis=0)
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))

    def motion(self, max_step_s: float = 0.2) -> np.ndarray:
        """Raw mouth motion at each mouth sample: mean absolute change of the mouth patch from
        the previous sample plus the lip-gap change (0 where the previous sample is too far
        back to compare)."""
        n = len(self.mouth_t)
        out = np.zeros(n, np.float32)
        for i in range(1, n):
            if self.mouth_t[i] - self.mouth_t[i - 1] > max_step_s:
                continue
            out[i] = float(np.mean(np.abs(self.mouth_patch[i] - self.mouth_patch[i - 1])))
            a, b = self.mouth_open[i], self.mouth_open[i - 1]
            if np.isfinite(a) and np.isfinite(b):
                out[i] += 4.0 * abs(a - b)
        return out

    def activity(self, window_s: float = 0.5) -> np.ndarray:
        """Mouth activity: the motion averaged over ``window_s`` around each sample, so it
        follows words and pauses rather than single syllables."""
        raw, t = self.motion(), self.times
        if raw.size == 0:
            return raw
        lo = np.searchsorted(t, t - window_s / 2, side="left")
        hi = np.searchsorted(t, t + window_s / 2, side="right")
        csum = np.concatenate([[0.0], np.cumsum(raw, dtype=np.float64)])
        return ((csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)).astype(np.float32)

    def crops(self) -> list[np.ndarray]:
        return [o.crop for o in self.obs if o.crop is not None]

    def activity_series(self) -> TrackActivity:
        return TrackActivity(self.track_id, self.times, self.activity())


def frame_histogram(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (64, 48), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, None).reshape(-1)


def is_cut(previous: np.ndarray | None, current: np.ndarray, threshold: float) -> bool:
    if previous is None:
        return True
    corr = cv2.compareHist(previous.astype(np.float32), current.astype(np.float32),
                           cv2.HISTCMP_CORREL)
    return 1.0 - float(corr) > threshold


def mouth_region(det: Detection) -> Box:
    """Where the mouth is: around the lip landmarks when there are 68, else the lower middle
    of the face box."""
    x0, y0, x1, y1 = det.box
    w, h = x1 - x0, y1 - y0
    if det.landmarks is not None and len(det.landmarks) == 68:
        # Around the lips' corners and the inner lips: not the chin or a beard around them.
        mouth = det.landmarks[[48, 54, 60, 61, 62, 63, 64, 65, 66, 67]]
        mx0, my0 = mouth.min(axis=0)
        mx1, my1 = mouth.max(axis=0)
        cy = (my0 + my1) / 2
        half_h = max(0.5 * (my1 - my0), 0.06 * h)
        pad_x = 0.15 * (mx1 - mx0)
        return (float(mx0 - pad_x), float(cy - half_h), float(mx1 + pad_x), float(cy + half_h))
    return (x0 + 0.2 * w, y0 + 0.6 * h, x1 - 0.2 * w, y1 + 0.05 * h)


def lip_gap(det: Detection) -> float:
    """Inner-lip gap over face height (68 landmarks), NaN otherwise."""
    if det.landmarks is None or len(det.landmarks) != 68:
        return float("nan")
    p = det.landmarks
    gap = np.mean([np.linalg.norm(p[a] - p[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
    return float(gap / max(det.box[3] - det.box[1], 1.0))


def mouth_patch(image: np.ndarray, region: Box) -> np.ndarray:
    """The mouth region as a lighting-normalised grey patch."""
    ih, iw = image.shape[:2]
    xa, ya = int(max(0, region[0])), int(max(0, region[1]))
    xb, yb = int(min(iw, region[2])), int(min(ih, region[3]))
    if xb - xa < 2 or yb - ya < 2:
        return np.zeros(MOUTH_SIZE[::-1], np.float32)
    grey = cv2.cvtColor(np.ascontiguousarray(image[ya:yb, xa:xb]), cv2.COLOR_RGB2GRAY)
    patch = cv2.resize(grey, MOUTH_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    return (patch - patch.mean()) / (patch.std() + 8.0)


def crop(image: np.ndarray, box: Box, size: int = 112) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    xa, xb = int(max(0, cx - half)), int(min(w, cx + half))
    ya, yb = int(max(0, cy - half)), int(min(h, cy + half))
    return cv2.resize(np.ascontiguousarray(image[ya:yb, xa:xb]), (size, size),
                      interpolation=cv2.INTER_AREA)


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


Embedder = Callable[[np.ndarray, Detection], "np.ndarray | None"]
Refiner = Callable[[np.ndarray, Box], "Detection | None"]


class Tracker:
    """Feed frames in time order: ``add`` with detections, ``follow`` for frames between
    detections (mouth samples only); ``finish`` returns the tracks."""

    def __init__(self, config: TrackConfig | None = None, embed: Embedder | None = None,
                 refine: Refiner | None = None) -> None:
        self.config = config or TrackConfig()
        self.embed, self.refine = embed, refine
        self.shot = -1
        self._hist: np.ndarray | None = None
        self._open: list[FaceTrack] = []
        self._done: list[FaceTrack] = []
        self._next_id = 0
        self.shot_starts: list[float] = []
        self._checked: float | None = None

    def cut_check(self, t: float, image: np.ndarray) -> None:
        """Start a new shot when ``image`` is a cut from the last frame seen (idempotent per
        frame)."""
        if self._checked == t:
            return
        self._checked = t
        hist = frame_histogram(image)
        if is_cut(self._hist, hist, self.config.shot_change):
            self._done += self._open
            self._open = []
            self.shot += 1
            self.shot_starts.append(t)
        self._hist = hist

    def follow(self, t: float, image: np.ndarray) -> None:
        """A frame between detections: mouths of the tracks detected in the last moments."""
        self.cut_check(t, image)
        for tr in self._open:
            last = tr.obs[-1]
            if t - last.t > self.config.follow_s:
                continue
            fresh = self.refine(image, last.det.box) if self.refine else None
            if fresh is not None:
                self._mouth(tr, t, image, mouth_region(fresh), lip_gap(fresh))
            else:
                self._mouth(tr, t, image, last.mouth_region, float("nan"))

    def add(self, t: float, image: np.ndarray, detections: list[Detection]) -> None:
        cfg = self.config
        self.cut_check(t, image)
        self._done += [tr for tr in self._open if t - tr.obs[-1].t > cfg.max_gap_s]
        self._open = [tr for tr in self._open if t - tr.obs[-1].t <= cfg.max_gap_s]
        obs = [Observation(t, d, appearance(image, d.box), mouth_region(d)) for d in detections]
        matched: set[int] = set()
        if self._open and obs:
            cost = np.ones((len(self._open), len(obs)))
            for i, tr in enumerate(self._open):
                last = tr.obs[-1]
                for j, o in enumerate(obs):
                    overlap = iou(last.det.box, o.det.box)
                    alike = float(last.appearance @ o.appearance)
                    if overlap >= cfg.min_iou and alike >= cfg.min_appearance:
                        cost[i, j] = 1.0 - overlap
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols, strict=True):
                if cost[i, j] < 1.0:
                    self._keep(self._open[i], obs[j], image)
                    matched.add(j)
        for j, o in enumerate(obs):
            if j not in matched:
                track = FaceTrack(self._next_id, self.shot)
                self._next_id += 1
                self._keep(track, o, image)
                self._open.append(track)

    def _mouth(self, tr: FaceTrack, t: float, image: np.ndarray, region: Box,
               opening: float) -> None:
        if tr.mouth_t and t <= tr.mouth_t[-1]:
            return
        tr.mouth_t.append(t)
        tr.mouth_patch.append(mouth_patch(image, region))
        tr.mouth_open.append(opening)

    def _keep(self, track: FaceTrack, o: Observation, image: np.ndarray) -> None:
        # Crops of the first few faces of a track and of any clearly bigger one later. The
        # identity embedding (the costly part: 0.18 s on 2 cores) once the track has lasted
        # ``embed_after`` detections, and again only for a clearly bigger face.
        kept = [x for x in track.obs if x.crop is not None]
        biggest = max((x.det.size for x in kept), default=0.0)
        if len(kept) < self.config.crops_per_track or o.det.size > 1.2 * biggest:
            o.crop = crop(image, o.det.box)
            if len(kept) >= self.config.crops_per_track:
                min(kept, key=lambda x: x.det.size).crop = None
        track.obs.append(o)
        embedded = [x for x in track.obs if x.embedding is not None]
        due = len(track.obs) == self.config.embed_after and not embedded
        bigger = bool(embedded) and o.det.size > 1.2 * max(x.det.size for x in embedded)
        if self.embed and (due or bigger):
            for x in embedded:
                x.embedding = None
            o.embedding = self.embed(image, o.det)
        self._mouth(track, o.t, image, o.mouth_region, lip_gap(o.det))

    def finish(self) -> list[FaceTrack]:
        self._done += self._open
        self._open = []
        kept = [t for t in self._done if len(t.obs) >= self.config.min_detections]
        kept.sort(key=lambda t: (t.start, t.track_id))
        for i, t in enumerate(kept):
            t.track_id = i
        return kept
