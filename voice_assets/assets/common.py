"""Conventions every asset shares: table metadata, PNG metadata, progress logging."""

from __future__ import annotations

import base64
from typing import Any

import dagster as dg
import polars as pl

from voice_assets.automation import series_rebuild
from voice_assets.instance_config import LABEL_STUDIO_POOL, MODELS_POOL, SERIES_POOL
from voice_assets.partitions import episodes

# Every per-episode table has an `episode` column; the DuckDB IO manager replaces that slice.
EPISODE_TABLE: dict[str, str] = {"partition_expr": "episode"}

episode_asset_kwargs: dict = {"partitions_def": episodes, "metadata": EPISODE_TABLE}
# A per-episode asset that runs a neural network over the whole episode: these share the
# machine's model slots (voice_assets/instance_config.py).
model_asset_kwargs: dict = {**episode_asset_kwargs, "pool": MODELS_POOL}
# Cross-episode outputs rebuilt from every episode: kept current by declarative automation,
# once per batch of episode runs (voice_assets/automation.py), one rebuild at a time.
series_asset_kwargs: dict = {"automation_condition": series_rebuild(), "pool": SERIES_POOL}
review_asset_kwargs: dict = {**episode_asset_kwargs, "pool": LABEL_STUDIO_POOL}


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
