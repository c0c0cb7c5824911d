"""Japanese text as words: morphemes and their readings, for alignment and for joining.

Japanese is written without spaces, and the same word is spelt in kanji by one side and in
kana by the other (a subtitle's 今日 is ASR's きょう). So a line is cut into morphemes by a
real morphological analyser (SudachiPy with its core dictionary) and two texts are compared
by reading (katakana), never by spelling.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Kana, CJK ideographs and the CJK punctuation block: text of languages written without spaces.
_CJK = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
                  r"\uf900-\ufaff\uff00-\uffef]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
# SudachiPy's part of speech for punctuation and symbols (補助記号) and for blanks (空白).
_NOT_SPOKEN = ("補助記号", "空白")
# Sudachi refuses inputs above ~49 KB; lines are far shorter, ASR runs are cut well below.
_MAX_CHARS = 4000


@dataclass(frozen=True)
class Morpheme:
    """One morpheme: its spelling, its reading (None for punctuation) and character span."""

    surface: str
    reading: str | None
    begin: int
    end: int


def has_cjk(text: str) -> bool:
    """True when the text holds kana or CJK ideographs (written without spaces)."""
    return bool(_CJK.search(text or ""))


def has_kana(text: str) -> bool:
    """Kana is only Japanese: tells Japanese from Chinese text."""
    return bool(_KANA.search(text or ""))


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from sudachipy import dictionary

    return dictionary.Dictionary(dict="core").tokenizer()


def to_katakana(text: str) -> str:
    """NFKC, case-folded, hiragana shifted to katakana: one spelling per reading."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in text)


def morphemes(text: str) -> list[Morpheme]:
    """The text's morphemes in order (SudachiPy, split mode C: whole words)."""
    return list(_morphemes(text))


@lru_cache(maxsize=8192)
def _morphemes(text: str) -> tuple[Morpheme, ...]:
    """Cached: alignment, the ASR segment split and the clip text each ask for a line's
    morphemes."""
    from sudachipy import tokenizer

    out: list[Morpheme] = []
    mode = tokenizer.Tokenizer.SplitMode.C
    for base in range(0, len(text), _MAX_CHARS):
        for m in _tokenizer().tokenize(text[base:base + _MAX_CHARS], mode):
            spoken = m.part_of_speech()[0] not in _NOT_SPOKEN and m.surface().strip()
            reading = to_katakana(m.reading_form() or m.surface()) if spoken else None
            out.append(Morpheme(m.surface(), reading, base + m.begin(), base + m.end()))
    return tuple(out)


def readings(text: str) -> list[str]:
    """Readings of the spoken morphemes: the tokens alignment compares."""
    return [m.reading for m in morphemes(text) if m.reading]


def word_pieces(text: str) -> list[tuple[str, int]]:
    """The text as words that spell it whole: each spoken morpheme with the punctuation
    after it, and how many reading tokens each holds (1; 0 for a line of punctuation)."""
    out: list[tuple[str, int]] = []
    pending = ""
    for m in morphemes(text):
        if m.reading:
            out.append((pending + m.surface, 1))
            pending = ""
        elif out:
            out[-1] = (out[-1][0] + m.surface, out[-1][1])
        else:
            pending += m.surface
    if pending:  # only punctuation: one piece with no token
        out.append((pending, 0))
    return [(w.strip(), n) for w, n in out if w.strip()]


def timed_readings(words: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Re-cut recognised words (Whisper's sub-word pieces, for Japanese) into morphemes.

    The pieces of one run are joined into one string; each spoken character takes an equal
    share of its piece's time (punctuation takes none: Whisper puts a sentence's "。" inside
    its last piece, and a share for it would end the last word early), and a morpheme spans
    its characters. Returns (reading, start, end).
    """
    text = ""
    char_times: list[tuple[float, float]] = []
    for word, start, end in words:
        piece = "".join(c for c in word if not _silent_char(c))
        if not piece:
            continue
        step = (end - start) / len(piece)
        char_times.extend((start + k * step, start + (k + 1) * step) for k in range(len(piece)))
        text += piece
    out: list[tuple[str, float, float]] = []
    for m in morphemes(text):
        if m.reading and m.end > m.begin:
            out.append((m.reading, char_times[m.begin][0], char_times[m.end - 1][1]))
    return out


def _silent_char(c: str) -> bool:
    """Whitespace, punctuation and symbols: written, not said."""
    return c.isspace() or unicodedata.category(c)[0] in "PSZ"


def join_words(words: Sequence[str]) -> str:
    """Words back into text: a space between two words only where neither side of the join is
    Japanese or Chinese script (Whisper-style words that carry their own spaces keep them)."""
    parts = [w for w in words if w]
    if any(w[:1].isspace() for w in parts):
        return "".join(parts).strip()
    out = ""
    for w in (p.strip() for p in parts):
        if not w:
            continue
        if out and not (has_cjk(out[-1]) or has_cjk(w[0])):
            out += " "
        out += w
    return out
