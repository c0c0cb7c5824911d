"""Tables as Parquet files that many writers on many machines can share; DuckDB queries them.

The embedded default keeps every table in one DuckDB file, which one process at a time may
write. With ``VOICE_ASSETS_TABLES=parquet`` (or a folder path, e.g. on a shared filesystem)
each table is a folder of Parquet files instead:

- an asset table has one file per partition (``<table>/p=<partition key>.parquet``) or, when
  unpartitioned, ``<table>/all.parquet``; a step replaces only its own file, atomically
  (written beside it, then renamed), so steps on different machines never wait for each other;
- a ledger (``corrections``, ``speaker_names``: people's input) is append-only: each write
  adds a part file (``<table>/part-<time>-<id>.parquet``) and no file is ever rewritten, so
  nothing a person gave is lost when two writers meet; rows are unique by ``correction_id``.

``connect`` gives readers and ledger writers an in-memory DuckDB with the same
``voice_assets.<table>`` names as the DuckDB file: views over the asset tables' files, and the
ledgers loaded as tables whose new rows become one part file when the connection closes
without error. The SQL that reads and appends is the same in both stores.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import duckdb
import polars as pl

from voice_assets import object_store
from voice_assets.atomic import atomic_path
from voice_assets.errors import CorruptTableFileError

SCHEMA = "voice_assets"
TABLES_ENV = "VOICE_ASSETS_TABLES"
LEDGERS = ("corrections", "speaker_names")  # append-only, unique by correction_id
ALL_ROWS = "all"  # the file of an unpartitioned table
# The embedded store's one file. Not "voice_assets.duckdb": DuckDB names the catalog after
# the file, which would clash with the schema "voice_assets".
DUCKDB_FILE = "tables.duckdb"


def tables_location(home: Path) -> Path:
    """Where the tables live: ``<home>/tables.duckdb`` (default), ``<home>/tables/`` for
    ``VOICE_ASSETS_TABLES=parquet``, or the folder that variable names."""
    value = os.environ.get(TABLES_ENV, "").strip()
    if value in ("", "duckdb"):
        return home / DUCKDB_FILE
    if value == "parquet":
        return home / "tables"
    if "://" in value:
        raise ValueError(f"{TABLES_ENV}={value!r}: for tables on an object store set "
                         f"{TABLES_ENV}=parquet and VOICE_ASSETS_STORE={value} (the store "
                         "machines share, tables included)")
    return Path(value).expanduser().resolve()


def is_parquet(location: str | Path) -> bool:
    """A tables location is Parquet unless it is a DuckDB file."""
    return Path(location).suffix != ".duckdb"


def partition_file(root: Path, table: str, partition: str | None) -> Path:
    """The file that holds one partition of a table (``all.parquet`` when unpartitioned);
    the key is percent-encoded, so any key names one file in the table's folder."""
    name = ALL_ROWS if partition is None else "p=" + quote(partition, safe="")
    return root / table / f"{name}.parquet"


def write_file(path: Path, frame: pl.DataFrame) -> None:
    """Write ``frame`` to ``path`` atomically: readers see the old file or the new, whole (the
    temp file lives in the run's scratch folder, or beside ``path`` with a leading dot, which
    no reader lists)."""
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.write_parquet(tmp)


def files(root: Path, table: str, partitions: Sequence[str] | None = None) -> list[Path]:
    """The table's files (of some partitions), sorted; temp files are not table files."""
    folder = root / table
    if partitions is not None:
        wanted = [partition_file(root, table, k) for k in partitions]
        store = object_store.current()  # files other machines wrote, or rewrote
        for path in wanted if store is not None else ():
            store.fetch(path, refresh=True)
        return [p for p in wanted if p.exists()]
    object_store.ensure_tree(folder)
    return _table_files(folder)


def _table_files(folder: Path) -> list[Path]:
    """The table files in ``folder`` as they are here, sorted; temp files are not."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def read(root: Path, table: str, partitions: Sequence[str] | None = None) -> pl.DataFrame:
    """Rows of a table's files; columns that later files added are null in earlier ones."""
    found = files(root, table, partitions)
    if not found:
        return pl.DataFrame()
    return pl.concat([_read_file(p) for p in found], how="diagonal_relaxed")


