"""Characters: each episode's speakers mapped to series characters, and the series registry.

``character_map`` (per episode) links the episode's diarized speakers into the series voice
ledger and names them from the evidence at hand (human names, subtitle Name fields, reference
clips of ``characters.yaml``, other episodes of the same voice); ``character_registry`` (per
series, every episode) lists the characters with their aliases, voices and voice prototypes.
Human input enters through ``speaker_names`` (names given in Label Studio, recorded by the
corrections sensor), which the lineage graph shows upstream of the map.
"""


from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from voice_assets.assets.common import (
    episode_asset_kwargs,
    md_table,
    png_md,
    round_metadata,
    series_asset_kwargs,
    table_asset_kwargs,
)
from voice_assets.assets.human_input import SPEAKER_NAMES
from voice_assets.characters.cast import Cast, CastError, find_cast_file, load_cast
from voice_assets.characters.mapping import (
    MAP_DESCRIPTIONS,
    MAP_SCHEMA,
    REGISTRY_DESCRIPTIONS,
    REGISTRY_SCHEMA,
    REGISTRY_TABLE_SCHEMA,
    EpisodeEvidence,
    map_episode,
    prototype_drift,
    registry_table,
    series_of,
)
from voice_assets.characters.naming import HumanName, NamingConfig, Reference
from voice_assets.characters.store import (
    locked_ledger,
    read_ledger,
    write_ledger,
    write_references,
)
from voice_assets.characters.voices import LinkConfig
from voice_assets.episode_keys import slug
from voice_assets.faces.clusters import FaceCluster, cluster_faces
from voice_assets.faces.identity import face_turns, face_votes, name_tracks, seed_from_picture
from voice_assets.faces.tables import contact_sheet
from voice_assets.plots import bar_png, stacked_bar_png
from voice_assets.resources.diarizer import DiarizerResource
from voice_assets.resources.faces import FaceDetectorResource
from voice_assets.resources.storage import StorageResource
from voice_assets.review.names import load_confirmed_names
from voice_assets.speech.audio_io import read_mono

GROUP = "characters"
DRIFT_COSINE = 0.92  # two characters' prototypes this close are probably one voice


def series_faces(cmap: pl.DataFrame, face_tracks: pl.DataFrame, speaking: pl.DataFrame
                 ) -> dict[str, list[FaceCluster]]:
    """Face clusters of each series, named through the character map of the turns they speak."""
    if face_tracks.is_empty() or cmap.is_empty():
        return {}
    characters = {(e, s): c for e, s, c in cmap.select("episode", "speaker", "character").rows()}
    out = {}
    tracks = face_tracks.with_columns(
        pl.col("episode").str.split("__").list.first().alias("series"))
    for series in sorted(set(tracks["series"].to_list())):
        mine = tracks.filter(pl.col("series") == series).drop("series")
        said = speaking.filter(pl.col("episode").str.starts_with(f"{series}__"))
        out[series] = cluster_faces(mine, said, characters)
    return out


def _crop_images(paths: list[str]) -> list[np.ndarray]:
    out = []
    for p in paths:
        bgr = cv2.imread(p, cv2.IMREAD_COLOR)
        if bgr is not None:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


def name_faces(cast: Cast, face_detector: FaceDetectorResource, storage: StorageResource,
               face_tracks: pl.DataFrame) -> dict[int, tuple[str, float]]:
    """Face tracks named by the face pictures of ``characters.yaml`` (none without them)."""
    pictures = [(c.name, p) for c in cast.characters for p in c.faces]
    if not pictures or face_tracks.is_empty():
        return {}
    detector = face_detector.detector(storage.layout)
    return name_tracks(face_tracks, [seed_from_picture(n, p, detector) for n, p in pictures])


def human_names(database: Path, series: str) -> list[HumanName]:
    """Confirmed names of the series' speakers, as the naming code takes them."""
    df = load_confirmed_names(database, series)
    return [
        HumanName(r["episode"], r["speaker"], r["name"], r.get("scope") or "voice",
                  tuple(r["embedding"] or ()), r["annotated_at"],
                  f"{r['annotation_id']} ({r['correction_id'][:12]})")
        for r in df.iter_rows(named=True)
    ]


