"""ASR transcript and subtitle-aligned transcript of each episode."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from voice_assets.assets.common import (
    episode_asset_kwargs,
    model_asset_kwargs,
    png_md,
    round_metadata,
    table_asset_kwargs,
)
from voice_assets.errors import MediaError
from voice_assets.plots import bar_png
from voice_assets.progress import logging_progress
from voice_assets.resources.asr import AlignmentResource, ASRResource
from voice_assets.speech import alignment as align_mod
from voice_assets.speech import asr as asr_mod

# Below this much detected speech an empty transcript is plausible (a silent test episode).
MIN_SPEECH_S = 5.0
TIME_TOLERANCE_S = 0.05
# A subtitle time-map scale differs from 1 in its 4th-6th decimal (a frame-rate ratio).
TIME_MAP_PRECISION = {"time_map_scale": 6}


def vocals_path(stems: pl.DataFrame, episode: str) -> str:
    if stems.is_empty():
        raise MediaError(f"stems/{episode}", "no vocal stem row for this episode")
    return str(stems.get_column("vocals_path")[0])


def regions_of(voice_activity: pl.DataFrame) -> list[tuple[float, float]]:
    if voice_activity.is_empty():
        return []
    return [(float(s), float(e)) for s, e in voice_activity.select("start", "end").iter_rows()]


def time_problems(df: pl.DataFrame, duration: float) -> dict[str, int]:
    """Rows/words with negative durations, outside the audio, or words outside their row."""
    if df.is_empty():
        return {"negative_duration": 0, "outside_audio": 0, "words_outside_row": 0}
    neg = df.filter(pl.col("end") < pl.col("start")).height
    out = df.filter((pl.col("start") < -TIME_TOLERANCE_S)
                    | (pl.col("end") > duration + TIME_TOLERANCE_S)).height
    bad = 0
    for s, e, ws in df.select("start", "end", "words").iter_rows():
        bad += sum(1 for w in ws or [] if w["end"] < w["start"]
                   or w["start"] < s - TIME_TOLERANCE_S or w["end"] > e + TIME_TOLERANCE_S)
    return {"negative_duration": neg, "outside_audio": out, "words_outside_row": bad}


@dg.asset(
    **table_asset_kwargs(model_asset_kwargs, asr_mod.TRANSCRIPT_SCHEMA,
                         asr_mod.TRANSCRIPT_DESCRIPTIONS),
    group_name="speech",
    kinds={"polars", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "transcript_not_empty_where_speech", asset="transcript",
            description=f"With at least {MIN_SPEECH_S:g} s of detected speech the transcript "
            "has words: an empty one means ASR failed, and aligned text and utterances would "
            "be missing."),
        dg.AssetCheckSpec(
            "transcript_times_valid", asset="transcript",
            description="No segment or word ends before it starts or lies outside the audio, "
            "and every word lies inside its segment: alignment trusts these times."),
    ],
)
def transcript(context: dg.AssetExecutionContext, asr: ASRResource, stems: pl.DataFrame,
               voice_activity: pl.DataFrame, episode_media: pl.DataFrame,
               episode_subtitles: pl.DataFrame) -> Iterator[Any]:
    """Whisper segments with word time stamps, decoded only inside voice-activity regions of
    the vocal stem (music and silence are never fed to the model, so it cannot hallucinate
    lyrics or credits there). The language comes from the audio track's tag or the
    subtitles' script; a Japanese episode is decoded by the multilingual model."""
    episode = context.partition_key
    samples = asr_mod.load_audio(vocals_path(stems, episode))
    duration = len(samples) / asr_mod.SAMPLE_RATE
    regions = regions_of(voice_activity)
    track = (episode_media.get_column("audio_language")[0]
             if "audio_language" in episode_media.columns and not episode_media.is_empty()
             else None)
    texts = (episode_subtitles.get_column("text").drop_nulls().to_list()
             if "text" in episode_subtitles.columns else [])
    result = asr.transcribe(samples, regions, progress=logging_progress(context.log),
                            language_hint=asr_mod.language_hint(track, texts))
    df = asr_mod.transcript_frame(episode, result)
    speech_s = float(sum(e - s for s, e in regions))
    n_words = int(sum(len(s.words) for s in result.segments))
    yield dg.Output(df, metadata=round_metadata({
        "segments": len(df), "words": n_words, "language": result.language,
        "language_probability": result.language_probability,
        "redecoded_chunks": result.redecoded_chunks,
        "model": result.model, "backend": asr.backend, "speech_s": speech_s,
        "duration_s": duration,
        "mean_word_score": float(np.mean([w.score for w in result.words]))
        if n_words else 0.0,
    }))
    yield dg.AssetCheckResult(
        check_name="transcript_not_empty_where_speech",
        passed=bool(speech_s < MIN_SPEECH_S or n_words > 0),
        metadata=round_metadata({"speech_s": speech_s, "words": n_words}),
    )
    problems = time_problems(df, duration)
    yield dg.AssetCheckResult(check_name="transcript_times_valid",
                              passed=not any(problems.values()), metadata=problems)


