"""Episode keys: `<series>__<episode-stem>`, slugged, stable and human-readable (no dagster)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from voice_assets.errors import PartitionKeyError

_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


def slug(text: str) -> str:
    """Lower-case, NFKC-normalised, word characters (any script) joined by '-'."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("_", " ")
    out = _NOT_WORD.sub("-", text).strip("-")
    if not out:
        out = "x" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return out


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
