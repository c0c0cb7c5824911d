"""Face identities across a series: tracks clustered by look, clusters named by their voices.

Tracks of every episode are clustered (average linkage on the same similarity that names
tracks from seed pictures: identity-embedding cosine where both tracks have one, averaged with
the colour-appearance cosine). A cluster takes the character of the voices it speaks for: the
seconds of turns where one of its tracks is the speaking face, counted per character of that
turn's speaker in the character map, when one character has ``min_share`` of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sklearn.cluster import AgglomerativeClustering


@dataclass
class FaceCluster:
    cluster: int
    tracks: list[tuple[str, int]] = field(default_factory=list)  # (episode, track_id)
    crops: list[str] = field(default_factory=list)
    votes: dict[str, float] = field(default_factory=dict)  # character -> seconds spoken
    character: str | None = None
    share: float = 0.0

    @property
    def episodes(self) -> list[str]:
        return sorted({e for e, _ in self.tracks})


def _unit_rows(vectors: list[np.ndarray]) -> np.ndarray:
    m = np.stack(vectors).astype(np.float64)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)


def similarity_matrix(face_tracks: pl.DataFrame) -> np.ndarray:
    look = _unit_rows([np.asarray(a, dtype=np.float64) for a in face_tracks["appearance"]])
    sim = look @ look.T
    embs = [np.asarray(e, dtype=np.float64) if e is not None and len(e) else None
            for e in face_tracks["embedding"]]
    sizes = {e.size for e in embs if e is not None}
    if len(sizes) == 1:
        have = np.array([e is not None for e in embs])
        dim = sizes.pop()
        ident = _unit_rows([e if e is not None else np.zeros(dim) for e in embs])
        both = np.outer(have, have)
        sim = np.where(both, 0.5 * (sim + ident @ ident.T), sim)
    return np.clip(sim, -1.0, 1.0)


def cluster_faces(face_tracks: pl.DataFrame, speaking: pl.DataFrame,
                  characters: Mapping[tuple[str, str], str], min_similarity: float = 0.85,
                  min_share: float = 0.6) -> list[FaceCluster]:
    """Clusters of one series' tracks, each named by the voices it speaks for when clear.

    ``characters`` maps (episode, speaker) to the character of the character map.
    """
    if face_tracks.is_empty():
        return []
    rows = face_tracks.sort("episode", "track_id")
    if rows.height == 1:
        labels = np.zeros(1, dtype=int)
    else:
        distance = 1.0 - similarity_matrix(rows)
        labels = AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage="average",
            distance_threshold=1.0 - min_similarity).fit_predict(distance)
    clusters: dict[int, FaceCluster] = {}
    of_track: dict[tuple[str, int], int] = {}
    for row, label in zip(rows.iter_rows(named=True), labels, strict=True):
        c = clusters.setdefault(int(label), FaceCluster(int(label)))
        key = (str(row["episode"]), int(row["track_id"]))
        c.tracks.append(key)
        c.crops.extend(row["crop_paths"] or [])
        of_track[key] = int(label)
    for row in speaking.filter(pl.col("track_id").is_not_null()).iter_rows(named=True):
        label = of_track.get((str(row["episode"]), int(row["track_id"])))
        name = characters.get((str(row["episode"]), str(row["speaker"])))
        if label is None or name is None:
            continue
        votes = clusters[label].votes
        votes[name] = votes.get(name, 0.0) + float(row["end"]) - float(row["start"])
    for c in clusters.values():
        total = sum(c.votes.values())
        if total > 0:
            name, seconds = max(sorted(c.votes.items()), key=lambda kv: kv[1])
            c.share = round(seconds / total, 3)
            c.character = name if c.share >= min_share else None
    ordered = sorted(clusters.values(), key=lambda c: (-len(c.tracks), c.cluster))
    for i, c in enumerate(ordered):
        c.cluster = i
    return ordered
