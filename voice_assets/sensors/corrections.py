"""label_studio_corrections_sensor: human corrections come back and re-materialize dependents.

Each tick polls Label Studio for annotations created or updated since the cursor and appends
them to the corrections table (and confirmed names). It then requests, per affected episode, one
run of utterances and every episode-partitioned asset downstream of it (clips, ...), tagged with
the correction ids. The series-level outputs (splits, exports, cards) follow by declarative
automation once those runs finish (voice_assets/automation.py), as they do for new episodes.
Review tasks are not re-pushed (no loop back into Label Studio).

Label Studio down, slow or answering 401, or the database busy: a SkipReason that says so and
the cursor stays where it was; nothing is lost, the next tick catches up.
"""

import dagster as dg

from voice_assets.assets.human_input import CORRECTIONS, SPEAKER_NAMES
from voice_assets.errors import ServiceUnavailableError
from voice_assets.partitions import episodes
from voice_assets.resources.label_studio import LabelStudioResource
from voice_assets.resources.storage import StorageResource
from voice_assets.review.corrections import DatabaseBusyError
from voice_assets.review.pull import pull_corrections
from voice_assets.sensors.selection import episode_assets_of

TAG_CORRECTION_IDS = "voice_assets/correction_ids"
TAG_CORRECTION_BATCH = "voice_assets/correction_batch"
TAG_TRIGGER = "voice_assets/trigger"
MAX_TAG_CHARS = 2000

# utterances and every episode asset downstream of it, except the review group (no push-back
# loop). from_string tolerates a code location where utterances is not defined (yet).
CORRECTED_ASSETS = dg.AssetSelection.from_string('key:"utterances"').downstream() - (
    dg.AssetSelection.groups("review", "voices")
)


def _ids_tag(ids: list[str]) -> str:
    text = ",".join(ids)
    if len(text) <= MAX_TAG_CHARS:
        return text
    kept, size = [], 0
    for cid in ids:
        if size + len(cid) + 1 > MAX_TAG_CHARS - 20:
            break
        kept.append(cid)
        size += len(cid) + 1
    return ",".join(kept) + f",+{len(ids) - len(kept)} more"


@dg.sensor(
    name="label_studio_corrections_sensor",
    target=CORRECTED_ASSETS,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Pull human corrections from Label Studio; re-materialize what depends on them.",
)
def label_studio_corrections_sensor(
    context: dg.SensorEvaluationContext,
    label_studio: LabelStudioResource,
    storage: StorageResource,
) -> dg.SensorResult | dg.SkipReason:
    try:
        client = label_studio.client()
        pulled = pull_corrections(client, storage.layout.database, context.cursor)
    except ServiceUnavailableError as exc:
        return dg.SkipReason(f"{exc}. Cursor unchanged; the next tick catches up.")
    except DatabaseBusyError as exc:
        return dg.SkipReason(f"corrections not recorded yet: {exc}. Cursor unchanged.")
    cursor = pulled.cursor
    partitioned = episode_assets_of(context, CORRECTED_ASSETS)
    requests = []
    # Names (and their scope) reach utterances through the character map, which
    # character_names_sensor re-materializes for every episode the name changes.
    name_only = {
        r["correction_id"] for r in pulled.rows if r["field"] in ("speaker_name", "speaker_scope")
    }
    for episode, all_ids in sorted(pulled.by_episode.items()):
        ids = [i for i in all_ids if i not in name_only]
        if not ids:
            continue
        if not context.instance.has_dynamic_partition(str(episodes.name), episode):
            context.log.warning(
                f"{len(ids)} correction(s) of unknown episode partition '{episode}' recorded; "
                "no run requested"
            )
            continue
        if partitioned is not None and not partitioned:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"corrections:{episode}:{pulled.batch_id}",
                partition_key=episode,
                asset_selection=partitioned,
                tags={
                    TAG_CORRECTION_IDS: _ids_tag(ids),
                    TAG_CORRECTION_BATCH: str(pulled.batch_id),
                    TAG_TRIGGER: "label_studio_corrections",
                },
            )
        )
    if pulled.rows:
        context.log.info(
            f"recorded {pulled.n_new_rows} new correction(s) from {pulled.n_annotations} "
            f"annotation(s) (batch {pulled.batch_id}); {pulled.n_names} confirmed name(s); "
            f"requesting {len(requests)} episode run(s)"
        )
    events = []
    if pulled.n_new_rows:
        events.append(dg.AssetMaterialization(
            asset_key=CORRECTIONS,
            description="corrections recorded from Label Studio",
            metadata={"new_rows": pulled.n_new_rows, "annotations": pulled.n_annotations,
                      "batch": str(pulled.batch_id), "episodes": len(pulled.by_episode)}))
    if pulled.n_names:
        events.append(dg.AssetMaterialization(
            asset_key=SPEAKER_NAMES,
            description="speaker names recorded from Label Studio",
            metadata={"new_names": pulled.n_names, "batch": str(pulled.batch_id)}))
    if requests or events:
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump(), asset_events=events)
    why = (
        f"{pulled.n_annotations} new annotation(s), no field changed"
        if pulled.n_annotations
        else "no new annotations"
    )
    return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=cursor.dump())
