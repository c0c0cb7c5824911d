"""Utterance fusion on small hand-made tables: speaker assignment, splits, ids, invariants."""

from __future__ import annotations

import polars as pl
import pytest

from voice_assets.dataset.clips import cut_around_overlaps
from voice_assets.media.subtitles import parse_subtitles
from voice_assets.media.tables import subtitles_table
from voice_assets.speech import alignment as al
from voice_assets.speech.alignment import ALIGNED_SCHEMA
from voice_assets.speech.asr import Word
from voice_assets.speech.fusion import (
    UTTERANCE_SCHEMA,
    fuse_utterances,
    turn_problems,
    utterance_id,
)

EP = "show__ep01"


def _words(spec: list[tuple[str, float, float]]) -> list[dict]:
    return [{"word": w, "start": s, "end": e, "score": 0.9} for w, s, e in spec]


def _aligned(lines: list[dict]) -> pl.DataFrame:
    rows = []
    for i, ln in enumerate(lines):
        words = ln.get("words", [])
        rows.append({
            "episode": EP, "line": ln.get("line", i),
            "start": ln.get("start", words[0]["start"] if words else 0.0),
            "end": ln.get("end", words[-1]["end"] if words else 0.0),
            "text": ln["text"], "words": words, "text_source": ln.get("text_source", "subtitle"),
            "kind": ln.get("kind", "dialogue"), "name": ln.get("name"),
            "drift_s": 0.0, "confidence": ln.get("confidence", 0.8),
        })
    return pl.DataFrame(rows, schema=ALIGNED_SCHEMA)


def _diar(turns: list[tuple[float, float, str, bool]]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"episode": EP, "start": s, "end": e, "speaker": spk, "overlap": ov, "confidence": 0.9}
         for s, e, spk, ov in turns],
        schema={"episode": pl.Utf8, "start": pl.Float64, "end": pl.Float64,
                "speaker": pl.Utf8, "overlap": pl.Boolean, "confidence": pl.Float64})


def test_line_spanning_two_speakers_is_split_at_the_speaker_change():
    words = _words([("Are", 1.0, 1.2), ("you", 1.2, 1.4), ("coming?", 1.4, 1.9),
                    ("No,", 2.3, 2.6), ("I'm", 2.6, 2.8), ("staying.", 2.8, 3.4)])
    aligned = _aligned([{"text": "Are you coming? No, I'm staying.", "words": words,
                         "name": "Aki"}])
    diar = _diar([(0.9, 2.0, "SPK_00", False), (2.2, 3.5, "SPK_01", False)])
    out = fuse_utterances(EP, aligned, diar, "en")
    assert out.columns == list(UTTERANCE_SCHEMA)
    assert out.get_column("speaker").to_list() == ["SPK_00", "SPK_01"]
    assert out.get_column("text").to_list() == ["Are you coming?", "No, I'm staying."]
    assert out.get_column("start").to_list() == [1.0, 2.3]
    assert out.get_column("end").to_list() == [1.9, 3.4]
    assert out.get_column("id").to_list() == [f"{EP}_00001000", f"{EP}_00002300"]
    # Each half keeps only its own words, all inside its turn.
    assert [len(w) for w in out.get_column("words").to_list()] == [3, 3]
    assert turn_problems(out, duration=10.0) == {
        "negative_duration": 0, "outside_episode": 0, "words_outside_turn": 0,
        "duplicate_ids": 0}
    assert out.get_column("subtitle_name").to_list() == ["Aki", "Aki"]
    assert out.get_column("overlap").to_list() == [False, False]
    assert out.get_column("speaker_confidence").to_list() == pytest.approx([0.9, 0.9])
    assert out.get_column("language").to_list() == ["en", "en"]
    for col in ("character", "emotion", "audio_path"):
        assert out.get_column(col).null_count() == 2


