"""Voice models: per-character readiness (series table) and voice models (one partition each).

``voice_readiness`` says, for every series character and every trainer, whether the kept
clips are enough by that trainer's published floors, and why not. ``voice_models`` (one
``characters`` partition per `<series>__<character>`) trains the configured trainer on the
character's train split in its own process, judges it on the validation split, and keeps the
model folder under ``$VOICE_ASSETS_HOME/voices/<series>/<character>/<trainer>/``. A
character below the floor is not trained unless ``force`` is set; its check says why.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import soundfile as sf
from pydantic import Field

from voice_assets.assets.common import md_table, png_md, series_asset_kwargs, table_asset_kwargs
from voice_assets.atomic import write_wav
from voice_assets.dataset.exports import character_dirs, dataset_rows
from voice_assets.distributed import TRAINING_STAGE_TAGS
from voice_assets.errors import VoiceAssetsError
from voice_assets.instance_config import TRAINING_POOL
from voice_assets.partitions import character_key, characters
from voice_assets.plots import curves_png
from voice_assets.resources.asr import ASRResource
from voice_assets.resources.diarizer import DiarizerResource
from voice_assets.resources.storage import StorageResource
from voice_assets.resources.voice_trainer import VoiceTrainerResource
from voice_assets.voices.evaluation import (
    EVAL_RATE,
    Evaluation,
    HeldOutLine,
    embed_clips,
    evaluate,
)
from voice_assets.voices.readiness import figures, median_f0, readiness_table
from voice_assets.voices.tables import (
    READINESS_TABLE_DESCRIPTIONS,
    READINESS_TABLE_SCHEMA,
    VOICE_MODEL_DESCRIPTIONS,
    VOICE_MODEL_SCHEMA,
)
from voice_assets.voices.trainers import TrainedVoice, TrainingSet, write_manifest

GROUP = "voices"
ALL_EPISODES = dg.AllPartitionMapping()
PITCH_CLIPS = 60  # clips per character whose pitch the readiness spread is read from
EVAL_LINES = 5
EMBED_CLIPS = 8

def trainable(character: str | None) -> bool:
    """Characters a voice is built for: named or voice-NN, not background or an unmapped
    `<episode>:<speaker>`."""
    return bool(character) and ":" not in str(character) and character != "background"


@dg.asset(
    **table_asset_kwargs(series_asset_kwargs, READINESS_TABLE_SCHEMA,
                         READINESS_TABLE_DESCRIPTIONS),
    group_name=GROUP, kinds={"polars", "duckdb"},
    ins={"clips": dg.AssetIn(partition_mapping=ALL_EPISODES)},
)
def voice_readiness(context: dg.AssetExecutionContext, clips: pl.DataFrame,
                    dataset_splits: pl.DataFrame, emotion_tags: pl.DataFrame
                    ) -> dg.Output[pl.DataFrame]:
    """Per character and trainer: is the data enough (minutes, clips, held-out clips,
    emotions, pitch spread, SNR) by the trainer's own floors, and if not, why not."""
    rows = dataset_rows(clips, dataset_splits, emotion_tags) if clips.height else \
        pl.DataFrame(schema={"series": pl.Utf8, "character": pl.Utf8})
    per: dict[tuple[str, str], Any] = {}
    for (series, character), part in sorted(rows.group_by("series", "character"),
                                            key=lambda g: (str(g[0][0]), str(g[0][1]))):
        if not trainable(character):
            continue
        per[(str(series), str(character))] = figures(part, median_f0, PITCH_CLIPS)
        context.log.info("%s/%s: %.1f train minutes in %d clips", series, character,
                         per[(series, character)].train_minutes,
                         per[(series, character)].train_clips)
    df = readiness_table(per)
    df = df.with_columns(pl.struct("series", "character").map_elements(
        lambda r: character_key(r["series"], r["character"]), return_dtype=pl.Utf8)
        .alias("key")).select(list(READINESS_TABLE_SCHEMA)) if df.height else \
        pl.DataFrame(schema=READINESS_TABLE_SCHEMA)
    ready = (df.group_by("trainer").agg(pl.col("ready").sum().alias("ready"),
                                        pl.len().alias("characters")).sort("trainer"))
    return dg.Output(df, metadata={
        "readiness": dg.MetadataValue.md(md_table(df.select(
            "series", "character", "trainer", "ready", "train_minutes", "train_clips",
            pl.col("reasons").list.join("; ")))) if df.height else "(no characters)",
        "ready_per_trainer": dg.MetadataValue.md(md_table(ready)) if df.height else "",
        "dagster/row_count": df.height,
    })


