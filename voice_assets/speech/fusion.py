"""Fuse aligned lines with diarization into utterances: one row per speaker turn.

A subtitle line is one unit of *text*, a diarization turn one unit of *voice*; a dataset clip
needs both to agree. Each word goes to the speaker whose turns cover most of it, and a line
whose words belong to different speakers is split there (a one-word blip at a turn boundary
is diarization jitter, not a second speaker, and stays with its neighbour).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from voice_assets.episode_keys import EPISODE_COLUMN
from voice_assets.speech.asr import WORD_DTYPE, merge_regions
from voice_assets.speech.japanese import join_words

# A word of an utterance also says how many of its seconds another voice was heard in.
UTTERANCE_WORD_DTYPE = pl.Struct([*WORD_DTYPE.fields, pl.Field("overlap_s", pl.Float64)])
# A word counts as overlapped when another voice covers this much of it (seconds, or share
# of the word): less is turn-boundary jitter.
OVERLAP_WORD_MIN_S = 0.08
OVERLAP_WORD_MIN_SHARE = 0.3
# A flagged stretch counts this much wider on each side when words are measured against it:
# the overlap model's stretches start and end up to about 0.2 s inside the true overlap, and
# a clip that keeps the edge of an overlap is not one voice.
OVERLAP_GUARD_S = 0.15

UTTERANCE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(),
    "episode": pl.Utf8(),
    "start": pl.Float64(),
    "end": pl.Float64(),
    "speaker": pl.Utf8(),
    "character": pl.Utf8(),
    "character_confidence": pl.Float64(),
    "character_source": pl.Utf8(),
    "text": pl.Utf8(),
    "words": pl.List(UTTERANCE_WORD_DTYPE),
    "language": pl.Utf8(),
    "overlap": pl.Boolean(),  # some of the row is overlapped speech
    "overlap_s": pl.Float64(),  # seconds of the row's speech another voice is heard in
    "text_source": pl.Utf8(),
    "speaker_confidence": pl.Float64(),
    "text_confidence": pl.Float64(),
    "subtitle_name": pl.Utf8(),
    "split_line": pl.Boolean(),  # the row is part of a line split at a speaker change
    "emotion": pl.Utf8(),
    "audio_path": pl.Utf8(),
}
UTTERANCE_DESCRIPTIONS: dict[str, str] = {
    "id": "Utterance id `<episode>_<start_ms:08d>`, stable across re-runs while the start is.",
    "episode": EPISODE_COLUMN,
    "start": "Start of the turn, seconds.",
    "end": "End of the turn, seconds.",
    "speaker": "Diarization speaker of the turn (null: no speaker covers it).",
    "character": "Series character of the turn: a name, voice-NN or background (null: none).",
    "character_confidence": "Confidence of the character (0-1).",
    "character_source": "Why this character (the character map's source, a subtitle line's "
    "own name, or a person's correction).",
    "text": "Text of the turn.",
    "words": "Words with times (seconds), score and the seconds another voice overlaps each.",
    "language": "Language of the episode's transcript.",
    "overlap": "True when some of the turn is overlapped speech.",
    "overlap_s": "Seconds of the turn in which another voice is heard.",
    "text_source": "'subtitle', 'asr', or 'none' for speech no line covers.",
    "speaker_confidence": "Share of the turn its speaker's diarization covers, times the "
    "diarization confidence (0-1).",
    "text_confidence": "Alignment confidence of the subtitle line, or the mean ASR word score "
    "(0-1).",
    "subtitle_name": "Speaker name the subtitle line gives (null: none).",
    "split_line": "True when the row is part of a subtitle line split at a speaker change.",
    "emotion": "Emotion a person gave the turn in review (null: none; see emotion_tags).",
    "audio_path": "Not filled in this table (null); a clip's audio file is clips.audio_path.",
}


def utterance_id(episode: str, start: float) -> str:
    """`<episode>_<start_ms:08d>`: stable across re-runs as long as the start is."""
    return f"{episode}_{max(0, round(start * 1000)):08d}"


@dataclass(frozen=True)
class Turns:
    """Diarization turns as arrays, for vectorised overlap queries."""

    start: np.ndarray
    end: np.ndarray
    speaker: np.ndarray
    overlap: np.ndarray
    confidence: np.ndarray

    @classmethod
    def from_frame(cls, df: pl.DataFrame | None) -> Turns:
        if df is None or df.is_empty():
            z = np.zeros(0)
            return cls(z, z, np.zeros(0, dtype=object), np.zeros(0, dtype=bool), z)
        conf = (df.get_column("confidence").fill_null(1.0).to_numpy()
                if "confidence" in df.columns else np.ones(len(df)))
        ovl = (df.get_column("overlap").fill_null(False).to_numpy().astype(bool)
               if "overlap" in df.columns else np.zeros(len(df), dtype=bool))
        return cls(df.get_column("start").to_numpy().astype(float),
                   df.get_column("end").to_numpy().astype(float),
                   np.asarray(df.get_column("speaker").to_list(), dtype=object), ovl,
                   np.asarray(conf, dtype=float))

    def __len__(self) -> int:
        return len(self.start)

    def overlaps(self, s: float, e: float) -> np.ndarray:
        return np.clip(np.minimum(self.end, e) - np.maximum(self.start, s), 0.0, None)


def _coverage(turns: Turns, s: float, e: float) -> dict[str, float]:
    """Seconds of [s, e] each speaker's turns cover."""
    ov = turns.overlaps(s, e)
    by: dict[str, float] = {}
    for spk, v in zip(turns.speaker[ov > 0], ov[ov > 0], strict=True):
        by[spk] = by.get(spk, 0.0) + float(v)
    return by


