"""Face tracks of each episode, and which face speaks each diarized turn."""

from pathlib import Path
from typing import Any

import cv2
import dagster as dg
import polars as pl
from pydantic import Field

from voice_assets.assets.common import (
    episode_asset_kwargs,
    model_asset_kwargs,
    png_md,
    round_metadata,
    table_asset_kwargs,
)
from voice_assets.assets.stems import one_row
from voice_assets.atomic import write_bytes
from voice_assets.errors import MediaError
from voice_assets.faces import speaking as who
from voice_assets.faces.episode import SamplingConfig, track_episode_faces
from voice_assets.faces.tables import (
    FACE_TRACK_DESCRIPTIONS,
    FACE_TRACK_SCHEMA,
    SPEAKING_DESCRIPTIONS,
    SPEAKING_SCHEMA,
    activities,
    contact_sheet,
    speaking_table,
    tracks_table,
)
from voice_assets.plots import timeline_png
from voice_assets.progress import logging_progress
from voice_assets.resources.faces import FaceDetectorResource
from voice_assets.resources.storage import StorageResource

GROUP = "faces"


class FaceTracksConfig(dg.Config):
    detect_fps: float = Field(default=SamplingConfig.detect_fps,
                              description="Detector passes per second around speech")
    other_fps: float = Field(default=SamplingConfig.other_fps,
                             description="Detector passes per second away from speech")
    mouth_fps: float = Field(default=SamplingConfig.mouth_fps,
                             description="Mouth readings per second around speech")
    max_width: int = Field(default=SamplingConfig.max_width,
                           description="Frames are scaled down to this width")
    reuse_still_frames: bool = Field(
        default=SamplingConfig.reuse_still_frames,
        description="A frame unchanged since an earlier detector pass keeps its boxes")
    reuse_embedding_correlation: float = Field(
        default=SamplingConfig.reuse_embedding_correlation,
        description="A face whose aligned thumbnail correlates this well with one already "
                    "embedded reuses its embedding (above 1: never)")

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.detect_fps, self.other_fps, self.mouth_fps, self.max_width,
                              reuse_still_frames=self.reuse_still_frames,
                              reuse_embedding_correlation=self.reuse_embedding_correlation)


def _save_crops(storage: StorageResource, episode: str, tracks: list) -> dict[int, list[str]]:
    root = storage.layout.episode_dir(episode, "face_tracks")
    out: dict[int, list[str]] = {}
    for tr in tracks:
        for i, img in enumerate(tr.crops()):
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            if ok:
                path = root / f"track{tr.track_id:04d}_{i}.jpg"
                write_bytes(path, jpg.tobytes())
                out.setdefault(tr.track_id, []).append(str(path))
    return out


@dg.asset(**table_asset_kwargs(model_asset_kwargs, FACE_TRACK_SCHEMA, FACE_TRACK_DESCRIPTIONS),
          group_name=GROUP, kinds={"polars", "duckdb", "opencv"})
def face_tracks(context: dg.AssetExecutionContext, config: FaceTracksConfig,
                face_detector: FaceDetectorResource, storage: StorageResource,
                episode_media: pl.DataFrame, voice_activity: pl.DataFrame
                ) -> dg.Output[pl.DataFrame]:
    """One row per face per shot: box, identity embedding, colour appearance, review crops and
    a mouth-activity series, from frames decoded only around speech (denser) and elsewhere."""
    key = context.partition_key
    media = one_row(episode_media, "episode_media", key)
    speech = list(zip(voice_activity["start"].to_list(), voice_activity["end"].to_list(),
                      strict=True))
    if not media["has_video"]:
        context.log.info("%s: audio-only episode, no faces to track", key)
        return dg.Output(pl.DataFrame(schema=FACE_TRACK_SCHEMA),
                         metadata={"tracks": 0, "skipped": "no video stream (audio-only)"})
    detector = face_detector.detector(storage.layout)
    try:
        result = track_episode_faces(Path(media["source_path"]), speech, detector,
                                     config.sampling(), progress=logging_progress(context.log))
    except MediaError as exc:  # a broken picture must not hold back the audio pipeline
        context.log.warning("%s: faces skipped: %s", key, exc)
        return dg.Output(pl.DataFrame(schema=FACE_TRACK_SCHEMA),
                         metadata={"tracks": 0, "skipped": f"video unreadable: {exc}"})
    if result.skipped:
        context.log.info("%s: %s", key, result.skipped)
    crops = _save_crops(storage, key, result.tracks)
    df = tracks_table(key, result.tracks, result.scale, detector.name, crops)
    duration = result.video.duration_s if result.video else 0.0
    meta: dict[str, Any] = {
        "backend": detector.name,
        "tracks": df.height,
        "shots": len(result.shot_starts),
        "frames_read": result.frames,
        "detector_passes": result.detector_passes,
        "reused_passes": result.reused_passes,
        "embeddings": result.embeddings,
        "reused_embeddings": result.reused_embeddings,
        "seconds": result.seconds,
        "rtf": result.seconds / duration if duration else 0.0,
        "skipped": result.skipped or "",
        "dagster/row_count": df.height,
    }
    sheet = contact_sheet([(f"#{tr.track_id} {tr.start:.0f}s", tr.crops()[0])
                           for tr in result.tracks if tr.crops()][:48])
    if sheet:
        meta["contact_sheet"] = png_md(sheet, "face tracks")
    return dg.Output(df, metadata=round_metadata(meta))


@dg.asset(**table_asset_kwargs(episode_asset_kwargs, SPEAKING_SCHEMA, SPEAKING_DESCRIPTIONS),
          group_name=GROUP, kinds={"polars", "duckdb"})
def speaking_faces(context: dg.AssetExecutionContext, face_tracks: pl.DataFrame,
                   diarization: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """For each diarized turn, the on-screen face whose mouth follows the voice (score,
    runner-up), or why none does: no face on screen, no mouth moving, too close to call."""
    key = context.partition_key
    turns = [who.Turn(r["speaker"], float(r["start"]), float(r["end"]))
             for r in diarization.iter_rows(named=True)]
    results = who.speaking_faces(turns, activities(face_tracks))
    df = speaking_table(key, results)
    reasons = df.group_by("reason").len().sort("reason")
    speaking = df.filter(pl.col("reason") == "speaking")
    meta: dict[str, Any] = {
        "turns": df.height,
        "turns_with_speaking_face": speaking.height,
        "share_with_speaking_face": speaking.height / df.height if df.height else 0.0,
        "reasons": dg.MetadataValue.json(dict(reasons.iter_rows())),
        "dagster/row_count": df.height,
    }
    if face_tracks.height and df.height:
        # One row for any face on screen, one per voice, one for turns a face was seen speaking.
        spans = [(float(r["start"]), float(r["end"]), "a face on screen")
                 for r in face_tracks.iter_rows(named=True)]
        spans += [(float(r["start"]), float(r["end"]), f"voice {r['speaker']}")
                  for r in df.iter_rows(named=True)]
        spans += [(float(r["start"]), float(r["end"]), "speaking face found")
                  for r in speaking.iter_rows(named=True)]
        end = max(e for _, e, _ in spans)
        meta["on_screen_vs_speaking"] = png_md(
            timeline_png(spans, end, title=f"{key}: faces on screen and voices"),
            "faces on screen against voices")
    return dg.Output(df, metadata=round_metadata(meta))


__all__ = ["face_tracks", "speaking_faces"]