@dg.asset(
    **table_asset_kwargs(episode_asset_kwargs, align_mod.ALIGNED_SCHEMA,
                         align_mod.ALIGNED_DESCRIPTIONS),
    group_name="speech",
    kinds={"polars", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec("subtitle_drift", asset="aligned_transcript",
                          description="Median |aligned start - subtitle start| of dialogue "
                                      "lines is below the configured threshold; a larger "
                                      "drift suggests subtitles made for another cut of the "
                                      "episode (lines are re-timed, but check the file)."),
        dg.AssetCheckSpec(
            "aligned_times_valid", asset="aligned_transcript",
            description="No line or word ends before it starts or lies outside the audio, "
            "and every word lies inside its line: utterances and clips are cut at these "
            "times."),
    ],
)
def aligned_transcript(context: dg.AssetExecutionContext, alignment: AlignmentResource,
                       transcript: pl.DataFrame, episode_subtitles: pl.DataFrame,
                       stems: pl.DataFrame, voice_activity: pl.DataFrame) -> Iterator[Any]:
    """Subtitle lines re-timed to the speech (subtitle text, audio time); songs and signs
    marked as such; without subtitles the ASR segments are the lines."""
    episode = context.partition_key
    samples = asr_mod.load_audio(vocals_path(stems, episode))
    duration = len(samples) / asr_mod.SAMPLE_RATE
    regions = regions_of(voice_activity)
    language = (str(transcript.get_column("language")[0])
                if not transcript.is_empty() else None)
    progress = logging_progress(context.log)
    lines = align_mod.subtitle_lines(episode_subtitles)
    if lines:
        result = align_mod.align_subtitles(lines, asr_mod.frame_words(transcript), samples,
                                           regions, language, alignment.options(), progress)
    else:
        segments = [asr_mod.Segment(r["start"], r["end"], r["text"],
                                    [asr_mod.Word(w["word"], w["start"], w["end"], w["score"])
                                     for w in r["words"] or []],
                                    r["avg_logprob"], r["no_speech_prob"])
                    for r in transcript.iter_rows(named=True)]
        result = align_mod.asr_lines(segments, samples, regions, language,
                                     alignment.options(), progress)
    if alignment.mfa and result.refiner != "mfa":
        context.log.warning(
            f"alignment.mfa is set but MFA did not run (no `mfa` executable on PATH, or it "
            f"failed); line edges were refined by {result.refiner}")
    df = align_mod.aligned_frame(episode, result)
    drift = align_mod.drift_summary(df)
    kinds = align_mod.kind_counts(result)
    meta: dict[str, Any] = {
        "lines": len(df), "text_source": "subtitle" if lines else "asr",
        **{f"kind_{k}": v for k, v in sorted(kinds.items())},
        "refiner": result.refiner, "refined_lines": result.refined_lines,
        "token_match_rate": result.match_rate,
        "time_map_scale": result.time_map.scale,
        "time_map_offset_s": result.time_map.offset,
        "time_map_anchors": result.time_map.anchors,
        **drift,
    }
    if kinds:
        meta["kinds"] = png_md(bar_png({k: float(v) for k, v in kinds.items()}, "lines",
                                       "aligned lines by kind"), "kinds")
    yield dg.Output(df, metadata=round_metadata(meta, precise=TIME_MAP_PRECISION))
    threshold = alignment.max_median_drift_s
    yield dg.AssetCheckResult(
        check_name="subtitle_drift",
        passed=bool(drift["median_abs_drift_s"] <= threshold),
        severity=dg.AssetCheckSeverity.WARN,
        metadata=round_metadata({**drift, "threshold_s": threshold,
                                 "time_map_offset_s": result.time_map.offset,
                                 "time_map_scale": result.time_map.scale},
                                precise=TIME_MAP_PRECISION),
        description=None if drift["median_abs_drift_s"] <= threshold else (
            f"subtitles are off by {drift['median_drift_s']:+.2f} s (median) relative to the "
            f"speech; lines were re-timed, but the subtitle file may belong to another cut"),
    )
    problems = time_problems(df, duration)
    yield dg.AssetCheckResult(check_name="aligned_times_valid",
                              passed=not any(problems.values()), metadata=problems)
