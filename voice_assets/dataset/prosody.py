"""Prosody of one utterance: pitch, loudness, tempo and voice quality as plain numbers.

These features are stored for every utterance whatever emotion backend runs, because they are
what a speaker's emotional state changes most reliably (excited speech is higher, wider in pitch,
louder and faster; sad speech is lower, flatter, quieter and slower) and they feed the embedded
per-series emotion classifier. F0 comes from WORLD's DIO + StoneMask (fast, robust on speech) and
falls back to librosa's pYIN when pyworld is absent.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import scipy.signal
import soxr

ANALYSIS_SR = 16_000
FRAME_S = 0.010  # hop of every frame-level track (F0, energy)
F0_FLOOR = 60.0
F0_CEIL = 900.0  # anime voices and shouting go well above the usual 500 Hz ceiling


@dataclass(frozen=True)
class ProsodyFeatures:
    """Per-utterance prosody; NaN where a value cannot be measured (e.g. no voiced frame)."""

    duration_s: float
    f0_mean_hz: float
    f0_median_hz: float
    f0_std_st: float  # semitone standard deviation: pitch variability independent of register
    f0_range_st: float  # 5th..95th percentile span in semitones
    f0_slope_st_s: float  # overall declination / rise, semitones per second
    voiced_ratio: float
    energy_db: float  # mean RMS level (dBFS) of active frames
    energy_std_db: float
    energy_range_db: float  # 10th..95th percentile of active frames
    speaking_rate: float  # syllable nuclei per second of active speech
    words_per_s: float  # from the transcript when one is given
    spectral_centroid_hz: float
    alpha_ratio_db: float  # 1-5 kHz vs 0-1 kHz energy: vocal effort (shouting raises it)
    pause_ratio: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


FEATURE_NAMES: tuple[str, ...] = tuple(ProsodyFeatures.__dataclass_fields__)
# What each feature measures, for the tables that store them (same names as the dataclass).
PROSODY_DESCRIPTIONS: dict[str, str] = {
    "duration_s": "Length of the utterance audio, seconds.",
    "f0_mean_hz": "Mean pitch (F0) of voiced frames, Hz (NaN: no voiced frame).",
    "f0_median_hz": "Median pitch (F0) of voiced frames, Hz.",
    "f0_std_st": "Pitch variability, semitones (standard deviation, independent of register).",
    "f0_range_st": "Pitch range, semitones (5th to 95th percentile).",
    "f0_slope_st_s": "Overall pitch rise (+) or fall (-), semitones per second.",
    "voiced_ratio": "Share of active frames that are voiced (0-1).",
    "energy_db": "Mean RMS level of active frames, dBFS.",
    "energy_std_db": "Loudness variability of active frames, dB (standard deviation).",
    "energy_range_db": "Loudness range of active frames, dB (10th to 95th percentile).",
    "speaking_rate": "Syllable nuclei per second of active speech.",
    "words_per_s": "Words per second, from the transcript (NaN: no words).",
    "spectral_centroid_hz": "Spectral centroid, Hz (brightness of the voice).",
    "alpha_ratio_db": "Energy at 1-5 kHz against 50 Hz-1 kHz, dB: vocal effort (shouting "
    "raises it).",
    "pause_ratio": "Share of the utterance that is pause (0-1).",
}
# Features the emotion classifier uses (duration and transcript-based rate excluded: they depend
# on segmentation and on whether a transcript exists rather than on how a line is spoken).
CLASSIFIER_FEATURES: tuple[str, ...] = (
    "f0_median_hz", "f0_std_st", "f0_range_st", "f0_slope_st_s", "voiced_ratio", "energy_db",
    "energy_std_db", "energy_range_db", "speaking_rate", "spectral_centroid_hz", "alpha_ratio_db",
    "pause_ratio",
)


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x.reshape(-1)


def resample(samples: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Mono float64 at ``target`` Hz (soxr HQ, the resampler the rest of the pipeline uses)."""
    x = to_mono_float(samples)
    if sr == target or len(x) == 0:
        return x
    return np.asarray(soxr.resample(x, int(sr), int(target), quality="HQ"), dtype=np.float64)


