"""Conventions every asset shares: table metadata, PNG metadata, progress logging."""

from __future__ import annotations

import base64

import dagster as dg

from voice_assets.partitions import episodes

# Every per-episode table has an `episode` column; the DuckDB IO manager replaces that slice.
EPISODE_TABLE: dict[str, str] = {"partition_expr": "episode"}

episode_asset_kwargs: dict = {"partitions_def": episodes, "metadata": EPISODE_TABLE}


def png_md(png: bytes, alt: str = "figure") -> dg.MetadataValue:
    """Inline a PNG as markdown metadata, which the Dagster UI renders as a picture."""
    data = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")
