"""Decode one audio stream with PyAV into the two mono WAVs every later stage reads.

16 kHz mono is what speech models (VAD, ASR, diarisation, embeddings) expect; 44.1 kHz mono
is what the voice datasets are cut from. Decoding streams packet by packet: samples go to a
mono down-mix, then through soxr's streaming resamplers straight into the WAV writers and a
LevelMeter, so an hour-long episode never exists in memory as a whole (let alone as float64).

The audio is put on the container's timeline, which is what subtitles are timed against: a
stream that starts late gets leading silence, gaps between packets (dropped packets in
broadcast recordings) are filled with silence, and encoder padding past the stream's declared
end is trimmed. Both WAVs are written to temp files and renamed only when the whole decode
succeeded and passed the truncation check, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

from voice_assets.atomic import atomic_path
from voice_assets.errors import MediaError
from voice_assets.media.metrics import LevelMeter, Levels
from voice_assets.media.probe import HEADER_DURATION_FORMATS, container_name, open_media
from voice_assets.media.probe import truncation_tolerance as _tolerance
from voice_assets.progress import Progress, silent

ANALYSIS_RATE = 16_000
DATASET_RATE = 44_100
ANALYSIS_NAME = "analysis_16k.wav"
DATASET_NAME = "dataset_44k1.wav"
WAV_SUBTYPE = "PCM_16"

GAP_FILL_MIN_S = 0.02  # timestamp jumps shorter than this are codec jitter, not gaps
GAP_FILL_MAX_S = 600.0  # longer jumps are broken timestamps; filling them would invent audio
MAX_TRIM_S = 0.1  # encoder padding past the declared end that we cut off (AAC: < 1 frame)
MAX_BAD_PACKET_RATIO = 0.01

# Down-mix weights by channel name: dialogue lives in the centre, LFE carries none of it.
_WEIGHTS = {"FC": 1.414, "LFE": 0.0, "LFE2": 0.0, "FL": 1.0, "FR": 1.0, "FLC": 1.0, "FRC": 1.0}
_SURROUND_WEIGHT = 0.707


@dataclass(frozen=True)
class DecodedAudio:
    analysis_path: Path
    dataset_path: Path
    duration_s: float
    analysis_samples: int
    dataset_samples: int
    source_sample_rate: int
    source_channels: int
    expected_duration_s: float | None
    leading_silence_s: float
    gaps_filled: int
    gap_silence_s: float
    trimmed_s: float
    bad_packets: int
    levels: Levels  # of the 44.1 kHz dataset signal


def downmix_weights(channel_names: list[str]) -> np.ndarray:
    """Weights (summing to 1) that turn these channels into one; centre favoured."""
    w = np.array([_WEIGHTS.get(name, _SURROUND_WEIGHT) for name in channel_names], np.float32)
    if not w.sum():
        w = np.ones(len(channel_names), np.float32)
    return w / w.sum()


class _Sink:
    """A mono WAV being written, holding back its last moments so the end can be trimmed."""

    def __init__(self, path: Path, rate: int, meter: LevelMeter | None, holdback_s: float) -> None:
        self.rate = rate
        self.meter = meter
        self.file = sf.SoundFile(
            path, "w", samplerate=rate, channels=1, subtype=WAV_SUBTYPE, format="WAV"
        )
        self.keep = round(holdback_s * rate)
        self.held: np.ndarray = np.zeros(0, np.float32)
        self.written = 0

    @property
    def samples(self) -> int:
        return self.written + len(self.held)

    def write(self, x: np.ndarray) -> None:
        buf = np.concatenate([self.held, x]) if self.held.size else x
        cut = len(buf) - self.keep
        if cut > 0:
            self._emit(buf[:cut])
            buf = buf[cut:]
        self.held = np.asarray(buf, np.float32)

    def _emit(self, x: np.ndarray) -> None:
        if not x.size:
            return
        x = np.clip(x, -1.0, 1.0)
        self.file.write(x)
        if self.meter is not None:
            self.meter.add(x)
        self.written += len(x)

    def finish(self, max_samples: int | None) -> None:
        tail = self.held
        if max_samples is not None:
            tail = tail[: max(0, max_samples - self.written)]
        self._emit(tail)
        self.held = np.zeros(0, np.float32)
        self.file.close()

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()


class _Resamplers:
    """The source-rate mono signal, resampled into every sink; rebuilt if the rate changes."""

    def __init__(self, sinks: list[_Sink]) -> None:
        self.sinks = sinks
        self.rate: int | None = None
        self.streams: list[soxr.ResampleStream] = []

    def push(self, x: np.ndarray, rate: int) -> None:
        if rate != self.rate:
            self.flush()
            self.rate = rate
            self.streams = [
                soxr.ResampleStream(rate, s.rate, 1, dtype="float32", quality="HQ")
                for s in self.sinks
            ]
        for stream, sink in zip(self.streams, self.sinks, strict=True):
            sink.write(stream.resample_chunk(x, last=False))

    def flush(self) -> None:
        if not self.streams:
            return
        empty = np.zeros(0, np.float32)
        for stream, sink in zip(self.streams, self.sinks, strict=True):
            sink.write(stream.resample_chunk(empty, last=True))
        self.streams = []


def _expected_duration(
    container: av.container.InputContainer, stream: av.AudioStream, path: Path
) -> tuple[float | None, bool]:
    """(end of the stream's data on the container timeline, whether that is exact) from the
    header: the stream's own duration, Matroska's DURATION tag, or the container's."""
    start = (container.start_time or 0) / av.time_base
    if stream.duration and stream.time_base:
        s_start = float((stream.start_time or 0) * stream.time_base)
        return s_start + float(stream.duration * stream.time_base) - start, True
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        with contextlib.suppress(ValueError):
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s), False
    if container_name(container, path) in HEADER_DURATION_FORMATS and container.duration:
        return container.duration / av.time_base, False
    return None, False


