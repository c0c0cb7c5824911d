"""The generated demo episode is a fair test: distinct voices, faces, truth that matches."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from voice_assets.synth import SynthEpisode


def test_truth_is_consistent(demo_episode: SynthEpisode) -> None:
    ep = demo_episode
    rows = json.loads(Path(ep.truth).read_text())
    rttm = [line.split() for line in Path(ep.rttm).read_text().splitlines()]
    assert len(rows) == len(rttm) == len(ep.utterances) >= 18
    for row, fields in zip(rows, rttm, strict=True):
        assert float(fields[3]) == pytest.approx(row["start"], abs=1e-3)
        assert float(fields[4]) == pytest.approx(row["end"] - row["start"], abs=1e-3)
        assert fields[7] == row["character"]
    assert len(ep.characters) >= 3
    assert sum(u.interjection for u in ep.utterances) >= 3
    ordered = sorted(ep.utterances, key=lambda u: u.start)
    overlaps = sum(b.start < a.end for a, b in itertools.pairwise(ordered))
    assert overlaps >= 2
    assert all(0 < u.start < u.end < ep.duration_s for u in ep.utterances)


def test_subtitles_carry_character_names(demo_episode: SynthEpisode) -> None:
    import pysubs2

    subs = pysubs2.load(str(demo_episode.subtitles))
    dialogue = [e for e in subs if e.style == "Default"]
    assert len(dialogue) == len(demo_episode.utterances)
    assert {e.name for e in dialogue} == set(demo_episode.characters)
    assert any(e.style == "Sign" for e in subs)


def test_video_and_audio_lengths_match_the_truth(demo_episode: SynthEpisode) -> None:
    import av

    with av.open(str(demo_episode.video)) as c:
        audio = c.streams.audio[0]
        assert audio.language == "eng"
        assert c.streams.video, "the demo episode has a picture track"
        duration = float(c.duration) / av.time_base
    assert duration == pytest.approx(demo_episode.duration_s, abs=0.15)
    info = sf.info(str(demo_episode.dialogue_wav))
    assert info.frames / info.samplerate == pytest.approx(demo_episode.duration_s, abs=1e-3)


def test_faces_are_found_and_mouths_move_with_speech(demo_episode: SynthEpisode) -> None:
    import av
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    from voice_assets.synth.video import FACE_SIZE, HEIGHT, WIDTH, faces

    cast = faces()
    clean = [f.pixels.astype(np.int16) for f in cast]
    top, left = (HEIGHT - FACE_SIZE) // 2, (WIDTH - FACE_SIZE) // 2
    speaking = [(u.start, u.end) for u in demo_episode.utterances]
    found, checked = 0, 0
    openness: dict[bool, list[float]] = {True: [], False: []}
    with av.open(str(demo_episode.video)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            img = frame.to_ndarray(format="rgb24").astype(np.int16)
            t = float(frame.time)
            if i % 10 == 0:
                checked += 1
                gray = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2GRAY)
                found += len(cascade.detectMultiScale(gray, 1.1, 4)) > 0
            # Only the mouth changes on a face: compare with the clean face photos.
            face = img[top : top + FACE_SIZE, left : left + FACE_SIZE]
            who = min(range(len(clean)), key=lambda k: float(np.mean(np.abs(face - clean[k]))))
            (mx, my), w = cast[who].mouth, cast[who].mouth_width
            box = (slice(my - w, my + w), slice(mx - w - 4, mx + w + 4))
            change = float(np.mean(np.abs(face[box] - clean[who][box])))
            talking = any(s + 0.1 <= t <= e - 0.1 for s, e in speaking)
            silent = all(t < s - 0.2 or t > e + 0.2 for s, e in speaking)
            if talking or silent:
                openness[talking].append(change)
    assert found / checked >= 0.9, f"faces found in {found}/{checked} sampled frames"
    assert np.mean(openness[True]) > 2 * np.mean(openness[False]) + 2.0, (
        np.mean(openness[True]),
        np.mean(openness[False]),
    )


@pytest.mark.slow
def test_voices_are_distinct_to_a_speaker_encoder(demo_episode: SynthEpisode) -> None:
    from resemblyzer import VoiceEncoder

    audio, rate = sf.read(str(demo_episode.dialogue_wav), dtype="float32")
    audio16 = soxr.resample(audio, rate, 16000)
    encoder = VoiceEncoder("cpu", verbose=False)
    embeddings: dict[str, list[np.ndarray]] = {}
    for u in demo_episode.utterances:
        if u.interjection:
            continue
        seg = audio16[int(u.start * 16000) : int(u.end * 16000)]
        embeddings.setdefault(u.character, []).append(encoder.embed_utterance(seg))
    same, cross = [], []
    names = sorted(embeddings)
    for a in names:
        for b in names:
            sims = [
                float(x @ y)
                for i, x in enumerate(embeddings[a])
                for j, y in enumerate(embeddings[b])
                if a != b or i < j
            ]
            (same if a == b else cross).extend(sims)
    assert np.mean(same) - np.mean(cross) >= 0.15, (np.mean(same), np.mean(cross))


@pytest.mark.slow
def test_tiny_en_transcribes_every_voice(demo_episode: SynthEpisode) -> None:
    import jiwer
    from faster_whisper import WhisperModel

    from voice_assets.models import get

    model = WhisperModel(
        str(get("whisper-tiny.en").require()), device="cpu", compute_type="int8", cpu_threads=2
    )
    audio, rate = sf.read(str(demo_episode.dialogue_wav), dtype="float32")
    audio16 = soxr.resample(audio, rate, 16000)
    per_char: dict[str, list[tuple[str, str]]] = {}
    for u in demo_episode.utterances:
        if u.interjection:
            continue
        seg = audio16[int(u.start * 16000) : int(u.end * 16000)]
        segments, _ = model.transcribe(seg, language="en", beam_size=1)
        per_char.setdefault(u.character, []).append((u.text, " ".join(s.text for s in segments)))
    norm = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.Strip(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    for character, pairs in per_char.items():
        wer = jiwer.wer(
            [r for r, _ in pairs],
            [h for _, h in pairs],
            reference_transform=norm,
            hypothesis_transform=norm,
        )
        assert wer <= 0.15, f"{character}: WER {wer:.2f}"


def test_variants(synth_episode) -> None:
    silent = synth_episode(name="Silent", silent=True, subtitles=False)
    audio, _ = sf.read(str(silent.dialogue_wav))
    assert silent.utterances == [] and not np.any(audio) and silent.subtitles is None
    intro = synth_episode(name="Intro", music_intro_s=6.0, turns=6)
    assert min(u.start for u in intro.utterances) >= 6.0
    styled = synth_episode(name="Styles", styles="cycle", turns=9, interjections=0)
    assert {u.style for u in styled.utterances} == {"neutral", "excited", "sad"}
