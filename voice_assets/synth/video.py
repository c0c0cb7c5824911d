"""The picture track: who is on screen when, with mouths that open with their speech.

Editing follows the dialogue like a simple sitcom cut: a close-up of whoever speaks, a
two-shot while two talk over each other, the last close-up held through short pauses, and a
wide shot of the whole cast in long pauses and the intro. A character's mouth opening is their
own speech envelope, so mouth motion and voice line up frame by frame (what active-speaker and
face-voice linking need), and a silent face keeps still.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from voice_assets.synth.faces import draw_mouth, face

HOLD_S = 1.0  # keep the last close-up through pauses shorter than this


@dataclass(frozen=True)
class Panel:
    """One character's portrait in a shot, in frame pixels."""

    character: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the portrait
    mouth: tuple[float, float, float]  # centre x, centre y, width


@dataclass(frozen=True)
class Shot:
    """A run of frames with the same characters on screen."""

    start: float
    end: float
    kind: str  # "close", "group" (2+ speakers) or "wide" (nobody speaking)
    panels: tuple[Panel, ...]

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "kind": self.kind,
                "characters": [p.character for p in self.panels],
                "boxes": {p.character: list(p.box) for p in self.panels},
                "mouths": {p.character: [round(v, 1) for v in p.mouth] for p in self.panels}}


def layout(characters: Sequence[str], faces: dict[str, str], width: int,
           height: int) -> tuple[Panel, ...]:
    """Side-by-side portraits, as large as the frame allows, with room for name captions."""
    n = len(characters)
    panel_w = width // n
    size = min(panel_w - 8, height - 24)
    y0 = (height - 18 - size) // 2
    panels = []
    for i, name in enumerate(characters):
        x0 = i * panel_w + (panel_w - size) // 2
        f = face(faces[name], size)
        panels.append(Panel(name, (x0, y0, x0 + size, y0 + size),
                            (x0 + f.mouth_x, y0 + f.mouth_y, f.mouth_w)))
    return tuple(panels)


def plan(intervals: dict[str, list[tuple[float, float]]], cast: Sequence[str], n_frames: int,
         fps: int) -> list[tuple[tuple[str, ...], str]]:
    """Per frame: the characters on screen (cast order) and the shot kind."""
    out: list[tuple[tuple[str, ...], str]] = []
    current: tuple[str, ...] = ()
    last_speech = -1e9
    for i in range(n_frames):
        t = (i + 0.5) / fps
        speaking = tuple(c for c in cast if any(s <= t < e for s, e in intervals.get(c, ())))
        if speaking:
            current, last_speech = speaking, t
            out.append((speaking, "close" if len(speaking) == 1 else "group"))
        elif current and t - last_speech < HOLD_S:
            out.append((current, "close" if len(current) == 1 else "group"))
        else:
            current = ()
            out.append((tuple(cast), "wide"))
    # A one-frame shot is a flicker, not an edit: give it to the shot before.
    for i in range(1, n_frames - 1):
        if out[i] != out[i - 1] and out[i] != out[i + 1]:
            out[i] = out[i - 1]
    return out


def envelope(track: np.ndarray, rate: int, n_frames: int, fps: int) -> np.ndarray:
    """Mouth opening per frame in [0, 1] from a character's clean speech (0 when silent)."""
    hop = rate / fps
    rms = np.zeros(n_frames, np.float64)
    for i in range(n_frames):
        a, b = round(i * hop), round((i + 1) * hop)
        seg = track[a:b]
        rms[i] = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if seg.size else 0.0
    active = rms[rms > 1e-4]
    if active.size == 0:
        return np.zeros(n_frames)
    ref = float(np.percentile(active, 90))
    opening = np.clip(rms / (ref + 1e-9), 0.0, 1.0) ** 0.7
    opening[rms <= 1e-4] = 0.0
    return opening


@dataclass
class Frames(Sequence[np.ndarray]):
    """RGB frames rendered on demand, so a long episode never sits in memory at once."""

    shots: list[tuple[tuple[str, ...], str]]
    openings: dict[str, np.ndarray]
    faces: dict[str, str]
    colors: dict[str, tuple[int, int, int]]
    width: int
    height: int
    title: str = ""
    on_frame: Callable[[int, int], None] | None = None

    @cached_property
    def _bases(self) -> dict[tuple[tuple[str, ...], str], tuple[np.ndarray, tuple[Panel, ...]]]:
        bases = {}
        for chars, kind in set(self.shots):
            panels = layout(chars, self.faces, self.width, self.height)
            img = np.full((self.height, self.width, 3), 28, np.uint8)
            panel_w = self.width // len(chars)
            for i, p in enumerate(panels):
                img[:, i * panel_w:(i + 1) * panel_w] = self.colors[p.character]
                x0, y0, x1, y1 = p.box
                img[y0:y1, x0:x1] = face(self.faces[p.character], x1 - x0).image
                scale = 0.45 if len(chars) > 2 else 0.55
                (tw, _), _ = cv2.getTextSize(p.character, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
                cv2.putText(img, p.character, ((x0 + x1 - tw) // 2, y1 + 15),
                            cv2.FONT_HERSHEY_SIMPLEX, scale, (250, 250, 250), 1, cv2.LINE_AA)
            if kind == "wide" and self.title:
                cv2.putText(img, self.title, (6, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                            (255, 255, 210), 1, cv2.LINE_AA)
            bases[(chars, kind)] = (img, panels)
        return bases

    def panels(self, i: int) -> tuple[Panel, ...]:
        return self._bases[self.shots[i]][1]

    def __len__(self) -> int:
        return len(self.shots)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        base, panels = self._bases[self.shots[i]]
        img = base.copy()
        for p in panels:
            x, y, w = p.mouth
            lip = face(self.faces[p.character]).lip
            draw_mouth(img, x, y, w, float(self.openings[p.character][i]), lip)
        if self.on_frame is not None:
            self.on_frame(i + 1, len(self))
        return img


def shot_list(frames: Frames, fps: int) -> list[Shot]:
    """Merge equal consecutive frames into shots (the truth the face tests check)."""
    out: list[Shot] = []
    start = 0
    for i in range(1, len(frames.shots) + 1):
        if i == len(frames.shots) or frames.shots[i] != frames.shots[start]:
            out.append(Shot(start / fps, i / fps, frames.shots[start][1], frames.panels(start)))
            start = i
    return out
