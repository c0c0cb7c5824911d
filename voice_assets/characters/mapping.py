"""The character map of an episode, the series registry, and names applied to utterances.

``map_episode`` links the episode's speakers into the series voice ledger and names every
member of the ledger (``naming.resolve``); the episode's rows become its ``character_map``.
``expected_maps`` re-resolves every episode from the ledger alone, which is how a sensor finds
the episodes a new name or a merge changes without running anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from voice_assets.characters.cast import BACKGROUND, Cast, is_voice_id
from voice_assets.characters.evidence import subtitle_votes, turn_counts
from voice_assets.characters.naming import (
    DEFAULT_NAMING,
    HumanName,
    NamingConfig,
    Reference,
    Resolution,
    background_resolution,
    prototype,
    resolve,
)
from voice_assets.characters.voices import (
    DEFAULT_LINK,
    Ledger,
    Link,
    LinkConfig,
    SpeakerVoice,
    link_episode,
)
from voice_assets.episode_keys import EPISODE_COLUMN, SERIES_COLUMN, series_of

MAP_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.Utf8(),
    "series": pl.Utf8(),
    "speaker": pl.Utf8(),
    "character": pl.Utf8(),
    "voice": pl.Utf8(),
    "confidence": pl.Float64(),
    "source": pl.Utf8(),
    "speech_s": pl.Float64(),
    "n_turns": pl.Int64(),
    "voice_similarity": pl.Float64(),
    "runner_up_similarity": pl.Float64(),
    "link": pl.Utf8(),
    "subtitle_votes": pl.Utf8(),
    "evidence": pl.Utf8(),
    # Turns of a voice that two named faces speak (a voice twin): each named by its face.
    "face_turns": pl.List(pl.Struct({"start": pl.Float64, "end": pl.Float64,
                                     "character": pl.Utf8})),
}
MAP_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "series": SERIES_COLUMN,
    "speaker": "Episode-local diarization speaker.",
    "character": "Series character the speaker is: a name, voice-NN (an unnamed series voice) "
    "or background.",
    "voice": "Series voice of the ledger the speaker is linked to (null: background).",
    "confidence": "Confidence of the character (0-1).",
    "source": "Why this character: human, human-voice, subtitles, faces, reference, voice-id "
    "or background.",
    "speech_s": "Seconds of the speaker's speech in the episode.",
    "n_turns": "Diarization turns of the speaker.",
    "voice_similarity": "Cosine similarity of the speaker to its series voice (null: none).",
    "runner_up_similarity": "Cosine similarity to the next-closest series voice.",
    "link": "How the speaker joined the ledger: linked (an earlier episode's voice), kept "
    "(a re-run), new or background.",
    "subtitle_votes": "JSON: subtitle name -> seconds of the speaker's speech under lines with "
    "that name.",
    "evidence": "JSON: the evidence behind the character (human names, references, faces).",
    "face_turns": "Turns of a voice two named faces speak (a voice twin), each named by its "
    "face: start, end, character.",
}
FACE_TURN_SOURCE = "faces-turn"
FACE_TURN_MIN_COVER = 0.5  # share of a row a face turn must cover to name it

REGISTRY_SCHEMA: dict[str, pl.DataType] = {
    "series": pl.Utf8(),
    "character": pl.Utf8(),
    "kind": pl.Utf8(),  # "cast" (characters.yaml), "named", "voice" or "background"
    "aliases": pl.List(pl.Utf8()),
    "voices": pl.List(pl.Utf8()),
    "episodes": pl.Int64(),
    "speakers": pl.Int64(),
    "speech_minutes": pl.Float64(),
    "mean_confidence": pl.Float64(),
    "sources": pl.Utf8(),
    "prototype": pl.List(pl.Float32()),
    "prototype_speakers": pl.Int64(),
    "reference_clips": pl.List(pl.Utf8()),
}
# The character_registry table as stored: the registry plus the face crops that speak for
# each character (from the face clusters, added by the asset).
REGISTRY_TABLE_SCHEMA: dict[str, pl.DataType] = {
    **REGISTRY_SCHEMA, "face_crops": pl.List(pl.Utf8()),
}
REGISTRY_DESCRIPTIONS: dict[str, str] = {
    "series": SERIES_COLUMN,
    "character": "Character: a cast name, a name people or subtitles gave, voice-NN or "
    "background.",
    "kind": "'cast' (declared in characters.yaml), 'named', 'voice' (unnamed) or "
    "'background'.",
    "aliases": "Other names of the character in characters.yaml.",
    "voices": "Series voices of the ledger mapped to the character.",
    "episodes": "Episodes the character speaks in.",
    "speakers": "Episode speakers mapped to the character.",
    "speech_minutes": "Minutes of speech over every episode.",
    "mean_confidence": "Mean confidence of its speakers' mapping (0-1).",
    "sources": "Sources of its speakers' names with counts, e.g. 'subtitles x3'.",
    "prototype": "Voice prototype: speech-weighted centroid of its confident speakers' "
    "embeddings (null: none).",
    "prototype_speakers": "Speaker embeddings averaged into the prototype.",
    "reference_clips": "Reference clips of the character in characters.yaml.",
    "face_crops": "Face crops (up to 4) of the face clusters that speak for the character.",
}


@dataclass(frozen=True)
class EpisodeEvidence:
    """What an episode says about its own speakers (plus their embeddings)."""

    episode: str
    embeddings: pl.DataFrame  # speaker_embeddings rows
    diarization: pl.DataFrame
    aligned: pl.DataFrame
    # speaker -> {character: seconds its turns show that character's face speaking}
    faces: dict[str, dict[str, float]] = field(default_factory=dict)
    # speaker -> (start, end, character) of its turns, when two named faces speak them
    face_turns: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)

    def speakers(self, cast: Cast) -> list[SpeakerVoice]:
        votes = subtitle_votes(self.aligned, self.diarization, cast.canonical)
        turns = turn_counts(self.diarization)
        speech = {}
        if not self.diarization.is_empty():
            per = self.diarization.group_by("speaker").agg((pl.col("end") - pl.col("start"))
                                                           .sum().alias("s"))
            speech = {str(k): float(v) for k, v in per.iter_rows()}
        out = []
        for row in self.embeddings.sort("speaker").iter_rows(named=True):
            spk = str(row["speaker"])
            emb = np.asarray(row["embedding"] or [], dtype=np.float64)
            if not emb.size or not np.isfinite(emb).all() or np.linalg.norm(emb) == 0:
                continue
            own = {"subtitles": votes[spk]} if spk in votes else {}
            if self.faces.get(spk):
                own["faces"] = {cast.canonical(n) or n: w for n, w in self.faces[spk].items()}
            out.append(SpeakerVoice(
                spk, emb, str(row.get("model") or ""),
                speech.get(spk, float(row.get("speech_s") or 0.0)), turns.get(spk, 0), own))
        return out


def _row(episode: str, speaker: str, speech_s: float, n_turns: int, res: Resolution,
         link: Link | None, voice: str | None, votes: dict[str, float] | None,
         similarity: float | None) -> dict[str, Any]:
    return {
        "episode": episode, "series": series_of(episode), "speaker": speaker,
        "character": res.character, "voice": voice, "confidence": float(res.confidence),
        "source": res.source, "speech_s": round(float(speech_s), 3), "n_turns": int(n_turns),
        "voice_similarity": None if similarity is None else round(float(similarity), 4),
        "runner_up_similarity": None if link is None else round(float(link.best_other), 4),
        "link": link.how if link is not None else (res.evidence.get("link") or ""),
        "subtitle_votes": json.dumps(votes or {}, sort_keys=True),
        "evidence": json.dumps(res.evidence, sort_keys=True, default=str),
    }


def map_episode(ledger: Ledger, evidence: EpisodeEvidence, cast: Cast,
                human: Sequence[HumanName] = (), references: Sequence[Reference] = (),
                link_cfg: LinkConfig = DEFAULT_LINK,
                naming_cfg: NamingConfig = DEFAULT_NAMING) -> tuple[Ledger, pl.DataFrame]:
    """Link the episode's speakers into the ledger; its rows of the character map."""
    speakers = evidence.speakers(cast)
    new_ledger, links = link_episode(ledger, evidence.episode, speakers, link_cfg)
    names = resolve(new_ledger, cast, human, references, naming_cfg)
    rows = []
    for s, link in zip(speakers, links, strict=True):
        if link.voice is None:
            res = background_resolution(s.speech_s)
        else:
            res = names[(evidence.episode, s.speaker)]
        rows.append(_row(evidence.episode, s.speaker, s.speech_s, s.n_turns, res, link,
                         link.voice, s.votes.get("subtitles"), link.similarity))
    # Diarized speakers with no usable embedding still need a row: background, said why.
    have = {s.speaker for s in speakers}
    if not evidence.diarization.is_empty():
        per = evidence.diarization.group_by("speaker").agg(
            (pl.col("end") - pl.col("start")).sum().alias("s"), pl.len().alias("n"))
        for spk, secs, n in per.sort("speaker").iter_rows():
            if str(spk) not in have:
                res = background_resolution(float(secs))
                res.evidence["why"] = "no speaker embedding"
                rows.append(_row(evidence.episode, str(spk), float(secs), int(n), res, None,
                                 None, None, None))
    for row in rows:
        row["face_turns"] = [
            {"start": a, "end": b, "character": cast.canonical(c) or c}
            for a, b, c in evidence.face_turns.get(row["speaker"], [])]
    df = pl.DataFrame(rows, schema=MAP_SCHEMA).sort("speaker")
    return new_ledger, df


