"""Many workers: a real Redis, a real PostgreSQL and two celery workers (separate processes and
working folders; one takes the model stages from the `gpu` queue, one the rest) backfill two
demo episodes into a store with Parquet tables, and every table and clip file equals the
embedded single-process run's (DuckDB file)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from testdata import PostgresServer, RedisServer

from voice_assets.distributed import GPU_QUEUE
from voice_assets.partitions import episode_key
from voice_assets.review.corrections import load_table

CLI = str(Path(sys.executable).with_name("voice-assets"))
TABLES = {"utterances": ("id",), "clips": ("id",), "diarization": ("episode", "start"),
          "dataset_splits": ("id",), "character_map": ("episode", "speaker")}


@pytest.fixture(scope="module")
def services():
    postgres, redis = PostgresServer(), RedisServer()
    yield postgres, redis
    redis.stop()
    postgres.stop()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VOICE_ASSETS_", "DAGSTER_"))}
    env["VOICE_ASSETS_CACHE"] = os.environ.get("VOICE_ASSETS_CACHE", "")
    return {k: v for k, v in {**env, **extra}.items() if v}


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=1200)


def _table(tables: Path, home: Path, name: str) -> pl.DataFrame:
    """A table, sorted, with the store's own path written as <home> (clip paths)."""
    df = load_table(tables, name)
    text = [c for c, t in df.schema.items() if t == pl.Utf8]
    return df.with_columns(pl.col(text).str.replace_all(str(home), "<home>", literal=True)
                           ).sort(list(TABLES[name]))


def _clip_files(home: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((home / "episodes").rglob("clips/*.wav"))}


def test_two_celery_workers_backfill_like_the_embedded_run(services, demo_episode,
                                                           demo_episode_2, tmp_path: Path):
    postgres, redis = services
    episodes = [demo_episode, demo_episode_2]
    homes = {"embedded": tmp_path / "embedded", "shared": tmp_path / "shared-store"}
    for home in homes.values():  # the same two episodes into each store's inbox
        home.mkdir()
        files = [str(p) for ep in episodes for p in (ep.video, ep.subtitles)]
        src = tmp_path / f"src-{home.name}"
        src.mkdir()
        for f in files:
            shutil.copy(f, src / Path(f).name)
        ingested = _cli("ingest", *[str(src / Path(f).name) for f in files if f.endswith(
            ".mkv")], "--series", "Demo", env=_env(
                VOICE_ASSETS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
                VOICE_ASSETS_POSTGRES_URL=postgres.url if home.name == "shared-store" else "",
                VOICE_ASSETS_TABLES="parquet" if home.name == "shared-store" else ""),
            cwd=tmp_path)
        assert ingested.returncode == 0, ingested.stderr

    embedded = _cli("run", "--all", env=_env(VOICE_ASSETS_HOME=str(homes["embedded"])),
                    cwd=tmp_path)
    assert embedded.returncode == 0, embedded.stderr[-3000:]

    # Two workers, each in its own working folder and Dagster home; they share only the
    # PostgreSQL instance, the Redis broker and the store, whose tables are Parquet files
    # (no database file for the workers to take turns on).
    shared = _env(VOICE_ASSETS_HOME=str(homes["shared"]), VOICE_ASSETS_POSTGRES_URL=postgres.url,
                  VOICE_ASSETS_REDIS_URL=redis.url, VOICE_ASSETS_TABLES="parquet")
    workers, logs = [], []
    for name, queue in (("cpu", "dagster"), ("gpu", GPU_QUEUE)):
        folder = tmp_path / f"worker-{name}"
        folder.mkdir()
        log = open(folder / "worker.log", "w")  # noqa: SIM115 - closed below
        logs.append((folder / "worker.log", log))
        workers.append(subprocess.Popen(
            [CLI, "worker", "--queue", queue, "--name", name], cwd=folder, stdout=log,
            stderr=subprocess.STDOUT, env={**shared, "DAGSTER_HOME": str(folder / "dagster")}))
    try:
        launcher = tmp_path / "launcher"
        launcher.mkdir()
        ran = _cli("run", "--all", env={**shared, "VOICE_ASSETS_EXECUTOR": "celery",
                                        "DAGSTER_HOME": str(launcher / "dagster")},
                   cwd=launcher)
        assert ran.returncode == 0, ran.stderr[-3000:]
        # The Label Studio push is not for the workers: it runs in the launching process,
        # and here fails only because no labeling server was started.
        key = episode_key("Demo", Path(demo_episode.video).stem)
        pushed = _cli("run", "--episode", key, "--select", "review_tasks",
                      env={**shared, "VOICE_ASSETS_EXECUTOR": "celery",
                           "DAGSTER_HOME": str(launcher / "dagster")}, cwd=launcher)
        assert pushed.returncode != 0
        assert "no Label Studio server is known" in pushed.stderr, pushed.stderr[-2000:]
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        for _, log in logs:
            log.close()

    # Each worker executed the steps of its own queue.
    cpu_log, gpu_log = (path.read_text() for path, _ in logs)
    assert "Executing steps episode_media in celery worker" in cpu_log
    for stage in ("stems", "diarization", "transcript", "face_tracks"):
        assert f"Executing steps {stage} in celery worker" in gpu_log, stage
        assert f"Executing steps {stage} in celery worker" not in cpu_log, stage
    # The same tables, row for row, and the same clip files, byte for byte.
    assert not (homes["shared"] / "tables.duckdb").exists()
    for name in TABLES:
        a = _table(homes["embedded"] / "tables.duckdb", homes["embedded"], name)
        b = _table(homes["shared"] / "tables", homes["shared"], name)
        assert a.height > 0 and a.equals(b), name
    clips = _clip_files(homes["embedded"])
    assert len(clips) >= 20 and clips == _clip_files(homes["shared"])

    # An embedded store moved to Parquet (`tables migrate`) holds what the workers wrote.
    migrated = tmp_path / "migrated"
    moved = _cli("tables", "migrate", "--to", str(migrated),
                 env=_env(VOICE_ASSETS_HOME=str(homes["embedded"])), cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr[-2000:]
    for name in TABLES:
        assert _table(migrated, homes["embedded"], name).equals(
            _table(homes["shared"] / "tables", homes["shared"], name)), name
