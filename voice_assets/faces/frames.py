"""Frames decoded only at the times the face stage needs them.

Faces matter most while someone talks, so speech gets ``speech_fps`` samples a second and the
rest ``other_fps``. The video is decoded once, front to back (seeking costs more than it saves
at these rates), and only the frames nearest a sample time are converted to RGB and scaled to
at most ``max_width`` pixels: detection at that size is what the faces stage pays for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from voice_assets.errors import MediaError


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    duration_s: float


@dataclass(frozen=True)
class Frame:
    t: float  # presentation time, seconds
    image: np.ndarray  # RGB uint8, scaled
    scale: float  # image pixels per source pixel


def sample_times(duration_s: float, speech: Sequence[tuple[float, float]],
                 speech_fps: float = 4.0, other_fps: float = 1.0,
                 margin_s: float = 0.5) -> np.ndarray:
    """Sorted sample times: ``speech_fps`` inside speech (widened by ``margin_s``), else
    ``other_fps``."""
    if duration_s <= 0:
        return np.zeros(0)
    fine = np.arange(0.0, duration_s, 1.0 / speech_fps)
    coarse = np.arange(0.0, duration_s, 1.0 / other_fps) if other_fps > 0 else np.zeros(0)
    inside = np.zeros(fine.size, dtype=bool)
    for start, end in speech:
        inside |= (fine >= start - margin_s) & (fine < end + margin_s)
    return np.unique(np.round(np.concatenate([fine[inside], coarse]), 4))


def video_info(path: Path) -> VideoInfo | None:
    """The first video stream's size, rate and duration; None for audio-only media (and for
    a lone cover picture, which has a single frame)."""
    try:
        with av.open(str(path)) as container:
            streams = [s for s in container.streams.video
                       if not (s.disposition & av.stream.Disposition.attached_pic)]
            if not streams:
                return None
            s = streams[0]
            rate = float(s.average_rate or s.guessed_rate or 0) or 25.0
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            else:
                duration = float(container.duration or 0) / av.time_base
            return VideoInfo(s.codec_context.width, s.codec_context.height, rate, duration)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: cannot read the video stream ({exc})") from exc


def read_frames(path: Path, times: np.ndarray, max_width: int = 640) -> Iterator[Frame]:
    """The frame shown at each of ``times`` (each decoded frame yielded at most once)."""
    if times.size == 0:
        return
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: cannot open ({exc})") from exc
    with container:
        stream = next((s for s in container.streams.video
                       if not (s.disposition & av.stream.Disposition.attached_pic)), None)
        if stream is None:
            return
        stream.thread_type = "AUTO"
        width = stream.codec_context.width
        scale = min(1.0, max_width / width) if width else 1.0
        out_w = max(2, round(width * scale / 2) * 2)
        out_h = max(2, round(stream.codec_context.height * scale / 2) * 2)
        i = 0
        previous = None
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                # Yield the last frame shown at or before each wanted time.
                while i < times.size and times[i] < frame.time:
                    if previous is not None:
                        yield _convert(previous, out_w, out_h, scale)
                        previous = None
                    i += 1
                if i >= times.size:
                    break
                previous = frame
            if previous is not None and i < times.size:
                yield _convert(previous, out_w, out_h, scale)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: video decoding failed near "
                             f"{times[min(i, times.size - 1)]:.1f} s ({exc})") from exc


def _convert(frame: av.VideoFrame, width: int, height: int, scale: float) -> Frame:
    image = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    return Frame(float(frame.time), image, scale)
