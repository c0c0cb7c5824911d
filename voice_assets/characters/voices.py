"""Series voices: which diarized speakers of different episodes are the same voice.

Diarization numbers speakers per episode (SPK_00 of one episode is not SPK_00 of the next).
The voice ledger of a series holds one *member* per (episode, speaker): its centroid embedding,
speech seconds, the name votes its own episode gave it, and the series voice it belongs to
(``voice-01``, ...). An episode's speakers join existing voices by a one-to-one assignment on
cosine similarity to each voice's centroid (two speakers of one episode are two people unless
their voices are nearly identical); a speaker nothing matches starts a new voice, and a voice id
is never reused for another voice. Re-linking an episode first drops its own members, then
prefers the voices they had, so re-runs keep their ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from voice_assets.characters.cast import voice_id


@dataclass(frozen=True)
class LinkConfig:
    """Thresholds of voice linking (cosine similarity of unit speaker embeddings)."""

    link_threshold: float = 0.80  # a speaker joins a voice at or above this
    same_voice_threshold: float = 0.93  # a second speaker of one episode joins the same voice
    background_max_s: float = 2.5  # unmatched speakers with less speech and no name: background
    background_max_turns: int = 2


DEFAULT_LINK = LinkConfig()


@dataclass(frozen=True)
class Member:
    """One episode speaker in the series voice ledger."""

    voice: str
    episode: str
    speaker: str
    embedding: tuple[float, ...]
    model: str
    speech_s: float
    n_turns: int = 0
    votes: dict[str, dict[str, float]] = field(default_factory=dict)  # source -> name -> weight
    similarity: float = 1.0  # to the voice it joined, when it joined (1.0: it started the voice)
    how: str = "new"  # "linked", "kept" (re-run), "new"

    def to_json(self) -> dict[str, Any]:
        return {
            "voice": self.voice, "episode": self.episode, "speaker": self.speaker,
            "embedding": [round(float(v), 6) for v in self.embedding], "model": self.model,
            "speech_s": round(self.speech_s, 3), "n_turns": self.n_turns, "votes": self.votes,
            "similarity": round(self.similarity, 4), "how": self.how,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Member:
        return cls(str(d["voice"]), str(d["episode"]), str(d["speaker"]),
                   tuple(float(v) for v in d["embedding"]), str(d.get("model") or ""),
                   float(d["speech_s"]), int(d.get("n_turns") or 0),
                   {str(s): {str(n): float(w) for n, w in v.items()}
                    for s, v in (d.get("votes") or {}).items()},
                   float(d.get("similarity", 1.0)), str(d.get("how") or "new"))


@dataclass(frozen=True)
class Ledger:
    """Every series voice and its members; ``next_voice`` only grows."""

    series: str
    next_voice: int = 1
    members: tuple[Member, ...] = ()

    def to_json(self) -> dict[str, Any]:
        members = sorted(self.members, key=lambda m: (m.episode, m.speaker))
        return {"series": self.series, "next_voice": self.next_voice,
                "members": [m.to_json() for m in members]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Ledger:
        return cls(str(d["series"]), int(d.get("next_voice") or 1),
                   tuple(Member.from_json(m) for m in d.get("members") or []))

    def of_episode(self, episode: str) -> list[Member]:
        return [m for m in self.members if m.episode == episode]

    def voices(self) -> dict[str, list[Member]]:
        out: dict[str, list[Member]] = {}
        for m in sorted(self.members, key=lambda m: (m.episode, m.speaker)):
            out.setdefault(m.voice, []).append(m)
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class SpeakerVoice:
    """An episode speaker to be linked: its centroid embedding and its own name votes."""

    speaker: str
    embedding: np.ndarray
    model: str
    speech_s: float
    n_turns: int
    votes: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Link:
    """Where one speaker went: a voice (or None: background) and how sure the link is."""

    speaker: str
    voice: str | None
    similarity: float  # to the chosen voice (1.0 for a new voice)
    best_other: float  # the best similarity to any other voice (how close the call was)
    how: str  # "linked", "kept", "new", "background"


def unit(x: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def centroid(members: Sequence[Member]) -> np.ndarray:
    """Speech-weighted mean of the members' unit embeddings, renormalised."""
    weights = np.array([max(m.speech_s, 0.1) for m in members])
    stack = np.stack([unit(m.embedding) for m in members])
    return unit((stack * weights[:, None]).sum(axis=0))


