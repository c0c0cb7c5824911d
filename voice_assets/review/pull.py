"""One poll of Label Studio: new annotations -> correction rows + confirmed names, and a cursor.

The cursor moves only after the rows are committed to DuckDB, so a failure anywhere (server
down, slow, 401, database busy) leaves it where it was and the next poll catches up. Rows have
deterministic ids, so reprocessing an annotation after a crash stores nothing twice.

Cursor (JSON): ``{"v": 1, "since": "<ISO-8601 UTC>" | null, "seen": {"<annotation id>":
"<updated_at>"}}``. ``since`` is the newest annotation ``updated_at`` processed; ``seen`` lists
annotations processed in the ``LOOKBACK_S`` seconds before it, because annotations saved at
nearly the same time can become visible out of order. (Older cursors also carried a
``pending`` list of correction batches; it is ignored: the series outputs now follow their
episodes by declarative automation.)
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from voice_assets.errors import VoiceAssetsError
from voice_assets.review import names
from voice_assets.review.client import ReviewClient, parse_time
from voice_assets.review.corrections import (
    CORRECTION_SCHEMA,
    TABLE,
    AnnotationRecord,
    connect,
    ensure_tables,
    insert_corrections,
    parse_annotation,
    prior_values,
    qualified,
)

LOOKBACK_S = 120.0
CURSOR_VERSION = 1


@dataclass
class Cursor:
    since: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            since = parse_time(data["since"]) if data.get("since") else None
            seen = {str(k): str(v) for k, v in (data.get("seen") or {}).items()}
            return cls(since, seen)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VoiceAssetsError(f"unreadable corrections sensor cursor {raw!r}: {exc}") from exc

    def dump(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "since": self.since.isoformat() if self.since else None,
                "seen": dict(sorted(self.seen.items())),
            },
            sort_keys=True,
        )


@dataclass
class PullResult:
    """What a poll recorded; ``cursor`` is the one to store once the caller is done."""

    cursor: Cursor
    n_annotations: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    n_new_rows: int = 0
    n_names: int = 0
    batch_id: str | None = None
    by_episode: dict[str, list[str]] = field(default_factory=dict)


def _stamp(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


def fresh_annotations(records: list[AnnotationRecord], cursor: Cursor) -> list[AnnotationRecord]:
    """Annotations not processed yet (new, updated, or late within the lookback window)."""

    def is_new(r: AnnotationRecord) -> bool:
        if cursor.since is not None and r.updated_at > cursor.since:
            return True
        return cursor.seen.get(str(r.annotation_id)) != _stamp(r.updated_at)

    return [r for r in records if is_new(r)]


def advance(cursor: Cursor, records: list[AnnotationRecord]) -> Cursor:
    newest = max(
        [r.updated_at for r in records] + ([cursor.since] if cursor.since else []), default=None
    )
    if newest is None:
        return Cursor()
    low = newest - timedelta(seconds=LOOKBACK_S)
    seen = {k: v for k, v in cursor.seen.items() if parse_time(v) > low}
    seen.update({str(r.annotation_id): _stamp(r.updated_at) for r in records if r.updated_at > low})
    return Cursor(newest, seen)


def _stored_corrections(con: Any, episodes: list[str]) -> pl.DataFrame:
    cols = ", ".join(f'"{c}"' for c in CORRECTION_SCHEMA)
    df = pl.from_arrow(
        con.sql(
            f"SELECT {cols} FROM {qualified(con, TABLE)} WHERE episode IN (SELECT unnest(?))",
            params=[episodes],
        ).to_arrow_table()
    )
    if df.is_empty():
        return pl.DataFrame(schema=CORRECTION_SCHEMA)
    return df.cast(CORRECTION_SCHEMA)  # type: ignore[arg-type]


def record_annotations(
    database: str | Path, records: list[AnnotationRecord], now: datetime | None = None
) -> tuple[list[dict[str, Any]], int, int]:
    """Parse annotations against the stored state and append the rows in one transaction.

    Returns (rows of these annotations, rows newly stored, names newly stored).
    """
    if not records:
        return [], 0, 0
    now = now or datetime.now(UTC)
    episodes = sorted({str(r.task_data.get("episode")) for r in records})
    versions = {
        (r.annotation_id, r.updated_at.astimezone(UTC).replace(tzinfo=None)) for r in records
    }
    with connect(database) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            ensure_tables(con)
            stored = _stored_corrections(con, episodes)
            if not stored.is_empty():
                # Diff against what was known before these very annotation versions, so a
                # re-poll after a crash rebuilds the same rows (and the same run requests).
                mine = pl.DataFrame(
                    [{"annotation_id": a, "annotated_at": t} for a, t in versions],
                    schema={"annotation_id": pl.Int64, "annotated_at": pl.Datetime("us")},
                )
                stored = stored.join(mine, on=["annotation_id", "annotated_at"], how="anti")
            prior = prior_values(stored)
            rows: list[dict[str, Any]] = []
            for record in records:
                rows += parse_annotation(record, prior, recorded_at=now)
            batch = batch_id(rows)
            for row in rows:
                row["batch_id"] = batch
            n_rows = insert_corrections(con, rows)
            n_names = names.insert_names(con, names.name_rows_from_corrections(con, rows))
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return rows, n_rows, n_names


def batch_id(rows: list[dict[str, Any]]) -> str | None:
    if not rows:
        return None
    digest = hashlib.sha1("|".join(sorted(r["correction_id"] for r in rows)).encode()).hexdigest()
    return "b" + digest[:12]


def pull_corrections(
    client: ReviewClient,
    database: str | Path,
    raw_cursor: str | None,
    budget_s: float = 40.0,
    now: datetime | None = None,
) -> PullResult:
    """Poll once. Raises ServiceUnavailableError / DatabaseBusyError with the cursor untouched."""
    cursor = Cursor.parse(raw_cursor)
    records = client.annotations_since(cursor.since, lookback_s=LOOKBACK_S, budget_s=budget_s)
    fresh = fresh_annotations(records, cursor)
    rows, n_rows, n_names = record_annotations(database, fresh, now)
    by_episode: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_episode[row["episode"]].append(row["correction_id"])
    return PullResult(
        cursor=advance(cursor, records),
        n_annotations=len(fresh),
        rows=rows,
        n_new_rows=n_rows,
        n_names=n_names,
        batch_id=batch_id(rows),
        by_episode=dict(by_episode),
    )
