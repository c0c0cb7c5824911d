"""The voices on disk: which character models exist, and a speaker for one of them.

Layout: ``<home>/voices/<series>/<character-dir>/<trainer>/manifest.json``; a folder counts
as a model only once its manifest is written (the last step of training).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_assets.errors import VoiceAssetsError
from voice_assets.voices.trainers import MANIFEST

# Trainers whose models speak, best first; a reference pack is a prompt for other tools.
SPEAKING = ("piper",)


@dataclass(frozen=True)
class ModelEntry:
    series: str
    character: str
    trainer: str
    step: int
    folder: Path
    files: dict[str, str]


def find_models(home: Path) -> list[ModelEntry]:
    """Every complete model folder under ``home``/voices."""
    out = []
    for manifest in sorted((Path(home) / "voices").glob(f"*/*/*/{MANIFEST}")):
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            continue
        out.append(ModelEntry(m.get("series", ""), m.get("character", ""),
                              m.get("trainer", manifest.parent.name), int(m.get("step", 0)),
                              manifest.parent, dict(m.get("files", {}))))
    return out


def resolve_speaker(home: Path, character: str, series: str | None = None
                    ) -> Callable[[str], tuple[np.ndarray, int]]:
    """A function that says text in ``character``'s voice; a clear error when there is none."""
    wanted = character.casefold()
    models = [m for m in find_models(home)
              if wanted in (m.character.casefold(), f"{m.series}__{m.character}".casefold())
              and (series is None or m.series == series)]
    if not models:
        have = sorted({f"{m.series}/{m.character}" for m in find_models(home)})
        raise VoiceAssetsError(
            f"no voice model for character '{character}'"
            + (f" in series '{series}'" if series else "")
            + f"; models here: {', '.join(have) or 'none'} (train one with "
            "`voice-assets voices train <series>__<character>`)")
    if len({m.series for m in models}) > 1:
        raise VoiceAssetsError(f"'{character}' has models in several series "
                               f"({', '.join(sorted({m.series for m in models}))}): name one "
                               "with --series")
    for trainer in SPEAKING:
        for m in models:
            if m.trainer == trainer:
                from voice_assets.voices.piper import load_speaker

                return load_speaker(m.folder)
    packs = [m for m in models if m.trainer == "reference"]
    if packs:
        raise VoiceAssetsError(
            f"'{character}' has a reference pack ({packs[0].folder / 'pack'}), which is a prompt "
            "for zero-shot models (GPT-SoVITS, F5-TTS, CosyVoice, XTTS), not a voice this "
            "command can speak with: train a piper voice, or give the pack to one of them")
    raise VoiceAssetsError(f"'{character}' has no model that speaks here "
                           f"({', '.join(sorted({m.trainer for m in models}))})")
