"""A store that machines share on S3 (VOICE_ASSETS_STORE): a real S3 endpoint on loopback
(moto's server, spoken to by s3fs over HTTP). Writes go up when committed; a machine with an
empty home gets back what it reads: the files an upstream table names, the Parquet tables,
the models."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from testdata import S3Server

from voice_assets import atomic, object_store, parquet_store

PREFIX = "season-1"


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    server.filesystem().mkdir(server.bucket)
    yield server
    server.stop()


@pytest.fixture
def shared(s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose store is s3://<bucket>/<test's own prefix>, with Parquet tables."""
    home = tmp_path / "home"
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(home))
    monkeypatch.setenv("VOICE_ASSETS_STORE", f"s3://{s3.bucket}/{tmp_path.name}")
    monkeypatch.setenv("VOICE_ASSETS_TABLES", "parquet")
    monkeypatch.setattr(object_store, "_OPEN", {})
    return home


def _key(s3: S3Server, home: Path, path: Path) -> str:
    return f"{s3.bucket}/{home.parent.name}/{path.relative_to(home).as_posix()}"


def test_committed_files_and_folders_are_uploaded_and_fetched_back(s3, shared: Path) -> None:
    fs = s3.filesystem()
    wav = shared / "episodes" / "demo__ep1" / "clips" / "a.wav"
    atomic.write_wav(wav, np.zeros(1600, np.float32), 16000)
    assert fs.cat(_key(s3, shared, wav)) == wav.read_bytes()

    folder = shared / "exports" / "demo" / "hf"
    with atomic.atomic_dir(folder) as tmp:
        (tmp / "one.txt").write_text("1")
        (tmp / "two.txt").write_text("2")
    with atomic.atomic_dir(folder) as tmp:  # a rebuilt folder: the stale file goes too
        (tmp / "one.txt").write_text("one")
    assert sorted(Path(k).name for k in fs.find(_key(s3, shared, folder))) == ["one.txt"]

    wav.unlink()
    assert object_store.ensure_local([str(wav), None]) == 1
    assert wav.read_bytes() == fs.cat(_key(s3, shared, wav))
    assert object_store.ensure_local([str(wav)]) == 0  # present: nothing to fetch
    # Paths outside the home are never the store's business.
    assert object_store.ensure_local([str(shared.parent / "elsewhere.wav")]) == 0


def test_parquet_tables_written_elsewhere_are_read_here(s3, shared: Path) -> None:
    root = parquet_store.tables_location(shared)
    for key in ("demo__ep1", "demo__ep2"):
        parquet_store.write_file(parquet_store.partition_file(root, "clips", key),
                                 pl.DataFrame({"episode": [key], "n": [1]}))
    with parquet_store.connect(root) as con:  # a ledger row: one new part file
        con.execute("CREATE TABLE IF NOT EXISTS voice_assets.corrections (correction_id "
                    "VARCHAR, recorded_at TIMESTAMP, value VARCHAR)")
        con.execute("INSERT INTO voice_assets.corrections VALUES ('c1', now(), 'Grace')")
    fs = s3.filesystem()
    stored = fs.find(_key(s3, shared, root))
    assert len(stored) == 3, stored

    shutil.rmtree(root)  # another machine: an empty home, the same store
    got = parquet_store.read(root, "clips")
    assert sorted(got["episode"]) == ["demo__ep1", "demo__ep2"]
    with parquet_store.connect(root) as con:
        assert con.sql("SELECT value FROM voice_assets.corrections").fetchall() == [("Grace",)]

    # A partition another machine rewrote replaces the stale local copy when read.
    path = parquet_store.partition_file(root, "clips", "demo__ep1")
    newer = pl.DataFrame({"episode": ["demo__ep1"] * 3, "n": [1, 2, 3]})
    buffer = io.BytesIO()
    newer.write_parquet(buffer)
    fs.pipe(_key(s3, shared, path), buffer.getvalue())
    assert parquet_store.read(root, "clips", ["demo__ep1"]).height == 3


def test_one_duckdb_file_cannot_be_shared(shared: Path, monkeypatch) -> None:
    from voice_assets.paths import Layout
    from voice_assets.resources.tables import tables_io_manager

    monkeypatch.setenv("VOICE_ASSETS_TABLES", "duckdb")
    with pytest.raises(ValueError, match="set VOICE_ASSETS_TABLES=parquet too"):
        tables_io_manager(Layout(shared).database)


def test_an_unreachable_store_names_the_file_and_the_store(shared: Path, monkeypatch) -> None:
    from testdata import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(object_store, "_OPEN", {})
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    target = shared / "episodes" / "demo__ep1" / "x.txt"
    with pytest.raises(object_store.StoreError, match=r"could not upload .*x\.txt to s3://"):
        atomic.write_text(target, "x")
    fsspec.filesystem("s3").clear_instance_cache()


@pytest.mark.slow
def test_an_empty_home_builds_the_series_outputs_from_the_store(s3, shared: Path,
                                                                 demo_episode) -> None:
    """One machine runs an episode to its clips; a second one with an empty home and the
    same store builds the splits and the exports: it fetches the tables and every clip WAV
    it exports, and its exports land in the store too."""
    import dagster as dg
    from test_exports import _to_inbox

    from voice_assets.definitions import all_assets, all_checks, episode_assets, series_assets
    from voice_assets.partitions import episodes
    from voice_assets.paths import Layout
    from voice_assets.resources import default_resources
    from voice_assets.review.corrections import load_table

    layout = Layout(shared)
    key = _to_inbox(demo_episode, layout.inbox, "demo")
    cast = layout.inbox / "demo" / "characters.yaml"
    cast.write_text("characters:\n  - name: Joe\n    aliases: [Joseph]\n  - Grace\n  - Rex\n")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(episodes.name, [key])
    defs = [*all_assets, *all_checks]
    r = dg.materialize(defs, selection=episode_assets, partition_key=key, instance=instance,
                       resources=default_resources(layout), raise_on_error=False)
    assert r.success, [e.event_specific_data for e in r.all_events if e.is_failure]
    clips = load_table(layout.database, "clips").filter(pl.col("keep"))
    assert clips.height > 0
    made = {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest()
            for p in clips["audio_path"]}

    for folder in ("episodes", "tables", "inbox"):  # the second machine: nothing local
        shutil.rmtree(shared / folder)
    r = dg.materialize(defs, selection=series_assets, instance=instance,
                       resources=default_resources(layout), raise_on_error=False)
    assert r.success, [e.event_specific_data for e in r.all_events if e.is_failure]
    fetched = {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest()
               for p in clips["audio_path"] if Path(p).exists()}
    assert fetched == made  # every kept clip came back, byte for byte
    assert cast.is_file()  # the series' cast, uploaded at ingest, read by the registry
    registry = load_table(layout.database, "character_registry")
    assert "Joseph" in registry.filter(pl.col("character") == "Joe")["aliases"].to_list()[0]
    exported = [p for p in (layout.exports / "demo").rglob("*.wav")]
    assert exported
    fs = s3.filesystem()
    assert all(fs.exists(_key(s3, shared, p)) for p in exported[:20])
