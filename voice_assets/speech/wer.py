"""Word and character error rates with the text normalisation whisper's own evaluation uses.

A transcript says "29340" where the script says "two nine three four zero", "colour" where it
says "color", "Mr." where it says "mister": none of these is a recognition error. English text
goes through whisper's English normaliser (numbers, spelling, contractions, punctuation,
casing); other spaced languages through its basic one (punctuation, casing, diacritics).
Japanese and Chinese have no spaces to count words by, so they are scored per character
(CER) with whitespace and punctuation removed, as the shared metrics define it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import cache

import jiwer

UNSPACED = frozenset({"ja", "zh", "yue", "th"})


@cache
def _normaliser(language: str) -> Callable[[str], str]:
    if language == "en":
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def _base(language: str | None) -> str:
    return (language or "en").split("-")[0].lower()


def normalise(text: str, language: str | None = "en") -> str:
    """The text as it is compared: normalised words separated by single spaces."""
    lang = _base(language)
    if lang in UNSPACED:
        return "".join(ch for ch in unicodedata.normalize("NFKC", text)
                       if not ch.isspace() and not unicodedata.category(ch).startswith("P"))
    return re.sub(r"\s+", " ", _normaliser(lang)(text)).strip()


def _joined(text: str | Sequence[str]) -> str:
    return text if isinstance(text, str) else " ".join(t for t in text if t)


def word_error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str],
                    language: str | None = "en") -> float:
    """WER of ``hypothesis`` against ``reference`` (strings, or lines joined in order).

    Unspaced languages get the character error rate instead (see the module docstring).
    """
    ref = normalise(_joined(reference), language)
    hyp = normalise(_joined(hypothesis), language)
    if not ref:
        return 0.0 if not hyp else 1.0
    if _base(language) in UNSPACED:
        return float(jiwer.cer(ref, hyp))
    return float(jiwer.wer(ref, hyp))