def decode_episode_audio(
    path: str | Path,
    stream_index: int,
    out_dir: str | Path,
    *,
    progress: Progress = silent,
    chunk_s: float = 10.0,
) -> DecodedAudio:
    """Decode stream ``stream_index`` of ``path`` into ANALYSIS_NAME and DATASET_NAME in
    ``out_dir``; MediaError (and no files) if the file is unreadable or cut short."""
    path, out_dir = Path(path), Path(out_dir)
    with open_media(path) as container:
        streams = [s for s in container.streams.audio if s.index == stream_index]
        if not streams:
            raise MediaError(path, f"has no audio stream with index {stream_index}")
        stream = streams[0]
        expected, exact = _expected_duration(container, stream, path)
        with contextlib.ExitStack() as stack:
            analysis_tmp = stack.enter_context(atomic_path(out_dir / ANALYSIS_NAME))
            dataset_tmp = stack.enter_context(atomic_path(out_dir / DATASET_NAME))
            meter = LevelMeter(DATASET_RATE)
            sinks = [
                _Sink(analysis_tmp, ANALYSIS_RATE, None, MAX_TRIM_S * 2),
                _Sink(dataset_tmp, DATASET_RATE, meter, MAX_TRIM_S * 2),
            ]
            for sink in sinks:
                stack.callback(sink.abort)
            total = max(1, round(expected or 0))
            stats = _decode_into(container, stream, path, sinks, total, progress, chunk_s)
            decoded = sinks[1].samples / DATASET_RATE
            if decoded <= 0:
                raise MediaError(path, f"audio stream {stream_index} decoded to no samples")
            if expected is not None and decoded < expected - _tolerance(expected):
                raise MediaError(
                    path,
                    f"truncated: audio stream {stream_index} decodes to {decoded:.2f} s but the "
                    f"header says {expected:.2f} s (interrupted download or copy?)",
                )
            over = decoded - expected if (exact and expected is not None) else 0.0
            trim = 0 < over <= MAX_TRIM_S
            for sink in sinks:
                sink.finish(round(expected * sink.rate) if trim and expected else None)
            progress("decode audio", total, total)
        levels = meter.result()
        return DecodedAudio(
            analysis_path=out_dir / ANALYSIS_NAME,
            dataset_path=out_dir / DATASET_NAME,
            duration_s=sinks[1].written / DATASET_RATE,
            analysis_samples=sinks[0].written,
            dataset_samples=sinks[1].written,
            source_sample_rate=int(stream.codec_context.sample_rate),
            source_channels=int(stream.codec_context.channels),
            expected_duration_s=expected,
            leading_silence_s=stats["lead"],
            gaps_filled=int(stats["gaps"]),
            gap_silence_s=stats["gap_s"],
            trimmed_s=max(0.0, over) if trim else 0.0,
            bad_packets=int(stats["bad"]),
            levels=levels,
        )


