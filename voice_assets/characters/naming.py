"""Who each series voice is: names from people, subtitles and reference clips, by rank.

For one episode speaker (a ledger member), the first of these that gives a name wins:

1. ``human``: a person named this speaker in Label Studio.
2. ``human-voice``: a person named another speaker of the same series voice (scope "voice").
3. ``subtitles``: the subtitle Name/Actor field of this speaker's own lines (a clear majority).
   ``faces``: else the face that speaks this speaker's turns on screen, named by a face
   picture of ``characters.yaml`` (voice_assets.faces.identity).
4. ``reference``: this speaker sounds like a reference clip of ``characters.yaml``.
5. ``voice``: the subtitles of other episodes name the same series voice.
6. ``voice-id``: no name yet; the series voice id (``voice-07``) is the character.

A human name may itself be a voice id ("this speaker is voice-03"): the speaker then takes
whatever voice-03 resolves to, which merges two voices. A name given with scope "speaker"
applies to that speaker only and is kept out of its voice's votes, which splits a voice.
Automatic evidence (subtitles, faces) adds votes under its own source name and ranks where
``AUTOMATIC_SOURCES`` puts it; other episodes' votes of either kind make the ``voice`` rank.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from voice_assets.characters.cast import BACKGROUND, Cast, is_voice_id
from voice_assets.characters.voices import Ledger, Member, unit

SCOPE_VOICE = "voice"
SCOPE_SPEAKER = "speaker"
# Automatic vote sources of a speaker's own episode, most trusted first.
AUTOMATIC_SOURCES = ("subtitles", "faces")


@dataclass(frozen=True)
class NamingConfig:
    min_vote_share: float = 0.6  # of a speaker's named seconds, for a name to stick
    min_vote_s: float = 0.5  # named seconds below this are no evidence
    reference_threshold: float = 0.80  # cosine to a reference clip's embedding


DEFAULT_NAMING = NamingConfig()


@dataclass(frozen=True)
class HumanName:
    """A name a person gave to one diarized speaker of one episode."""

    episode: str
    speaker: str
    name: str
    scope: str = SCOPE_VOICE
    embedding: tuple[float, ...] = ()
    at: datetime | None = None
    ref: str = ""  # where it came from (annotation id), for error messages and evidence


@dataclass(frozen=True)
class Reference:
    """A reference clip's embedding, for one declared character."""

    name: str
    embedding: tuple[float, ...]
    model: str
    path: str


@dataclass(frozen=True)
class Resolution:
    character: str
    confidence: float
    source: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _top(votes: dict[str, float], cfg: NamingConfig) -> tuple[str, float] | None:
    total = sum(w for w in votes.values() if w > 0)
    if total < cfg.min_vote_s:
        return None
    name, weight = max(sorted(votes.items()), key=lambda kv: kv[1])
    share = weight / total
    return (name, share) if share >= cfg.min_vote_share else None


def attach_human_names(ledger: Ledger, names: Sequence[HumanName]) -> dict[tuple[str, str],
                                                                          HumanName]:
    """The latest human name of each ledger member, matched by voice when speaker ids moved.

    A name row carries the speaker id and the embedding it had when named; after a new
    diarization the episode's member most similar to that embedding inherits it.
    """
    out: dict[tuple[str, str], HumanName] = {}
    ordered = sorted(names, key=lambda n: (n.at or datetime.min, n.ref))
    by_episode: dict[str, list[Member]] = {}
    for m in ledger.members:
        by_episode.setdefault(m.episode, []).append(m)
    for n in ordered:
        members = by_episode.get(n.episode, [])
        target = next((m for m in members if m.speaker == n.speaker), None)
        if n.embedding and members:
            emb = unit(n.embedding)
            scored = [(float(unit(m.embedding) @ emb), m) for m in members
                      if len(m.embedding) == emb.size]
            if scored:
                sim, best = max(scored, key=lambda t: t[0])
                same = target is not None and len(target.embedding) == emb.size and \
                    float(unit(target.embedding) @ emb) >= 0.9
                if not same and sim >= 0.7:
                    target = best
        if target is not None:
            out[(target.episode, target.speaker)] = n
    return out


def _votes(member: Member, source: str) -> dict[str, float]:
    return dict(member.votes.get(source) or {})