def voice_centroids(members: Sequence[Member], model: str) -> dict[str, np.ndarray]:
    by: dict[str, list[Member]] = {}
    for m in members:
        if m.model == model and m.embedding:
            by.setdefault(m.voice, []).append(m)
    return {v: centroid(ms) for v, ms in sorted(by.items())}


def _assign(sims: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one pairs (row, col) maximising similarity, each at or above ``threshold``."""
    if sims.size == 0:
        return []
    rows, cols = linear_sum_assignment(-sims)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if sims[r, c] >= threshold]


def _is_background(s: SpeakerVoice, cfg: LinkConfig) -> bool:
    named = any(w > 0 for votes in s.votes.values() for w in votes.values())
    return (not named and s.speech_s < cfg.background_max_s
            and s.n_turns <= cfg.background_max_turns)


def link_episode(ledger: Ledger, episode: str, speakers: Sequence[SpeakerVoice],
                 cfg: LinkConfig = DEFAULT_LINK) -> tuple[Ledger, list[Link]]:
    """Link an episode's speakers to the series voices; return the new ledger and the links."""
    previous = ledger.of_episode(episode)
    others = [m for m in ledger.members if m.episode != episode]
    links: dict[str, Link] = {}
    next_voice = ledger.next_voice
    models = {s.model for s in speakers}
    todo = list(speakers)
    for model in sorted(models):
        group = [s for s in todo if s.model == model]
        emb = np.stack([unit(s.embedding) for s in group]) if group else np.zeros((0, 1))
        cents = voice_centroids(others, model)
        names = list(cents)
        sims = emb @ np.stack([cents[v] for v in names]).T if names and group else \
            np.zeros((len(group), 0))
        taken: dict[str, int] = {}
        for r, c in _assign(sims, cfg.link_threshold):
            others_best = float(np.delete(sims[r], c).max()) if sims.shape[1] > 1 else 0.0
            links[group[r].speaker] = Link(group[r].speaker, names[c], float(sims[r, c]),
                                           others_best, "linked")
            taken[names[c]] = r
        # A diarization that split one voice in two: the second joins only when nearly identical.
        for r, s in enumerate(group):
            if s.speaker in links or sims.shape[1] == 0:
                continue
            c = int(np.argmax(sims[r]))
            if names[c] in taken and sims[r, c] >= cfg.same_voice_threshold:
                others_best = float(np.delete(sims[r], c).max()) if sims.shape[1] > 1 else 0.0
                links[s.speaker] = Link(s.speaker, names[c], float(sims[r, c]), others_best,
                                        "linked")
        # Voices this episode started in an earlier run keep their ids.
        rest = [s for s in group if s.speaker not in links]
        own = voice_centroids([m for m in previous if m.voice not in cents], model)
        own_names = [v for v in own if v not in taken]
        if rest and own_names:
            emb_rest = np.stack([unit(s.embedding) for s in rest])
            own_sims = emb_rest @ np.stack([own[v] for v in own_names]).T
            for r, c in _assign(own_sims, cfg.link_threshold):
                links[rest[r].speaker] = Link(rest[r].speaker, own_names[c], 1.0, 0.0, "kept")
        for s in sorted(group, key=lambda s: (-s.speech_s, s.speaker)):
            if s.speaker in links:
                continue
            if _is_background(s, cfg):
                links[s.speaker] = Link(s.speaker, None, 0.0, 0.0, "background")
                continue
            best = float(np.max(sims[group.index(s)])) if sims.shape[1] else 0.0
            links[s.speaker] = Link(s.speaker, voice_id(next_voice), 1.0, best, "new")
            next_voice += 1
    members = list(others)
    by_speaker = {s.speaker: s for s in speakers}
    for speaker, link in sorted(links.items()):
        if link.voice is None:
            continue
        s = by_speaker[speaker]
        members.append(Member(link.voice, episode, speaker, tuple(float(v) for v in
                                                                 unit(s.embedding)),
                              s.model, float(s.speech_s), int(s.n_turns), s.votes,
                              link.similarity, link.how))
    out = replace(ledger, next_voice=next_voice, members=tuple(members))
    return out, [links[s.speaker] for s in speakers]
