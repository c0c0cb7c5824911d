"""Leakage-safe, stable splits: groups never span splits, old clips never move."""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl
import pytest

from voice_assets.dataset.splits import SPLITS, SplitConfig, assign_splits, group_unit, hash_split


def make_clips(episode: str, n_scenes: int, characters: list[str], per_scene: int = 3,
               seed: int = 0, series: str = "demo") -> pl.DataFrame:
    """Kept clips of one episode: each scene has `per_scene` lines cycling through characters."""
    rng = np.random.default_rng(zlib.crc32(f"{episode}/{seed}".encode()))
    rows = []
    for s in range(n_scenes):
        for k in range(per_scene):
            start = s * 60.0 + k * 3.0
            rows.append({
                "id": f"{series}__{episode}_{round(start * 1000):08d}",
                "episode": f"{series}__{episode}", "series": series,
                "character": characters[(s + k) % len(characters)],
                "scene": f"{series}__{episode}:scene_{round(s * 60000):08d}",
                "duration_s": 2.5, "keep": True,
                "fingerprint": rng.integers(0, 2**32, 200).tolist(),
            })
    return pl.DataFrame(rows)


def split_of(df: pl.DataFrame) -> dict[str, str | None]:
    return dict(zip(df["id"], df["split"], strict=True))


def test_groups_never_span_splits_and_each_clip_has_one_split():
    clips = pl.concat([make_clips(f"e{i}", 12, ["Aki", "Ben", "Cho"]) for i in range(4)])
    splits, ledger = assign_splits(clips)
    assert splits["id"].is_unique().all() and splits.height == clips.height
    per_group = splits.group_by("group").agg(pl.col("split").n_unique().alias("n"))
    assert per_group["n"].max() == 1
    assert set(splits["split"]) <= set(SPLITS)
    assert ledger.height == splits.height and ledger["group"].n_unique() == per_group.height


def test_a_new_episode_never_moves_existing_clips():
    old = pl.concat([make_clips(f"e{i}", 8, ["Aki", "Ben"]) for i in range(2)])
    first, ledger = assign_splits(old)
    # A new episode arrives, with a new character too; the ledger carries the old deal.
    new = pl.concat([old, make_clips("e2", 8, ["Aki", "Ben", "Dee"])])
    second, ledger2 = assign_splits(new, ledger)
    before, after = split_of(first), split_of(second)
    assert all(after[i] == s for i, s in before.items())
    assert second.filter(pl.col("id").is_in(list(before)))["split_reason"].to_list() == \
        first["split_reason"].to_list()
    assert ledger2.height > ledger.height
    # And re-running with nothing new changes nothing at all.
    third, ledger3 = assign_splits(new, ledger2)
    assert third.equals(second) and ledger3.equals(ledger2)


def test_every_character_with_enough_scenes_gets_validation_and_test():
    # Scenes with one character each: a pure hash would leave some with no held-out scene.
    chars = [f"C{i:02d}" for i in range(12)]
    rows = []
    for ci, c in enumerate(chars):
        for s in range(6):
            rows.append({"id": f"demo__e1_{ci:02d}{s:02d}000", "episode": "demo__e1",
                         "series": "demo", "character": c, "scene": f"demo__e1:{c}:{s}",
                         "duration_s": 3.0, "keep": True})
    clips = pl.DataFrame(rows)
    plain = {c: {hash_split(group_unit("demo", f"demo__e1:{c}:{s}"), (0.8, 0.1, 0.1))
                 for s in range(6)} for c in chars}
    assert any("validation" not in v or "test" not in v for v in plain.values())
    splits, _ = assign_splits(clips, config=SplitConfig(min_groups_for_holdout=5))
    for c in chars:
        got = set(splits.filter(pl.col("character") == c)["split"])
        assert {"train", "validation", "test"} <= got, (c, got)
    assert "holdout" in set(splits["split_reason"])
    # Below the threshold a character stays as the hash dealt it.
    few, _ = assign_splits(clips.filter(pl.col("scene").str.ends_with(":0")
                                        | pl.col("scene").str.ends_with(":1")))
    assert "holdout" not in set(few["split_reason"])


