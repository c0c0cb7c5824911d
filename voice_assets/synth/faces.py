"""Character faces for demo videos, with a known mouth so it can open in time with speech.

Drawn faces are built from shaded ellipses in the proportions frontal-face detectors expect
(dlib HOG and OpenCV Haar both find them); 'grace' is Grace Hopper's public-domain US Navy
portrait that ships with matplotlib, so at least one face is a real photograph.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

BASE = 240  # portraits are drawn square at this size and scaled per shot


@dataclass(frozen=True)
class Face:
    """A square RGB portrait and where its mouth is (pixels in the portrait)."""

    image: np.ndarray
    mouth_x: float
    mouth_y: float
    mouth_w: float
    lip: tuple[int, int, int]

    def scaled(self, size: int) -> Face:
        k = size / self.image.shape[0]
        img = cv2.resize(self.image, (size, size), interpolation=cv2.INTER_AREA)
        return Face(img, self.mouth_x * k, self.mouth_y * k, self.mouth_w * k, self.lip)


@dataclass(frozen=True)
class _Look:
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    bg: tuple[int, int, int]
    iris: tuple[int, int, int]
    lip: tuple[int, int, int]
    hair_style: str  # "short", "long", "none"
    shirt: tuple[int, int, int] = (40, 50, 70)
    width: float = 1.0
    beard: bool = False
    metal: bool = False
    # Geometry, so drawn faces also differ to face-identity models, not only in colour.
    eye_gap: int = 26  # half the distance between the eyes
    eye_y: int = -18  # eye line relative to the face centre
    eye_size: float = 1.0
    face_h: int = 84
    nose: tuple[int, int] = (9, 22)  # half width, tip below the centre
    mouth_y: int = 42
    mouth_w: int = 20
    glasses: bool = False


_LOOKS: dict[str, _Look] = {
    "joe": _Look(skin=(205, 160, 125), hair=(70, 45, 30), bg=(70, 110, 170),
                 iris=(60, 90, 140), lip=(170, 80, 80), hair_style="short"),
    "rex": _Look(skin=(140, 95, 65), hair=(25, 20, 20), bg=(80, 140, 90),
                 iris=(50, 35, 25), lip=(120, 60, 55), hair_style="short", width=1.12,
                 beard=True, shirt=(170, 60, 40), eye_gap=29, eye_y=-20, nose=(12, 24),
                 mouth_w=22, face_h=88),
    "robo": _Look(skin=(175, 180, 190), hair=(90, 95, 110), bg=(120, 120, 130),
                  iris=(40, 120, 200), lip=(70, 70, 90), hair_style="none", metal=True,
                  shirt=(60, 60, 70), glasses=True, eye_size=1.2, eye_gap=28, face_h=78,
                  mouth_y=38),
    "mia": _Look(skin=(235, 195, 165), hair=(150, 80, 40), bg=(150, 90, 110),
                 iris=(60, 120, 60), lip=(190, 70, 90), hair_style="long", width=0.95,
                 shirt=(200, 190, 90), eye_gap=24, eye_size=1.15, nose=(7, 18), mouth_w=17,
                 face_h=80, mouth_y=38),
}


def _shade(c: tuple[int, int, int], k: float) -> tuple[float, float, float]:
    return (c[0] * k, c[1] * k, c[2] * k)


def _draw(look: _Look, seed: int) -> Face:
    """A frontal face: darker eye sockets and brows over a lighter nose bridge, as detectors
    (Haar features, HOG gradients) expect. Drawn faces stay close to each other for face
    identity models (dlib ResNet distance 0.35-0.55, under its 0.6 threshold); only the photo
    is far from all (0.7-0.8)."""
    size = BASE
    im: np.ndarray = np.zeros((size, size, 3), np.float32)
    im[:] = look.bg
    cx, cy = size // 2, size // 2 + 8
    fw, fh = int(64 * look.width), look.face_h
    cv2.rectangle(im, (cx - 26, cy + 50), (cx + 26, size), _shade(look.skin, 0.8), -1)
    cv2.ellipse(im, (cx, size + 38), (100, 64), 0, 180, 360, look.shirt, -1)  # shoulders
    cv2.ellipse(im, (cx, cy + 84), (26, 14), 0, 0, 180, _shade(look.skin, 0.8), -1)  # collar
    if look.hair_style == "long":
        cv2.ellipse(im, (cx, cy + 10), (fw + 20, fh + 25), 0, 180, 360, look.hair, -1)
        cv2.rectangle(im, (cx - fw - 20, cy + 10), (cx + fw + 20, cy + 85), look.hair, -1)
    elif look.hair_style == "short":
        cv2.ellipse(im, (cx, cy - 15), (fw + 12, fh + 5), 0, 180, 360, look.hair, -1)
    cv2.ellipse(im, (cx, cy), (fw, fh), 0, 0, 360, look.skin, -1)
    for s in (-1, 1):
        cv2.ellipse(im, (cx + s * fw, cy), (10, 18), 0, 0, 360, _shade(look.skin, 0.9), -1)
    if look.hair_style in ("short", "long"):
        cv2.ellipse(im, (cx, cy - fh + 20), (fw + 2, 35), 0, 180, 360, look.hair, -1)
    if look.metal:
        cv2.line(im, (cx - fw + 8, cy - 50), (cx + fw - 8, cy - 50), _shade(look.skin, 0.7), 3)
        cv2.circle(im, (cx, cy - fh + 4), 6, (220, 60, 60), -1)  # antenna light
    ey, ex = cy + look.eye_y, look.eye_gap
    k = look.eye_size
    for s in (-1, 1):
        c = (cx + s * ex, ey)
        cv2.ellipse(im, c, (round(18 * k), round(10 * k)), 0, 0, 360, _shade(look.skin, 0.75), -1)
        cv2.ellipse(im, c, (round(12 * k), round(6 * k)), 0, 0, 360, (240, 240, 240), -1)
        cv2.circle(im, c, round(5 * k), look.iris, -1)
        cv2.circle(im, c, 2, (15, 15, 15), -1)
        cv2.ellipse(im, (c[0], ey - round(14 * k)), (16, 5), 0, 180, 360, look.hair, 4)
        if look.glasses:
            cv2.circle(im, c, round(17 * k), (30, 30, 30), 3)
    if look.glasses:
        cv2.line(im, (cx - ex + round(17 * k), ey), (cx + ex - round(17 * k), ey), (30, 30, 30), 3)
    nw, nl = look.nose
    nose = np.array([[cx, ey + 2], [cx - nw, cy + nl], [cx + nw, cy + nl]], np.int32)
    cv2.fillPoly(im, [nose], _shade(look.skin, 0.88))
    cv2.ellipse(im, (cx, cy + nl), (nw + 1, 4), 0, 0, 360, _shade(look.skin, 0.6), -1)
    mouth_y = cy + look.mouth_y
    if look.beard:
        cv2.ellipse(im, (cx, mouth_y + 6), (40, 30), 0, 0, 180, _shade(look.hair, 1.2), -1)
        cv2.ellipse(im, (cx, mouth_y - 6), (26, 7), 0, 180, 360, _shade(look.hair, 1.2), -1)
    cv2.ellipse(im, (cx, mouth_y), (look.mouth_w, 5), 0, 0, 360, look.lip, -1)
    soft = np.asarray(cv2.GaussianBlur(im, (0, 0), 1.8), np.float64)
    soft += np.random.default_rng(seed).normal(0.0, 3.0, soft.shape)  # sensor-like grain
    img = np.clip(soft, 0, 255).astype(np.uint8)
    return Face(img, float(cx), float(mouth_y), 2.0 * look.mouth_w, look.lip)


def _grace() -> Face:
    """Grace Hopper's portrait (matplotlib sample data), cropped square around the face."""
    import matplotlib.cbook

    path = Path(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{path}: matplotlib's sample portrait is missing or unreadable")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    # Crop 360 px square; dlib's 68 landmarks put the lips at x 233-300, y 271-289.
    x0, y0, side = 90, 60, 360
    crop = np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side])
    k = BASE / side
    img = cv2.resize(crop, (BASE, BASE), interpolation=cv2.INTER_AREA)
    return Face(img, (266.5 - x0) * k, (280 - y0) * k, 67 * k, (150, 85, 85))