def _decode_into(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    path: Path,
    sinks: list[_Sink],
    total: int,
    progress: Progress,
    chunk_s: float,
) -> dict[str, float]:
    start = (container.start_time or 0) / av.time_base
    resamplers = _Resamplers(sinks)
    converter: av.AudioResampler | None = None
    setup: tuple[str, str, int] | None = None
    weights = np.ones(1, np.float32)
    pending: list[np.ndarray] = []
    pending_n = 0
    rate = 0
    clock = None  # seconds of audio emitted so far, on the container timeline
    stats = {"lead": 0.0, "gaps": 0, "gap_s": 0.0, "bad": 0, "packets": 0}

    def flush_pending() -> None:
        nonlocal pending, pending_n
        if pending:
            resamplers.push(np.concatenate(pending), rate)
            pending, pending_n = [], 0
            # stays below 100 % until both WAVs are complete (reported after the loop)
            progress("decode audio", min(total - 1, round(clock or 0)), total)

    def frames():
        for packet in container.demux(stream):
            stats["packets"] += 1
            try:
                yield from packet.decode()
            except av.FFmpegError:
                stats["bad"] += 1  # a corrupt packet: its time becomes a filled gap

    for frame in frames():
        if not frame.samples:
            continue
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != setup:
            if rate and frame.sample_rate != rate:
                flush_pending()
            setup, rate = key, frame.sample_rate
            converter = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
            weights = downmix_weights([c.name for c in frame.layout.channels])
        mono = np.concatenate(
            [weights @ f.to_ndarray() for f in converter.resample(frame)]  # type: ignore[union-attr]
        ) if converter is not None else np.zeros(0, np.float32)
        mono = mono.astype(np.float32, copy=False)
        t = float(frame.time) - start if frame.time is not None else None
        if clock is None:
            clock = 0.0
            if t is not None and t > GAP_FILL_MIN_S:
                stats["lead"] = min(t, GAP_FILL_MAX_S)
                pending.append(np.zeros(round(stats["lead"] * rate), np.float32))
                clock = stats["lead"]
            elif t is not None and t < 0:
                drop = min(len(mono), round(-t * rate))  # pre-roll before the timeline's zero
                mono, t = mono[drop:], 0.0
        elif t is not None and GAP_FILL_MIN_S < t - clock <= GAP_FILL_MAX_S:
            gap = t - clock
            stats["gaps"] += 1
            stats["gap_s"] += gap
            pending.append(np.zeros(round(gap * rate), np.float32))
            clock += gap
        pending.append(mono)
        pending_n += len(mono)
        clock += len(mono) / rate
        if pending_n >= chunk_s * rate:
            flush_pending()
    flush_pending()
    resamplers.flush()
    if stats["bad"] and stats["bad"] > MAX_BAD_PACKET_RATIO * max(1, stats["packets"]):
        raise MediaError(
            path,
            f"corrupt audio: {stats['bad']} of {stats['packets']} packets of stream "
            f"{stream.index} could not be decoded",
        )
    return stats
