"""The voice tables as stored: readiness per character and trainer, and the voice models."""

from __future__ import annotations

import polars as pl

from voice_assets.voices.readiness import READINESS_DESCRIPTIONS, READINESS_SCHEMA

READINESS_TABLE_SCHEMA = {"key": pl.Utf8(), **READINESS_SCHEMA}
READINESS_TABLE_DESCRIPTIONS = {
    "key": "The character's `characters` partition (`<series>__<character>`).",
    **READINESS_DESCRIPTIONS}


VOICE_MODEL_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.Utf8(), "series": pl.Utf8(), "character": pl.Utf8(), "trainer": pl.Utf8(),
    "status": pl.Utf8(), "reasons": pl.List(pl.Utf8()), "folder": pl.Utf8(),
    "step": pl.Int64(), "train_clips": pl.Int64(), "validation_clips": pl.Int64(),
    "eval_lines": pl.Int64(), "judged_on": pl.Utf8(), "similarity_own": pl.Float64(),
    "similarity_other": pl.Float64(), "similarity_margin": pl.Float64(), "wer": pl.Float64(),
    "duration_ratio": pl.Float64(), "loudness_lufs": pl.Float64(),
    "samples": pl.List(pl.Utf8()),
}
VOICE_MODEL_DESCRIPTIONS: dict[str, str] = {
    "key": "The character's `characters` partition.",
    "series": "Series slug.",
    "character": "Series character.",
    "trainer": "Trainer that built the model.",
    "status": "'trained', or 'not_ready' (below the trainer's floor and not forced).",
    "reasons": "Floors the character's data misses (see voice_readiness).",
    "folder": "The model folder (manifest.json and the trainer's files).",
    "step": "Training steps done (0: nothing trained, e.g. a reference pack).",
    "train_clips": "Train clips the model learned from.",
    "validation_clips": "Held-out clips it was judged on.",
    "eval_lines": "Held-out lines synthesised for evaluation (a pack: its prompts).",
    "judged_on": "What the model was judged on: 'validation', 'test' (no validation clips), "
    "'train' (no held-out clips at all: the figures flatter it) or 'prompts' (a pack).",
    "similarity_own": "Mean cosine of the synthesised lines to the character's held-out clips "
    "(the project's speaker embedder).",
    "similarity_other": "Best mean cosine to another character of the series (null: none).",
    "similarity_margin": "similarity_own - similarity_other: above 0 it sounds more like its "
    "character than like anyone else.",
    "wer": "ASR word error rate of the synthesised lines against their text.",
    "duration_ratio": "Median length of a synthesised line over the real clip's.",
    "loudness_lufs": "Median loudness of the synthesised lines, LUFS.",
    "samples": "The synthesised WAVs, to listen to.",
}
