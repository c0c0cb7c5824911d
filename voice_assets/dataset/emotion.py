"""Emotion of each utterance: human labels first, then a model, then a prosody classifier.

Sources, in order of trust:

1. ``human``: a label a person gave in Label Studio (the corrections table).
2. ``model:<name>``: a categorical speech-emotion model from a local directory, either a
   transformers audio-classification checkpoint or emotion2vec (through FunASR).
3. ``prosody``: the embedded default, a per-series logistic regression on prosody features
   trained on that series' human labels, once there are enough of them. Speaking styles are
   series- and character-specific (anime acting is not a lab corpus), so a small classifier fit
   to this series' own labels beats a generic model that was never told what "excited" sounds
   like here, and it needs no download.

A dimensional model (arousal/valence/dominance) fills its three columns and feeds the prosody
classifier as extra features. With none of the three, emotion stays null and
``emotion_reason`` says why: a tag is never invented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from voice_assets.dataset.clips import SpanReader, resolve_character, series_of
from voice_assets.dataset.prosody import (
    ANALYSIS_SR,
    CLASSIFIER_FEATURES,
    FEATURE_NAMES,
    PROSODY_DESCRIPTIONS,
    prosody_features,
    resample,
)
from voice_assets.episode_keys import EPISODE_COLUMN, SERIES_COLUMN
from voice_assets.progress import Progress, silent
from voice_assets.review.corrections import apply_corrections

DIMENSIONS = ("arousal", "valence", "dominance")
MAX_MODEL_INPUT_S = 20.0  # longer utterances are scored on their first 20 s


# Abbreviations some SER checkpoints use (SUPERB/IEMOCAP), spelled out so model tags and
# human tags share one vocabulary.
_ABBREVIATIONS = {"neu": "neutral", "hap": "happy", "ang": "angry", "sad": "sad",
                  "fea": "fearful", "dis": "disgusted", "sur": "surprised", "exc": "excited",
                  "fru": "frustrated", "fear": "fearful", "disgust": "disgusted",
                  "surprise": "surprised", "joy": "happy", "anger": "angry",
                  "sadness": "sad"}


def normalize_label(label: str | None) -> str | None:
    """Lower-case, single-spaced, abbreviations spelled out; None for an empty label."""
    if label is None:
        return None
    out = " ".join(str(label).strip().casefold().split())
    return _ABBREVIATIONS.get(out, out) or None


# --------------------------------------------------------------------------- model backends


@dataclass
class CategoricalPrediction:
    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)


class TransformersEmotionModel:
    """A transformers audio-classification checkpoint (e.g. wav2vec2 fine-tuned for SER)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.path = Path(path)
        self.name = self.path.name
        self.device = device
        self.extractor = AutoFeatureExtractor.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModelForAudioClassification.from_pretrained(
            str(self.path), local_files_only=True).to(device).eval()
        self.sampling_rate = int(getattr(self.extractor, "sampling_rate", ANALYSIS_SR))
        id2label = self.model.config.id2label or {}
        self.labels = [str(id2label.get(i, id2label.get(str(i), i)))
                       for i in range(self.model.config.num_labels)]

    def _logits(self, samples: np.ndarray, sr: int) -> np.ndarray:
        import torch

        x = resample(samples, sr, self.sampling_rate)[: int(MAX_MODEL_INPUT_S * self.sampling_rate)]
        inputs = self.extractor(x.astype(np.float32), sampling_rate=self.sampling_rate,
                                return_tensors="pt")
        with torch.inference_mode():
            out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        return out.logits[0].float().cpu().numpy()

    def predict(self, samples: np.ndarray, sr: int) -> CategoricalPrediction:
        logits = self._logits(samples, sr)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        i = int(np.argmax(p))
        return CategoricalPrediction(normalize_label(self.labels[i]) or str(i), float(p[i]),
                                     {normalize_label(n) or str(j): float(v)
                                      for j, (n, v) in enumerate(zip(self.labels, p, strict=True))})


