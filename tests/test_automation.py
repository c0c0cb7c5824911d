"""The series rebuild condition, evaluated by Dagster's own evaluator.

The condition and the freshness report are the real ones; the graph is a stand-in (a clips
asset partitioned by episode with a blocking check, and two series assets reading every
episode) so each scenario takes milliseconds. The real pipeline under the real daemon is
tests/test_handsoff.py.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from voice_assets.automation import series_freshness, series_rebuild

QUIET_S = 60.0
episodes = dg.DynamicPartitionsDefinition(name="episodes")


@dg.asset(partitions_def=episodes,
          check_specs=[dg.AssetCheckSpec("clips_ok", asset="clips", blocking=True)])
def clips():
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="clips_ok", passed=True)


EVERY_EPISODE = dg.AllPartitionMapping()


@dg.asset(deps=[dg.AssetDep(clips, partition_mapping=EVERY_EPISODE)],
          automation_condition=series_rebuild(QUIET_S))
def dataset_splits() -> int:
    return 1


@dg.asset(deps=[dataset_splits, dg.AssetDep(clips, partition_mapping=EVERY_EPISODE)],
          automation_condition=series_rebuild(QUIET_S))
def dataset_exports() -> int:
    return 1


DEFS = dg.Definitions(assets=[clips, dataset_splits, dataset_exports])
SERIES = ["dataset_exports", "dataset_splits"]


class Evaluator:
    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance, self.cursor = instance, None

    def __call__(self, later_s: float = 0.0) -> list[str]:
        now = datetime.now(UTC) + timedelta(seconds=later_s)
        result = dg.evaluate_automation_conditions(
            defs=DEFS, instance=self.instance, cursor=self.cursor, evaluation_time=now)
        self.cursor = result.cursor
        return sorted(r.key.to_user_string() for r in result.results if r.true_subset.size)


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(tmp_path))
    path = tmp_path / "inbox" / "toon"
    path.mkdir(parents=True)
    return path


def materialize_episodes(instance: dg.DagsterInstance, *keys: str) -> None:
    instance.add_dynamic_partitions("episodes", list(keys))
    for key in keys:
        assert dg.materialize([clips], partition_key=key, instance=instance).success


def rebuild(instance: dg.DagsterInstance) -> None:
    assert dg.materialize([clips, dataset_splits, dataset_exports],
                          selection=[dataset_splits, dataset_exports], instance=instance).success


def test_series_outputs_rebuild_once_after_a_batch_and_not_again(inbox: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    evaluate = Evaluator(instance)
    assert evaluate() == []  # first look: nothing built, nothing to build from
    graph = DEFS.resolve_asset_graph()
    assert series_freshness(instance, graph, dg.AssetKey("dataset_splits")).describe() == (
        "never built: no upstream data yet")

    materialize_episodes(instance, "toon__e01", "toon__e02")
    fresh = series_freshness(instance, graph, dg.AssetKey("dataset_splits"))
    assert fresh.stale and fresh.episodes == ["toon__e01", "toon__e02"]
    assert fresh.describe() == "never built: clips of 2 episode(s) updated since"
    # Both series outputs in one evaluation, so one run builds them together.
    assert evaluate() == SERIES
    rebuild(instance)
    assert evaluate() == []
    assert evaluate() == []
    fresh = series_freshness(instance, graph, dg.AssetKey("dataset_exports"))
    assert not fresh.stale and fresh.describe() == "current"


def test_a_busy_inbox_holds_the_rebuild_until_it_is_quiet(inbox: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    evaluate = Evaluator(instance)
    evaluate()
    materialize_episodes(instance, "toon__e01")
    (inbox / "e02.mkv").write_bytes(b"still copying")  # the next episode is arriving
    assert evaluate() == []
    assert evaluate(later_s=QUIET_S / 2) == []
    assert evaluate(later_s=QUIET_S + 1) == SERIES

    # A file moved in keeps its old mtime; its ctime (the move) still counts as a change.
    rebuild(instance)
    evaluate(later_s=QUIET_S + 2)
    moved = inbox / "e03.mkv"
    moved.write_bytes(b"old")
    os.utime(moved, (0, 0))
    materialize_episodes(instance, "toon__e03")
    assert evaluate(later_s=QUIET_S / 2) == []
    assert evaluate(later_s=QUIET_S + 3) == SERIES


def test_a_new_instance_rebuilds_what_is_already_stale(inbox: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    materialize_episodes(instance, "toon__e01")
    rebuild(instance)
    materialize_episodes(instance, "toon__e02")  # while no automation was watching
    assert Evaluator(instance)() == SERIES
    current = dg.DagsterInstance.ephemeral()
    materialize_episodes(current, "toon__e01")
    rebuild(current)
    assert Evaluator(current)() == []
