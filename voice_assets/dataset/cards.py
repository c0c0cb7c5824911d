"""Dataset cards: one markdown page per character saying what is in its dataset and what is not.

A card is what a user reads before training: how many minutes and clips there are per split,
from which episodes, which emotions, how clean, how much was rejected and why, and how far the
character is from the 20-30 minutes most voice-cloning recipes ask for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

TARGET_MINUTES = (20.0, 30.0)


@dataclass(frozen=True)
class CardStats:
    series: str
    character: str
    minutes: float
    clips: int
    episodes: int
    rejected: int
    split_minutes: dict[str, float]
    emotions: dict[str, int]
    rejections: dict[str, int]
    target_status: str


CARD_SCHEMA: dict[str, pl.DataType] = {
    "series": pl.Utf8(), "character": pl.Utf8(), "minutes": pl.Float64(), "clips": pl.Int64(),
    "episodes": pl.Int64(), "rejected": pl.Int64(), "train_minutes": pl.Float64(),
    "validation_minutes": pl.Float64(), "test_minutes": pl.Float64(),
    "target_status": pl.Utf8(), "card_md": pl.Utf8(),
}
CARD_DESCRIPTIONS: dict[str, str] = {
    "series": "Series slug.",
    "character": "Character the card describes.",
    "minutes": "Minutes of kept clips in a split (the dataset's size for the character).",
    "clips": "Kept clips in a split.",
    "episodes": "Episodes those clips come from.",
    "rejected": "Clips rejected by the quality gates.",
    "train_minutes": "Minutes in the train split.",
    "validation_minutes": "Minutes in the validation split.",
    "test_minutes": "Minutes in the test split.",
    "target_status": "Minutes against the 20-30 minute target (below, within or above).",
    "card_md": "The card as markdown (also written as exports/<series>/cards/<character>.md).",
}


def target_status(minutes: float, target: tuple[float, float] = TARGET_MINUTES) -> str:
    lo, hi = target
    if minutes < lo:
        return (f"below target: {minutes:.1f} of {lo:.0f}-{hi:.0f} min "
                f"({lo - minutes:.1f} min short)")
    if minutes <= hi:
        return f"within target: {minutes:.1f} min ({lo:.0f}-{hi:.0f})"
    return f"above target: {minutes:.1f} min (> {hi:.0f}; a trainer may subsample)"


def _pct(values: pl.Series, qs: tuple[int, ...] = (10, 50, 90)) -> str:
    v = values.drop_nulls().drop_nans().to_numpy() if values.dtype.is_float() else \
        values.drop_nulls().to_numpy()
    if len(v) == 0:
        return "n/a"
    return " / ".join(f"{x:.3g}" for x in np.percentile(v, qs))


def character_card(series: str, character: str, clips: pl.DataFrame,
                   dataset: pl.DataFrame, target: tuple[float, float] = TARGET_MINUTES,
                   ) -> tuple[str, CardStats]:
    """(markdown, stats) for one character.

    ``clips``: all of the character's clips, kept and rejected (clips table).
    ``dataset``: its kept, split clips with emotion (what the exports contain).
    """
    in_split = dataset.filter(pl.col("split").is_not_null())
    minutes = float(in_split["duration_s"].sum() or 0.0) / 60.0
    split_min = {s: float(in_split.filter(pl.col("split") == s)["duration_s"].sum() or 0.0) / 60.0
                 for s in ("train", "validation", "test")}
    split_n = {s: in_split.filter(pl.col("split") == s).height for s in split_min}
    emotions: dict[str, int] = {}
    if "emotion" in in_split.columns:
        for e, n in in_split.group_by("emotion").len().iter_rows():
            emotions["(untagged)" if e is None else str(e)] = int(n)
    rejected = clips.filter(~pl.col("keep"))
    # Most frequent first, ties by name: the same clips give the same card, byte for byte.
    rejections = {str(r): int(n) for r, n in rejected.group_by("reject_reason").len()
                  .sort(["len", "reject_reason"], descending=[True, False]).iter_rows()}
    dup = dataset.filter(pl.col("split").is_null()).height
    status = target_status(minutes, target)
    stats = CardStats(series, character, minutes, in_split.height,
                      int(in_split["episode"].n_unique()) if in_split.height else 0,
                      rejected.height, split_min, dict(sorted(emotions.items())), rejections,
                      status)

    kept = clips.filter(pl.col("keep"))
    lines = [
        f"# {character} ({series})", "",
        f"**{minutes:.1f} minutes** in {in_split.height} clips from {stats.episodes} episodes. "
        f"Target {target[0]:.0f}-{target[1]:.0f} min: {status}.", "",
        "| split | clips | minutes |", "|---|---|---|",
        *(f"| {s} | {split_n[s]} | {split_min[s]:.2f} |" for s in split_min), "",
        "## Emotion", "",
        "| emotion | clips |", "|---|---|",
        *(f"| {e} | {n} |" for e, n in stats.emotions.items()), "",
    ]
    if "emotion_source" in in_split.columns and in_split.height:
        sources = in_split.group_by("emotion_source").len().sort("emotion_source", nulls_last=True)
        lines += ["Emotion sources: " + ", ".join(
            f"{'none' if s is None else s}: {n}" for s, n in sources.iter_rows()), ""]
    lines += [
        "## Quality (kept clips, 10th / 50th / 90th percentile)", "",
        "| metric | value |", "|---|---|",
        f"| duration s | {_pct(kept['duration_s'])} |",
        f"| SNR dB (WADA) | {_pct(kept['snr_db'])} |",
        f"| residual music | {_pct(kept['residual_music'])} |",
        f"| bandwidth Hz | {_pct(kept['bandwidth_hz'])} |",
        f"| clipping ratio | {_pct(kept['clipping_ratio'])} |", "",
        f"## Rejected: {rejected.height} of {clips.height} clips", "",
    ]
    if rejections:
        lines += ["| reason | clips |", "|---|---|",
                  *(f"| {r} | {n} |" for r, n in rejections.items()), ""]
    if dup:
        lines += [f"{dup} kept clips are copies of audio heard elsewhere (recaps, previews, "
                  "songs) and are left out of every split.", ""]
    return "\n".join(lines), stats


def cards_table(rows: list[tuple[str, CardStats]]) -> pl.DataFrame:
    data: list[dict[str, Any]] = []
    for md, s in rows:
        data.append({"series": s.series, "character": s.character, "minutes": s.minutes,
                     "clips": s.clips, "episodes": s.episodes, "rejected": s.rejected,
                     "train_minutes": s.split_minutes["train"],
                     "validation_minutes": s.split_minutes["validation"],
                     "test_minutes": s.split_minutes["test"], "target_status": s.target_status,
                     "card_md": md})
    return pl.DataFrame(data, schema=CARD_SCHEMA)


def series_readme(series: str, stats: list[CardStats]) -> str:
    lines = [f"# {series}: voice dataset", "",
             "| character | minutes | clips | episodes | train / val / test min | target |",
             "|---|---|---|---|---|---|"]
    for s in sorted(stats, key=lambda s: -s.minutes):
        sm = s.split_minutes
        lines.append(f"| {s.character} | {s.minutes:.1f} | {s.clips} | {s.episodes} | "
                     f"{sm['train']:.1f} / {sm['validation']:.1f} / {sm['test']:.1f} | "
                     f"{s.target_status} |")
    return "\n".join(lines) + "\n"
