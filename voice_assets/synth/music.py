"""Background music and sound effects, synthesised from a seed (no samples to ship)."""

from __future__ import annotations

import numpy as np

_CHORDS = ((57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62))  # Am F C G (MIDI)


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def music(duration_s: float, rate: int, seed: int = 0, bpm: float = 96.0) -> np.ndarray:
    """Pad chords, an arpeggio and a soft kick/hat pattern: steady tonal lines under speech,
    the kind of score that leaks into naive clips."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * rate)
    t = np.arange(n) / rate
    out = np.zeros(n, np.float32)
    beat = 60.0 / bpm
    bar = 4 * beat
    transpose = int(rng.integers(-3, 4))
    for i in range(int(np.ceil(duration_s / bar))):
        chord = _CHORDS[i % len(_CHORDS)]
        start, end = int(i * bar * rate), min(n, int((i + 1) * bar * rate))
        if start >= n:
            break
        seg = t[start:end] - i * bar
        env = np.minimum(1.0, seg / 0.3) * np.minimum(1.0, (bar - seg) / 0.3)
        for note in chord:
            f = _hz(note + transpose)
            out[start:end] += (
                0.12 * env * (np.sin(2 * np.pi * f * seg) + 0.3 * np.sin(4 * np.pi * f * seg))
            ).astype(np.float32)
        for k in range(8):  # eighth-note arpeggio an octave up
            a = start + int(k * beat / 2 * rate)
            b = min(end, a + int(beat / 2 * rate))
            if a >= b:
                continue
            s = np.arange(b - a) / rate
            f = _hz(chord[k % 3] + 12 + transpose)
            out[a:b] += (0.08 * np.exp(-s * 6) * np.sin(2 * np.pi * f * s)).astype(np.float32)
    for k in range(int(duration_s / beat)):  # kick on every beat, hat on the off-beat
        a = int(k * beat * rate)
        s = np.arange(min(int(0.15 * rate), n - a)) / rate
        out[a : a + s.size] += (0.3 * np.exp(-s * 30) * np.sin(2 * np.pi * 55 * s)).astype(
            np.float32
        )
        h = a + int(beat / 2 * rate)
        m = min(int(0.03 * rate), max(0, n - h))
        out[h : h + m] += (
            0.04 * rng.standard_normal(m) * np.exp(-np.arange(m) / rate * 150)
        ).astype(np.float32)
    return out


def knock(rate: int, seed: int = 0) -> np.ndarray:
    """Three knocks on a wooden door."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(0.9 * rate), np.float32)
    for k in range(3):
        a = int(k * 0.25 * rate)
        s = np.arange(int(0.12 * rate)) / rate
        hit = np.exp(-s * 40) * (np.sin(2 * np.pi * 180 * s) + 0.5 * rng.standard_normal(s.size))
        out[a : a + s.size] += 0.5 * hit.astype(np.float32)
    return out


def whoosh(rate: int, seed: int = 0, duration_s: float = 0.8) -> np.ndarray:
    """Band-limited noise swelling and fading, like something passing by."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * rate)
    noise = rng.standard_normal(n).astype(np.float32)
    kernel = np.hanning(32).astype(np.float32)
    noise = np.convolve(noise, kernel / kernel.sum(), mode="same")
    env = np.sin(np.pi * np.arange(n) / n) ** 2
    return (0.6 * noise * env).astype(np.float32)
