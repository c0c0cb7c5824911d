"""Background music and sound effects, synthesised from a seed (no samples to ship).

The score is deliberately the hard case for speech tools: sustained tonal pads and a plucked
arpeggio overlap the speech band, drums add transients, and effects land both in pauses and
under lines. Everything is additive synthesis with numpy, so it is exact and reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# Chord progressions as scale-degree roots with chord quality (semitone offsets from the key).
_PROGRESSIONS = (
    ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),  # I V vi IV
    ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj")),  # vi IV I V
    ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),  # I vi IV V
    ((2, "min"), (7, "maj"), (0, "maj"), (0, "maj")),  # ii V I I
)
_QUALITY = {"maj": (0, 4, 7), "min": (0, 3, 7)}
_KEYS = (57, 60, 62, 55, 53)  # A3 C4 D4 G3 F3 (MIDI)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


@dataclass(frozen=True)
class Theme:
    """What makes a series' music recognisable: key, tempo, progression."""

    key: int
    bpm: float
    progression: int

    @classmethod
    def for_series(cls, series: str) -> Theme:
        """One theme per series: every episode of a show opens with the same music."""
        rng = _rng("theme", series)
        return cls(key=int(rng.choice(_KEYS)), bpm=float(rng.integers(88, 113)),
                   progression=int(rng.integers(len(_PROGRESSIONS))))

    def describe(self) -> dict[str, object]:
        return {"key_midi": self.key, "bpm": self.bpm, "progression": self.progression}


def _add(out: np.ndarray, at: int, x: np.ndarray) -> None:
    if at >= out.shape[-1]:
        return
    end = min(out.shape[-1], at + x.shape[-1])
    out[..., at:end] += x[..., : end - at]


def _tone(freq: float, n: int, rate: int, harmonics: int = 6, bright: float = 1.0) -> np.ndarray:
    """A band-limited saw-like tone: harmonics 1/k, fewer when dull (no aliasing)."""
    t = np.arange(n) / rate
    out = np.zeros(n, np.float64)
    for k in range(1, harmonics + 1):
        if k * freq > rate / 2.2:
            break
        out += np.sin(2 * np.pi * k * freq * t) * (bright ** (k - 1)) / k
    return out


def _pan(x: np.ndarray, pos: float) -> np.ndarray:
    """Constant-power pan to stereo; pos -1 (left) .. 1 (right)."""
    theta = (pos + 1) * np.pi / 4
    return np.stack([x * np.cos(theta), x * np.sin(theta)])


