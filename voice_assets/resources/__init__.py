"""ConfigurableResources that wrap models and services, and the default set."""

from __future__ import annotations

from typing import Any

from dagster_duckdb_polars import DuckDBPolarsIOManager

from voice_assets.paths import Layout
from voice_assets.resources.storage import StorageResource


def default_resources(layout: Layout | None = None) -> dict[str, Any]:
    """The resources the code location runs with, rooted at $VOICE_ASSETS_HOME."""
    layout = layout or Layout.from_env()
    return {
        "io_manager": DuckDBPolarsIOManager(database=str(layout.database), schema="voice_assets"),
        "storage": StorageResource(home=str(layout.home)),
    }
