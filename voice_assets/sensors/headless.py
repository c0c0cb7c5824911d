"""One tick of a sensor without the daemon: `voice-assets corrections pull`.

The daemon (`voice-assets ui`, `watch` or `daemon`) ticks every sensor on its own. A headless
machine or a cron job can instead tick the Label Studio sensors once: the same sensor code
records the corrections and names, its asset events go to the instance (so the lineage shows
the human input as the daemon would), and the runs it requests execute here, in process.

The CLI keeps its own cursor per sensor in a file; pulling is idempotent (corrections are
appended by id), so the daemon and the CLI never lose or double a label between them.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from voice_assets.atomic import write_text


@dataclass
class Tick:
    sensor: str
    skipped: str | None = None
    events: int = 0
    runs: list[tuple[str, str, bool]] = field(default_factory=list)  # (partition, run id, ok)

    @property
    def ok(self) -> bool:
        return all(ok for _, _, ok in self.runs)


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _job_for(defs: dg.Definitions, keys: list[dg.AssetKey]) -> dg.JobDefinition:
    """A job that holds every key: the project's own (the episode pipeline for correction
    re-runs), else the implicit asset job Dagster builds for them."""
    for job in defs.resolve_all_job_defs():
        if not job.name.startswith("__") and set(keys) <= set(
                job.asset_layer.executable_asset_keys):
            return job
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    if job is None:
        raise dg.DagsterInvariantViolationError(f"no job holds {keys}")
    return job


def tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sensor_name: str,
    cursor_file: Path,
    run_config: dict | None = None,
) -> Tick:
    """Evaluate ``sensor_name`` once with the CLI's cursor, record its asset events, execute
    the runs it requests, and keep its new cursor only when every one of them succeeded (a
    failed run is requested again by the next pull)."""
    sensor = defs.resolve_sensor_def(sensor_name)
    cursors = _load(cursor_file)
    with dg.build_sensor_context(
        instance=instance, cursor=cursors.get(sensor_name), definitions=defs,
        resources=defs.resources,
    ) as context:
        result = sensor(context)
    out = Tick(sensor_name)
    if isinstance(result, dg.SkipReason):
        out.skipped = result.skip_message or "skipped"
        return out
    if result is None:
        out.skipped = "nothing to do"
        return out
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)
        out.events += 1
    if result.skip_reason is not None and not result.run_requests:
        out.skipped = result.skip_reason.skip_message or "nothing to do"
    for request in result.run_requests or []:
        keys = list(request.asset_selection or [])
        if not keys:
            continue
        job = _job_for(defs, keys)
        done = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, asset_selection=keys,
            tags={**request.tags, "voice_assets/source": "cli"}, raise_on_error=False,
            run_config=run_config,
        )
        out.runs.append((request.partition_key or "", done.run_id, done.success))
    if result.cursor is not None and out.ok:
        cursors[sensor_name] = result.cursor
        write_text(cursor_file, json.dumps(cursors, sort_keys=True))
    return out
