"""Dataset assets: emotion, clips with quality gates, splits, trainer exports, dataset cards.

Per episode (partitioned): ``emotion_features`` (prosody and model scores per utterance) and
``clips`` (the audio, quality metrics, keep/reject). Per series, rebuilt from all episodes
(non-partitioned, one run handles every series): ``emotion_tags`` (human > model > prosody
classifier), ``dataset_splits``, ``dataset_exports`` and ``dataset_cards``.

Why the series-level assets are not partitioned: a split, an export folder, a per-series emotion
classifier and a card all depend on every episode of the series at once. Rebuilding them whole
from the DuckDB tables (cheap: no audio is decoded except to write exports) keeps them correct
after any episode changes, and the split ledger keeps old clips where they were.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import soundfile as sf
from pydantic import Field

from voice_assets.assets.common import (
    episode_asset_kwargs,
    model_asset_kwargs,
    png_md,
    round_metadata,
    series_asset_kwargs,
    table_asset_kwargs,
)
from voice_assets.assets.common import md_table as _md_table
from voice_assets.atomic import atomic_dir, atomic_path, write_text
from voice_assets.dataset import cards as cards_mod
from voice_assets.dataset.cards import CARD_DESCRIPTIONS, CARD_SCHEMA
from voice_assets.dataset.clips import CLIP_DESCRIPTIONS, CLIP_SCHEMA, ClipConfig, cut_clips
from voice_assets.dataset.emotion import (
    EMOTION_TAGS_DESCRIPTIONS,
    EMOTION_TAGS_SCHEMA,
    FEATURES_DESCRIPTIONS,
    FEATURES_SCHEMA,
    human_emotion_labels,
)
from voice_assets.dataset.exports import (
    EXPORT_DESCRIPTIONS,
    EXPORT_SCHEMA,
    FORMATS,
    dataset_rows,
    export_series,
)
from voice_assets.dataset.quality import QualityGates, source_bandwidth_gate
from voice_assets.dataset.splits import (
    LEDGER_SCHEMA,
    SPLIT_DESCRIPTIONS,
    SPLIT_SCHEMA,
    SplitConfig,
    assign_splits,
)
from voice_assets.dataset.yield_report import yield_bars, yield_table
from voice_assets.errors import MediaError
from voice_assets.plots import bar_png, stacked_bar_png
from voice_assets.progress import logging_progress
from voice_assets.resources.emotion import EmotionRecognizer
from voice_assets.resources.storage import StorageResource
from voice_assets.review.corrections import load_corrections

GROUP = "dataset"
ALL_EPISODES = dg.AllPartitionMapping()


def _one_row(df: pl.DataFrame, table: str, episode: str) -> dict[str, Any]:
    if df.is_empty():
        raise MediaError(f"{table}/{episode}", f"no {table} row for this episode; materialize "
                         f"`{table}` first")
    return df.row(0, named=True)


# ----------------------------------------------------------------------- per episode


@dg.asset(**table_asset_kwargs(model_asset_kwargs, FEATURES_SCHEMA, FEATURES_DESCRIPTIONS),
          group_name=GROUP, kinds={"polars", "duckdb"})
def emotion_features(context: dg.AssetExecutionContext, emotion_recognizer: EmotionRecognizer,
                     utterances: pl.DataFrame, stems: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """Prosody (F0 mean/range, energy, speaking rate, voice effort) of every utterance from the
    vocal stem, plus categorical / dimensional model scores when such a model is configured."""
    episode = context.partition_key
    vocals = _one_row(stems, "stems", episode)["vocals_path"]
    df = emotion_recognizer.features(utterances, vocals, logging_progress(context.log))
    voiced = df.filter(pl.col("f0_median_hz").is_not_null())
    return dg.Output(df, metadata=round_metadata({
        "utterances": df.height,
        "backends": emotion_recognizer.describe(),
        "with_f0": voiced.height,
        "f0_median_hz": float(voiced["f0_median_hz"].median() or 0.0) if voiced.height else 0.0,
        "speaking_rate_median": float(df["speaking_rate"].median() or 0.0) if df.height else 0.0,
        "model_tagged": int(df["model_emotion"].is_not_null().sum()),
        "dagster/row_count": df.height,
    }))


class ClipsConfig(dg.Config):
    """How clips are cut and gated (see voice_assets.dataset.quality for each metric).

    Defaults come from the domain dataclasses, so the UI shows the values the code uses.
    """

    sample_rate: int = Field(default=ClipConfig.sample_rate,
                             description="Dataset sample rate (>= 16000)")
    denoise: bool = Field(default=ClipConfig.denoise,
                          description="Spectral-gate the clip's noise floor")
    target_lufs: float = ClipConfig.target_lufs
    scene_gap_s: float = Field(default=ClipConfig.scene_gap_s,
                               description="Silence that starts a new scene")
    scene_cut_pause_s: float = Field(default=ClipConfig.scene_cut_pause_s,
                                     description="Silence that starts a new scene when a "
                                                 "shot cut falls in it")
    min_duration_s: float = QualityGates.min_duration_s
    max_duration_s: float = QualityGates.max_duration_s
    max_clipping_ratio: float = QualityGates.max_clipping_ratio
    min_snr_db: float = QualityGates.min_snr_db
    max_residual_music: float = QualityGates.max_residual_music
    min_bandwidth_hz: float = QualityGates.min_bandwidth_hz
    reject_overlap: bool = QualityGates.reject_overlap

    def clip_config(self) -> ClipConfig:
        return ClipConfig(
            sample_rate=self.sample_rate, denoise=self.denoise, target_lufs=self.target_lufs,
            scene_gap_s=self.scene_gap_s, scene_cut_pause_s=self.scene_cut_pause_s,
            gates=QualityGates(
                min_duration_s=self.min_duration_s, max_duration_s=self.max_duration_s,
                max_clipping_ratio=self.max_clipping_ratio, min_snr_db=self.min_snr_db,
                max_residual_music=self.max_residual_music,
                min_bandwidth_hz=self.min_bandwidth_hz, reject_overlap=self.reject_overlap))


# Blocking: a bad clip here would poison every trainer the exports feed.
CLIP_CHECK_DESCRIPTIONS = {
    "clips_sample_rate": "Every kept clip and every clip file is at the configured dataset "
    "sample rate (at least 16 kHz): trainers assume one rate across the dataset.",
    "clips_duration_bounds": "Every kept clip lasts between the configured minimum and "
    "maximum duration: trainers drop or choke on clips outside their length limits.",
    "clips_audio_decodes": "Every clip file decodes to samples and every kept clip has one: "
    "an unreadable file breaks the exports and training.",
    "clips_transcript_nonempty": "Every kept clip has text: a TTS trainer learns nothing from "
    "(or is misled by) audio without its transcript.",
}
CLIP_CHECKS = tuple(CLIP_CHECK_DESCRIPTIONS)


@dg.asset(
    **table_asset_kwargs(episode_asset_kwargs, CLIP_SCHEMA, CLIP_DESCRIPTIONS),
    group_name=GROUP, kinds={"polars", "duckdb"},
    check_specs=[dg.AssetCheckSpec(name, asset="clips", blocking=True, description=description)
                 for name, description in CLIP_CHECK_DESCRIPTIONS.items()],
)
def clips(context: dg.AssetExecutionContext, config: ClipsConfig, storage: StorageResource,
          utterances: pl.DataFrame, stems: pl.DataFrame,
          episode_audio: pl.DataFrame, shots: pl.DataFrame) -> Iterator[Any]:
    """Every utterance cut from the vocal stem at the dataset rate, silence-trimmed and
    loudness-normalised, with quality metrics and keep/reject (rejected clips stay listed)."""
    episode = context.partition_key
    cfg = config.clip_config()
    stem = _one_row(stems, "stems", episode)
    audio = _one_row(episode_audio, "episode_audio", episode)
    target = storage.layout.episode_dir(episode, "clips")
    with atomic_dir(target) as tmp:
        df = cut_clips(utterances, stem["vocals_path"], tmp, cfg,
                       mixture_path=audio.get("dataset_path"),
                       background_path=stem.get("background_path"),
                       shot_cuts=shots.sort("start")["start"].to_list()[1:],
                       progress=logging_progress(context.log))
    # Files were written in a temp dir that has now replaced `target` as a whole.
    df = df.with_columns(pl.col("audio_path").map_elements(
        lambda p: str(target / Path(p).name), return_dtype=pl.Utf8))

    kept = df.filter(pl.col("keep"))
    reasons = (df.filter(~pl.col("keep")).group_by("reject_reason").len()
               .sort(["len", "reject_reason"], descending=[True, False]))
    meta: dict[str, Any] = {
        "clips": df.height, "kept": kept.height, "rejected": df.height - kept.height,
        "scenes": df["scene"].n_unique() if df.height else 0,
        "kept_minutes": float(kept["duration_s"].sum() or 0.0) / 60.0,
        "rejections": dg.MetadataValue.md(_md_table(reasons)),
        "quality": dg.MetadataValue.md(_md_table(pl.DataFrame({
            "metric": ["snr_db", "residual_music", "bandwidth_hz", "clipping_ratio"],
            "median": [float(df[c].median() or 0.0) if df.height else 0.0
                       for c in ("snr_db", "residual_music", "bandwidth_hz", "clipping_ratio")],
        }), floats=4)),
        "sample_rate": cfg.sample_rate,
        "bandwidth_gate_hz": source_bandwidth_gate(df["bandwidth_hz"].to_list(),
                                                   cfg.gates.min_bandwidth_hz),
        "folder": dg.MetadataValue.path(str(target)),
        "dagster/row_count": df.height,
    }
    if meta["bandwidth_gate_hz"] < cfg.gates.min_bandwidth_hz:
        context.log.warning(
            f"{episode}: a narrowband source (median clip bandwidth under "
            f"{cfg.gates.min_bandwidth_hz:.0f} Hz): clips are gated at "
            f"{meta['bandwidth_gate_hz']:.0f} Hz, 90% of the source's own band")
    # Kept minutes per character are in the yield chart, beside found and rejected.
    meta.update(_yield_metadata(df, f"{episode}: speech found, kept and rejected"))
    yield dg.Output(df, metadata=round_metadata(meta))
    yield from clip_checks(df, cfg)


def _yield_metadata(clips_df: pl.DataFrame, title: str,
                    by: tuple[str, ...] = ("character",)) -> dict[str, Any]:
    """Per character minutes found / kept / rejected by reason: a table and a stacked bar."""
    table = yield_table(clips_df, by)
    if table.is_empty():
        return {}
    found = float(table["found_min"].sum())
    return {
        "yield": dg.MetadataValue.md(_md_table(table, floats=2)),
        "kept_share": float(table["kept_min"].sum()) / found if found else 0.0,
        "yield_per_character": png_md(stacked_bar_png(yield_bars(table), "minutes", title),
                                      "yield"),
    }


def clip_checks(df: pl.DataFrame, cfg: ClipConfig) -> Iterator[dg.AssetCheckResult]:
    """The blocking checks of a clips table: bad clips here would poison every trainer."""
    kept = df.filter(pl.col("keep"))
    wrong_rate = kept.filter(pl.col("sample_rate") != cfg.sample_rate)["id"].to_list()
    bad_files, file_rates = [], []
    with_audio = df.filter(pl.col("audio_path").is_not_null()).select("id", "audio_path")
    for i, path in with_audio.iter_rows():
        try:
            x, sr = sf.read(path, dtype="float32")
            if len(x) == 0:
                raise ValueError("no samples")
            file_rates.append(sr)
        except Exception as exc:
            bad_files.append(f"{i}: {exc}")
    wrong_rate += [f"file at {r} Hz" for r in set(file_rates) if r != cfg.sample_rate]
    yield dg.AssetCheckResult(
        check_name="clips_sample_rate", passed=not wrong_rate and cfg.sample_rate >= 16_000,
        metadata={"sample_rate": cfg.sample_rate, "wrong": len(wrong_rate),
                  "examples": ", ".join(map(str, wrong_rate[:5]))})
    g = cfg.gates
    out_of_bounds = kept.filter(~pl.col("duration_s").is_between(g.min_duration_s,
                                                                  g.max_duration_s))
    yield dg.AssetCheckResult(
        check_name="clips_duration_bounds", passed=out_of_bounds.is_empty(),
        metadata=round_metadata({
            "min_s": g.min_duration_s, "max_s": g.max_duration_s,
            "outside": out_of_bounds.height,
            "shortest_kept_s": float(kept["duration_s"].min() or 0.0) if kept.height else 0.0,
            "longest_kept_s": float(kept["duration_s"].max() or 0.0) if kept.height else 0.0}))
    missing = kept.filter(pl.col("audio_path").is_null())["id"].to_list()
    yield dg.AssetCheckResult(
        check_name="clips_audio_decodes", passed=not bad_files and not missing,
        metadata={"undecodable": len(bad_files), "kept_without_audio": len(missing),
                  "examples": "; ".join(bad_files[:3] + missing[:3])})
    empty = kept.filter(pl.col("text").is_null() | (pl.col("text").str.strip_chars() == ""))
    yield dg.AssetCheckResult(
        check_name="clips_transcript_nonempty", passed=empty.is_empty(),
        metadata={"kept_without_text": empty.height})


# ------------------------------------------------------------------------- per series


@dg.asset(**table_asset_kwargs(series_asset_kwargs, EMOTION_TAGS_SCHEMA, EMOTION_TAGS_DESCRIPTIONS),
          group_name=GROUP, kinds={"polars", "duckdb", "scikit-learn"},
          ins={"emotion_features": dg.AssetIn(partition_mapping=ALL_EPISODES)})
def emotion_tags(context: dg.AssetExecutionContext, emotion_recognizer: EmotionRecognizer,
                 storage: StorageResource,
                 emotion_features: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """The emotion of every utterance of every series: a human label, else a model's, else the
    per-series prosody classifier's (trained on that series' human labels); null with the
    reason when there is none of these. Rebuilt whole, so new labels reach every episode."""
    corrections = load_corrections(storage.layout.database)
    labels = human_emotion_labels(emotion_features, corrections)
    df, reports = emotion_recognizer.tag(emotion_features, labels)
    for r in reports:
        context.log.info("%s: prosody classifier %s, %d labels %s, cv accuracy %s (chance %s)",
                         r.series, r.status, r.n_labels, r.label_counts, r.cv_accuracy, r.chance)
    hist = (df.group_by("emotion").len().sort(["len", "emotion"], descending=[True, False])
            if df.height
            else pl.DataFrame())
    report_df = pl.DataFrame([{"series": r.series, "status": r.status, "labels": r.n_labels,
                               "cv_accuracy": r.cv_accuracy, "chance": r.chance,
                               "reason": r.reason or ""} for r in reports])
    reasons = df.filter(pl.col("emotion").is_null())["emotion_reason"].unique().to_list()
    return dg.Output(df, metadata={
        "utterances": df.height,
        "tagged": int(df["emotion"].is_not_null().sum()) if df.height else 0,
        "human_labels": labels.height,
        "emotions": dg.MetadataValue.md(_md_table(hist)),
        "classifiers": dg.MetadataValue.md(_md_table(report_df, floats=3)),
        "untagged_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in reasons[:5])
                                                or "(all tagged)"),
        "dagster/row_count": df.height,
    })


class SplitsConfig(dg.Config):
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    group_by: str = Field(default="scene", description="'scene' or 'episode'")
    min_groups_for_holdout: int = Field(
        default=5, description="Groups a character needs before validation/test are ensured")
    dedupe: bool = Field(default=True, description="Keep repeated audio out of all but one split")


def ledger_path(storage: StorageResource, series: str) -> Path:
    """Where a series' split ledger lives (delete it to deal every group afresh)."""
    folder = storage.layout.series_dir(storage.layout.home / "dataset", series)
    return folder / "split_ledger.parquet"


