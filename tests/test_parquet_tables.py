"""Parquet tables (VOICE_ASSETS_TABLES=parquet): one file per partition written by the real IO
manager, ledgers that only ever gain part files, and writers in separate processes at once."""


import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from voice_assets import parquet_store
from voice_assets.errors import CorruptTableFileError
from voice_assets.paths import Layout
from voice_assets.resources.tables import (
    DuckDBTablesIOManager,
    ParquetTablesIOManager,
    tables_io_manager,
)
from voice_assets.review.corrections import (
    check_database,
    load_corrections,
    load_table,
    record_corrections,
)

episodes = dg.StaticPartitionsDefinition(["demo__e1", "demo__e2", "demo__e3"])


class Rows(dg.Config):
    extra_column: bool = False


@dg.asset(partitions_def=episodes, metadata={"partition_expr": "episode"})
def lines(context: dg.AssetExecutionContext, config: Rows) -> pl.DataFrame:
    key = context.partition_key
    df = pl.DataFrame({"episode": [key] * 3, "n": [1, 2, 3]})
    return df.with_columns(pl.lit(f"{key}!").alias("note")) if config.extra_column else df


@dg.asset(ins={"lines": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
def totals(lines: pl.DataFrame) -> pl.DataFrame:
    return lines.group_by("episode").agg(pl.col("n").sum()).sort("episode")


def _materialize(root: Path, key: str, extra: bool = False) -> None:
    result = dg.materialize([lines], partition_key=key, resources={
        "io_manager": ParquetTablesIOManager(root=str(root))},
        run_config={"ops": {"lines": {"config": {"extra_column": extra}}}})
    assert result.success


def test_each_partition_is_one_file_replaced_whole(tmp_path: Path):
    root = tmp_path / "tables"
    _materialize(root, "demo__e1")
    first = parquet_store.partition_file(root, "lines", "demo__e1")
    content = first.read_bytes()
    _materialize(root, "demo__e1")  # again: the same file, not a second copy of the rows
    assert first.read_bytes() == content
    _materialize(root, "demo__e2", extra=True)  # new code adds a column in a later partition
    assert sorted(p.name for p in (root / "lines").iterdir()) == [
        "p=demo__e1.parquet", "p=demo__e2.parquet"]
    result = dg.materialize([lines, totals], selection=[totals], resources={
        "io_manager": ParquetTablesIOManager(root=str(root))})
    assert result.success
    assert result.output_for_node("totals").to_dicts() == [
        {"episode": "demo__e1", "n": 6}, {"episode": "demo__e2", "n": 6}]
    # DuckDB reads the same files (what sensors and the CLI use), earlier rows null-padded.
    df = load_table(root, "lines").sort("episode", "n")
    assert df.height == 6 and df["note"].to_list() == [None] * 3 + ["demo__e2!"] * 3
    assert load_table(root, "lines", "episode = ?", ["demo__e2"]).height == 3
    assert load_table(root, "nothing_yet").is_empty()
    check_database(root)  # a folder of whole files: nothing to check, no error


def _corrections(ids: range, episode: str = "demo__e1") -> list[dict]:
    now = datetime(2026, 12, 1, 10, 0, 0)
    return [{"correction_id": f"{episode}-c{n:04d}", "batch_id": "b", "episode": episode,
             "series": "demo", "project_kind": "utterance_review", "task_id": n,
             "task_key": f"t{n}", "annotation_id": 1000 + n, "annotator": "tester",
             "annotated_at": now, "recorded_at": now, "utterance_id": f"{episode}_{n:08d}",
             "speaker": "SPK_00", "start": float(n), "end": n + 1.0, "spans": None,
             "field": "text", "old_value": "a", "new_value": f"line {n}"} for n in ids]


def test_the_corrections_ledger_only_gains_part_files(tmp_path: Path):
    root = tmp_path / "tables"
    assert record_corrections(root, _corrections(range(0, 10))) == 10
    (part,) = (root / "corrections").iterdir()
    kept = part.read_bytes()
    # Overlapping rows: only the new ones are stored, in a second file; the first is untouched.
    assert record_corrections(root, _corrections(range(5, 15))) == 5
    assert len(list((root / "corrections").iterdir())) == 2 and part.read_bytes() == kept
    assert record_corrections(root, _corrections(range(0, 15))) == 0
    assert len(list((root / "corrections").iterdir())) == 2
    df = load_corrections(root, "demo__e1")
    assert df["correction_id"].to_list() == [f"demo__e1-c{n:04d}" for n in range(15)]


def _record(root: str, start: int, episode: str) -> int:
    return record_corrections(Path(root), _corrections(range(start, start + 50), episode))


def test_writers_in_separate_processes_lose_nothing(tmp_path: Path):
    """Five processes append at once (a DuckDB file would make them take turns), one of them
    rows that two others also write: every row is there exactly once."""
    root = tmp_path / "tables"
    jobs = [(str(root), 0, "demo__e1"), (str(root), 0, "demo__e2"), (str(root), 50, "demo__e1"),
            (str(root), 50, "demo__e2"), (str(root), 25, "demo__e1")]
    # An executor, not multiprocessing.Pool: a worker that dies raises BrokenProcessPool here
    # instead of leaving the test waiting forever for its task.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=5, mp_context=spawn) as pool:
        stored = list(pool.map(_record, *zip(*jobs, strict=True), timeout=300))
    assert sum(stored) >= 200
    df = load_corrections(root)
    assert df.height == 200 and df["correction_id"].n_unique() == 200
    assert len(list((root / "corrections").iterdir())) == sum(n > 0 for n in stored)


def test_the_tables_location_follows_the_setting(tmp_path: Path, monkeypatch):
    layout = Layout(tmp_path)
    monkeypatch.delenv(parquet_store.TABLES_ENV, raising=False)
    assert layout.database == tmp_path / "tables.duckdb"
    assert not isinstance(tables_io_manager(layout.database), ParquetTablesIOManager)
    monkeypatch.setenv(parquet_store.TABLES_ENV, "parquet")
    assert layout.database == tmp_path / "tables"
    assert isinstance(tables_io_manager(layout.database), ParquetTablesIOManager)
    monkeypatch.setenv(parquet_store.TABLES_ENV, str(tmp_path / "shared"))
    assert layout.database == tmp_path / "shared"
    monkeypatch.setenv(parquet_store.TABLES_ENV, "s3://bucket/tables")
    with pytest.raises(ValueError, match=r"set VOICE_ASSETS_TABLES=parquet and "
                                         r"VOICE_ASSETS_STORE=s3://bucket/tables"):
        _ = layout.database


def test_moving_a_duckdb_store_to_parquet_loses_no_correction(tmp_path: Path):
    """The copy from the embedded DuckDB file: asset tables by partition, ledgers appended
    where rows are missing; copying again, after new corrections, adds nothing twice."""
    database, root = tmp_path / "tables.duckdb", tmp_path / "tables"
    for key in ("demo__e1", "demo__e2"):
        assert dg.materialize([lines], partition_key=key, resources={
            "io_manager": DuckDBTablesIOManager(database=str(database), schema="voice_assets")}
        ).success
    assert record_corrections(database, _corrections(range(0, 20))) == 20
    copied, left = parquet_store.copy_from_duckdb(database, root, {"lines": "episode"})
    assert copied == {"lines": 6, "corrections": 20} and left == []
    assert sorted(p.name for p in (root / "lines").iterdir()) == [
        "p=demo__e1.parquet", "p=demo__e2.parquet"]
    assert load_table(root, "lines").sort("episode", "n").equals(
        load_table(database, "lines").sort("episode", "n"))
    # A person labels more in the old store before the switch, and again in the new one.
    assert record_corrections(database, _corrections(range(20, 25))) == 5
    assert record_corrections(root, _corrections(range(25, 30))) == 5
    copied, _ = parquet_store.copy_from_duckdb(database, root, {"lines": "episode"})
    assert copied["corrections"] == 30
    df = load_corrections(root)
    assert df["correction_id"].to_list() == [f"demo__e1-c{n:04d}" for n in range(30)]
    assert len(list((root / "corrections").iterdir())) == 3  # copy, new labels, the rest


def test_migrate_says_when_another_process_holds_the_duckdb_file(tmp_path: Path):
    """`tables migrate` while a run or the daemon holds tables.duckdb: a clear error, no copy."""
    home = tmp_path / "home"
    home.mkdir()
    assert record_corrections(home / "tables.duckdb", _corrections(range(3))) == 3
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(home / 'tables.duckdb')!r})\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        cli = str(Path(sys.executable).with_name("voice-assets"))
        env = {**os.environ, "VOICE_ASSETS_HOME": str(home), parquet_store.TABLES_ENV: "parquet"}
        moved = subprocess.run([cli, "tables", "migrate"], env=env, capture_output=True,
                               text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert moved.returncode == 1
    assert "is in use by another process" in moved.stderr and "migrate again" in moved.stderr
    assert not (home / "tables").exists()


def test_a_damaged_table_file_is_named_with_the_way_back(tmp_path: Path):
    root = tmp_path / "tables"
    _materialize(root, "demo__e1")
    _materialize(root, "demo__e2")
    assert record_corrections(root, _corrections(range(3))) == 3
    damaged = parquet_store.partition_file(root, "lines", "demo__e2")
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(CorruptTableFileError, match=r"p=demo__e2.parquet is not a readable "
                       r"Parquet file .*`voice-assets run --episode demo__e2 --select lines`"):
        parquet_store.read(root, "lines")
    (part,) = (root / "corrections").iterdir()
    part.write_bytes(b"not parquet at all")
    with pytest.raises(CorruptTableFileError, match="corrections pull --all"):
        load_corrections(root)