def expected_maps(ledger: Ledger, cast: Cast, human: Sequence[HumanName] = (),
                  references: Sequence[Reference] = (),
                  naming_cfg: NamingConfig = DEFAULT_NAMING) -> pl.DataFrame:
    """(episode, speaker, character) every linked speaker of the series would get now."""
    names = resolve(ledger, cast, human, references, naming_cfg)
    rows = [{"episode": e, "speaker": s, "character": r.character, "source": r.source}
            for (e, s), r in sorted(names.items())]
    return pl.DataFrame(rows, schema={"episode": pl.Utf8, "speaker": pl.Utf8,
                                      "character": pl.Utf8, "source": pl.Utf8})


def stale_episodes(current: pl.DataFrame, expected: pl.DataFrame) -> dict[str, list[str]]:
    """Episodes whose materialized map names a linked speaker differently than ``expected``.

    Returns episode -> ["SPK_01: voice-03 -> Rex", ...]; background rows are not in the ledger
    and never stale.
    """
    if current.is_empty() or expected.is_empty():
        return {}
    joined = current.select("episode", "speaker", pl.col("character").alias("now")).join(
        expected.select("episode", "speaker", pl.col("character").alias("want")),
        on=["episode", "speaker"], how="inner")
    changed = joined.filter(pl.col("now") != pl.col("want")).sort("episode", "speaker")
    out: dict[str, list[str]] = {}
    for ep, spk, now, want in changed.iter_rows():
        out.setdefault(ep, []).append(f"{spk}: {now} -> {want}")
    return out