def reference_embeddings(cast: Cast, diarizer: DiarizerResource, storage: StorageResource,
                         log: Any) -> list[Reference]:
    """Embeddings of the cast's reference clips, in the space of the speaker embeddings."""
    refs: list[Reference] = []
    for spec in cast.characters:
        for clip in spec.reference_clips:
            try:
                samples, _ = read_mono(clip, 16_000)
            except Exception as exc:  # a clip soundfile cannot decode
                raise CastError(cast.path or "characters.yaml", f"character '{spec.name}'",
                                f"reference clip {clip} cannot be decoded ({exc})") from exc
            got = diarizer.embed_reference(samples, storage.layout)
            if got is None:
                log.warning("reference clip %s not used: the %s diarizer's embeddings cannot "
                            "be reproduced for a clip", clip, diarizer.backend)
                continue
            emb, model = got
            refs.append(Reference(spec.name, tuple(float(v) for v in emb), model, str(clip)))
    return refs


class CharacterMapConfig(dg.Config):
    """How speakers are linked to series voices and named (cosine similarities of voices)."""

    link_threshold: float = Field(default=LinkConfig.link_threshold,
                                  description="A speaker joins a series voice at this cosine")
    same_voice_threshold: float = Field(
        default=LinkConfig.same_voice_threshold,
        description="A second speaker of one episode joins the same voice at this cosine")
    background_max_s: float = Field(
        default=LinkConfig.background_max_s,
        description="Unmatched, unnamed speakers with less speech are background")
    min_vote_share: float = Field(
        default=NamingConfig.min_vote_share,
        description="Share of a speaker's named seconds one subtitle name needs")
    reference_threshold: float = Field(
        default=NamingConfig.reference_threshold,
        description="Cosine to a characters.yaml reference clip that names a speaker")

    def link(self) -> LinkConfig:
        return LinkConfig(link_threshold=self.link_threshold,
                          same_voice_threshold=self.same_voice_threshold,
                          background_max_s=self.background_max_s)

    def naming(self) -> NamingConfig:
        return NamingConfig(min_vote_share=self.min_vote_share,
                            reference_threshold=self.reference_threshold)


MAP_CHECKS = ("character_map_every_speaker_mapped", "character_map_confidence")


