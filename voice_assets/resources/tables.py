"""The DuckDB IO manager for polars tables, made safe for empty frames and schema growth.

dagster-duckdb-polars skips empty frames (so an episode without subtitles never creates its
table and downstream reads fail) and loads through an API duckdb 2 removed. This handler
always creates the table, inserts by column name, and adds columns that new code introduces,
so re-materializing after an upgrade does not need a manual migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import polars as pl
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager


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
        context.add_output_metadata(
            {
                "row_count": frame.height,
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=n, type=str(t)) for n, t in frame.schema.items()]
                ),
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
    """Reads and writes polars DataFrames as DuckDB tables, one slice per episode partition."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTableHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame
