"""Human corrections applied on top of model output, so a model re-run never loses them.

A Label Studio annotation becomes correction rows (one per changed field) in the append-only
table ``voice_assets.corrections`` of the project's DuckDB file. Each row names its target twice:
by utterance id (``<episode>_<start_ms:08d>``) and by time range, so a re-run whose turn
boundaries moved a little still finds the turn (largest overlap). Speaker-level rows (a name given
to a diarization speaker) carry the speaker's turn spans, so they follow the voice even when a new
diarization numbers speakers differently. The latest correction of a field wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from voice_assets import parquet_store
from voice_assets.episode_keys import EPISODE_COLUMN, SERIES_COLUMN
from voice_assets.errors import CorruptDatabaseError, VoiceAssetsError
from voice_assets.parquet_store import SCHEMA, is_parquet, table_exists
from voice_assets.review.tasks import (
    CLUSTER_NONE,
    CLUSTER_ONE,
    FLAG_CHOICES,
    SCOPE_THIS_SPEAKER,
    SCOPE_WHOLE_VOICE,
    SPEAKER_NAMING,
    UTTERANCE_REVIEW,
    series_of,
)

TABLE = "corrections"

# The speaker-naming "scope" choice: a name for the whole series voice, or a split.
SCOPE_CHOICES = {SCOPE_WHOLE_VOICE: "voice", SCOPE_THIS_SPEAKER: "speaker"}

# Fields of utterance-level rows, then speaker-level rows.
UTTERANCE_FIELDS = ("speaker", "character", "text", "emotion", "flags", "start", "end", "added")
SPEAKER_FIELDS = ("speaker_name", "speaker_cluster", "speaker_scope")

# Columns apply_corrections adds to utterances (always, so the table schema never changes).
REVIEW_FLAGS = "review_flags"
CORRECTION_IDS = "correction_ids"

# The columns apply_corrections adds to the utterances table, and what they hold.
REVIEW_COLUMNS_SCHEMA: dict[str, pl.DataType] = {
    REVIEW_FLAGS: pl.List(pl.Utf8()), CORRECTION_IDS: pl.List(pl.Utf8()),
}
REVIEW_COLUMNS_DESCRIPTIONS: dict[str, str] = {
    REVIEW_FLAGS: "Flags people set on the turn in review (" + ", ".join(FLAG_CHOICES)
    + "); they override the metrics in the clip gates.",
    CORRECTION_IDS: "Corrections applied to the row (corrections.correction_id).",
}

CORRECTION_SCHEMA: dict[str, pl.DataType] = {
    "correction_id": pl.Utf8(),
    "batch_id": pl.Utf8(),
    "episode": pl.Utf8(),
    "series": pl.Utf8(),
    "project_kind": pl.Utf8(),
    "task_id": pl.Int64(),
    "task_key": pl.Utf8(),
    "annotation_id": pl.Int64(),
    "annotator": pl.Utf8(),
    "annotated_at": pl.Datetime("us"),
    "recorded_at": pl.Datetime("us"),
    "utterance_id": pl.Utf8(),
    "speaker": pl.Utf8(),
    "start": pl.Float64(),
    "end": pl.Float64(),
    "spans": pl.Utf8(),
    "field": pl.Utf8(),
    "old_value": pl.Utf8(),
    "new_value": pl.Utf8(),
}
CORRECTION_DESCRIPTIONS: dict[str, str] = {
    "correction_id": "Id of the correction (annotation, its update time, target and field).",
    "batch_id": "Id of the pull from Label Studio that recorded the row.",
    "episode": EPISODE_COLUMN,
    "series": SERIES_COLUMN,
    "project_kind": f"Label Studio project: '{UTTERANCE_REVIEW}' or '{SPEAKER_NAMING}'.",
    "task_id": "Label Studio's id of the task.",
    "task_key": "Stable key of the task (review_tasks.task_key).",
    "annotation_id": "Label Studio's id of the annotation.",
    "annotator": "Who annotated.",
    "annotated_at": "When the annotation was last updated (UTC).",
    "recorded_at": "When the row was recorded here (UTC).",
    "utterance_id": "Utterance the correction targets (null for speaker-level rows).",
    "speaker": "Diarization speaker the correction targets.",
    "start": "Start of the corrected turn, seconds (finds the turn again if ids move).",
    "end": "End of the corrected turn, seconds.",
    "spans": "JSON: the speaker's turn spans, for speaker-level rows.",
    "field": "Field corrected (e.g. " + ", ".join(UTTERANCE_FIELDS[:4]) + ", speaker_name).",
    "old_value": "Value before the correction.",
    "new_value": "Value after the correction (the latest correction of a field wins).",
}

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    correction_id VARCHAR PRIMARY KEY,
    batch_id VARCHAR,
    episode VARCHAR NOT NULL,
    series VARCHAR,
    project_kind VARCHAR,
    task_id BIGINT,
    task_key VARCHAR,
    annotation_id BIGINT,
    annotator VARCHAR,
    annotated_at TIMESTAMP,
    recorded_at TIMESTAMP,
    utterance_id VARCHAR,
    speaker VARCHAR,
    start DOUBLE,
    "end" DOUBLE,
    spans VARCHAR,
    field VARCHAR NOT NULL,
    old_value VARCHAR,
    new_value VARCHAR
);
"""