LINE_NAME_CONFIDENCE = 0.8
# Rows this short are below what diarization resolves reliably (a reply over a neighbour's
# line); longer rows keep their speaker's character even when the line's name disagrees.
LINE_NAME_MAX_S = 1.0
# A line said mostly over another one (its row's overlap_s is at least half its length) is
# heard as the louder voice's speaker even when longer: the line's name decides up to this.
LINE_NAME_MAX_OVERLAPPED_S = 2.0


def apply_character_map(utterances: pl.DataFrame, cmap: pl.DataFrame,
                        canonical: Callable[[str], str | None] | None = None) -> pl.DataFrame:
    """``character``, ``character_confidence`` and ``character_source`` of each turn from the
    map of its speaker (a turn with no speaker keeps a null character).

    With ``canonical`` (the cast's spelling of names), a short whole subtitle line (at most
    ``LINE_NAME_MAX_S``, or ``LINE_NAME_MAX_OVERLAPPED_S`` when said mostly over another line)
    whose Name is another character of this episode than its speaker's keeps the line's name
    (source ``subtitle-line``): diarization gave a quick reply spoken
    over a neighbour to the neighbour's voice, and the line's own name is the better evidence
    for that row. A person's name for the speaker is never overridden this way.
    """
    lookup = cmap.select(
        "speaker",
        pl.col("character").alias("_character"),
        pl.col("confidence").alias("character_confidence"),
        pl.col("source").alias("character_source"),
    ) if not cmap.is_empty() else pl.DataFrame(schema={
        "speaker": pl.Utf8, "_character": pl.Utf8, "character_confidence": pl.Float64,
        "character_source": pl.Utf8})
    order = list(utterances.columns)
    after = "character"
    for col in ("character_confidence", "character_source"):
        if col not in order:
            order.insert(order.index(after) + 1 if after in order else len(order), col)
        after = col
    base = utterances.drop([c for c in ("character_confidence", "character_source")
                            if c in utterances.columns])
    out = base.join(lookup, on="speaker", how="left", maintain_order="left")
    out = out.with_columns(pl.col("_character").alias("character")).drop("_character")
    if canonical is not None and "subtitle_name" in out.columns and out.height:
        known = {c for c in (cmap["character"].to_list() if cmap.height else [])
                 if c and not is_voice_id(c) and c != BACKGROUND}
        split = out["split_line"].to_list() if "split_line" in out.columns else \
            [False] * out.height
        chars, sources, confs = (out["character"].to_list(), out["character_source"].to_list(),
                                 out["character_confidence"].to_list())
        lengths = (out["end"] - out["start"]).to_list() if "end" in out.columns else \
            [0.0] * out.height
        spoken_over = (out["overlap_s"].fill_null(0.0).to_list() if "overlap_s" in out.columns
                       else [0.0] * out.height)
        for i, raw in enumerate(out["subtitle_name"].to_list()):
            name = canonical(raw) if raw else None
            if (name in known and name != chars[i] and not split[i]
                    and lengths[i] <= (LINE_NAME_MAX_OVERLAPPED_S
                                       if spoken_over[i] >= 0.5 * lengths[i]
                                       else LINE_NAME_MAX_S)
                    and sources[i] not in ("human", "human-voice")):
                chars[i], sources[i], confs[i] = name, "subtitle-line", LINE_NAME_CONFIDENCE
        out = out.with_columns(pl.Series("character", chars, dtype=pl.Utf8),
                               pl.Series("character_source", sources, dtype=pl.Utf8),
                               pl.Series("character_confidence", confs, dtype=pl.Float64))
    return _name_by_face_turns(out, cmap).select(order)


