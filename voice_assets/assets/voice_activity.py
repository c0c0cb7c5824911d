"""Where there is speech in each episode's vocal stem (Silero VAD)."""

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from voice_assets.assets.common import (
    episode_asset_kwargs,
    png_md,
    round_metadata,
    table_asset_kwargs,
)
from voice_assets.assets.stems import episode_check, one_row
from voice_assets.plots import timeline_png
from voice_assets.progress import logging_progress
from voice_assets.speech import vad

GROUP = "speech"
TIME_TOLERANCE_S = 0.05
# Vocal stems louder than this almost surely contain speech; VAD finding none there is a bug.
SPEECH_EXPECTED_LUFS = -35.0


class VoiceActivityConfig(dg.Config):
    """Silero VAD segmenter settings (defaults suit dialogue in a separated vocal stem)."""

    threshold: float = Field(
        default=vad.VadParams.threshold,
        description="Speech probability above which a frame is speech.",
    )
    min_speech_s: float = Field(
        default=vad.VadParams.min_speech_s, description="Drop speech regions shorter than this."
    )
    min_silence_s: float = Field(
        default=vad.VadParams.min_silence_s,
        description="Pauses shorter than this do not split a region.",
    )
    speech_pad_s: float = Field(
        default=vad.VadParams.speech_pad_s, description="Padding added to both ends of each region."
    )
    max_speech_s: float = Field(
        default=vad.VadParams.max_speech_s, description="Split regions longer than this at a pause."
    )

    def params(self) -> vad.VadParams:
        return vad.VadParams(
            threshold=self.threshold,
            min_speech_s=self.min_speech_s,
            min_silence_s=self.min_silence_s,
            speech_pad_s=self.speech_pad_s,
            max_speech_s=self.max_speech_s,
        )


@dg.asset(
    **table_asset_kwargs(episode_asset_kwargs, vad.REGIONS_SCHEMA, vad.REGIONS_DESCRIPTIONS),
    group_name=GROUP,
    kinds={"polars", "duckdb"},
)
def voice_activity(
    context: dg.AssetExecutionContext, config: VoiceActivityConfig, stems: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """Speech regions of the vocal stem (resampled to 16 kHz), one row per region."""
    key = context.partition_key
    row = one_row(stems, "stems", key)
    params = config.params()
    regions = vad.detect_speech_file(
        Path(row["vocals_path"]), params, progress=logging_progress(context.log)
    )
    df = vad.regions_table(key, regions)
    if not len(regions):
        context.log.warning(
            "%s: no speech found in the vocal stem (%.1f s)", key, regions.duration_s
        )
    lengths = regions.ends - regions.starts
    return dg.Output(
        df,
        metadata=round_metadata({
            "regions": len(regions),
            "speech_s": regions.speech_s,
            "speech_minutes": regions.speech_s / 60,
            "speech_ratio": regions.speech_ratio,
            "duration_s": regions.duration_s,
            "median_region_s": float(np.median(lengths)) if len(regions) else 0.0,
            "timeline": png_md(
                timeline_png(
                    [
                        (float(s), float(e), "speech")
                        for s, e in zip(regions.starts, regions.ends, strict=True)
                    ],
                    regions.duration_s,
                    title=f"{key} voice activity",
                ),
                "voice activity",
            ),
            "dagster/row_count": df.height,
        }),
    )


def interval_problems(df: pl.DataFrame, duration: float, by: str | None = None) -> dict[str, int]:
    """Negative/zero durations, rows outside the episode, and rows overlapping another row
    (of the same ``by`` value) - the invariants every time table here keeps."""
    if df.is_empty():
        return {"non_positive_duration": 0, "outside_episode": 0, "overlapping_rows": 0}
    bad = df.filter(pl.col("end") <= pl.col("start")).height
    outside = df.filter(
        (pl.col("start") < -TIME_TOLERANCE_S) | (pl.col("end") > duration + TIME_TOLERANCE_S)
    ).height
    keys = [by] if by else []
    ordered = df.sort([*keys, "start"])
    prev_end = pl.col("end").shift(1)
    if by:
        prev_end = prev_end.over(by)
    overlapping = ordered.filter(pl.col("start") < prev_end - 1e-6).height
    return {
        "non_positive_duration": bad,
        "outside_episode": outside,
        "overlapping_rows": overlapping,
    }


@episode_check(
    asset=voice_activity,
    additional_ins={"episode_audio": dg.AssetIn("episode_audio"), "stems": dg.AssetIn("stems")},
)
def voice_activity_valid(
    voice_activity: pl.DataFrame, episode_audio: pl.DataFrame, stems: pl.DataFrame
) -> dg.AssetCheckResult:
    """Regions have positive durations, lie inside the episode and do not overlap; and a
    clearly audible vocal stem has at least one region. Diarization and ASR only look inside
    these regions, so speech missed here is lost to the dataset."""
    duration = float(episode_audio["duration_s"][0]) if episode_audio.height else 0.0
    problems = interval_problems(voice_activity, duration)
    lufs = stems["vocals_lufs"][0] if stems.height else None
    audible = lufs is not None and lufs > SPEECH_EXPECTED_LUFS
    empty_but_audible = bool(audible and voice_activity.is_empty())
    return dg.AssetCheckResult(
        passed=not any(problems.values()) and not empty_but_audible,
        metadata=round_metadata({
            **problems,
            "regions": voice_activity.height,
            "vocals_lufs": lufs,
            "empty_but_audible": empty_but_audible,
        }),
    )
