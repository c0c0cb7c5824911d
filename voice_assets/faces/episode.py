"""The faces stage of one episode: sample frames, detect, track.

Detection runs ``detect_fps`` times a second around speech (``other_fps`` elsewhere); between
detections every frame up to ``mouth_fps`` is read for mouth motion only, which costs a frame
conversion and a patch, not a detector pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voice_assets.faces.detect import FaceDetector
from voice_assets.faces.frames import VideoInfo, read_frames, sample_times, video_info
from voice_assets.faces.tracks import FaceTrack, TrackConfig, Tracker
from voice_assets.progress import Progress, silent


@dataclass(frozen=True)
class SamplingConfig:
    detect_fps: float = 2.0  # detector passes per second around speech
    other_fps: float = 0.5  # ... and elsewhere
    mouth_fps: float = 12.0  # mouth readings per second around speech
    max_width: int = 640


@dataclass
class EpisodeFaces:
    video: VideoInfo | None
    tracks: list[FaceTrack] = field(default_factory=list)
    shot_starts: list[float] = field(default_factory=list)
    frames: int = 0
    detector_passes: int = 0
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
    tracker = Tracker(tracking, embed=detector.embed, refine=detector.refine)
    result = EpisodeFaces(info)
    half_frame = 0.5 / info.fps
    next_detect = 0
    for frame in read_frames(path, times, sampling.max_width):
        if next_detect < detect_at.size and frame.t >= detect_at[next_detect] - half_frame:
            dets = detector.detect(frame.image)
            tracker.add(frame.t, frame.image, dets)
            result.detections += len(dets)
            result.detector_passes += 1
            next_detect = int(np.searchsorted(detect_at, frame.t + half_frame))
        else:
            tracker.follow(frame.t, frame.image)
        result.frames += 1
        result.scale = frame.scale
        if result.frames % 50 == 0:
            progress("faces", result.frames, int(times.size))
    result.tracks = tracker.finish()
    result.shot_starts = tracker.shot_starts
    result.seconds = time.perf_counter() - started
    if result.frames and not result.tracks:
        result.skipped = f"no faces found in {result.frames} sampled frames"
    return result