def _name_by_face_turns(out: pl.DataFrame, cmap: pl.DataFrame) -> pl.DataFrame:
    """Rows of a voice twin named by the face that speaks them (source ``faces-turn``).

    A row takes the character of the face turns covering at least FACE_TURN_MIN_COVER of it,
    unless a person named the row or its speaker. The confidence is the share covered.
    """
    if out.is_empty() or "face_turns" not in cmap.columns or "start" not in out.columns:
        return out
    turns = {spk: ft for spk, ft in cmap.select("speaker", "face_turns").iter_rows() if ft}
    if not turns:
        return out
    chars, sources, confs = (out["character"].to_list(), out["character_source"].to_list(),
                             out["character_confidence"].to_list())
    for i, (spk, s, e) in enumerate(out.select("speaker", "start", "end").iter_rows()):
        if spk not in turns or e <= s or sources[i] in ("human", "human-voice"):
            continue
        cover: dict[str, float] = {}
        for t in turns[spk]:
            ov = min(e, t["end"]) - max(s, t["start"])
            if ov > 0:
                cover[t["character"]] = cover.get(t["character"], 0.0) + ov
        if not cover:
            continue
        name = max(sorted(cover), key=cover.__getitem__)
        share = min(1.0, cover[name] / (e - s))
        if share >= FACE_TURN_MIN_COVER and name != chars[i]:
            chars[i], sources[i], confs[i] = name, FACE_TURN_SOURCE, round(share, 3)
    return out.with_columns(pl.Series("character", chars, dtype=pl.Utf8),
                            pl.Series("character_source", sources, dtype=pl.Utf8),
                            pl.Series("character_confidence", confs, dtype=pl.Float64))


