"""Conventions every asset shares: table metadata, PNG metadata, progress logging."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from voice_assets.automation import series_rebuild
from voice_assets.distributed import GPU_STAGE_TAGS
from voice_assets.instance_config import LABEL_STUDIO_POOL, MODELS_POOL, SERIES_POOL
from voice_assets.partitions import episodes

# Every per-episode table has an `episode` column; the DuckDB IO manager replaces that slice.
EPISODE_TABLE: dict[str, str] = {"partition_expr": "episode"}

episode_asset_kwargs: dict = {"partitions_def": episodes, "metadata": EPISODE_TABLE}
# A per-episode asset that runs a neural network over the whole episode: these share the
# machine's model slots (voice_assets/instance_config.py).
model_asset_kwargs: dict = {**episode_asset_kwargs, "pool": MODELS_POOL,
                             "op_tags": GPU_STAGE_TAGS}
# Cross-episode outputs rebuilt from every episode: kept current by declarative automation,
# once per batch of episode runs (voice_assets/automation.py), one rebuild at a time.
series_asset_kwargs: dict = {"automation_condition": series_rebuild(), "pool": SERIES_POOL}
review_asset_kwargs: dict = {**episode_asset_kwargs, "pool": LABEL_STUDIO_POOL}

COLUMN_SCHEMA = "dagster/column_schema"


def table_schema(
    schema: Mapping[str, pl.DataType], descriptions: Mapping[str, str], *, strict: bool = True
) -> dg.TableSchema:
    """The catalog's column schema of a table: each column's polars type and what it holds.

    The one place a ``dg.TableSchema`` is built, both at definition time (from the schema and
    descriptions the domain module declares side by side) and for each materialization (from
    the frame written, with the declared descriptions). ``strict``: every column needs a
    description and every description a column, so the two declarations cannot drift apart.
    """
    if strict:
        missing = [c for c in schema if not (descriptions.get(c) or "").strip()]
        unknown = [c for c in descriptions if c not in schema]
        if missing or unknown:
            raise ValueError(f"column descriptions do not match the table schema: undescribed "
                             f"{missing or 'none'}, not in the schema {unknown or 'none'}")
    return dg.TableSchema(columns=[
        dg.TableColumn(name, str(dtype), description=descriptions.get(name) or None)
        for name, dtype in schema.items()
    ])


def table_metadata(
    schema: Mapping[str, pl.DataType], descriptions: Mapping[str, str],
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Definition metadata of a table asset: ``metadata`` plus its column schema, so the
    catalog lists the columns before anything runs (the IO manager reuses the descriptions
    for each materialization's schema)."""
    return {**(metadata or {}), COLUMN_SCHEMA: table_schema(schema, descriptions)}


def table_asset_kwargs(
    kwargs: Mapping[str, Any], schema: Mapping[str, pl.DataType], descriptions: Mapping[str, str]
) -> dict[str, Any]:
    """``kwargs`` (e.g. episode_asset_kwargs) with the table's column schema in its metadata."""
    return {**kwargs, "metadata": table_metadata(schema, descriptions, kwargs.get("metadata"))}


def declared_descriptions(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """column -> description from an asset's definition metadata ({} when it declares none)."""
    value = (metadata or {}).get(COLUMN_SCHEMA)
    schema = value.schema if isinstance(value, dg.TableSchemaMetadataValue) else value
    if not isinstance(schema, dg.TableSchema):
        return {}
    return {c.name: c.description for c in schema.columns if c.description}


# Metadata is read by people: floats get this many decimals (three significant digits below 1,
# so a small ratio keeps its size). Table values are never rounded, only what the UI shows.
METADATA_DECIMALS = 3


def round_float(x: float, decimals: int = METADATA_DECIMALS) -> float:
    """``x`` to ``decimals`` places, or to ``decimals`` significant digits when below 1
    (55.65823129 -> 55.658, 0.0125673 -> 0.0126); NaN, inf and 0 as they are."""
    x = float(x)
    if not math.isfinite(x) or x == 0.0:
        return x
    places = max(decimals, decimals - 1 - math.floor(math.log10(abs(x))))
    return round(x, places)


def _rounded(value: Any, decimals: int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float | np.floating):
        return round_float(value, decimals)
    if isinstance(value, dg.FloatMetadataValue):
        return value if value.value is None else dg.MetadataValue.float(
            round_float(value.value, decimals))
    if isinstance(value, dg.JsonMetadataValue):
        return dg.MetadataValue.json(_rounded(value.data, decimals))
    if isinstance(value, dg.MetadataValue):  # text, paths, markdown, tables: as they are
        return value
    if isinstance(value, Mapping):
        return {k: _rounded(v, decimals) for k, v in value.items()}
    if type(value) in (list, tuple):  # not records (tuples underneath) such as TableSchema
        return [_rounded(v, decimals) for v in value]
    return value


def round_metadata(
    metadata: Mapping[str, Any], decimals: int = METADATA_DECIMALS,
    precise: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Asset or check metadata with its floats rounded for people (see round_float): plain and
    numpy floats, ``MetadataValue.float`` and floats inside dicts, lists and JSON values.
    ``precise``: key -> decimals for the few values whose later digits matter (a time-map
    scale near 1)."""
    precise = precise or {}
    return {k: _rounded(v, precise.get(k, decimals)) for k, v in metadata.items()}


def png_md(png: bytes, alt: str = "figure") -> dg.MetadataValue:
    """Inline a PNG as markdown metadata, which the Dagster UI renders as a picture."""
    data = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def md_table(df: pl.DataFrame, floats: int = 2) -> str:
    """A markdown table of a small frame, for asset metadata (the UI renders it)."""
    if df.is_empty():
        return "(none)"
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.{floats}f}"
        return "" if v is None else str(v).replace("|", "\\|")
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "\n".join("| " + " | ".join(cell(v) for v in r) + " |" for r in df.iter_rows())
