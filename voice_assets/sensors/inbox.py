"""inbox_sensor: new or changed episodes in the inbox -> a partition and a run per episode.

Default status RUNNING: dropping a file into the inbox is this project's way of saying
"ingest this", so a user expects it to be picked up without first finding a switch in the UI;
an idle tick is one directory walk. Stop the sensor in the UI to pause ingestion.

Each run targets the `episode_pipeline` job (voice_assets/definitions.py): every asset
partitioned by `episodes`, collected from the assets package when the code location loads, so
assets added later are included automatically; the review push and the unpartitioned
series-wide outputs have jobs of their own.
"""

import dagster as dg

from voice_assets.inbox import REVISION_METADATA, STABLE_TICKS, plan_tick, scan_inbox
from voice_assets.partitions import episodes
from voice_assets.resources.storage import StorageResource

INTERVAL_S = 30
EPISODE_JOB = "episode_pipeline"  # defined in voice_assets/definitions.py


def _ingested_revision(context: dg.SensorEvaluationContext, key: str) -> str | None:
    return ingested_revision(context.instance, key)


def ingested_revision(instance: dg.DagsterInstance, key: str) -> str | None:
    """The inbox revision recorded by the last episode_media materialization of ``key``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("episode_media"), asset_partitions=[key]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get(REVISION_METADATA)
    return getattr(value, "value", None)


@dg.sensor(
    name="inbox_sensor",
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job_name=EPISODE_JOB,
    description=(
        "Watches $VOICE_ASSETS_HOME/inbox/<series>/ for episodes (video or audio + sidecar "
        f"subtitles). A file is ingested once its size and mtime have been unchanged for "
        f"{STABLE_TICKS} ticks ({STABLE_TICKS * INTERVAL_S} s or more), so files still being "
        "copied are left alone; a changed file (new content hash) is ingested again."
    ),
)
def inbox_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource
) -> dg.SensorResult:
    inbox = storage.layout.inbox
    scan = scan_inbox(inbox)
    known = set(context.instance.get_dynamic_partitions(str(episodes.name)))
    plan = plan_tick(
        context.cursor, scan, known, ingested_revision=lambda key: _ingested_revision(context, key)
    )
    for problem in plan.problems:
        context.log.warning(problem)
    run_requests = [
        dg.RunRequest(
            run_key=req.run_key,
            partition_key=req.key,
            tags={
                "voice_assets/source": str(req.path),
                "voice_assets/content_hash": req.media_hash,
                "voice_assets/reason": req.reason,
            },
        )
        for req in plan.requests
    ]
    for req in plan.requests:
        context.log.info("%s episode %s <- %s", req.reason, req.key, req.path)
    if plan.settling:
        context.log.info("waiting for %d file(s) to settle: %s", len(plan.settling),
                         ", ".join(plan.settling))
    if run_requests:
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=(
                [episodes.build_add_request(plan.new_partitions)] if plan.new_partitions else []
            ),
            cursor=plan.cursor,
        )
    reason = (
        "; ".join(plan.problems)
        if plan.problems
        else f"{len(plan.settling)} file(s) settling, {len(plan.unchanged)} unchanged"
        if scan.files
        else f"no episodes in {inbox}"
    )
    return dg.SensorResult(skip_reason=reason, cursor=plan.cursor)
