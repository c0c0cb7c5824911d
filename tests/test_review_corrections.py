"""Review loop without a server: task building, annotation parsing, the corrections store, apply."""

from __future__ import annotations

import json
import multiprocessing as mp
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import soundfile as sf

from voice_assets.review import names
from voice_assets.review.corrections import (
    CORRECTION_IDS,
    REVIEW_FLAGS,
    AnnotationRecord,
    DatabaseBusyError,
    apply_corrections,
    connect,
    corrections_frame,
    load_corrections,
    parse_annotation,
    prior_values,
    record_corrections,
)
from voice_assets.review.pull import Cursor, advance, fresh_annotations
from voice_assets.review.tasks import (
    SPEAKER_NAMING,
    UTTERANCE_REVIEW,
    build_speaker_tasks,
    build_utterance_tasks,
    chunk_turns,
    local_files_url,
    score_utterances,
    write_task_audio,
)
from voice_assets.speech.fusion import UTTERANCE_SCHEMA

EP = "show__ep01"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# (start, end, speaker, subtitle name, text)
LINES = [
    (1.0, 2.5, "SPK_00", "Alice", "hello there"),
    (3.0, 4.2, "SPK_01", "Bob", "hi alice"),
    (4.5, 6.0, "SPK_00", "Alice", "how are you"),
    (7.0, 8.0, "SPK_01", "Bob", "fine thanks"),
    (40.0, 42.0, "SPK_01", "Alice", "wait for me"),  # subtitles disagree with diarization
    (50.0, 51.0, "SPK_00", None, "okay"),
]


def utterances(
    lines=LINES, episode: str = EP, shift: float = 0.0, rename: dict[str, str] | None = None
) -> pl.DataFrame:
    rows = []
    for s, e, spk, name, text in lines:
        s, e = s + shift, e + shift
        ws = text.split()
        d = (e - s) / len(ws)
        rows.append(
            {
                "id": f"{episode}_{round(s * 1000):08d}",
                "episode": episode,
                "start": s,
                "end": e,
                "speaker": (rename or {}).get(spk, spk),
                "character": None,
                "text": text,
                "words": [
                    {"word": w, "start": s + i * d, "end": s + (i + 1) * d, "score": 0.9}
                    for i, w in enumerate(ws)
                ],
                "language": "en",
                "overlap": False,
                "text_source": "subtitle",
                "speaker_confidence": 0.9,
                "text_confidence": 0.95,
                "subtitle_name": name,
                "emotion": None,
                "audio_path": None,
            }
        )
    return pl.DataFrame(rows, schema=UTTERANCE_SCHEMA)


def record(
    kind: str, data: dict, result: list[dict], ann_id: int = 1, at: datetime = T0, task_id: int = 10
) -> AnnotationRecord:
    return AnnotationRecord(ann_id, task_id, kind, data, result, "ann@example.org", at)


def region_items(turn: dict, offset: float, **changes) -> list[dict]:
    """What the UI submits for one region when a person accepts or edits the pre-annotation."""
    value = {"start": turn["start"] - offset, "end": turn["end"] - offset, "channel": 0}
    value.update({k: v for k, v in changes.items() if k in ("start", "end")})
    rid = turn["region"]
    items = [
        {
            "id": rid,
            "from_name": "speaker",
            "to_name": "audio",
            "type": "labels",
            "value": {**value, "labels": [changes.get("speaker", turn["speaker"])]},
        },
        {
            "id": rid,
            "from_name": "transcript",
            "to_name": "audio",
            "type": "textarea",
            "value": {**value, "text": [changes.get("text", turn["text"])]},
        },
    ]
    if changes.get("character"):
        items.append(
            {
                "id": rid,
                "from_name": "character",
                "to_name": "audio",
                "type": "choices",
                "value": {**value, "choices": [changes["character"]]},
            }
        )
    if changes.get("flags"):
        items.append(
            {
                "id": rid,
                "from_name": "flags",
                "to_name": "audio",
                "type": "choices",
                "value": {**value, "choices": changes["flags"]},
            }
        )
    return items


