"""The episode-partitioned assets of a sensor's selection, resolved against its code location."""

import dagster as dg

from voice_assets.partitions import episodes


def episode_assets_of(context: dg.SensorEvaluationContext,
                      selection: dg.AssetSelection) -> list[dg.AssetKey] | None:
    """The keys of ``selection`` partitioned by episode, sorted by name; None when the sensor
    runs without its repository (the sensor's target then decides)."""
    try:
        graph = context.repository_def.asset_graph  # type: ignore[union-attr]
    except (dg.DagsterInvariantViolationError, AttributeError):
        return None
    keys = selection.resolve(graph, allow_missing=True)
    return sorted((k for k in keys if graph.get(k).partitions_def == episodes),
                  key=lambda k: k.to_user_string())
