"""Speech recognition and alignment settings as Dagster resources."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import numpy as np

from voice_assets.errors import ModelMissingError
from voice_assets.models import get, module_available
from voice_assets.paths import Layout
from voice_assets.profiles import GPU_ENVIRONMENT
from voice_assets.progress import Progress, silent
from voice_assets.speech import asr as asr_mod
from voice_assets.speech.alignment import AlignOptions

BACKENDS = ("faster-whisper", "whisperx")


class ASRResource(dg.ConfigurableResource):
    """Whisper (faster-whisper / CTranslate2) over the voice-activity regions.

    ``model`` is a catalog name ('tiny.en', 'base': embedded, offline; 'small', 'medium',
    'large-v3', 'distil-large-v3': `voice-assets models pull whisper-NAME`) or a CT2 model
    directory. When it is English-only and the episode is in another language (its audio
    track's tag, or kana in its subtitles), ``multilingual_model`` transcribes it instead.
    ``device``/``compute_type`` 'auto' pick CUDA + float16 when a GPU is visible, else CPU +
    int8. ``language`` None detects it. ``batch_size`` 0 means 8 on a GPU and 4 on CPU
    (faster-whisper's batched pipeline: ~3x faster than sequential decoding even on two
    cores, same WER on the reference sample); 1 decodes chunk by chunk. Backend 'whisperx'
    re-times words with a wav2vec2 model (``align_model``, under the models dir) when the
    optional whisperx package is installed.
    """

    model: str = "tiny.en"
    multilingual_model: str = "base"
    backend: str = "faster-whisper"
    device: str = "auto"
    compute_type: str = "auto"
    language: str | None = None
    beam_size: int = 5
    batch_size: int = 0
    cpu_threads: int = 0
    align_model: str = "wav2vec2-base-960h"
    home: str = ""

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.home)) if self.home else Layout.from_env()

    @property
    def resolved_device(self) -> str:
        return asr_mod.default_device()[0] if self.device == "auto" else self.device

    def load(self, model: str | None = None) -> object:
        """The loaded faster-whisper model (cached per process)."""
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown ASR backend '{self.backend}'; choose one of {BACKENDS}")
        if self.backend == "whisperx":  # fail before minutes of transcription, not after
            if not module_available("whisperx"):
                raise ModelMissingError("whisperx", "installed Python packages",
                                        f"{GPU_ENVIRONMENT} "
                                        "(or choose backend 'faster-whisper')")
            get(self.align_model).require(self.layout)
            get("nltk-punkt-tab").require(self.layout)
        path = asr_mod.resolve_model(model or self.model, self.layout)
        return asr_mod.load_whisper(str(path), self.device, self.compute_type, self.cpu_threads)

    def transcribe(self, samples: np.ndarray, regions: Sequence[tuple[float, float]],
                   progress: Progress = silent,
                   language_hint: str | None = None) -> asr_mod.Transcript:
        """Transcribe 16 kHz mono ``samples`` inside ``regions`` (episode seconds)."""
        language = self.language or language_hint
        name = self.model
        model = self.load(name)
        if language and language != "en" and not model.model.is_multilingual:  # type: ignore[attr-defined]
            name = self.multilingual_model
            model = self.load(name)
        batch = self.batch_size or asr_mod.default_batch_size(self.resolved_device)
        transcript = asr_mod.transcribe(
            model, samples, regions, model_name=name, language=language,
            beam_size=self.beam_size, batch_size=batch, progress=progress)
        if self.backend == "whisperx" and transcript.segments:
            align_dir = get(self.align_model).require(self.layout)
            transcript = asr_mod.whisperx_align(
                transcript, samples, align_dir, self.resolved_device,
                punkt_dir=get("nltk-punkt-tab").require(self.layout))
        return transcript


class AlignmentResource(dg.ConfigurableResource):
    """How subtitle lines are aligned to the audio, and when their drift is flagged.

    ``pocketsphinx`` refines line edges by forced alignment (English audio). ``mfa`` uses the
    Montreal Forced Aligner instead when an `mfa` executable is on PATH (with the named
    pretrained dictionary and acoustic model). MFA is an external tool (Kaldi, installed with
    conda; PyPI's package cannot run without it) and is not part of either profile's
    environment: without it pocketsphinx refines, with a warning in the run's log. A median absolute
    drift above ``max_median_drift_s`` fails the WARN-severity drift check.
    """

    pocketsphinx: bool = True
    mfa: bool = False
    mfa_dictionary: str = "english_us_arpa"
    mfa_acoustic_model: str = "english_us_arpa"
    band_s: float = 4.0
    max_median_drift_s: float = 0.5

    def options(self) -> AlignOptions:
        return AlignOptions(band_s=self.band_s, pocketsphinx=self.pocketsphinx, mfa=self.mfa,
                            mfa_dictionary=self.mfa_dictionary,
                            mfa_acoustic_model=self.mfa_acoustic_model)
