"""Japanese end to end: a generated anime-style episode (three Kokoro voices, a Japanese .ass
with character names, music 17 dB under the speech) through the real assets up to clips, then
the trainer exports.

Japanese subtitles are written without spaces and spell words in kanji where Whisper may write
kana, so alignment compares SudachiPy readings of morphemes; the English-only default ASR model
hands a Japanese-tagged track to the multilingual Whisper base that ships in a package.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scoring import attribution
from testdata import UP_TO_CLIPS, EpisodeHome, step_errors

from voice_assets.dataset.exports import character_dirs, dataset_rows, export_series
from voice_assets.dataset.splits import SplitConfig, assign_splits
from voice_assets.partitions import episode_key
from voice_assets.speech.japanese import has_cjk
from voice_assets.speech.wer import word_error_rate
from voice_assets.synth import generate_episode
from voice_assets.synth.script import JAPANESE_CAST


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    home = EpisodeHome(tmp_path_factory.mktemp("japanese"))
    ep = generate_episode(home.layout.inbox / "anime", series="anime", name="E1",
                          cast=JAPANESE_CAST, seed=1, index=1, turns=20, interjections=3,
                          overlaps=1, music_db=-17.0)
    key = episode_key("anime", "E1")
    home.instance.add_dynamic_partitions("episodes", [key])
    result = home.materialize(key, UP_TO_CLIPS)
    assert result.success, step_errors(result)
    return home, key, ep, result


def test_generated_episode_is_japanese(episode):
    _, _, ep, _ = episode
    text = ep.subtitles.read_text(encoding="utf-8")
    names = {u.character for u in ep.utterances}
    assert names == set(JAPANESE_CAST)
    assert all(has_cjk(u.text) for u in ep.utterances)
    assert all(f",{u.character}," in text for u in ep.utterances[:3])  # Name field per line


def test_multilingual_model_transcribes_the_japanese_track(episode):
    home, key, ep, result = episode
    meta = result.asset_materializations_for_node("transcript")[0].metadata
    assert meta["language"].value == "ja" and meta["model"].value == "base"
    transcript = home.table("transcript", key).sort("start")
    cer = word_error_rate([u.text for u in sorted(ep.utterances, key=lambda u: u.start)],
                          transcript["text"].to_list(), language="ja")
    assert cer <= 0.25, cer  # character error rate; measured 0.13 under the music


def test_subtitle_lines_align_to_true_boundaries(episode):
    home, key, ep, _ = episode
    aligned = home.table("aligned_transcript", key).filter(pl.col("kind") == "dialogue")
    by_text = {r["text"]: r for r in aligned.iter_rows(named=True)}
    assert {u.text for u in ep.utterances} <= set(by_text)
    errors = [abs(by_text[u.text][edge] - getattr(u, edge)) for u in ep.utterances
              for edge in ("start", "end")]
    assert float(np.median(errors)) <= 0.08, np.median(errors)  # measured 0.06 s
    matched = [by_text[u.text]["confidence"] > 0 for u in ep.utterances]
    # One reply said under another line is not heard by ASR: its subtitle time is kept.
    assert sum(matched) / len(matched) >= 0.95, matched
    words = [w["word"] for r in aligned.iter_rows(named=True) for w in r["words"]]
    assert all(" " not in w for w in words)  # morphemes, not one word per line
    assert len(words) >= 5 * aligned.height


def test_rows_are_named_by_subtitle_names_and_clips_keep_japanese_text(episode):
    home, key, ep, _ = episode
    utterances = home.table("utterances", key)
    score = attribution(utterances, ep.utterances)
    assert score >= 0.95, score
    clips = home.table("clips", key)
    kept = clips.filter(pl.col("keep"))
    assert set(kept["character"]) == set(JAPANESE_CAST)
    texts = [u.text for u in ep.utterances]
    for text in kept["text"]:
        assert " " not in text and has_cjk(text)
        assert any(text in t or t in text for t in texts), text  # whole lines or their parts


def test_gpt_sovits_list_says_ja(episode, tmp_path):
    home, key, _, _ = episode
    clips = home.table("clips", key)
    splits, _ = assign_splits(clips, config=SplitConfig(min_groups_for_holdout=3))
    emotion = pl.DataFrame({"id": clips["id"], "emotion": ["neutral"] * clips.height})
    rows = dataset_rows(clips, splits, emotion)
    export_series(rows, tmp_path, "anime", rvc_rate=40_000)
    lines = []
    for folder in character_dirs(rows["character"].to_list()).values():
        lst = tmp_path / "anime" / "gpt_sovits" / folder / f"{folder}.list"
        if lst.exists():
            lines += lst.read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        _path, _speaker, language, text = line.split("|")
        assert language == "ja" and has_cjk(text) and " " not in text


def test_readings_match_kanji_against_kana_and_punctuation_takes_no_time():
    from voice_assets.speech.alignment import tokens
    from voice_assets.speech.japanese import join_words, timed_readings, word_pieces

    assert tokens("今日は雨ですね。") == tokens("きょうはあめですね") == [
        "キョウ", "ハ", "アメ", "デス", "ネ"]
    assert word_pieces("今日は雨。OK、行こう！") == [
        ("今日", 1), ("は", 1), ("雨。", 1), ("OK、", 1), ("行こう！", 1)]
    # Whisper's last piece carries the "。": the word still ends where the piece ends.
    timed = timed_readings([("今", 0.0, 0.2), ("日", 0.2, 0.4), ("だ。", 0.4, 0.6)])
    assert timed == [("キョウ", 0.0, 0.4), ("ダ", 0.4, 0.6)]
    assert join_words(["今日", "は", "OK", "yes", "です"]) == "今日はOK yesです"
    assert join_words(["Hello", "there."]) == "Hello there."


def test_language_hint_from_track_tag_or_subtitle_kana():
    from voice_assets.speech.asr import language_hint

    assert language_hint("jpn") == "ja" and language_hint("eng") == "en"
    assert language_hint(None, ["今日は雨ですね。", "待って！"]) == "ja"
    assert language_hint(None, ["Hello there."]) is None
    assert language_hint("und") is None
