"""The face_tracks and speaking_faces tables (polars), and a contact sheet of track crops."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import polars as pl

from voice_assets.episode_keys import EPISODE_COLUMN
from voice_assets.faces.speaking import SpeakingFace, TrackActivity
from voice_assets.faces.tracks import FaceTrack

FACE_TRACK_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.String(),
    "track_id": pl.Int32(),
    "shot": pl.Int32(),
    "start": pl.Float64(),
    "end": pl.Float64(),
    "detections": pl.Int32(),
    "x0": pl.Float32(),  # mean box, source-video pixels
    "y0": pl.Float32(),
    "x1": pl.Float32(),
    "y1": pl.Float32(),
    "score": pl.Float32(),
    "backend": pl.String(),
    "embedding": pl.List(pl.Float32()),  # the backend's identity embedding (empty: none)
    "appearance": pl.List(pl.Float32()),  # colour histogram (drawn characters)
    "crop_paths": pl.List(pl.String()),
    "mouth_t": pl.List(pl.Float64()),
    "mouth_activity": pl.List(pl.Float32()),
}
FACE_TRACK_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "track_id": "Id of the face track within the episode.",
    "shot": "Index of the shot the track lies in (a track never crosses a cut).",
    "start": "First time the face is seen, seconds.",
    "end": "Last time the face is seen, seconds.",
    "detections": "Detector hits the track is made of.",
    "x0": "Left edge of the mean face box, source-video pixels.",
    "y0": "Top edge of the mean face box, source-video pixels.",
    "x1": "Right edge of the mean face box, source-video pixels.",
    "y1": "Bottom edge of the mean face box, source-video pixels.",
    "score": "Mean detector score of the track's detections.",
    "backend": "Face detector backend.",
    "embedding": "The backend's identity embedding of the face (empty: none).",
    "appearance": "Colour histogram of the face (tells drawn characters apart).",
    "crop_paths": "JPEG crops of the face, for review and the registry's contact sheets.",
    "mouth_t": "Times of the mouth-activity samples, seconds.",
    "mouth_activity": "How much the mouth moves at each time of mouth_t.",
}

SPEAKING_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.String(),
    "start": pl.Float64(),
    "end": pl.Float64(),
    "speaker": pl.String(),
    "track_id": pl.Int32(),  # null: no face on screen speaks this turn (see reason)
    "score": pl.Float32(),
    "runner_up": pl.Int32(),
    "runner_up_score": pl.Float32(),
    "on_screen": pl.Int32(),
    "reason": pl.String(),
}
SPEAKING_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "start": "Start of the diarized turn, seconds.",
    "end": "End of the diarized turn, seconds.",
    "speaker": "Diarization speaker of the turn.",
    "track_id": "Face track whose mouth follows the voice (null: none, see reason).",
    "score": "Mouth activity of the best face during the turn (0: the episode's quiet level, "
    "1: its busy level).",
    "runner_up": "Track id of the second-best face (null: none).",
    "runner_up_score": "Mouth activity of the second-best face.",
    "on_screen": "Face tracks with mouth samples during the turn.",
    "reason": "'speaking', 'no_face', 'no_mouth_motion' or 'ambiguous' (too close to call).",
}


def tracks_table(episode: str, tracks: Sequence[FaceTrack], scale: float, backend: str,
                 crop_paths: dict[int, list[str]]) -> pl.DataFrame:
    rows = []
    for tr in tracks:
        x0, y0, x1, y1 = (v / scale for v in tr.mean_box())
        emb = tr.embedding()
        rows.append({
            "episode": episode, "track_id": tr.track_id, "shot": tr.shot,
            "start": tr.start, "end": tr.end, "detections": len(tr.obs),
            "x0": x0, "y0": y0, "x1": x1, "y1": y1,
            "score": float(np.mean([o.det.score for o in tr.obs])),
            "backend": backend,
            "embedding": [] if emb is None else emb.tolist(),
            "appearance": tr.appearance().tolist(),
            "crop_paths": crop_paths.get(tr.track_id, []),
            "mouth_t": [round(t, 4) for t in tr.mouth_t],
            "mouth_activity": tr.activity().tolist(),
        })
    return pl.DataFrame(rows, schema=FACE_TRACK_SCHEMA)


def activities(face_tracks: pl.DataFrame) -> list[TrackActivity]:
    return [TrackActivity(int(r["track_id"]), np.asarray(r["mouth_t"], dtype=np.float64),
                          np.asarray(r["mouth_activity"], dtype=np.float32))
            for r in face_tracks.iter_rows(named=True)]


def speaking_table(episode: str, results: Sequence[SpeakingFace]) -> pl.DataFrame:
    rows = [{"episode": episode, "start": r.turn.start, "end": r.turn.end,
             "speaker": r.turn.speaker, "track_id": r.track_id, "score": r.score,
             "runner_up": r.runner_up, "runner_up_score": r.runner_up_score,
             "on_screen": r.on_screen, "reason": r.reason} for r in results]
    return pl.DataFrame(rows, schema=SPEAKING_SCHEMA)


def contact_sheet(crops: Sequence[tuple[str, np.ndarray]], columns: int = 8,
                  size: int = 96) -> bytes:
    """A PNG grid of labelled face crops (RGB), for asset metadata."""
    if not crops:
        return b""
    rows = (len(crops) + columns - 1) // columns
    sheet = np.full((rows * (size + 14), columns * size, 3), 255, np.uint8)
    for i, (label, img) in enumerate(crops):
        r, c = divmod(i, columns)
        y, x = r * (size + 14), c * size
        sheet[y:y + size, x:x + size] = cv2.resize(img, (size, size))
        cv2.putText(sheet, label[:14], (x + 2, y + size + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return png.tobytes() if ok else b""