class VoiceModelConfig(dg.Config):
    force: bool = Field(default=False, description="Train even when the data is below the "
                        "trainer's floor (the readiness check still fails)")


VOICE_CHECK_DESCRIPTIONS = {
    "voice_model_ready": "The character's data meets the trainer's floors (voice_readiness); "
    "the metadata lists what is missing.",
    "voice_model_quality": "The model sounds more like its character than like the others "
    "(similarity margin > 0), its lines are intelligible (WER <= 0.5), of sane length "
    "(0.5-2x the real line) and not silent.",
}


def _embed(diarizer: DiarizerResource, x16: np.ndarray) -> np.ndarray | None:
    out = diarizer.embed_reference(x16)
    return None if out is None else out[0]


def _evaluate(voice: TrainedVoice, data: TrainingSet, series_rows: pl.DataFrame,
              diarizer: DiarizerResource, asr: ASRResource
              ) -> tuple[Evaluation | None, list[str]]:
    """None when the model does not speak in this process (an external trainer's)."""
    held = data.validation if data.validation.height else data.train
    if voice.speak is None:  # a prompt pack: judge the prompts themselves
        prompts = voice.metadata.get("prompts")
        if not prompts:
            return None, []
        lines_df = data.train.filter(pl.col("id").is_in(prompts))
        # evaluate() asks for each line once, in order: the prompts' files in that order, so
        # two prompts that say the same line are each judged on their own recording.
        files = iter(lines_df["audio_path"].to_list())

        def speak(text: str) -> tuple[np.ndarray, int]:
            x, sr = sf.read(next(files), dtype="float32")
            return x, sr
    else:
        lines_df = held.head(EVAL_LINES)
        speak = voice.speak
    lines = [HeldOutLine(str(t), float(d)) for t, d in
             lines_df.select("text", "duration_s").iter_rows()]
    def embed(x16: np.ndarray) -> np.ndarray | None:
        return _embed(diarizer, x16)

    own = embed_clips(embed, held["audio_path"].head(EMBED_CLIPS).to_list())
    others = {}
    for (character,), part in series_rows.group_by("character"):
        if character != data.character and trainable(character):
            others[str(character)] = embed_clips(embed,
                                                 part["audio_path"].head(EMBED_CLIPS).to_list())
    others = {k: v for k, v in others.items() if len(v)}

    def transcribe(x16: np.ndarray) -> str:
        t = asr.transcribe(x16, [(0.0, x16.size / EVAL_RATE)], language_hint=data.language)
        return " ".join(s.text.strip() for s in t.segments)

    result, audio = evaluate(lines, speak, embed, transcribe, own,
                             others)
    paths = []
    for k, (x, sr) in enumerate(audio):
        paths.append(str(write_wav(voice.folder / "samples" / f"{k:02d}.wav", x, sr)))
    return result, paths


