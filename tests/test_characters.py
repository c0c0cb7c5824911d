"""Characters domain code on hand-made voices: the cast file, linking, naming, merges, splits.

Embeddings here are random unit vectors (one per voice, plus small per-episode noise), which is
what the linking and naming code sees of real speakers; the series test in
test_characters_series.py runs the same code on real speaker embeddings of generated episodes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from voice_assets.characters.cast import BACKGROUND, CastError, load_cast, open_cast
from voice_assets.characters.evidence import subtitle_votes
from voice_assets.characters.mapping import (
    EpisodeEvidence,
    apply_character_map,
    expected_maps,
    map_episode,
    registry_table,
    stale_episodes,
)
from voice_assets.characters.naming import SCOPE_SPEAKER, HumanName, Reference
from voice_assets.characters.store import locked_ledger, read_ledger, write_ledger
from voice_assets.characters.voices import Ledger

DIM = 32
RNG = np.random.default_rng(7)
VOICES = {v: (lambda x: x / np.linalg.norm(x))(RNG.normal(size=DIM)) for v in "ABCDEF"}


def _noisy(voice: str, seed: int, noise: float = 0.08) -> list[float]:
    x = VOICES[voice] + noise * np.random.default_rng(seed).normal(size=DIM) / np.sqrt(DIM)
    return list(x / np.linalg.norm(x))


def _evidence(episode: str, speakers: dict[str, tuple[str, float]],
              names: dict[str, str] | None = None, seed: int = 0) -> EpisodeEvidence:
    """speakers: SPK -> (true voice, seconds); names: SPK -> subtitle name of all its lines."""
    emb = pl.DataFrame(
        [{"episode": episode, "speaker": s, "embedding": _noisy(v, seed + i), "dim": DIM,
          "model": "test", "speech_s": secs, "n_windows": 10}
         for i, (s, (v, secs)) in enumerate(sorted(speakers.items()))],
        schema={"episode": pl.Utf8, "speaker": pl.Utf8, "embedding": pl.List(pl.Float32),
                "dim": pl.Int64, "model": pl.Utf8, "speech_s": pl.Float64,
                "n_windows": pl.Int64})
    turns, lines, t = [], [], 0.0
    for s, (_, secs) in sorted(speakers.items()):
        n = max(1, round(secs / 2))
        for _ in range(n):
            d = secs / n
            turns.append({"episode": episode, "start": t, "end": t + d, "speaker": s,
                          "overlap": False, "confidence": 0.9})
            lines.append({"start": t, "end": t + d, "kind": "dialogue",
                          "name": (names or {}).get(s)})
            t += d + 0.5
    return EpisodeEvidence(episode, emb, pl.DataFrame(turns), pl.DataFrame(lines))


def _chars(df: pl.DataFrame) -> dict[str, str]:
    return dict(zip(df["speaker"], df["character"], strict=True))


# ----------------------------------------------------------------------------- cast file
def _cast_file(tmp_path: Path, text: str, series: str = "My Show") -> Path:
    folder = tmp_path / "inbox" / series
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "characters.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "inbox"


def test_cast_file_maps_aliases_and_background(tmp_path):
    (tmp_path / "inbox" / "My Show" / "refs").mkdir(parents=True)
    (tmp_path / "inbox" / "My Show" / "refs" / "rex.wav").write_bytes(b"RIFF")
    inbox = _cast_file(tmp_path, "characters:\n  - name: Rex\n    aliases: [REX, Rexy]\n"
                       "    reference_clips: [refs/rex.wav]\n  - Grace\nbackground: [Crowd]\n")
    cast = load_cast(inbox, "my-show")
    assert cast.names == ["Rex", "Grace"]
    assert cast.canonical(" rexy ") == "Rex"
    assert cast.canonical("GRACE") == "Grace"
    assert cast.canonical("crowd") == BACKGROUND
    assert cast.canonical("Waiter") == "Waiter"  # open cast: a new name is a new character
    assert cast.characters[0].reference_clips[0].name == "rex.wav"
    assert load_cast(inbox, "other-show").names == []


@pytest.mark.parametrize(
    ("text", "entry", "cause"),
    [
        ("characters:\n  - name: Rex\n  - name: rex\n", "characters[1] (rex)", "duplicate"),
        ("characters:\n  - name: Rex\n    aliases: [Grace]\n  - name: Grace\n",
         "characters[1] (Grace)", "already used by character 'Rex'"),
        ("characters:\n  - name: Rex\n    reference_clips: [missing.wav]\n",
         "characters[0] (Rex)", "missing.wav does not exist"),
        ("characters:\n  - name: Rex\n    faces: [rex.png]\n",
         "characters[0] (Rex)", "face picture"),
        ("characters:\n  - name: Rex\n    colour: red\n", "characters[0] (Rex)", "colour"),
        ("characters:\n  - name: voice-03\n", "characters[0] (voice-03)", "reserved"),
        ("characters:\n  - aliases: [x]\n", "characters[0]", "non-empty 'name'"),
        ("charaters: []\n", "top level", "unknown key"),
        ("characters: [Rex\n", "file", "not valid YAML"),
    ],
)
def test_cast_file_errors_name_the_file_and_the_entry(tmp_path, text, entry, cause):
    inbox = _cast_file(tmp_path, text)
    with pytest.raises(CastError) as err:
        load_cast(inbox, "my-show")
    assert err.value.entry == entry
    assert cause in err.value.cause
    assert str(inbox / "My Show" / "characters.yaml") in str(err.value)


def test_strict_cast_refuses_an_unknown_human_name_naming_the_label(tmp_path):
    inbox = _cast_file(tmp_path, "strict: true\ncharacters: [Rex, Grace]\n")
    cast = load_cast(inbox, "my-show")
    ledger, _ = map_episode(Ledger("my-show"), _evidence("my-show__e1", {"SPK_00": ("A", 9)}),
                            cast)
    bad = HumanName("my-show__e1", "SPK_00", "Rexx", ref="annotation 41")
    with pytest.raises(CastError) as err:
        expected_maps(ledger, cast, [bad])
    assert "annotation 41" in str(err.value) and "unknown character 'Rexx'" in str(err.value)
    assert "my-show__e1/SPK_00" in str(err.value)
    # Subtitle names outside a strict cast are not labels: they are ignored, not fatal.
    ev = _evidence("my-show__e1", {"SPK_00": ("A", 9)}, {"SPK_00": "Waiter"})
    _, df = map_episode(Ledger("my-show"), ev, cast)
    assert df["source"].to_list() == ["voice-id"]


# ----------------------------------------------------------------------------- linking
def test_voices_link_across_episodes_and_a_new_character_gets_its_own_voice():
    ledger = Ledger("s")
    ledger, m1 = map_episode(ledger, _evidence("s__e1", {"SPK_00": ("A", 20), "SPK_01": ("B", 15),
                                                         "SPK_02": ("C", 9)}), open_cast("s"))
    assert _chars(m1) == {"SPK_00": "voice-01", "SPK_01": "voice-02", "SPK_02": "voice-03"}
    # Episode 2 numbers the speakers differently and adds voice D.
    ev2 = _evidence("s__e2", {"SPK_00": ("C", 12), "SPK_01": ("D", 10), "SPK_02": ("A", 18),
                              "SPK_03": ("B", 7)}, seed=100)
    ledger, m2 = map_episode(ledger, ev2, open_cast("s"))
    assert _chars(m2) == {"SPK_00": "voice-03", "SPK_01": "voice-04", "SPK_02": "voice-01",
                          "SPK_03": "voice-02"}
    assert m2.filter(pl.col("speaker") == "SPK_01")["link"].to_list() == ["new"]
    # Re-running an episode keeps every id; the counter never reuses a number.
    again, m2b = map_episode(ledger, ev2, open_cast("s"))
    assert _chars(m2b) == _chars(m2)
    assert again.next_voice == ledger.next_voice == 5
    assert len(again.members) == 7


def test_one_line_extra_is_background_and_stays_out_of_the_ledger():
    ledger, m = map_episode(Ledger("s"), _evidence("s__e1", {"SPK_00": ("A", 20),
                                                             "SPK_01": ("E", 1.2)}),
                            open_cast("s"))
    assert _chars(m) == {"SPK_00": "voice-01", "SPK_01": BACKGROUND}
    assert {mm.speaker for mm in ledger.members} == {"SPK_00"}


def test_a_voice_first_heard_in_a_later_run_keeps_its_id_when_its_episode_reruns():
    ledger, _ = map_episode(Ledger("s"), _evidence("s__e1", {"SPK_00": ("A", 20)}),
                            open_cast("s"))
    ev2 = _evidence("s__e2", {"SPK_00": ("A", 10), "SPK_01": ("F", 12)}, seed=5)
    ledger, m2 = map_episode(ledger, ev2, open_cast("s"))
    # A re-diarization that swaps the ids of episode 2 still finds the same voices.
    swapped = _evidence("s__e2", {"SPK_01": ("A", 10), "SPK_00": ("F", 12)}, seed=9)
    _, m2b = map_episode(ledger, swapped, open_cast("s"))
    assert _chars(m2)["SPK_01"] == _chars(m2b)["SPK_00"] == "voice-02"
    assert m2b.filter(pl.col("speaker") == "SPK_00")["link"].to_list() == ["kept"]


# ----------------------------------------------------------------------------- naming
def _two_episodes() -> tuple[Ledger, pl.DataFrame, pl.DataFrame]:
    cast = open_cast("s")
    ledger, m1 = map_episode(Ledger("s"), _evidence(
        "s__e1", {"SPK_00": ("A", 20), "SPK_01": ("B", 15), "SPK_02": ("C", 9)},
        {"SPK_00": "Rex", "SPK_01": "GRACE"}), open_cast("s", ["Grace"]))
    ledger, m2 = map_episode(ledger, _evidence(
        "s__e2", {"SPK_00": ("B", 12), "SPK_01": ("A", 10), "SPK_02": ("C", 8)}, seed=50), cast)
    return ledger, m1, m2


def test_subtitle_names_name_the_voice_in_an_episode_without_subtitles():
    _, m1, m2 = _two_episodes()
    assert _chars(m1) == {"SPK_00": "Rex", "SPK_01": "Grace", "SPK_02": "voice-03"}
    assert m1["source"].to_list() == ["subtitles", "subtitles", "voice-id"]
    assert _chars(m2) == {"SPK_00": "Grace", "SPK_01": "Rex", "SPK_02": "voice-03"}
    assert m2["source"].to_list() == ["voice", "voice", "voice-id"]
    assert (m2.filter(pl.col("source") == "voice")["confidence"] > 0.8).all()


def test_human_names_outrank_subtitles_and_follow_the_voice():
    ledger, m1, m2 = _two_episodes()
    cast = open_cast("s")
    named = [HumanName("s__e2", "SPK_02", "Pip", at=datetime(2026, 1, 1))]
    want = expected_maps(ledger, cast, named)
    assert want.filter(pl.col("speaker") == "SPK_02")["character"].to_list() == ["Pip", "Pip"]
    current = pl.concat([m1, m2]).select("episode", "speaker", "character")
    # One name for voice-03 changes both episodes, and only voice-03's rows.
    assert stale_episodes(current, want) == {
        "s__e1": ["SPK_02: voice-03 -> Pip"], "s__e2": ["SPK_02: voice-03 -> Pip"]}
    # A human name beats the subtitles of the speaker's own episode.
    fix = [HumanName("s__e1", "SPK_00", "Rex Senior", at=datetime(2026, 1, 2))]
    want = expected_maps(ledger, cast, fix)
    assert stale_episodes(current, want) == {
        "s__e1": ["SPK_00: Rex -> Rex Senior"], "s__e2": ["SPK_01: Rex -> Rex Senior"]}
    # The embedding a name was given with finds the speaker after a re-diarization.
    moved = [HumanName("s__e2", "SPK_09", "Pip", embedding=tuple(_noisy("C", 3)),
                       at=datetime(2026, 1, 3))]
    assert expected_maps(ledger, cast, moved).filter(
        pl.col("character") == "Pip").height == 2


def test_merge_by_voice_id_and_split_by_scope_touch_only_their_episodes():
    ledger, m1, m2 = _two_episodes()
    ledger, m3 = map_episode(ledger, _evidence("s__e3", {"SPK_00": ("D", 14),
                                                         "SPK_01": ("A", 9)}, seed=70),
                             open_cast("s"))
    assert _chars(m3) == {"SPK_00": "voice-04", "SPK_01": "Rex"}
    current = pl.concat([m1, m2, m3]).select("episode", "speaker", "character")
    cast = open_cast("s")
    merge = [HumanName("s__e3", "SPK_00", "voice-03", at=datetime(2026, 1, 1))]
    assert stale_episodes(current, expected_maps(ledger, cast, merge)) == {
        "s__e3": ["SPK_00: voice-04 -> voice-03"]}
    # Merging into a named voice takes its name.
    merge_named = [HumanName("s__e3", "SPK_00", "voice-01", at=datetime(2026, 1, 1))]
    assert stale_episodes(current, expected_maps(ledger, cast, merge_named)) == {
        "s__e3": ["SPK_00: voice-04 -> Rex"]}
    split = [HumanName("s__e2", "SPK_01", "Rex Junior", scope=SCOPE_SPEAKER,
                       at=datetime(2026, 1, 1))]
    assert stale_episodes(current, expected_maps(ledger, cast, split)) == {
        "s__e2": ["SPK_01: Rex -> Rex Junior"]}


def test_reference_clip_names_a_voice_nobody_subtitled():
    ledger, _m1, _ = _two_episodes()
    refs = [Reference("Cora", tuple(_noisy("C", 999)), "test", "refs/cora.wav")]
    want = expected_maps(ledger, open_cast("s"), (), refs)
    cora = want.filter(pl.col("character") == "Cora")
    assert cora.height == 2 and set(cora["source"]) == {"reference"}


# ----------------------------------------------------------------------------- tables
def test_subtitle_votes_weigh_each_speaker_by_the_seconds_it_covers():
    diar = pl.DataFrame({"start": [0.0, 2.0], "end": [2.0, 3.0], "speaker": ["A", "B"]})
    aligned = pl.DataFrame({"start": [0.0], "end": [3.0], "kind": ["dialogue"], "name": ["rex"]})
    votes = subtitle_votes(aligned, diar, open_cast("s", ["Rex"]).canonical)
    assert votes == {"A": {"Rex": 2.0}, "B": {"Rex": 1.0}}


def test_apply_character_map_fills_every_turn_of_a_mapped_speaker():
    _, m1, _ = _two_episodes()
    utt = pl.DataFrame({"id": ["a", "b", "c"], "speaker": ["SPK_00", "SPK_02", None],
                        "character": [None, None, None]},
                       schema={"id": pl.Utf8, "speaker": pl.Utf8, "character": pl.Utf8})
    out = apply_character_map(utt, m1)
    assert out.columns == ["id", "speaker", "character", "character_confidence",
                           "character_source"]
    assert out["character"].to_list() == ["Rex", "voice-03", None]
    assert out["character_source"].to_list() == ["subtitles", "voice-id", None]


def test_registry_lists_each_character_once_with_a_prototype(tmp_path):
    _ledger, m1, m2 = _two_episodes()
    cmap = pl.concat([m1, m2])
    emb = pl.concat([_evidence("s__e1", {"SPK_00": ("A", 20), "SPK_01": ("B", 15),
                                         "SPK_02": ("C", 9)}).embeddings,
                     _evidence("s__e2", {"SPK_00": ("B", 12), "SPK_01": ("A", 10),
                                         "SPK_02": ("C", 8)}, seed=50).embeddings])
    reg = registry_table(cmap, {}, embeddings=emb.select("episode", "speaker", "embedding"))
    assert sorted(reg["character"]) == ["Grace", "Rex", "voice-03"]
    rex = reg.filter(pl.col("character") == "Rex").row(0, named=True)
    assert rex["episodes"] == 2 and rex["voices"] == ["voice-01"] and rex["kind"] == "named"
    assert float(np.asarray(rex["prototype"]) @ VOICES["A"]) > 0.95


def test_ledger_round_trips_under_its_lock(tmp_path):
    ledger, _, _ = _two_episodes()
    with locked_ledger(tmp_path, "s") as current:
        assert current.members == ()
        write_ledger(tmp_path, ledger)
    back = read_ledger(tmp_path, "s")
    assert back.next_voice == ledger.next_voice
    assert {(m.episode, m.speaker, m.voice) for m in back.members} == \
        {(m.episode, m.speaker, m.voice) for m in ledger.members}
    (tmp_path / "characters" / "s" / "voices.json").write_text("{broken")
    with pytest.raises(Exception, match="voice ledger is unreadable"):
        read_ledger(tmp_path, "s")


def test_a_short_reply_keeps_its_subtitle_name_when_diarization_gave_it_to_a_neighbour():
    _, m1, _ = _two_episodes()  # SPK_00 Rex, SPK_01 Grace (subtitles), SPK_02 voice-03
    utt = pl.DataFrame({
        "id": ["a", "b", "c", "d"], "start": [0.0, 2.0, 4.0, 8.0], "end": [1.8, 2.6, 6.0, 8.5],
        "speaker": ["SPK_00", "SPK_00", "SPK_00", "SPK_00"],
        "character": [None] * 4, "subtitle_name": ["Rex", "grace", "Grace", "Grace"],
        "split_line": [False, False, False, True]})
    out = apply_character_map(utt, m1, open_cast("s", ["Grace", "Rex"]).canonical)
    # The 0.6 s "grace" reply is Grace's; a 2 s line or a split line keeps its speaker's.
    assert out["character"].to_list() == ["Rex", "Grace", "Rex", "Rex"]
    assert out["character_source"].to_list() == ["subtitles", "subtitle-line", "subtitles",
                                                 "subtitles"]


def test_a_voice_twin_is_told_apart_turn_by_turn_by_the_face_that_speaks():
    from voice_assets.faces.identity import face_turns

    # SPK_00 is one voice for two faces: Joe (tracks 1, 3) and Mia (track 2).
    speaking = pl.DataFrame({
        "episode": ["s__e"] * 5, "start": [0.0, 3.0, 6.0, 9.0, 12.0],
        "end": [2.5, 5.5, 8.5, 11.0, 14.0], "speaker": ["SPK_00"] * 4 + ["SPK_01"],
        "track_id": [1, 2, 3, 2, 4]}, schema_overrides={"track_id": pl.Int32})
    named = {1: ("Joe", 0.9), 2: ("Mia", 0.9), 3: ("Joe", 0.9), 4: ("Rex", 0.9)}
    turns = face_turns(speaking, named)
    assert list(turns) == ["SPK_00"]  # SPK_01's face agrees with itself: left to the map
    assert [c for *_, c in turns["SPK_00"]] == ["Joe", "Mia", "Joe", "Mia"]
    # A second face on under a quarter of the named seconds is a tracking slip, not a twin.
    slip = speaking.with_columns(pl.when(pl.col("start") == 3.0).then(1).otherwise(
        pl.col("track_id")).cast(pl.Int32).alias("track_id"))
    assert face_turns(slip, named) == {}

    _, m1, _ = _two_episodes()  # SPK_00 is Rex by subtitles
    m1 = m1.with_columns(pl.when(pl.col("speaker") == "SPK_00").then(pl.lit(
        [{"start": s, "end": e, "character": c} for s, e, c in turns["SPK_00"]],
        dtype=m1.schema["face_turns"])).otherwise(pl.col("face_turns")).alias("face_turns"))
    utt = pl.DataFrame({"id": ["a", "b", "c", "d"], "start": [0.2, 3.1, 6.1, 20.0],
                        "end": [2.4, 5.0, 8.0, 21.0], "speaker": ["SPK_00"] * 4,
                        "character": [None] * 4}, schema_overrides={"character": pl.Utf8})
    out = apply_character_map(utt, m1)
    assert out["character"].to_list() == ["Joe", "Mia", "Joe", "Rex"]
    assert out["character_source"].to_list() == ["faces-turn"] * 3 + ["subtitles"]
    # A person's name for the speaker is never overridden.
    human = m1.with_columns(pl.lit("human").alias("source"))
    assert set(apply_character_map(utt, human)["character_source"]) == {"human"}