class Emotion2VecModel:
    """emotion2vec (plus) from a local directory, run through FunASR (optional dependency)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        try:
            from funasr import AutoModel
        except ImportError as exc:
            raise ImportError(
                "the emotion2vec backend needs the 'funasr' package (pip install funasr); "
                "or use backend 'transformers' with an audio-classification checkpoint"
            ) from exc
        self.path = Path(path)
        self.name = self.path.name
        self.model = AutoModel(model=str(self.path), device=device, disable_update=True)

    def predict(self, samples: np.ndarray, sr: int) -> CategoricalPrediction:
        x = resample(samples, sr, ANALYSIS_SR)[: int(MAX_MODEL_INPUT_S * ANALYSIS_SR)]
        res = self.model.generate(x.astype(np.float32), granularity="utterance",
                                  extract_embedding=False)[0]
        # Labels look like "生气/angry"; keep the English part.
        labels = [normalize_label(str(lab).split("/")[-1]) or str(lab) for lab in res["labels"]]
        scores = [float(s) for s in res["scores"]]
        i = int(np.argmax(scores))
        return CategoricalPrediction(labels[i], scores[i], dict(zip(labels, scores, strict=True)))


def _audeering_model_class() -> type:
    """The wav2vec2 + regression-head architecture of audeering's dimensional SER models."""
    import torch
    from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class RegressionHead(torch.nn.Module):
        def __init__(self, config: Any) -> None:
            super().__init__()
            self.dense = torch.nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = torch.nn.Dropout(config.final_dropout)
            self.out_proj = torch.nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            x = self.dropout(features)
            x = torch.tanh(self.dense(x))
            return self.out_proj(self.dropout(x))

    class EmotionModel(Wav2Vec2PreTrainedModel):
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.config = config
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.wav2vec2(input_values)[0].mean(dim=1)
            return hidden, self.classifier(hidden)

    return EmotionModel


