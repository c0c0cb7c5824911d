"""Review tasks built from model output: what a person sees in Label Studio, most doubtful first.

Two kinds of task (one Label Studio project of each per series):

- ``utterance_review``: a window of consecutive speaker turns; one audio region per turn,
  pre-annotated with the model's speaker, character, transcript, emotion and flags.
- ``speaker_naming``: one diarization speaker of an episode; its clearest turns joined into one
  clip, pre-annotated with a name when the voice matches a speaker named in another episode.

Tasks carry the model's value of every field (``turns`` / ``speaker`` data), so an annotation can
be turned into corrections without asking the model again. Pure functions: no Dagster, no network.
"""

from __future__ import annotations

import html
import math
import os
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import soundfile as sf

from voice_assets.atomic import write_wav
from voice_assets.episode_keys import EPISODE_COLUMN, series_of
from voice_assets.errors import MediaError, VoiceAssetsError
from voice_assets.progress import Progress

UTTERANCE_REVIEW = "utterance_review"
SPEAKER_NAMING = "speaker_naming"
KINDS = (UTTERANCE_REVIEW, SPEAKER_NAMING)

# Label Studio control names in label_studio/*.xml; the parser in corrections.py uses the same.
FLAG_CHOICES = ("not dialogue", "overlap", "music")
CLUSTER_ONE = "one character"
CLUSTER_MIXED = "several voices"
CLUSTER_NONE = "not a character"
SCOPE_WHOLE_VOICE = "every episode of this voice"
SCOPE_THIS_SPEAKER = "only this episode's speaker"

ENV_CONFIGS = "VOICE_ASSETS_LABEL_CONFIGS"

# The review_tasks table: one row per task pushed to Label Studio.
REVIEW_TASKS_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.Utf8(),
    "kind": pl.Utf8(),
    "task_key": pl.Utf8(),
    "task_id": pl.Int64(),
    "project_id": pl.Int64(),
    "priority": pl.Float64(),
    "score": pl.Float64(),
    "start": pl.Float64(),
    "end": pl.Float64(),
    "n_turns": pl.Int64(),
    "speaker": pl.Utf8(),
    "predicted_name": pl.Utf8(),
    "audio_path": pl.Utf8(),
    "model_version": pl.Utf8(),
}
REVIEW_TASKS_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "kind": f"Project the task is in: '{UTTERANCE_REVIEW}' or '{SPEAKER_NAMING}'.",
    "task_key": "Stable key of the task, so a re-run updates it instead of adding another.",
    "task_id": "Label Studio's id of the task.",
    "project_id": "Label Studio's id of the project.",
    "priority": "How much the task needs a person (0-1; the most doubtful come first).",
    "score": "Prediction score Label Studio shows (1 - priority).",
    "start": "Start of the task's audio in the episode, seconds.",
    "end": "End of the task's audio in the episode, seconds.",
    "n_turns": "Speaker turns in the task.",
    "speaker": "Diarization speaker of a speaker-naming task (null for utterance review).",
    "predicted_name": "Name the task is pre-annotated with (null: none).",
    "audio_path": "The task's audio file, served to Label Studio.",
    "model_version": "Versions of voice-assets and the models that made the prediction.",
}


def configs_dir() -> Path:
    """Top-level ``label_studio/`` folder of the repository (override with an env var)."""
    override = os.environ.get(ENV_CONFIGS)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "label_studio"


def label_config(kind: str) -> str:
    """The labeling config XML of a project kind."""
    if kind not in KINDS:
        raise VoiceAssetsError(f"unknown review task kind '{kind}'; expected one of {KINDS}")
    path = configs_dir() / f"{kind}.xml"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise VoiceAssetsError(
            f"labeling config {path} is missing; set {ENV_CONFIGS} to the folder holding "
            f"{', '.join(k + '.xml' for k in KINDS)}"
        ) from exc


def region_id(start_s: float) -> str:
    """Stable Label Studio region id of a turn (its start in ms), so re-pushes keep region ids."""
    return f"u{round(start_s * 1000):08d}"