def f0_track(samples: np.ndarray, sr: int, frame_s: float = FRAME_S,
             f0_floor: float = F0_FLOOR, f0_ceil: float = F0_CEIL,
             dense: bool = False) -> np.ndarray:
    """F0 in Hz per ``frame_s`` frame, 0 where unvoiced.

    ``dense`` searches 5 channels per octave instead of 2: fewer missed voiced frames (DIO's
    weakness) at twice the cost, for uses where a missed voiced frame matters.
    """
    x = to_mono_float(samples)
    if len(x) < int(0.05 * sr):
        return np.zeros(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pyworld
    except ImportError:  # pragma: no cover - pyworld is a dependency; pYIN is the fallback
        import librosa

        f0, voiced, _ = librosa.pyin(x.astype(np.float32), fmin=f0_floor, fmax=f0_ceil, sr=sr,
                                     hop_length=round(frame_s * sr))
        return np.where(voiced, np.nan_to_num(f0), 0.0)
    x = np.ascontiguousarray(x)
    f0, t = pyworld.dio(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_s * 1000,
                        channels_in_octave=5 if dense else 2)
    f0 = pyworld.stonemask(x, f0, t, sr)
    return np.asarray(f0, dtype=np.float64)


def frame_rms_db(x: np.ndarray, sr: int, frame_s: float = 0.025,
                 hop_s: float = FRAME_S) -> np.ndarray:
    n, hop = int(frame_s * sr), int(hop_s * sr)
    if len(x) < n:
        return np.array([20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-10)]) if len(x) else np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    return 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-10)


def syllable_rate(x: np.ndarray, sr: int, active: np.ndarray | None = None) -> float:
    """Syllable nuclei per active second: peaks of the 300-3000 Hz intensity envelope.

    Language independent (no transcript needed), after de Jong & Wempe's Praat script:
    a nucleus is an envelope peak at least 2 dB above its surroundings, 90 ms from the next.
    """
    if len(x) < int(0.2 * sr):
        return float("nan")
    sos = scipy.signal.butter(4, [300, 3000], btype="bandpass", fs=sr, output="sos")
    band = scipy.signal.sosfiltfilt(sos, x)
    env_db = frame_rms_db(band, sr, frame_s=0.04, hop_s=FRAME_S)
    if len(env_db) < 3:
        return float("nan")
    env_db = scipy.signal.savgol_filter(env_db, min(7, len(env_db) // 2 * 2 - 1), 2) \
        if len(env_db) >= 5 else env_db
    floor = np.max(env_db) - 30.0
    peaks, _ = scipy.signal.find_peaks(env_db, prominence=2.0, distance=max(1, int(0.09 / FRAME_S)),
                                       height=floor)
    active_s = (np.count_nonzero(active) * FRAME_S) if active is not None else len(x) / sr
    active_s = max(active_s, 0.2)
    return float(len(peaks) / active_s)


def prosody_features(samples: np.ndarray, sr: int, text: str | None = None,
                     n_words: int | None = None) -> ProsodyFeatures:
    """Prosody of one utterance's audio (any rate; analysed at 16 kHz)."""
    x = resample(samples, sr, ANALYSIS_SR)
    sr = ANALYSIS_SR
    duration = len(x) / sr
    nan = float("nan")
    if len(x) < int(0.1 * sr) or not np.any(np.abs(x) > 1e-6):
        return ProsodyFeatures(duration, *([nan] * (len(FEATURE_NAMES) - 1)))

    f0 = f0_track(x, sr)
    voiced = f0 > 0
    rms = frame_rms_db(x, sr)
    active = rms > (np.max(rms) - 35.0)
    if n_words is None and text:
        n_words = len(text.split())

    if np.count_nonzero(voiced) >= 3:
        fv = f0[voiced]
        st = 12 * np.log2(fv / np.median(fv))
        p5, p95 = np.percentile(fv, [5, 95])
        tv = np.nonzero(voiced)[0] * FRAME_S
        slope = float(np.polyfit(tv, st, 1)[0]) if np.ptp(tv) > 0.2 else nan
        f0_feats = (float(fv.mean()), float(np.median(fv)), float(st.std()),
                    float(12 * np.log2(p95 / p5)), slope)
    else:
        f0_feats = (nan, nan, nan, nan, nan)

    act = rms[active] if np.any(active) else rms
    p10, p95e = np.percentile(act, [10, 95])

    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    total = spec.sum() + 1e-20
    centroid = float((freqs * spec).sum() / total)
    lo = spec[(freqs >= 50) & (freqs < 1000)].sum() + 1e-20
    hi = spec[(freqs >= 1000) & (freqs < 5000)].sum() + 1e-20

    n = min(len(active), len(voiced))
    voiced_ratio = (float(np.count_nonzero(voiced[:n] & active[:n])
                          / max(1, np.count_nonzero(active[:n]))) if n else nan)
    return ProsodyFeatures(
        duration_s=duration,
        f0_mean_hz=f0_feats[0],
        f0_median_hz=f0_feats[1],
        f0_std_st=f0_feats[2],
        f0_range_st=f0_feats[3],
        f0_slope_st_s=f0_feats[4],
        voiced_ratio=voiced_ratio,
        energy_db=float(act.mean()),
        energy_std_db=float(act.std()),
        energy_range_db=float(p95e - p10),
        speaking_rate=syllable_rate(x, sr, active),
        words_per_s=float(n_words / duration) if n_words else nan,
        spectral_centroid_hz=centroid,
        alpha_ratio_db=float(10 * np.log10(hi / lo)),
        pause_ratio=float(1.0 - np.count_nonzero(active) / max(1, len(active))),
    )
