"""The one Definitions object of the voice-assets code location."""

from __future__ import annotations

import dagster as dg

from voice_assets import assets as assets_package
from voice_assets.resources import default_resources
from voice_assets.sensors import all_sensors

all_assets = dg.load_assets_from_package_module(assets_package)
all_checks = dg.load_asset_checks_from_package_module(assets_package)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    sensors=all_sensors(),
    resources=default_resources(),
)
