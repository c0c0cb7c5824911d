"""Utterances: aligned text fused with diarization, one row per speaker turn."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from voice_assets.assets.common import (
    episode_asset_kwargs,
    png_md,
    round_metadata,
    table_asset_kwargs,
)
from voice_assets.assets.human_input import CORRECTIONS
from voice_assets.characters.cast import load_cast
from voice_assets.characters.mapping import apply_character_map, series_of
from voice_assets.plots import bar_png, timeline_png
from voice_assets.resources.storage import StorageResource
from voice_assets.review.corrections import (
    REVIEW_COLUMNS_DESCRIPTIONS,
    REVIEW_COLUMNS_SCHEMA,
    apply_corrections,
    load_corrections,
)
from voice_assets.speech.fusion import (
    UTTERANCE_DESCRIPTIONS,
    UTTERANCE_SCHEMA,
    fuse_utterances,
    turn_problems,
)

MIN_SPEECH_S = 5.0

# The utterances table: fused turns plus the columns the review corrections add.
UTTERANCES_TABLE_SCHEMA = {**UTTERANCE_SCHEMA, **REVIEW_COLUMNS_SCHEMA}
UTTERANCES_TABLE_DESCRIPTIONS = {**UTTERANCE_DESCRIPTIONS, **REVIEW_COLUMNS_DESCRIPTIONS}

CHECK_DESCRIPTIONS = {
    "utterances_not_empty_where_speech":
        f"There are utterances wherever diarization found {MIN_SPEECH_S:g} s of speech or "
        "the subtitles have dialogue: an empty table would silently drop the episode from "
        "the dataset.",
    "turns_inside_episode":
        "Every turn lies inside the episode audio: a turn past the end cuts an empty or "
        "truncated clip.",
    "words_inside_turn":
        "Every word lies inside its turn and ends after it starts: clips are trimmed and cut "
        "at word times.",
    "no_negative_durations":
        "No turn ends before it starts: such a turn cannot be cut into a clip.",
    "utterance_ids_unique":
        "Utterance ids are unique: corrections, emotion tags and clips are joined on them.",
}


@dg.asset(
    **table_asset_kwargs(episode_asset_kwargs, UTTERANCES_TABLE_SCHEMA,
                         UTTERANCES_TABLE_DESCRIPTIONS),
    group_name="speech",
    kinds={"polars", "duckdb"},
    deps=[CORRECTIONS],
    check_specs=[dg.AssetCheckSpec(name, asset="utterances", description=description)
                 for name, description in CHECK_DESCRIPTIONS.items()],
)
def utterances(context: dg.AssetExecutionContext, storage: StorageResource,
               aligned_transcript: pl.DataFrame, diarization: pl.DataFrame,
               character_map: pl.DataFrame, episode_audio: pl.DataFrame,
               transcript: pl.DataFrame) -> Iterator[Any]:
    """One row per speaker turn: subtitle (or ASR) text, diarization speaker, the series
    character of that speaker (from the character map), word times; human corrections from
    the review loop applied last so a re-run never loses them."""
    episode = context.partition_key
    duration = (float(episode_audio.get_column("duration_s")[0])
                if not episode_audio.is_empty() else None)
    language = (str(transcript.get_column("language")[0])
                if not transcript.is_empty() else None)
    df = fuse_utterances(episode, aligned_transcript, diarization, language)
    df = apply_character_map(df, character_map,
                             load_cast(storage.layout.inbox, series_of(episode)).canonical)

    # Human corrections: the one place they enter the pipeline.
    df = apply_corrections(df, load_corrections(storage.layout.database, episode))

    speakers = sorted(s for s in df.get_column("speaker").drop_nulls().unique().to_list())
    minutes = float((df.get_column("end") - df.get_column("start")).sum() or 0.0) / 60.0
    turns = [(float(s), float(e), str(spk)) for s, e, spk in
             df.select("start", "end", "speaker").iter_rows()]
    characters = sorted(c for c in df.get_column("character").drop_nulls().unique().to_list())
    meta: dict[str, Any] = {
        "utterances": len(df), "speakers": len(speakers), "speaker_ids": ", ".join(speakers),
        "characters": ", ".join(characters),
        "named_rows": int(df.filter(~pl.col("character_source").is_in(
            ["voice-id", "background"]) & pl.col("character").is_not_null()).height),
        "minutes": minutes,
        "overlapping": int(df.get_column("overlap").sum() or 0),
        "from_subtitles": int((df.get_column("text_source") == "subtitle").sum()),
        "from_asr": int((df.get_column("text_source") == "asr").sum()),
        "no_speaker": int(df.get_column("speaker").null_count()),
    }
    if turns:
        meta["timeline"] = png_md(timeline_png(turns, duration or max(e for _, e, _ in turns),
                                               f"{episode}: utterances by speaker"), "timeline")
        by_char = (df.filter(pl.col("character").is_not_null()).group_by("character")
                   .agg(((pl.col("end") - pl.col("start")).sum() / 60).alias("m"))
                   .sort("m", descending=True))
        if by_char.height:
            meta["minutes_per_character"] = png_md(bar_png(
                dict(zip(by_char["character"], by_char["m"], strict=True)), "minutes",
                f"{episode}: utterance minutes per character"), "minutes per character")
    yield dg.Output(df, metadata=round_metadata(meta))

    speech_s = float((diarization.get_column("end") - diarization.get_column("start")).sum()
                     or 0.0) if not diarization.is_empty() else 0.0
    dialogue = int((aligned_transcript.get_column("kind") == "dialogue").sum()) \
        if not aligned_transcript.is_empty() else 0
    yield dg.AssetCheckResult(
        check_name="utterances_not_empty_where_speech",
        passed=bool(len(df) > 0 or (speech_s < MIN_SPEECH_S and dialogue == 0)),
        metadata=round_metadata({"diarized_speech_s": speech_s, "dialogue_lines": dialogue,
                                 "utterances": len(df)}))
    problems = turn_problems(df, duration)
    for name, key in (("turns_inside_episode", "outside_episode"),
                      ("words_inside_turn", "words_outside_turn"),
                      ("no_negative_durations", "negative_duration"),
                      ("utterance_ids_unique", "duplicate_ids")):
        yield dg.AssetCheckResult(
            check_name=name, passed=problems[key] == 0,
            metadata=round_metadata({"rows": problems[key], "duration_s": duration or 0.0}))