# Blocking: a leak between splits makes the held-out scores measure memorisation.
SPLIT_CHECK_DESCRIPTIONS = {
    "splits_no_clip_in_two_splits": "No clip is listed twice: one clip in two splits would "
    "leak training audio into validation or test.",
    "splits_no_group_spans_splits": "No scene (or episode) group has clips in two splits: "
    "lines of one scene share voice, room and mood, so a split scene leaks into the "
    "held-out sets.",
}
SPLIT_CHECKS = tuple(SPLIT_CHECK_DESCRIPTIONS)


@dg.asset(
    **table_asset_kwargs(series_asset_kwargs, SPLIT_SCHEMA, SPLIT_DESCRIPTIONS),
    group_name=GROUP, kinds={"polars", "duckdb"},
    ins={"clips": dg.AssetIn(partition_mapping=ALL_EPISODES)},
    check_specs=[dg.AssetCheckSpec(n, asset="dataset_splits", blocking=True, description=d)
                 for n, d in SPLIT_CHECK_DESCRIPTIONS.items()],
)
def dataset_splits(context: dg.AssetExecutionContext, config: SplitsConfig,
                   storage: StorageResource, clips: pl.DataFrame) -> Iterator[Any]:
    """Per character train/validation/test (80/10/10 by default) dealt by a stable hash of
    scenes (or episodes), remembered in a per-series ledger so a re-run never moves a kept
    clip; repeated audio (recaps, previews, songs) is kept once, outside the other splits."""
    split_cfg = SplitConfig(ratios=(config.train, config.validation, config.test),
                            group_by=config.group_by,
                            min_groups_for_holdout=config.min_groups_for_holdout,
                            dedupe=config.dedupe)
    parts, ledgers = [], {}
    for series in sorted(clips["series"].unique().to_list()) if clips.height else []:
        path = ledger_path(storage, series)
        ledger = pl.read_parquet(path) if path.is_file() else pl.DataFrame(schema=LEDGER_SCHEMA)
        part, new_ledger = assign_splits(clips.filter(pl.col("series") == series), ledger,
                                         split_cfg)
        parts.append(part)
        ledgers[series] = (path, new_ledger, new_ledger.height - ledger.height)
    df = pl.concat(parts) if parts else pl.DataFrame(schema=SPLIT_SCHEMA)
    # The ledger is written once the whole split is computed; the table follows it.
    for series, (path, ledger, added) in ledgers.items():
        with atomic_path(path, suffix=".parquet") as tmp:
            ledger.write_parquet(tmp)
        context.log.info("%s: split ledger holds %d clips in %d groups (%+d clips)", series,
                         ledger.height, ledger["group"].n_unique(), added)
    summary = (df.filter(pl.col("split").is_not_null())
               .group_by("series", "character", "split")
               .agg(pl.len().alias("clips"), (pl.col("duration_s").sum() / 60).alias("minutes"))
               .sort("series", "character", "split"))
    yield dg.Output(df, metadata={
        "clips": df.height,
        "duplicates": int((df["split_reason"] == "duplicate").sum()) if df.height else 0,
        "holdout_moves": int((df["split_reason"] == "holdout").sum()) if df.height else 0,
        "per_character": dg.MetadataValue.md(_md_table(summary)),
        "dagster/row_count": df.height,
    })
    yield from split_checks(df)