class DatabaseBusyError(VoiceAssetsError):
    """Another process holds the DuckDB write lock for longer than we are willing to wait."""


# --------------------------------------------------------------------------- store
def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "being used by another" in text


_CORRUPT_SIGNS = ("not a valid duckdb database", "could not read enough bytes",
                  "corrupt", "checksum", "invalid", "unsupported version")


def _is_corrupt(exc: Exception) -> bool:
    text = str(exc).lower()
    return not _is_lock_error(exc) and any(sign in text for sign in _CORRUPT_SIGNS)


def check_database(database: str | Path) -> None:
    """Fail at once, naming the file and the fix, when the tables file cannot be opened (a
    missing file is fine: it is created); a locked one is fine too (another run holds it)."""
    path = Path(database)
    if not path.exists() or is_parquet(path):  # Parquet: each file is whole (atomic writes)
        return
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        if _is_corrupt(exc):
            raise CorruptDatabaseError(path, str(exc).splitlines()[0]) from exc
        return
    try:
        con.execute("select count(*) from duckdb_tables()").fetchall()
    except duckdb.Error as exc:
        raise CorruptDatabaseError(path, str(exc).splitlines()[0]) from exc
    finally:
        con.close()


@contextlib.contextmanager
def connect(database: str | Path, wait_s: float = 10.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-write connection; retries while another process holds the lock.

    DuckDB allows one writer process at a time; Dagster runs and the sensor daemon take turns.
    A Parquet store (``parquet_store``) has no lock: the connection is DuckDB over its files.
    """
    if is_parquet(database):
        with parquet_store.connect(Path(database)) as con:
            yield con
        return
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(database))
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if _is_corrupt(exc):
                raise CorruptDatabaseError(database, str(exc).splitlines()[0]) from exc
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                if _is_lock_error(exc):
                    raise DatabaseBusyError(
                        f"{database} is locked by another process for more than {wait_s:.0f} s"
                    ) from exc
                raise
            time.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 1.0)
    try:
        yield con
    finally:
        con.close()


def qualified(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """``"<catalog>"."voice_assets"."<table>"``: a database file named voice_assets.duckdb has a
    catalog with the schema's name, and DuckDB refuses the ambiguous two-part name."""
    catalog = con.execute("SELECT current_database()").fetchall()[0][0]
    return f'"{catalog}"."{SCHEMA}"."{table}"'


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    catalog = con.execute("SELECT current_database()").fetchall()[0][0]
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{catalog}"."{SCHEMA}"')


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(con)
    con.execute(_DDL.format(table=qualified(con, TABLE)))


def load_table(database: str | Path, table: str, where: str = "",
               params: Sequence[object] = ()) -> pl.DataFrame:
    """Rows of a materialized table (``where``: an SQL condition with ``?`` parameters);
    an empty frame before the table's first materialization."""
    if not Path(database).exists():
        return pl.DataFrame()
    with connect(database) as con:
        if not table_exists(con, table):
            return pl.DataFrame()
        sql = f"SELECT * FROM {qualified(con, table)}" + (f" WHERE {where}" if where else "")
        df = pl.from_arrow(con.sql(sql, params=list(params)).to_arrow_table())
    assert isinstance(df, pl.DataFrame)
    return df


def empty_corrections() -> pl.DataFrame:
    return pl.DataFrame(schema=CORRECTION_SCHEMA)


def corrections_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    if not rows:
        return empty_corrections()
    return pl.DataFrame(
        [{k: r.get(k) for k in CORRECTION_SCHEMA} for r in rows], schema=CORRECTION_SCHEMA
    )


def insert_corrections(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Append rows inside the caller's transaction; a row already stored (same id) is skipped."""
    if not rows:
        return 0
    ensure_tables(con)
    frame = corrections_frame(rows)  # noqa: F841 - read by DuckDB's replacement scan
    table = qualified(con, TABLE)
    before = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    cols = ", ".join(f'"{c}"' for c in CORRECTION_SCHEMA)
    con.execute(
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM frame "
        f"WHERE correction_id NOT IN (SELECT correction_id FROM {table})"
    )
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] - before)


