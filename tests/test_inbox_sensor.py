"""The inbox: scanning, sidecars, key collisions, key resolution, and the sensor tick by tick."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from voice_assets.errors import PartitionKeyError
from voice_assets.inbox import (
    STABLE_TICKS,
    find_subtitles,
    plan_tick,
    resolve_episode,
    scan_inbox,
)
from voice_assets.partitions import episodes
from voice_assets.resources.storage import StorageResource
from voice_assets.sensors.inbox import inbox_sensor


def _put(path: Path, data: bytes = b"\x1a\x45\xdf\xa3 fake matroska payload") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class Inbox:
    """A temp $VOICE_ASSETS_HOME with an inbox, an ephemeral instance and the sensor cursor."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "inbox"
        self.root.mkdir(parents=True)
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(
            cursor=self.cursor,
            instance=self.instance,
            resources={"storage": StorageResource(home=str(self.home))},
        ) as ctx:
            result = inbox_sensor(ctx)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        for req in result.dynamic_partitions_requests or []:  # what the daemon would do
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return result

    def requested(self, result: dg.SensorResult) -> list[str]:
        return [r.partition_key for r in result.run_requests or []]


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "home")


# ------------------------------------------------------------------------------ scanning


def test_scan_keys_sidecars_and_ignored_files(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    show = root / "My Show"
    ep1 = _put(show / "Episode 01.mkv")
    _put(show / "Episode 01.en.srt", b"x")
    _put(show / "Episode 01.ja.srt", b"x")
    _put(show / "Episode 01.ass", b"x")
    _put(show / "Episode 01.ja.forced.ass", b"x")
    _put(show / "Season 2" / "S02E01.m2ts")
    _put(show / "Episode 02.opus")
    _put(show / "notes.txt", b"x")
    _put(show / ".partial" / "Episode 03.mkv")  # hidden folders are someone else's business
    _put(show / ".Episode 04.mkv")
    _put(root / "stray.mkv")  # not inside a series folder
    scan = scan_inbox(root)
    assert sorted(scan.files) == ["my-show__episode-01", "my-show__episode-02", "my-show__s02e01"]
    item = scan.files["my-show__episode-01"]
    assert item.path == ep1 and item.series == "My Show"
    assert [p.name for p in item.subtitles] == [
        "Episode 01.ass", "Episode 01.ja.srt", "Episode 01.en.srt", "Episode 01.ja.forced.ass",
    ]
    assert item.subtitle == show / "Episode 01.ass"
    assert scan.files["my-show__episode-02"].subtitle is None
    assert sorted(p.name for p in scan.ignored) == ["notes.txt", "stray.mkv"]
    assert not scan.collisions


def test_subtitle_language_preference(tmp_path: Path) -> None:
    media = _put(tmp_path / "Show.S01E01.1080p.mkv")
    for name in ["Show.S01E01.1080p.en.srt", "Show.S01E01.1080p.ja-JP.vtt",
                 "Show.S01E01.1080p.Extended.srt", "Show.S01E01.srt"]:
        _put(tmp_path / name, b"x")
    assert [p.name for p in find_subtitles(media)] == [
        "Show.S01E01.1080p.ja-JP.vtt", "Show.S01E01.1080p.en.srt",
    ]
    assert find_subtitles(media, ["en"])[0].name == "Show.S01E01.1080p.en.srt"


def test_collision_names_both_files_and_spares_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    a = _put(root / "Show" / "Episode 1.mkv")
    b = _put(root / "Show" / "episode_1.mp4")
    c = _put(root / "Show" / "Episode 2.mkv")
    scan = scan_inbox(root)
    assert list(scan.files) == ["show__episode-2"] and scan.files["show__episode-2"].path == c
    message = scan.collisions["show__episode-1"]
    assert str(a) in message and str(b) in message and "show__episode-1" in message
    with pytest.raises(PartitionKeyError) as err:
        resolve_episode(root, "show__episode-1")
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_resolve_episode(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    ep = _put(root / "Show" / "Ep 1.mkv")
    sub = _put(root / "Show" / "Ep 1.srt", b"x")
    item = resolve_episode(root, "show__ep-1")
    assert (item.path, item.subtitle) == (ep, sub)
    with pytest.raises(PartitionKeyError, match=r"no media file .* to episode key 'show__ep-2'"):
        resolve_episode(root, "show__ep-2")


# ------------------------------------------------------------------------------ plan_tick


def _scan_plan(root: Path, cursor: str | None, known: set[str] | None = None):
    return plan_tick(cursor, scan_inbox(root), known or set())


def test_plan_waits_for_two_stable_ticks_then_requests_once(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _put(root / "Show" / "Ep 1.mkv")
    plans = []
    cursor = None
    for _ in range(STABLE_TICKS + 2):
        plan = _scan_plan(root, cursor)
        cursor = plan.cursor
        plans.append(plan)
    assert [len(p.requests) for p in plans] == [0] * STABLE_TICKS + [1, 0]
    req = plans[STABLE_TICKS].requests[0]
    assert (req.key, req.reason) == ("show__ep-1", "new")
    assert req.run_key.startswith("show__ep-1:r1:")
    assert req.media_hash.startswith("b2f:")
    assert plans[STABLE_TICKS].new_partitions == ["show__ep-1"]
    assert plans[-1].unchanged == ["show__ep-1"]
    state = json.loads(cursor)
    assert state["version"] == 1
    assert state["requested"]["show__ep-1"]["n"] == 1
    assert state["seen"]["show__ep-1"]["sig"][0] == str(root / "Show" / "Ep 1.mkv")


def test_touch_without_content_change_does_not_rerun(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    ep = _put(root / "Show" / "Ep 1.mkv")
    cursor = None
    for _ in range(STABLE_TICKS + 1):
        cursor = _scan_plan(root, cursor).cursor
    st = ep.stat()
    os.utime(ep, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    plans = []
    for _ in range(STABLE_TICKS + 1):
        plan = _scan_plan(root, cursor, {"show__ep-1"})
        cursor = plan.cursor
        plans.append(plan)
    assert all(not p.requests for p in plans)
    assert plans[-1].unchanged == ["show__ep-1"]


def test_content_returning_to_an_earlier_version_runs_again(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    ep = _put(root / "Show" / "Ep 1.mkv", b"version A")
    cursor = None
    run_keys = []
    for data in (b"version A", b"version B!", b"version A"):
        ep.write_bytes(data)
        for _ in range(STABLE_TICKS + 1):
            plan = _scan_plan(root, cursor, {"show__ep-1"})
            cursor = plan.cursor
            run_keys += [r.run_key for r in plan.requests]
    assert len(run_keys) == 3 and len(set(run_keys)) == 3
    assert [k.split(":")[1] for k in run_keys] == ["r1", "r2", "r3"]
    assert run_keys[0].split(":")[2] == run_keys[2].split(":")[2]  # same content, same revision


def test_removed_and_restored_file_is_not_rerun(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    ep = _put(root / "Show" / "Ep 1.mkv", b"content")
    cursor = None
    for _ in range(STABLE_TICKS + 1):
        cursor = _scan_plan(root, cursor).cursor
    ep.unlink()
    cursor = _scan_plan(root, cursor, {"show__ep-1"}).cursor
    assert "show__ep-1" not in json.loads(cursor)["seen"]
    _put(ep, b"content")
    requests = []
    for _ in range(STABLE_TICKS + 1):
        plan = _scan_plan(root, cursor, {"show__ep-1"})
        cursor = plan.cursor
        requests += plan.requests
    assert requests == []


def test_a_new_subtitle_reruns_the_episode(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _put(root / "Show" / "Ep 1.mkv")
    cursor = None
    for _ in range(STABLE_TICKS + 1):
        cursor = _scan_plan(root, cursor).cursor
    _put(root / "Show" / "Ep 1.ja.srt", b"1\n00:00:01,000 --> 00:00:02,000\nhi\n\n")
    reqs = []
    for _ in range(STABLE_TICKS + 1):
        plan = _scan_plan(root, cursor, {"show__ep-1"})
        cursor = plan.cursor
        reqs += plan.requests
    assert [(r.key, r.reason, r.subtitle.name if r.subtitle else None) for r in reqs] == [
        ("show__ep-1", "changed", "Ep 1.ja.srt")
    ]


def test_reset_cursor_recognises_already_ingested_revision(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _put(root / "Show" / "Ep 1.mkv", b"content")
    cursor = None
    for _ in range(STABLE_TICKS + 1):
        plan = _scan_plan(root, cursor)
        cursor = plan.cursor
    revision = plan.requests[0].revision

    def ingested(key: str) -> str | None:
        return revision if key == "show__ep-1" else None

    cursor, plans = None, []  # the cursor was reset; the partition and its data remain
    for _ in range(STABLE_TICKS + 1):
        p = plan_tick(cursor, scan_inbox(root), {"show__ep-1"}, ingested_revision=ingested)
        cursor = p.cursor
        plans.append(p)
    assert all(not p.requests for p in plans) and plans[-1].unchanged == ["show__ep-1"]
    (root / "Show" / "Ep 1.mkv").write_bytes(b"new content")
    reqs = []
    for _ in range(STABLE_TICKS + 1):
        p = plan_tick(cursor, scan_inbox(root), {"show__ep-1"}, ingested_revision=ingested)
        cursor = p.cursor
        reqs += p.requests
    assert [(r.reason, r.run_key.split(":")[1]) for r in reqs] == [("changed", "r1")]


def test_garbage_cursor_starts_afresh(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _put(root / "Show" / "Ep 1.mkv")
    for bad in ("not json", json.dumps({"version": 999}), json.dumps([1, 2])):
        plan = _scan_plan(root, bad)
        assert plan.settling == ["show__ep-1"] and not plan.requests


# ------------------------------------------------------------------------------ the sensor


def test_sensor_new_file_adds_partition_and_requests_run(inbox: Inbox) -> None:
    _put(inbox.root / "My Show" / "Episode 01.mkv")
    for _ in range(STABLE_TICKS):
        result = inbox.tick()
        assert not result.run_requests and not result.dynamic_partitions_requests
    result = inbox.tick()
    assert inbox.requested(result) == ["my-show__episode-01"]
    (add,) = result.dynamic_partitions_requests
    assert add.partitions_def_name == episodes.name
    assert list(add.partition_keys) == ["my-show__episode-01"]
    request = result.run_requests[0]
    assert request.run_key.startswith("my-show__episode-01:r1:")
    assert request.tags["voice_assets/source"].endswith("Episode 01.mkv")
    assert request.tags["voice_assets/reason"] == "new"
    assert inbox.instance.get_dynamic_partitions("episodes") == ["my-show__episode-01"]
    result = inbox.tick()
    assert not result.run_requests


def test_sensor_skips_growing_file_until_stable(inbox: Inbox) -> None:
    ep = _put(inbox.root / "Show" / "Ep 1.mkv", b"\0" * 1000)
    for i in range(4):  # still being copied: grows every tick
        with ep.open("ab") as f:
            f.write(b"\0" * 1000 * (i + 1))
        assert not inbox.tick().run_requests
    for _ in range(STABLE_TICKS - 1):
        assert not inbox.tick().run_requests
    assert inbox.requested(inbox.tick()) == ["show__ep-1"]


def test_sensor_changed_file_is_requested_again_with_new_run_key(inbox: Inbox) -> None:
    ep = _put(inbox.root / "Show" / "Ep 1.mkv", b"first cut")
    keys = []
    for _ in range(STABLE_TICKS + 1):
        keys += [r.run_key for r in inbox.tick().run_requests or []]
    ep.write_bytes(b"the director's cut, longer")
    for _ in range(STABLE_TICKS + 1):
        result = inbox.tick()
        keys += [r.run_key for r in result.run_requests or []]
        if result.run_requests:
            assert not result.dynamic_partitions_requests  # the partition already exists
            assert result.run_requests[0].tags["voice_assets/reason"] == "changed"
    assert len(keys) == 2 and keys[0] != keys[1]
    assert all(k.startswith("show__ep-1:") for k in keys)


def test_sensor_ignores_unsupported_files(inbox: Inbox) -> None:
    for name in ("cover.jpg", "readme.txt", "Ep 1.mkv.part", "Ep 1.srt"):
        _put(inbox.root / "Show" / name, b"x")
    for _ in range(STABLE_TICKS + 2):
        result = inbox.tick()
        assert not result.run_requests and not result.dynamic_partitions_requests
    assert inbox.instance.get_dynamic_partitions("episodes") == []


def test_sensor_collision_is_reported_and_other_files_proceed(inbox: Inbox) -> None:
    a = _put(inbox.root / "Show" / "Ep 1.mkv")
    b = _put(inbox.root / "Show" / "EP-1.mp4")
    _put(inbox.root / "Show" / "Ep 2.mkv")
    results = [inbox.tick() for _ in range(STABLE_TICKS + 1)]
    assert inbox.requested(results[-1]) == ["show__ep-2"]
    first = results[0]  # nothing to run yet: the skip reason carries the collision
    assert first.skip_reason is not None
    assert str(a) in first.skip_reason.skip_message and str(b) in first.skip_reason.skip_message


def test_sensor_empty_inbox(tmp_path: Path) -> None:
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        resources={"storage": StorageResource(home=str(tmp_path / "nowhere"))},
    ) as ctx:
        result = inbox_sensor(ctx)
    assert not result.run_requests and result.skip_reason is not None
    assert "no episodes" in result.skip_reason.skip_message