def test_one_word_blip_at_a_turn_boundary_stays_with_its_line():
    # The diarization turn ends 150 ms early: the last word overlaps the next speaker.
    words = _words([("I", 1.0, 1.1), ("told", 1.1, 1.4), ("you", 1.4, 1.6),
                    ("already.", 1.62, 2.1)])
    aligned = _aligned([{"text": "I told you already.", "words": words}])
    diar = _diar([(0.9, 1.7, "SPK_00", False), (1.7, 3.0, "SPK_01", False)])
    out = fuse_utterances(EP, aligned, diar)
    # SPK_01's speech after the line has no transcript: it is kept as an untranscribed row.
    extra = out.filter(pl.col("text_source") == "none")
    assert extra.select("start", "end", "speaker", "text").rows() == [(2.1, 3.0, "SPK_01", "")]
    out = out.filter(pl.col("text_source") != "none")
    assert out.height == 1
    assert out.row(0, named=True)["speaker"] == "SPK_00"
    assert out.row(0, named=True)["text"] == "I told you already."


def test_ids_are_stable_across_runs_and_unique_for_simultaneous_starts():
    a = _aligned([
        {"text": "Wait!", "words": _words([("Wait!", 5.0, 5.6)])},
        {"text": "Stop!", "words": _words([("Stop!", 5.0, 5.5)])},
        {"text": "Later.", "words": _words([("Later.", 61.25, 61.9)])},
    ])
    diar = _diar([(4.9, 5.7, "SPK_00", True), (4.9, 5.6, "SPK_01", True),
                  (61.0, 62.0, "SPK_00", False)])
    first = fuse_utterances(EP, a, diar)
    second = fuse_utterances(EP, a.reverse(), diar.reverse())
    assert first.get_column("id").to_list() == second.get_column("id").to_list()
    assert first.get_column("id").to_list() == [
        f"{EP}_00005000", f"{EP}_00005001", f"{EP}_00061250"]
    assert first.get_column("overlap").to_list() == [True, True, False]
    assert utterance_id(EP, 3723.4567) == f"{EP}_03723457"


def test_songs_signs_and_no_speech_lines_are_not_utterances():
    a = _aligned([
        {"text": "Hello there.", "words": _words([("Hello", 1.0, 1.3), ("there.", 1.3, 1.7)])},
        {"text": "♪ la la ♪", "kind": "song", "start": 2.0, "end": 5.0},
        {"text": "CAFE", "kind": "sign", "start": 2.0, "end": 4.0},
        {"text": "Hm.", "kind": "no_speech", "start": 6.0, "end": 6.5},
    ])
    out = fuse_utterances(EP, a, _diar([(0.8, 1.9, "SPK_02", False)]))
    assert out.get_column("text").to_list() == ["Hello there."]


def test_without_diarization_or_words_speaker_is_null_and_line_kept_whole():
    a = _aligned([{"text": "Huh?", "start": 3.0, "end": 3.4, "words": []},
                  {"text": "so what now", "text_source": "asr",
                   "words": _words([("so", 4.0, 4.2), ("what", 4.2, 4.5), ("now", 4.5, 4.9)])}])
    out = fuse_utterances(EP, a, None)
    assert out.get_column("speaker").to_list() == [None, None]
    assert out.get_column("text").to_list() == ["Huh?", "so what now"]
    assert out.get_column("text_source").to_list() == ["subtitle", "asr"]
    assert out.get_column("text_confidence").to_list() == pytest.approx([0.8, 0.9])
    assert out.get_column("speaker_confidence").to_list() == [0.0, 0.0]


def test_turn_problems_counts_each_broken_invariant():
    rows = pl.DataFrame([
        {"id": "a", "start": 1.0, "end": 0.5, "words": []},
        {"id": "a", "start": 2.0, "end": 99.0,
         "words": [{"word": "x", "start": 1.0, "end": 1.5, "score": 1.0}]},
    ])
    assert turn_problems(rows, duration=50.0) == {
        "negative_duration": 1, "outside_episode": 1, "words_outside_turn": 1,
        "duplicate_ids": 1}