def record_corrections(database: str | Path, rows: Sequence[dict[str, Any]]) -> int:
    """Append correction rows in one short transaction; returns how many were new."""
    with connect(database) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            n = insert_corrections(con, rows)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return n


def load_corrections(
    database: str | Path, episodes: str | Sequence[str] | None = None
) -> pl.DataFrame:
    """Corrections of the given episode(s) (all when None), oldest first; empty when none yet.

    This is what the utterances asset passes to ``apply_corrections``.
    """
    if not Path(database).exists():
        return empty_corrections()
    if isinstance(episodes, str):
        episodes = [episodes]
    with connect(database) as con:
        if not table_exists(con, TABLE):
            return empty_corrections()
        cols = ", ".join(f'"{c}"' for c in CORRECTION_SCHEMA)
        sql = f"SELECT {cols} FROM {qualified(con, TABLE)}"
        params: list[Any] = []
        if episodes is not None:
            sql += " WHERE episode IN (SELECT unnest(?))"
            params.append(list(episodes))
        sql += " ORDER BY annotated_at, recorded_at, correction_id"
        df = pl.from_arrow(con.sql(sql, params=params).to_arrow_table())
    return df.cast(CORRECTION_SCHEMA) if not df.is_empty() else empty_corrections()  # type: ignore[arg-type]


# --------------------------------------------------------------------------- parse
@dataclass(frozen=True)
class AnnotationRecord:
    """One submitted (or updated) Label Studio annotation with its task's data."""

    annotation_id: int
    task_id: int
    project_kind: str
    task_data: dict[str, Any]
    result: list[dict[str, Any]]
    annotator: str
    updated_at: datetime
    was_cancelled: bool = False


def _target(utterance_id: str | None, speaker: str | None) -> str:
    return utterance_id if utterance_id else f"speaker:{speaker}"


Prior = dict[tuple[int, str, str, str], str | None]


def prior_values(corrections: pl.DataFrame) -> Prior:
    """Latest stored value per (annotation, episode, target, field).

    An annotation is diffed against its own previous version, else against the model's value
    shown in the task: a second annotation of the same task that leaves a field as the model
    had it does not undo the first annotation's fix.
    """
    prior: Prior = {}
    if corrections.is_empty():
        return prior
    for row in corrections.sort(["annotated_at", "recorded_at", "correction_id"]).iter_rows(
        named=True
    ):
        target = _target(row["utterance_id"], row["speaker"])
        prior[(row["annotation_id"], row["episode"], target, row["field"])] = row["new_value"]
    return prior


def _to_text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if field == "flags":
        flags = sorted({str(v) for v in value})
        return ",".join(flags) if flags else None
    if field in ("start", "end"):
        return f"{float(value):.3f}"
    text = " ".join(str(value).split())
    return text or None


