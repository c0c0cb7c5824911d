"""Clean clips from generated episodes with truth: yield, purity and overlap, scored as the
maintainers score them (shared metrics: kept clean speech, purity, overlap per second).

Two episodes of four characters, music 17 dB under the speech, three overlapped lines and four
interjections each, run through the real assets (spleeter, silero VAD, GE2E diarization,
whisper tiny.en, alignment, utterances, clips): ``E1`` with a subtitle file, ``E2`` with
none (the transcript is ASR alone). And a real recording: the two-speaker telephone call that
ships in the pyannote.audio wheel, with the series music 18 dB under its speech.
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest
import soundfile as sf
from scoring import Truth, rttm_turns
from testdata import UP_TO_CLIPS, EpisodeHome, pyannote_sample, step_errors

from voice_assets.partitions import episode_key
from voice_assets.speech.fusion import word_is_overlapped
from voice_assets.speech.wer import word_error_rate
from voice_assets.synth import generate_episode
from voice_assets.synth.music import Theme, music

CAST = ("Joe", "Grace", "Rex", "Robo")


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    home = EpisodeHome(tmp_path_factory.mktemp("clean"))
    out = {}
    for name, seed, index, subs in (("E1", 3, 1, True), ("E2", 4, 2, False)):
        ep = generate_episode(home.layout.inbox / "meas", series="meas", name=name, seed=seed,
                              index=index, cast=CAST, subtitles=subs, music_db=-17.0,
                              overlaps=3, interjections=4)
        key = episode_key("meas", name)
        home.instance.add_dynamic_partitions("episodes", [key])
        result = home.materialize(key, UP_TO_CLIPS)
        assert result.success, step_errors(result)
        out[name] = (home, key, ep)
        out[f"{name}_clips_metadata"] = result.asset_materializations_for_node(
            "clips")[0].metadata
        out[f"{name}_transcript_metadata"] = result.asset_materializations_for_node(
            "transcript")[0].metadata
        out[f"{name}_diarization_metadata"] = next(
            m.metadata for m in result.asset_materializations_for_node("diarization")
            if m.asset_key == dg.AssetKey("diarization"))
    return out


def _tables(episodes, name):
    home, key, ep = episodes[name]
    return (Truth(ep.utterances), ep, home.table("utterances", key), home.table("clips", key),
            home.table("transcript", key))


def _overlapped_words(utterances: pl.DataFrame) -> list[tuple[float, float]]:
    return [(w["start"], w["end"]) for ws in utterances["words"].to_list() for w in ws or []
            if word_is_overlapped(w)]


def test_overlap_is_found_where_two_voices_are_heard(episodes):
    """The diarization's overlapped stretches (pyannote segmentation-3.0 on the vocal stem),
    scored per overlapped second: measured precision 0.84 and 0.91, recall 0.96 and 0.84. The
    flag on every speaker change without a pause scored 0.47/0.60 and 0.44/0.66."""
    for name in ("E1", "E2"):
        home, key, ep = episodes[name]
        truth = Truth(ep.utterances)
        flagged = home.table("diarization", key).filter(pl.col("overlap"))
        precision, recall = truth.overlap_precision_recall(
            flagged.select("start", "end").iter_rows())
        assert precision >= 0.8 and recall >= 0.7, (name, precision, recall)
        meta = episodes[f"{name}_diarization_metadata"]
        assert 0.5 * float(truth.overlapped.sum()) * 0.01 <= meta["overlap_s"].value


def test_with_subtitles_kept_clips_are_pure_and_cut_around_overlaps(episodes):
    truth, _, utt, clips, _ = _tables(episodes, "E1")
    # Words said over (the overlap model's stretches, and two subtitle lines said at once).
    _, recall = truth.overlap_precision_recall(_overlapped_words(utt))
    assert recall >= 0.9, recall
    kept = clips.filter(pl.col("keep"))
    spans = list(kept.select("clip_start", "clip_end").iter_rows())
    purity = [truth.speech_purity(s, e) for s, e in spans]
    assert min(purity) >= 0.95, purity  # measured: every kept clip is one voice
    overlapped_kept = float((truth.mask(spans) & truth.overlapped).sum()) * 0.01
    assert overlapped_kept <= 0.1, overlapped_kept  # measured 0.0 s
    # The two wide shots in pauses start scenes; conversation cuts do not (measured 3).
    assert clips["scene"].n_unique() == 3, clips["scene"].unique().to_list()
    # Overlapped turns are cut around the overlap, not thrown away.
    assert kept.filter(pl.col("overlap_cut_s") > 0).height >= 2
    assert (kept["overlap_s"] == 0).all() and not kept["overlap"].any()


def test_kept_clean_speech(episodes):
    found = total = 0.0
    purity: list[float] = []
    for name in ("E1", "E2"):
        truth, _, _, clips, _ = _tables(episodes, name)
        kept = list(clips.filter(pl.col("keep")).select("clip_start", "clip_end").iter_rows())
        for got, clean in truth.kept_clean(kept).values():
            found, total = found + got, total + clean
        purity += [truth.speech_purity(s, e) for s, e in kept]
        overlapped_kept = float((truth.mask(kept) & truth.overlapped).sum()) * 0.01
        assert overlapped_kept <= 0.1, (name, overlapped_kept)  # measured 0.0 s in both
    # Measured 83% (84% with every speaker change without a pause flagged as overlap, but 3
    # kept clips then held a second voice; 65% when any overlapped turn was rejected whole).
    assert found / total >= 0.8, (found, total)
    # Measured 30 of 30 kept clips one voice (28 of 31 before the overlap model).
    assert sum(p >= 0.95 for p in purity) / len(purity) >= 0.98, purity
    # The clips asset shows where each character's speech went, as a table and a plot.
    meta = episodes["E1_clips_metadata"]
    assert "| Joe |" in meta["yield"].value and "rejected_overlap_min" in meta["yield"].value
    assert 0.5 <= meta["kept_share"].value <= 1.0
    assert "![yield](data:image/png;base64," in meta["yield_per_character"].value


def test_asr_hears_every_line_of_a_chunk(episodes):
    truth, ep, _, clips, transcript = _tables(episodes, "E2")
    wer = word_error_rate([u.text for u in sorted(ep.utterances, key=lambda u: u.start)],
                          transcript.sort("start")["text"].to_list())
    # The batched decoder returned one line of a 27 s chunk of twelve here (WER 0.57); such a
    # chunk is decoded again. Measured 0.15 with tiny.en under music.
    assert wer <= 0.25, wer
    assert episodes["E2_transcript_metadata"]["redecoded_chunks"].value == 1  # of 2 chunks
    kept = clips.filter(pl.col("keep"))
    assert kept.height >= 15  # measured 17 of 23
    purity = [truth.speech_purity(s, e) for s, e in kept.select("clip_start", "clip_end")
              .iter_rows()]
    # Without subtitles a reply ASR does not hear ("What?") stays inside a line unless the
    # overlap model finds it: measured 17 of 17 kept clips one voice (15 of 18 with the
    # speaker-change flags, the rest 76-88%).
    assert min(purity) >= 0.95, purity


def _call(tmp_path_factory, music_db: float | None) -> tuple[Truth, pl.DataFrame]:
    wav, rttm, _ = pyannote_sample()
    voices, sr = sf.read(wav, dtype="float32")
    turns = rttm_turns(rttm)
    truth = Truth(turns)
    mixture = voices
    if music_db is not None:
        speech = truth.mask([(t.start, t.end) for t in turns])
        at = np.minimum((np.arange(voices.size) / sr / 0.01).astype(int), speech.size - 1)
        speech_rms = float(np.sqrt(np.mean(voices[speech[at]] ** 2)))
        bed = music(voices.size / sr, sr, Theme.for_series("real"), 0).mean(axis=0)[:voices.size]
        bed *= speech_rms * 10 ** (music_db / 20) / float(np.sqrt(np.mean(bed ** 2)))
        mixture = voices + bed
    home = EpisodeHome(tmp_path_factory.mktemp("real"))
    key = home.add_episode("Call Under Music" if music_db is not None else "Call", mixture, sr)
    result = home.materialize(key, UP_TO_CLIPS)
    assert result.success, step_errors(result)
    return truth, home.table("clips", key)


@pytest.fixture(scope="module")
def real_call(tmp_path_factory):
    return _call(tmp_path_factory, -18.0)


def test_a_real_call_under_music_keeps_both_voices(real_call):
    truth, clips = real_call
    kept = clips.filter(pl.col("keep"))
    spans = list(kept.select("clip_start", "clip_end").iter_rows())
    # Each speaker keeps about half of their clean speech or more (measured 53% and 77%; both
    # kept nothing when an overlap flag rejected a turn whole, and 52% and 78% with every
    # speaker change without a pause flagged instead of the overlap model's stretches).
    for speaker, (got, clean) in truth.kept_clean(spans).items():
        assert got >= 0.5 * clean, (speaker, got, clean)
    overlapped_kept = float((truth.mask(spans) & truth.overlapped).sum()) * 0.01
    assert overlapped_kept <= 0.3, overlapped_kept
    # Measured 5 of 5 kept clips one voice. Before the speaker changes were moved by the
    # segmentation model, a reply's first words ("I need to", 0.4 s) ended a clip of the other
    # voice (78% one voice); before a clip stopped short of words cut away for overlap, it
    # began with 0.1 s of the other voice's "Hello" (94%).
    purity = [truth.speech_purity(s, e) for s, e in spans]
    assert len(purity) >= 4 and sum(p >= 0.95 for p in purity) / len(purity) >= 0.95, purity


def test_a_real_call_without_music(tmp_path_factory):
    """The same call as recorded. GE2E puts the reply "Hello." (7.55-8.35 s) inside the other
    voice's turn; the segmentation model hears another voice there and gives it back."""
    truth, clips = _call(tmp_path_factory, None)
    kept = clips.filter(pl.col("keep"))
    spans = list(kept.select("clip_start", "clip_end").iter_rows())
    purity = [truth.speech_purity(s, e) for s, e in spans]
    # Measured 4 of 5 kept clips one voice; before the segmentation model moved speaker changes
    # and gave that "Hello." back, 3 of 5 and the worst 60%. The fifth is 94%: the last 0.2 s
    # of an overlapped "Oh, I'm" that the overlap model's stretch stops short of.
    assert sum(p >= 0.95 for p in purity) >= 4 and min(purity) >= 0.9, purity
    # Each speaker keeps about two thirds of their clean speech (measured 67% and 69%).
    for speaker, (got, clean) in truth.kept_clean(spans).items():
        assert got >= 0.55 * clean, (speaker, got, clean)
