"""Ingest assets: an inbox episode -> probed media facts, two mono WAVs, parsed subtitles.

Each asset resolves its partition key back to the inbox file itself, so a materialization or
backfill launched from the UI needs no run config. Bad input raises MediaError/SubtitleError
(naming the file and the cause) before anything is written.
"""

import warnings
from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl
import soundfile as sf
from pydantic import Field

from voice_assets import object_store
from voice_assets.assets.common import (
    episode_asset_kwargs,
    png_md,
    round_metadata,
    table_asset_kwargs,
)
from voice_assets.atomic import atomic_dir
from voice_assets.characters.cast import load_cast
from voice_assets.episode_keys import series_of
from voice_assets.inbox import REVISION_METADATA, resolve_episode, revision_of
from voice_assets.media.decode import ANALYSIS_RATE, DATASET_RATE, decode_episode_audio
from voice_assets.media.probe import DEFAULT_LANGUAGES, probe_media, truncation_tolerance
from voice_assets.media.subtitles import drop_cues_past, parse_subtitles
from voice_assets.media.tables import (
    EPISODE_AUDIO_DESCRIPTIONS,
    EPISODE_AUDIO_SCHEMA,
    EPISODE_MEDIA_DESCRIPTIONS,
    EPISODE_MEDIA_SCHEMA,
    EPISODE_SUBTITLES_DESCRIPTIONS,
    EPISODE_SUBTITLES_SCHEMA,
    audio_table,
    media_table,
    subtitles_table,
)
from voice_assets.partitions import episodes
from voice_assets.plots import waveform_png
from voice_assets.progress import logging_progress
from voice_assets.resources.storage import StorageResource

GROUP = "ingest"
SUBTITLE_END_SLACK_S = 1.0  # a last subtitle may linger a moment past the audio's end


class EpisodeMediaConfig(dg.Config):
    """Which audio track and sidecar subtitle to use when an episode has several."""

    audio_languages: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LANGUAGES),
        description="Audio track language preference (ISO 639 codes as tagged in the file); "
        "falls back to the container's default track, then the first one.",
    )
    subtitle_languages: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LANGUAGES),
        description="Preference among `<stem>.<lang>.<ext>` sidecars; `<stem>.<ext>` wins.",
    )


class EpisodeSubtitlesConfig(dg.Config):
    encoding: str | None = Field(
        default=None,
        description="Force the subtitle text encoding (e.g. 'cp932'); default: detect it.",
    )


@dg.asset(
    **table_asset_kwargs(episode_asset_kwargs, EPISODE_MEDIA_SCHEMA, EPISODE_MEDIA_DESCRIPTIONS),
    group_name=GROUP,
    kinds={"polars", "duckdb"},
)
def episode_media(
    context: dg.AssetExecutionContext, config: EpisodeMediaConfig, storage: StorageResource
) -> dg.Output[pl.DataFrame]:
    """The episode's media file probed with PyAV: container, duration, video facts and the
    audio stream chosen by language preference; plus its content hash and sidecar subtitle."""
    key = context.partition_key
    item = resolve_episode(storage.layout.inbox, key, config.subtitle_languages)
    info = probe_media(item.path, config.audio_languages)
    media_hash, revision = revision_of(item)
    shared = object_store.current()
    if shared is not None:  # later steps, on any machine, read these from the store
        cast = load_cast(storage.layout.inbox, series_of(key))
        declared = [f for c in cast.characters for f in (*c.reference_clips, *c.faces)]
        for path in (item.path, *item.subtitles, *([cast.path] if cast.path else []),
                     *declared):
            shared.upload(path, skip_unchanged=True)
    df = media_table(key, item.series, info, item.subtitle, media_hash)
    streams = "\n".join(
        f"| {s.index} | {s.codec} | {s.language or '-'} | {s.sample_rate} | {s.channels} "
        f"| {'yes' if s.default else ''} | {'**chosen**' if s == info.audio else ''} |"
        for s in info.audio_streams
    )
    context.log.info("%s: %s, %.1f s, audio stream %d (%s)", key, info.container,
                     info.duration_s, info.audio.index, info.audio_choice)
    return dg.Output(
        df,
        metadata=round_metadata({
            "source": dg.MetadataValue.path(str(item.path)),
            "subtitle": dg.MetadataValue.path(str(item.subtitle)) if item.subtitle else "none",
            "duration_s": info.duration_s,
            "container": info.container,
            "audio_choice": info.audio_choice,
            "content_hash": media_hash,
            REVISION_METADATA: revision,  # lets the inbox sensor recognise ingested files
            "audio_streams": dg.MetadataValue.md(
                "| index | codec | language | Hz | channels | default | |\n"
                "|---|---|---|---|---|---|---|\n" + streams
            ),
            "dagster/row_count": df.height,
        }),
    )


