"""Quality metrics of one clip and the keep/reject decision.

Each metric targets one way a clip can poison a voice model, and none of them penalises loud,
high-pitched or emotional speech as such:

- ``clipping_ratio`` is measured on the original (un-normalised) mixture and stem samples and counts
  only samples that sit on a flat top at the signal's peak level: a shout that peaks near full
  scale without flattening has a ratio near 0.
- ``snr_db`` is WADA-SNR (Kim & Stern 2008), which reads the amplitude distribution of the whole
  clip and does not need pauses, so continuous shouting is not mistaken for noise.
- ``bandwidth_hz`` finds the upper edge of the long-term spectrum (telephone/low-bitrate sources).
- ``residual_music`` measures what stem separation left behind: energy in spectral lines that are
  tonal, hold their frequency for several frames, and are not on the speaker's F0 harmonic comb.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.ndimage
import scipy.signal

from voice_assets.dataset.prosody import f0_track, resample, to_mono_float


def clipping_ratio(samples: np.ndarray, rel_tol: float = 0.005, min_run: int = 3) -> float:
    """Fraction of samples on flat tops at the peak level (runs of >= ``min_run`` samples).

    Works on absolute full scale and on a clipped-then-attenuated signal alike, because the
    plateau is found relative to the clip's own peak. A natural waveform reaches its peak on a
    handful of cycles only, so its ratio stays around 1e-4 even when it peaks at 0 dBFS.
    """
    a = np.abs(to_mono_float(samples))
    if len(a) == 0:
        return 0.0
    peak = float(a.max())
    if peak < 1e-3:
        return 0.0
    near = a >= peak * (1.0 - rel_tol)
    # Lengths of runs of consecutive `near` samples.
    padded = np.concatenate(([False], near, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]
    runs = ends - starts
    return float(runs[runs >= min_run].sum() / len(a))


@lru_cache(maxsize=1)
def _wada_table() -> tuple[np.ndarray, np.ndarray]:
    """G(SNR) for gamma(0.4)-distributed speech in Gaussian noise, simulated once, seeded."""
    rng = np.random.default_rng(20080101)
    n = 200_000
    speech = rng.gamma(0.4, 1.0, n) * rng.choice([-1.0, 1.0], n)
    noise = rng.standard_normal(n)
    p_s = np.mean(speech**2)
    snrs = np.arange(-20, 101, dtype=np.float64)
    g = np.empty_like(snrs)
    for i, snr in enumerate(snrs):
        z = np.abs(speech + noise * np.sqrt(p_s / 10 ** (snr / 10)))
        z = np.maximum(z, 1e-10)
        g[i] = np.log(z.mean()) - np.log(z).mean()
    return snrs, np.maximum.accumulate(g)


def wada_snr(samples: np.ndarray, sr: int) -> float:
    """Blind SNR estimate in dB (WADA), clamped to [-20, 100]."""
    x = resample(samples, sr, 16_000)
    if len(x) == 0 or np.max(np.abs(x)) < 1e-6:
        return float("nan")
    x = x / np.max(np.abs(x))
    a = np.maximum(np.abs(x), 1e-10)
    v = np.log(max(1e-10, a.mean())) - np.log(a).mean()
    snrs, g = _wada_table()
    if v <= g[0]:
        return float(snrs[0])
    if v >= g[-1]:
        return float(snrs[-1])
    return float(np.interp(v, g, snrs))


def bandwidth_hz(samples: np.ndarray, sr: int, rel_db: float = -60.0) -> float:
    """Highest frequency whose smoothed long-term level is within ``rel_db`` of the peak."""
    x = to_mono_float(samples)
    if len(x) < 256 or np.max(np.abs(x)) < 1e-6:
        return float("nan")
    nper = min(2048, len(x))
    f, p = scipy.signal.welch(x, fs=sr, nperseg=nper)
    p_db = 10 * np.log10(p + 1e-20)
    k = max(1, len(p_db) // 128)
    p_db = scipy.ndimage.uniform_filter1d(p_db, size=2 * k + 1)
    above = np.flatnonzero(p_db >= p_db.max() + rel_db)
    return float(f[above[-1]]) if len(above) else 0.0


def residual_music_score(samples: np.ndarray, sr: int, f0: np.ndarray | None = None,
                         persist_frames: int = 8) -> float:
    """Share of the clip's energy in persistent tonal lines off the speaker's harmonic comb.

    Why this works: separation leaks music as the partials of instruments, which are narrow,
    hold their pitch for hundreds of milliseconds and sit at frequencies unrelated to the
    speaker's F0. Voiced speech also has narrow partials, but exactly at k*F0, which the F0
    tracker follows; unvoiced speech is broadband noise, not lines. So: find spectral peaks
    10 dB above the local spectral floor, drop those on the F0 comb, keep those present in
    ``persist_frames`` consecutive 20 ms frames, and report their energy share (0 clean .. 1).
    """
    sr_a = 16_000
    x = resample(samples, sr, sr_a)
    if len(x) < int(0.3 * sr_a) or np.max(np.abs(x)) < 1e-6:
        return float("nan")
    n_fft, hop = 2048, 320
    _, _, z = scipy.signal.stft(x, fs=sr_a, window="hann", nperseg=n_fft, noverlap=n_fft - hop,
                                boundary="even", padded=True)
    power = np.abs(z) ** 2  # (freq, frames)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr_a)
    band = (freqs >= 60) & (freqs <= 7500)
    power = power[band]
    freqs = freqs[band]
    n_frames = power.shape[1]
    # F0 every 5 ms; an STFT frame is compared with every F0 inside its central 40 ms, so a
    # gliding voice keeps its harmonics on the comb and a voicing dropout does not unmask them.
    sub = 4
    if f0 is None:
        f0 = f0_track(x, sr_a, frame_s=hop / sr_a / sub, dense=True)
    f0 = np.asarray(f0, dtype=np.float64)
    need = n_frames * sub
    f0 = np.pad(f0[:need], (0, max(0, need - len(f0))))
    reach, wide = 4, 8  # +-20 ms around the frame centre; +-40 ms if nothing voiced there

    p_db = 10 * np.log10(power + 1e-20)
    floor_db = scipy.ndimage.median_filter(p_db, size=(31, 1), mode="nearest")
    frame_max = p_db.max(axis=0, keepdims=True)
    is_peak = (
        (p_db > np.roll(p_db, 1, axis=0)) & (p_db >= np.roll(p_db, -1, axis=0))
        & (p_db - floor_db >= 10.0) & (p_db >= frame_max - 50.0)
        & (p_db >= p_db.max() - 70.0)
    )

    # The F0 harmonic comb, with a tolerance that grows with the harmonic number (F0 jitter and
    # estimation error scale with it) but never covers the space between two harmonics.
    bin_hz = freqs[1] - freqs[0]
    on_comb = np.zeros_like(is_peak)
    combs: dict[float, np.ndarray] = {}  # an F0 recurs in many frames: its comb, once

    def comb(f: float) -> np.ndarray:
        if f not in combs:
            k = np.maximum(1, np.round(freqs / f))
            tol = np.minimum(np.maximum(1.5 * bin_hz, 0.03 * k * f), 0.15 * f)
            mask = np.abs(freqs - k * f) <= tol
            # DIO's commonest error is an octave too high (creaky or breathy voice): the odd
            # multiples of F0/2 below 4*F0 are then real harmonics too.
            for odd in (0.5, 1.5, 2.5, 3.5):
                mask |= np.abs(freqs - odd * f) <= max(1.5 * bin_hz, 0.03 * odd * f)
            combs[f] = mask
        return combs[f]

    for t in range(n_frames):
        c = t * sub
        near = f0[max(0, c - reach): c + reach + 1]
        if not np.any(near > 0):
            # DIO misses voicing in creaky or breathy stretches: borrow the nearest F0.
            near = f0[max(0, c - wide): c + wide + 1]
        for f in np.unique(np.round(near[near > 0], 0)):
            on_comb[:, t] |= comb(float(f))
    candidates = is_peak & ~on_comb

    # Persistent: a peak within +-1 bin in every frame of a run of `persist_frames` frames.
    widened = scipy.ndimage.maximum_filter(candidates, size=(3, 1))
    run = scipy.ndimage.minimum_filter(widened.astype(np.uint8), size=(1, persist_frames),
                                       mode="constant", cval=0)
    in_run = scipy.ndimage.maximum_filter(run, size=(1, persist_frames)).astype(bool)
    persistent = candidates & in_run
    # A Hann main lobe spans +-2 bins: count the whole line's energy, not only its top bin.
    line = scipy.ndimage.maximum_filter(persistent, size=(5, 1)) & ~on_comb
    total = power.sum()
    return float(power[line].sum() / total) if total > 0 else float("nan")


def level_db(samples: np.ndarray) -> float:
    x = to_mono_float(samples)
    return float(10 * np.log10(np.mean(x**2) + 1e-20)) if len(x) else float("nan")


@dataclass(frozen=True)
class QualityGates:
    """Thresholds of the keep/reject decision (each rejection names the gate that failed)."""

    min_duration_s: float = 1.0
    max_duration_s: float = 15.0
    max_clipping_ratio: float = 0.0005
    min_snr_db: float = 10.0
    max_residual_music: float = 0.05
    min_bandwidth_hz: float = 5000.0
    reject_overlap: bool = True


def source_bandwidth_gate(bandwidths: Sequence[float], gate_hz: float,
                          share: float = 0.9) -> float:
    """The bandwidth gate for one episode's clips: ``gate_hz``, or ``share`` of the clips'
    median bandwidth where that median is below the gate.

    A narrowband source (a telephone-band or 16 kHz recording, an old low-bitrate rip) has no
    wider clip to offer, so rejecting every clip loses the character's whole voice for nothing;
    the gate then only catches clips narrower than the source itself (a phone call inside a
    film), and the card reports the source's band."""
    finite = [b for b in bandwidths if b is not None and np.isfinite(b)]
    if not finite:
        return gate_hz
    return float(min(gate_hz, share * float(np.median(finite))))


