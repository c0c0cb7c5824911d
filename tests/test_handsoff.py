"""Hands-off: a season dropped into the inbox ends in datasets, with no clicks.

The real `voice-assets watch` (the Dagster daemon with this code location, as `voice-assets ui`
starts it) runs on a temporary home; three generated episodes land in its inbox at once; the
test waits for the series exports and reads the instance's own records.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from voice_assets.handsoff import (
    SERIES_OUTPUTS,
    exported_episodes,
    max_overlap,
    run_records,
    series_state,
    wait_for_series,
    watching,
)
from voice_assets.instance_config import Machine, plan_runs
from voice_assets.synth import EpisodeSpec, SynthEpisode, cached_episode

KEYS = ["demo__episode-01", "demo__episode-02", "demo__episode-03"]
AUTOMATION_TICK_S = 30  # voice_assets/sensors/automation.py


def _wait_for(path: Path, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared:\n{_tail(log)}"
        time.sleep(0.5)


def _tail(log: Path, n: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""


def _drop(episodes: list[SynthEpisode], inbox: Path) -> None:
    """Copy each file beside its final name (hidden), then rename them all: one drop."""
    inbox.mkdir(parents=True, exist_ok=True)
    staged = []
    for ep in episodes:
        for src in (ep.subtitles, ep.video):
            if src is None:
                continue
            tmp = inbox / f".{Path(src).name}.part"
            shutil.copy2(src, tmp)
            staged.append((tmp, inbox / Path(src).name))
    for tmp, final in staged:
        os.replace(tmp, final)


@pytest.mark.slow
def test_three_episodes_dropped_at_once_end_in_one_series_rebuild(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_episode: SynthEpisode,
        demo_episode_2: SynthEpisode) -> None:
    third = cached_episode(EpisodeSpec(series="demo", name="Episode 03", seed=2, index=3))
    home, log = tmp_path / "home", tmp_path / "watch.log"
    plan = plan_runs(Machine.detect())
    with watching(home, log) as daemon:
        config = home / "dagster" / "dagster.yaml"
        _wait_for(config, 120, log)
        runs_limit = yaml.safe_load(config.read_text())["concurrency"]["runs"][
            "max_concurrent_runs"]
        assert runs_limit == plan.max_runs
        _drop([demo_episode, demo_episode_2, third], home / "inbox" / "Demo")
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        try:
            wait_for_series(instance, KEYS, timeout_s=1800, daemon=daemon)
        except (TimeoutError, RuntimeError) as exc:
            pytest.fail(f"{exc}\n{_tail(log)}")
        time.sleep(AUTOMATION_TICK_S + 10)  # another automation tick: nothing more to build
        state = series_state(instance)
        runs = run_records(instance)
        in_process = {
            r.run_id: any("in process" in (e.message or "") for e in instance.all_logs(
                r.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT))
            for r in instance.get_runs(dg.RunsFilter(job_name="episode_pipeline"))}

    assert state.episode_runs == dict.fromkeys(KEYS, "SUCCESS"), _tail(log)
    # One rebuild of every series output, after the last episode's clips.
    assert state.series_materializations == dict.fromkeys(SERIES_OUTPUTS, 1), _tail(log)
    assert state.last_clips_storage_id is not None
    for name in SERIES_OUTPUTS:
        assert state.first_series_storage_id[name] > state.last_clips_storage_id, name
    exported = exported_episodes(home, "demo")
    assert sorted(exported) == KEYS and min(exported.values()) >= 5, exported
    # Runs were sized to the machine and loaded their models in one process each.
    assert len(runs) == 3 and max_overlap([(s, e) for _, s, e, _ in runs]) <= plan.max_runs
    assert in_process and all(in_process.values()), in_process

    # `voice-assets status` on that home: every series output current.
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    from voice_assets.cli import main

    status = CliRunner().invoke(main, ["status"], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    lines = {line.split()[0]: line for line in status.output.splitlines() if line.strip()}
    for name in SERIES_OUTPUTS:
        assert lines[name].endswith("current"), status.output
    assert "out of date" not in status.output