class DimensionalEmotionModel:
    """Arousal / valence / dominance regression from a local directory.

    Loads audeering's `EmotionModel` layout when the config names it, else any
    audio-classification checkpoint whose labels are the three dimensions (outputs read as
    regression values, no softmax).
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

        self.path = Path(path)
        self.name = self.path.name
        self.device = device
        config = AutoConfig.from_pretrained(str(self.path), local_files_only=True)
        self.extractor = AutoFeatureExtractor.from_pretrained(str(self.path), local_files_only=True)
        if "EmotionModel" in (config.architectures or []):
            cls = _audeering_model_class()
            self.model = cls.from_pretrained(str(self.path), local_files_only=True)
            self._audeering = True
        else:
            self.model = AutoModelForAudioClassification.from_pretrained(
                str(self.path), local_files_only=True)
            self._audeering = False
        self.model = self.model.to(device).eval()
        self.sampling_rate = int(getattr(self.extractor, "sampling_rate", ANALYSIS_SR))
        id2label = config.id2label or {}
        names = [normalize_label(str(id2label.get(i, id2label.get(str(i), ""))))
                 for i in range(config.num_labels)]
        self.index = {d: names.index(d) for d in DIMENSIONS if d in names}
        if not self.index:
            raise ValueError(
                f"{self.path}: not a dimensional emotion model (labels {names}; expected some "
                f"of {DIMENSIONS})")

    def predict(self, samples: np.ndarray, sr: int) -> dict[str, float]:
        import torch

        x = resample(samples, sr, self.sampling_rate)[: int(MAX_MODEL_INPUT_S * self.sampling_rate)]
        inputs = self.extractor(x.astype(np.float32), sampling_rate=self.sampling_rate,
                                return_tensors="pt")
        with torch.inference_mode():
            if self._audeering:
                out = self.model(inputs["input_values"].to(self.device))[1]
            else:
                out = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
        v = out[0].float().cpu().numpy()
        return {d: float(v[i]) for d, i in self.index.items()}


# ------------------------------------------------------------------ per-utterance features

FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(), "episode": pl.Utf8(), "series": pl.Utf8(), "start": pl.Float64(),
    "end": pl.Float64(), "speaker": pl.Utf8(), "character": pl.Utf8(),
    **{name: pl.Float64() for name in FEATURE_NAMES},
    "model_emotion": pl.Utf8(), "model_confidence": pl.Float64(), "model_name": pl.Utf8(),
    **{d: pl.Float64() for d in DIMENSIONS}, "dimensional_model": pl.Utf8(),
}
FEATURES_DESCRIPTIONS: dict[str, str] = {
    "id": "Utterance id (utterances.id).",
    "episode": EPISODE_COLUMN,
    "series": SERIES_COLUMN,
    "start": "Start of the utterance, seconds.",
    "end": "End of the utterance, seconds.",
    "speaker": "Diarization speaker of the utterance.",
    "character": "Series character of the utterance, else `<episode>:<speaker>`.",
    **PROSODY_DESCRIPTIONS,
    "model_emotion": "Emotion from the categorical emotion model (null: no model, or "
    "inaudible).",
    "model_confidence": "The categorical model's confidence in model_emotion (0-1).",
    "model_name": "Categorical emotion model.",
    "arousal": "Arousal from the dimensional emotion model (null: no model).",
    "valence": "Valence from the dimensional emotion model (null: no model).",
    "dominance": "Dominance from the dimensional emotion model (null: no model).",
    "dimensional_model": "Dimensional emotion model.",
}


def utterance_features(utterances: pl.DataFrame, vocals_path: str | Path,
                       categorical: TransformersEmotionModel | Emotion2VecModel | None = None,
                       dimensional: DimensionalEmotionModel | None = None,
                       progress: Progress = silent) -> pl.DataFrame:
    """Prosody (always) and model scores (when a model is given) for every utterance, read from
    the vocal stem so music under the line does not bend pitch and energy."""
    if utterances.is_empty():
        return pl.DataFrame(schema=FEATURES_SCHEMA)
    utt = resolve_character(utterances).sort("start")
    reader = SpanReader(vocals_path)
    rows: list[dict[str, Any]] = []
    try:
        for done, u in enumerate(utt.iter_rows(named=True)):
            x = reader.read(float(u["start"]), float(u["end"]))
            row: dict[str, Any] = {
                "id": u["id"], "episode": u["episode"], "series": series_of(str(u["episode"])),
                "start": float(u["start"]), "end": float(u["end"]),
                "speaker": u.get("speaker"), "character": u["character"],
                **prosody_features(x, reader.sr or ANALYSIS_SR, text=u.get("text")).as_dict(),
            }
            audible = len(x) >= int(0.1 * reader.sr) and float(np.max(np.abs(x))) > 1e-4
            if categorical is not None and audible:
                pred = categorical.predict(x, reader.sr)
                row.update(model_emotion=pred.label, model_confidence=pred.confidence,
                           model_name=categorical.name)
            if dimensional is not None and audible:
                row.update(dimensional.predict(x, reader.sr), dimensional_model=dimensional.name)
            rows.append(row)
            progress("emotion features", done + 1, utt.height)
    finally:
        reader.close()
    return pl.DataFrame(rows, schema=FEATURES_SCHEMA)


# --------------------------------------------------------------- prosody feature matrix


def feature_matrix(features: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Classifier inputs: prosody features, the same relative to the character's own median
    (a high voice is not an excited voice), and the dimensional scores when present."""
    cols = [c for c in CLASSIFIER_FEATURES if c in features.columns]
    dims = [d for d in DIMENSIONS if d in features.columns and features[d].is_not_null().any()]
    df = features.select("character", *cols, *dims).with_columns(
        [pl.col(c).cast(pl.Float64).fill_nan(None) for c in (*cols, *dims)])
    rel = [(pl.col(c) - pl.col(c).median().over("character")).alias(f"rel_{c}") for c in cols]
    df = df.with_columns(rel)
    names = [*cols, *(f"rel_{c}" for c in cols), *dims]
    return df.select(names).to_numpy().astype(np.float64), names


@dataclass
class ClassifierReport:
    """What the per-series classifier was trained on and how well it does (cross-validated)."""

    series: str
    status: str  # 'trained' | 'insufficient_labels'
    n_labels: int
    label_counts: dict[str, int]
    cv_accuracy: float | None = None
    chance: float | None = None
    reason: str | None = None


