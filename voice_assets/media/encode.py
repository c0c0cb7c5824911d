"""Write small media files with PyAV: demo episodes and test inputs with known ground truth.

Real episodes come from outside; this exists so tests and the synthetic demo can produce
videos (with or without audio, several language tracks) whose durations and content are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from voice_assets.atomic import atomic_path

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream: float samples in [-1, 1], shape (n,) mono or (n, channels)."""

    samples: np.ndarray
    sample_rate: int
    codec: str = "aac"
    language: str | None = None
    title: str | None = None
    default: bool = False
    start_s: float = 0.0  # first sample's time on the container timeline (a late-starting track)

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])


@dataclass(frozen=True)
class VideoTrack:
    """A synthetic picture track: a slowly changing grey level, cheap to encode."""

    duration_s: float
    fps: int = 10
    width: int = 64
    height: int = 48
    codec: str = "mpeg4"
    frames: Sequence[np.ndarray] | None = field(default=None)  # optional RGB frames (h, w, 3)


def write_media(
    path: str | Path,
    audio: Sequence[AudioTrack] = (),
    video: VideoTrack | None = None,
    container_format: str | None = None,
) -> Path:
    """Encode the tracks into ``path`` (format from the suffix unless given), atomically."""
    path = Path(path)
    if not audio and video is None:
        raise ValueError("write_media needs at least one audio or video track")
    with atomic_path(path) as tmp:
        fmt = container_format or _format_for(path)
        with av.open(str(tmp), "w", format=fmt) as out:
            vstream = None
            if video is not None:
                vstream = cast(av.VideoStream, out.add_stream(video.codec, rate=video.fps))
                vstream.width, vstream.height = video.width, video.height
                vstream.pix_fmt = "yuv420p"
            astreams = []
            for track in audio:
                stream = cast(av.AudioStream, out.add_stream(track.codec, rate=track.sample_rate))
                stream.layout = _LAYOUTS[track.channels]
                if track.language:
                    stream.metadata["language"] = track.language
                if track.title:
                    stream.metadata["title"] = track.title
                if track.default:
                    stream.disposition = av.stream.Disposition.default
                astreams.append(stream)
            if vstream is not None and video is not None:
                _encode_video(out, vstream, video)
            for stream, track in zip(astreams, audio, strict=True):
                _encode_audio(out, stream, track)
    return path


def _format_for(path: Path) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".ts": "mpegts", ".m2ts": "mpegts",
            ".m4a": "mp4", ".opus": "ogg"}.get(path.suffix.lower())


def _encode_video(out: av.container.OutputContainer, stream, video: VideoTrack) -> None:
    n = round(video.duration_s * video.fps)
    for i in range(n):
        if video.frames is not None:
            img = np.ascontiguousarray(video.frames[i % len(video.frames)], dtype=np.uint8)
        else:
            img = np.full((video.height, video.width, 3), (i * 7) % 256, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _encode_audio(out: av.container.OutputContainer, stream, track: AudioTrack) -> None:
    x = np.asarray(track.samples, dtype=np.float32)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    planar = np.ascontiguousarray(np.clip(x, -1.0, 1.0).T)
    step = stream.codec_context.frame_size or 1024
    layout = _LAYOUTS[track.channels]
    codec_fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    resampler = av.AudioResampler(format=codec_fmt, layout=layout, rate=track.sample_rate)
    offset = round(track.start_s * track.sample_rate)
    for pos in range(0, planar.shape[1], step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planar[:, pos : pos + step]), format="fltp", layout=layout
        )
        frame.sample_rate = track.sample_rate
        frame.pts = offset + pos
        frame.time_base = Fraction(1, track.sample_rate)
        for converted in resampler.resample(frame):
            out.mux(stream.encode(converted))
    for converted in resampler.resample(None):
        out.mux(stream.encode(converted))
    out.mux(stream.encode(None))


def tone(duration_s: float, sample_rate: int, freq: float = 440.0, amplitude: float = 0.3,
         channels: int = 1) -> np.ndarray:
    """A sine tone, the simplest signal whose level and length are known exactly."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    x = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.repeat(x[:, None], channels, axis=1)
