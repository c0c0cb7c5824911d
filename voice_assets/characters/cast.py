"""A series' declared cast: the optional ``characters.yaml`` beside its episodes in the inbox.

```yaml
strict: false          # true: a name from subtitles or a label that is not listed is an error
characters:
  - name: Rex
    aliases: [REX, Rexy]             # subtitle Name/Actor spellings of the same character
    reference_clips: [refs/rex.wav]  # clean solo lines, relative to this file
    faces: [refs/rex.png]            # pictures of the face (a crop or a still), likewise
  - name: Grace
background: [Crowd, Announcer]       # names that mean "not a dataset character"
```

Names are compared case- and space-insensitively; every spelling maps to one canonical name.
Without the file the cast is open: subtitle names and human labels define the characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voice_assets import object_store
from voice_assets.episode_keys import slug
from voice_assets.errors import VoiceAssetsError

CAST_FILE = "characters.yaml"
BACKGROUND = "background"
VOICE_ID = re.compile(r"^voice-\d{2,}$")
_TOP_KEYS = {"strict", "characters", "background"}
_ENTRY_KEYS = {"name", "aliases", "reference_clips", "faces"}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")  # what soundfile decodes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # what OpenCV decodes


class CastError(VoiceAssetsError):
    """``characters.yaml`` (or a label) names a character in a way that cannot be used."""

    def __init__(self, where: str | Path, entry: str, cause: str) -> None:
        self.where = str(where)
        self.entry = entry
        self.cause = cause
        super().__init__(f"{self.where}: {entry}: {cause}")


def norm_name(value: Any) -> str:
    """The comparison form of a name: NFKC, case-folded, single spaces."""
    return " ".join(str(value).split()).casefold()


def is_voice_id(name: str) -> bool:
    return bool(VOICE_ID.match(name))


def voice_id(number: int) -> str:
    return f"voice-{number:02d}"


@dataclass(frozen=True)
class CharacterSpec:
    name: str
    aliases: tuple[str, ...] = ()
    reference_clips: tuple[Path, ...] = ()
    faces: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Cast:
    """The declared characters of one series (empty and open when there is no file)."""

    series: str
    path: Path | None = None
    characters: tuple[CharacterSpec, ...] = ()
    background: tuple[str, ...] = ()
    strict: bool = False
    _lookup: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.characters]

    def canonical(self, name: str | None) -> str | None:
        """The cast name for a spelling (alias, case), ``background``, or the name as given.

        None for an empty name. In a strict cast an unlisted name gives None (the caller
        decides whether that is an error).
        """
        if name is None or not str(name).strip():
            return None
        clean = " ".join(str(name).split())
        if is_voice_id(clean.casefold()):
            return clean.casefold()
        found = self._lookup.get(norm_name(clean))
        if found is not None:
            return found
        return None if self.strict else clean

    def require(self, name: str, where: str, entry: str) -> str:
        """``canonical`` that raises a CastError naming ``where``/``entry`` for unknown names."""
        found = self.canonical(name)
        if found is None:
            listed = ", ".join(self.names) or "(none)"
            raise CastError(where, entry, f"unknown character '{name}'; {self.path or 'the cast'}"
                            f" lists {listed} (add it there, or as an alias)")
        return found


def _strings(value: Any, where: Path, entry: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CastError(where, entry, f"'{key}' must be a list of non-empty strings")
    return [" ".join(v.split()) for v in value]


def _check_file(path: Path, where: Path, entry: str, what: str, kind: str,
                suffixes: tuple[str, ...]) -> Path:
    """A file ``characters.yaml`` points at: it must exist and have a usable suffix."""
    if not path.is_file():
        object_store.ensure_local([path])  # with a shared store, it may be there
    if not path.is_file():
        raise CastError(where, entry, f"{what} {path} does not exist")
    if path.suffix.lower() not in suffixes:
        raise CastError(where, entry, f"{what} {path} is not {kind} ({', '.join(suffixes)})")
    return path


def parse_cast(series: str, path: Path, data: Any) -> Cast:
    """Validate the parsed YAML of ``path``; every problem names the file and the entry."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CastError(path, "top level", "expected a mapping with a 'characters' list")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise CastError(path, "top level", f"unknown key(s) {unknown}; expected "
                        f"{sorted(_TOP_KEYS)}")
    entries = data.get("characters") or []
    if not isinstance(entries, list):
        raise CastError(path, "characters", "must be a list of entries with a 'name'")
    lookup: dict[str, str] = {}
    owner: dict[str, str] = {}
    specs: list[CharacterSpec] = []

    def claim(spelling: str, name: str, entry: str) -> None:
        key = norm_name(spelling)
        if key in owner and norm_name(owner[key]) == norm_name(name) and spelling == name:
            raise CastError(path, entry, f"duplicate character name '{name}' (also "
                            f"'{owner[key]}')")
        if key in owner and owner[key] != name:
            raise CastError(path, entry, f"'{spelling}' is already used by character "
                            f"'{owner[key]}'")
        owner[key] = name
        lookup[key] = name

    for i, raw in enumerate(entries):
        entry = f"characters[{i}]"
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) \
                or not raw["name"].strip():
            raise CastError(path, entry, "each entry needs a non-empty 'name'")
        name = " ".join(raw["name"].split())
        entry = f"{entry} ({name})"
        bad = sorted(set(raw) - _ENTRY_KEYS)
        if bad:
            raise CastError(path, entry, f"unknown key(s) {bad}; expected {sorted(_ENTRY_KEYS)}")
        if norm_name(name) == BACKGROUND or is_voice_id(norm_name(name)):
            raise CastError(path, entry, f"'{name}' is reserved for unnamed voices")
        aliases = _strings(raw.get("aliases"), path, entry, "aliases")
        clips = [_check_file((path.parent / c).resolve(), path, entry, "reference clip",
                             "an audio file", AUDIO_SUFFIXES)
                 for c in _strings(raw.get("reference_clips"), path, entry, "reference_clips")]
        faces = [_check_file((path.parent / f).resolve(), path, entry, "face picture",
                             "an image", IMAGE_SUFFIXES)
                 for f in _strings(raw.get("faces"), path, entry, "faces")]
        claim(name, name, entry)
        for alias in aliases:
            if norm_name(alias) == norm_name(name):
                continue
            claim(alias, name, entry)
        specs.append(CharacterSpec(name, tuple(aliases), tuple(clips), tuple(faces)))
    background = _strings(data.get("background"), path, "background", "background")
    for b in background:
        if norm_name(b) in owner:
            raise CastError(path, "background", f"'{b}' is also character '{owner[norm_name(b)]}'")
        lookup[norm_name(b)] = BACKGROUND
    lookup[BACKGROUND] = BACKGROUND
    strict = data.get("strict", False)
    if not isinstance(strict, bool):
        raise CastError(path, "strict", "must be true or false")
    return Cast(series, path, tuple(specs), tuple(background), strict, lookup)


