"""review_tasks: push an episode's turns and speakers to Label Studio, most doubtful first."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from voice_assets.assets.common import review_asset_kwargs, table_asset_kwargs
from voice_assets.characters.cast import load_cast
from voice_assets.characters.store import load_maps
from voice_assets.errors import MediaError
from voice_assets.faces.identity import speaker_face_crops
from voice_assets.progress import logging_progress
from voice_assets.resources.label_studio import LabelStudioResource
from voice_assets.resources.storage import StorageResource
from voice_assets.review import names
from voice_assets.review.tasks import (
    REVIEW_TASKS_DESCRIPTIONS,
    REVIEW_TASKS_SCHEMA,
    SPEAKER_NAMING,
    UTTERANCE_REVIEW,
    build_speaker_tasks,
    build_utterance_tasks,
    local_files_url,
    series_of,
    write_task_audio,
)


class ReviewTasksConfig(dg.Config):
    audio_source: str = Field(
        default="analysis",
        description="'analysis' (16 kHz mono, small) or 'dataset' (44.1 kHz mono) episode audio.",
    )
    name_match_threshold: float = Field(
        default=names.DEFAULT_THRESHOLD,
        description="Cosine similarity above which a named voice of another episode is suggested.",
    )
    low_confidence: float = Field(default=0.6, description="Confidence below this is doubtful.")
    max_chunk_s: float = Field(default=30.0, description="Longest review window, seconds.")
    max_turns: int = Field(default=8, description="Most turns per review window.")


def _model_version(speaker_embeddings: pl.DataFrame, utterances: pl.DataFrame) -> str:
    try:
        ours = version("voice-assets")
    except PackageNotFoundError:
        ours = "dev"
    parts = [f"voice-assets {ours}"]
    if "model" in speaker_embeddings.columns and not speaker_embeddings.is_empty():
        parts.append("voice " + "+".join(sorted({str(m) for m in speaker_embeddings["model"]})))
    if "model" in utterances.columns and not utterances.is_empty():
        parts.append("asr " + "+".join(sorted({str(m) for m in utterances["model"] if m})))
    return "; ".join(parts)


def series_characters(
    storage: StorageResource, series: str, confirmed: pl.DataFrame
) -> list[str]:
    """Every character of the series a reviewer may pick: the cast, named and voice ids."""
    cast = load_cast(storage.layout.inbox, series)
    maps = load_maps(storage.layout.database, series)
    mapped = set(maps["character"].drop_nulls().to_list()) if maps.height else set()
    return sorted(set(cast.names) | mapped | set(names.known_characters(confirmed)))


def _face_urls(speaking: pl.DataFrame, tracks: pl.DataFrame, document_root: Path
               ) -> dict[str, list[str]]:
    """speaker -> local-files URLs of the face crops that speak its turns (crops outside
    Label Studio's document root cannot be served and are left out)."""
    out: dict[str, list[str]] = {}
    root = Path(document_root).resolve()
    for speaker, paths in speaker_face_crops(speaking, tracks).items():
        urls = [local_files_url(Path(p), root) for p in paths
                if Path(p).is_file() and Path(p).resolve().is_relative_to(root)]
        if urls:
            out[speaker] = urls
    return out


# speaker_embeddings is read straight from DuckDB (optional: without it, no voice matching), so
# this asset loads even in a code location that does not define that asset.
@dg.asset(
    group_name="review",
    kinds={"labelstudio", "duckdb"},
    deps=["speaker_embeddings"],
    **table_asset_kwargs(review_asset_kwargs, REVIEW_TASKS_SCHEMA, REVIEW_TASKS_DESCRIPTIONS),
)
def review_tasks(
    context: dg.AssetExecutionContext,
    config: ReviewTasksConfig,
    utterances: pl.DataFrame,
    episode_audio: pl.DataFrame,
    face_tracks: pl.DataFrame,
    speaking_faces: pl.DataFrame,
    storage: StorageResource,
    label_studio: LabelStudioResource,
) -> dg.Output[pl.DataFrame]:
    """Label Studio tasks for one episode, pre-annotated with the models' output.

    Idempotent: a re-run updates the episode's tasks in place and never duplicates them; tasks a
    person already annotated are kept. Turns where sources disagree or confidence is low come
    first (Label Studio's uncertainty-sampling queue), and speakers whose voice matches a name
    confirmed in another episode of the series are pre-annotated with that name.
    """
    episode = context.partition_key
    series = series_of(episode)
    progress = logging_progress(context.log)
    if episode_audio.is_empty():
        raise MediaError(
            storage.layout.episode_dir(episode, "episode_audio"),
            "episode_audio has no row for this episode",
        )
    audio_row = episode_audio.row(0, named=True)
    column = "dataset_path" if config.audio_source == "dataset" else "analysis_path"
    source_wav = Path(audio_row[column])

    speaker_embeddings = names.load_speaker_embeddings(storage.layout.database, episode)
    confirmed = names.load_confirmed_names(storage.layout.database, series)
    characters = series_characters(storage, series, confirmed)
    suggestions = names.suggest_names(
        speaker_embeddings, confirmed, config.name_match_threshold, episode=episode
    )
    model_version = _model_version(speaker_embeddings, utterances)
    specs = {
        UTTERANCE_REVIEW: build_utterance_tasks(
            episode,
            utterances,
            characters,
            model_version,
            duration_s=audio_row.get("duration_s"),
            max_chunk_s=config.max_chunk_s,
            max_turns=config.max_turns,
            low_confidence=config.low_confidence,
        ),
        SPEAKER_NAMING: build_speaker_tasks(
            episode, utterances, characters, suggestions, model_version,
            faces=_face_urls(speaking_faces, face_tracks, label_studio.document_root),
        ),
    }
    out_dir = storage.episode_dir(episode, "review_tasks")
    all_specs = specs[UTTERANCE_REVIEW] + specs[SPEAKER_NAMING]
    paths = write_task_audio(all_specs, source_wav, out_dir, progress=progress)
    urls = {key: local_files_url(path, label_studio.document_root) for key, path in paths.items()}

    client = label_studio.client()
    rows = []
    report_md = []
    keep_urls: set[str] = set()
    project_urls = {}
    for kind, kind_specs in specs.items():
        pid = client.ensure_project(
            kind,
            series,
            model_version,
            local_root=label_studio.document_root / "episodes",
            lock_dir=storage.layout.label_studio,
        )
        report = client.sync_tasks(pid, episode, kind_specs, urls, progress=progress)
        keep_urls |= report.audio_urls
        project_urls[kind] = f"{client.url}/projects/{pid}/data"
        report_md.append(
            f"| {kind} | {len(kind_specs)} | {report.created} | {report.updated} | "
            f"{report.deleted} | {report.kept_annotated} |"
        )
        for spec in kind_specs:
            rows.append(
                {
                    "episode": episode,
                    "kind": kind,
                    "task_key": spec.key,
                    "task_id": report.task_ids.get(spec.key),
                    "project_id": pid,
                    "priority": spec.priority,
                    "score": spec.score,
                    "start": spec.start,
                    "end": spec.end,
                    "n_turns": spec.n_turns,
                    "speaker": spec.speaker,
                    "predicted_name": spec.extra.get("predicted_name"),
                    "audio_path": str(paths[spec.key]),
                    "model_version": model_version,
                }
            )
    # Audio of tasks that no longer exist (and were not annotated) is removed.
    for wav in out_dir.glob("*.wav"):
        if local_files_url(wav, label_studio.document_root) not in keep_urls:
            wav.unlink(missing_ok=True)

    df = pl.DataFrame(rows, schema=REVIEW_TASKS_SCHEMA)
    top = df.filter(pl.col("kind") == UTTERANCE_REVIEW).sort("priority", descending=True).head(5)
    named = sum(1 for s in specs[SPEAKER_NAMING] if s.extra.get("predicted_name"))
    metadata = {
        "n_tasks": dg.MetadataValue.int(df.height),
        "n_utterance_tasks": dg.MetadataValue.int(len(specs[UTTERANCE_REVIEW])),
        "n_speaker_tasks": dg.MetadataValue.int(len(specs[SPEAKER_NAMING])),
        "n_speakers_prenamed": dg.MetadataValue.int(named),
        "model_version": dg.MetadataValue.text(model_version),
        "utterance_review": dg.MetadataValue.url(project_urls[UTTERANCE_REVIEW]),
        "speaker_naming": dg.MetadataValue.url(project_urls[SPEAKER_NAMING]),
        "sync": dg.MetadataValue.md(
            "| project | tasks | created | updated | deleted | kept (annotated) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(report_md)
        ),
        "first_in_queue": dg.MetadataValue.md(
            "| start | end | priority | turns |\n|---|---|---|---|\n"
            + "\n".join(
                f"| {r['start']:.1f} | {r['end']:.1f} | {r['priority']:.2f} | {r['n_turns']} |"
                for r in top.iter_rows(named=True)
            )
        ),
    }
    return dg.Output(df, metadata=metadata)
