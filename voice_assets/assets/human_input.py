"""Human input from Label Studio, declared so the lineage graph shows where people enter.

Both tables are append-only and written by ``label_studio_corrections_sensor`` when it pulls
annotations (it reports a materialization of each with the counts it recorded); the pipeline
only reads them. ``corrections`` feeds ``utterances`` (per-turn fixes) and the series emotion
tags; ``speaker_names`` feeds ``character_map`` (names for whole voices, merges and splits).
"""

import dagster as dg

from voice_assets.assets.common import table_metadata
from voice_assets.review.corrections import CORRECTION_DESCRIPTIONS, CORRECTION_SCHEMA
from voice_assets.review.names import NAMES_DESCRIPTIONS, NAMES_SCHEMA

CORRECTIONS = dg.AssetKey("corrections")
SPEAKER_NAMES = dg.AssetKey("speaker_names")

corrections = dg.AssetSpec(
    CORRECTIONS,
    group_name="review",
    kinds={"labelstudio", "duckdb"},
    description="Per-turn corrections people make in Label Studio's utterance review "
    "(speaker, character, transcript, emotion, flags, bounds): table voice_assets.corrections.",
    metadata=table_metadata(CORRECTION_SCHEMA, CORRECTION_DESCRIPTIONS),
)

speaker_names = dg.AssetSpec(
    SPEAKER_NAMES,
    group_name="review",
    kinds={"labelstudio", "duckdb"},
    description="Names people give to diarized speakers in Label Studio's speaker naming, "
    "with their scope (the whole series voice, or only that speaker): table "
    "voice_assets.speaker_names. They outrank every automatic source in the character map.",
    metadata=table_metadata(NAMES_SCHEMA, NAMES_DESCRIPTIONS),
)
