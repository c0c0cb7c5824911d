"""Judge a voice model on lines of its character it never trained on.

For each held-out line: synthesise its text, then ask whether it sounds like the character
(speaker similarity to the character's held-out clips against the other characters'), whether
the words come through (ASR word error rate) and whether length and loudness are sane (the
real clip of the same line is the yardstick for length).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyloudnorm
import soundfile as sf

from voice_assets.dataset.prosody import resample
from voice_assets.speech.wer import word_error_rate

EVAL_RATE = 16_000
# Sanity bands: a line said at a quarter or four times its real length, or that is nearly
# silent, is broken whatever the other scores say.
DURATION_RATIO_BAND = (0.5, 2.0)
SILENT_DBFS = -45.0


@dataclass(frozen=True)
class HeldOutLine:
    """A held-out clip of the character: its text, length and embedding."""

    text: str
    duration_s: float


@dataclass(frozen=True)
class Evaluation:
    lines: int
    similarity_own: float  # mean cosine to the character's held-out clips
    similarity_other: float  # best mean cosine to another character's clips (nan: none)
    similarity_margin: float  # own - other: > 0 means it sounds more like its character
    wer: float
    duration_ratio: float  # median synthesised / real length
    loudness_lufs: float  # median integrated loudness of the synthesised lines
    silent_lines: int

    @property
    def sane(self) -> bool:
        lo, hi = DURATION_RATIO_BAND
        return self.silent_lines == 0 and lo <= self.duration_ratio <= hi


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def evaluate(lines: Sequence[HeldOutLine], synthesize: Callable[[str], tuple[np.ndarray, int]],
             embed: Callable[[np.ndarray], np.ndarray | None],
             transcribe: Callable[[np.ndarray], str], own: np.ndarray,
             others: dict[str, np.ndarray]) -> tuple[Evaluation, list[tuple[np.ndarray, int]]]:
    """Metrics over ``lines``, and the synthesised audio (to keep as samples).

    ``own`` and each of ``others`` are (n, d) unit embeddings of real clips (16 kHz embedder).
    """
    audio, sims_own, sims_other, ratios, lufs, hyps = [], [], {k: [] for k in others}, [], [], []
    silent = 0
    meter = pyloudnorm.Meter(EVAL_RATE)
    for line in lines:
        wav, sr = synthesize(line.text)
        x = np.asarray(wav, dtype=np.float64).reshape(-1)
        audio.append((x.astype(np.float32), sr))
        x16 = resample(x, sr, EVAL_RATE)
        rms = float(np.sqrt(np.mean(x16 ** 2))) if x16.size else 0.0
        if not x16.size or 20 * np.log10(max(rms, 1e-12)) < SILENT_DBFS:
            silent += 1
        ratios.append((x16.size / EVAL_RATE) / max(line.duration_s, 1e-3))
        if x16.size >= EVAL_RATE * 0.4:
            lufs.append(float(meter.integrated_loudness(x16)))
        hyps.append(transcribe(x16.astype(np.float32)) if x16.size else "")
        e = embed(x16.astype(np.float32)) if x16.size else None
        if e is not None:
            e = _unit(np.asarray(e, dtype=np.float64))
            sims_own.append(float(np.mean(own @ e)) if len(own) else np.nan)
            for k, emb in others.items():
                sims_other[k].append(float(np.mean(emb @ e)))
    own_s = float(np.nanmean(sims_own)) if sims_own else float("nan")
    other_s = max((float(np.mean(v)) for v in sims_other.values() if v), default=float("nan"))
    finite = [v for v in lufs if np.isfinite(v)]
    return Evaluation(
        lines=len(lines), similarity_own=own_s, similarity_other=other_s,
        similarity_margin=own_s - other_s if np.isfinite(other_s) else float("nan"),
        wer=word_error_rate([ln.text for ln in lines], hyps) if lines else float("nan"),
        duration_ratio=float(np.median(ratios)) if ratios else float("nan"),
        loudness_lufs=float(np.median(finite)) if finite else float("nan"),
        silent_lines=silent,
    ), audio


def read_eval_audio(path: str) -> np.ndarray:
    """A clip as mono float32 at ``EVAL_RATE``, what the speaker embedder and ASR take."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return resample(x, sr, EVAL_RATE).astype(np.float32)


def embed_clips(embed: Callable[[np.ndarray], np.ndarray | None], paths: Sequence[str]
                ) -> np.ndarray:
    """Speaker embeddings of the clips at ``paths`` (rows; clips the embedder skips are left
    out), for comparing a synthesised voice with the character's real ones."""
    out = [e for p in paths if (e := embed(read_eval_audio(p))) is not None]
    return np.stack(out) if out else np.zeros((0, 256))
