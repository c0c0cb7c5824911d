"""Shot boundaries of each episode's video: with the pauses, they mark the scenes splits deal."""

from pathlib import Path

import dagster as dg
import polars as pl

from voice_assets.assets.common import episode_asset_kwargs, round_metadata, table_asset_kwargs
from voice_assets.assets.stems import one_row
from voice_assets.errors import MediaError
from voice_assets.media.shots import SHOT_DESCRIPTIONS, SHOT_SCHEMA, detect_shots
from voice_assets.progress import logging_progress

GROUP = "video"


@dg.asset(**table_asset_kwargs(episode_asset_kwargs, SHOT_SCHEMA, SHOT_DESCRIPTIONS),
          group_name=GROUP, kinds={"polars", "duckdb"})
def shots(context: dg.AssetExecutionContext, episode_media: pl.DataFrame
          ) -> dg.Output[pl.DataFrame]:
    """One row per shot (hard cut to hard cut) of the episode's video, by PySceneDetect.
    Audio-only episodes and unreadable pictures give an empty table with the reason: their
    scenes come from pauses alone."""
    key = context.partition_key
    media = one_row(episode_media, "episode_media", key)
    empty = pl.DataFrame(schema=SHOT_SCHEMA)
    if not media["has_video"]:
        context.log.info("%s: audio-only episode; scenes will follow pauses alone", key)
        return dg.Output(empty, metadata={"shots": 0, "skipped": "no video stream"})
    try:
        result = detect_shots(Path(media["source_path"]),
                              progress=logging_progress(context.log))
    except MediaError as exc:  # a broken picture must not hold back the audio pipeline
        context.log.warning("%s: shots skipped: %s", key, exc)
        return dg.Output(empty, metadata={"shots": 0, "skipped": f"video unreadable: {exc}"})
    df = pl.DataFrame({"episode": [key] * len(result.shots),
                       "shot": list(range(len(result.shots))),
                       "start": [s for s, _ in result.shots], "end": [e for _, e in result.shots]},
                      schema=SHOT_SCHEMA)
    lengths = df["end"] - df["start"]
    return dg.Output(df, metadata=round_metadata({
        "shots": df.height, "detector": result.detector,
        "median_shot_s": float(lengths.median() or 0.0),
        "seconds": result.seconds,
        "rtf": result.seconds / result.duration_s if result.duration_s else 0.0,
        "dagster/row_count": df.height,
    }))
