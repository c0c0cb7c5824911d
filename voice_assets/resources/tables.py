"""The IO managers for polars tables: DuckDB (embedded default) or Parquet files (many writers).

dagster-duckdb-polars skips empty frames (so an episode without subtitles never creates its
table and downstream reads fail) and loads through an API duckdb 2 removed. This handler
always creates the table, inserts by column name, and adds columns that new code introduces,
so re-materializing after an upgrade does not need a manual migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager

from voice_assets import object_store, parquet_store
from voice_assets.assets.common import declared_descriptions, table_schema
from voice_assets.diskspace import as_disk_full
from voice_assets.review.corrections import check_database


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _storable(frame: pl.DataFrame) -> pl.DataFrame:
    """All-null columns of unknown type are stored as text rather than DuckDB's NULL type."""
    nulls = [c for c, t in frame.schema.items() if t == pl.Null]
    return frame.with_columns(pl.col(nulls).cast(pl.String)) if nulls else frame


class PolarsTableHandler(DbTypeHandler[pl.DataFrame]):
    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection
    ) -> None:
        try:
            self._write(context, table_slice, obj, connection)
        except duckdb.Error as exc:
            database = connection.execute("select path from duckdb_databases() "
                                          "where database_name = current_database()").fetchone()
            full = as_disk_full(exc, database[0] if database and database[0] else ".")
            if full is None:
                raise
            raise full from exc

    def _write(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection
    ) -> None:
        frame = _storable(obj)
        obj_arrow = frame.to_arrow()  # noqa: F841  (referenced by name in the SQL below)
        table = f"{_quoted(table_slice.schema)}.{_quoted(table_slice.table)}"
        connection.execute(f"create schema if not exists {_quoted(table_slice.schema)}")
        connection.execute(f"create table if not exists {table} as select * from obj_arrow limit 0")
        existing = {row[0] for row in connection.execute(f"describe {table}").fetchall()}
        for name, dtype, *_ in connection.execute("describe select * from obj_arrow").fetchall():
            if name not in existing:
                connection.execute(f"alter table {table} add column {_quoted(name)} {dtype}")
        if not frame.is_empty():
            connection.execute(f"insert into {table} by name select * from obj_arrow")
        # The columns as stored, described as the asset declares them (definition metadata).
        described = declared_descriptions(context.definition_metadata)
        context.add_output_metadata(
            {
                "row_count": frame.height,
                "dagster/column_schema": table_schema(frame.schema, described, strict=False),
            }
        )

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection
    ) -> pl.DataFrame:
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pl.DataFrame()
        query = DuckDbClient.get_select_statement(table_slice=table_slice)
        return pl.from_arrow(connection.sql(query).to_arrow_table())  # type: ignore[return-value]

    @property
    def supported_types(self) -> Sequence[type]:
        return [pl.DataFrame]


class DuckDBTablesIOManager(DuckDBIOManager):
    """Reads and writes polars DataFrames as DuckDB tables, one slice per episode partition.

    A tables file that cannot be opened fails the run at once with what to do, instead of
    after the client's ~100 s of connection retries meant for a briefly locked file."""

    def create_io_manager(self, context):  # -> DbIOManager
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        check_database(self.database)
        return super().create_io_manager(context)

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTableHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame


class ParquetTablesIOManager(dg.ConfigurableIOManager):
    """Reads and writes polars DataFrames as Parquet files, one per partition
    (``voice_assets/parquet_store.py``): steps on many machines write their own files at
    once, with no database lock between them."""

    root: str

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        root, table = Path(self.root), context.asset_key.path[-1]
        frame = _storable(obj)
        if not context.has_asset_partitions:
            parts: dict[str | None, pl.DataFrame] = {None: frame}
        elif len(context.asset_partition_keys) == 1:
            parts = {context.asset_partition_keys[0]: frame}
        else:  # a run over several partitions: each its rows, by the partition column
            column = str(context.definition_metadata["partition_expr"])
            parts = {k: frame.filter(pl.col(column) == k) for k in context.asset_partition_keys}
        for key, part in parts.items():  # a full disk is named by the atomic write
            parquet_store.write_file(parquet_store.partition_file(root, table, key), part)
        described = declared_descriptions(context.definition_metadata)
        context.add_output_metadata({
            "row_count": frame.height,
            "dagster/column_schema": table_schema(frame.schema, described, strict=False),
        })

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = context.asset_key.path[-1]
        if not context.has_asset_partitions:
            frame = parquet_store.read(Path(self.root), table)
        else:
            keys = list(context.asset_partition_keys)
            frame = parquet_store.read(Path(self.root), table, keys) if keys else pl.DataFrame()
        fetched = object_store.ensure_local(
            v for c in frame.columns if c.endswith("_path") for v in frame[c].to_list())
        if fetched:
            context.log.info(f"{table}: fetched {fetched} file(s) from the shared store")
        return frame


def tables_io_manager(database: Path) -> dg.IOManagerDefinition | dg.ConfigurableIOManager:
    """The IO manager for the tables location: a DuckDB file or a Parquet folder."""
    if object_store.current() is not None and not parquet_store.is_parquet(database):
        raise ValueError(f"{object_store.STORE_ENV} shares the store between machines, but "
                         "one DuckDB file cannot be: set VOICE_ASSETS_TABLES=parquet too")
    if parquet_store.is_parquet(database):
        return ParquetTablesIOManager(root=str(database))
    return DuckDBTablesIOManager(database=str(database), schema="voice_assets")