def split_checks(df: pl.DataFrame) -> Iterator[dg.AssetCheckResult]:
    twice = df.group_by("id").len().filter(pl.col("len") > 1)
    yield dg.AssetCheckResult(check_name="splits_no_clip_in_two_splits", passed=twice.is_empty(),
                              metadata={"clips_listed_twice": twice.height})
    spans = (df.filter(pl.col("split").is_not_null()).group_by("series", "group")
             .agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1))
    yield dg.AssetCheckResult(
        check_name="splits_no_group_spans_splits", passed=spans.is_empty(),
        metadata={"groups_in_several_splits": spans.height,
                  "examples": ", ".join(spans["group"].head(5).to_list())})


class ExportsConfig(dg.Config):
    formats: list[str] = Field(default_factory=lambda: list(FORMATS),
                               description=f"Subset of {', '.join(FORMATS)}")
    rvc_sample_rate: int = Field(default=44_100, description="40000, 44100 or 48000")


@dg.asset(
    **table_asset_kwargs(series_asset_kwargs, EXPORT_SCHEMA, EXPORT_DESCRIPTIONS),
    group_name=GROUP, kinds={"polars", "duckdb", "parquet"},
    ins={"clips": dg.AssetIn(partition_mapping=ALL_EPISODES)},
    check_specs=[dg.AssetCheckSpec(
        "exports_match_splits", asset="dataset_exports", blocking=True,
        description="The full exports (dataset, hf) hold exactly the split clips of 1-15 s: a "
        "mismatch means a trainer would get other clips than the splits and cards describe.")],
)
def dataset_exports(context: dg.AssetExecutionContext, config: ExportsConfig,
                    storage: StorageResource, clips: pl.DataFrame, dataset_splits: pl.DataFrame,
                    emotion_tags: pl.DataFrame) -> Iterator[Any]:
    """Per series: Parquet, a Hugging Face dataset (Audio column), LJSpeech metadata.csv
    (XTTS/VITS), GPT-SoVITS .list, RVC folders and F5-TTS csv, each within its trainer's
    limits, each folder swapped in whole under $VOICE_ASSETS_HOME/exports/<series>/."""
    rows = dataset_rows(clips, dataset_splits, emotion_tags)
    rates = set(rows["sample_rate"].unique().to_list()) if rows.height else {44_100}
    if len(rates) > 1:
        raise ValueError(f"clips were cut at several sample rates {sorted(rates)}; "
                         "re-materialize `clips` for every episode with one sample_rate")
    parts = []
    for series in sorted(rows["series"].unique().to_list()) if rows.height else []:
        parts.append(export_series(rows, storage.layout.exports, series, config.formats,
                                   dataset_rate=int(next(iter(rates))),
                                   rvc_rate=config.rvc_sample_rate,
                                   progress=logging_progress(context.log)))
    df = pl.concat(parts) if parts else pl.DataFrame(schema=EXPORT_SCHEMA)
    per_format = (df.group_by("series", "format")
                  .agg(pl.col("n_clips").sum().alias("clips"), pl.col("minutes").sum())
                  .sort("series", "format"))
    yield dg.Output(df, metadata={
        "formats": dg.MetadataValue.md(_md_table(per_format)),
        "root": dg.MetadataValue.path(str(storage.layout.exports)),
        "dagster/row_count": df.height,
    })
    in_splits = rows.filter(pl.col("split").is_not_null())
    full = df.filter(pl.col("format").is_in(["dataset", "hf"]))
    counts = full.group_by("format").agg(pl.col("n_clips").sum())
    expected = in_splits.filter(pl.col("duration_s").is_between(1.0, 15.0)).height
    wrong = {f: int(n) for f, n in counts.iter_rows() if n != expected}
    yield dg.AssetCheckResult(check_name="exports_match_splits", passed=not wrong,
                              metadata={"expected_rows": expected,
                                        "mismatched": str(wrong) if wrong else "none"})