def word_speaker(turns: Turns, s: float, e: float, nearest_s: float = 0.3,
                 prefer: str | None = None) -> str | None:
    """Speaker whose turns cover most of [s, e]; else the nearest turn within nearest_s.

    Where turns of several speakers cover the word (overlapped speech), ``prefer`` (the
    speaker of the rest of the line) wins if it is among them: the other voice is the one
    talking over it.
    """
    if not len(turns):
        return None
    if e - s < 0.05:  # zero-length words (interpolated) still need a vote
        mid = (s + e) / 2
        s, e = mid - 0.025, mid + 0.025
    by = _coverage(turns, s, e)
    if by:
        if prefer is not None and prefer in by and len(by) > 1:
            return prefer
        return max(sorted(by), key=lambda k: by[k])
    dist = np.maximum(turns.start - e, s - turns.end)
    k = int(np.argmin(dist))
    return str(turns.speaker[k]) if dist[k] <= nearest_s else None


@dataclass
class _Run:
    speaker: str | None
    words: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.words[-1]["end"] - self.words[0]["start"]


def speaker_runs(words: Sequence[dict[str, Any]], turns: Turns, min_words: int = 2,
                 min_run_s: float = 0.5) -> list[_Run]:
    """Consecutive words of one speaker; short blips merge into a neighbouring run."""
    line = _coverage(turns, words[0]["start"], max(w["end"] for w in words)) if words else {}
    main = max(sorted(line), key=lambda k: line[k]) if line else None
    labels = [word_speaker(turns, w["start"], w["end"], prefer=main) for w in words]
    # Words no turn covers take the speaker of the word before (else after).
    for i in range(len(labels)):
        if labels[i] is None and i > 0:
            labels[i] = labels[i - 1]
    for i in range(len(labels) - 2, -1, -1):
        if labels[i] is None:
            labels[i] = labels[i + 1]
    runs: list[_Run] = []
    for w, lab in zip(words, labels, strict=True):
        if not runs or runs[-1].speaker != lab:
            runs.append(_Run(lab))
        runs[-1].words.append(dict(w))
    changed = True
    while changed and len(runs) > 1:
        changed = False
        for i, r in enumerate(runs):
            if len(r.words) >= min_words or r.duration >= min_run_s:
                continue
            # Merge the blip into the longer neighbour.
            left = runs[i - 1] if i > 0 else None
            right = runs[i + 1] if i + 1 < len(runs) else None
            target = left if right is None or (left is not None and
                                               left.duration >= right.duration) else right
            assert target is not None
            if target is left:
                target.words.extend(r.words)
            else:
                target.words[:0] = r.words
            del runs[i]
            # Neighbours that now share a speaker join.
            merged: list[_Run] = []
            for q in runs:
                if merged and merged[-1].speaker == q.speaker:
                    merged[-1].words.extend(q.words)
                else:
                    merged.append(q)
            runs = merged
            changed = True
            break
    return runs


