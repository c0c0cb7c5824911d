"""The code location loads, and its ingest assets, checks, job and sensor are wired together."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from voice_assets.media.encode import AudioTrack, VideoTrack, tone, write_media
from voice_assets.partitions import episodes
from voice_assets.resources.storage import StorageResource

INGEST = ["episode_media", "episode_audio", "episode_subtitles"]


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from voice_assets.definitions import defs

    return defs


def test_ingest_assets_are_partitioned_by_episodes(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(INGEST) <= keys
    for name in INGEST:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == episodes
        assert node.group_name == "ingest"
    assert graph.get(dg.AssetKey("episode_audio")).parent_keys == {dg.AssetKey("episode_media")}
    assert graph.get(dg.AssetKey("episode_subtitles")).parent_keys == {
        dg.AssetKey("episode_media")
    }
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert {
        ("episode_media", "episode_media_one_row"),
        ("episode_audio", "episode_audio_matches_media"),
        ("episode_subtitles", "episode_subtitles_within_episode"),
    } <= checks


def test_inbox_sensor_targets_the_episode_pipeline(defs: dg.Definitions) -> None:
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("inbox_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "episode_pipeline"
    job = repo.get_job("episode_pipeline")
    assert job.partitions_def == episodes
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert set(INGEST) <= selected
    # every selected asset is per-episode, so one partition key can drive the whole run
    graph = defs.resolve_asset_graph()
    assert {graph.get(dg.AssetKey.from_user_string(k)).partitions_def for k in selected} == {
        episodes
    }


def test_sensor_run_requests_resolve_against_the_code_location(
    defs: dg.Definitions, tmp_path: Path
) -> None:
    """Evaluate the sensor as the daemon does (run requests resolved to the job and partition)."""
    series = tmp_path / "inbox" / "Show"
    write_media(series / "Ep 1.mp4", [AudioTrack(tone(1.0, 48000), 48000, "aac")],
                VideoTrack(1.0))
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("inbox_sensor")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", ["show__ep-1"])  # as after an earlier tick
    cursor = None
    requests = []
    for _ in range(3):
        with dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            repository_def=repo,
            resources={"storage": StorageResource(home=str(tmp_path))},
        ) as ctx, dg.partition_loading_context(dynamic_partitions_store=instance):
            data = sensor.evaluate_tick(ctx)
        cursor = data.cursor
        requests += data.run_requests or []
    (req,) = requests
    # resolved against the sensor's only target, episode_pipeline: partition validated, tagged
    assert req.job_name in (None, "episode_pipeline")
    assert req.partition_key == "show__ep-1"
    assert req.tags["dagster/partition"] == "show__ep-1"
    assert req.run_key is not None and req.run_key.startswith("show__ep-1:r1:")


def test_series_outputs_are_automated_and_runs_load_models_once(defs: dg.Definitions) -> None:
    """Every unpartitioned (series) asset carries the series rebuild condition, the sensor
    that evaluates it is on by default and targets exactly them, and every job executes its
    steps in one process."""
    from voice_assets.definitions import series_assets
    from voice_assets.instance_config import MODELS_POOL, SERIES_POOL

    graph = defs.resolve_asset_graph()
    names = {k.to_user_string() for k in series_assets}
    assert names == {"emotion_tags", "dataset_splits", "dataset_exports", "dataset_cards",
                     "character_registry", "voice_readiness"}
    for key in series_assets:
        condition = graph.get(key).automation_condition
        assert condition is not None and condition.get_label() == "series_rebuild", key
        assert graph.get(key).pools == {SERIES_POOL}, key
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("series_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert set(sensor.asset_selection.resolve(graph)) == set(series_assets)
    # No asset outside the series outputs is automated (episode runs come from sensors).
    automated = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    assert automated == set(series_assets)
    for job in repo.get_all_jobs():
        assert job.executor_def.name == "in_process", job.name
    for name in ("stems", "diarization", "transcript", "emotion_features"):
        assert graph.get(dg.AssetKey(name)).pools == {MODELS_POOL}, name


# --- the catalog: check descriptions, column schemas, rounded metadata ---------------------------


def _table_schemas() -> dict[str, dict]:
    """asset -> the polars schema its table is declared with in the domain code."""
    from voice_assets.characters.mapping import MAP_SCHEMA, REGISTRY_TABLE_SCHEMA
    from voice_assets.dataset.cards import CARD_SCHEMA
    from voice_assets.dataset.clips import CLIP_SCHEMA
    from voice_assets.dataset.emotion import EMOTION_TAGS_SCHEMA, FEATURES_SCHEMA
    from voice_assets.dataset.exports import EXPORT_SCHEMA
    from voice_assets.dataset.splits import SPLIT_SCHEMA
    from voice_assets.faces.tables import FACE_TRACK_SCHEMA, SPEAKING_SCHEMA
    from voice_assets.media.shots import SHOT_SCHEMA
    from voice_assets.media.tables import (
        EPISODE_AUDIO_SCHEMA,
        EPISODE_MEDIA_SCHEMA,
        EPISODE_SUBTITLES_SCHEMA,
    )
    from voice_assets.review.corrections import CORRECTION_SCHEMA, REVIEW_COLUMNS_SCHEMA
    from voice_assets.review.names import NAMES_SCHEMA
    from voice_assets.review.tasks import REVIEW_TASKS_SCHEMA
    from voice_assets.speech.alignment import ALIGNED_SCHEMA
    from voice_assets.speech.asr import TRANSCRIPT_SCHEMA
    from voice_assets.speech.diarization import DIARIZATION_SCHEMA, EMBEDDINGS_SCHEMA
    from voice_assets.speech.fusion import UTTERANCE_SCHEMA
    from voice_assets.speech.separation import STEMS_SCHEMA
    from voice_assets.speech.vad import REGIONS_SCHEMA
    from voice_assets.voices.tables import READINESS_TABLE_SCHEMA, VOICE_MODEL_SCHEMA

    return {
        "episode_media": EPISODE_MEDIA_SCHEMA, "episode_audio": EPISODE_AUDIO_SCHEMA,
        "episode_subtitles": EPISODE_SUBTITLES_SCHEMA, "shots": SHOT_SCHEMA,
        "stems": STEMS_SCHEMA, "voice_activity": REGIONS_SCHEMA,
        "diarization": DIARIZATION_SCHEMA, "speaker_embeddings": EMBEDDINGS_SCHEMA,
        "transcript": TRANSCRIPT_SCHEMA, "aligned_transcript": ALIGNED_SCHEMA,
        # utterances as stored: the fused turns plus the columns the corrections add
        "utterances": {**UTTERANCE_SCHEMA, **REVIEW_COLUMNS_SCHEMA},
        "face_tracks": FACE_TRACK_SCHEMA, "speaking_faces": SPEAKING_SCHEMA,
        "character_map": MAP_SCHEMA, "character_registry": REGISTRY_TABLE_SCHEMA,
        "emotion_features": FEATURES_SCHEMA, "emotion_tags": EMOTION_TAGS_SCHEMA,
        "clips": CLIP_SCHEMA, "dataset_splits": SPLIT_SCHEMA, "dataset_exports": EXPORT_SCHEMA,
        "dataset_cards": CARD_SCHEMA, "review_tasks": REVIEW_TASKS_SCHEMA,
        "corrections": CORRECTION_SCHEMA, "speaker_names": NAMES_SCHEMA,
        "voice_readiness": READINESS_TABLE_SCHEMA, "voice_models": VOICE_MODEL_SCHEMA,
    }


def test_every_asset_check_says_what_it_checks(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    checks = graph.asset_check_keys
    assert len(checks) >= 26
    undescribed = [f"{k.asset_key.to_user_string()}:{k.name}" for k in checks
                   if len((graph.get_check_spec(k).description or "").strip()) < 40]
    assert not undescribed, f"asset checks without a description: {sorted(undescribed)}"


def test_every_table_asset_declares_described_columns(defs: dg.Definitions) -> None:
    """The catalog lists each table's columns, with what they hold, before anything runs; the
    columns are exactly those of the polars schema the domain code builds the table with."""
    from voice_assets.resources.tables import DuckDBTablesIOManager

    graph = defs.resolve_asset_graph()
    assert isinstance(defs.resources["io_manager"], DuckDBTablesIOManager)
    # Tables: what the DuckDB IO manager stores, and the tables the review sensor writes.
    stored = {k for k in graph.materializable_asset_keys
              if graph.get(k).io_manager_key == "io_manager"}
    for key in stored:
        assert "duckdb" in graph.get(key).kinds, key
    tables = {k.to_user_string() for k in graph.get_all_asset_keys()
              if k in stored or "duckdb" in graph.get(k).kinds}
    schemas = _table_schemas()
    assert tables == set(schemas)
    for name, schema in schemas.items():
        declared = graph.get(dg.AssetKey(name)).metadata.get("dagster/column_schema")
        assert isinstance(declared, dg.TableSchema), name
        assert [c.name for c in declared.columns] == list(schema), name
        assert [c.type for c in declared.columns] == [str(t) for t in schema.values()], name
        undescribed = [c.name for c in declared.columns if not (c.description or "").strip()]
        assert not undescribed, f"{name}: columns without a description: {undescribed}"


def test_table_schema_needs_a_description_for_every_column() -> None:
    import polars as pl

    from voice_assets.assets.common import table_schema

    schema = {"episode": pl.Utf8(), "start": pl.Float64()}
    with pytest.raises(ValueError, match="start"):
        table_schema(schema, {"episode": "the episode"})
    with pytest.raises(ValueError, match="stray"):
        table_schema(schema, {"episode": "e", "start": "s", "stray": "not a column"})
    # A materialization's schema: the frame's columns, described where the asset says how.
    stored = table_schema({**schema, "new": pl.Int64()}, {"episode": "e"}, strict=False)
    assert [(c.name, c.type, c.description) for c in stored.columns] == [
        ("episode", "String", "e"), ("start", "Float64", None), ("new", "Int64", None)]


def test_metadata_floats_are_rounded_for_people() -> None:
    import numpy as np

    from voice_assets.assets.common import round_float, round_metadata

    raw = {
        "duration_s": 55.65823129251701,
        "silence_ratio": 0.012567324955116697,  # below 1: three significant digits
        "peak": np.float32(0.9251749515533447),
        "loudness_lufs": -23.91137043440971,
        "median": dg.MetadataValue.float(0.87132),
        "per_speaker": dg.MetadataValue.json({"SPK_00": 1.23456, "SPK_01": [0.5, 2]}),
        "nested": {"a": 2.00049},
        "time_map_scale": 0.9999871234,
        "turns": 3, "named": True, "model": "x", "none": None, "nan": float("nan"),
    }
    out = round_metadata(raw, precise={"time_map_scale": 6})
    assert out["duration_s"] == 55.658
    assert out["silence_ratio"] == 0.0126
    assert out["peak"] == 0.925 and type(out["peak"]) is float
    assert out["loudness_lufs"] == -23.911
    assert out["median"] == dg.MetadataValue.float(0.871)
    assert out["per_speaker"] == dg.MetadataValue.json({"SPK_00": 1.235, "SPK_01": [0.5, 2]})
    assert out["nested"] == {"a": 2.0}
    assert out["time_map_scale"] == 0.999987
    assert (out["turns"], out["named"], out["model"], out["none"]) == (3, True, "x", None)
    assert np.isnan(out["nan"])
    assert raw["duration_s"] == 55.65823129251701  # the input is left alone
    assert round_float(0.0) == 0.0 and round_float(1234.56789) == 1234.568


def test_ingest_metadata_is_rounded_and_stored_columns_are_described(tmp_path: Path) -> None:
    """A real materialization: floats in asset and check metadata are rounded, the table keeps
    full precision, and each stored column schema carries the declared descriptions."""
    import duckdb

    from voice_assets.assets import ingest
    from voice_assets.assets.common import round_float
    from voice_assets.media.tables import EPISODE_AUDIO_DESCRIPTIONS, EPISODE_AUDIO_SCHEMA
    from voice_assets.paths import Layout
    from voice_assets.resources import default_resources

    layout = Layout(tmp_path)
    write_media(layout.inbox / "Show" / "Ep 1.mp4",
                [AudioTrack(tone(1.2345, 48000), 48000, "aac")], VideoTrack(1.2345))
    key = "show__ep-1"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [key])
    result = dg.materialize(
        [*dg.load_assets_from_modules([ingest]), *dg.load_asset_checks_from_modules([ingest])],
        partition_key=key, instance=instance, resources=default_resources(layout))
    assert result.success

    def floats(metadata) -> dict[str, float]:
        values = {k: getattr(v, "value", v) for k, v in metadata.items()}
        return {k: v for k, v in values.items() if isinstance(v, float)}

    shown = {}
    for mat in result.get_asset_materialization_events():
        shown.update(floats(mat.materialization.metadata))
    for check in result.get_asset_check_evaluations():
        shown.update(floats(check.metadata))
    assert {"duration_s", "rms_dbfs", "loudness_lufs", "audio_s", "difference_s"} <= set(shown)
    unrounded = {k: v for k, v in shown.items() if v == v and round_float(v) != v}
    assert not unrounded, unrounded

    with duckdb.connect(str(layout.database), read_only=True) as con:
        (stored,) = con.execute("select duration_s from voice_assets.episode_audio").fetchone()
    assert round_float(stored) != stored  # the table keeps every digit...
    (audio,) = result.asset_materializations_for_node("episode_audio")
    assert audio.metadata["duration_s"].value == round_float(stored)  # ...metadata is rounded
    columns = audio.metadata["dagster/column_schema"].value.columns
    assert [(c.name, c.type, c.description) for c in columns] == [
        (n, str(t), EPISODE_AUDIO_DESCRIPTIONS[n]) for n, t in EPISODE_AUDIO_SCHEMA.items()]


def test_one_setting_picks_every_model_stage_backend(tmp_path, monkeypatch) -> None:
    from voice_assets.paths import Layout
    from voice_assets.profiles import active_profile
    from voice_assets.resources import default_resources

    layout = Layout(tmp_path)
    monkeypatch.delenv("VOICE_ASSETS_PROFILE", raising=False)
    cpu = default_resources(layout)
    assert (cpu["separator"].backend, cpu["diarizer"].backend, cpu["asr"].backend,
            cpu["asr"].model, cpu["face_detector"].backend) == (
        "spleeter", "embed-cluster", "faster-whisper", "tiny.en", "dlib")
    monkeypatch.setenv("VOICE_ASSETS_PROFILE", "GPU ")
    gpu = default_resources(layout)
    assert (gpu["separator"].backend, gpu["separator"].demucs_model, gpu["diarizer"].backend,
            gpu["asr"].backend, gpu["asr"].model, gpu["face_detector"].backend) == (
        "demucs", "htdemucs", "pyannote", "whisperx", "large-v3", "insightface")
    assert gpu["asr"].home == str(layout.home)  # the profile adds to, never drops, settings
    monkeypatch.setenv("VOICE_ASSETS_PROFILE", "tpu")
    with pytest.raises(ValueError, match=r"unknown profile 'tpu'.*VOICE_ASSETS_PROFILE.*cpu, gpu"):
        active_profile()
