"""Sensors: the inbox watcher and the Label Studio corrections puller."""

from __future__ import annotations

import dagster as dg


def all_sensors() -> list[dg.SensorDefinition]:
    """Every sensor of the code location (imported lazily to keep definitions cheap)."""
    from voice_assets.sensors.corrections import label_studio_corrections_sensor
    from voice_assets.sensors.inbox import inbox_sensor

    return [inbox_sensor, label_studio_corrections_sensor]