@dg.asset(
    **table_asset_kwargs(episode_asset_kwargs, EPISODE_AUDIO_SCHEMA, EPISODE_AUDIO_DESCRIPTIONS),
    group_name=GROUP,
    kinds={"polars", "duckdb"},
)
def episode_audio(
    context: dg.AssetExecutionContext, episode_media: pl.DataFrame, storage: StorageResource
) -> dg.Output[pl.DataFrame]:
    """The chosen audio stream decoded to a 16 kHz mono analysis WAV and a 44.1 kHz mono
    dataset WAV on the container's timeline, with RMS, silence ratio and loudness."""
    key = context.partition_key
    media = episode_media.row(0, named=True)
    target = storage.layout.episode_dir(key, "episode_audio")
    with atomic_dir(target) as tmp:
        decoded = decode_episode_audio(
            Path(media["source_path"]),
            int(media["audio_stream_index"]),
            tmp,
            progress=logging_progress(context.log),
        )
    # The files were written in a temp dir that has now replaced `target` as a whole.
    decoded = replace(
        decoded,
        analysis_path=target / decoded.analysis_path.name,
        dataset_path=target / decoded.dataset_path.name,
    )
    df = audio_table(key, decoded)
    lv = decoded.levels
    if decoded.gaps_filled or decoded.bad_packets or decoded.leading_silence_s:
        context.log.warning(
            "%s: %d timestamp gaps filled with %.2f s of silence, %.2f s leading silence, "
            "%d undecodable packets", key, decoded.gaps_filled, decoded.gap_silence_s,
            decoded.leading_silence_s, decoded.bad_packets,
        )
    return dg.Output(
        df,
        metadata=round_metadata({
            "duration_s": decoded.duration_s,
            "rms_dbfs": lv.rms_dbfs,
            "loudness_lufs": lv.loudness_lufs,
            "silence_ratio": lv.silence_ratio,
            "peak": lv.peak,
            "gaps_filled": decoded.gaps_filled,
            "trimmed_s": decoded.trimmed_s,
            "analysis_wav": dg.MetadataValue.path(str(decoded.analysis_path)),
            "dataset_wav": dg.MetadataValue.path(str(decoded.dataset_path)),
            "waveform": png_md(
                waveform_png(lv.envelope, lv.envelope_sample_rate, title=key), "waveform"
            ),
            "dagster/row_count": df.height,
        }),
    )