def _speaker_confidence(turns: Turns, speaker: str | None, s: float, e: float) -> float:
    """Share of the span the speaker's turns cover, times their diarization confidence."""
    if speaker is None or not len(turns) or e <= s:
        return 0.0
    mask = turns.speaker == speaker
    ov = turns.overlaps(s, e)[mask]
    if ov.sum() <= 0:
        return 0.0
    coverage = min(1.0, float(ov.sum()) / (e - s))
    conf = float(np.average(turns.confidence[mask], weights=ov + 1e-9))
    return round(coverage * conf, 4)


def word_is_overlapped(word: dict[str, Any]) -> bool:
    """Whether enough of a word is spoken over (see OVERLAP_WORD_MIN_S / _SHARE)."""
    ov = float(word.get("overlap_s") or 0.0)
    dur = max(float(word["end"]) - float(word["start"]), 1e-3)
    return ov >= min(OVERLAP_WORD_MIN_S, OVERLAP_WORD_MIN_SHARE * dur) and ov > 0.02


def _covered(s: np.ndarray, e: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Seconds of each [s, e] that the (merged, sorted) ``spans`` cover."""
    if not len(spans) or not len(s):
        return np.zeros(len(s))
    inter = np.minimum(e[:, None], spans[None, :, 1]) - np.maximum(s[:, None], spans[None, :, 0])
    return np.clip(inter, 0.0, None).sum(axis=1)


def mark_overlaps(rows: list[dict[str, Any]], turns: Turns) -> None:
    """Per word and per row: the seconds another voice is heard in (in place).

    Three kinds of evidence, each measured in seconds rather than flagged per turn: the
    diarizer's overlapped stretches (of any voice, ``OVERLAP_GUARD_S`` wider), another
    voice's turns, and another line's words at the same time (two subtitle lines said at
    once: diarization often hears a short reply over a line as the same voice, but one person
    does not say two lines).
    A row is ``overlap`` when one of its words is overlapped (see `word_is_overlapped`), or
    already was (a line sharing its time with a concurrent line).
    Rows without words are measured over their whole span.
    """
    # Evidence spans: (start, end, owner); owner is a row index for words, -1 for turns.
    starts: list[float] = []
    ends: list[float] = []
    owners: list[int] = []
    voices: list[str | None] = []
    for a, b, spk, f in zip(turns.start, turns.end, turns.speaker, turns.overlap, strict=True):
        guard = OVERLAP_GUARD_S if f else 0.0
        starts.append(float(a) - guard)
        ends.append(float(b) + guard)
        owners.append(-1)
        voices.append(None if f else spk)  # a flagged stretch counts against every voice
    for i, r in enumerate(rows):
        spans = [(float(w["start"]), float(w["end"])) for w in r["words"] or []] \
            or [(float(r["start"]), float(r["end"]))]
        for a, b in spans:
            starts.append(a)
            ends.append(b)
            owners.append(i)
            voices.append(None)  # another line's words: another person, whoever diarized
    st, en, own = np.asarray(starts), np.asarray(ends), np.asarray(owners)
    voice = np.asarray(voices, dtype=object)
    anyone = np.array([v is None for v in voices], dtype=bool)
    for i, r in enumerate(rows):
        near = (en > r["start"]) & (st < r["end"]) & (own != i)
        near &= anyone | (voice != r["speaker"])
        ev = np.asarray(merge_regions(list(zip(st[near].tolist(), en[near].tolist(),
                                                strict=True)), np.inf, pad=0.0),
                        dtype=float).reshape(-1, 2)
        words = r["words"] or []
        if words:
            s = np.array([float(w["start"]) for w in words])
            e = np.array([float(w["end"]) for w in words])
            cov = _covered(s, e, ev)
            r["words"] = [{**w, "overlap_s": round(float(c), 3)}
                          for w, c in zip(words, cov, strict=True)]
            r["overlap_s"] = round(float(cov.sum()), 3)
            r["overlap"] = bool(r["overlap"]) or any(word_is_overlapped(w) for w in r["words"])
        else:
            cov = float(_covered(np.array([r["start"]]), np.array([r["end"]]), ev)[0])
            r["overlap_s"] = round(cov, 3)
            r["overlap"] = bool(r["overlap"]) or cov >= 0.1


def _mark_unheard_as_spoken_over(row: dict[str, Any]) -> None:
    """Words of a row the ASR did not hear (score 0: their times were spread over the line),
    counted as spoken over in full (in place). For a line the subtitles show while another
    dialogue line is on screen: the ASR hearing the other voice and not this one is the usual
    reason, and a guessed time is no evidence of clean speech."""
    words = row["words"] or []
    if not any(not w.get("score") for w in words):
        return
    row["words"] = [w if w.get("score") else
                    {**w, "overlap_s": round(max(float(w.get("overlap_s") or 0.0),
                                                 float(w["end"]) - float(w["start"])), 3)}
                    for w in words]
    row["overlap_s"] = round(sum(float(w["overlap_s"]) for w in row["words"]), 3)
    row["overlap"] = bool(row["overlap"]) or any(word_is_overlapped(w) for w in row["words"])


def _unsplit_concurrent(runs: list[_Run], main: str | None, i: int,
                        lines: Sequence[dict[str, Any]],
                        mains: Sequence[str | None]) -> tuple[list[_Run], bool]:
    """Undo a split where the 'other' voice is another line spoken at the same time.

    Diarization gives overlapped speech to one voice; when a concurrent line of that voice
    accounts for it, this line's words there are still this line's speaker's.
    """
    out: list[_Run] = []
    concurrent = False
    for run in runs:
        s, e = run.words[0]["start"], max(w["end"] for w in run.words)
        if run.speaker != main and main is not None:
            for j, other in enumerate(lines):
                if j == i or mains[j] != run.speaker:
                    continue
                ov = min(e, other["end"]) - max(s, other["start"])
                if ov >= 0.5 * (e - s):
                    run = _Run(main, run.words)
                    concurrent = True
                    break
        if out and out[-1].speaker == run.speaker:
            out[-1].words.extend(run.words)
        else:
            out.append(run)
    return out, concurrent


def fuse_utterances(episode: str, aligned: pl.DataFrame, diarization: pl.DataFrame | None,
                    language: str | None = None) -> pl.DataFrame:
    """The `utterances` table (before human corrections) from aligned dialogue lines."""
    turns = Turns.from_frame(diarization)
    rows: list[dict[str, Any]] = []
    shown_together: list[dict[str, Any]] = []  # rows of lines on screen with another line
    dialogue = aligned.filter(pl.col("kind") == "dialogue").sort("start", "line")
    lines = list(dialogue.iter_rows(named=True))
    mains = []
    for ln in lines:
        cov = _coverage(turns, ln["start"], ln["end"]) if len(turns) else {}
        mains.append(max(sorted(cov), key=lambda k: cov[k]) if cov else None)
    for i, ln in enumerate(lines):
        words = [w for w in (ln["words"] or []) if w["end"] >= w["start"]]
        concurrent = False
        if words:
            runs = speaker_runs(words, turns)
            if len(runs) > 1:
                runs, concurrent = _unsplit_concurrent(runs, mains[i], i, lines, mains)
        else:
            runs = [_Run(word_speaker(turns, ln["start"], ln["end"]),
                         [{"word": ln["text"], "start": ln["start"], "end": ln["end"],
                           "score": ln["confidence"]}])]
        for run in runs:
            s, e = float(run.words[0]["start"]), float(max(w["end"] for w in run.words))
            text = (ln["text"] if len(runs) == 1
                    else join_words([str(w["word"]) for w in run.words]))
            if ln["text_source"] == "asr":
                text_conf = float(np.mean([w["score"] or 0.0 for w in run.words]))
            else:
                text_conf = float(ln["confidence"] or 0.0)
            rows.append({
                "episode": episode, "start": s, "end": e, "speaker": run.speaker,
                "character": None, "character_confidence": None, "character_source": None,
                "text": text, "words": run.words if words else [],
                "language": language,
                "overlap": concurrent, "overlap_s": 0.0,
                "text_source": ln["text_source"],
                "speaker_confidence": _speaker_confidence(turns, run.speaker, s, e),
                "text_confidence": round(text_conf, 4), "subtitle_name": ln["name"],
                "split_line": len(runs) > 1, "emotion": None, "audio_path": None,
            })
            if ln.get("overlaps_other"):
                shown_together.append(rows[-1])
    rows += untranscribed_rows(episode, turns, rows, language)
    mark_overlaps(rows, turns)
    for row in shown_together:
        _mark_unheard_as_spoken_over(row)
    rows.sort(key=lambda r: (r["start"], r["speaker"] or "", r["end"]))
    seen: set[str] = set()
    for r in rows:
        ms = max(0, round(r["start"] * 1000))
        while (uid := utterance_id(episode, ms / 1000)) in seen:
            ms += 1  # two turns starting in the same millisecond (overlapping speech)
        seen.add(uid)
        r["id"] = uid
    return pl.DataFrame(rows, schema=UTTERANCE_SCHEMA)


def untranscribed_rows(episode: str, turns: Turns, rows: Sequence[dict[str, Any]],
                       language: str | None, min_s: float = 0.5,
                       join_gap_s: float = 0.3) -> list[dict[str, Any]]:
    """Rows for diarized speech no transcript line covers (ASR heard nothing there).

    Who spoke is known even where the words are not: the row keeps the speech attributed to
    its speaker (voice datasets without text, review, scoring) with empty text and
    ``text_source`` "none", which the clip gates reject from transcript datasets.
    """
    if not len(turns):
        return []
    spans = sorted((r["start"], r["end"]) for r in rows)
    pieces: list[tuple[float, float, str, bool, float]] = []
    for k in np.argsort(turns.start, kind="stable"):
        s, e, spk = float(turns.start[k]), float(turns.end[k]), str(turns.speaker[k])
        free = [(s, e)]
        for a, b in spans:
            if b <= s or a >= e:
                continue
            nxt = []
            for fs, fe in free:
                if b <= fs or a >= fe:
                    nxt.append((fs, fe))
                    continue
                if a > fs:
                    nxt.append((fs, a))
                if b < fe:
                    nxt.append((b, fe))
            free = nxt
        for fs, fe in free:
            if pieces and pieces[-1][2] == spk and fs - pieces[-1][1] <= join_gap_s:
                ps, _, _, povl, pconf = pieces[-1]
                pieces[-1] = (ps, fe, spk, povl or bool(turns.overlap[k]),
                              min(pconf, float(turns.confidence[k])))
            else:
                pieces.append((fs, fe, spk, bool(turns.overlap[k]), float(turns.confidence[k])))
    return [
        {"episode": episode, "start": round(s, 3), "end": round(e, 3), "speaker": spk,
         "character": None, "character_confidence": None, "character_source": None,
         "text": "", "words": [], "language": language, "overlap": ovl, "overlap_s": 0.0,
         "text_source": "none",
         "speaker_confidence": round(conf, 4), "text_confidence": 0.0, "subtitle_name": None,
         "split_line": False, "emotion": None, "audio_path": None}
        for s, e, spk, ovl, conf in pieces if e - s >= min_s
    ]


def turn_problems(df: pl.DataFrame, duration: float | None, tol: float = 0.05) -> dict[str, int]:
    """Counts of rows that break the utterance invariants (all zero when healthy)."""
    if df.is_empty():
        return {"negative_duration": 0, "outside_episode": 0, "words_outside_turn": 0,
                "duplicate_ids": 0}
    neg = df.filter(pl.col("end") < pl.col("start")).height
    outside = df.filter((pl.col("start") < -tol) | (pl.col("end") > (duration or 1e18) + tol)
                        ).height
    bad_words = 0
    for s, e, ws in df.select("start", "end", "words").iter_rows():
        bad_words += sum(1 for w in ws or [] if w["start"] < s - tol or w["end"] > e + tol
                         or w["end"] < w["start"])
    dup = df.height - df.get_column("id").n_unique() if "id" in df.columns else 0
    return {"negative_duration": neg, "outside_episode": outside,
            "words_outside_turn": bad_words, "duplicate_ids": dup}