def test_overlapped_tail_stays_with_its_line_when_a_concurrent_line_explains_the_other_voice():
    # Joe is finishing "let us go sledding" while Rex already talks; diarization gives the
    # overlapped stretch to Rex. Rex's own line accounts for that voice: no split.
    joe = _words([("The", 8.6, 8.8), ("snow", 8.8, 9.2), ("is", 9.2, 9.4), ("here,", 9.4, 9.9),
                  ("let", 10.0, 10.3), ("us", 10.3, 10.4), ("go", 10.45, 10.7),
                  ("sledding!", 10.7, 11.8)])
    rex = _words([("It", 10.3, 10.5), ("rained", 10.5, 11.0), ("on", 11.0, 11.2),
                  ("my", 11.2, 11.4), ("birthday.", 11.4, 12.6)])
    a = _aligned([{"text": "The snow is here, let us go sledding!", "words": joe, "name": "Joe"},
                  {"text": "It rained on my birthday.", "words": rex, "name": "Rex"}])
    diar = _diar([(8.5, 10.25, "SPK_00", False), (10.25, 10.5, "SPK_00", True),
                  (10.5, 12.7, "SPK_01", False)])
    out = fuse_utterances(EP, a, diar)
    assert out.get_column("text").to_list() == [
        "The snow is here, let us go sledding!", "It rained on my birthday."]
    assert out.get_column("speaker").to_list() == ["SPK_00", "SPK_01"]
    assert out.get_column("overlap").to_list() == [True, True]


def test_diarized_speech_without_any_transcript_still_gets_its_rows():
    # ASR heard nothing in 0-3 s; diarization found two voices there.
    words = _words([("Hello", 4.0, 4.4), ("there.", 4.4, 4.9)])
    aligned = _aligned([{"text": "Hello there.", "words": words}])
    diar = _diar([(0.5, 1.6, "SPK_00", False), (1.7, 1.9, "SPK_01", False),
                  (2.0, 3.0, "SPK_01", False), (3.9, 5.0, "SPK_00", False)])
    out = fuse_utterances(EP, aligned, diar)
    assert out.select("start", "end", "speaker", "text_source").rows() == [
        (0.5, 1.6, "SPK_00", "none"), (1.7, 3.0, "SPK_01", "none"),
        (4.0, 4.9, "SPK_00", "subtitle")]
    assert turn_problems(out, duration=6.0)["duplicate_ids"] == 0


def test_overlap_is_measured_per_word_and_a_reply_over_a_line_counts_even_in_one_voice():
    # Rex: "We got the job, we start on Monday!"; Robo's "Wait!" lands on "on Monday!".
    # Diarization hears both as one voice (SPK_02) and flags nothing; the subtitle lines
    # say two people talk at once.
    rex = _words([("We", 45.0, 45.2), ("got", 45.2, 45.4), ("the", 45.4, 45.5),
                  ("job,", 45.5, 45.9), ("we", 46.0, 46.1), ("start", 46.1, 46.4),
                  ("on", 46.4, 46.5), ("Monday!", 46.5, 46.8)])
    robo = _words([("Wait!", 46.35, 46.8)])
    a = _aligned([{"text": "We got the job, we start on Monday!", "words": rex, "name": "Rex"},
                  {"text": "Wait!", "words": robo, "name": "Robo"}])
    diar = _diar([(44.9, 46.9, "SPK_02", False)])
    out = fuse_utterances(EP, a, diar).sort("start")
    assert out["overlap"].to_list() == [True, True]
    words = out["words"][0].to_list()
    assert [w["word"] for w in words if w["overlap_s"] > 0] == ["start", "on", "Monday!"]
    assert [w["overlap_s"] for w in words][:5] == [0.0] * 5
    assert out["overlap_s"].to_list() == pytest.approx([0.05 + 0.1 + 0.3, 0.45])


def test_a_clean_line_next_to_an_overlap_has_no_overlapped_seconds():
    joe = _words([("Turn", 50.5, 50.8), ("left", 50.8, 51.1), ("here.", 51.1, 51.6)])
    grace = _words([("Okay,", 52.0, 52.4), ("thanks.", 52.4, 52.9)])
    a = _aligned([{"text": "Turn left here.", "words": joe}, {"text": "Okay, thanks.",
                                                              "words": grace}])
    diar = _diar([(50.4, 51.7, "SPK_01", False), (51.9, 53.0, "SPK_03", False)])
    out = fuse_utterances(EP, a, diar)
    assert out["overlap"].to_list() == [False, False]
    assert out["overlap_s"].to_list() == [0.0, 0.0]


# --- from a subtitle file: cues shown at once, through alignment, fusion and the clip cut ------