@dg.asset(
    **table_asset_kwargs(episode_asset_kwargs, MAP_SCHEMA, MAP_DESCRIPTIONS),
    group_name=GROUP,
    kinds={"polars", "duckdb"},
    deps=[SPEAKER_NAMES],
    check_specs=[
        dg.AssetCheckSpec(
            MAP_CHECKS[0], asset="character_map", blocking=True,
            description="Every diarized speaker of the episode has a character (a name, "
            "voice-NN or background): an unmapped speaker's turns would reach no character's "
            "dataset (blocking)."),
        dg.AssetCheckSpec(
            MAP_CHECKS[1], asset="character_map",
            description="At most half of the episode's speech is mapped with confidence "
            "below 0.5: more means the names are mostly guesses and worth a review in Label "
            "Studio."),
    ],
)
def character_map(context: dg.AssetExecutionContext, config: CharacterMapConfig,
                  storage: StorageResource, diarizer: DiarizerResource,
                  face_detector: FaceDetectorResource,
                  speaker_embeddings: pl.DataFrame, diarization: pl.DataFrame,
                  aligned_transcript: pl.DataFrame, face_tracks: pl.DataFrame,
                  speaking_faces: pl.DataFrame) -> Iterator[Any]:
    """Each diarized speaker of the episode as a series character (named, ``voice-NN`` or
    ``background``), with a confidence and the evidence: voice similarity to the series
    voices, subtitle name votes, the named faces that speak its turns, human names, reference
    clips."""
    episode = context.partition_key
    series = series_of(episode)
    home = storage.layout.home
    cast = load_cast(storage.layout.inbox, series)
    human = human_names(storage.layout.database, series)
    refs = reference_embeddings(cast, diarizer, storage, context.log)
    named_faces = name_faces(cast, face_detector, storage, face_tracks)
    evidence = EpisodeEvidence(episode, speaker_embeddings, diarization, aligned_transcript,
                               face_votes(speaking_faces, named_faces),
                               face_turns(speaking_faces, named_faces))
    with locked_ledger(home, series) as ledger:
        new_ledger, df = map_episode(ledger, evidence, cast, human, refs, config.link(),
                                     config.naming())
        write_ledger(home, new_ledger)
        write_references(home, series, refs)
    new_voices = df.filter(pl.col("link") == "new").height
    context.log.info("%s: %d speakers -> %d characters (%d linked to earlier episodes, %d new "
                     "voices, %d background); ledger holds %d voices", episode, df.height,
                     df["character"].n_unique() if df.height else 0,
                     df.filter(pl.col("link") == "linked").height, new_voices,
                     df.filter(pl.col("character") == "background").height,
                     len(new_ledger.voices()))
    minutes = (df.group_by("character").agg((pl.col("speech_s").sum() / 60).alias("m"))
               .sort("m", descending=True) if df.height else pl.DataFrame())
    meta: dict[str, Any] = {
        "speakers": df.height,
        "characters": ", ".join(sorted(set(df["character"].to_list()))) if df.height else "",
        "named": int(df.filter(~pl.col("source").is_in(["voice-id", "background"])).height),
        "new_voices": new_voices,
        "cast_file": str(cast.path) if cast.path else "(none: open cast)",
        "face_tracks_named": len(named_faces),
        "voice_twins": ", ".join(sorted(evidence.face_turns)) or "none",
        "evidence": dg.MetadataValue.md(md_table(df.select(
            "speaker", "character", "confidence", "source", "voice", "voice_similarity",
            "runner_up_similarity", "subtitle_votes", pl.col("speech_s").round(1)))),
        "dagster/row_count": df.height,
    }
    if minutes.height:
        meta["minutes_per_character"] = png_md(bar_png(
            dict(zip(minutes["character"], minutes["m"], strict=True)), "minutes of speech",
            f"{episode}: speech per character"), "minutes per character")
    yield dg.Output(df, metadata=round_metadata(meta))

    speakers = set(diarization["speaker"].unique().to_list()) if diarization.height else set()
    mapped = set(df.filter(pl.col("character").is_not_null())["speaker"].to_list())
    yield dg.AssetCheckResult(
        check_name=MAP_CHECKS[0], passed=speakers <= mapped,
        metadata={"speakers": len(speakers), "unmapped": ", ".join(sorted(speakers - mapped))
                  or "none"})
    conf = df["confidence"].to_numpy() if df.height else np.zeros(0)
    weights = df["speech_s"].to_numpy() if df.height else np.zeros(0)
    low = float(weights[conf < 0.5].sum() / max(weights.sum(), 1e-9)) if df.height else 0.0
    yield dg.AssetCheckResult(
        check_name=MAP_CHECKS[1], passed=low <= 0.5, severity=dg.AssetCheckSeverity.WARN,
        metadata=round_metadata({
            "share_of_speech_below_0_5": low,
            "p10": float(np.quantile(conf, 0.1)) if conf.size else 0.0,
            "median": float(np.median(conf)) if conf.size else 0.0,
            "by_source": dg.MetadataValue.md(md_table(
                df.group_by("source").agg(pl.len().alias("speakers"),
                                          pl.col("confidence").mean().alias("mean_confidence"))
                .sort("source"))) if df.height else "(none)",
        }))


ALL_EPISODES = dg.AllPartitionMapping()


