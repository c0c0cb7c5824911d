"""Voice trainers behind one Protocol: each turns a character's dataset into a model folder.

A model folder (``$VOICE_ASSETS_HOME/voices/<series>/<character>/<trainer>/``) always holds
``manifest.json`` (trainer, character, language, files, training step) and whatever the
trainer makes: a piper voice (``voice.onnx`` + ``voice.onnx.json``, loadable by ``piper``
and Home Assistant as they are), a reference pack (see `reference`), or an external
trainer's artifacts. Work files (checkpoints) live in ``work/`` beside it, so a training run
that stops resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from voice_assets.atomic import write_text
from voice_assets.voices import reference

Progress = Callable[[dict[str, Any]], None]
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class TrainingSet:
    """One character's kept clips: train to learn from, validation to judge by."""

    series: str
    character: str
    language: str | None
    train: pl.DataFrame  # dataset rows: audio_path, text, duration_s, emotion, snr_db, ...
    validation: pl.DataFrame


@dataclass
class TrainedVoice:
    trainer: str
    folder: Path
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # step + losses
    files: dict[str, str] = field(default_factory=dict)  # role -> path inside folder
    metadata: dict[str, Any] = field(default_factory=dict)
    speak: Callable[[str], tuple[np.ndarray, int]] | None = None  # None: nothing to speak

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST


class VoiceTrainer(Protocol):
    """Builds a character's voice in ``folder`` (resuming what a stopped run left there)."""

    name: str
    # The text a trainer needs (False: audio only, e.g. RVC).
    needs_text: bool

    def train(self, data: TrainingSet, folder: Path, progress: Progress) -> TrainedVoice: ...


def write_manifest(voice: TrainedVoice, data: TrainingSet) -> Path:
    """The folder's manifest.json, written last (atomically): its presence means complete."""
    write_text(voice.manifest, json.dumps({
        "trainer": voice.trainer, "series": data.series, "character": data.character,
        "language": data.language, "step": voice.step, "files": voice.files,
        "train_clips": data.train.height, "validation_clips": data.validation.height,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"metadata": voice.metadata} if voice.metadata else {}),
    }, ensure_ascii=False, indent=1))
    return voice.manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@dataclass
class ReferenceTrainer:
    """No training: the character's best prompts for zero-shot cloning models."""

    prompts: int = 5
    name: str = "reference"
    needs_text: bool = True

    def train(self, data: TrainingSet, folder: Path, progress: Progress) -> TrainedVoice:
        prompts = reference.choose_prompts(data.train, n=self.prompts)
        progress({"step": 0, "prompts": len(prompts)})
        voice = TrainedVoice(self.name, folder, files={"pack": "pack/manifest.json"},
                             metadata={"prompts": [p.id for p in prompts]})
        reference.write_pack(prompts, folder / "pack", series=data.series,
                             character=data.character, language=data.language)
        return voice
