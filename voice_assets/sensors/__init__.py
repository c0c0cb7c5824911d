"""Sensors: the inbox watcher and the Label Studio corrections puller."""

from __future__ import annotations

import dagster as dg


def all_sensors() -> list[dg.SensorDefinition]:
    """Every sensor of the code location (imported lazily to keep definitions cheap)."""
    return []