def hms(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(seconds, 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m:d}:{s:04.1f}"


# --------------------------------------------------------------------------- active learning
def score_utterances(utterances: pl.DataFrame, low_confidence: float = 0.6) -> pl.DataFrame:
    """Add ``priority`` (0..1, higher = review first) and ``reasons`` (why) to each turn.

    A turn is doubtful when its sources disagree (subtitle speaker name vs diarization speaker,
    subtitle name vs character, face vs character when a ``face_character`` column exists), when
    the speaker or text confidence is low, or when voices overlap.
    """
    rows = utterances.to_dicts()
    by_name: dict[str, Counter[str]] = {}
    by_speaker: dict[str, Counter[str]] = {}
    for row in rows:
        name = _norm_name(row.get("subtitle_name"))
        if name and row.get("speaker"):
            by_name.setdefault(name, Counter())[row["speaker"]] += 1
            by_speaker.setdefault(row["speaker"], Counter())[name] += 1
    priorities: list[float] = []
    reasons_all: list[list[str]] = []
    for row in rows:
        score, reasons = 0.0, []
        name = _norm_name(row.get("subtitle_name"))
        speaker = row.get("speaker")
        character = _norm_name(row.get("character"))
        if name and speaker:
            usual_speaker = by_name[name].most_common(1)[0][0]
            usual_name = by_speaker[speaker].most_common(1)[0][0]
            if usual_speaker != speaker or usual_name != name:
                score = max(score, 1.0)
                reasons.append(
                    f"subtitles name {row['subtitle_name']!s} (usually {usual_speaker}) "
                    f"but diarization says {speaker}"
                )
        if name and character and name != character:
            score = max(score, 1.0)
            reasons.append(f"subtitles say {row['subtitle_name']}, character is {row['character']}")
        face = _norm_name(row.get("face_character"))
        if face and character and face != character:
            score = max(score, 1.0)
            reasons.append(f"face says {row['face_character']}, voice says {row['character']}")
        for col, what in (("speaker_confidence", "speaker"), ("text_confidence", "transcript")):
            value = row.get(col)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if value < low_confidence:
                score = max(score, 1.0 - float(value))
                reasons.append(f"low {what} confidence {float(value):.2f}")
        if row.get("overlap"):
            score = max(score, 0.7)
            reasons.append("overlapping voices")
        if not character or _unnamed(character):
            score = max(score, 0.2)
        priorities.append(round(min(1.0, score), 4))
        reasons_all.append(reasons)
    return utterances.with_columns(
        pl.Series("priority", priorities, dtype=pl.Float64),
        pl.Series("reasons", reasons_all, dtype=pl.List(pl.Utf8)),
    )


def _unnamed(character: str) -> bool:
    """A series voice id (``voice-07``) or ``background``: a character nobody named yet."""
    text = str(character).casefold()
    return text == "background" or (text.startswith("voice-") and text[6:].isdigit())


def _norm_name(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split()).casefold()
    return text or None


# --------------------------------------------------------------------------- task specs
@dataclass
class TaskSpec:
    """One Label Studio task: its stable key, data, one prediction and the audio to cut."""

    kind: str
    key: str
    episode: str
    data: dict[str, Any]
    result: list[dict[str, Any]]
    score: float
    priority: float
    start: float
    end: float
    audio_spans: list[tuple[float, float]]
    audio_file: str
    speaker: str | None = None
    n_turns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _choice_list(values: Sequence[str]) -> list[dict[str, str]]:
    return [{"value": v} for v in values]


def _flags_of(row: dict[str, Any]) -> list[str]:
    flags = [f for f in (row.get("review_flags") or []) if f in FLAG_CHOICES]
    if row.get("overlap") and "overlap" not in flags:
        flags.append("overlap")
    return sorted(set(flags))


def chunk_turns(
    turns: pl.DataFrame, max_chunk_s: float = 30.0, max_gap_s: float = 3.0, max_turns: int = 8
) -> list[pl.DataFrame]:
    """Split the episode's turns (sorted by start) into review windows of consecutive turns."""
    turns = turns.sort("start")
    chunks: list[pl.DataFrame] = []
    begin = 0
    rows = turns.select("start", "end").rows()
    for i in range(1, len(rows) + 1):
        if i < len(rows):
            gap = rows[i][0] - rows[i - 1][1]
            span = rows[i][1] - rows[begin][0]
            if gap <= max_gap_s and span <= max_chunk_s and i - begin < max_turns:
                continue
        chunks.append(turns.slice(begin, i - begin))
        begin = i
    return chunks


def build_utterance_tasks(
    episode: str,
    utterances: pl.DataFrame,
    characters: Sequence[str],
    model_version: str,
    duration_s: float | None = None,
    pad_s: float = 0.5,
    max_chunk_s: float = 30.0,
    max_turns: int = 8,
    low_confidence: float = 0.6,
) -> list[TaskSpec]:
    """Utterance-review tasks for one episode, most doubtful first."""
    if utterances.is_empty():
        return []
    scored = score_utterances(utterances, low_confidence)
    speakers = sorted({s for s in scored["speaker"].to_list() if s})
    names = sorted(
        set(characters) | {c for c in scored["character"].to_list() if c},
        key=lambda n: (_unnamed(n), n.casefold()),
    )
    specs: list[TaskSpec] = []
    for chunk in chunk_turns(scored, max_chunk_s=max_chunk_s, max_turns=max_turns):
        rows = chunk.to_dicts()
        start = max(0.0, rows[0]["start"] - pad_s)
        end = max(r["end"] for r in rows) + pad_s
        if duration_s is not None:
            end = min(end, duration_s)
        start_ms, end_ms = round(start * 1000), round(end * 1000)
        key = f"{episode}/turns/{rows[0]['id']}"
        turns: list[dict[str, Any]] = []
        result: list[dict[str, Any]] = []
        reasons: list[str] = []
        for r in rows:
            rid = region_id(r["start"])
            flags = _flags_of(r)
            turns.append(
                {
                    "id": r["id"],
                    "region": rid,
                    "start": float(r["start"]),
                    "end": float(r["end"]),
                    "speaker": r.get("speaker"),
                    "character": r.get("character"),
                    "text": r.get("text") or "",
                    "emotion": r.get("emotion"),
                    "flags": flags,
                    "priority": r["priority"],
                }
            )
            value = {
                "start": round(r["start"] - start, 3),
                "end": round(r["end"] - start, 3),
                "channel": 0,
            }
            base = {"id": rid, "to_name": "audio", "origin": "prediction"}
            if r.get("speaker"):
                result.append(
                    {
                        **base,
                        "from_name": "speaker",
                        "type": "labels",
                        "value": {**value, "labels": [r["speaker"]]},
                    }
                )
            if r.get("character"):
                result.append(
                    {
                        **base,
                        "from_name": "character",
                        "type": "choices",
                        "value": {**value, "choices": [r["character"]]},
                    }
                )
            result.append(
                {
                    **base,
                    "from_name": "transcript",
                    "type": "textarea",
                    "value": {**value, "text": [r.get("text") or ""]},
                }
            )
            if r.get("emotion"):
                result.append(
                    {
                        **base,
                        "from_name": "emotion",
                        "type": "choices",
                        "value": {**value, "choices": [r["emotion"]]},
                    }
                )
            if flags:
                result.append(
                    {
                        **base,
                        "from_name": "flags",
                        "type": "choices",
                        "value": {**value, "choices": flags},
                    }
                )
            reasons += [f"{hms(r['start'])} {why}" for why in r["reasons"]]
        priority = max(r["priority"] for r in rows)
        data = {
            "title": f"{episode} · {hms(start)}–{hms(end)} · {len(rows)} turn(s)",
            "hint": ("Check: " + "; ".join(reasons)) if reasons else "Confirm or fix each turn.",
            "speakers": _choice_list(speakers),
            "characters": _choice_list(names),
            "episode": episode,
            "series": series_of(episode),
            "kind": UTTERANCE_REVIEW,
            "task_key": key,
            "offset": round(start, 3),
            "priority": priority,
            "model_version": model_version,
            "turns": turns,
        }
        specs.append(
            TaskSpec(
                kind=UTTERANCE_REVIEW,
                key=key,
                episode=episode,
                data=data,
                result=result,
                score=round(1.0 - priority, 4),
                priority=priority,
                start=start,
                end=end,
                audio_spans=[(start, end)],
                audio_file=f"turns_{start_ms:08d}-{end_ms:08d}.wav",
                n_turns=len(rows),
            )
        )
    specs.sort(key=lambda s: (-s.priority, s.start))
    return specs


def best_turns(
    turns: pl.DataFrame, max_clips: int = 5, max_total_s: float = 20.0, min_s: float = 1.0
) -> list[tuple[float, float]]:
    """The clearest turns of one speaker: no overlap, confident, long enough, not too long."""
    if turns.is_empty():
        return []
    df = turns.with_columns(
        (pl.col("end") - pl.col("start")).alias("_dur"),
        pl.col("speaker_confidence").fill_null(0.5).alias("_conf")
        if "speaker_confidence" in turns.columns
        else pl.lit(0.5).alias("_conf"),
        pl.col("overlap").fill_null(False).alias("_ovl")
        if "overlap" in turns.columns
        else pl.lit(False).alias("_ovl"),
    )
    df = df.with_columns(
        (pl.col("_dur") >= min_s).alias("_long_enough"),
        pl.col("_dur").clip(upper_bound=8.0).alias("_dur_capped"),
    ).sort(["_ovl", "_long_enough", "_conf", "_dur_capped"], descending=[False, True, True, True])
    picked: list[tuple[float, float]] = []
    total = 0.0
    for start, end in df.select("start", "end").rows():
        length = min(end - start, 8.0)
        if picked and total + length > max_total_s:
            break
        picked.append((float(start), float(start + length)))
        total += length
        if len(picked) >= max_clips:
            break
    return sorted(picked)


def faces_html(urls: Sequence[str]) -> str:
    """The faces that speak with a voice, as the speaker-naming task shows them."""
    if not urls:
        return "<i>No face on screen speaks with this voice.</i>"
    return " ".join(f'<img src="{html.escape(u, quote=True)}" height="96" '
                    f'style="margin:2px;border-radius:4px" alt="face {i + 1}"/>'
                    for i, u in enumerate(urls))


def build_speaker_tasks(
    episode: str,
    utterances: pl.DataFrame,
    characters: Sequence[str],
    suggestions: pl.DataFrame | None,
    model_version: str,
    faces: Mapping[str, Sequence[str]] | None = None,
) -> list[TaskSpec]:
    """Speaker-naming tasks: one per diarization speaker of the episode.

    ``suggestions`` (speaker, name, score, source) comes from names.suggest_names; the current
    ``character`` of the speaker's turns (a name given earlier) wins over a voice match.
    ``faces``: speaker -> image URLs of the faces that speak its turns (shown beside the
    audio: a face settles what a voice alone leaves open).
    """
    faces = faces or {}
    if utterances.is_empty():
        return []
    sugg = {r["speaker"]: r for r in (suggestions.to_dicts() if suggestions is not None else [])}
    subtitle_names = {
        n
        for n in (
            utterances["subtitle_name"].to_list() if "subtitle_name" in utterances.columns else []
        )
        if n
    }
    suggested = {s["name"] for s in sugg.values() if s["name"]}
    in_map = {c for c in utterances["character"].to_list() if c and not _unnamed(c)}
    names = sorted(
        set(characters) | subtitle_names | suggested | in_map,
        key=lambda n: (_unnamed(n), n.casefold()),
    )
    specs: list[TaskSpec] = []
    groups = utterances.filter(pl.col("speaker").is_not_null()).group_by("speaker")
    for group_key, group in sorted(groups, key=lambda g: g[0][0]):
        speaker = str(group_key[0])
        turns = group.sort("start")
        spans = [(float(s), float(e)) for s, e in turns.select("start", "end").rows()]
        clips = best_turns(turns)
        current = Counter(
            c for c in turns["character"].to_list() if c and not _unnamed(c)
        ).most_common(1)
        voices = Counter(c for c in turns["character"].to_list() if c and _unnamed(c))
        hint_parts = [f"{len(spans)} turn(s), {sum(e - s for s, e in spans):.0f} s of speech"]
        sub_col = turns["subtitle_name"].to_list() if "subtitle_name" in turns.columns else []
        subs = Counter(n for n in sub_col if n).most_common(3)
        if subs:
            hint_parts.append("subtitles name: " + ", ".join(f"{n} ×{k}" for n, k in subs))
        predicted, score = None, 0.0
        if current:
            predicted = current[0][0]
            sources = Counter(
                s
                for c, s in zip(
                    turns["character"].to_list(),
                    turns["character_source"].to_list()
                    if "character_source" in turns.columns
                    else [None] * turns.height,
                    strict=True,
                )
                if c == predicted and s
            )
            confs = [
                float(v)
                for c, v in zip(
                    turns["character"].to_list(),
                    turns["character_confidence"].to_list()
                    if "character_confidence" in turns.columns
                    else [1.0] * turns.height,
                    strict=True,
                )
                if c == predicted and v is not None
            ]
            score = round(float(np.mean(confs)), 4) if confs else 1.0
            how = f" from {sources.most_common(1)[0][0]}" if sources else ""
            hint_parts.append(f"currently {predicted}{how} (confidence {score:.2f})")
        elif voices:
            hint_parts.append(
                f"series voice {voices.most_common(1)[0][0]}: naming it names every episode"
                " of that voice"
            )
        elif speaker in sugg and sugg[speaker]["name"]:
            predicted, score = sugg[speaker]["name"], float(sugg[speaker]["score"])
            hint_parts.append(
                f"voice matches {predicted} of {sugg[speaker]['source']} (cosine {score:.2f})"
            )
        result: list[dict[str, Any]] = [
            {
                "id": "cluster",
                "from_name": "cluster",
                "to_name": "audio",
                "type": "choices",
                "value": {"choices": [CLUSTER_ONE]},
                "origin": "prediction",
            }
        ]
        if predicted:
            result.append(
                {
                    "id": "name",
                    "from_name": "name",
                    "to_name": "audio",
                    "type": "textarea",
                    "value": {"text": [predicted]},
                    "origin": "prediction",
                }
            )
            if predicted in names:
                result.append(
                    {
                        "id": "character",
                        "from_name": "character",
                        "to_name": "audio",
                        "type": "choices",
                        "value": {"choices": [predicted]},
                        "origin": "prediction",
                    }
                )
        key = f"{episode}/speaker/{speaker}"
        data = {
            "title": f"{episode} · who is {speaker}?",
            "hint": "; ".join(hint_parts),
            "faces": faces_html(list(faces.get(speaker, []))),
            "characters": _choice_list(names),
            "episode": episode,
            "series": series_of(episode),
            "kind": SPEAKER_NAMING,
            "task_key": key,
            "speaker": speaker,
            "predicted_name": predicted,
            "spans": [[round(s, 3), round(e, 3)] for s, e in spans],
            "clips": [[round(s, 3), round(e, 3)] for s, e in clips],
            "model_version": model_version,
        }
        # Unnamed speakers with the most speech first: naming them labels the most turns.
        priority = round(
            min(
                1.0,
                (0.5 if predicted is None else 0.5 * (1.0 - score))
                + 0.5 * min(1.0, sum(e - s for s, e in spans) / 300.0),
            ),
            4,
        )
        specs.append(
            TaskSpec(
                kind=SPEAKER_NAMING,
                key=key,
                episode=episode,
                data=data,
                result=result,
                score=round(1.0 - priority, 4),
                priority=priority,
                start=spans[0][0],
                end=spans[-1][1],
                audio_spans=clips,
                audio_file=f"speaker_{speaker}.wav",
                speaker=speaker,
                n_turns=len(spans),
                extra={"predicted_name": predicted, "match_score": score},
            )
        )
    specs.sort(key=lambda s: (-s.priority, s.start))
    return specs


# --------------------------------------------------------------------------- audio
def local_files_url(path: Path, document_root: Path) -> str:
    """URL of a file under Label Studio's local-files document root."""
    rel = Path(path).resolve().relative_to(Path(document_root).resolve())
    return "/data/local-files/?d=" + urllib.parse.quote(rel.as_posix(), safe="/")


def write_task_audio(
    specs: Sequence[TaskSpec],
    source_wav: Path,
    out_dir: Path,
    gap_s: float = 0.4,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Cut each task's audio (one window, or several clips joined by short silences) to a WAV."""
    source_wav = Path(source_wav)
    try:
        info = sf.info(str(source_wav))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise MediaError(source_wav, f"cannot read the review audio: {exc}") from exc
    sr = info.samplerate
    out: dict[str, Path] = {}
    with sf.SoundFile(str(source_wav)) as snd:
        for i, spec in enumerate(specs):
            parts: list[np.ndarray] = []
            for start, end in spec.audio_spans:
                a, b = max(0, int(start * sr)), min(info.frames, math.ceil(end * sr))
                if b <= a:
                    continue
                snd.seek(a)
                block = snd.read(b - a, dtype="float32", always_2d=True).mean(axis=1)
                if parts:
                    parts.append(np.zeros(int(gap_s * sr), dtype=np.float32))
                parts.append(block)
            samples = np.concatenate(parts) if parts else np.zeros(int(0.5 * sr), np.float32)
            target = out_dir / spec.audio_file
            write_wav(target, samples, sr)
            out[spec.key] = target
            if progress:
                progress("review audio", i + 1, len(specs))
    return out
