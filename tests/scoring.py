"""Scoring tables against the truth of a generated episode, as the maintainers' metrics say.

Time is sampled every 10 ms; truth is a list of the synth's `Utterance` (start, end,
character). Used by the tests that assert yield, purity and overlap figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

FS = 0.01


def _mask(spans: Iterable[tuple[float, float]], n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    for s, e in spans:
        m[max(0, int(s / FS)):max(0, int(np.ceil(e / FS)))] = True
    return m


class Truth:
    """Per-character speech masks of one generated episode."""

    def __init__(self, utterances: Sequence[Any]) -> None:
        self.n = int((max(u.end for u in utterances) + 5) / FS)
        self.characters = sorted({u.character for u in utterances})
        self.speech = {c: _mask([(u.start, u.end) for u in utterances if u.character == c],
                                self.n) for c in self.characters}
        self.voices = np.sum([self.speech[c] for c in self.characters], axis=0)

    @property
    def overlapped(self) -> np.ndarray:
        return self.voices >= 2

    def mask(self, spans: Iterable[tuple[float, float]]) -> np.ndarray:
        return _mask(spans, self.n)

    def overlap_precision_recall(self, spans: Iterable[tuple[float, float]]) -> tuple[float,
                                                                                        float]:
        """Per overlapped second: how much of what is flagged is true, how much true is found."""
        p, t = self.mask(spans), self.overlapped
        tp = float((p & t).sum())
        return tp / max(float(p.sum()), 1.0), tp / max(float(t.sum()), 1.0)

    def speech_purity(self, start: float, end: float) -> float:
        """Share of the true speech inside [start, end] that its main character says."""
        a, b = int(start / FS), int(np.ceil(end / FS))
        per = [float(self.speech[c][a:b].sum()) for c in self.characters]
        return max(per) / sum(per) if sum(per) else 1.0

    def kept_clean(self, spans: Iterable[tuple[float, float]]) -> dict[str, tuple[float, float]]:
        """Per character: (clean seconds covered by ``spans``, clean seconds in all).

        Clean: that character alone. (The music gate is the clips' own; the generated
        episodes keep music well under the speech.)
        """
        kept = self.mask(spans)
        out = {}
        for c in self.characters:
            clean = self.speech[c] & (self.voices == 1)
            out[c] = (float((clean & kept).sum()) * FS, float(clean.sum()) * FS)
        return out


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Seconds two spans share."""
    return max(0.0, min(a1, b1) - max(a0, b0))


def union_cover(s: float, e: float, spans: list[tuple[float, float]]) -> float:
    """Seconds of [s, e] covered by the union of ``spans``."""
    cut = sorted((max(a, s), min(b, e)) for a, b in spans if b > s and a < e)
    total, cur_s, cur_e = 0.0, None, None
    for a, b in cut:
        if cur_e is None or a > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def attribution(rows: pl.DataFrame, truth: list) -> float:
    """Share of true speech seconds covered by a row naming the true character."""
    by_char: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s, e, c in rows.select("start", "end", "character").iter_rows():
        if c:
            by_char[c.casefold()].append((s, e))
    total = covered = 0.0
    for u in truth:
        total += u.end - u.start
        covered += union_cover(u.start, u.end, by_char.get(u.character.casefold(), []))
    return covered / total if total else 0.0


class Turn:
    """One truth turn (start, end, character), as the synth's `Utterance` has them."""

    def __init__(self, start: float, end: float, character: str) -> None:
        self.start, self.end, self.character = start, end, character


def rttm_turns(path: Path) -> list[Turn]:
    """The turns of an RTTM file (`testdata.read_rttm`) as truth turns."""
    from testdata import read_rttm

    return [Turn(s, e, speaker) for s, e, speaker in read_rttm(path)]


def der(reference: Iterable[tuple[float, float, str]], turns: Iterable[Any],
        collar: float = 0.25) -> float:
    """Diarization error rate (pyannote.metrics, ``collar`` s) of turns with start, end and
    speaker against (start, end, speaker) truth."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for i, (s, e, spk) in enumerate(reference):
        ref[Segment(s, e), i] = spk
    for i, t in enumerate(turns):
        hyp[Segment(t.start, t.end), i] = t.speaker
    return float(DiarizationErrorRate(collar=collar)(ref, hyp))
