"""Confirmed character names per series: a person names a voice once, later episodes inherit it.

When someone names a diarization speaker in Label Studio, the sensor stores (series, episode,
speaker, name, speaker embedding) in ``voice_assets.speaker_names`` (append-only; the latest row
of an episode's speaker wins, a NULL name withdraws it). A speaker of a new episode whose centroid
embedding is close (cosine) to a named one is pre-annotated with that name; automatic character
identification can call ``suggest_names`` the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from voice_assets.episode_keys import EPISODE_COLUMN, SERIES_COLUMN
from voice_assets.review.corrections import connect, ensure_schema, qualified, table_exists

TABLE = "speaker_names"
DEFAULT_THRESHOLD = 0.80

NAMES_SCHEMA: dict[str, pl.DataType] = {
    "series": pl.Utf8(),
    "episode": pl.Utf8(),
    "speaker": pl.Utf8(),
    "name": pl.Utf8(),
    "scope": pl.Utf8(),
    "embedding": pl.List(pl.Float32()),
    "embedding_model": pl.Utf8(),
    "correction_id": pl.Utf8(),
    "annotation_id": pl.Int64(),
    "annotator": pl.Utf8(),
    "annotated_at": pl.Datetime("us"),
    "recorded_at": pl.Datetime("us"),
}
NAMES_DESCRIPTIONS: dict[str, str] = {
    "series": SERIES_COLUMN,
    "episode": EPISODE_COLUMN,
    "speaker": "Diarization speaker that was named.",
    "name": "Name a person gave the speaker (null: an earlier name withdrawn).",
    "scope": "'voice' (every episode of the series voice) or 'speaker' (only this speaker).",
    "embedding": "The speaker's centroid voice embedding, to suggest the name in later "
    "episodes.",
    "embedding_model": "Model of the embedding.",
    "correction_id": "Id of the correction the name came from.",
    "annotation_id": "Label Studio's id of the annotation.",
    "annotator": "Who named the speaker.",
    "annotated_at": "When the annotation was last updated (UTC).",
    "recorded_at": "When the row was recorded here (UTC).",
}

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    series VARCHAR NOT NULL,
    episode VARCHAR NOT NULL,
    speaker VARCHAR NOT NULL,
    name VARCHAR,
    scope VARCHAR,
    embedding FLOAT[],
    embedding_model VARCHAR,
    correction_id VARCHAR PRIMARY KEY,
    annotation_id BIGINT,
    annotator VARCHAR,
    annotated_at TIMESTAMP,
    recorded_at TIMESTAMP
);
"""


def empty_names() -> pl.DataFrame:
    return pl.DataFrame(schema=NAMES_SCHEMA)


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(con)
    con.execute(_DDL.format(table=qualified(con, TABLE)))
    # Tables made before names had a scope ("voice": the whole series voice, "speaker": only
    # this episode speaker).
    con.execute(f"ALTER TABLE {qualified(con, TABLE)} ADD COLUMN IF NOT EXISTS scope VARCHAR")


def speaker_embeddings_of(
    con: duckdb.DuckDBPyConnection, episode: str, speakers: Sequence[str]
) -> dict[str, tuple[list[float], str | None]]:
    """The stored centroid embeddings of some speakers of an episode (empty if none yet)."""
    if not speakers or not table_exists(con, "speaker_embeddings"):
        return {}
    rows = con.execute(
        f"SELECT speaker, embedding, model FROM {qualified(con, 'speaker_embeddings')} "
        "WHERE episode = ? AND speaker IN (SELECT unnest(?))",
        [episode, list(speakers)],
    ).fetchall()
    return {str(s): (list(e) if e is not None else [], m) for s, e, m in rows}


def load_speaker_embeddings(database: str | Path, episode: str) -> pl.DataFrame:
    """The episode's rows of the speaker_embeddings table (empty while it does not exist)."""
    schema = {"speaker": pl.Utf8, "embedding": pl.List(pl.Float32), "model": pl.Utf8}
    if not Path(database).exists():
        return pl.DataFrame(schema=schema)
    with connect(database) as con:
        if not table_exists(con, "speaker_embeddings"):
            return pl.DataFrame(schema=schema)
        rows = con.execute(
            f"SELECT speaker, embedding, model FROM {qualified(con, 'speaker_embeddings')} "
            "WHERE episode = ?",
            [episode],
        ).fetchall()
    return pl.DataFrame(
        [
            {"speaker": s, "embedding": list(e) if e is not None else None, "model": m}
            for s, e, m in rows
        ],
        schema=schema,
    )