def correction_id(annotation_id: int, updated_at: datetime, target: str, field: str) -> str:
    raw = f"{annotation_id}|{updated_at.isoformat()}|{target}|{field}"
    return "c" + hashlib.sha1(raw.encode("utf-8")).hexdigest()[:16]


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _regions(result: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Group an audio annotation's result items by region id into field values."""
    regions: dict[str, dict[str, Any]] = {}
    for item in result:
        rid = item.get("id")
        value = item.get("value") or {}
        if not rid or "start" not in value:
            continue
        region = regions.setdefault(rid, {"start": value["start"], "end": value["end"]})
        if item.get("type") == "labels" or item.get("from_name") == "speaker":
            region["start"], region["end"] = value["start"], value["end"]
        name = item.get("from_name")
        if name == "speaker" and value.get("labels"):
            region["speaker"] = value["labels"][0]
        elif name == "character" and value.get("choices"):
            region["character"] = value["choices"][0]
        elif name == "new_character":
            typed = " ".join(" ".join(value.get("text") or []).split())
            if typed:
                region["new_character"] = typed
        elif name == "transcript":
            region["text"] = " ".join(" ".join(value.get("text") or []).split())
        elif name == "emotion" and value.get("choices"):
            region["emotion"] = value["choices"][0]
        elif name == "flags":
            region["flags"] = [c for c in value.get("choices") or [] if c in FLAG_CHOICES]
    return regions


def parse_annotation(
    record: AnnotationRecord,
    prior: Prior | None = None,
    recorded_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """Correction rows for every field the annotation changed.

    The baseline of a field is this annotation's previous version (``prior``), else the model's
    value carried in the task. Deleting a region changes nothing (flag it "not dialogue"
    instead); a region the model did not have becomes an ``added`` row.
    """
    if record.was_cancelled:
        return []
    prior = prior if prior is not None else {}
    data = record.task_data
    episode = data.get("episode")
    if not episode:
        raise VoiceAssetsError(
            f"Label Studio task {record.task_id} has no 'episode' in its data; it was not "
            "created by voice-assets"
        )
    base = {
        "episode": episode,
        "series": data.get("series") or series_of(episode),
        "project_kind": record.project_kind,
        "task_id": record.task_id,
        "task_key": data.get("task_key"),
        "annotation_id": record.annotation_id,
        "annotator": record.annotator,
        "annotated_at": _naive_utc(record.updated_at),
        "recorded_at": _naive_utc(recorded_at or datetime.now(UTC)),
    }
    rows: list[dict[str, Any]] = []

    def emit(
        utterance_id: str | None,
        speaker: str | None,
        start: float | None,
        end: float | None,
        field: str,
        old: str | None,
        new: str | None,
        spans: str | None = None,
    ) -> None:
        target = _target(utterance_id, speaker)
        rows.append(
            {
                **base,
                "utterance_id": utterance_id,
                "speaker": speaker,
                "start": start,
                "end": end,
                "spans": spans,
                "field": field,
                "old_value": old,
                "new_value": new,
                "correction_id": correction_id(
                    record.annotation_id, record.updated_at, target, field
                ),
            }
        )
        prior[(record.annotation_id, episode, target, field)] = new

    if record.project_kind == UTTERANCE_REVIEW:
        offset = float(data.get("offset") or 0.0)
        turns = {t["region"]: t for t in data.get("turns") or []}
        for rid, region in _regions(record.result).items():
            start = round(offset + float(region["start"]), 3)
            end = round(offset + float(region["end"]), 3)
            character = region.get("new_character") or region.get("character")
            turn = turns.get(rid)
            if turn is None:
                new = {
                    "start": start,
                    "end": end,
                    "speaker": region.get("speaker"),
                    "character": character,
                    "text": region.get("text") or "",
                    "emotion": region.get("emotion"),
                    "flags": region.get("flags") or [],
                }
                uid = f"{episode}_{round(start * 1000):08d}"
                emit(
                    uid,
                    region.get("speaker"),
                    start,
                    end,
                    "added",
                    None,
                    json.dumps(new, sort_keys=True),
                )
                continue
            values: dict[str, Any] = {
                "character": character,
                "emotion": region.get("emotion"),
                "flags": region.get("flags") or [],
            }
            if "speaker" in region:
                values["speaker"] = region["speaker"]
            if "text" in region:
                values["text"] = region["text"]
            if abs(start - float(turn["start"])) > 0.02:
                values["start"] = start
            if abs(end - float(turn["end"])) > 0.02:
                values["end"] = end
            for field, value in values.items():
                key = (record.annotation_id, episode, turn["id"], field)
                model_value = _to_text(field, turn.get(field))
                old = prior.get(key, model_value)
                new_text = _to_text(field, value)
                if new_text != old:
                    emit(
                        turn["id"],
                        turn.get("speaker"),
                        float(turn["start"]),
                        float(turn["end"]),
                        field,
                        old,
                        new_text,
                    )
    elif record.project_kind == SPEAKER_NAMING:
        speaker = data.get("speaker")
        spans = data.get("spans") or []
        typed = choice = cluster = None
        scope = "voice"
        for item in record.result:
            value = item.get("value") or {}
            if item.get("from_name") == "name":
                typed = " ".join(" ".join(value.get("text") or []).split()) or None
            elif item.get("from_name") == "character" and value.get("choices"):
                choice = value["choices"][0]
            elif item.get("from_name") == "cluster" and value.get("choices"):
                cluster = value["choices"][0]
            elif item.get("from_name") == "scope" and value.get("choices"):
                scope = SCOPE_CHOICES.get(value["choices"][0], scope)
        cluster = cluster or CLUSTER_ONE
        name = (typed or choice) if cluster == CLUSTER_ONE else None
        first = min((s for s, _ in spans), default=None)
        last = max((e for _, e in spans), default=None)
        spans_json = json.dumps(spans)
        target = _target(None, speaker)
        scope_key = (record.annotation_id, episode, target, "speaker_scope")
        old_scope = prior.get(scope_key, "voice")
        if scope != old_scope:
            # Emitted before the name, so the name row recorded with it carries the new scope.
            emit(None, speaker, first, last, "speaker_scope", old_scope, scope, spans_json)
        key = (record.annotation_id, episode, target, "speaker_name")
        if key in prior:
            if prior[key] != name or (scope != old_scope and name is not None):
                emit(None, speaker, first, last, "speaker_name", prior[key], name, spans_json)
        elif name is not None or cluster != CLUSTER_ONE:
            # The first confirmation is a correction even when it equals the suggestion:
            # a suggested name is never applied until a person confirms it.
            emit(
                None,
                speaker,
                first,
                last,
                "speaker_name",
                data.get("predicted_name"),
                name,
                spans_json,
            )
        key = (record.annotation_id, episode, target, "speaker_cluster")
        old_cluster = prior.get(key, CLUSTER_ONE)
        if cluster != old_cluster:
            emit(None, speaker, first, last, "speaker_cluster", old_cluster, cluster, spans_json)
    else:
        raise VoiceAssetsError(f"unknown review project kind '{record.project_kind}'")
    return rows


# --------------------------------------------------------------------------- apply
def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _match_turn(
    rows: list[dict[str, Any]], utterance_id: str | None, start: float | None, end: float | None
) -> int | None:
    """Index of the row this correction targets: same id, else the largest time overlap."""
    if utterance_id is not None:
        for i, row in enumerate(rows):
            if row["id"] == utterance_id:
                return i
    if start is None or end is None:
        return None
    best, best_ov = None, 0.0
    for i, row in enumerate(rows):
        ov = _overlap(start, end, row["_start0"], row["_end0"])
        if ov > best_ov:
            best, best_ov = i, ov
    if best is None:
        return None
    shorter = min(end - start, rows[best]["_end0"] - rows[best]["_start0"])
    return best if shorter > 0 and best_ov >= 0.5 * shorter else None


def _match_speaker(
    rows: list[dict[str, Any]], speaker: str | None, spans_json: str | None
) -> str | None:
    """The current speaker id whose turns cover the named speaker's turns best."""
    spans = json.loads(spans_json) if spans_json else []
    if spans:
        cover: Counter[str] = Counter()
        for row in rows:
            if not row.get("speaker"):
                continue
            for s, e in spans:
                cover[row["speaker"]] += _overlap(s, e, row["start"], row["end"])
        total = sum(e - s for s, e in spans)
        if cover:
            best, amount = cover.most_common(1)[0]
            if total > 0 and amount >= 0.3 * total:
                return best
    present = {row.get("speaker") for row in rows}
    return speaker if speaker in present else None


def _add_flag(row: dict[str, Any], flag: str) -> None:
    flags = set(row[REVIEW_FLAGS] or [])
    flags.add(flag)
    row[REVIEW_FLAGS] = sorted(flags)


def _set_field(row: dict[str, Any], field: str, value: str | None) -> None:
    if field == "character":
        row["character"] = value
        if "character_source" in row:
            row["character_source"] = "human"
        if "character_confidence" in row:
            row["character_confidence"] = 1.0
    elif field == "speaker":
        row["speaker"] = value
    elif field == "text":
        if value != row.get("text"):
            row["text"] = value or ""
            if "words" in row:
                row["words"] = None  # word timings belonged to the model's text
        row["text_source"] = "human"
        if "text_confidence" in row:
            row["text_confidence"] = 1.0
    elif field == "emotion":
        row["emotion"] = value
    elif field == "flags":
        flags = [f for f in (value or "").split(",") if f]
        row[REVIEW_FLAGS] = sorted(set(flags))
        row["overlap"] = "overlap" in flags
    elif field in ("start", "end") and value is not None:
        row[field] = float(value)
        if row.get("words"):
            # Words the person cut off the turn no longer belong to it.
            row["words"] = [
                w
                for w in row["words"]
                if w.get("start") is None
                or (w["start"] >= row["start"] - 0.05 and w["end"] <= row["end"] + 0.05)
            ]


def apply_corrections(utterances: pl.DataFrame, corrections: pl.DataFrame | None) -> pl.DataFrame:
    """Return ``utterances`` with the latest human correction of each field applied.

    Always adds ``review_flags`` (list of "not dialogue" / "overlap" / "music") and
    ``correction_ids`` (the corrections applied to the row), so the table schema is stable.
    Order: turn boundaries, speaker reassignments and added turns; then speaker names; then
    per-turn character, transcript, emotion and flags (a per-turn fix beats a speaker-wide name).
    """
    out = utterances
    if REVIEW_FLAGS not in out.columns:
        out = out.with_columns(pl.lit([], dtype=pl.List(pl.Utf8)).alias(REVIEW_FLAGS))
    if CORRECTION_IDS not in out.columns:
        out = out.with_columns(pl.lit([], dtype=pl.List(pl.Utf8)).alias(CORRECTION_IDS))
    if corrections is None or corrections.is_empty() or out.is_empty():
        return out
    schema = out.schema
    episodes = set(out["episode"].unique().to_list())
    corr = corrections.filter(pl.col("episode").is_in(list(episodes))).sort(
        ["annotated_at", "recorded_at", "correction_id"], nulls_last=False
    )
    if corr.is_empty():
        return out
    result_rows: list[dict[str, Any]] = []
    for episode in sorted(episodes):
        rows = out.filter(pl.col("episode") == episode).to_dicts()
        for row in rows:
            row["_start0"], row["_end0"] = row["start"], row["end"]
            row[REVIEW_FLAGS] = list(row[REVIEW_FLAGS] or [])
            row[CORRECTION_IDS] = list(row[CORRECTION_IDS] or [])
        ep_corr = corr.filter(pl.col("episode") == episode).to_dicts()
        utt = [c for c in ep_corr if c["field"] in UTTERANCE_FIELDS]
        spk = [c for c in ep_corr if c["field"] in SPEAKER_FIELDS]
        targets = {
            c["correction_id"]: _match_turn(rows, c["utterance_id"], c["start"], c["end"])
            for c in utt
        }

        def mark(row: dict[str, Any], cid: str) -> None:
            if cid not in row[CORRECTION_IDS]:
                row[CORRECTION_IDS].append(cid)

        # 1) structure: boundaries, speaker reassignment, turns the model missed
        for c in utt:
            idx = targets[c["correction_id"]]
            if c["field"] == "added":
                if idx is not None:
                    continue  # the model now has this turn: later fields target it
                new = json.loads(c["new_value"])
                row = {k: None for k in schema}
                row.update(
                    {
                        "id": c["utterance_id"],
                        "episode": episode,
                        "start": new["start"],
                        "end": new["end"],
                        "speaker": new.get("speaker"),
                        "character": new.get("character"),
                        "text": new.get("text") or "",
                        "emotion": new.get("emotion"),
                        "overlap": "overlap" in new.get("flags", []),
                        "text_source": "human",
                        REVIEW_FLAGS: sorted(new.get("flags") or []),
                        CORRECTION_IDS: [],
                        "_start0": new["start"],
                        "_end0": new["end"],
                    }
                )
                langs = Counter(r.get("language") for r in rows if r.get("language"))
                if "language" in schema and langs:
                    row["language"] = langs.most_common(1)[0][0]
                mark(row, c["correction_id"])
                rows.append(row)
            elif idx is not None and c["field"] in ("start", "end", "speaker"):
                _set_field(rows[idx], c["field"], c["new_value"])
                mark(rows[idx], c["correction_id"])
        # 2) speaker-wide verdicts, following the voice's turns. Speaker names are not applied
        #    here: the character map resolves them for the whole series voice (merges and
        #    splits included) and utterances take their character from it.
        for c in spk:
            if c["field"] != "speaker_cluster":
                continue
            current = _match_speaker(rows, c["speaker"], c["spans"])
            if current is None:
                continue
            for row in rows:
                if row.get("speaker") != current:
                    continue
                if c["new_value"] == CLUSTER_NONE:
                    _add_flag(row, "not dialogue")
                mark(row, c["correction_id"])
        # 3) per-turn fields
        for c in utt:
            idx = targets[c["correction_id"]]
            if idx is None or c["field"] in ("start", "end", "speaker", "added"):
                continue
            _set_field(rows[idx], c["field"], c["new_value"])
            mark(rows[idx], c["correction_id"])
        for row in rows:
            row.pop("_start0", None)
            row.pop("_end0", None)
        result_rows.extend(rows)
    return pl.DataFrame(result_rows, schema=schema).sort(["episode", "start"], maintain_order=True)