def first_task(utts: pl.DataFrame):
    specs = build_utterance_tasks(EP, utts, ["Alice", "Bob"], "test-model 1")
    return next(s for s in specs if s.data["turns"][0]["id"] == f"{EP}_00001000")


# --------------------------------------------------------------------------- tasks
def test_doubtful_turns_come_first_and_tasks_carry_model_values():
    utts = utterances()
    scored = score_utterances(utts)
    prio = dict(zip(scored["id"], scored["priority"], strict=True))
    assert prio[f"{EP}_00040000"] == 1.0  # subtitle says Alice, diarization SPK_01 (Bob's)
    assert prio[f"{EP}_00001000"] < 0.5
    specs = build_utterance_tasks(EP, utts, ["Alice"], "test-model 1")
    assert specs[0].data["turns"][0]["id"] == f"{EP}_00040000"
    assert specs[0].score == 0.0 and "diarization says SPK_01" in specs[0].data["hint"]
    # Every turn appears in exactly one task, with its region pre-annotated.
    turn_ids = [t["id"] for s in specs for t in s.data["turns"]]
    assert sorted(turn_ids) == sorted(utts["id"].to_list())
    first = first_task(utts)
    assert first.data["offset"] == 0.5
    labels = [r for r in first.result if r["from_name"] == "speaker"]
    assert [(r["value"]["start"], r["value"]["labels"][0]) for r in labels] == [
        (0.5, "SPK_00"),
        (2.5, "SPK_01"),
        (4.0, "SPK_00"),
        (6.5, "SPK_01"),
    ]
    assert {c["value"] for c in first.data["characters"]} == {"Alice", "Bob"}
    assert first.data["model_version"] == "test-model 1"


def test_chunks_respect_gap_length_and_turn_limits():
    utts = utterances()
    chunks = chunk_turns(utts, max_chunk_s=30.0, max_gap_s=3.0, max_turns=3)
    assert [c.height for c in chunks] == [3, 1, 1, 1]
    assert chunks[0]["start"].to_list() == [1.0, 3.0, 4.5]


def test_speaker_tasks_use_suggested_names_and_best_clips(tmp_path: Path):
    utts = utterances()
    sugg = pl.DataFrame(
        {
            "speaker": ["SPK_00", "SPK_01"],
            "name": ["Alice", None],
            "score": [0.93, 0.41],
            "source": ["show__ep00/SPK_03", None],
        }
    )
    specs = {s.speaker: s for s in build_speaker_tasks(EP, utts, ["Alice"], sugg, "m")}
    alice = specs["SPK_00"]
    assert alice.data["predicted_name"] == "Alice"
    assert any(r["from_name"] == "name" and r["value"]["text"] == ["Alice"] for r in alice.result)
    assert "cosine 0.93" in alice.data["hint"]
    assert specs["SPK_01"].data["predicted_name"] is None
    assert specs["SPK_01"].priority > alice.priority  # unnamed first
    assert alice.data["spans"][0] == [1.0, 2.5]
    # Audio: clips joined by 0.4 s pauses, served through local-files storage.
    wav = tmp_path / "episodes" / EP / "episode_audio" / "a.wav"
    wav.parent.mkdir(parents=True)
    sf.write(wav, np.full(16000 * 60, 0.1, dtype=np.float32), 16000)
    paths = write_task_audio([alice], wav, tmp_path / "episodes" / EP / "review_tasks")
    audio, sr = sf.read(paths[alice.key])
    clip_s = sum(e - s for s, e in alice.audio_spans)
    assert len(audio) / sr == pytest.approx(clip_s + 0.4 * (len(alice.audio_spans) - 1), abs=0.01)
    assert local_files_url(paths[alice.key], tmp_path) == (
        f"/data/local-files/?d=episodes/{EP}/review_tasks/speaker_SPK_00.wav"
    )