def _read_file(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise CorruptTableFileError(path, str(exc).splitlines()[0]) from exc


def _check_files(paths: Sequence[Path]) -> None:
    """Raise for the first unreadable file, naming it and the way back."""
    import pyarrow.parquet as pq

    for path in paths:
        try:
            pq.read_metadata(path)
        except (OSError, ValueError) as exc:
            raise CorruptTableFileError(path, str(exc).splitlines()[0]) from exc


def _sql_list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


@contextlib.contextmanager
def connect(root: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB over the store: ``voice_assets.<table>`` for every table; new
    ledger rows are written as part files when the block ends without error."""
    object_store.ensure_tree(root)  # every table file any machine wrote, current
    con = duckdb.connect()
    try:
        con.execute(f'CREATE SCHEMA "{SCHEMA}"')
        loaded: dict[str, int] = {}
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        for folder in folders:
            found = _table_files(folder)  # the whole store was fetched above
            if not found:
                continue
            scan = f"read_parquet({_sql_list(found)}, union_by_name = true)"
            name = f'"{SCHEMA}"."{folder.name}"'
            if folder.name in LEDGERS:  # a table, so the usual INSERTs append to it
                try:
                    con.execute(f"CREATE TABLE {name} AS SELECT * FROM {scan} "
                                "QUALIFY row_number() OVER (PARTITION BY correction_id "
                                "ORDER BY recorded_at) = 1")
                except duckdb.Error:
                    _check_files(found)  # names the damaged part and the way back
                    raise
                loaded[folder.name] = con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
            else:
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM {scan}")
        yield con
        for ledger in LEDGERS:
            _flush(con, root, ledger, loaded.get(ledger, 0))
    finally:
        con.close()


def _flush(con: duckdb.DuckDBPyConnection, root: Path, ledger: str, before: int) -> None:
    """The rows appended to ``ledger`` in this connection, as one new part file."""
    if not table_exists(con, ledger):
        return
    new = con.sql(f'SELECT * FROM "{SCHEMA}"."{ledger}" WHERE rowid >= {int(before)}').pl()
    if new.is_empty():
        return
    write_file(_new_part(root, ledger), new)


def _new_part(root: Path, ledger: str) -> Path:
    """A ledger part file's name: time first, so a listing is in order of writing."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return root / ledger / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"


def copy_from_duckdb(database: Path, root: Path, partition_columns: dict[str, str | None]
                     ) -> tuple[dict[str, int], list[str]]:
    """Copy the tables of a DuckDB tables file into the Parquet store at ``root``; returns the
    rows now in each copied table, and the tables left behind (neither an asset's nor a
    ledger). ``partition_columns`` names, per asset table, the column whose values are its
    partition keys (None: unpartitioned); ledgers gain only the rows they lack, as one part
    file, so a second copy adds nothing and loses nothing. The DuckDB file is only read."""
    copied: dict[str, int] = {}
    with duckdb.connect(str(database), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
            "ORDER BY table_name", [SCHEMA]).fetchall()]
        frames = {name: con.sql(f'SELECT * FROM "{SCHEMA}"."{name}"').pl() for name in names}
    for name, frame in frames.items():
        if name in LEDGERS:
            with connect(root) as store:  # the usual append: rows whose id is not there yet
                have = _ledger_ids(store, name)
                new = frame.filter(~pl.col("correction_id").is_in(have))
                if not new.is_empty():
                    write_file(_new_part(root, name), new)
            copied[name] = len(have) + new.height
        elif name in partition_columns:
            column = partition_columns[name]
            if column is None:
                write_file(partition_file(root, name, None), frame)
            else:
                for (key,), part in frame.group_by(column, maintain_order=True):
                    write_file(partition_file(root, name, str(key)), part)
            copied[name] = frame.height
    return copied, [n for n in names if n not in copied]


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``voice_assets.<table>`` exists in the connection's own database (a DuckDB
    file, or the in-memory one over Parquet files)."""
    found = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_catalog = "
                        "current_database() AND table_schema = ? AND table_name = ?",
                        [SCHEMA, table]).fetchall()
    return bool(found[0][0])


def _ledger_ids(con: duckdb.DuckDBPyConnection, ledger: str) -> list[str]:
    if not table_exists(con, ledger):
        return []
    return [r[0] for r in con.execute(f'SELECT correction_id FROM "{SCHEMA}"."{ledger}"')
            .fetchall()]
