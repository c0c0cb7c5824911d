"""Who is speaking on screen: for each diarized turn, the face whose mouth follows the voice.

Activity is put on the episode's scale (0 at the quiet level of all mouths on screen, 1 at
their busy level; a close-up of someone talking all the time has no quiet level of its own),
then averaged over each track's samples inside the turn. The turn goes to the best face when
it scores at least ``min_score`` and beats the runner-up by ``min_margin``; otherwise the
speaker is off screen or not visible, said in ``reason``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrackActivity:
    """A face track's mouth-activity series (from ``FaceTrack`` or the face_tracks table)."""

    track_id: int
    times: np.ndarray
    activity: np.ndarray

    @property
    def start(self) -> float:
        return float(self.times[0]) if self.times.size else 0.0

    @property
    def end(self) -> float:
        return float(self.times[-1]) if self.times.size else 0.0


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float


@dataclass(frozen=True)
class SpeakingFace:
    turn: Turn
    track_id: int | None
    score: float
    runner_up: int | None
    runner_up_score: float
    on_screen: int  # tracks with samples inside the turn
    reason: str  # "speaking", "no_face", "no_mouth_motion", "ambiguous"


def normalised_activity(tracks: Sequence[TrackActivity]) -> dict[int, np.ndarray]:
    """Each track's activity rescaled to 0 at the episode's quiet level and 1 at its busy
    level (20th and 90th percentiles of every mouth sample)."""
    acts = {tr.track_id: tr.activity for tr in tracks}
    every = np.concatenate([a for a in acts.values() if a.size] or [np.zeros(1)])
    quiet, busy = np.percentile(every, 20), np.percentile(every, 90)
    span = max(float(busy - quiet), 1e-3)
    return {k: (a - quiet) / span for k, a in acts.items()}


def rank_turn(turn: Turn, tracks: Sequence[TrackActivity], scaled: dict[int, np.ndarray],
              min_score: float = 0.15, min_margin: float = 0.1) -> SpeakingFace:
    scores: list[tuple[float, int]] = []
    for tr in tracks:
        if tr.end < turn.start or tr.start > turn.end:
            continue
        t = tr.times
        inside = (t >= turn.start) & (t <= turn.end)
        if not inside.any():
            continue
        scores.append((float(np.mean(scaled[tr.track_id][inside])), tr.track_id))
    scores.sort(reverse=True)
    if not scores:
        return SpeakingFace(turn, None, 0.0, None, 0.0, 0, "no_face")
    best, best_id = scores[0]
    second, second_id = scores[1] if len(scores) > 1 else (0.0, None)
    if best < min_score:
        return SpeakingFace(turn, None, best, best_id, second, len(scores), "no_mouth_motion")
    if best - max(second, 0.0) < min_margin:
        return SpeakingFace(turn, None, best, best_id, second, len(scores), "ambiguous")
    return SpeakingFace(turn, best_id, best, second_id, second, len(scores), "speaking")


def speaking_faces(turns: Sequence[Turn], tracks: Sequence[TrackActivity]
                   ) -> list[SpeakingFace]:
    scaled = normalised_activity(tracks)
    return [rank_turn(turn, tracks, scaled) for turn in turns]


def voice_mask(times: np.ndarray, turns: Sequence[Turn], speaker: str) -> np.ndarray:
    """1.0 at the sample times when ``speaker`` talks."""
    mask = np.zeros(times.size, np.float32)
    for turn in turns:
        if turn.speaker == speaker:
            mask[(times >= turn.start) & (times <= turn.end)] = 1.0
    return mask