# --------------------------------------------------------------------------- parse
def test_annotation_becomes_one_row_per_changed_field():
    utts = utterances()
    task = first_task(utts)
    turns = task.data["turns"]
    result = region_items(turns[0], 0.5, text="hello their", character="Alice")
    for t in turns[1:]:
        result += region_items(t, 0.5)
    rows = parse_annotation(record(UTTERANCE_REVIEW, task.data, result))
    got = {(r["field"], r["old_value"], r["new_value"]) for r in rows}
    assert got == {("text", "hello there", "hello their"), ("character", None, "Alice")}
    row = rows[0]
    assert row["utterance_id"] == f"{EP}_00001000" and (row["start"], row["end"]) == (1.0, 2.5)
    assert row["annotator"] == "ann@example.org" and row["annotation_id"] == 1
    assert row["episode"] == EP and row["series"] == "show" and row["task_id"] == 10

    # The same annotation again (already stored) changes nothing; an update that reverts
    # the text records the revert.
    prior = prior_values(corrections_frame(rows))
    assert parse_annotation(record(UTTERANCE_REVIEW, task.data, result), dict(prior)) == []
    reverted = region_items(turns[0], 0.5, character="Alice") + result[2:]
    again = parse_annotation(
        record(UTTERANCE_REVIEW, task.data, reverted, at=T0 + timedelta(minutes=1)), dict(prior)
    )
    assert [(r["field"], r["old_value"], r["new_value"]) for r in again] == [
        ("text", "hello their", "hello there")
    ]
    assert again[0]["correction_id"] != rows[0]["correction_id"]
    # A second person's annotation that keeps the model's text does not undo the fix.
    other = parse_annotation(
        record(
            UTTERANCE_REVIEW,
            task.data,
            region_items(turns[0], 0.5, character="Alice", flags=["music"]),
            ann_id=7,
        ),
        dict(prior),
    )
    assert [(r["field"], r["new_value"]) for r in other] == [
        ("character", "Alice"),
        ("flags", "music"),
    ]


def test_moved_boundaries_flags_and_new_regions():
    task = first_task(utterances())
    turns = task.data["turns"]
    result = region_items(turns[0], 0.5, start=0.6, flags=["music", "overlap"])
    result += [
        {
            "id": "new1",
            "from_name": "speaker",
            "to_name": "audio",
            "type": "labels",
            "value": {"start": 5.7, "end": 6.3, "channel": 0, "labels": ["SPK_01"]},
        },
        {
            "id": "new1",
            "from_name": "transcript",
            "to_name": "audio",
            "type": "textarea",
            "value": {"start": 5.7, "end": 6.3, "channel": 0, "text": ["hm"]},
        },
    ]
    rows = {r["field"]: r for r in parse_annotation(record(UTTERANCE_REVIEW, task.data, result))}
    assert rows["start"]["new_value"] == "1.100" and rows["start"]["old_value"] == "1.000"
    assert rows["flags"]["new_value"] == "music,overlap"
    added = json.loads(rows["added"]["new_value"])
    assert added == {
        "start": 6.2,
        "end": 6.8,
        "speaker": "SPK_01",
        "character": None,
        "text": "hm",
        "emotion": None,
        "flags": [],
    }
    assert rows["added"]["utterance_id"] == f"{EP}_00006200"


def test_speaker_naming_rows_carry_spans():
    spec = next(
        s for s in build_speaker_tasks(EP, utterances(), [], None, "m") if s.speaker == "SPK_01"
    )
    result = [
        {
            "id": "name",
            "from_name": "name",
            "to_name": "audio",
            "type": "textarea",
            "value": {"text": ["Bob"]},
        },
        {
            "id": "cluster",
            "from_name": "cluster",
            "to_name": "audio",
            "type": "choices",
            "value": {"choices": ["one character"]},
        },
    ]
    rows = parse_annotation(record(SPEAKER_NAMING, spec.data, result))
    assert [(r["field"], r["speaker"], r["new_value"]) for r in rows] == [
        ("speaker_name", "SPK_01", "Bob")
    ]
    assert json.loads(rows[0]["spans"])[0] == [3.0, 4.2]
    cancelled = AnnotationRecord(2, 10, SPEAKER_NAMING, spec.data, result, "a", T0, True)
    assert parse_annotation(cancelled) == []