def name_rows_from_corrections(
    con: duckdb.DuckDBPyConnection, corrections: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """speaker_names rows for the speaker_name corrections, with the speakers' embeddings."""
    rows: list[dict[str, Any]] = []
    wanted = [c for c in corrections if c["field"] == "speaker_name" and c.get("speaker")]
    by_episode: dict[str, list[str]] = {}
    for c in wanted:
        by_episode.setdefault(c["episode"], []).append(c["speaker"])
    embeddings = {ep: speaker_embeddings_of(con, ep, spk) for ep, spk in by_episode.items()}
    scopes = {
        (c["annotation_id"], c["episode"], c.get("speaker")): c["new_value"]
        for c in corrections
        if c["field"] == "speaker_scope"
    }
    for c in wanted:
        key = (c["annotation_id"], c["episode"], c["speaker"])
        if key not in scopes:
            scopes[key] = _stored_scope(con, *key)
    for c in wanted:
        emb, model = embeddings[c["episode"]].get(c["speaker"], ([], None))
        rows.append(
            {
                "series": c["series"],
                "episode": c["episode"],
                "speaker": c["speaker"],
                "name": c["new_value"],
                "scope": scopes.get((c["annotation_id"], c["episode"], c["speaker"]), "voice"),
                "embedding": emb or None,
                "embedding_model": model,
                "correction_id": c["correction_id"],
                "annotation_id": c["annotation_id"],
                "annotator": c["annotator"],
                "annotated_at": c["annotated_at"],
                "recorded_at": c["recorded_at"],
            }
        )
    return rows


def _stored_scope(
    con: duckdb.DuckDBPyConnection, annotation_id: int | None, episode: str, speaker: str
) -> str:
    """The scope an earlier version of this annotation gave its name ("voice" by default)."""
    if not table_exists(con, "corrections"):
        return "voice"
    row = con.execute(
        f"SELECT new_value FROM {qualified(con, 'corrections')} WHERE field = 'speaker_scope' "
        "AND annotation_id = ? AND episode = ? AND speaker = ? "
        "ORDER BY annotated_at DESC, recorded_at DESC LIMIT 1",
        [annotation_id, episode, speaker],
    ).fetchone()
    return str(row[0]) if row and row[0] else "voice"


def insert_names(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Append name rows inside the caller's transaction (idempotent by correction id)."""
    if not rows:
        return 0
    ensure_table(con)
    frame = pl.DataFrame(  # noqa: F841 - read by DuckDB's replacement scan
        [{k: r.get(k) for k in NAMES_SCHEMA} for r in rows], schema=NAMES_SCHEMA
    )
    table = qualified(con, TABLE)
    before = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    cols = ", ".join(NAMES_SCHEMA)
    con.execute(
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM frame "
        f"WHERE correction_id NOT IN (SELECT correction_id FROM {table})"
    )
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] - before)


def load_confirmed_names(database: str | Path, series: str | None = None) -> pl.DataFrame:
    """Current confirmed names (latest row per episode speaker, withdrawn names dropped)."""
    if not Path(database).exists():
        return empty_names()
    with connect(database) as con:
        if not table_exists(con, TABLE):
            return empty_names()
        ensure_table(con)  # adds columns newer than the table
        sql = f"SELECT {', '.join(NAMES_SCHEMA)} FROM {qualified(con, TABLE)}"
        params: list[Any] = []
        if series is not None:
            sql += " WHERE series = ?"
            params.append(series)
        df = pl.from_arrow(con.sql(sql, params=params).to_arrow_table())
    if df.is_empty():
        return empty_names()
    df = df.cast(NAMES_SCHEMA)  # type: ignore[arg-type]
    latest = (
        df.sort(["annotated_at", "recorded_at", "correction_id"])
        .group_by(["series", "episode", "speaker"], maintain_order=True)
        .last()
    )
    return latest.filter(pl.col("name").is_not_null()).select(list(NAMES_SCHEMA))


def known_characters(confirmed: pl.DataFrame) -> list[str]:
    return sorted({n for n in confirmed["name"].to_list() if n}) if not confirmed.is_empty() else []


def _unit(rows: Sequence[Sequence[float]]) -> np.ndarray:
    mat = np.asarray(rows, dtype=np.float32)
    norm = np.linalg.norm(mat, axis=1, keepdims=True)
    return mat / np.maximum(norm, 1e-9)


def suggest_names(
    embeddings: pl.DataFrame,
    confirmed: pl.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    episode: str | None = None,
) -> pl.DataFrame:
    """Best confirmed name per speaker by cosine similarity of centroid embeddings.

    ``embeddings``: the episode's speaker_embeddings (speaker, embedding). A speaker already named
    in this same episode keeps that name (score 1.0); otherwise the most similar named speaker of
    another episode lends its name when the cosine is at least ``threshold``. Returns
    (speaker, name, score, source) with name null when nothing is close enough.
    """
    out_schema = {"speaker": pl.Utf8, "name": pl.Utf8, "score": pl.Float64, "source": pl.Utf8}
    if embeddings.is_empty():
        return pl.DataFrame(schema=out_schema)
    own: dict[str, str] = {}
    others = confirmed.filter(
        pl.col("embedding").is_not_null() & (pl.col("embedding").list.len() > 0)
    )
    if episode is not None and not confirmed.is_empty():
        own = {
            r["speaker"]: r["name"]
            for r in confirmed.filter(pl.col("episode") == episode).iter_rows(named=True)
        }
        others = others.filter(pl.col("episode") != episode)
    emb = embeddings.filter(pl.col("embedding").is_not_null())
    speakers = emb["speaker"].to_list()
    sims = None
    if not others.is_empty() and speakers:
        sims = _unit(emb["embedding"].to_list()) @ _unit(others["embedding"].to_list()).T
    rows = []
    for i, speaker in enumerate(speakers):
        if speaker in own:
            rows.append(
                {
                    "speaker": speaker,
                    "name": own[speaker],
                    "score": 1.0,
                    "source": f"{episode}/{speaker}",
                }
            )
            continue
        name, score, source = None, 0.0, None
        if sims is not None:
            j = int(np.argmax(sims[i]))
            score = float(sims[i, j])
            if score >= threshold:
                ref = others.row(j, named=True)
                name, source = ref["name"], f"{ref['episode']}/{ref['speaker']}"
        rows.append({"speaker": speaker, "name": name, "score": round(score, 4), "source": source})
    return pl.DataFrame(rows, schema=out_schema)
