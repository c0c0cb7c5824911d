"""The inbox: `$VOICE_ASSETS_HOME/inbox/<series>/<episode>.<ext>` plus sidecar subtitles.

Plain functions shared by the inbox sensor and the ingest assets: scanning (media files, their
sidecar subtitles, partition keys, collisions), resolving a partition key back to its files
(so a backfill from the UI needs no run config), and the sensor's decision logic (`plan_tick`)
on a JSON cursor, kept free of Dagster so it can be tested tick by tick.

Cursor (JSON): {"version": 1,
                "seen": {key: {"sig": [path, size, mtime_ns, [[subtitle, size, mtime_ns], ...]],
                               "stable": ticks unchanged, "revision": str | null,
                               "media_hash": str | null}},
                "requested": {key: {"revision": str, "n": runs requested so far, "path": str}}}
"seen" holds files currently in the inbox; "requested" remembers what was last ingested per key
(kept when a file leaves the inbox, so putting the same file back does not re-run anything).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voice_assets.episode_keys import assign_keys, episode_key, folder_name
from voice_assets.errors import PartitionKeyError
from voice_assets.media.fingerprint import content_hash
from voice_assets.media.probe import DEFAULT_LANGUAGES, language_matches
from voice_assets.paths import MEDIA_SUFFIXES, SUBTITLE_SUFFIXES

CURSOR_VERSION = 1
STABLE_TICKS = 2  # ticks a file must keep its size and mtime after being seen (copy finished)
REVISION_METADATA = "inbox_revision"  # episode_media metadata: the revision_of() it ingested

_LANG_TAG = re.compile(r"^[a-z]{2,3}(?:[-_][a-z0-9]{2,8})*$", re.IGNORECASE)
_SUBTITLE_FLAGS = frozenset({"forced", "signs", "sdh", "cc", "hi", "default", "full", "dialogue"})
_DEMOTED_FLAGS = frozenset({"forced", "signs"})  # only signs/foreign parts: a last resort


@dataclass(frozen=True)
class InboxFile:
    """One episode in the inbox: its media file and sidecar subtitles, best first."""

    key: str
    series: str
    path: Path
    subtitles: tuple[Path, ...] = ()

    @property
    def subtitle(self) -> Path | None:
        return self.subtitles[0] if self.subtitles else None


@dataclass(frozen=True)
class InboxScan:
    files: dict[str, InboxFile]
    collisions: dict[str, str]  # key -> message naming every file that maps to it
    ignored: tuple[Path, ...]  # neither media nor subtitles, or not inside a series folder


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_subtitles(
    media: Path,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    siblings: Sequence[Path] | None = None,
) -> tuple[Path, ...]:
    """Sidecars of ``media``: `<stem>.<ext>` first, then `<stem>.<lang>[.<flag>].<ext>` by
    language preference, forced/signs-only tracks last; ASS before SSA, SRT, VTT."""
    stem = media.stem
    if siblings is None:
        siblings = [p for p in media.parent.iterdir() if p.is_file()]
    ranked: list[tuple[tuple[Any, ...], Path]] = []
    for p in siblings:
        suffix = p.suffix.lower()
        if suffix not in SUBTITLE_SUFFIXES or p == media:
            continue
        order = SUBTITLE_SUFFIXES.index(suffix)
        if p.stem == stem:
            ranked.append(((0, 0, 0, order, p.name), p))
            continue
        if not p.name.startswith(stem + "."):
            continue
        tags = p.name[len(stem) + 1 : -len(p.suffix)].split(".")
        flags = {t.lower() for t in tags if t.lower() in _SUBTITLE_FLAGS}
        langs = [t for t in tags if t.lower() not in _SUBTITLE_FLAGS]
        if len(langs) > 1 or (langs and not _LANG_TAG.match(langs[0])):
            continue  # `<stem>.something-else.srt` belongs to another file
        lang = langs[0] if langs else None
        pref = next(
            (i for i, want in enumerate(languages) if language_matches(lang, want)), len(languages)
        )
        ranked.append(((1, bool(flags & _DEMOTED_FLAGS), pref, order, p.name), p))
    return tuple(p for _, p in sorted(ranked, key=lambda item: item[0]))


def scan_inbox(inbox: Path, languages: Sequence[str] = DEFAULT_LANGUAGES) -> InboxScan:
    """Every media file under inbox/<series>/ (any depth; hidden files and folders skipped)."""
    inbox = Path(inbox)
    ignored: list[Path] = []
    media: list[tuple[str, Path]] = []
    by_dir: dict[Path, list[Path]] = defaultdict(list)
    if not inbox.is_dir():
        return InboxScan({}, {}, ())
    for entry in sorted(inbox.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(entry)  # episodes must sit in a series folder
            continue
        for p in sorted(entry.rglob("*")):
            if _hidden(p, inbox) or not p.is_file():
                continue
            suffix = p.suffix.lower()
            by_dir[p.parent].append(p)
            if suffix in MEDIA_SUFFIXES:
                media.append((entry.name, p))
            elif suffix not in SUBTITLE_SUFFIXES:
                ignored.append(p)
    groups: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for series, path in media:
        groups[episode_key(series, path.stem)].append((series, path))
    files: dict[str, InboxFile] = {}
    collisions: dict[str, str] = {}
    for key, group in sorted(groups.items()):
        try:
            assign_keys(group)
        except PartitionKeyError as exc:
            names = ", ".join(str(p) for _, p in group)
            collisions[key] = f"{exc} (files: {names})" if len(group) > 2 else str(exc)
            continue
        series, path = group[0]
        subs = find_subtitles(path, languages, by_dir[path.parent])
        files[key] = InboxFile(key=key, series=series, path=path, subtitles=subs)
    return InboxScan(files, collisions, tuple(ignored))


def last_change(inbox: Path) -> float | None:
    """When (epoch seconds) an episode or subtitle file in the inbox last changed, None when it
    holds none: how long the inbox has been quiet, for debouncing. ctime counts too, so a file
    moved in with an old mtime still counts as new."""
    scan = scan_inbox(inbox)
    times: list[float] = []
    for item in scan.files.values():
        for path in (item.path, *item.subtitles):
            try:
                st = path.stat()
            except OSError:  # removed between the scan and now
                continue
            times.append(max(st.st_mtime, st.st_ctime))
    return max(times) if times else None


def resolve_episode(
    inbox: Path, key: str, languages: Sequence[str] = DEFAULT_LANGUAGES
) -> InboxFile:
    """The inbox file behind partition ``key``; PartitionKeyError if none or ambiguous."""
    scan = scan_inbox(inbox, languages)
    if key in scan.collisions:
        raise PartitionKeyError(scan.collisions[key])
    if key not in scan.files:
        raise PartitionKeyError(
            f"no media file in {inbox} maps to episode key '{key}' "
            "(expected inbox/<series>/<episode>.<ext>); was it moved or renamed?"
        )
    return scan.files[key]


# ---------------------------------------------------------------- sensor decision logic


@dataclass(frozen=True)
class EpisodeRequest:
    """Ingest (or re-ingest) one partition."""

    key: str
    path: Path
    subtitle: Path | None
    run_key: str
    media_hash: str
    revision: str
    reason: str  # 'new' | 'changed'


@dataclass
class TickPlan:
    requests: list[EpisodeRequest] = field(default_factory=list)
    new_partitions: list[str] = field(default_factory=list)
    settling: list[str] = field(default_factory=list)  # seen, not yet stable for STABLE_TICKS
    unchanged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # collisions, unreadable files
    cursor: str = ""


def file_signature(item: InboxFile) -> list[Any]:
    """What must stay the same between ticks: path, size and mtime of media and sidecars."""
    st = item.path.stat()
    subs = []
    for sub in item.subtitles:
        s = sub.stat()
        subs.append([str(sub), s.st_size, s.st_mtime_ns])
    return [str(item.path), st.st_size, st.st_mtime_ns, subs]


def revision_of(item: InboxFile, hasher: Callable[[Path], str] = content_hash) -> tuple[str, str]:
    """(media content hash, revision id of media + sidecars). The revision changes when the
    video or any subtitle file changes, so either re-runs the partition."""
    media_hash = hasher(item.path)
    h = hashlib.blake2b(media_hash.encode(), digest_size=8)
    for sub in item.subtitles:
        h.update(f"|{sub.name}={hasher(sub)}".encode())
    return media_hash, h.hexdigest()


def load_cursor(cursor: str | None) -> dict[str, Any]:
    """Parse a cursor; an empty, foreign or older one starts afresh (files are re-observed)."""
    try:
        data = json.loads(cursor) if cursor else {}
    except json.JSONDecodeError:
        data = {}
    if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
        data = {}
    return {
        "version": CURSOR_VERSION,
        "seen": dict(data.get("seen", {})),
        "requested": dict(data.get("requested", {})),
    }


def plan_tick(
    cursor: str | None,
    scan: InboxScan,
    known_partitions: set[str] | frozenset[str],
    stable_ticks: int = STABLE_TICKS,
    hasher: Callable[[Path], str] = content_hash,
    ingested_revision: Callable[[str], str | None] | None = None,
) -> TickPlan:
    """Decide one tick: which partitions to add and which runs to request, and the new cursor.

    A file is requested once its signature has been unchanged for ``stable_ticks`` ticks after
    it was first seen (a file still being copied keeps changing size/mtime). It is then hashed;
    a revision that was already requested for the key is not requested again, a new one gets
    a new run key (`<key>:r<n>:<revision>`, n counting up so even a return to older content
    runs again). For a key the cursor has no record of (a reset cursor) whose partition exists,
    ``ingested_revision(key)`` may tell what was ingested last; if that is this revision, the
    episode is recorded as done instead of being run again.
    """
    state = load_cursor(cursor)
    seen_before: dict[str, Any] = state["seen"]
    requested: dict[str, Any] = state["requested"]
    plan = TickPlan(problems=list(scan.collisions.values()))
    seen_now: dict[str, Any] = {}
    for key, item in sorted(scan.files.items()):
        try:
            sig = file_signature(item)
        except OSError as exc:
            plan.problems.append(f"{item.path}: cannot stat ({exc.strerror or exc}); skipped")
            continue
        prev = seen_before.get(key)
        if prev is None or prev.get("sig") != sig:
            seen_now[key] = {"sig": sig, "stable": 0, "revision": None, "media_hash": None}
            plan.settling.append(key)
            continue
        entry = dict(prev)
        entry["stable"] = min(stable_ticks, int(prev.get("stable", 0)) + 1)
        seen_now[key] = entry
        if entry["stable"] < stable_ticks:
            plan.settling.append(key)
            continue
        if entry.get("revision") is None:
            try:
                entry["media_hash"], entry["revision"] = revision_of(item, hasher)
            except OSError as exc:
                plan.problems.append(f"{item.path}: cannot read ({exc.strerror or exc}); skipped")
                seen_now[key] = {"sig": sig, "stable": 0, "revision": None, "media_hash": None}
                continue
        done = requested.get(key)
        if (
            done is None
            and key in known_partitions
            and ingested_revision is not None
            and ingested_revision(key) == entry["revision"]
        ):
            done = requested[key] = {"revision": entry["revision"], "n": 0, "path": str(item.path)}
        if done is not None and done.get("revision") == entry["revision"]:
            plan.unchanged.append(key)
            continue
        n = int(done.get("n", 0)) + 1 if done else 1
        requested[key] = {"revision": entry["revision"], "n": n, "path": str(item.path)}
        plan.requests.append(
            EpisodeRequest(
                key=key,
                path=item.path,
                subtitle=item.subtitle,
                run_key=f"{key}:r{n}:{entry['revision']}",
                media_hash=entry["media_hash"],
                revision=entry["revision"],
                reason="new" if done is None else "changed",
            )
        )
        if key not in known_partitions:
            plan.new_partitions.append(key)
    plan.cursor = json.dumps(
        {"version": CURSOR_VERSION, "seen": seen_now, "requested": requested},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return plan


# ---------------------------------------------------------------- CLI ingest


def ingest_files(
    paths: Sequence[Path], inbox: Path, series: str | None = None,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
) -> tuple[list[InboxFile], set[str]]:
    """Copy media files (and their sidecar subtitles) into ``inbox/<series>/``.

    Every file is probed first, so a corrupt or audio-less file is refused with its cause
    before anything is copied; a name that slugs to an existing episode's key is refused too.
    The series becomes one safe folder name (`folder_name`): never a path out of the inbox.
    Copies are atomic, so the inbox sensor never sees a half-copied file. Returns the files
    and the keys whose media or subtitle replaced a different file of the same name.
    """
    import shutil

    from voice_assets.atomic import atomic_path
    from voice_assets.media.probe import probe_media

    medias = [Path(p) for p in paths if Path(p).suffix.lower() in MEDIA_SUFFIXES]
    if not medias:
        raise PartitionKeyError(
            "no media files among " + ", ".join(str(p) for p in paths)
            + f" (supported: {', '.join(sorted(MEDIA_SUFFIXES))})"
        )
    existing = scan_inbox(inbox, languages).files
    plan: list[tuple[Path, Path, tuple[Path, ...]]] = []
    for media in medias:
        probe_media(media, languages)  # raises MediaError naming the file and the cause
        folder = folder_name(series or media.resolve().parent.name)
        key = episode_key(folder, media.stem)
        target = Path(inbox) / folder / media.name
        if not target.resolve().is_relative_to(Path(inbox).resolve()):  # belt and braces
            raise PartitionKeyError(f"{media}: series {series!r} would place it outside {inbox}")
        other = existing.get(key)
        if other is not None and other.path.resolve() != target.resolve():
            raise PartitionKeyError(
                f"{media} maps to episode key '{key}', already taken by {other.path}; "
                "rename one of them"
            )
        plan.append((media, target, find_subtitles(media, languages)))
    assign_keys((t.parent.name, t) for _, t, _ in plan)  # two new files on one key
    replaced: set[str] = set()
    for media, target, subs in plan:
        for src in (*subs, media):  # subtitles first: the sensor sees a complete episode
            dst = target.parent / (target.stem + src.name[len(media.stem):])
            if src.resolve() == dst.resolve():
                continue
            if dst.exists() and content_hash(dst) != content_hash(src):
                replaced.add(episode_key(target.parent.name, target.stem))
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
    scan = scan_inbox(inbox, languages)
    keys = [episode_key(t.parent.name, t.stem) for _, t, _ in plan]
    lost = [k for k in keys if k not in scan.files]
    if lost:
        raise PartitionKeyError(f"copied, but the inbox scan does not see {', '.join(lost)}: "
                                + "; ".join(scan.collisions.get(k, k) for k in lost))
    return [scan.files[k] for k in keys], replaced
