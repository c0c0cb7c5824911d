"""Speaker diarization backend as a Dagster resource."""

from __future__ import annotations

import dagster as dg
import numpy as np
from pydantic import Field

from voice_assets.errors import ModelMissingError
from voice_assets.models import get, module_available
from voice_assets.paths import Layout
from voice_assets.profiles import GPU_ENVIRONMENT
from voice_assets.progress import Progress, silent
from voice_assets.resources.separator import resolve_device
from voice_assets.speech import diarization as dia
from voice_assets.speech.embeddings import SpeakerEncoder
from voice_assets.speech.overlap import OVERLAP_THRESHOLD, SegmentationOverlap
from voice_assets.speech.vad import SpeechRegions

BACKENDS = ("embed-cluster", "pyannote")
OVERLAP_MODEL = SegmentationOverlap.name


class DiarizerResource(dg.ConfigurableResource):
    """Who spoke when.

    ``embed-cluster`` (default, embedded, CPU): Resemblyzer GE2E embeddings of windows of
    the voice-activity regions, clustered with an automatic speaker count, then re-segmented
    frame by frame. ``pyannote``: the pyannote.audio 4 community-1 pipeline from the models
    dir, in the GPU profile's environment (`VOICE_ASSETS_PROFILE=gpu scripts/setup.sh` and
    `voice-assets models pull pyannote-diarization-community-1`). ``num_speakers`` forces the count;
    ``min_speakers``/``max_speakers`` bound it. ``exclusive`` (default) keeps one speaker at a
    time and flags overlapped stretches; off, the second voice gets its own overlapped rows.
    With embed-cluster, ``overlap_model`` (pyannote's segmentation-3.0, embedded:
    `voice_assets/speech/overlap.py`) gives the overlapped stretches, moves speaker changes
    to where it hears the voice change (up to ``change_window_s`` away), and gives another
    voice it hears inside a turn to that voice's speaker.
    """

    backend: str = Field(default="embed-cluster", description="embed-cluster | pyannote")
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    exclusive: bool = True
    device: str = Field(default="auto", description="auto | cpu | cuda")
    window_s: float = Field(
        default=dia.EmbedClusterParams.window_s,
        description="embed-cluster: clustering window length (s)",
    )
    hop_s: float = Field(
        default=dia.EmbedClusterParams.hop_s, description="embed-cluster: clustering window hop (s)"
    )
    merge_similarity: float = Field(
        default=dia.EmbedClusterParams.merge_similarity,
        description="embed-cluster: clusters whose centroids are this similar are one voice",
    )
    batch_size: int = Field(default=128, description="embed-cluster: windows per LSTM batch")
    overlap_model: str = Field(
        default=OVERLAP_MODEL,
        description="embed-cluster: the overlapped-speech model that flags where two voices "
        "are heard ('none': every speaker change without a pause is flagged instead)",
    )
    overlap_threshold: float = Field(
        default=OVERLAP_THRESHOLD,
        description="embed-cluster: overlap probability that flags a frame")
    change_window_s: float = Field(
        default=dia.CHANGE_WINDOW_S, ge=0.0,
        description="embed-cluster: how far (s) the overlap model may move a speaker change "
        "(0: changes stay where the GE2E windows put them)")

    def params(self) -> dia.EmbedClusterParams:
        return dia.EmbedClusterParams(
            window_s=self.window_s,
            hop_s=self.hop_s,
            merge_similarity=self.merge_similarity,
            num_speakers=self.num_speakers,
            min_speakers=self.min_speakers or 1,
            max_speakers=self.max_speakers or dia.EmbedClusterParams.max_speakers,
            exclusive=self.exclusive,
        )

    def check_available(self, layout: Layout | None = None) -> None:
        """Fail before any work (and any write) when the configured backend cannot run."""
        layout = layout or Layout.from_env()
        if self.backend == "embed-cluster":
            get("resemblyzer-ge2e").require(layout)
            self.params()
            if self.overlap_model != "none":
                get(self.overlap_model).require(layout)
        elif self.backend == "pyannote":
            spec = get(dia.PYANNOTE_MODEL)
            if not module_available("pyannote.audio"):
                raise ModelMissingError(
                    dia.PYANNOTE_MODEL,
                    "installed Python packages (pyannote.audio is not installed)",
                    f"{GPU_ENVIRONMENT} && {spec.pull}",
                )
            spec.require(layout)
        else:
            raise ValueError(
                f"unknown diarization backend '{self.backend}'; choose one of {BACKENDS}"
            )

    def diarizer(self, layout: Layout | None = None) -> dia.Diarizer:
        """The configured backend, loaded (a missing model or package raises right here)."""
        layout = layout or Layout.from_env()
        self.check_available(layout)
        device = resolve_device(self.device)
        if self.backend == "pyannote":
            pipeline = dia.load_pyannote_pipeline(get(dia.PYANNOTE_MODEL).require(layout), device)
            return dia.PyannoteDiarizer(pipeline, self.exclusive, self.num_speakers,
                                        self.min_speakers, self.max_speakers)
        encoder = SpeakerEncoder(
            get("resemblyzer-ge2e").require(layout), device=device, batch_size=self.batch_size
        )
        segmenter = (None if self.overlap_model == "none" else
                      SegmentationOverlap(get(self.overlap_model).require(layout)))
        return dia.EmbedClusterDiarizer(encoder, self.params(), segmenter=segmenter,
                                        overlap_threshold=self.overlap_threshold,
                                        change_window_s=self.change_window_s)

    def diarize(
        self,
        samples16k: np.ndarray,
        regions: SpeechRegions,
        layout: Layout | None = None,
        progress: Progress = silent,
    ) -> dia.DiarizationResult:
        return self.diarizer(layout).diarize(samples16k, regions, progress)

    def embed_reference(self, samples16k: np.ndarray, layout: Layout | None = None
                        ) -> tuple[np.ndarray, str] | None:
        """One unit embedding of a clean solo clip, in the space of ``speaker_embeddings``.

        None for a backend whose speaker embeddings this resource cannot reproduce (pyannote
        embeds inside its pipeline); the caller says that reference clips were not used.
        """
        if self.backend != "embed-cluster":
            return None
        layout = layout or Layout.from_env()
        encoder = SpeakerEncoder(
            get("resemblyzer-ge2e").require(layout), device=resolve_device(self.device),
            batch_size=self.batch_size,
        )
        x = np.asarray(samples16k, dtype=np.float32).reshape(-1)
        rate = dia.SAMPLE_RATE
        last = max(0.0, x.size / rate - self.window_s)
        starts = np.arange(0.0, last + 1e-9, self.hop_s) if last > 0 else np.zeros(1)
        emb = encoder.embed_windows(x, starts, self.window_s)
        emb = emb[np.linalg.norm(emb, axis=1) > 1e-6]
        if not emb.size:
            return None
        mean = emb.mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-9), "resemblyzer-ge2e"