class ProsodyEmotionClassifier:
    """Standardised prosody features -> multinomial logistic regression (balanced classes)."""

    def __init__(self, pipeline: Any, classes: list[str]) -> None:
        self.pipeline = pipeline
        self.classes = classes

    @staticmethod
    def _pipeline() -> Any:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                             StandardScaler(),
                             LogisticRegression(C=0.5, class_weight="balanced", max_iter=2000))

    @classmethod
    def train(cls, x: np.ndarray, labels: Sequence[str], series: str = "", min_labels: int = 20,
              min_per_class: int = 3) -> tuple[ProsodyEmotionClassifier | None, ClassifierReport]:
        """Fit on the labelled rows; None (and the reason) while there are too few labels.

        Classes with fewer than ``min_per_class`` examples are left out (a class seen twice
        cannot be learned, and predicting it would be a guess).
        """
        labels = [str(lab) for lab in labels]
        counts = {c: labels.count(c) for c in sorted(set(labels))}
        usable = {c for c, n in counts.items() if n >= min_per_class}
        keep = np.array([lab in usable for lab in labels], dtype=bool)
        n_usable = int(keep.sum())
        if n_usable < min_labels or len(usable) < 2:
            reason = (f"only {len(labels)} human emotion labels in series '{series}' "
                      f"({n_usable} in classes with >= {min_per_class} examples, "
                      f"{len(usable)} such classes); the prosody classifier needs "
                      f">= {min_labels} in >= 2 classes")
            return None, ClassifierReport(series, "insufficient_labels", len(labels), counts,
                                          reason=reason)
        xs, ys = x[keep], np.array(labels, dtype=object)[keep]
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        k = int(min(5, min(np.unique(ys, return_counts=True)[1])))
        cv = None
        if k >= 2:
            cv = float(np.mean(cross_val_score(
                cls._pipeline(), xs, ys, cv=StratifiedKFold(k, shuffle=True, random_state=0))))
        pipe = cls._pipeline().fit(xs, ys)
        chance = float(max(np.unique(ys, return_counts=True)[1]) / len(ys))
        return cls(pipe, [str(c) for c in pipe.classes_]), ClassifierReport(
            series, "trained", len(labels), counts, cv_accuracy=cv, chance=chance)

    def predict(self, x: np.ndarray) -> tuple[list[str], np.ndarray]:
        if len(x) == 0:
            return [], np.zeros(0)
        p = self.pipeline.predict_proba(x)
        idx = p.argmax(axis=1)
        return [self.classes[i] for i in idx], p[np.arange(len(idx)), idx]


def human_emotion_labels(features: pl.DataFrame, corrections: pl.DataFrame) -> pl.DataFrame:
    """(id, emotion) of every utterance a person gave an emotion in Label Studio.

    The emotion corrections are applied with the review loop's own matching (utterance id, else
    the largest time overlap), so a label survives a re-run that moved a turn's start a little.
    """
    corr = corrections.filter(pl.col("field") == "emotion")
    if corr.is_empty() or features.is_empty():
        return pl.DataFrame(schema={"id": pl.Utf8, "emotion": pl.Utf8})
    base = features.select("id", "episode", "start", "end", "speaker", "character").with_columns(
        pl.lit(None, dtype=pl.Utf8).alias("text"), pl.lit(None, dtype=pl.Utf8).alias("emotion"))
    applied = apply_corrections(base, corr)
    return applied.filter(pl.col("emotion").is_not_null()).select("id", "emotion")


# --------------------------------------------------------------------------- tagging

EMOTION_TAG_COLUMNS: dict[str, pl.DataType] = {
    "emotion": pl.Utf8(), "emotion_confidence": pl.Float64(), "emotion_source": pl.Utf8(),
    "emotion_reason": pl.Utf8(),
}
EMOTION_TAG_DESCRIPTIONS: dict[str, str] = {
    "emotion": "Final emotion: a person's label, else the model's, else the series prosody "
    "classifier's (null: none, see emotion_reason).",
    "emotion_confidence": "Confidence of the emotion (1 for a person's label).",
    "emotion_source": "'human', 'model:<name>' or 'prosody'.",
    "emotion_reason": "Why the utterance has no emotion (null when it has one).",
}
# The emotion_tags table: the features plus the final tag.
EMOTION_TAGS_SCHEMA: dict[str, pl.DataType] = {**FEATURES_SCHEMA, **EMOTION_TAG_COLUMNS}
EMOTION_TAGS_DESCRIPTIONS: dict[str, str] = {**FEATURES_DESCRIPTIONS, **EMOTION_TAG_DESCRIPTIONS}


