"""Voice activity detection with Silero VAD's ONNX model, on the vocal stem at 16 kHz.

We use the package's "sequence" ONNX export (one ONNX call per ~16 s block instead of one
per 32 ms frame), which gives the same per-frame probabilities as the streaming model at a
fraction of the Python overhead, and the package's own probability-to-segment state machine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from voice_assets.episode_keys import EPISODE_COLUMN
from voice_assets.progress import Progress, silent
from voice_assets.speech.audio_io import iter_mono_blocks, wav_info

SAMPLE_RATE = 16000
FRAME = 512  # samples per Silero frame at 16 kHz (32 ms)
MODEL_FILE = "silero_vad_16k_sequence.onnx"

_SESSIONS: dict[str, object] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class VadParams:
    """Silero's segmenter settings; defaults suit dialogue in a separated vocal stem."""

    threshold: float = 0.5
    min_speech_s: float = 0.25  # shorter blips (a cough, a click) are dropped
    min_silence_s: float = 0.3  # pauses shorter than this stay inside one region
    speech_pad_s: float = 0.05  # padding so word onsets/offsets are not clipped
    max_speech_s: float = 30.0  # long monologues are split at a pause near this length

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"VAD threshold must be in (0, 1), got {self.threshold}")
        for name in ("min_speech_s", "min_silence_s", "speech_pad_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"VAD {name} must be >= 0, got {getattr(self, name)}")
        if self.max_speech_s <= 1.0:
            raise ValueError(f"VAD max_speech_s must be > 1 s, got {self.max_speech_s}")


@dataclass(frozen=True)
class SpeechRegions:
    """Speech regions (seconds) and what they were computed on."""

    starts: np.ndarray
    ends: np.ndarray
    duration_s: float

    @property
    def speech_s(self) -> float:
        return float(np.sum(self.ends - self.starts))

    @property
    def speech_ratio(self) -> float:
        return self.speech_s / self.duration_s if self.duration_s > 0 else 0.0

    def __len__(self) -> int:
        return int(self.starts.size)


def model_path() -> Path:
    """The sequence ONNX file shipped inside the silero-vad package."""
    from voice_assets.models import get

    return get("silero-vad").require()


def _silero():
    """The silero_vad package, imported without its side effect on torch.

    Its package __init__ sets torch's global thread count to 1; we restore it so the other
    stages (separation, embeddings) keep every core.
    """
    import torch

    threads = torch.get_num_threads()
    import silero_vad.sequence_vad
    import silero_vad.utils_vad

    torch.set_num_threads(threads)
    return silero_vad


def _session(path: Path):
    with _LOCK:
        key = str(path)
        if key not in _SESSIONS:
            seq = _silero().sequence_vad
            _SESSIONS[key] = seq.SileroVADSequence(key, sampling_rate=SAMPLE_RATE)
        return _SESSIONS[key]


def speech_probabilities(
    samples16k: np.ndarray, model: Path | None = None, progress: Progress = silent
) -> np.ndarray:
    """Per-32 ms-frame speech probability of a 16 kHz mono signal."""
    session = _session(model or model_path())
    x = np.ascontiguousarray(samples16k, dtype=np.float32)
    block = FRAME * 512  # one ONNX call per ~16 s
    # Contiguous blocks carry the LSTM state, so split on frame boundaries and chain them.
    probs: list[np.ndarray] = []
    total = max(1, -(-x.size // block))
    hidden = np.zeros((1, 1, 128), np.float32)
    cell = np.zeros((1, 1, 128), np.float32)
    context: np.ndarray = np.zeros(64, np.float32)
    for i, lo in enumerate(range(0, x.size, block)):
        chunk = x[lo : lo + block]
        n = -(-chunk.size // FRAME)
        frames = np.zeros((n, FRAME), np.float32)
        frames.reshape(-1)[: chunk.size] = chunk
        ctx = np.empty((n, 64), np.float32)
        ctx[0] = context
        if n > 1:
            ctx[1:] = frames[:-1, -64:]
        context = np.array(frames[-1, -64:])
        values, hidden, cell = session.session.run(
            ["speech_probs", "hn", "cn"],
            {"input": np.concatenate([ctx, frames], axis=1), "h": hidden, "c": cell},
        )
        probs.append(np.asarray(values, np.float32).reshape(-1))
        progress("voice activity", i + 1, total)
    return np.concatenate(probs) if probs else np.zeros(0, np.float32)


def regions_from_probabilities(
    probs: np.ndarray, n_samples: int, params: VadParams = VadParams()
) -> SpeechRegions:
    """Silero's own hysteresis/min-duration/padding segmenter over frame probabilities."""
    get_speech_timestamps_from_probs = _silero().utils_vad.get_speech_timestamps_from_probs
    duration = n_samples / SAMPLE_RATE
    if not probs.size:
        empty = np.zeros(0, np.float64)
        return SpeechRegions(empty, empty.copy(), duration)
    stamps = get_speech_timestamps_from_probs(
        probs.tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=params.threshold,
        min_speech_duration_ms=int(params.min_speech_s * 1000),
        max_speech_duration_s=params.max_speech_s,
        min_silence_duration_ms=int(params.min_silence_s * 1000),
        speech_pad_ms=int(params.speech_pad_s * 1000),
        audio_length_samples=n_samples,
    )
    starts = np.array([s["start"] for s in stamps], np.float64) / SAMPLE_RATE
    ends = np.array([s["end"] for s in stamps], np.float64) / SAMPLE_RATE
    starts = np.clip(starts, 0.0, duration)
    ends = np.clip(ends, 0.0, duration)
    keep = ends > starts
    return SpeechRegions(starts[keep], ends[keep], duration)


def detect_speech(
    samples16k: np.ndarray,
    params: VadParams = VadParams(),
    model: Path | None = None,
    progress: Progress = silent,
) -> SpeechRegions:
    """Speech regions of a 16 kHz mono signal."""
    probs = speech_probabilities(samples16k, model, progress)
    return regions_from_probabilities(probs, int(np.asarray(samples16k).size), params)


def detect_speech_file(
    path: str | Path,
    params: VadParams = VadParams(),
    model: Path | None = None,
    progress: Progress = silent,
) -> SpeechRegions:
    """Speech regions of a WAV file (any rate; resampled to 16 kHz while reading)."""
    wav_info(path)
    blocks = list(iter_mono_blocks(path, SAMPLE_RATE))
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return detect_speech(samples, params, model, progress)


REGIONS_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.String(),
    "start": pl.Float64(),
    "end": pl.Float64(),
}
REGIONS_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "start": "Start of a speech region of the vocal stem, seconds.",
    "end": "End of the speech region, seconds (regions do not overlap).",
}


def regions_table(episode: str, regions: SpeechRegions) -> pl.DataFrame:
    """The `voice_activity` table: one row per speech region."""
    return pl.DataFrame(
        {
            "episode": [episode] * len(regions),
            "start": regions.starts.astype(np.float64),
            "end": regions.ends.astype(np.float64),
        },
        schema=REGIONS_SCHEMA,
    )


def regions_from_table(df: pl.DataFrame, duration_s: float) -> SpeechRegions:
    """Speech regions back from a `voice_activity` table (sorted by start)."""
    if df.is_empty():
        empty = np.zeros(0, np.float64)
        return SpeechRegions(empty, empty.copy(), duration_s)
    df = df.sort("start")
    return SpeechRegions(
        df.get_column("start").to_numpy().astype(np.float64),
        df.get_column("end").to_numpy().astype(np.float64),
        duration_s,
    )
