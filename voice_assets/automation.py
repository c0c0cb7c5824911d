"""When the series-level outputs (splits, emotion tags, exports, cards, registry) rebuild.

They are rebuilt whole from every episode, so they should run once after a batch of episode
runs, not once per episode. The condition is Dagster's ``eager()`` with two changes:

- it waits while any upstream episode partition is queued or running, and while the inbox is
  still changing (files being copied or waiting to settle): a season dropped at once is
  rebuilt once, after its last episode;
- a missing upstream partition does not hold the rebuild (``eager()`` would wait forever for an
  episode whose video is corrupt); the failed episode is reported by its own run.

Blocking checks upstream must have passed (Dagster's ``all_deps_blocking_checks_passed``).
Corrections and character re-mapping reach these assets the same way: their episode runs
update ``clips``, and this condition picks the update up. On its very first evaluation (a new
instance, or a changed condition) it also rebuilds what is already out of date.

``series_freshness`` says what changed since a series output was last built; the same answer
drives ``voice-assets status`` and the first-evaluation trigger.
"""

import time
from dataclasses import dataclass, field

import dagster as dg

from voice_assets.inbox import STABLE_TICKS, last_change
from voice_assets.paths import Layout

INBOX_SENSOR_INTERVAL_S = 30  # voice_assets/sensors/inbox.py ticks this often
# A file last changed at T is requested by the inbox sensor by T + (STABLE_TICKS + 1) ticks.
INBOX_QUIET_S = (STABLE_TICKS + 2) * INBOX_SENSOR_INTERVAL_S


class InboxQuiet(dg.AutomationCondition):
    """True when no episode or subtitle file in the inbox changed in the last ``quiet_s``."""

    def __init__(self, quiet_s: float = INBOX_QUIET_S) -> None:
        self.quiet_s = quiet_s

    @property
    def description(self) -> str:
        return f"no inbox file changed in the last {self.quiet_s:.0f} s"

    @property
    def name(self) -> str:
        return "inbox_quiet"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        changed = last_change(Layout.from_env().inbox)
        now = context.evaluation_time.timestamp() if context.evaluation_time else time.time()
        quiet = changed is None or now - changed >= self.quiet_s
        subset = context.candidate_subset if quiet else context.get_empty_subset()
        return dg.AutomationResult(context, true_subset=subset)


@dataclass(frozen=True)
class Freshness:
    """What changed upstream of a series output since its last materialization."""

    key: str
    last_run_id: str | None
    last_timestamp: float | None
    # upstream asset -> episodes materialized since ("" for an unpartitioned upstream)
    changed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def stale(self) -> bool:
        return bool(self.changed)

    @property
    def episodes(self) -> list[str]:
        return sorted({p for parts in self.changed.values() for p in parts if p})

    def describe(self) -> str:
        if not self.changed:
            return "current" if self.last_run_id else "never built: no upstream data yet"
        what = []
        for parent, parts in sorted(self.changed.items()):
            eps = sorted({p for p in parts if p})
            what.append(f"{parent} of {len(eps)} episode(s)" if eps else parent)
        head = "never built" if self.last_run_id is None else "stale"
        return f"{head}: {', '.join(what)} updated since"


def series_freshness(instance: dg.DagsterInstance, asset_graph: object,
                     key: dg.AssetKey) -> Freshness:
    """Which upstream assets (and which of their episodes) were materialized after ``key``."""
    [record] = instance.get_asset_records([key]) or [None]
    last = record.asset_entry.last_materialization_record if record else None
    after = last.storage_id if last else None
    changed: dict[str, list[str]] = {}
    for parent in sorted(asset_graph.get(key).parent_keys):  # type: ignore[attr-defined]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=parent, after_storage_id=after), limit=10_000
        ).records
        if records:
            changed[parent.to_user_string()] = sorted({r.partition_key or "" for r in records})
    return Freshness(
        key=key.to_user_string(),
        last_run_id=last.run_id if last else None,
        last_timestamp=last.timestamp if last else None,
        changed=changed,
    )


class UpstreamNewer(dg.AutomationCondition):
    """True when an upstream asset was materialized after this one (``series_freshness``)."""

    @property
    def description(self) -> str:
        return "an upstream asset was materialized after this one"

    @property
    def name(self) -> str:
        return "upstream_newer"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        if context.candidate_subset.is_empty:
            return dg.AutomationResult(context, true_subset=context.candidate_subset)
        fresh = series_freshness(context.asset_graph_view.instance, context.asset_graph,
                                 context.key)
        subset = context.candidate_subset if fresh.stale else context.get_empty_subset()
        return dg.AutomationResult(context, true_subset=subset)


def series_rebuild(quiet_s: float = INBOX_QUIET_S) -> dg.AutomationCondition:
    """Rebuild once after the episodes it reads were updated and every episode run finished."""
    updated = (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        | (dg.AutomationCondition.initial_evaluation() & UpstreamNewer())
    ).with_label("episodes_updated")
    return (
        updated
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
        & InboxQuiet(quiet_s)
    ).with_label("series_rebuild")
