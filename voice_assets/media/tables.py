"""The ingest tables (episode_media, episode_audio, episode_subtitles) as polars frames.

Schemas are explicit so an empty table (an episode without subtitles) still has every column
with the right type, and re-runs write exactly the same columns.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from voice_assets.media.decode import DecodedAudio
from voice_assets.media.probe import MediaInfo
from voice_assets.media.subtitles import Subtitles

EPISODE_MEDIA_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.String(),
    "series": pl.String(),
    "source_path": pl.String(),
    "subtitle_path": pl.String(),
    "content_hash": pl.String(),
    "size_bytes": pl.Int64(),
    "duration_s": pl.Float64(),
    "container": pl.String(),
    "has_video": pl.Boolean(),
    "width": pl.Int64(),
    "height": pl.Int64(),
    "fps": pl.Float64(),
    "audio_stream_index": pl.Int64(),
    "audio_language": pl.String(),
    "audio_codec": pl.String(),
    "source_sample_rate": pl.Int64(),
    "source_channels": pl.Int64(),
    "n_audio_streams": pl.Int64(),
}

EPISODE_AUDIO_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.String(),
    "analysis_path": pl.String(),
    "dataset_path": pl.String(),
    "duration_s": pl.Float64(),
    "rms_dbfs": pl.Float64(),
    "silence_ratio": pl.Float64(),
    "loudness_lufs": pl.Float64(),
}

EPISODE_SUBTITLES_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.String(),
    "line": pl.Int64(),
    "start": pl.Float64(),
    "end": pl.Float64(),
    "text": pl.String(),
    "name": pl.String(),
    "style": pl.String(),
    "effect": pl.String(),
    "source_path": pl.String(),
}


def media_table(
    episode: str, series: str, info: MediaInfo, subtitle: Path | None, content_hash: str
) -> pl.DataFrame:
    row = {
        "episode": episode,
        "series": series,
        "source_path": str(info.path),
        "subtitle_path": str(subtitle) if subtitle else None,
        "content_hash": content_hash,
        "size_bytes": info.size_bytes,
        "duration_s": info.duration_s,
        "container": info.container,
        "has_video": info.has_video,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "audio_stream_index": info.audio.index,
        "audio_language": info.audio.language,
        "audio_codec": info.audio.codec,
        "source_sample_rate": info.audio.sample_rate,
        "source_channels": info.audio.channels,
        "n_audio_streams": len(info.audio_streams),
    }
    return pl.DataFrame([row], schema=EPISODE_MEDIA_SCHEMA)


def audio_table(episode: str, audio: DecodedAudio) -> pl.DataFrame:
    row = {
        "episode": episode,
        "analysis_path": str(audio.analysis_path),
        "dataset_path": str(audio.dataset_path),
        "duration_s": audio.duration_s,
        "rms_dbfs": audio.levels.rms_dbfs,
        "silence_ratio": audio.levels.silence_ratio,
        "loudness_lufs": audio.levels.loudness_lufs,
    }
    return pl.DataFrame([row], schema=EPISODE_AUDIO_SCHEMA)


def subtitles_table(episode: str, subs: Subtitles | None) -> pl.DataFrame:
    """One row per kept subtitle event; no subtitles -> an empty frame with the full schema."""
    if subs is None:
        return pl.DataFrame(schema=EPISODE_SUBTITLES_SCHEMA)
    rows = [
        {
            "episode": episode,
            "line": ln.line,
            "start": ln.start,
            "end": ln.end,
            "text": ln.text,
            "name": ln.name,
            "style": ln.style,
            "effect": ln.effect,
            "source_path": str(subs.path),
        }
        for ln in subs.lines
    ]
    return pl.DataFrame(rows, schema=EPISODE_SUBTITLES_SCHEMA)
