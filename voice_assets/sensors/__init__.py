"""Sensors: the inbox watcher, the Label Studio corrections puller, character re-mapping, new
characters' voice models, and the automation sensor that keeps the series outputs current."""

from __future__ import annotations

import dagster as dg


def all_sensors(series_assets: dg.AssetSelection) -> list[dg.SensorDefinition]:
    """Every sensor of the code location (imported lazily to keep definitions cheap)."""
    from voice_assets.sensors.automation import series_automation_sensor
    from voice_assets.sensors.characters import character_names_sensor
    from voice_assets.sensors.corrections import label_studio_corrections_sensor
    from voice_assets.sensors.inbox import inbox_sensor
    from voice_assets.sensors.voices import voice_models_sensor

    return [inbox_sensor, label_studio_corrections_sensor, character_names_sensor,
            series_automation_sensor(series_assets), voice_models_sensor]
