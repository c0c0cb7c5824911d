"""series_automation: the sensor that evaluates the series assets' automation conditions.

It runs in the code server (``use_user_code_server``) because the condition also asks the
inbox whether files are still arriving (voice_assets/automation.py). On by default, like the
inbox sensor: a dropped season should end in datasets with no clicks.
"""

import warnings

import dagster as dg

INTERVAL_S = 30


def series_automation_sensor(target: dg.AssetSelection) -> dg.AutomationConditionSensorDefinition:
    with warnings.catch_warnings():  # use_user_code_server is a beta parameter
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _sensor(target)


def _sensor(target: dg.AssetSelection) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "series_automation",
        target=target,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=INTERVAL_S,
        use_user_code_server=True,
        description="Rebuilds splits, emotion tags, exports, cards and the character registry "
        "once after a batch of episode runs (or corrections) finishes and the inbox is quiet.",
    )
