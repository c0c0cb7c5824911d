"""A season dropped into the inbox, processed by the real daemon, measured from outside.

``voice-assets watch`` (the Dagster daemon, as ``voice-assets ui`` starts it) runs in its own
process group on a home of its own; episodes are copied into its inbox at once; this module
waits until the series exports hold every episode, sampling the memory of the whole process
tree (daemon, code server, run workers) meanwhile. ``voice-assets bench --drop N`` reports
the figures, and the hands-off test asserts on the same run records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

SERIES_OUTPUTS = ("emotion_tags", "dataset_splits", "dataset_exports", "dataset_cards",
                  "character_registry")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (shared pages counted once per process,
    so an upper bound)."""
    total_kb = 0
    for p in process_tree(pid):
        try:
            total_kb += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE_KB
        except (OSError, IndexError, ValueError):
            continue
    return total_kb / 1024


class TreeMemory:
    """Samples ``tree_rss_mb`` every ``interval_s`` on a thread; ``peak_mb`` is the maximum."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid, self.interval_s, self.peak_mb = pid, interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def prepare_instance(home: Path) -> None:
    """Write the instance config and create its storage before any process opens it: two
    processes initialising a fresh SQLite instance at once can both stamp its schema version,
    and the daemon then refuses to start ("more than one head")."""
    import dagster as dg

    from voice_assets import instance_config

    dagster_home = home / "dagster"
    instance_config.write_instance_config(
        dagster_home, instance_config.plan_runs(instance_config.Machine.detect()))
    dg.DagsterInstance.from_config(str(dagster_home)).dispose()


@contextmanager
def watching(home: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[
        subprocess.Popen]:
    """``voice-assets watch`` on ``home`` for the duration of the block, then stopped with its
    whole process tree (code server and any run still going)."""
    prepare_instance(home)
    full = {**os.environ, **(env or {}), "VOICE_ASSETS_HOME": str(home)}
    full.pop("DAGSTER_HOME", None)  # the CLI puts the instance under the home
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "voice_assets.cli", "watch"], env=full,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        tree = process_tree(proc.pid)
        for p in tree:
            with suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        for p in tree:  # whatever did not stop (a run worker mid-step)
            with suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        proc.wait()


@dataclass
class SeriesState:
    """What the instance says about a drop at one moment."""

    episode_runs: dict[str, str] = field(default_factory=dict)  # episode -> latest run status
    active_runs: int = 0
    series_materializations: dict[str, int] = field(default_factory=dict)
    last_clips_storage_id: int | None = None
    first_series_storage_id: dict[str, int] = field(default_factory=dict)

    def done(self, episodes: list[str]) -> bool:
        finished = all(self.episode_runs.get(e) in ("SUCCESS", "FAILURE", "CANCELED")
                       for e in episodes)
        built = all(self.series_materializations.get(k, 0) for k in ("dataset_exports",
                                                                      "dataset_cards"))
        return finished and built and self.active_runs == 0


def series_state(instance: Any) -> SeriesState:
    """Episode runs, active runs and series materializations, from the instance's records."""
    import dagster as dg

    state = SeriesState()
    for record in instance.get_run_records(dg.RunsFilter(job_name="episode_pipeline"),
                                           ascending=True):
        key = record.dagster_run.tags.get("dagster/partition")
        if key:
            state.episode_runs[key] = record.dagster_run.status.value
    state.active_runs = instance.get_runs_count(dg.RunsFilter(statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
    for name in SERIES_OUTPUTS:
        records = instance.fetch_materializations(dg.AssetKey(name), limit=1000).records
        state.series_materializations[name] = len(records)
        if records:
            state.first_series_storage_id[name] = min(r.storage_id for r in records)
    clips = instance.fetch_materializations(dg.AssetKey("clips"), limit=1).records
    state.last_clips_storage_id = clips[0].storage_id if clips else None
    return state


def wait_for_series(instance: Any, episodes: list[str], timeout_s: float,
                    on_poll: Callable[[SeriesState], None] | None = None,
                    poll_s: float = 5.0, daemon: subprocess.Popen | None = None) -> SeriesState:
    """Poll until every episode run finished and the series outputs were built after them;
    fail at once if the ``daemon`` process exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if daemon is not None and daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with code {daemon.returncode}")
        state = series_state(instance)
        if on_poll:
            on_poll(state)
        if state.done(episodes):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout_s:.0f} s: {state}")
        time.sleep(poll_s)


def exported_episodes(home: Path, series: str) -> dict[str, int]:
    """Clips per episode in the series' Parquet export (train, validation and test)."""
    root = home / "exports" / series / "dataset"
    files = sorted(root.glob("*.parquet"))
    if not files:
        return {}
    df = pl.concat([pl.read_parquet(f, columns=["episode"]) for f in files])
    return dict(df.group_by("episode").len().sort("episode").iter_rows())


@dataclass
class DropReport:
    episodes: int
    audio_s: float
    wall_s: float  # first file in the inbox -> series exports built
    run_s: list[float]  # each episode run, start to end
    max_concurrent_runs: int
    peak_tree_mb: float
    series_materializations: dict[str, int]
    failed: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        mean = sum(self.run_s) / len(self.run_s) if self.run_s else float("nan")
        return "\n".join([
            f"episodes          {self.episodes} ({self.audio_s:.0f} s of audio)",
            f"wall              {self.wall_s:.0f} s from the drop to the series exports "
            f"(RTF {self.wall_s / max(self.audio_s, 1e-9):.2f})",
            f"episode run       mean {mean:.0f} s, max {max(self.run_s, default=0):.0f} s",
            f"runs at once      {self.max_concurrent_runs}",
            f"peak memory       {self.peak_tree_mb / 1024:.2f} GB (daemon, code server, runs)",
            "series rebuilds   " + ", ".join(f"{k} {v}" for k, v in
                                             self.series_materializations.items()),
            f"failed episodes   {', '.join(self.failed) or 'none'}",
        ])


def run_records(instance: Any) -> list[tuple[str, float, float, str]]:
    """(episode, start, end, status) of every finished episode_pipeline run."""
    import dagster as dg

    out = []
    for r in instance.get_run_records(dg.RunsFilter(job_name="episode_pipeline")):
        if r.start_time and r.end_time:
            out.append((r.dagster_run.tags.get("dagster/partition", ""), r.start_time,
                        r.end_time, r.dagster_run.status.value))
    return out


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def drop_benchmark(n: int, home: Path, timeout_s: float = 3600.0, series: str = "demo",
                   log: Callable[[str], None] = print) -> DropReport:
    """Start the daemon on ``home``, drop ``n`` demo episodes into its inbox at once (a rename
    each, so they land together), and measure until the series exports are built."""
    import dagster as dg

    from voice_assets import synth

    staging = home / "staging"
    eps = [synth.demo_episode(staging, series=series, seed=i, index=i + 1) for i in range(n)]
    audio_s = sum(e.duration_s for e in eps)
    inbox = home / "inbox" / series
    inbox.mkdir(parents=True, exist_ok=True)
    with watching(home, home / "watch.log") as proc:
        time.sleep(5)  # the daemon writes its instance config first
        start = time.time()
        for e in eps:
            for path in (e.subtitles, e.video):
                if path is not None:
                    os.replace(path, inbox / Path(path).name)
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        keys = [f"{series}__episode-{i + 1:02d}" for i in range(n)]
        last: list[str] = []

        def report(state: SeriesState) -> None:
            done = sum(v == "SUCCESS" for v in state.episode_runs.values())
            line = (f"{done}/{n} episodes done, {state.active_runs} run(s) active, "
                    f"{tree_rss_mb(proc.pid) / 1024:.2f} GB")
            if line != (last[-1] if last else ""):
                log(f"[{time.time() - start:6.0f} s] {line}")
                last.append(line)

        with TreeMemory(proc.pid) as mem:
            state = wait_for_series(instance, keys, timeout_s, on_poll=report, daemon=proc)
        wall = time.time() - start
        runs = run_records(instance)
    return DropReport(
        episodes=n, audio_s=audio_s, wall_s=wall, run_s=[e - s for _, s, e, _ in runs],
        max_concurrent_runs=max_overlap([(s, e) for _, s, e, _ in runs]),
        peak_tree_mb=mem.peak_mb, series_materializations=state.series_materializations,
        failed=sorted(k for k, v in state.episode_runs.items() if v != "SUCCESS"))
