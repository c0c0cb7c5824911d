"""The ingest tables (episode_media, episode_audio, episode_subtitles) as polars frames.

Schemas are explicit so an empty table (an episode without subtitles) still has every column
with the right type, and re-runs write exactly the same columns.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from voice_assets.episode_keys import EPISODE_COLUMN, SERIES_COLUMN
from voice_assets.media.decode import DecodedAudio
from voice_assets.media.probe import MediaInfo
from voice_assets.media.subtitles import CUE_OVERLAP_MIN_S, Subtitles

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
# What each column holds, shown beside it in the catalog (same keys as the schema).
EPISODE_MEDIA_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "series": SERIES_COLUMN,
    "source_path": "The episode's media file in the inbox.",
    "subtitle_path": "The sidecar subtitle file chosen for the episode (null: none).",
    "content_hash": "Hash of the media file ('b2f:' whole file, 'b2s:' sampled); a new hash "
    "re-runs the episode.",
    "size_bytes": "Size of the media file, bytes.",
    "duration_s": "Duration of the container, seconds.",
    "container": "Container format as PyAV names it.",
    "has_video": "Whether the file has a video stream (false: audio-only, no shots or faces).",
    "width": "Video width, pixels (null without video).",
    "height": "Video height, pixels (null without video).",
    "fps": "Video frame rate, frames per second (null without video or rate).",
    "audio_stream_index": "Index of the audio stream used, chosen by language preference.",
    "audio_language": "Language tag of the chosen audio stream (null: untagged).",
    "audio_codec": "Codec of the chosen audio stream.",
    "source_sample_rate": "Sample rate of the chosen audio stream, Hz.",
    "source_channels": "Channels of the chosen audio stream.",
    "n_audio_streams": "Audio streams in the file.",
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
EPISODE_AUDIO_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "analysis_path": "16 kHz mono WAV of the chosen audio stream, for the analysis models.",
    "dataset_path": "44.1 kHz mono WAV of the chosen audio stream on the container's timeline, "
    "at dataset quality (stem separation reads it).",
    "duration_s": "Duration of the decoded audio, seconds.",
    "rms_dbfs": "Overall RMS level, dBFS (null for digital silence).",
    "silence_ratio": "Share of the audio below the silence threshold (0-1).",
    "loudness_lufs": "Integrated loudness (ITU-R BS.1770), LUFS (null when silent or shorter "
    "than 0.4 s).",
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
    "overlaps_other": pl.Boolean(),
}
EPISODE_SUBTITLES_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "line": "0-based index of the event among the kept events, in file order.",
    "start": "Start time as the subtitle file gives it, seconds (aligned_transcript re-times "
    "it to the speech).",
    "end": "End time as the subtitle file gives it, seconds.",
    "text": "Plain text of the line, formatting tags removed.",
    "name": "Speaker name: the ASS Name field or an SRT/VTT speaker prefix (null: none).",
    "style": "ASS/SSA style of the line (null for SRT/VTT).",
    "effect": "ASS/SSA Effect field (null: none).",
    "source_path": "The subtitle file the line comes from.",
    "overlaps_other": f"Whether the line shares {CUE_OVERLAP_MIN_S:g} s or more of its time with "
    "another line: two "
    "lines on screen at once (a reply over a line, two speakers; signs too). Copies of a line "
    "are collapsed into one before this is decided.",
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
            "overlaps_other": ln.overlaps_other,
        }
        for ln in subs.lines
    ]
    return pl.DataFrame(rows, schema=EPISODE_SUBTITLES_SCHEMA)