@dg.asset(
    **table_asset_kwargs({"partitions_def": characters, "metadata": {"partition_expr": "key"},
                          "pool": TRAINING_POOL, "op_tags": TRAINING_STAGE_TAGS},
                         VOICE_MODEL_SCHEMA, VOICE_MODEL_DESCRIPTIONS),
    group_name=GROUP, kinds={"polars", "duckdb", "pytorch"},
    ins={"clips": dg.AssetIn(partition_mapping=ALL_EPISODES)},
    check_specs=[dg.AssetCheckSpec(n, asset="voice_models", description=d)
                 for n, d in VOICE_CHECK_DESCRIPTIONS.items()],
)
def voice_models(context: dg.AssetExecutionContext, config: VoiceModelConfig,
                 storage: StorageResource, voice_trainer: VoiceTrainerResource,
                 diarizer: DiarizerResource, asr: ASRResource, voice_readiness: pl.DataFrame,
                 clips: pl.DataFrame, dataset_splits: pl.DataFrame,
                 emotion_tags: pl.DataFrame) -> Iterator[Any]:
    """A character's voice from its train split, judged on its validation split: the trainer
    runs in its own process and resumes from its last checkpoint; synthesised held-out lines
    are kept as samples to listen to."""
    key = context.partition_key
    row = voice_readiness.filter((pl.col("key") == key)
                                 & (pl.col("trainer") == voice_trainer.backend))
    if row.is_empty():
        known = sorted(set(voice_readiness["key"].to_list()))[:20]
        raise VoiceAssetsError(f"no character '{key}' in voice_readiness (known: "
                               f"{', '.join(known) or 'none'}); materialize the dataset assets "
                               "and voice_readiness first")
    info = row.row(0, named=True)
    series, character, reasons = info["series"], info["character"], list(info["reasons"])
    folder = (storage.layout.home / "voices" / series
              / character_dirs([character])[character] / voice_trainer.backend)
    base = {"key": key, "series": series, "character": character,
            "trainer": voice_trainer.backend, "reasons": reasons, "folder": str(folder)}
    ready = dg.AssetCheckResult(
        check_name="voice_model_ready", passed=not reasons,
        metadata={"missing": "; ".join(reasons) or "nothing", "guide": info["guide"]})
    if reasons and not config.force:
        context.log.warning("%s is not trained: %s (set force to train anyway)", key,
                            "; ".join(reasons))
        yield dg.Output(pl.DataFrame([{**base, "status": "not_ready", "step": 0}],
                                     schema=VOICE_MODEL_SCHEMA),
                        metadata={"status": "not_ready", "missing": "; ".join(reasons)})
        yield ready
        yield dg.AssetCheckResult(check_name="voice_model_quality", passed=False,
                                  metadata={"why": "not trained: below the trainer's floor"})
        return
    rows = dataset_rows(clips, dataset_splits, emotion_tags).filter(pl.col("series") == series)
    mine = rows.filter(pl.col("character") == character)
    languages = mine["language"].drop_nulls().to_list()
    held, judged_on = mine.filter(pl.col("split") == "validation"), "validation"
    if held.is_empty():
        held, judged_on = mine.filter(pl.col("split") == "test"), "test"
    if held.is_empty():
        judged_on = "train"
        context.log.warning("%s has no validation or test clips: judged on train lines, "
                            "which flatters the model", key)
    data = TrainingSet(series, character, max(set(languages), key=languages.count)
                       if languages else None,
                       mine.filter(pl.col("split") == "train").sort("id"), held.sort("id"))
    history: list[dict[str, Any]] = []

    def progress(event: dict[str, Any]) -> None:
        history.append(event)
        context.log.info("%s: %s", key, ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in event.items()))

    trainer = voice_trainer.trainer(context, storage.layout)
    context.log.info("%s: training %s on %d clips (%d held out)", key, trainer.name,
                     data.train.height, data.validation.height)
    voice = trainer.train(data, folder, progress)
    result, samples = _evaluate(voice, data, rows, diarizer, asr)
    figures_ = {k: _finite(v) if isinstance(v, float) else v
                for k, v in vars(result).items()} if result else {}
    if result:
        voice.metadata["evaluation"] = figures_
    write_manifest(voice, data)
    out = pl.DataFrame([{**base, "status": "trained", "step": voice.step,
                         "train_clips": data.train.height,
                         "validation_clips": data.validation.height,
                         "eval_lines": figures_.get("lines", 0),
                         "judged_on": ("prompts" if voice.speak is None else judged_on)
                         if result else None,
                         **{k: figures_.get(k) for k in (
                             "similarity_own", "similarity_other", "similarity_margin", "wer",
                             "duration_ratio", "loudness_lufs")},
                         "samples": samples}], schema=VOICE_MODEL_SCHEMA)
    meta: dict[str, Any] = {"status": "trained", "step": voice.step,
                            "folder": dg.MetadataValue.path(str(folder)),
                            "dagster/row_count": 1}
    for k, p in enumerate(samples):
        meta[f"sample_{k:02d}"] = dg.MetadataValue.path(p)
    curves = _curves(voice.history or history)
    if curves:
        meta["training"] = png_md(curves_png(curves, "step", f"{key}: {trainer.name}"),
                                  "losses over steps")
    yield dg.Output(out, metadata=meta)
    yield ready
    if result is None:
        yield dg.AssetCheckResult(
            check_name="voice_model_quality", passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"why": f"the {trainer.name} model does not speak in this process: judge "
                      "it with its project's own tools"})
        return
    margin_ok = not np.isfinite(result.similarity_margin) or result.similarity_margin > 0
    yield dg.AssetCheckResult(
        check_name="voice_model_quality",
        passed=bool(margin_ok and result.sane and result.wer <= 0.5),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={k: v if v is not None else "n/a" for k, v in figures_.items()})


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _curves(history: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    out: dict[str, tuple[list[float], list[float]]] = {}
    for ev in history:
        step = ev.get("step")
        if step is None:
            continue
        for k, v in ev.items():
            if k != "step" and "loss" in k and isinstance(v, int | float) and np.isfinite(v):
                xs, ys = out.setdefault(k, ([], []))
                xs.append(float(step))
                ys.append(float(v))
    return {k: v for k, v in out.items() if len(v[0]) >= 1}


__all__ = ["voice_models", "voice_readiness"]