def _from_subtitles(tmp_path, srt: str, heard: list[tuple[str, float, float]],
                    speech: tuple[float, float]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The subtitles table of ``srt`` and the utterances the clip builder would cut from it
    (after `cut_around_overlaps`), with ``heard`` as the ASR's words and one diarized voice
    over ``speech``."""
    path = tmp_path / "ep.srt"
    path.write_text(srt, encoding="utf-8")
    table = subtitles_table(EP, parse_subtitles(path))
    words = [Word(w, s, e, 0.9) for w, s, e in heard]
    result = al.align_subtitles(al.subtitle_lines(table), words, None, [speech], "en")
    utterances = fuse_utterances(EP, al.aligned_frame(EP, result),
                                 _diar([(*speech, "SPK_02", False)]), "en")
    return table, cut_around_overlaps(utterances, min_s=1.0)


def _said(text: str, start: float, step: float = 0.29) -> list[tuple[str, float, float]]:
    return [(w, round(start + step * i, 3), round(start + step * (i + 1) - 0.01, 3))
            for i, w in enumerate(text.split())]


REPLY_OVER_A_LINE = """1
00:00:45,000 --> 00:00:48,000
REX: We got the job and we start on Monday morning.

2
00:00:46,500 --> 00:00:50,000
ROBO: Wait for me, I am coming with all of you.
"""


def test_a_line_shown_over_another_that_asr_did_not_hear_is_never_clean_speech(tmp_path):
    # Robo talks over Rex; the ASR hears only Rex. Robo's words get times spread over his
    # cue, which are a guess: where they pass Rex's last word they used to look like clean
    # speech, and a clip of Robo's text was cut from audio no one had placed his words in.
    rex = "we got the job and we start on monday morning"
    table, out = _from_subtitles(tmp_path, REPLY_OVER_A_LINE, _said(rex, 45.0), (44.9, 50.0))
    assert table["overlaps_other"].to_list() == [True, True]
    robo = out.filter(pl.col("subtitle_name") == "ROBO")
    assert robo.height >= 1 and robo["overlap"].all()
    clean = out.filter(~pl.col("overlap") & (pl.col("text_source") == "subtitle"))
    assert clean["subtitle_name"].to_list() == ["REX"]
    assert all(w["score"] > 0 for w in clean["words"][0])  # words the ASR heard, only
    # Rex's words before Robo comes in are his alone: that much stays a clean clip; the
    # rest of his line, under Robo's, does not.
    assert clean["text"][0].startswith("We got the job and")
    assert "Monday" not in clean["text"][0] and clean["end"][0] < 46.8


def test_lines_shown_together_but_heard_one_after_the_other_stay_clean(tmp_path):
    # Two cues on screen together, but the ASR heard Aki, then Ben: the words are where
    # they were said and nothing is spoken over.
    srt = ("1\n00:00:10,000 --> 00:00:14,000\nAKI: Where are you going tonight?\n\n"
           "2\n00:00:10,000 --> 00:00:14,000\nBEN: Nowhere special at all.\n")
    heard = _said("where are you going tonight", 10.0) + _said("nowhere special at all", 11.8)
    table, out = _from_subtitles(tmp_path, srt, heard, (9.9, 13.0))
    assert table["overlaps_other"].to_list() == [True, True]
    said = out.filter(pl.col("text_source") == "subtitle").sort("start")
    assert said.select("subtitle_name", "text", "overlap").rows() == [
        ("AKI", "Where are you going tonight?", False), ("BEN", "Nowhere special at all.", False)]


def test_a_cue_repeated_by_merged_tracks_is_one_clean_line(tmp_path):
    # The same cue twice (a merged second track, without the name): before, each copy's
    # words covered the other's and the line was lost as overlapped speech.
    srt = ("1\n00:00:20,000 --> 00:00:22,500\nAKI: I really do not know that.\n\n"
           "2\n00:00:20,000 --> 00:00:22,500\nI really do not know that.\n")
    table, out = _from_subtitles(tmp_path, srt, _said("i really do not know that", 20.0),
                                 (19.9, 21.9))
    assert table.select("name", "overlaps_other").rows() == [("AKI", False)]
    said = out.filter(pl.col("text_source") == "subtitle")
    assert said.select("subtitle_name", "text", "overlap").rows() == [
        ("AKI", "I really do not know that.", False)]
