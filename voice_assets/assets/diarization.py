"""Speaker turns of each episode and one centroid voice embedding per episode speaker."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from voice_assets.assets.common import EPISODE_TABLE, png_md, round_metadata, table_metadata
from voice_assets.assets.stems import episode_check, one_row
from voice_assets.assets.voice_activity import interval_problems
from voice_assets.distributed import GPU_STAGE_TAGS
from voice_assets.instance_config import MODELS_POOL
from voice_assets.partitions import episodes
from voice_assets.plots import bar_png, timeline_png
from voice_assets.progress import logging_progress
from voice_assets.resources.diarizer import DiarizerResource
from voice_assets.resources.storage import StorageResource
from voice_assets.speech import diarization as dia
from voice_assets.speech import vad
from voice_assets.speech.audio_io import read_mono

GROUP = "speech"
# With at least this much detected speech, an empty diarization is a failure, not silence.
MIN_SPEECH_S = 2.0


@dg.multi_asset(
    outs={
        "diarization": dg.AssetOut(
            metadata=table_metadata(dia.DIARIZATION_SCHEMA, dia.DIARIZATION_DESCRIPTIONS,
                                    EPISODE_TABLE),
            kinds={"polars", "duckdb"},
            description="Speaker turns: start, end, episode-local "
            "speaker id, overlap flag, confidence.",
        ),
        "speaker_embeddings": dg.AssetOut(
            metadata=table_metadata(dia.EMBEDDINGS_SCHEMA, dia.EMBEDDINGS_DESCRIPTIONS,
                                    EPISODE_TABLE),
            kinds={"polars", "duckdb"},
            description="One L2-normalised centroid embedding "
            "per episode speaker, for cross-episode matching.",
        ),
    },
    partitions_def=episodes,
    group_name=GROUP,
    pool=MODELS_POOL,
    op_tags=GPU_STAGE_TAGS,
)
def diarization(
    context: dg.AssetExecutionContext,
    stems: pl.DataFrame,
    voice_activity: pl.DataFrame,
    diarizer: DiarizerResource,
    storage: StorageResource,
) -> Iterator[Any]:
    """Who spoke when in the vocal stem, inside the voice-activity regions."""
    key = context.partition_key
    diarizer.check_available(storage.layout)
    row = one_row(stems, "stems", key)
    samples, _ = read_mono(Path(row["vocals_path"]), dia.SAMPLE_RATE)
    duration = samples.size / dia.SAMPLE_RATE
    regions = vad.regions_from_table(voice_activity, duration)
    if not len(regions):
        context.log.warning("%s: no voice activity, so no speakers (empty tables)", key)
    result = diarizer.diarize(samples, regions, storage.layout, logging_progress(context.log))
    if len(regions) and not result.turns:
        context.log.warning(
            "%s: %.1f s of voice activity but no speaker turns (%s)",
            key,
            regions.speech_s,
            "; ".join(result.notes) or "no reason given",
        )
    turns = dia.turns_table(key, result)
    embeddings = dia.embeddings_table(key, result)
    per_speaker = result.speech_s_by_speaker()
    overlap_s = float(sum(t.end - t.start for t in result.turns if t.overlap))
    meta: dict[str, Any] = {
        "backend": result.backend,
        "model": result.model,
        "speakers": result.n_speakers,
        "turns": turns.height,
        "overlap_s": overlap_s,
        "speech_minutes_by_speaker": dg.MetadataValue.json(
            {k: v / 60 for k, v in per_speaker.items()}
        ),
        "mean_confidence": float(np.mean([t.confidence for t in result.turns]))
        if result.turns
        else 0.0,
        "dagster/row_count": turns.height,
    }
    if result.turns:
        meta["timeline"] = png_md(
            timeline_png(
                [(t.start, t.end, t.speaker) for t in result.turns],
                duration,
                title=f"{key} speakers",
            ),
            "speaker timeline",
        )
        meta["speech_minutes"] = png_md(
            bar_png(
                {k: v / 60 for k, v in per_speaker.items()},
                "minutes of speech",
                title=f"{key} speech per speaker",
            ),
            "speech per speaker",
        )
    yield dg.Output(turns, output_name="diarization", metadata=round_metadata(meta))
    yield dg.Output(
        embeddings,
        output_name="speaker_embeddings",
        metadata={
            "speakers": embeddings.height,
            "model": result.model,
            "dim": int(embeddings["dim"][0]) if embeddings.height else 0,
            "dagster/row_count": embeddings.height,
        },
    )


@episode_check(
    asset="diarization",
    additional_ins={
        "episode_audio": dg.AssetIn("episode_audio"),
        "voice_activity": dg.AssetIn("voice_activity"),
    },
)
def diarization_valid(
    diarization: pl.DataFrame, episode_audio: pl.DataFrame, voice_activity: pl.DataFrame
) -> dg.AssetCheckResult:
    """Turns have positive durations and lie inside the episode; no speaker has two rows
    over the same time; and there are turns wherever voice activity found speech. Every
    utterance and clip takes its speaker and bounds from these turns."""
    duration = float(episode_audio["duration_s"][0]) if episode_audio.height else 0.0
    problems = interval_problems(diarization, duration, by="speaker")
    speech_s = (
        float((voice_activity["end"] - voice_activity["start"]).sum())
        if voice_activity.height
        else 0.0
    )
    missing = speech_s >= MIN_SPEECH_S and diarization.is_empty()
    return dg.AssetCheckResult(
        passed=not any(problems.values()) and not missing,
        metadata=round_metadata({
            **problems,
            "turns": diarization.height,
            "speech_s": speech_s,
            "empty_despite_speech": missing,
        }),
    )


@episode_check(
    asset="speaker_embeddings", additional_ins={"diarization": dg.AssetIn("diarization")}
)
def speaker_embeddings_valid(
    speaker_embeddings: pl.DataFrame, diarization: pl.DataFrame
) -> dg.AssetCheckResult:
    """One unit-length embedding per diarized speaker, all of the declared dimension: the
    character map links speakers across episodes by cosine similarity of these vectors."""
    speakers = set(diarization["speaker"].unique().to_list()) if diarization.height else set()
    have = set(speaker_embeddings["speaker"].to_list()) if speaker_embeddings.height else set()
    bad_norm = 0
    bad_dim = 0
    for emb, dim in speaker_embeddings.select("embedding", "dim").iter_rows():
        v = np.asarray(emb, np.float64)
        bad_dim += int(v.size != dim)
        bad_norm += int(abs(np.linalg.norm(v) - 1.0) > 1e-3)
    duplicates = speaker_embeddings.height - len(have)
    return dg.AssetCheckResult(
        passed=have == speakers and bad_norm == 0 and bad_dim == 0 and duplicates == 0,
        metadata={
            "speakers": len(speakers),
            "embeddings": speaker_embeddings.height,
            "missing": ", ".join(sorted(speakers - have)) or "none",
            "not_unit_length": bad_norm,
            "wrong_dim": bad_dim,
            "duplicates": duplicates,
        },
    )
