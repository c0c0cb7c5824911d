"""Episode keys: `<series>__<episode-stem>`, slugged, stable and human-readable (no dagster)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from voice_assets.errors import PartitionKeyError

_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)
_UNSAFE_IN_NAME = re.compile(r"[/\\\x00-\x1f\x7f]+")
# Slugs and folder names stay well under the 255-byte file-name limit of every common
# filesystem, with room for a key (two slugs) plus temp-file prefixes and suffixes.
MAX_SLUG_BYTES = 64
MAX_NAME_BYTES = 100
# How every table describes its `episode` column (the catalog shows it beside the column).
EPISODE_COLUMN = "Episode key `<series>__<episode>`: the partition the row belongs to."
SERIES_COLUMN = "Series slug: the first half of the episode key."


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def _limit(out: str, original: str, max_bytes: int, sep: str) -> str:
    """``out`` cut to ``max_bytes`` of UTF-8 (on a character boundary) plus a hash of the
    original, so two long names that share a beginning stay distinct."""
    if len(out.encode("utf-8")) <= max_bytes:
        return out
    room = max_bytes - len(sep) - 8
    head = out.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip("-. ")
    return f"{head}{sep}{_digest(original)}"


def slug(text: str) -> str:
    """Lower-case, NFKC-normalised, word characters (any script) joined by '-', at most
    MAX_SLUG_BYTES bytes (longer ones end in a hash of the whole)."""
    norm = unicodedata.normalize("NFKC", text).casefold().replace("_", " ")
    out = _NOT_WORD.sub("-", norm).strip("-")
    if not out:
        return "x" + _digest(norm)
    return _limit(out, norm, MAX_SLUG_BYTES, "-")


def folder_name(text: str) -> str:
    """A user's name (a series) as one safe path component: readable where it can be, never a
    separator, '.', '..', hidden or over MAX_NAME_BYTES; falls back to its slug."""
    norm = unicodedata.normalize("NFC", text).strip()
    if not norm or norm.startswith(".") or _UNSAFE_IN_NAME.search(norm):
        return slug(text)
    return _limit(norm, norm, MAX_NAME_BYTES, "-")



def episode_key(series: str, stem: str) -> str:
    """Stable, human-readable partition key for an episode file."""
    return f"{slug(series)}__{slug(stem)}"


def assign_keys(files: Iterable[tuple[str, Path]]) -> dict[str, Path]:
    """Map (series, media file) pairs to keys; refuse two files that slug to the same key."""
    keys: dict[str, Path] = {}
    for series, path in files:
        key = episode_key(series, Path(path).stem)
        if key in keys and keys[key] != Path(path):
            raise PartitionKeyError(
                f"{path} and {keys[key]} both map to episode key '{key}'; "
                "rename one of them so their names differ in more than case or punctuation"
            )
        keys[key] = Path(path)
    return keys


def series_of(episode: str) -> str:
    """The series slug of an episode key (``<series>__<stem>``)."""
    return episode.split("__", 1)[0]