@dg.asset(
    **table_asset_kwargs(
        episode_asset_kwargs, EPISODE_SUBTITLES_SCHEMA, EPISODE_SUBTITLES_DESCRIPTIONS
    ),
    group_name=GROUP,
    kinds={"polars", "duckdb"},
)
def episode_subtitles(
    context: dg.AssetExecutionContext, config: EpisodeSubtitlesConfig, episode_media: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """The sidecar subtitle's events in file order: times, plain text, ASS Name/Style/Effect
    (SRT/VTT speaker prefixes become the name). Copies of a cue are collapsed into one, lines
    on screen at once are marked, and cues that start after the episode ends are left out.
    No subtitle file, or one without dialogue cues -> an empty table (audio only)."""
    key = context.partition_key
    media = episode_media.row(0, named=True)
    sub_path = media["subtitle_path"]
    subs = parse_subtitles(Path(sub_path), config.encoding) if sub_path else None
    if subs is not None:
        subs = drop_cues_past(subs, float(media["duration_s"]) + SUBTITLE_END_SLACK_S)
    df = subtitles_table(key, subs)
    note = None
    if subs is None:
        context.log.info("%s: no sidecar subtitle; empty table", key)
    elif not subs.lines:
        inside = " inside the episode" if subs.past_end else ""
        note = f"{sub_path} holds no dialogue cues{inside}; the episode is transcribed from " \
            "audio only"
        context.log.warning("%s: %s", key, note)
    bad = subs.bad_cues if subs else ()
    for cue in bad:
        context.log.warning("%s: subtitle cue left out, %s (%s)", key, cue.describe(), sub_path)
    late = subs.past_end if subs else ()
    if late:
        named = "; ".join(c.describe() for c in late[:10]) + (
            f"; and {len(late) - 10} more" if len(late) > 10 else "")
        one = len(late) == 1
        context.log.warning(
            "%s: %d subtitle %s of %s %s after the episode ends (%.1f s) and %s left out; are "
            "these subtitles for another cut of the episode? %s", key, len(late),
            "cue" if one else "cues", sub_path, "starts" if one else "start",
            float(media["duration_s"]), "is" if one else "are", named)
    duplicates = subs.duplicates if subs else ()
    if duplicates:
        context.log.info("%s: %d copies of subtitle cues collapsed (merged tracks?): %s", key,
                         len(duplicates), "; ".join(c.describe() for c in duplicates[:10]))
    preview = df.head(12).select("start", "end", "name", "text")
    names = df.filter(pl.col("name").is_not_null()).get_column("name").n_unique()
    return dg.Output(
        df,
        metadata={
            "subtitle": dg.MetadataValue.path(sub_path) if sub_path else "none",
            "format": subs.format if subs else "none",
            "encoding": subs.encoding if subs else "none",
            "lines": df.height,
            "skipped_events": subs.skipped if subs else 0,
            "bad_cues": len(bad),
            "bad_cue_list": dg.MetadataValue.md(
                "\n".join(f"- {c.describe()}" for c in bad) or "(none)"),
            "duplicate_cues": len(duplicates),
            "overlapping_cues": int(df.get_column("overlaps_other").sum()),
            "cues_past_end": len(late),
            "transcribed_from": "subtitles" if df.height else "audio only",
            **({"note": note} if note else {}),
            "distinct_names": names,
            "preview": dg.MetadataValue.md(_md_table(preview)),
            "dagster/row_count": df.height,
        },
    )


def _md_table(df: pl.DataFrame) -> str:
    if df.is_empty():
        return "(no lines)"
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    cells = (
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row) + " |"
        for row in df.iter_rows()
    )
    return head + "\n".join(cells)


# ---------------------------------------------------------------- checks


def _episode_check(**kwargs):
    """dg.asset_check evaluated per episode partition. An unpartitioned check on a partitioned
    asset loads every partition's rows, so these checks need partitions_def, which Dagster
    still marks as preview; the warning is silenced here, where that choice is made."""

    def decorate(fn):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=dg.PreviewWarning)
            return dg.asset_check(partitions_def=episodes, **kwargs)(fn)

    return decorate


@_episode_check(asset=episode_media, blocking=True)
def episode_media_one_row(episode_media: pl.DataFrame) -> dg.AssetCheckResult:
    """Exactly one row per episode, with a positive duration and a chosen audio stream:
    every later asset reads the episode's media facts from this one row (blocking)."""
    ok = episode_media.height == 1
    duration = float(episode_media["duration_s"][0]) if ok else 0.0
    return dg.AssetCheckResult(
        passed=ok and duration > 0 and episode_media["audio_stream_index"][0] is not None,
        metadata=round_metadata({"rows": episode_media.height, "duration_s": duration}),
    )