# --------------------------------------------------------------------------- apply
def corrections_for(utts: pl.DataFrame) -> pl.DataFrame:
    task = first_task(utts)
    turns = task.data["turns"]
    result = region_items(turns[0], 0.5, text="hello their", character="Carol")
    result += region_items(turns[1], 0.5, flags=["not dialogue"])
    rows = parse_annotation(record(UTTERANCE_REVIEW, task.data, result, ann_id=1))
    spec = next(s for s in build_speaker_tasks(EP, utts, [], None, "m") if s.speaker == "SPK_00")
    naming = [
        {
            "id": "name",
            "from_name": "name",
            "to_name": "audio",
            "type": "textarea",
            "value": {"text": ["Alice"]},
        }
    ]
    rows += parse_annotation(
        record(SPEAKER_NAMING, spec.data, naming, ann_id=2, at=T0 + timedelta(minutes=5))
    )
    return corrections_frame(rows)


def test_apply_corrections_per_turn_beats_speaker_name():
    utts = utterances()
    out = apply_corrections(utts, corrections_for(utts)).sort("start")
    by_id = {r["id"]: r for r in out.iter_rows(named=True)}
    first = by_id[f"{EP}_00001000"]
    assert first["text"] == "hello their" and first["text_source"] == "human"
    assert first["words"] is None  # the model's word times no longer match the text
    assert first["character"] == "Carol"  # a per-turn fix always wins
    # Speaker-wide names reach turns through the character map (tests/test_characters.py),
    # not here: the turn keeps the character its speaker was mapped to upstream.
    assert by_id[f"{EP}_00004500"]["character"] is None
    assert by_id[f"{EP}_00050000"]["character"] is None
    assert by_id[f"{EP}_00003000"]["character"] is None
    assert by_id[f"{EP}_00003000"][REVIEW_FLAGS] == ["not dialogue"]
    assert len(by_id[f"{EP}_00001000"][CORRECTION_IDS]) == 2  # text, character
    assert out.height == utts.height and out.columns == [
        *utts.columns,
        REVIEW_FLAGS,
        CORRECTION_IDS,
    ]


def test_corrections_survive_a_rerun_with_moved_turns_and_renumbered_speakers():
    corr = corrections_for(utterances())
    rerun = utterances(shift=0.04, rename={"SPK_00": "SPK_01", "SPK_01": "SPK_00"})
    out = apply_corrections(rerun, corr)
    by_start = {round(r["start"], 2): r for r in out.iter_rows(named=True)}
    assert by_start[1.04]["text"] == "hello their" and by_start[1.04]["character"] == "Carol"
    # The "not dialogue" verdict follows the voice (now called SPK_01), not the old id.
    assert by_start[4.54]["character"] is None and by_start[4.54]["speaker"] == "SPK_01"
    assert by_start[7.04]["character"] is None
    assert by_start[3.04][REVIEW_FLAGS] == ["not dialogue"]


def test_apply_without_corrections_adds_empty_columns_and_latest_wins():
    utts = utterances()
    plain = apply_corrections(utts, None)
    assert plain[REVIEW_FLAGS].to_list() == [[]] * utts.height
    assert plain.drop(REVIEW_FLAGS, CORRECTION_IDS).equals(utts)
    task = first_task(utts)
    turns = task.data["turns"]
    first = parse_annotation(
        record(UTTERANCE_REVIEW, task.data, region_items(turns[0], 0.5, character="Bob"), ann_id=1)
    )
    later = parse_annotation(
        record(
            UTTERANCE_REVIEW,
            task.data,
            region_items(turns[0], 0.5, character="Carol"),
            ann_id=2,
            at=T0 + timedelta(hours=1),
        )
    )
    # Stored out of order: annotation time decides.
    out = apply_corrections(utts, corrections_frame(later + first))
    assert out.filter(pl.col("id") == f"{EP}_00001000")["character"].item() == "Carol"


def test_added_turn_is_inserted_once():
    utts = utterances()
    task = first_task(utts)
    result = [
        {
            "id": "x",
            "from_name": "speaker",
            "to_name": "audio",
            "type": "labels",
            "value": {"start": 8.0, "end": 9.0, "channel": 0, "labels": ["SPK_00"]},
        },
        {
            "id": "x",
            "from_name": "transcript",
            "to_name": "audio",
            "type": "textarea",
            "value": {"start": 8.0, "end": 9.0, "channel": 0, "text": ["huh"]},
        },
    ]
    corr = corrections_frame(parse_annotation(record(UTTERANCE_REVIEW, task.data, result)))
    out = apply_corrections(utts, corr)
    assert out.height == utts.height + 1
    added = out.filter(pl.col("text") == "huh").row(0, named=True)
    assert (added["start"], added["end"], added["speaker"]) == (8.5, 9.5, "SPK_00")
    assert added["language"] == "en" and added["text_source"] == "human"
    assert out["start"].is_sorted()