@dg.asset(**table_asset_kwargs(series_asset_kwargs, CARD_SCHEMA, CARD_DESCRIPTIONS),
          group_name=GROUP, kinds={"polars", "duckdb", "markdown"},
          ins={"clips": dg.AssetIn(partition_mapping=ALL_EPISODES)})
def dataset_cards(storage: StorageResource, clips: pl.DataFrame, dataset_splits: pl.DataFrame,
                  emotion_tags: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """A markdown card per character (minutes, clips, episodes, emotions, quality, rejections,
    progress to 20-30 minutes), in metadata and as exports/<series>/cards/<character>.md."""
    rows = dataset_rows(clips, dataset_splits, emotion_tags)
    cards: list[tuple[str, cards_mod.CardStats]] = []
    from voice_assets.dataset.exports import character_dirs

    for series in sorted(clips["series"].unique().to_list()) if clips.height else []:
        s_clips = clips.filter(pl.col("series") == series)
        s_rows = rows.filter(pl.col("series") == series)
        dirs = character_dirs(s_clips["character"].to_list())
        series_cards = []
        for character in sorted(s_clips["character"].unique().to_list()):
            md, stats = cards_mod.character_card(
                series, character, s_clips.filter(pl.col("character") == character),
                s_rows.filter(pl.col("character") == character))
            series_cards.append((md, stats))
        with atomic_dir(storage.layout.series_dir(storage.layout.exports, series) / "cards") as tmp:
            for md, stats in series_cards:
                write_text(tmp / f"{dirs[stats.character]}.md", md)
            write_text(tmp / "README.md",
                       cards_mod.series_readme(series, [s for _, s in series_cards]))
        cards += series_cards
    df = cards_mod.cards_table(cards)
    top = sorted(cards, key=lambda c: -c[1].minutes)[:10]
    meta: dict[str, Any] = {
        "characters": df.height,
        "cards": dg.MetadataValue.md("\n\n---\n\n".join(md for md, _ in top) or "(no clips)"),
        "dagster/row_count": df.height,
    }
    if df.height:
        meta["minutes_per_character"] = png_md(bar_png(
            {f"{s.series}/{s.character}": s.minutes for _, s in top}, "minutes",
            "dataset minutes (target 20-30)"), "minutes")
        meta["within_target"] = int(np.sum([s.minutes >= cards_mod.TARGET_MINUTES[0]
                                            for _, s in cards]))
    meta.update(_yield_metadata(clips, "speech found, kept and rejected",
                                ("series", "character")))
    return dg.Output(df, metadata=round_metadata(meta))
