"""Reading the pipeline's own WAV files block by block, resampled on the fly.

The speech stages read WAVs that earlier stages wrote (analysis/dataset audio, stems), so
soundfile is enough; what matters is that an hour of audio is never held at 44.1 kHz
float64 and that resampling (soxr, streaming) gives the same result as a one-shot call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voice_assets.errors import MediaError

BLOCK_S = 30.0  # default read block: large enough for soxr, small enough to bound memory


def wav_info(path: str | Path) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) of a WAV, or a MediaError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file does not exist")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise MediaError(path, f"not a readable audio file ({exc})") from exc
    return int(info.samplerate), int(info.frames), int(info.channels)


def wav_duration(path: str | Path) -> float:
    rate, frames, _ = wav_info(path)
    return frames / rate


def iter_mono_blocks(
    path: str | Path, sample_rate: int | None = None, block_s: float = BLOCK_S
) -> Iterator[np.ndarray]:
    """Yield consecutive float32 mono blocks of a WAV, resampled to ``sample_rate`` if given.

    Channels are averaged. Concatenating the blocks equals resampling the whole file at once
    (soxr keeps its filter state between blocks), so callers may stream or collect.
    """
    src_rate, _, _ = wav_info(path)
    target = sample_rate or src_rate
    stream = (
        None
        if target == src_rate
        else soxr.ResampleStream(src_rate, target, 1, dtype="float32", quality="HQ")
    )
    block = max(1, int(block_s * src_rate))
    try:
        with sf.SoundFile(str(path)) as fh:
            while True:
                data = fh.read(block, dtype="float32", always_2d=True)
                last = data.shape[0] < block
                mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                mono = np.ascontiguousarray(mono, dtype=np.float32)
                if stream is not None:
                    mono = stream.resample_chunk(mono, last=last)
                if mono.size:
                    yield mono
                if last:
                    return
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise MediaError(path, f"audio cannot be decoded ({exc})") from exc


def read_mono(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Whole WAV as float32 mono at ``sample_rate`` (default: the file's own rate)."""
    rate = sample_rate or wav_info(path)[0]
    blocks = list(iter_mono_blocks(path, rate))
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return samples, rate


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """One-shot float32 resampling with the same filter the streaming reader uses."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if src_rate == dst_rate or not x.size:
        return x
    return soxr.resample(x, src_rate, dst_rate, quality="HQ").astype(np.float32, copy=False)
