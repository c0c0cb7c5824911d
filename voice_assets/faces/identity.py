"""Whose face a track is, from the seed pictures in ``characters.yaml``, and the votes that
gives each diarized speaker.

A seed picture goes through the same detector as the episode (its biggest face); a track
takes the seed character it resembles most when the similarity clears ``min_similarity`` and
beats the next character by ``min_margin``. Similarity is the cosine of the identity
embeddings where both exist, averaged with the colour-appearance cosine (a drawn character's
identity is as much its colours as its shape). A speaker then gets, per character, the seconds
of its turns whose speaking face is that character: the ``faces`` votes of the character map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from voice_assets.errors import VoiceAssetsError
from voice_assets.faces.detect import FaceDetector, appearance


@dataclass(frozen=True)
class FaceSeed:
    character: str
    appearance: np.ndarray
    embedding: np.ndarray | None
    source: Path


def seed_from_picture(character: str, path: Path, detector: FaceDetector) -> FaceSeed:
    """The biggest face of a seed picture, or an error naming the picture."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VoiceAssetsError(f"face picture {path} of '{character}' cannot be decoded")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if max(image.shape[:2]) < 160:  # a tight crop: give the detector some margin to work in
        image = cv2.copyMakeBorder(cv2.resize(image, None, fx=2, fy=2), 40, 40, 40, 40,
                                   cv2.BORDER_REPLICATE)
    faces = detector.detect(image)
    if not faces:
        raise VoiceAssetsError(f"no face found in {path} (seed picture of '{character}') by "
                               f"the {detector.name} detector")
    face = max(faces, key=lambda f: f.size)
    return FaceSeed(character, appearance(image, face.box), detector.embed(image, face), path)


def _cos(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None or not len(a) or not len(b) or len(a) != len(b):
        return None
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9))


def similarity(seed: FaceSeed, track_appearance: np.ndarray,
               track_embedding: np.ndarray | None) -> float:
    look = _cos(seed.appearance, track_appearance) or 0.0
    ident = _cos(seed.embedding, track_embedding)
    return look if ident is None else 0.5 * (look + ident)


def name_tracks(face_tracks: pl.DataFrame, seeds: Sequence[FaceSeed],
                min_similarity: float = 0.75, min_margin: float = 0.04
                ) -> dict[int, tuple[str, float]]:
    """track_id -> (character, similarity) for the tracks a seed names clearly."""
    if not seeds or face_tracks.is_empty():
        return {}
    out: dict[int, tuple[str, float]] = {}
    for row in face_tracks.iter_rows(named=True):
        look = np.asarray(row["appearance"], dtype=np.float32)
        emb = np.asarray(row["embedding"], dtype=np.float32) if row["embedding"] else None
        best: dict[str, float] = {}
        for seed in seeds:
            sim = similarity(seed, look, emb)
            best[seed.character] = max(best.get(seed.character, -1.0), sim)
        ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)
        name, sim = ranked[0]
        runner = ranked[1][1] if len(ranked) > 1 else -1.0
        if sim >= min_similarity and sim - runner >= min_margin:
            out[int(row["track_id"])] = (name, round(sim, 4))
    return out


def _named_turns(speaking: pl.DataFrame, named: Mapping[int, tuple[str, float]]
                 ) -> dict[str, list[tuple[float, float, str]]]:
    """speaker -> (start, end, character) of its turns whose speaking face is named, in order."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    for row in speaking.iter_rows(named=True):
        track = row["track_id"]
        if track is None or int(track) not in named:
            continue
        out.setdefault(str(row["speaker"]), []).append(
            (float(row["start"]), float(row["end"]), named[int(track)][0]))
    return out


def face_votes(speaking: pl.DataFrame, named: Mapping[int, tuple[str, float]]
               ) -> dict[str, dict[str, float]]:
    """speaker -> {character: seconds of its turns whose speaking face is that character}."""
    votes: dict[str, dict[str, float]] = {}
    for speaker, turns in _named_turns(speaking, named).items():
        per = votes.setdefault(speaker, {})
        for start, end, name in turns:
            per[name] = round(per.get(name, 0.0) + end - start, 3)
    return votes


def face_turns(speaking: pl.DataFrame, named: Mapping[int, tuple[str, float]],
               min_share: float = 0.25, min_s: float = 2.0
               ) -> dict[str, list[tuple[float, float, str]]]:
    """speaker -> its turns as (start, end, character of the speaking face), for the speakers
    whose named faces split between characters.

    One voice, two faces: a voice twin (an actor voicing two roles, or two voices the
    embedder cannot tell apart) is one diarized speaker whose turns are spoken by two named
    faces. When the second face speaks at least ``min_share`` of the speaker's face-named
    seconds (and ``min_s``), each of its turns is named by its own face; speakers whose faces
    agree are left to the speaker-level map.
    """
    out: dict[str, list[tuple[float, float, str]]] = {}
    for speaker, turns in _named_turns(speaking, named).items():
        seconds: dict[str, float] = {}
        for s, e, c in turns:
            seconds[c] = seconds.get(c, 0.0) + e - s
        ranked = sorted(seconds.values(), reverse=True)
        if len(ranked) > 1 and ranked[1] >= max(min_s, min_share * sum(ranked)):
            out[speaker] = sorted(turns)
    return out


def speaker_face_crops(speaking: pl.DataFrame, face_tracks: pl.DataFrame,
                       max_faces: int = 4) -> dict[str, list[str]]:
    """speaker -> crop images of the faces that speak its turns, most seconds first.

    What a person naming a voice wants to see: one crop per face track (the same character
    in several shots gives several crops, which is itself a check), up to ``max_faces``.
    """
    if speaking.is_empty() or face_tracks.is_empty():
        return {}
    crops = {int(t): list(c or []) for t, c in face_tracks.select("track_id", "crop_paths")
             .iter_rows()}
    seconds: dict[str, dict[int, float]] = {}
    for row in speaking.iter_rows(named=True):
        track = row["track_id"]
        if track is None or not crops.get(int(track)):
            continue
        per = seconds.setdefault(str(row["speaker"]), {})
        per[int(track)] = per.get(int(track), 0.0) + float(row["end"]) - float(row["start"])
    return {speaker: [crops[t][0] for t in sorted(per, key=lambda t: (-per[t], t))[:max_faces]]
            for speaker, per in seconds.items()}