def test_ratios_follow_the_config_on_many_groups():
    clips = pl.concat([make_clips(f"e{i:02d}", 40, ["Aki"], per_scene=1) for i in range(25)])
    splits, _ = assign_splits(clips.drop("fingerprint"),
                              config=SplitConfig(min_groups_for_holdout=10**9))
    share = splits["split"].value_counts(normalize=True)
    got = dict(zip(share["split"], share["proportion"], strict=True))
    assert got["train"] == pytest.approx(0.8, abs=0.03)
    assert got["validation"] == pytest.approx(0.1, abs=0.02)
    assert got["test"] == pytest.approx(0.1, abs=0.02)
    by_episode, _ = assign_splits(clips.drop("fingerprint"), config=SplitConfig(group_by="episode"))
    assert by_episode.group_by("episode").agg(pl.col("split").n_unique())["split"].max() == 1


def test_repeated_audio_is_kept_once_and_out_of_every_other_split():
    e1 = make_clips("e1", 6, ["Aki", "Ben"], seed=1)
    e2 = make_clips("e2", 6, ["Aki", "Ben"], seed=2)
    # Episode 2 opens with a recap: two of episode 1's lines, same recording.
    recap = e1.head(2).with_columns(
        pl.Series("id", ["demo__e2_00000100", "demo__e2_00000200"]),
        pl.lit("demo__e2").alias("episode"), pl.lit("demo__e2:scene_00000100").alias("scene"))
    clips = pl.concat([e1, e2, recap])
    splits, _ = assign_splits(clips)
    dup = splits.filter(pl.col("split_reason") == "duplicate")
    assert sorted(dup["id"]) == ["demo__e2_00000100", "demo__e2_00000200"]
    assert dup["split"].null_count() == 2
    assert sorted(dup["duplicate_of"]) == sorted(e1.head(2)["id"])
    originals = splits.filter(pl.col("id").is_in(e1.head(2)["id"].to_list()))
    assert originals["split"].null_count() == 0


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="summing to 1"):
        SplitConfig(ratios=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="group_by"):
        SplitConfig(group_by="speaker")


def test_a_scene_whose_first_line_moved_keeps_its_split():
    clips = pl.concat([make_clips(f"e{i}", 10, ["Aki", "Ben"]) for i in range(2)])
    first, ledger = assign_splits(clips)
    # A correction moved each scene's first line a little: every scene id changes.
    moved = clips.with_columns(pl.col("scene").str.replace(r"scene_(\d+)", "scene_x$1"))
    second, _ = assign_splits(moved, ledger)
    assert split_of(second) == split_of(first)
    assert set(second["split_reason"]) == {"inherited"}


def test_a_series_with_too_few_scenes_trains_on_all_of_them():
    """One or two scenes cannot be split without losing most of the voice: all train, and
    they stay there as the series grows."""
    first = make_clips("e1", 1, ["Aki", "Ben"], per_scene=6)
    splits, ledger = assign_splits(first.drop("fingerprint"))
    assert set(splits["split"]) == {"train"}
    assert set(splits["split_reason"]) == {"few_groups"}
    more = pl.concat([first, *(make_clips(f"e{i}", 6, ["Aki", "Ben"], per_scene=2)
                               for i in range(2, 12))])
    grown, _ = assign_splits(more.drop("fingerprint"), ledger)
    old = grown.filter(pl.col("episode") == first["episode"][0])
    assert set(old["split"]) == {"train"}
    assert {"validation", "test"} & set(grown["split"])


def test_a_one_episode_series_of_three_scenes_gets_validation_and_test():
    clips = make_clips("e1", 3, ["Aki", "Ben"], per_scene=4)
    splits, _ = assign_splits(clips.drop("fingerprint"))
    assert set(splits["split"]) == {"train", "validation", "test"}
    per_scene = splits.group_by("group").agg(pl.col("split").n_unique())
    assert (per_scene["split"] == 1).all()  # no scene in two splits
    assert "holdout" in set(splits.filter(pl.col("split") != "train")["split_reason"])
    # Two scenes are still too few: all train.
    two, _ = assign_splits(make_clips("e1", 2, ["Aki", "Ben"]).drop("fingerprint"))
    assert set(two["split"]) == {"train"}
