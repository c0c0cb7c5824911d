"""The piper trainer behind the `VoiceTrainer` Protocol, and a speaker for a trained voice.

Model folder: ``voice.onnx`` + ``voice.onnx.json`` (what ``piper`` and Home Assistant load),
``work/dataset`` (the clips at the voice's rate) and ``work/train`` (checkpoints, the log, the
TensorBoard logs): a stopped run resumes from ``work/train/checkpoints/last.ckpt``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from voice_assets.errors import VoiceAssetsError
from voice_assets.voices import piper_train
from voice_assets.voices.trainers import Progress, TrainedVoice, TrainingSet

VOICE_NAME = "voice"


def _flat(event: dict[str, Any]) -> dict[str, Any]:
    """A trainer event as one level of step + figures (losses, metrics)."""
    out: dict[str, Any] = {"step": event.get("step")}
    for k in ("losses", "metrics"):
        for name, v in (event.get(k) or {}).items():
            if isinstance(v, int | float):
                out[name] = float(v)
    if event.get("event") and len(out) == 1:
        out["event"] = event["event"]
    return out


@dataclass
class PiperTrainer:
    """piper VITS, trained in its own process; fine-tuned from a base checkpoint when one is
    given or pulled for the language (`voice-assets models pull piper-base-en`)."""

    max_steps: int = 2000
    batch_size: int = 16
    checkpoint_every: int = 500
    model_size: str = "medium"
    base_checkpoint: Path | None = None
    base_for: Callable[[str | None], Path | None] = lambda _language: None
    name: str = "piper"
    needs_text: bool = True

    def train(self, data: TrainingSet, folder: Path, progress: Progress) -> TrainedVoice:
        language = data.language or "en"
        clips = [(Path(p), str(t)) for p, t in
                 data.train.select("audio_path", "text").iter_rows() if p and str(t).strip()]
        if not clips:
            raise VoiceAssetsError(f"{data.series}/{data.character}: no train clips with text "
                                   "to train a piper voice on")
        dataset = piper_train.prepare_dataset(clips, folder / "work" / "dataset", language)
        base = self.base_checkpoint or self.base_for(language)
        config = piper_train.TrainConfig(
            max_steps=self.max_steps, batch_size=max(1, min(self.batch_size, len(clips))),
            quality=self.model_size,  # type: ignore[arg-type]
            checkpoint_every=self.checkpoint_every, base_checkpoint=base,
            voice_name=VOICE_NAME, validation_split=0.0)
        history: list[dict[str, Any]] = []

        def on_progress(event: dict[str, Any]) -> None:
            flat = _flat(event)
            if flat.get("step") is not None and len(flat) > 1:
                history.append(flat)
                progress(flat)

        result = piper_train.train(dataset, folder / "work" / "train", config, on_progress)
        onnx = piper_train.export_onnx(result.checkpoint, folder)
        return TrainedVoice(
            self.name, folder, step=result.global_step, history=history,
            files={"onnx": onnx.name, "config": f"{onnx.name}.json",
                   "checkpoint": str(result.checkpoint.relative_to(folder))},
            metadata={"resumed_from_step": result.resumed_from_step,
                      "fine_tuned_from": str(base) if base else None,
                      "model_size": self.model_size, **result.last_losses},
            speak=load_speaker(folder))


@lru_cache(maxsize=8)
def _voice(onnx: str, mtime: float) -> Any:
    from piper import PiperVoice

    return PiperVoice.load(onnx)


def load_speaker(folder: Path) -> Callable[[str], tuple[np.ndarray, int]]:
    """Say text with the piper voice in ``folder`` (loaded once per process)."""
    onnx = Path(folder) / f"{VOICE_NAME}.onnx"
    if not onnx.is_file() or not Path(f"{onnx}.json").is_file():
        raise VoiceAssetsError(f"{folder} holds no piper voice ({onnx.name} and its .json); "
                               "train it with `voice-assets voices train`")
    voice = _voice(str(onnx), onnx.stat().st_mtime)
    return lambda text: piper_train.speak(voice, text)
