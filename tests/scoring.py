"""Scoring tables against the truth of a generated episode, as the maintainers' metrics say.

Time is sampled every 10 ms; truth is a list of the synth's `Utterance` (start, end,
character). Used by the tests that assert yield, purity and overlap figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

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
