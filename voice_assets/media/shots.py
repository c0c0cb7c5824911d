"""Shot boundaries (hard cuts) of an episode's video, found by PySceneDetect.

A cut alone is not a new scene (dialogue cuts between speakers every few seconds), but a cut
inside a pause in the dialogue usually is: the clips stage groups lines into scenes from these
cuts and the pauses, and splits deal whole scenes. Frames are decoded by PyAV and downscaled
before PySceneDetect's adaptive detector compares them (a rolling average of colour and
brightness change, robust to camera motion and flashes in animation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from voice_assets.episode_keys import EPISODE_COLUMN
from voice_assets.errors import MediaError
from voice_assets.progress import Progress, silent

CHUNK_S = 60.0  # progress is reported per chunk of video

# The `shots` table: one row per shot of the episode's video.
SHOT_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.Utf8(), "shot": pl.Int64(), "start": pl.Float64(), "end": pl.Float64(),
}
SHOT_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "shot": "0-based index of the shot in the episode.",
    "start": "Start of the shot (a hard cut, or the start of the video), seconds.",
    "end": "End of the shot (the next hard cut, or the end of the video), seconds.",
}


@dataclass(frozen=True)
class ShotResult:
    shots: list[tuple[float, float]]  # (start, end) seconds, in order, covering the video
    duration_s: float
    fps: float
    seconds: float  # wall time of the detection
    detector: str

    @property
    def cuts(self) -> list[float]:
        return [s for s, _ in self.shots[1:]]


def detect_shots(video: str | Path, *, adaptive_threshold: float = 3.0,
                 min_shot_s: float = 0.4, progress: Progress = silent) -> ShotResult:
    """Shots of ``video`` (MediaError when it cannot be decoded)."""
    from scenedetect import AdaptiveDetector, SceneManager, open_video

    video = Path(video)
    t0 = time.perf_counter()
    try:
        stream = open_video(str(video), backend="pyav")
    except Exception as exc:  # PyAV and PySceneDetect raise their own error types
        raise MediaError(video, f"cannot decode the video for shot detection ({exc})") from exc
    fps = float(stream.frame_rate)
    duration = float(stream.duration.seconds) if stream.duration is not None else 0.0
    manager = SceneManager()
    manager.auto_downscale = True
    manager.add_detector(AdaptiveDetector(adaptive_threshold=adaptive_threshold,
                                          min_scene_len=max(1, round(min_shot_s * fps))))
    n_chunks = max(1, int(duration // CHUNK_S) + 1)
    progress("shots", 0, n_chunks)
    try:
        for i in range(n_chunks):
            end = min(duration, (i + 1) * CHUNK_S) if i < n_chunks - 1 else None
            manager.detect_scenes(stream, end_time=end)
            progress("shots", i + 1, n_chunks)
    except Exception as exc:
        raise MediaError(video, f"video stream broke off during shot detection ({exc})") from exc
    scenes = manager.get_scene_list(start_in_scene=True)
    shots = [(float(a.seconds), float(b.seconds)) for a, b in scenes] or \
        ([(0.0, duration)] if duration > 0 else [])
    return ShotResult(shots, duration, fps, time.perf_counter() - t0,
                      f"pyscenedetect-adaptive(threshold={adaptive_threshold})")
