"""Vocal and background stems of each episode (music and effects separated from dialogue)."""

import warnings
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import soundfile as sf

from voice_assets.assets.common import (
    model_asset_kwargs,
    png_md,
    round_metadata,
    table_asset_kwargs,
)
from voice_assets.errors import MediaError
from voice_assets.partitions import episodes
from voice_assets.plots import spectrogram_png
from voice_assets.progress import logging_progress
from voice_assets.resources.separator import SeparatorResource
from voice_assets.resources.storage import StorageResource
from voice_assets.speech.audio_io import read_mono
from voice_assets.speech.separation import (
    STEMS_DESCRIPTIONS,
    STEMS_SCHEMA,
    separate_file,
    stems_table,
)

GROUP = "speech"
PREVIEW_RATE = 8000  # spectrogram pictures: 4 kHz of bandwidth is plenty to see speech
DURATION_TOLERANCE_S = 0.05


def episode_check(**kwargs):
    """dg.asset_check evaluated per episode partition (partitioned checks are a Dagster
    preview feature; its warning is silenced here, where that choice is made)."""

    def decorate(fn):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=dg.PreviewWarning)
            return dg.asset_check(partitions_def=episodes, **kwargs)(fn)

    return decorate


def one_row(df: pl.DataFrame, table: str, episode: str) -> dict:
    if df.height != 1:
        raise MediaError(f"{table}/{episode}", f"expected one row, found {df.height}")
    return df.row(0, named=True)


@dg.asset(**table_asset_kwargs(model_asset_kwargs, STEMS_SCHEMA, STEMS_DESCRIPTIONS),
          group_name=GROUP, kinds={"polars", "duckdb"})
def stems(
    context: dg.AssetExecutionContext,
    episode_audio: pl.DataFrame,
    separator: SeparatorResource,
    storage: StorageResource,
) -> dg.Output[pl.DataFrame]:
    """Vocals and background (music + effects) as 44.1 kHz mono WAVs; the background stem
    is kept for reuse (remixing, music detection). Loudness and spectrograms in metadata."""
    key = context.partition_key
    audio = one_row(episode_audio, "episode_audio", key)
    # Resolve the model first: a missing one fails here, before any file is written.
    sep = separator.separator(storage.layout)
    result = separate_file(
        Path(audio["dataset_path"]),
        storage.episode_dir(key, "stems"),
        sep,
        progress=logging_progress(context.log),
    )
    df = stems_table(key, result)
    pictures = {}
    for name, path in (("vocals", result.vocals_path), ("background", result.background_path)):
        samples, rate = read_mono(path, PREVIEW_RATE)
        if samples.size and np.abs(samples).max() > 0:  # a silent stem has no spectrogram
            pictures[f"{name}_spectrogram"] = png_md(
                spectrogram_png(samples, rate, title=f"{key} {name}"), f"{name} spectrogram"
            )
    context.log.info(
        "%s: %s/%s, vocals %s LUFS, background %s LUFS",
        key,
        result.backend,
        result.model,
        result.vocals_lufs,
        result.background_lufs,
    )
    return dg.Output(
        df,
        metadata=round_metadata({
            "backend": result.backend,
            "model": result.model,
            "device": getattr(sep, "device", "cpu"),
            "duration_s": result.duration_s,
            "vocals_lufs": result.vocals_lufs,
            "background_lufs": result.background_lufs,
            "vocals_wav": dg.MetadataValue.path(str(result.vocals_path)),
            "background_wav": dg.MetadataValue.path(str(result.background_path)),
            **pictures,
            "dagster/row_count": df.height,
        }),
    )


@episode_check(asset=stems, additional_ins={"episode_audio": dg.AssetIn("episode_audio")})
def stems_match_audio(stems: pl.DataFrame, episode_audio: pl.DataFrame) -> dg.AssetCheckResult:
    """One row; both stems exist, are mono at the table's rate and last exactly as long as
    the episode audio (a truncated stem would shift every later time stamp)."""
    if stems.height != 1 or episode_audio.height != 1:
        return dg.AssetCheckResult(
            passed=False, metadata={"rows": stems.height, "audio_rows": episode_audio.height}
        )
    row = stems.row(0, named=True)
    duration = float(episode_audio["duration_s"][0])
    problems: list[str] = []
    lengths: dict[str, float] = {}
    for col in ("vocals_path", "background_path"):
        path = Path(row[col])
        if not path.is_file():
            problems.append(f"{col} missing: {path}")
            continue
        info = sf.info(str(path))
        lengths[col] = info.frames / info.samplerate
        if info.channels != 1 or info.samplerate != row["sample_rate"]:
            problems.append(f"{col}: {info.samplerate} Hz x {info.channels} ch")
        if abs(lengths[col] - duration) > DURATION_TOLERANCE_S:
            problems.append(f"{col}: {lengths[col]:.3f} s vs audio {duration:.3f} s")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata=round_metadata({
            "audio_s": duration,
            **{f"{k.removesuffix('_path')}_s": v for k, v in lengths.items()},
            "problems": "; ".join(problems) or "none",
        }),
    )
