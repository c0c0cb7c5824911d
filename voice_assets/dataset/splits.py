"""Leakage-safe train/validation/test splits per character, stable across re-materialisations.

Clips are dealt out by *group* (a scene, or a whole episode), never one by one: lines of one
scene share room tone, music, microphone and often words, so a scene split across train and test
lets a model score on what it memorised. A group's split comes from a stable hash of its id, and
is then remembered in a ledger: once a group has a split it keeps it, whatever arrives later,
and a group seen for the first time whose clips were dealt before (its first line moved after a
correction) inherits their split.

The trade-off: a pure hash of groups gives each character 80/10/10 only on average; a character
seen in few scenes can end up with no validation or test scene at all. So for groups seen for the
first time, a character that has at least ``min_groups_for_holdout`` groups but no validation
(or test) group gets one of its new train groups moved there (the one that takes the least
material from other characters). Characters with fewer groups stay all-train: holding out one of
three scenes would cost a third of their voice for an evaluation too small to mean anything.
Old groups are never moved, so the guarantee is only ever met with new material. The series as a
whole gets the same guarantee from ``min_series_groups`` groups on: its smallest new train
groups become its validation and test sets, so even a one-episode series of three scenes can
be evaluated.

Repeated audio (recaps, previews, opening/ending songs) is found by fingerprint; within each
set of copies the earliest clip (by episode key and time) is kept and the other copies are left
out of every split, so no copy of a training line can sit in validation or test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from voice_assets.dataset.fingerprint import MAX_BER, find_duplicates
from voice_assets.episode_keys import EPISODE_COLUMN, SERIES_COLUMN

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    group_by: str = "scene"  # 'scene' | 'episode'
    min_groups_for_holdout: int = 5
    # A series with fewer groups than this deals every new group to train: holding out one
    # of two scenes would cost half the voice (hashing starts as the series grows).
    min_series_groups: int = 3
    dedupe: bool = True
    max_ber: float = MAX_BER  # fingerprint bit error rate under which two clips are one recording

    def __post_init__(self) -> None:
        if self.group_by not in ("scene", "episode"):
            raise ValueError(f"group_by must be 'scene' or 'episode', not {self.group_by!r}")
        if len(self.ratios) != 3 or min(self.ratios) < 0 or not np.isclose(sum(self.ratios), 1.0):
            raise ValueError(f"split ratios must be three non-negative numbers summing to 1, "
                             f"not {self.ratios}")


SPLIT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(), "episode": pl.Utf8(), "series": pl.Utf8(), "character": pl.Utf8(),
    "group": pl.Utf8(), "split": pl.Utf8(), "split_reason": pl.Utf8(),
    "duplicate_of": pl.Utf8(), "duration_s": pl.Float64(),
}
SPLIT_DESCRIPTIONS: dict[str, str] = {
    "id": "Clip id (clips.id).",
    "episode": EPISODE_COLUMN,
    "series": SERIES_COLUMN,
    "character": "Character the clip belongs to.",
    "group": "Unit dealt to one split: the clip's scene (or episode), so no scene spans splits.",
    "split": "'train', 'validation' or 'test' (null: a duplicate kept out of every split).",
    "split_reason": "Why this split: hash, inherited, few_groups, holdout (moved to give a "
    "character held-out material) or duplicate.",
    "duplicate_of": "The clip whose audio this clip repeats (null: not a duplicate).",
    "duration_s": "Length of the clip, seconds.",
}
# One row per clip ever dealt: its group and split then. A group keeps its split; a group seen
# for the first time whose clips were dealt before (a scene whose first line moved after a
# correction) inherits their split.
LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "series": pl.Utf8(), "group": pl.Utf8(), "id": pl.Utf8(), "split": pl.Utf8(),
    "reason": pl.Utf8(),
}


def group_unit(series: str, group: str) -> float:
    """A group's stable position in [0, 1): the first 8 bytes of SHA-256, series-salted."""
    digest = hashlib.sha256(f"{series}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(u: float, ratios: Sequence[float]) -> str:
    edges = np.cumsum(ratios)
    for name, edge in zip(SPLITS, edges, strict=True):
        if u < edge:
            return name
    return SPLITS[-1]


def duplicate_map(fingerprints: Mapping[str, Sequence[int] | np.ndarray],
                  max_ber: float = MAX_BER) -> dict[str, str]:
    """{copy id: kept id} for every set of clips that are one recording (earliest id kept)."""
    groups = find_duplicates({k: np.asarray(v, dtype=np.int64).astype(np.uint32)
                              for k, v in fingerprints.items()}, max_ber=max_ber)
    out: dict[str, str] = {}
    for g in groups:
        keep = min(g)  # ids are <episode>_<start_ms:08d>: the earliest copy sorts first
        out.update({k: keep for k in g if k != keep})
    return out


def assign_splits(clips: pl.DataFrame, ledger: pl.DataFrame | None = None,
                  config: SplitConfig | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one row per kept clip in SPLIT_SCHEMA, the updated ledger in LEDGER_SCHEMA).

    ``clips`` needs id, episode, series, character, scene, duration_s, keep and, for
    de-duplication, fingerprint. Rejected clips are not dealt out.
    """
    config = config or SplitConfig()
    ledger = ledger if ledger is not None else pl.DataFrame(schema=LEDGER_SCHEMA)
    kept = clips.filter(pl.col("keep"))
    if kept.is_empty():
        return pl.DataFrame(schema=SPLIT_SCHEMA), ledger.select(list(LEDGER_SCHEMA))
    group_col = "scene" if config.group_by == "scene" else "episode"
    kept = kept.with_columns(pl.col(group_col).alias("group"))

    dups: dict[str, str] = {}
    if config.dedupe and "fingerprint" in kept.columns:
        for series in kept["series"].unique().to_list():
            part = kept.filter(pl.col("series") == series)
            dups.update(duplicate_map(dict(zip(part["id"], part["fingerprint"].to_list(),
                                               strict=True)), config.max_ber))

    ledger = ledger.select(list(LEDGER_SCHEMA))
    known: dict[tuple[str, str], tuple[str, str]] = {}
    known_clip: dict[tuple[str, str], str] = {}
    for s, g, i, sp, r in ledger.iter_rows():
        known.setdefault((s, g), (sp, r))
        known_clip[(s, i)] = sp
    assigned: dict[tuple[str, str], tuple[str, str]] = {}
    live = kept.filter(~pl.col("id").is_in(list(dups)))
    members = live.group_by("series", "group").agg(pl.col("id")).sort("series", "group")
    inherited: set[tuple[str, str]] = set()
    series_groups: dict[str, int] = {}
    for series, _group in {*known, *((s, g) for s, g, _ in members.iter_rows())}:
        series_groups[series] = series_groups.get(series, 0) + 1
    for series, group, ids in members.iter_rows():
        key = (series, group)
        before = [known_clip[(series, i)] for i in ids if (series, i) in known_clip]
        if key in known:
            assigned[key] = known[key]  # remembered: same split, same reason as first dealt
        elif before:
            # Majority, ties to the rarer split (held-out material is the scarcer kind).
            counts = {sp: before.count(sp) for sp in set(before)}
            split = max(counts, key=lambda sp: (counts[sp], SPLITS.index(sp)))
            assigned[key] = (split, "inherited")
            inherited.add(key)
        elif series_groups[series] < config.min_series_groups:
            # Too few groups to hold any out without losing most of the voice: train, and
            # remembered there once the series grows (hashing starts with later groups).
            assigned[key] = ("train", "few_groups")
        else:
            assigned[key] = (hash_split(group_unit(series, group), config.ratios), "hash")

    _guarantee_holdout(live, assigned, set(known) | inherited, config)
    _guarantee_series_holdout(live, assigned, set(known) | inherited, config)

    rows = []
    for r in kept.select("id", "episode", "series", "character", "group", "duration_s").iter_rows(
            named=True):
        if r["id"] in dups:
            rows.append({**r, "split": None, "split_reason": "duplicate",
                         "duplicate_of": dups[r["id"]]})
        else:
            split, reason = assigned[(r["series"], r["group"])]
            rows.append({**r, "split": split, "split_reason": reason, "duplicate_of": None})
    splits = pl.DataFrame(rows, schema=SPLIT_SCHEMA).sort("id")
    current = splits.filter(pl.col("split").is_not_null()).select(
        "series", "group", "id", "split", pl.col("split_reason").alias("reason"))
    # Clips dealt before and absent now (rejected since, or their episode re-cut) stay in the
    # ledger, so they return to their old split if they come back.
    new_ledger = pl.concat([
        ledger.join(current.select("series", "id"), on=["series", "id"], how="anti"),
        current,
    ]).sort("series", "group", "id")
    return splits, new_ledger


def _guarantee_series_holdout(live: pl.DataFrame,
                              assigned: dict[tuple[str, str], tuple[str, str]],
                              frozen: set[tuple[str, str]], config: SplitConfig) -> None:
    """A series with ``min_series_groups`` groups gets a validation and a test group (in place).

    Hashing three or four scenes 80/10/10 usually deals them all to train, and a new user
    would see no evaluation set at all. The smallest new train group goes to each missing
    split (least training material lost), as long as one train group remains; failing that,
    a spare group of the other held-out split.
    """
    seconds = {(s, g): float(t) for s, g, t in live.group_by("series", "group")
               .agg(pl.col("duration_s").sum()).iter_rows()}
    by_series: dict[str, list[str]] = {}
    for series, group in seconds:
        by_series.setdefault(series, []).append(group)
    for series, groups in sorted(by_series.items()):
        if len(groups) < config.min_series_groups:
            continue
        for target, ratio in zip(SPLITS[1:], config.ratios[1:], strict=True):
            if ratio <= 0 or any(assigned[(series, g)][0] == target for g in groups):
                continue
            movable: list[str] = []
            for source in ("train", *(sp for sp in SPLITS[1:] if sp != target)):
                members = [g for g in groups if assigned[(series, g)][0] == source]
                if len(members) >= 2:  # the source split keeps a group
                    movable = [g for g in members if (series, g) not in frozen]
                if movable:
                    break
            if movable:
                g = min(movable, key=lambda g: (seconds[(series, g)], group_unit(series, g)))
                assigned[(series, g)] = (target, "holdout")


def _guarantee_holdout(live: pl.DataFrame, assigned: dict[tuple[str, str], tuple[str, str]],
                       frozen: set[tuple[str, str]], config: SplitConfig) -> None:
    """Move new train groups to validation/test for characters that have none (in place)."""
    seconds = (live.group_by("series", "group", "character")
               .agg(pl.col("duration_s").sum().alias("s")))
    by_char: dict[tuple[str, str], dict[str, float]] = {}
    for s, g, c, sec in seconds.iter_rows():
        by_char.setdefault((s, c), {})[g] = float(sec)
    group_total = {(s, g): float(t) for s, g, t in
                   seconds.group_by("series", "group").agg(pl.col("s").sum()).iter_rows()}
    for (series, _character), groups in sorted(by_char.items()):
        if len(groups) < config.min_groups_for_holdout:
            continue
        for target, ratio in zip(SPLITS[1:], config.ratios[1:], strict=True):
            if ratio <= 0:
                continue
            if any(assigned[(series, g)][0] == target for g in groups):
                continue
            movable = [g for g in groups if (series, g) not in frozen
                       and assigned[(series, g)][0] == "train"]
            n_train = sum(assigned[(series, g)][0] == "train" for g in groups)
            if not movable or n_train < 2:
                continue
            # Least collateral first: material of other characters that would move with it.
            g = min(movable, key=lambda g: (group_total[(series, g)] - groups[g],
                                            group_unit(series, g)))
            assigned[(series, g)] = (target, "holdout")