@dg.asset(
    **table_asset_kwargs(series_asset_kwargs, REGISTRY_TABLE_SCHEMA, REGISTRY_DESCRIPTIONS),
    group_name=GROUP,
    kinds={"polars", "duckdb"},
    ins={
        "character_map": dg.AssetIn(partition_mapping=ALL_EPISODES),
        "speaker_embeddings": dg.AssetIn(partition_mapping=ALL_EPISODES),
        "face_tracks": dg.AssetIn(partition_mapping=ALL_EPISODES),
        "speaking_faces": dg.AssetIn(partition_mapping=ALL_EPISODES),
    },
    check_specs=[dg.AssetCheckSpec(
        "character_prototypes_distinct", asset="character_registry",
        description=f"No two characters of a series have voice prototypes closer than cosine "
        f"{DRIFT_COSINE}: such a pair is probably one voice under two names, splitting its "
        "dataset.")],
)
def character_registry(context: dg.AssetExecutionContext, storage: StorageResource,
                       character_map: pl.DataFrame, speaker_embeddings: pl.DataFrame,
                       face_tracks: pl.DataFrame, speaking_faces: pl.DataFrame
                       ) -> Iterator[Any]:
    """Per series: every character (declared, named or ``voice-NN``) with aliases, series
    voices, episodes, minutes of speech, a voice prototype from its confident speakers, and
    the face clusters that speak for it (crops in ``face_crops``)."""
    cmap = character_map if character_map.height else pl.DataFrame(schema=MAP_SCHEMA)
    series_names = set(cmap["series"].to_list()) if cmap.height else set()
    inbox = storage.layout.inbox
    if inbox.is_dir():
        series_names |= {slug(p.parent.name) for p in inbox.glob("*/characters.yaml")}
    casts = {s: load_cast(inbox, s) for s in sorted(series_names)
             if find_cast_file(inbox, s) is not None}
    emb = speaker_embeddings.select("episode", "speaker", "embedding") \
        if speaker_embeddings.height else None
    df = registry_table(cmap, casts, embeddings=emb)
    faces = series_faces(cmap, face_tracks, speaking_faces)
    crops = {(series, c.character): c.crops[:4] for series, cl in faces.items() for c in cl
             if c.character}
    df = df.with_columns(pl.Series("face_crops", [crops.get((s, c), []) for s, c in
                                                 df.select("series", "character").rows()],
                                   dtype=REGISTRY_TABLE_SCHEMA["face_crops"]))
    for series in sorted(set(df["series"].to_list())):
        ledger = read_ledger(storage.layout.home, series)
        context.log.info("%s: %d characters, %d series voices over %d episodes", series,
                         df.filter(pl.col("series") == series).height, len(ledger.voices()),
                         len({m.episode for m in ledger.members}))
    meta: dict[str, Any] = {
        "characters": df.height,
        "registry": dg.MetadataValue.md(md_table(df.select(
            "series", "character", "kind", "voices", "episodes", "speech_minutes",
            "mean_confidence", "sources").with_columns(pl.col("voices").list.join(", ")))),
        "dagster/row_count": df.height,
    }
    if cmap.height:
        per = (cmap.group_by("series", "episode", "character")
               .agg((pl.col("speech_s").sum() / 60).alias("m")).sort("episode"))
        for series in sorted(set(per["series"].to_list())):
            part = per.filter(pl.col("series") == series)
            table: dict[str, dict[str, float]] = {}
            for _, ep, ch, m in part.iter_rows():
                table.setdefault(ch, {})[ep.split("__", 1)[-1]] = m
            meta[f"minutes_{series}"] = png_md(stacked_bar_png(
                table, "minutes of speech", f"{series}: speech per character and episode"),
                "minutes per character")
    for series, clusters in faces.items():
        meta[f"face_clusters_{series}"] = dg.MetadataValue.md(md_table(pl.DataFrame([
            {"cluster": c.cluster, "character": c.character or "(unclear)", "share": c.share,
             "tracks": len(c.tracks), "episodes": len(c.episodes)} for c in clusters])))
        sheet = contact_sheet([(f"{c.cluster}: {c.character or '?'}", image)
                               for c in clusters[:12] for image in _crop_images(c.crops[:6])],
                              columns=6)
        if sheet:
            meta[f"faces_{series}"] = png_md(sheet, f"{series} face clusters")
    yield dg.Output(df, metadata=round_metadata(meta))
    drift = prototype_drift(df, DRIFT_COSINE)
    yield dg.AssetCheckResult(
        check_name="character_prototypes_distinct", passed=not drift,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"threshold": DRIFT_COSINE, "pairs": len(drift),
                  "close_pairs": "; ".join(f"{s}: {a} ~ {b} ({c:.3f})" for s, a, b, c in drift)
                  or "none"})


__all__ = ["REGISTRY_SCHEMA", "character_map", "character_registry"]