def registry_table(cmap: pl.DataFrame, casts: dict[str, Cast],
                   embeddings: pl.DataFrame | None = None,
                   min_confidence: float = 0.7) -> pl.DataFrame:
    """One row per series character: names, aliases, voices, minutes, a voice prototype.

    The prototype is the speech-weighted centroid of the embeddings of the character's
    speakers mapped with at least ``min_confidence`` (all of them when none is that sure).
    """
    rows: list[dict[str, Any]] = []
    emb = {}
    if embeddings is not None and not embeddings.is_empty():
        emb = {(e, s): v for e, s, v in embeddings.select("episode", "speaker", "embedding")
               .iter_rows()}
    series_all = sorted(set(cmap["series"].to_list()) if cmap.height else set()) or []
    for series in sorted(set(series_all) | set(casts)):
        cast = casts.get(series)
        part = cmap.filter(pl.col("series") == series) if cmap.height else cmap
        declared = {c.name: c for c in (cast.characters if cast else ())}
        characters = sorted(set(part["character"].to_list()) | set(declared)) if part.height \
            else sorted(declared)
        for ch in characters:
            sub = part.filter(pl.col("character") == ch) if part.height else part
            kind = ("cast" if ch in declared else "background" if ch == BACKGROUND
                    else "voice" if is_voice_id(ch) else "named")
            sure = sub.filter(pl.col("confidence") >= min_confidence)
            proto_rows = sure if sure.height else sub
            vecs, weights = [], []
            for e, s, secs in proto_rows.select("episode", "speaker", "speech_s").iter_rows():
                v = emb.get((e, s))
                if v is not None and len(v):
                    vecs.append(v)
                    weights.append(secs)
            if kind == "background":
                vecs = []
            spec = declared.get(ch)
            sources = (sub.group_by("source").len().sort("source") if sub.height else None)
            rows.append({
                "series": series, "character": ch, "kind": kind,
                "aliases": list(spec.aliases) if spec else [],
                "voices": sorted({v for v in sub["voice"].to_list() if v}) if sub.height else [],
                "episodes": sub["episode"].n_unique() if sub.height else 0,
                "speakers": sub.height,
                "speech_minutes": round(float(sub["speech_s"].sum() or 0.0) / 60, 3)
                if sub.height else 0.0,
                "mean_confidence": round(float(sub["confidence"].mean() or 0.0), 4)
                if sub.height else 0.0,
                "sources": ", ".join(f"{s} x{n}" for s, n in sources.iter_rows())
                if sources is not None else "",
                "prototype": prototype(vecs, weights) if vecs else None,
                "prototype_speakers": len(vecs),
                "reference_clips": [str(p) for p in spec.reference_clips] if spec else [],
            })
    return pl.DataFrame(rows, schema=REGISTRY_SCHEMA)


def prototype_drift(registry: pl.DataFrame, threshold: float) -> list[tuple[str, str, str, float]]:
    """(series, a, b, cosine) for pairs of characters whose prototypes are nearly the same voice."""
    out = []
    for series in sorted(set(registry["series"].to_list()) if registry.height else set()):
        part = registry.filter((pl.col("series") == series) & pl.col("prototype").is_not_null())
        names = part["character"].to_list()
        vecs = [np.asarray(v, np.float64) for v in part["prototype"].to_list()]
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                if vecs[i].size != vecs[j].size:
                    continue
                cos = float(vecs[i] @ vecs[j] / (np.linalg.norm(vecs[i]) * np.linalg.norm(vecs[j])
                                                 + 1e-12))
                if cos >= threshold:
                    out.append((series, names[i], names[j], round(cos, 4)))
    return out
