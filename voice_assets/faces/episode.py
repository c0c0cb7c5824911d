"""The faces stage of one episode: sample frames, detect, track.

Detection runs ``detect_fps`` times a second around speech (``other_fps`` elsewhere); between
detections every frame up to ``mouth_fps`` is read for mouth motion only, which costs a frame
conversion and a patch, not a detector pass.

A shot's faces keep their size, so after a full-size pass finds them the next passes of the
shot run on a frame shrunk until its smallest face is just above what the detector finds
(``full_pass_every``-th pass at full size again, for faces that come in smaller); the
landmarks are then read at full size. A close-up's passes cost a fraction of a wide shot's.
Drawn episodes hold their drawings, so a pass on a frame that has not changed since an
earlier pass (the shot held, or the same setup cut back to) keeps that pass's boxes with fresh
landmarks, and a face that looks exactly like one already embedded reuses its embedding
(``faces/repeats.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voice_assets.faces.detect import Detection, FaceDetector
from voice_assets.faces.frames import VideoInfo, read_frames, sample_times, video_info
from voice_assets.faces.repeats import (
    REUSE_CORRELATION,
    PassMemory,
    ReusedEmbeddings,
    frame_thumbnail,
)
from voice_assets.faces.tracks import FaceTrack, TrackConfig, Tracker
from voice_assets.progress import Progress, silent


@dataclass(frozen=True)
class SamplingConfig:
    detect_fps: float = 2.0  # detector passes per second around speech
    other_fps: float = 0.5  # ... and elsewhere
    mouth_fps: float = 12.0  # mouth readings per second around speech
    max_width: int = 640
    full_pass_every: int = 4  # in a shot, every n-th detector pass at full size
    min_detect_scale: float = 0.25
    reuse_still_frames: bool = True  # a pass on an unchanged frame keeps the earlier boxes
    reuse_embedding_correlation: float = REUSE_CORRELATION  # a face this alike reuses one


@dataclass
class EpisodeFaces:
    video: VideoInfo | None
    tracks: list[FaceTrack] = field(default_factory=list)
    shot_starts: list[float] = field(default_factory=list)
    frames: int = 0
    detector_passes: int = 0
    reused_passes: int = 0  # passes on unchanged frames that kept earlier boxes
    embeddings: int = 0
    reused_embeddings: int = 0
    detections: int = 0
    scale: float = 1.0  # frame pixels per source pixel
    seconds: float = 0.0
    skipped: str | None = None  # why no faces were looked for


def track_episode_faces(path: Path, speech: Sequence[tuple[float, float]],
                        detector: FaceDetector, sampling: SamplingConfig | None = None,
                        tracking: TrackConfig | None = None,
                        progress: Progress = silent) -> EpisodeFaces:
    """Face tracks of the video in ``path``; audio-only media skip with a stated reason."""
    sampling = sampling or SamplingConfig()
    started = time.perf_counter()
    info = video_info(path)
    if info is None:
        return EpisodeFaces(None, skipped="no video stream (audio-only episode)")
    detect_at = sample_times(info.duration_s, speech, sampling.detect_fps, sampling.other_fps)
    mouth_at = sample_times(info.duration_s, speech, min(sampling.mouth_fps, info.fps), 0.0)
    times = np.union1d(detect_at, mouth_at)
    embed = ReusedEmbeddings(detector.embed, sampling.reuse_embedding_correlation)
    tracker = Tracker(tracking, embed=embed, refine=detector.refine)
    result = EpisodeFaces(info)
    half_frame = 0.5 / info.fps
    next_detect = 0
    schedule = _PassScale(sampling, getattr(detector, "min_face_px", None))
    memory = PassMemory()
    for frame in read_frames(path, times, sampling.max_width):
        if next_detect < detect_at.size and frame.t >= detect_at[next_detect] - half_frame:
            tracker.cut_check(frame.t, frame.image)
            scale = schedule.scale(tracker.shot)
            thumb = frame_thumbnail(frame.image)
            earlier = (memory.match(thumb, full=scale >= 1.0)
                       if sampling.reuse_still_frames else None)
            if earlier is not None:
                dets = [_refreshed(detector, frame.image, d) for d in earlier]
                result.reused_passes += 1
            else:
                dets = scaled_detect(detector, frame.image, scale)
                schedule.seen(dets, full=scale >= 1.0)
                memory.remember(thumb, dets, full=scale >= 1.0)
                result.detector_passes += 1
            tracker.add(frame.t, frame.image, dets)
            result.detections += len(dets)
            next_detect = int(np.searchsorted(detect_at, frame.t + half_frame))
        else:
            tracker.follow(frame.t, frame.image)
        result.frames += 1
        result.scale = frame.scale
        if result.frames % 50 == 0:
            progress("faces", result.frames, int(times.size))
    result.tracks = tracker.finish()
    result.embeddings, result.reused_embeddings = embed.computed, embed.reused
    result.shot_starts = tracker.shot_starts
    result.seconds = time.perf_counter() - started
    if result.frames and not result.tracks:
        result.skipped = f"no faces found in {result.frames} sampled frames"
    return result


class _PassScale:
    """How far a shot's next detector pass may shrink the frame (1: full size)."""

    def __init__(self, sampling: SamplingConfig, min_face_px: float | None) -> None:
        self.sampling, self.min_face_px = sampling, min_face_px
        self.shot, self.passes, self.smallest = -1, 0, None

    def scale(self, shot: int) -> float:
        if shot != self.shot:
            self.shot, self.passes, self.smallest = shot, 0, None
        self.passes += 1
        if (self.min_face_px is None or self.smallest is None
                or (self.passes - 1) % self.sampling.full_pass_every == 0):
            return 1.0
        # 1.3x the detector's smallest face: a margin for faces that turn or move back.
        return float(np.clip(1.3 * self.min_face_px / self.smallest,
                             self.sampling.min_detect_scale, 1.0))

    def seen(self, detections: list[Detection], full: bool) -> None:
        if full:  # a full pass sets the size; no face: the next pass is full again
            self.smallest = min((d.size for d in detections), default=None)
            if self.smallest is None:
                self.passes = 0


def _refreshed(detector: FaceDetector, image: np.ndarray, det: Detection) -> Detection:
    """A still frame's face: the last pass's box with landmarks read again (the mouth moves)."""
    fresh = detector.refine(image, det.box)
    return det if fresh is None else Detection(det.box, det.score, fresh.landmarks)


def scaled_detect(detector: FaceDetector, image: np.ndarray, scale: float) -> list[Detection]:
    """Detections on ``image`` shrunk by ``scale``, in ``image`` pixels, with landmarks read
    at full size where the backend refines (else scaled back)."""
    if scale >= 0.999:
        return detector.detect(image)
    import cv2

    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = []
    for d in detector.detect(small):
        box = (d.box[0] / scale, d.box[1] / scale, d.box[2] / scale, d.box[3] / scale)
        fresh = detector.refine(image, box)
        marks = fresh.landmarks if fresh is not None else (
            None if d.landmarks is None else d.landmarks / scale)
        out.append(Detection(box, d.score, marks))
    return out
