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
                     "character_registry"}
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