def tag_emotions(features: pl.DataFrame, human_labels: pl.DataFrame | None = None,
                 min_labels: int = 20, min_per_class: int = 3, min_confidence: float = 0.0,
                 log: Callable[[str], None] | None = None,
                 ) -> tuple[pl.DataFrame, list[ClassifierReport]]:
    """Final emotion per utterance, per series.

    ``features``: one row per utterance with id, series, character, the prosody features and
    optionally model_emotion / model_confidence / model_name and the dimensional columns.
    ``human_labels``: id, emotion (latest human label per utterance).
    Returns ``features`` plus EMOTION_TAG_COLUMNS, and one report per series.
    """
    labels = (human_labels.select("id", pl.col("emotion").map_elements(
        normalize_label, return_dtype=pl.Utf8).alias("human_emotion"))
        .filter(pl.col("human_emotion").is_not_null()).unique("id", keep="last")
        if human_labels is not None and not human_labels.is_empty()
        else pl.DataFrame(schema={"id": pl.Utf8, "human_emotion": pl.Utf8}))
    df = features.join(labels, on="id", how="left")
    for col, dtype in (("model_emotion", pl.Utf8), ("model_confidence", pl.Float64),
                       ("model_name", pl.Utf8)):
        if col not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(col))

    parts, reports = [], []
    for series in sorted(df["series"].unique().to_list()) if df.height else []:
        part = df.filter(pl.col("series") == series)
        x, _ = feature_matrix(part)
        is_labelled = part["human_emotion"].is_not_null().to_numpy()
        clf, report = ProsodyEmotionClassifier.train(
            x[is_labelled], part["human_emotion"].drop_nulls().to_list(), series,
            min_labels, min_per_class)
        reports.append(report)
        if log:
            log(f"{series}: prosody classifier {report.status} ({report.n_labels} labels, "
                f"cv accuracy {report.cv_accuracy})")
        pred, conf = clf.predict(x) if clf is not None else ([None] * part.height,
                                                             np.full(part.height, np.nan))
        part = part.with_columns(pl.Series("_clf", pred, dtype=pl.Utf8),
                                 pl.Series("_clf_conf", conf, dtype=pl.Float64).fill_nan(None))
        has_model = part["model_emotion"].is_not_null().any()
        no_tag_reason = _no_tag_reason(report, has_model, part)
        confident = pl.col("_clf_conf") >= min_confidence
        part = part.with_columns(
            pl.coalesce(pl.col("human_emotion"), pl.col("model_emotion"),
                        pl.when(confident).then(pl.col("_clf"))).alias("emotion"),
            pl.when(pl.col("human_emotion").is_not_null()).then(pl.lit(1.0))
            .when(pl.col("model_emotion").is_not_null()).then(pl.col("model_confidence"))
            .when(pl.col("_clf").is_not_null() & confident).then(pl.col("_clf_conf"))
            .alias("emotion_confidence"),
            pl.when(pl.col("human_emotion").is_not_null()).then(pl.lit("human"))
            .when(pl.col("model_emotion").is_not_null())
            .then(pl.lit("model:") + pl.col("model_name").fill_null("model"))
            .when(pl.col("_clf").is_not_null() & confident).then(pl.lit("prosody"))
            .alias("emotion_source"),
        ).with_columns(
            pl.when(pl.col("emotion").is_null())
            .then(pl.when(pl.col("_clf").is_not_null())
                  .then(pl.lit(f"prosody classifier confidence below {min_confidence}"))
                  .otherwise(pl.lit(no_tag_reason)))
            .alias("emotion_reason"))
        parts.append(part.drop("_clf", "_clf_conf", "human_emotion"))
    if not parts:
        out = df.drop("human_emotion").with_columns(
            [pl.lit(None, dtype=t).alias(c) for c, t in EMOTION_TAG_COLUMNS.items()])
        return out, reports
    return pl.concat(parts, how="diagonal_relaxed"), reports


def _no_tag_reason(report: ClassifierReport, has_model: bool, part: pl.DataFrame) -> str:
    dims = [d for d in DIMENSIONS if d in part.columns and part[d].is_not_null().any()]
    parts = ["no categorical emotion model configured" if not has_model
             else "the emotion model gave no prediction for this utterance"]
    if report.reason:
        parts.append(report.reason)
    if dims:
        parts.append("dimensional scores (" + ", ".join(dims) + ") are filled")
    return "; ".join(parts)
