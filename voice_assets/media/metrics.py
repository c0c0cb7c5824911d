"""Streaming level metrics for mono audio: RMS, silence ratio, BS.1770 loudness, envelope.

Everything is accumulated chunk by chunk so an hour-long episode is measured while it is
decoded, without holding it (or pyloudnorm's float64 copies of it) in memory. Loudness uses
pyloudnorm's K-weighting filter coefficients with carried filter state and pyloudnorm's
gating (400 ms blocks, 75 % overlap, -70 LUFS absolute and -10 LU relative gates), so the
result equals pyloudnorm.Meter.integrated_loudness on the whole signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyloudnorm
from scipy.signal import lfilter, lfilter_zi

SILENCE_DBFS = -50.0  # a 50 ms window quieter than this counts as silence
SILENCE_WINDOW_S = 0.05
ENVELOPE_RATE = 100  # min/max pairs per second kept for the waveform picture
_ABS_GATE_LUFS = -70.0
_REL_GATE_LU = -10.0


@dataclass(frozen=True)
class Levels:
    duration_s: float
    rms_dbfs: float | None  # None for digital silence
    silence_ratio: float
    loudness_lufs: float | None  # None when shorter than one 400 ms block or silent
    peak: float
    envelope: np.ndarray  # interleaved (min, max) per 1/ENVELOPE_RATE s, float32

    @property
    def envelope_sample_rate(self) -> int:
        """Rate at which `envelope` can be drawn as a signal (two values per bin)."""
        return 2 * ENVELOPE_RATE


class _Blocks:
    """Sum of a per-sample quantity over consecutive fixed-size blocks, across chunks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.carry: np.ndarray = np.zeros(0, dtype=np.float64)
        self.sums: list[np.ndarray] = []

    def add(self, values: np.ndarray) -> None:
        x = np.concatenate([self.carry, values]) if self.carry.size else values
        n_full = len(x) // self.size
        if n_full:
            self.sums.append(x[: n_full * self.size].reshape(n_full, self.size).sum(axis=1))
        self.carry = np.array(x[n_full * self.size :], dtype=np.float64)

    def finish(self) -> tuple[np.ndarray, float]:
        """Full-block sums, and the sum over the trailing partial block."""
        full = np.concatenate(self.sums) if self.sums else np.zeros(0)
        return full, float(self.carry.sum())


class LevelMeter:
    """Feed mono float chunks in order with add(); read the Levels with result()."""

    def __init__(self, sample_rate: int) -> None:
        self.rate = sample_rate
        self.n = 0
        self.sum_sq = 0.0
        self.peak = 0.0
        self._silence = _Blocks(max(1, round(SILENCE_WINDOW_S * sample_rate)))
        self._loud = _Blocks(max(1, round(0.1 * sample_rate)))  # 100 ms gating steps
        self._env_bin = max(1, round(sample_rate / ENVELOPE_RATE))
        self._env_carry: np.ndarray = np.zeros(0, dtype=np.float32)
        self._env: list[np.ndarray] = []
        meter = pyloudnorm.Meter(sample_rate)
        self._filters = [(f.b, f.a, f.passband_gain) for f in meter._filters.values()]
        self._zi: list[np.ndarray | None] = [None] * len(self._filters)

    def add(self, chunk: np.ndarray) -> None:
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not x.size:
            return
        self.n += x.size
        x64 = x.astype(np.float64)
        sq = x64 * x64
        self.sum_sq += float(sq.sum())
        self.peak = max(self.peak, float(np.abs(x).max()))
        self._silence.add(sq)
        self._loud.add(self._k_weighted_squares(x64))
        self._add_envelope(x)

    def _k_weighted_squares(self, x: np.ndarray) -> np.ndarray:
        y = x
        for i, (b, a, gain) in enumerate(self._filters):
            zi = self._zi[i]
            if zi is None:
                zi = lfilter_zi(b, a) * 0.0  # pyloudnorm filters from rest
            y, self._zi[i] = lfilter(b, a, y, zi=zi)
            y = gain * y
        return y * y

    def _add_envelope(self, x: np.ndarray) -> None:
        x = np.concatenate([self._env_carry, x]) if self._env_carry.size else x
        n_full = len(x) // self._env_bin
        if n_full:
            bins = x[: n_full * self._env_bin].reshape(n_full, self._env_bin)
            pairs = np.stack([bins.min(axis=1), bins.max(axis=1)], axis=1).reshape(-1)
            self._env.append(pairs.astype(np.float32))
        self._env_carry = np.array(x[n_full * self._env_bin :], dtype=np.float32)

    def result(self) -> Levels:
        env = list(self._env)
        if self._env_carry.size:
            env.append(np.array([self._env_carry.min(), self._env_carry.max()], np.float32))
        rms = math.sqrt(self.sum_sq / self.n) if self.n else 0.0
        return Levels(
            duration_s=self.n / self.rate,
            rms_dbfs=20 * math.log10(rms) if rms > 0 else None,
            silence_ratio=self._silence_ratio(),
            loudness_lufs=self._loudness(),
            peak=self.peak,
            envelope=np.concatenate(env) if env else np.zeros(0, np.float32),
        )

    def _silence_ratio(self) -> float:
        full, tail = self._silence.finish()
        means = full / self._silence.size
        if self._silence.carry.size:
            means = np.append(means, tail / self._silence.carry.size)
        if not means.size:
            return 1.0
        threshold = 10 ** (SILENCE_DBFS / 10)  # on mean square
        return float(np.mean(means < threshold))

    def _loudness(self) -> float | None:
        step = self._loud.size
        full, tail = self._loud.finish()
        segments = np.append(full, tail)  # sums of squares per 100 ms (last one partial)
        duration = self.n / self.rate
        if duration < 0.4:
            return None  # shorter than one gating block: BS.1770 loudness is undefined
        n_blocks = round((duration - 0.4) / 0.1) + 1
        padded = np.append(segments, np.zeros(max(0, n_blocks + 3 - len(segments))))
        csum = np.concatenate([[0.0], np.cumsum(padded)])
        z = (csum[4 : 4 + n_blocks] - csum[:n_blocks]) / (4 * step)
        return gated_loudness(z)


def gated_loudness(block_mean_squares: np.ndarray) -> float | None:
    """BS.1770-4 gating of 400 ms block mean squares (mono, channel gain 1)."""
    z = np.asarray(block_mean_squares, dtype=np.float64)
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10 * np.log10(z)
    above_abs = z[lk >= _ABS_GATE_LUFS]
    if not above_abs.size:
        return None  # silence (or all blocks below -70 LUFS)
    rel_gate = -0.691 + 10 * math.log10(above_abs.mean()) + _REL_GATE_LU
    gated = z[(lk > rel_gate) & (lk > _ABS_GATE_LUFS)]
    if not gated.size:
        return None
    return float(-0.691 + 10 * math.log10(gated.mean()))


def measure(samples: np.ndarray, sample_rate: int) -> Levels:
    """Levels of a whole mono signal held in memory."""
    meter = LevelMeter(sample_rate)
    meter.add(samples)
    return meter.result()
