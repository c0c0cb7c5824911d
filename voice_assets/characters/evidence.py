"""Evidence an episode gives about its own speakers: who the subtitles say is talking.

A dialogue line's Name (or Actor) field votes for the diarized speaker whose turns cover most
of the line, weighted by the seconds that speaker covers; lines spoken by two voices vote for
each by its share. Names are spelled the cast's way (aliases, case) before they are counted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl


def subtitle_votes(aligned: pl.DataFrame, diarization: pl.DataFrame,
                   canonical: Callable[[str], str | None]) -> dict[str, dict[str, float]]:
    """speaker -> name -> seconds of that speaker's speech under lines carrying that name."""
    if aligned.is_empty() or diarization.is_empty() or "name" not in aligned.columns:
        return {}
    lines = aligned.filter((pl.col("kind") == "dialogue") & pl.col("name").is_not_null())
    if lines.is_empty():
        return {}
    start = diarization["start"].to_numpy().astype(float)
    end = diarization["end"].to_numpy().astype(float)
    speaker = np.asarray(diarization["speaker"].to_list(), dtype=object)
    out: dict[str, dict[str, float]] = {}
    for s, e, raw in lines.select("start", "end", "name").iter_rows():
        name = canonical(str(raw)) if raw is not None else None
        if name is None:
            continue
        cover = np.clip(np.minimum(end, e) - np.maximum(start, s), 0.0, None)
        for spk in set(speaker[cover > 0].tolist()):
            seconds = float(cover[speaker == spk].sum())
            votes = out.setdefault(str(spk), {})
            votes[name] = round(votes.get(name, 0.0) + seconds, 3)
    return out


def turn_counts(diarization: pl.DataFrame) -> dict[str, int]:
    if diarization.is_empty():
        return {}
    counts = diarization.group_by("speaker").len()
    return {str(s): int(n) for s, n in counts.iter_rows()}