# Order matters only for `reject_reason` (the first failing gate); all are listed in reasons.
REJECT_REASONS = ("silent", "not_dialogue", "background", "music", "clipping", "too_short",
                  "too_long", "no_text",
                  "overlap",
                  "residual_music", "low_snr", "low_bandwidth")


def reject_reasons(*, duration_s: float, clipping: float, snr_db: float, residual_music: float,
                   bandwidth: float, text: str | None, overlap: bool | None,
                   gates: QualityGates, silent: bool = False,
                   review_flags: list[str] | None = None,
                   character: str | None = None) -> list[str]:
    """Every gate the clip fails, in REJECT_REASONS order; empty means keep.

    ``review_flags`` are a person's verdicts from Label Studio ("not dialogue", "music"):
    they reject the clip whatever the metrics say. A ``background`` character (crowds, one-line
    extras) is nobody's voice dataset.
    """
    out: list[str] = []
    if silent:
        return ["silent"]
    flags = set(review_flags or [])
    if "not dialogue" in flags:
        out.append("not_dialogue")
    if character == "background":
        out.append("background")
    if "music" in flags:
        out.append("music")
    if clipping > gates.max_clipping_ratio:
        out.append("clipping")
    if duration_s < gates.min_duration_s:
        out.append("too_short")
    if duration_s > gates.max_duration_s:
        out.append("too_long")
    if not (text or "").strip():
        out.append("no_text")
    if gates.reject_overlap and bool(overlap):
        out.append("overlap")
    if np.isfinite(residual_music) and residual_music > gates.max_residual_music:
        out.append("residual_music")
    if np.isfinite(snr_db) and snr_db < gates.min_snr_db:
        out.append("low_snr")
    if np.isfinite(bandwidth) and bandwidth < gates.min_bandwidth_hz:
        out.append("low_bandwidth")
    return out