def resolve(ledger: Ledger, cast: Cast, human: Sequence[HumanName] = (),
            references: Sequence[Reference] = (),
            cfg: NamingConfig = DEFAULT_NAMING) -> dict[tuple[str, str], Resolution]:
    """The character of every ledger member, with confidence, source and evidence."""
    humans = attach_human_names(ledger, human)
    voices = ledger.voices()

    def canon(name: str) -> str | None:
        return cast.canonical(name)

    def human_name(h: HumanName) -> str:
        return cast.require(h.name, f"Label Studio annotation {h.ref or '?'}",
                            f"name for {h.episode}/{h.speaker}")

    # Per voice: human names given with voice scope, and automatic votes of every member.
    voice_human: dict[str, Counter[str]] = {}
    voice_votes: dict[str, dict[str, float]] = {}
    for v, members in voices.items():
        hc: Counter[str] = Counter()
        vv: dict[str, float] = {}
        for m in members:
            h = humans.get((m.episode, m.speaker))
            if h is not None and h.scope == SCOPE_SPEAKER:
                continue
            if h is not None:
                hc[human_name(h)] += max(m.speech_s, 0.1)
            for source in AUTOMATIC_SOURCES:
                for name, w in _votes(m, source).items():
                    if canon(name):
                        key = canon(name) or name
                        vv[key] = vv.get(key, 0.0) + w
        voice_human[v] = hc
        voice_votes[v] = vv

    def voice_name(v: str, depth: int = 0) -> tuple[str, str, float, dict[str, Any]] | None:
        """(name, source, share, evidence) a voice gets from human names or its votes."""
        hc = voice_human.get(v) or Counter()
        if hc:
            name, w = hc.most_common(1)[0]
            share = w / sum(hc.values())
            if is_voice_id(name) and name != v and depth < 4:
                target = voice_name(name, depth + 1)
                return (target[0], "human-voice", share, {"merged_into": name, **target[3]}) \
                    if target else (name, "human-voice", share, {"merged_into": name})
            return name, "human-voice", share, {"human_names": dict(hc)}
        top = _top(voice_votes.get(v) or {}, cfg)
        if top:
            return top[0], "voice", top[1], {"voice_votes": voice_votes[v]}
        return None

    refs = [(r, unit(r.embedding)) for r in references]
    out: dict[tuple[str, str], Resolution] = {}
    for v, members in voices.items():
        named_voice = voice_name(v)
        for m in members:
            emb = unit(m.embedding)
            ev: dict[str, Any] = {"voice": v, "link": m.how, "voice_similarity": m.similarity}
            own = {s: _votes(m, s) for s in AUTOMATIC_SOURCES if m.votes.get(s)}
            if own:
                ev["votes"] = own
            h = humans.get((m.episode, m.speaker))
            if h is not None:
                name = human_name(h)
                ev["human"] = {"name": h.name, "scope": h.scope, "ref": h.ref}
                if is_voice_id(name) and name != v:
                    target = voice_name(name)
                    name = target[0] if target else name
                    ev["merged_into"] = h.name
                out[(m.episode, m.speaker)] = Resolution(name, 1.0, "human", ev)
                continue
            if named_voice and named_voice[1] == "human-voice":
                name, _, share, extra = named_voice
                out[(m.episode, m.speaker)] = Resolution(
                    name, round(share * min(1.0, m.similarity), 4), "human-voice", {**ev, **extra})
                continue
            resolved = None
            for source in AUTOMATIC_SOURCES:
                votes = {canon(n) or n: w for n, w in _votes(m, source).items() if canon(n)}
                top = _top(votes, cfg)
                if top:
                    resolved = Resolution(top[0], round(top[1], 4), source, ev)
                    break
            if resolved is None and refs:
                scored = [(float(emb @ e), r) for r, e in refs
                          if r.model == m.model and e.size == emb.size]
                if scored:
                    sim, ref = max(scored, key=lambda t: t[0])
                    if sim >= cfg.reference_threshold:
                        resolved = Resolution(ref.name, round(sim, 4), "reference",
                                              {**ev, "reference": ref.path,
                                               "reference_similarity": round(sim, 4)})
            if resolved is None and named_voice:
                name, source, share, extra = named_voice
                resolved = Resolution(name, round(share * min(1.0, m.similarity), 4), source,
                                      {**ev, **extra})
            if resolved is None:
                resolved = Resolution(v, round(min(1.0, m.similarity), 4), "voice-id", ev)
            out[(m.episode, m.speaker)] = resolved
    return out


def background_resolution(speech_s: float) -> Resolution:
    return Resolution(BACKGROUND, 1.0, "background", {"speech_s": round(speech_s, 2)})


def prototype(embeddings: Sequence[Sequence[float]], weights: Sequence[float]) -> list[float]:
    """A character's voice prototype: the speech-weighted centroid of its confident members."""
    stack = np.stack([unit(e) for e in embeddings])
    w = np.asarray(weights, dtype=np.float64)
    return [float(x) for x in unit((stack * np.maximum(w, 0.1)[:, None]).sum(axis=0))]