FACES = ("joe", "grace", "rex", "robo", "mia")


@lru_cache(maxsize=64)
def face(key: str, size: int = BASE) -> Face:
    """The portrait for ``key`` at ``size`` x ``size`` pixels."""
    if key == "grace":
        base = _grace()
    elif key in _LOOKS:
        base = _draw(_LOOKS[key], seed=FACES.index(key))
    else:
        raise ValueError(f"unknown face '{key}'; known faces: {', '.join(FACES)}")
    return base if size == BASE else base.scaled(size)


def draw_mouth(frame: np.ndarray, x: float, y: float, width: float, opening: float,
               lip: tuple[int, int, int]) -> None:
    """Open the mouth at (x, y) by ``opening`` (0 closed .. 1 wide), in place.

    The open mouth is a dark cavity framed by lips whose height follows the speech envelope,
    so the mouth region changes while a character talks and stays still otherwise.
    """
    if opening <= 0.02:
        return
    w = width * (0.5 - 0.06 * opening)
    h = max(1.0, width * 0.32 * opening)
    centre = (round(x * 4), round((y + h * 0.25) * 4))
    axes_lip = (round((w + 2) * 4), round((h + 2) * 4))
    axes = (round(w * 4), round(h * 4))
    cv2.ellipse(frame, centre, axes_lip, 0, 0, 360, lip, -1, cv2.LINE_AA, 2)
    cv2.ellipse(frame, centre, axes, 0, 0, 360, (45, 15, 20), -1, cv2.LINE_AA, 2)
    if opening > 0.35:  # upper teeth
        teeth = (round(w * 0.7 * 4), round(h * 0.35 * 4))
        top = (centre[0], centre[1] - round(h * 0.55 * 4))
        cv2.ellipse(frame, top, teeth, 0, 0, 180, (225, 225, 215), -1, cv2.LINE_AA, 2)
