"""voice_models_sensor: a new series character becomes a `characters` partition.

Each tick reads ``voice_readiness`` (no model runs), adds a partition for every character it
lists, and requests ``voice_models`` for characters that are ready for the configured
trainer and have no model yet. It only requests: training and its writes belong to the asset.
"""

from pathlib import Path

import dagster as dg
import polars as pl

from voice_assets.partitions import characters
from voice_assets.resources.storage import StorageResource
from voice_assets.resources.voice_trainer import VoiceTrainerResource
from voice_assets.review.corrections import DatabaseBusyError, load_table

READINESS_TABLE = "voice_readiness"


def load_readiness(database: Path) -> pl.DataFrame:
    """Materialized ``voice_readiness`` rows, empty before the first."""
    return load_table(database, READINESS_TABLE)


@dg.sensor(
    name="voice_models_sensor",
    asset_selection=dg.AssetSelection.assets("voice_models"),
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Add a `characters` partition for each character voice_readiness lists and "
    "train the ready ones that have no model yet (off by default: training takes hours).",
)
def voice_models_sensor(context: dg.SensorEvaluationContext, storage: StorageResource,
                        voice_trainer: VoiceTrainerResource
                        ) -> dg.SensorResult | dg.SkipReason:
    try:
        df = load_readiness(storage.layout.database)
    except DatabaseBusyError as exc:
        return dg.SkipReason(f"tables busy: {exc}")
    if df.is_empty():
        return dg.SkipReason("voice_readiness has not been materialized yet")
    known = set(context.instance.get_dynamic_partitions(characters.name))
    keys = sorted(set(df["key"].to_list()))
    new = [k for k in keys if k not in known]
    ready = set(df.filter(pl.col("ready") & (pl.col("trainer") == voice_trainer.backend))
                ["key"].to_list())
    # One run key per character: a character is trained once, whatever later ticks see.
    requests = [dg.RunRequest(partition_key=k, run_key=f"voice_models:{k}")
                for k in keys if k in ready]
    if not new and not requests:
        return dg.SkipReason(f"{len(keys)} characters, none new or newly ready")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[characters.build_add_request(new)] if new else [],
    )
