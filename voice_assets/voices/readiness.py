"""Is a character's data enough to train a voice on? Per trainer, before any training runs.

Each trainer has a published floor below which its guides say the result is not worth having;
a character under it is reported with the reasons (so a user knows whom to label more) and is
not trained unless a person forces it. Figures come from the dataset rows (kept clips with
their split and emotion) and the clips' own pitch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import soundfile as sf

from voice_assets.dataset.prosody import f0_track


@dataclass(frozen=True)
class TrainerMinimum:
    """The least data a trainer is run on (train split unless said otherwise)."""

    trainer: str
    minutes: float
    clips: int
    validation_clips: int  # held-out clips to judge the model on
    emotions: int  # distinct emotions heard in the train split
    pitch_range_st: float  # 10th-90th percentile spread of the clips' median pitch
    median_snr_db: float
    guide: str  # where the floor comes from


# Floors from the trainers' own guides: zero-shot references need 3-10 s of clean speech each
# (XTTS: one 6 s clip; GPT-SoVITS: a 3-10 s prompt; F5-TTS: under 12 s); GPT-SoVITS
# fine-tunes "with 1 minute of training data"; RVC's guide asks for 10 minutes or more of
# clean speech; piper fine-tuning from a base checkpoint works from a few hundred lines
# (about 10 minutes; training from scratch needs an hour or more).
MINIMUMS: dict[str, TrainerMinimum] = {
    "reference": TrainerMinimum("reference", 0.25, 3, 0, 1, 0.0, 15.0,
                                "3-10 s clean prompts (XTTS, GPT-SoVITS, F5-TTS, CosyVoice)"),
    "gpt-sovits": TrainerMinimum("gpt-sovits", 1.0, 20, 2, 1, 2.0, 15.0,
                                 "GPT-SoVITS few-shot fine-tuning: 1 minute"),
    "piper": TrainerMinimum("piper", 10.0, 100, 5, 2, 2.0, 20.0,
                            "piper fine-tuning from a base checkpoint: ~10 minutes"),
    "rvc": TrainerMinimum("rvc", 10.0, 50, 0, 1, 2.0, 20.0, "RVC: 10 minutes of clean speech"),
}

READINESS_SCHEMA: dict[str, pl.DataType] = {
    "series": pl.Utf8(), "character": pl.Utf8(), "trainer": pl.Utf8(), "ready": pl.Boolean(),
    "reasons": pl.List(pl.Utf8()), "train_minutes": pl.Float64(), "train_clips": pl.Int64(),
    "validation_clips": pl.Int64(), "emotions": pl.Int64(), "pitch_range_st": pl.Float64(),
    "median_snr_db": pl.Float64(), "guide": pl.Utf8(),
}
READINESS_DESCRIPTIONS: dict[str, str] = {
    "series": "Series slug.",
    "character": "Series character.",
    "trainer": "Voice trainer the row judges the data for: " + ", ".join(MINIMUMS) + ".",
    "ready": "Whether the character's data meets every floor of this trainer.",
    "reasons": "Each floor the data misses, with the figure and the floor (empty: ready).",
    "train_minutes": "Minutes of kept train-split clips.",
    "train_clips": "Kept train-split clips.",
    "validation_clips": "Kept validation-split clips (held out to judge the model).",
    "emotions": "Distinct emotions among the train clips.",
    "pitch_range_st": "Spread of the train clips' median pitch, 10th to 90th percentile, "
    "semitones (small: monotone data).",
    "median_snr_db": "Median blind SNR of the train clips, dB.",
    "guide": "Where the trainer's floors come from.",
}


@dataclass(frozen=True)
class DataFigures:
    """What a character's dataset holds, as the floors measure it."""

    train_minutes: float
    train_clips: int
    validation_clips: int
    emotions: int
    pitch_range_st: float
    median_snr_db: float


def pitch_range_st(median_f0_hz: Sequence[float]) -> float:
    """10th-90th percentile spread of per-clip median pitch, semitones (0: under 2 clips)."""
    f0 = np.asarray([f for f in median_f0_hz if f and f > 0], dtype=float)
    if f0.size < 2:
        return 0.0
    lo, hi = np.percentile(f0, [10, 90])
    return float(12.0 * np.log2(hi / lo))


def figures(rows: pl.DataFrame, pitch_of: Callable[[str], float],
            pitch_clips: int = 60) -> DataFigures:
    """The figures of one character's dataset rows; ``pitch_of`` reads a clip's pitch, for
    at most ``pitch_clips`` train clips spread evenly over them (the counts use them all)."""
    train = rows.filter(pl.col("split") == "train")
    emotions = {e for e in (train["emotion"].to_list() if "emotion" in train.columns else [])
                if e}
    snr = train["snr_db"].drop_nulls().to_numpy() if train.height else np.zeros(0)
    paths = [p for p in train["audio_path"].to_list() if p] if train.height else []
    step = max(1, int(np.ceil(len(paths) / max(pitch_clips, 1))))
    return DataFigures(
        train_minutes=float(train["duration_s"].sum()) / 60.0 if train.height else 0.0,
        train_clips=train.height,
        validation_clips=rows.filter(pl.col("split") == "validation").height,
        emotions=max(len(emotions), 1 if train.height else 0),
        pitch_range_st=pitch_range_st([pitch_of(p) for p in paths[::step]]),
        median_snr_db=float(np.median(snr)) if snr.size else 0.0,
    )


def shortfalls(fig: DataFigures, floor: TrainerMinimum) -> list[str]:
    """Each floor the figures miss, said with both numbers ([] when ready)."""
    out = []
    if fig.train_minutes < floor.minutes:
        out.append(f"{fig.train_minutes:.1f} of {floor.minutes:g} train minutes")
    if fig.train_clips < floor.clips:
        out.append(f"{fig.train_clips} of {floor.clips} train clips")
    if fig.validation_clips < floor.validation_clips:
        out.append(f"{fig.validation_clips} of {floor.validation_clips} validation clips")
    if fig.emotions < floor.emotions:
        out.append(f"{fig.emotions} of {floor.emotions} emotions")
    if fig.pitch_range_st < floor.pitch_range_st:
        out.append(f"pitch spread {fig.pitch_range_st:.1f} of {floor.pitch_range_st:g} "
                   "semitones")
    if fig.median_snr_db < floor.median_snr_db:
        out.append(f"median SNR {fig.median_snr_db:.1f} of {floor.median_snr_db:g} dB")
    return out


def readiness_table(per_character: dict[tuple[str, str], DataFigures],
                    trainers: Sequence[str] = tuple(MINIMUMS)) -> pl.DataFrame:
    """One row per series, character and trainer: ready or not, and why."""
    rows = []
    for (series, character), fig in sorted(per_character.items()):
        for name in trainers:
            floor = MINIMUMS[name]
            missing = shortfalls(fig, floor)
            rows.append({"series": series, "character": character, "trainer": name,
                         "ready": not missing, "reasons": missing,
                         "train_minutes": round(fig.train_minutes, 3),
                         "train_clips": fig.train_clips,
                         "validation_clips": fig.validation_clips, "emotions": fig.emotions,
                         "pitch_range_st": round(fig.pitch_range_st, 2),
                         "median_snr_db": round(fig.median_snr_db, 1), "guide": floor.guide})
    return pl.DataFrame(rows, schema=READINESS_SCHEMA)


def median_f0(path: str) -> float:
    """The median pitch of a clip's voiced frames, Hz (0 when nothing is voiced): the pitch
    spread across a character's clips is one of the readiness figures."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    f0 = f0_track(x, sr)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else 0.0