def _loop(theme: Theme, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Four bars of pad, bass, arpeggio and drums, stereo (2, n)."""
    beat = 60.0 / theme.bpm
    bar_n = round(4 * beat * rate)
    n = 4 * bar_n
    out = np.zeros((2, n), np.float64)
    prog = _PROGRESSIONS[theme.progression]
    for b, (degree, quality) in enumerate(prog):
        root = theme.key + degree
        notes = [root + q for q in _QUALITY[quality]]
        a = b * bar_n
        t = np.arange(bar_n) / rate
        env = np.minimum(1, t / 0.25) * np.minimum(1, (bar_n / rate - t) / 0.35)
        pad = sum(_tone(_hz(m), bar_n, rate, 5, 0.55) * (1 + 0.002 * i)
                  for i, m in enumerate(notes))
        _add(out, a, _pan(0.10 * env * pad, -0.25))
        for half in range(2):  # bass: root on beats 1 and 3
            m = round(2 * beat * rate)
            tt = np.arange(m) / rate
            bass = _tone(_hz(root - 12), m, rate, 3, 0.5) * np.exp(-tt * 2.5)
            _add(out, a + half * m, _pan(0.22 * bass, 0.0))
        for k in range(8):  # eighth-note arpeggio an octave up
            m = round(beat / 2 * rate)
            tt = np.arange(m) / rate
            note = notes[[0, 1, 2, 1][k % 4]] + 12
            pluck = _tone(_hz(note), m, rate, 4, 0.4) * np.exp(-tt * 7)
            _add(out, a + k * m, _pan(0.08 * pluck, 0.45))
    for k in range(16):  # drums: kick 1 and 3, snare 2 and 4, hats on eighths
        at = round(k * beat * rate)
        if k % 2 == 0:
            m = round(0.25 * rate)
            tt = np.arange(m) / rate
            sweep = 2 * np.pi * np.cumsum(45 + 75 * np.exp(-tt * 35)) / rate
            _add(out, at, _pan(0.5 * np.sin(sweep) * np.exp(-tt * 14), 0.0))
        else:
            m = round(0.18 * rate)
            tt = np.arange(m) / rate
            snare = (rng.standard_normal(m) * 0.6 + np.sin(2 * np.pi * 185 * tt)) * np.exp(-tt * 22)
            _add(out, at, _pan(0.16 * snare, 0.1))
        for h in range(2):
            m = round(0.04 * rate)
            hat = np.diff(rng.standard_normal(m + 1)) * np.exp(-np.arange(m) / rate * 120)
            _add(out, at + h * round(beat / 2 * rate), _pan(0.05 * hat, -0.4))
    return out


def music(duration_s: float, rate: int, theme: Theme, seed: int = 0) -> np.ndarray:
    """Stereo (2, n) score for the whole episode: the series' loop, faded in and out."""
    n = round(duration_s * rate)
    loop = _loop(theme, rate, _rng("drums", theme.key, theme.bpm, seed))
    reps = int(np.ceil(n / loop.shape[1])) + 1
    out = np.tile(loop, reps)[:, :n]
    fade = min(n // 4, round(1.0 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        out[:, :fade] *= ramp
        out[:, n - fade:] *= ramp[::-1]
    return out.astype(np.float32)


# ---------------------------------------------------------------- sound effects


def knock(rate: int, rng: np.random.Generator) -> np.ndarray:
    """Three knocks on a wooden door: damped low resonances plus a click."""
    out = np.zeros(round(0.85 * rate))
    for k in range(3):
        m = round(0.14 * rate)
        t = np.arange(m) / rate
        body = sum(np.sin(2 * np.pi * f * t) * a for f, a in ((160, 1.0), (240, 0.6), (410, 0.3)))
        hit = (body + 0.6 * rng.standard_normal(m) * np.exp(-t * 120)) * np.exp(-t * 38)
        _add(out, round(k * 0.24 * rate), hit)
    return out


def whoosh(rate: int, rng: np.random.Generator, duration_s: float = 0.9) -> np.ndarray:
    """Noise whose pass band sweeps up and back, like something rushing past."""
    n = round(duration_s * rate)
    spec = np.fft.rfft(rng.standard_normal(n))
    out = np.zeros(n)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    # Four overlapping slices, each with its own centre frequency (a coarse sweep).
    centres = (400, 1200, 2500, 900)
    win = np.hanning(n // 2)
    for i, fc in enumerate(centres):
        band = np.exp(-0.5 * ((freqs - fc) / (0.5 * fc)) ** 2)
        part = np.fft.irfft(spec * band, n)
        a = i * n // 8
        seg = part[a:a + n // 2] * win[: min(n // 2, n - a)]
        out[a:a + seg.size] += seg
    env = np.sin(np.pi * np.arange(n) / n) ** 1.5
    return out * env / (np.max(np.abs(out)) + 1e-9)


def bell(rate: int, rng: np.random.Generator) -> np.ndarray:
    """A shop-door bell: inharmonic partials with long decay."""
    n = round(1.4 * rate)
    t = np.arange(n) / rate
    f0 = 880 * (1 + 0.05 * rng.standard_normal())
    partials = ((1.0, 1.0), (2.76, 0.5), (5.4, 0.25), (8.9, 0.12))
    return sum(a * np.sin(2 * np.pi * f0 * r * t) * np.exp(-t * (2.5 + 2 * r)) for r, a in partials)


def footsteps(rate: int, rng: np.random.Generator) -> np.ndarray:
    """Four footsteps: low thumps with a scuff."""
    out = np.zeros(round(2.0 * rate))
    for k in range(4):
        m = round(0.12 * rate)
        t = np.arange(m) / rate
        step = np.sin(2 * np.pi * 90 * t) * np.exp(-t * 45) + 0.3 * rng.standard_normal(m) * np.exp(
            -t * 60)
        _add(out, round(k * 0.48 * rate), step)
    return out


EFFECTS = {"knock": knock, "whoosh": whoosh, "bell": bell, "footsteps": footsteps}


def effect(kind: str, rate: int, seed: int) -> np.ndarray:
    """One effect, peak-normalised, mono float32."""
    x = np.asarray(EFFECTS[kind](rate, _rng("sfx", kind, seed)), np.float64)
    return (x / (np.max(np.abs(x)) + 1e-9)).astype(np.float32)