# --------------------------------------------------------------------------- store
def test_store_is_append_only_and_idempotent(tmp_path: Path):
    db = tmp_path / "voice_assets.duckdb"  # the catalog shares the schema's name
    assert load_corrections(db, EP).is_empty()
    rows = corrections_for(utterances()).to_dicts()
    assert record_corrections(db, rows) == len(rows)
    assert record_corrections(db, rows) == 0
    stored = load_corrections(db, EP)
    assert stored.height == len(rows)
    assert stored["annotated_at"].is_sorted()
    assert load_corrections(db, "other__ep").is_empty()


def _hold_lock(db: str, ready, release) -> None:
    con = duckdb.connect(db)
    ready.set()
    release.wait(30)
    con.close()


def test_busy_database_gives_a_clear_error(tmp_path: Path):
    db = str(tmp_path / "x.duckdb")
    duckdb.connect(db).close()
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(db, ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        with (
            pytest.raises(DatabaseBusyError, match="locked by another process"),
            connect(db, wait_s=1.0),
        ):
            pass
    finally:
        release.set()
        proc.join(30)
    with connect(db, wait_s=5.0) as con:  # free again
        assert con.execute("select 1").fetchone() == (1,)


# --------------------------------------------------------------------------- names
def test_names_match_by_cosine_and_own_episode_wins():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=64), rng.normal(size=64)
    unit = lambda v: (v / np.linalg.norm(v)).astype(np.float32).tolist()  # noqa: E731
    confirmed = pl.DataFrame(
        {
            "series": ["show"] * 2,
            "episode": ["show__ep00", EP],
            "speaker": ["SPK_07", "SPK_01"],
            "name": ["Alice", "Bob"],
            "embedding": [unit(a), unit(b)],
        },
        schema_overrides={"embedding": pl.List(pl.Float32)},
    )
    emb = pl.DataFrame(
        {
            "speaker": ["SPK_00", "SPK_01", "SPK_02"],
            "embedding": [unit(a + 0.1 * rng.normal(size=64)), unit(b), unit(rng.normal(size=64))],
        },
        schema_overrides={"embedding": pl.List(pl.Float32)},
    )
    got = {
        r["speaker"]: r for r in names.suggest_names(emb, confirmed, 0.8, EP).iter_rows(named=True)
    }
    assert got["SPK_00"]["name"] == "Alice" and got["SPK_00"]["score"] > 0.9
    assert got["SPK_00"]["source"] == "show__ep00/SPK_07"
    assert got["SPK_01"]["name"] == "Bob" and got["SPK_01"]["score"] == 1.0
    assert got["SPK_02"]["name"] is None and got["SPK_02"]["score"] < 0.5


# --------------------------------------------------------------------------- cursor
def test_cursor_catches_late_annotations_and_skips_seen_ones():
    def rec(i: int, seconds: float) -> AnnotationRecord:
        return AnnotationRecord(
            i, i, UTTERANCE_REVIEW, {"episode": EP}, [], "a", T0 + timedelta(seconds=seconds)
        )

    first = [rec(1, 0), rec(2, 10)]
    cur = advance(Cursor(), first)
    assert cur.since == T0 + timedelta(seconds=10)
    assert Cursor.parse(cur.dump()) == cur
    # Annotation 3 was saved at t=5 but only became visible after the cursor reached t=10.
    later = [*first, rec(3, 5), rec(4, 20)]
    assert [r.annotation_id for r in fresh_annotations(later, cur)] == [3, 4]
    updated = [rec(1, 30)]  # an edit of annotation 1
    assert [r.annotation_id for r in fresh_annotations(updated, advance(cur, later))] == [1]
    with pytest.raises(Exception, match="unreadable"):
        Cursor.parse("not json")
