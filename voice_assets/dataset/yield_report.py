"""Where each character's speech went: minutes found, kept, and rejected by reason.

The number a voice dataset is judged by is clean minutes kept per character; next to it, the
minutes each gate threw away say which gate to look at. "found" is the speech of every clip
(kept or not) plus what was cut away around overlaps; a rejected clip counts once, under its
first reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

YIELD_SCHEMA: dict[str, pl.DataType] = {
    "character": pl.Utf8(), "found_min": pl.Float64(), "kept_min": pl.Float64(),
    "kept_share": pl.Float64(), "overlap_cut_min": pl.Float64(), "rejected_min": pl.Float64(),
}


def _speech_s() -> pl.Expr:
    """A clip's speech seconds: its audio, or the utterance span when nothing was written."""
    return pl.coalesce(pl.col("duration_s"), pl.col("end") - pl.col("start")).fill_null(0.0)


def yield_table(clips: pl.DataFrame, by: Sequence[str] = ("character",)) -> pl.DataFrame:
    """One row per ``by`` group (most kept first): YIELD_SCHEMA plus `rejected_<reason>_min`.

    Per episode ``by`` is the character; across series, ("series", "character").
    """
    keys = list(by)
    if clips.is_empty():
        return pl.DataFrame(schema={**{k: pl.Utf8() for k in keys}, **YIELD_SCHEMA})
    cut = (pl.col("overlap_cut_s").fill_null(0.0) if "overlap_cut_s" in clips.columns
           else pl.lit(0.0))
    df = clips.with_columns(_speech_s().alias("_s"), cut.alias("_cut"),
                            pl.col("reject_reason").fill_null("kept").alias("_why"))
    base = df.group_by(keys).agg(
        ((pl.col("_s").sum() + pl.col("_cut").sum()) / 60).alias("found_min"),
        (pl.col("_s").filter(pl.col("keep")).sum() / 60).alias("kept_min"),
        (pl.col("_cut").sum() / 60).alias("overlap_cut_min"),
        (pl.col("_s").filter(~pl.col("keep")).sum() / 60).alias("rejected_min"),
    ).with_columns((pl.col("kept_min") / pl.col("found_min")).fill_nan(0.0).alias("kept_share"))
    reasons = sorted(r for r in df["_why"].unique().to_list() if r != "kept")
    if reasons:
        pivoted = (df.filter(pl.col("_why") != "kept")
                   .pivot(on="_why", index=keys, values="_s", aggregate_function="sum")
                   .fill_null(0.0))
        per_reason = pivoted.select(*keys, *[(pl.col(r) / 60).alias(f"rejected_{r}_min")
                                        for r in reasons])
        base = base.join(per_reason, on=keys, how="left").fill_null(0.0)
    columns = [*keys, *(c for c in YIELD_SCHEMA if c not in keys)]
    return base.select(*columns, *[c for c in base.columns if c.startswith("rejected_")
                                   and c != "rejected_min"]).sort(
        ["kept_min", *keys], descending=[True, *[False] * len(keys)])


def yield_bars(table: pl.DataFrame) -> dict[str, dict[str, float]]:
    """character -> {kept, cut for overlap, each rejection reason: minutes}, for a stacked bar."""
    out: dict[str, dict[str, float]] = {}
    keys = [c for c in table.columns if c in ("series", "character")]
    for row in table.iter_rows(named=True):
        parts = {"kept": row["kept_min"], "cut around overlap": row["overlap_cut_min"]}
        for col, value in row.items():
            if col.startswith("rejected_") and col != "rejected_min" and value:
                parts[col.removeprefix("rejected_").removesuffix("_min")] = value
        out["/".join(str(row[k]) for k in keys)] = {k: float(v) for k, v in parts.items() if v}
    return out