@_episode_check(
    asset=episode_audio,
    additional_ins={"episode_media": dg.AssetIn("episode_media")},
)
def episode_audio_matches_media(
    episode_audio: pl.DataFrame, episode_media: pl.DataFrame
) -> dg.AssetCheckResult:
    """One row; the decoded audio lasts as long as the container says (within the
    truncation tolerance); both WAVs exist, are mono, and have the promised sample rates.
    Short or misdecoded audio would shift or lose speech in every later time stamp."""
    if episode_audio.height != 1 or episode_media.height != 1:
        return dg.AssetCheckResult(
            passed=False,
            metadata={"rows": episode_audio.height, "media_rows": episode_media.height},
        )
    audio, media = episode_audio.row(0, named=True), episode_media.row(0, named=True)
    diff = abs(audio["duration_s"] - media["duration_s"])
    tol = truncation_tolerance(media["duration_s"])
    problems = []
    for col, rate in (("analysis_path", ANALYSIS_RATE), ("dataset_path", DATASET_RATE)):
        path = Path(audio[col])
        if not path.is_file():
            problems.append(f"{col} missing: {path}")
            continue
        info = sf.info(str(path))
        if info.samplerate != rate or info.channels != 1:
            problems.append(f"{col}: {info.samplerate} Hz x {info.channels} ch, want {rate} x 1")
    return dg.AssetCheckResult(
        passed=diff <= tol and not problems,
        metadata=round_metadata({
            "audio_s": audio["duration_s"],
            "media_s": media["duration_s"],
            "difference_s": diff,
            "tolerance_s": tol,
            "problems": "; ".join(problems) or "none",
        }),
    )


@_episode_check(
    asset=episode_subtitles,
    additional_ins={"episode_media": dg.AssetIn("episode_media")},
)
def episode_subtitles_within_episode(
    context: dg.AssetCheckExecutionContext, episode_subtitles: pl.DataFrame,
    episode_media: pl.DataFrame,
) -> dg.AssetCheckResult:
    """Every line ends after it starts, starts at or after 0 and lies inside the episode, and
    no cue was left out for starting after the episode's end (cues_past_end). A failure
    usually means subtitles made for another cut of the episode (a longer release, other
    openings or recaps): put the subtitle file made for this video beside it in the inbox,
    or re-time this one to it, and re-materialize episode_subtitles. Until then the cues past
    the end are left out and the rest may be aligned to the wrong speech."""
    late = _cues_past_end(context)
    duration = float(episode_media["duration_s"][0]) if episode_media.height else 0.0
    df = episode_subtitles
    inverted = df.filter(pl.col("end") <= pl.col("start")).height
    negative = df.filter(pl.col("start") < 0).height
    outside = df.filter(pl.col("end") > duration + SUBTITLE_END_SLACK_S).height
    return dg.AssetCheckResult(
        passed=inverted == 0 and negative == 0 and outside == 0 and late == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=round_metadata({
            "lines": df.height,
            "end_not_after_start": inverted,
            "negative_start": negative,
            "past_episode_end": outside,
            "cues_past_end": late,
            "episode_duration_s": duration,
            "last_end_s": float(df["end"].max()) if df.height else 0.0,  # type: ignore[arg-type]
        }),
    )


def _cues_past_end(context: dg.AssetCheckExecutionContext) -> int:
    """How many cues the episode's latest episode_subtitles left out for starting after the
    episode's end (they are not in the table, so only its metadata knows)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("episode_subtitles"),
                              asset_partitions=[context.partition_key]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return 0
    value = records[0].asset_materialization.metadata.get("cues_past_end")
    return int(getattr(value, "value", 0) or 0)
