"""The EmotionRecognizer resource: which emotion backends run, from which local models."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from voice_assets.dataset import emotion as emo
from voice_assets.errors import ModelMissingError
from voice_assets.models import CATALOG, get
from voice_assets.paths import Layout
from voice_assets.progress import Progress, silent

CATEGORICAL_BACKENDS = ("transformers", "emotion2vec")


@lru_cache(maxsize=4)
def _load_categorical(backend: str, path: str, device: str) -> object:
    if backend == "emotion2vec":
        return emo.Emotion2VecModel(path, device)
    return emo.TransformersEmotionModel(path, device)


@lru_cache(maxsize=4)
def _load_dimensional(path: str, device: str) -> emo.DimensionalEmotionModel:
    return emo.DimensionalEmotionModel(path, device)


class EmotionRecognizer(dg.ConfigurableResource):
    """Emotion tags for utterances.

    With no model configured (the default) only prosody features are computed per episode and
    the embedded per-series prosody classifier tags utterances once the series has
    ``min_labels`` human emotion labels; until then emotion is null with the reason.
    ``categorical_model`` / ``dimensional_model`` are catalog names (`voice-assets models list`,
    fetched with `voice-assets models pull NAME`) or local directories; nothing is downloaded.
    """

    categorical_model: str = Field(
        default="", description="Catalog name or directory of a categorical SER model; '' = none")
    categorical_backend: str = Field(
        default="transformers", description="'transformers' (audio-classification checkpoint) "
        "or 'emotion2vec' (FunASR)")
    dimensional_model: str = Field(
        default="", description="Catalog name or directory of an arousal/valence/dominance model")
    device: str = "cpu"
    min_labels: int = Field(default=20, description="Human labels a series needs before the "
                            "prosody classifier tags anything")
    min_per_class: int = Field(default=3, description="Labels an emotion needs to be learned")
    min_confidence: float = Field(default=0.0, description="Prosody predictions below this "
                                  "probability stay null")
    home: str = ""

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.home)) if self.home else Layout.from_env()

    def _resolve(self, name: str) -> Path:
        if name in CATALOG:
            return get(name).require(self.layout)
        path = Path(name).expanduser()
        if not path.is_dir() or not any(path.iterdir()):
            raise ModelMissingError(
                name, path, "put the model directory there, or set the resource to a catalog "
                "name and run `voice-assets models pull NAME`")
        return path

    def categorical(self) -> emo.TransformersEmotionModel | emo.Emotion2VecModel | None:
        if not self.categorical_model:
            return None
        if self.categorical_backend not in CATEGORICAL_BACKENDS:
            raise ValueError(f"unknown categorical emotion backend '{self.categorical_backend}'; "
                             f"choose one of {CATEGORICAL_BACKENDS}")
        path = self._resolve(self.categorical_model)
        return _load_categorical(self.categorical_backend, str(path), self.device)  # type: ignore[return-value]

    def dimensional(self) -> emo.DimensionalEmotionModel | None:
        if not self.dimensional_model:
            return None
        return _load_dimensional(str(self._resolve(self.dimensional_model)), self.device)

    def describe(self) -> str:
        parts = []
        if self.categorical_model:
            parts.append(f"categorical: {self.categorical_backend} {self.categorical_model}")
        if self.dimensional_model:
            parts.append(f"dimensional: {self.dimensional_model}")
        parts.append(f"prosody classifier (>= {self.min_labels} human labels)")
        return "; ".join(parts)

    def features(self, utterances: pl.DataFrame, vocals_path: str | Path,
                 progress: Progress = silent) -> pl.DataFrame:
        """Per-utterance prosody and model scores (emotion.FEATURES_SCHEMA)."""
        return emo.utterance_features(utterances, vocals_path, self.categorical(),
                                      self.dimensional(), progress)

    def tag(self, features: pl.DataFrame, human_labels: pl.DataFrame | None
            ) -> tuple[pl.DataFrame, list[emo.ClassifierReport]]:
        return emo.tag_emotions(features, human_labels, self.min_labels, self.min_per_class,
                                self.min_confidence)