def find_cast_file(inbox: Path, series: str) -> Path | None:
    """``inbox/<folder>/characters.yaml`` of the folder whose slug is ``series``."""
    object_store.ensure_glob(inbox, f"*/{CAST_FILE}")  # written where the inbox is
    if not inbox.is_dir():
        return None
    for folder in sorted(inbox.iterdir()):
        if folder.is_dir() and slug(folder.name) == series and (folder / CAST_FILE).is_file():
            return folder / CAST_FILE
    return None


def load_cast(inbox: Path, series: str) -> Cast:
    """The series' cast from its ``characters.yaml``; an open, empty cast when there is none."""
    path = find_cast_file(inbox, series)
    if path is None:
        return Cast(series, None, (), (), False, {BACKGROUND: BACKGROUND})
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CastError(path, "file", f"not UTF-8 text ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CastError(path, "file", f"not valid YAML: {exc}") from exc
    return parse_cast(series, path, data)


def open_cast(series: str, names: Iterable[str] = ()) -> Cast:
    """A cast with no file (tests, or code that only needs name normalisation)."""
    lookup = {norm_name(n): n for n in names}
    lookup[BACKGROUND] = BACKGROUND
    return Cast(series, None, tuple(CharacterSpec(n) for n in names), (), False, lookup)
