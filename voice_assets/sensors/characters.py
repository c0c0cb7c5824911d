"""character_names_sensor: re-map the episodes a new name, merge or split changes, and only those.

A name reaches a series voice from many places: a person in Label Studio, the subtitles of an
episode mapped later than another of the same voice, a reference clip. Each tick re-resolves
every linked speaker of each series from the voice ledger, the human names and the cast (no
model runs), compares that with the materialized ``character_map`` rows, and requests
``character_map`` and everything downstream of it for exactly the episodes whose names differ.
The run key is the episode plus the changes, so one change is requested once.
"""

import hashlib

import dagster as dg
import polars as pl

from voice_assets.assets.characters import human_names
from voice_assets.characters.cast import CastError, load_cast
from voice_assets.characters.mapping import expected_maps, stale_episodes
from voice_assets.characters.store import load_maps, read_ledger, read_references
from voice_assets.errors import VoiceAssetsError
from voice_assets.partitions import episodes
from voice_assets.resources.storage import StorageResource
from voice_assets.review.corrections import DatabaseBusyError
from voice_assets.sensors.selection import episode_assets_of

TAG_TRIGGER = "voice_assets/trigger"
TAG_CHANGES = "voice_assets/character_changes"

# The map and every per-episode asset downstream of it, but not the review push.
REMAPPED_ASSETS = dg.AssetSelection.from_string('key:"character_map"').downstream() - (
    dg.AssetSelection.groups("review", "voices")
)


@dg.sensor(
    name="character_names_sensor",
    target=REMAPPED_ASSETS,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-map the episodes whose character names changed (human names, merges, "
    "splits, names found in a later episode).",
)
def character_names_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource
) -> dg.SensorResult | dg.SkipReason:
    layout = storage.layout
    try:
        maps = load_maps(layout.database)
    except DatabaseBusyError as exc:
        return dg.SkipReason(f"tables busy: {exc}")
    if maps.is_empty():
        return dg.SkipReason("no character map materialized yet")
    selection = episode_assets_of(context, REMAPPED_ASSETS)
    requests: list[dg.RunRequest] = []
    problems: list[str] = []
    for series in sorted(set(maps["series"].to_list())):
        try:
            cast = load_cast(layout.inbox, series)
            expected = expected_maps(read_ledger(layout.home, series), cast,
                                     human_names(layout.database, series),
                                     read_references(layout.home, series))
        except (CastError, VoiceAssetsError) as exc:
            problems.append(str(exc))
            continue
        stale = stale_episodes(maps.filter(pl.col("series") == series), expected)
        for episode, changes in sorted(stale.items()):
            if not context.instance.has_dynamic_partition(str(episodes.name), episode):
                continue
            digest = hashlib.sha1("\n".join(changes).encode()).hexdigest()[:12]
            context.log.info(f"{episode}: {'; '.join(changes)}")
            requests.append(dg.RunRequest(
                run_key=f"character-names:{episode}:{digest}",
                partition_key=episode,
                asset_selection=selection,
                tags={TAG_TRIGGER: "character_names", TAG_CHANGES: "; ".join(changes)[:2000]},
            ))
    for p in problems:
        context.log.error(p)
    if requests:
        return dg.SensorResult(run_requests=requests)
    why = "every character map is current"
    if problems:
        why += f"; {len(problems)} series could not be checked: " + " | ".join(problems)
    return dg.SkipReason(why)
