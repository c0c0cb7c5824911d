"""Per-series exports in the formats voice trainers read, each within that trainer's limits.

Layout under ``<exports>/<series>/`` (every folder is built aside and swapped in whole):

- ``dataset/``: ``{train,validation,test}.parquet`` (the fused schema; ``audio_path`` relative
  to this folder) and ``wavs/`` at the dataset rate.
- ``hf/``: a ``datasets.DatasetDict`` (``save_to_disk``; splits with no clips are left out)
  with an ``Audio`` column holding the WAV bytes, plus ``source`` = character (the column
  Orpheus fine-tuning reads).
- ``ljspeech/<character>/``: ``metadata.csv`` (train), ``metadata_val.csv``,
  ``metadata_test.csv`` as ``id|text|normalized text`` and ``wavs/`` at 22.05 kHz (Coqui VITS
  and XTTS).
- ``gpt_sovits/<character>/<character>.list``: ``path|speaker|language|text`` (train only).
- ``rvc/<character>/*.wav``: train clips at the RVC rate (no transcript needed).
- ``f5_tts/<character>/metadata.csv``: ``audio_file|text`` with a header, ``wavs/`` at 24 kHz.

Trainers without a validation list (GPT-SoVITS, RVC, F5) get the train split only, so the
validation and test clips stay unseen for evaluation with the other exports.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import soundfile as sf

from voice_assets.atomic import atomic_dir
from voice_assets.dataset.prosody import resample
from voice_assets.episode_keys import slug
from voice_assets.paths import component
from voice_assets.progress import Progress, silent

FUSED_COLUMNS = ("id", "episode", "series", "character", "character_source", "speaker", "start",
                 "end", "duration_s", "text", "language", "emotion", "emotion_confidence",
                 "emotion_source", "split", "group", "audio_path", "sample_rate", "snr_db",
                 "residual_music", "clipping_ratio")


@dataclass(frozen=True)
class TrainerLimits:
    """What one trainer accepts; clips outside are left out of that trainer's export only."""

    name: str
    sample_rate: int | None  # None: the dataset rate
    min_s: float
    max_s: float
    max_text_chars: int | None = None
    needs_text: bool = True
    languages: frozenset[str] | None = None
    splits: tuple[str, ...] = ("train",)


# Sources: Coqui XTTS GPT trainer (max_wav_length 255995 samples at 22.05 kHz = 11.6 s,
# max_text_length 200); GPT-SoVITS (slices of at most ~10 s; zh/ja/en/ko/yue); RVC (any
# length, it re-slices; text unused); F5-TTS (24 kHz, <= 30 s per sample).
LIMITS: dict[str, TrainerLimits] = {
    "dataset": TrainerLimits("dataset", None, 1.0, 15.0, splits=("train", "validation", "test")),
    "hf": TrainerLimits("hf", None, 1.0, 15.0, splits=("train", "validation", "test")),
    "ljspeech": TrainerLimits("ljspeech", 22_050, 1.0, 11.6, 200,
                              splits=("train", "validation", "test")),
    "gpt_sovits": TrainerLimits("gpt_sovits", 32_000, 1.0, 10.0,
                                languages=frozenset({"zh", "ja", "en", "ko", "yue"})),
    "rvc": TrainerLimits("rvc", 44_100, 1.0, 15.0, needs_text=False),
    "f5_tts": TrainerLimits("f5_tts", 24_000, 1.0, 30.0),
}
FORMATS = tuple(LIMITS)
RVC_RATES = (40_000, 44_100, 48_000)

EXPORT_SCHEMA: dict[str, pl.DataType] = {
    "series": pl.Utf8(), "format": pl.Utf8(), "character": pl.Utf8(), "split": pl.Utf8(),
    "n_clips": pl.Int64(), "minutes": pl.Float64(), "sample_rate": pl.Int64(),
    "path": pl.Utf8(),
}
EXPORT_DESCRIPTIONS: dict[str, str] = {
    "series": "Series slug.",
    "format": "Export format: " + ", ".join(FORMATS) + ".",
    "character": "Character of the clips.",
    "split": "Split of the clips (formats without held-out splits export train only).",
    "n_clips": "Clips exported for this series, format, character and split.",
    "minutes": "Minutes of audio in those clips.",
    "sample_rate": "Sample rate of the exported audio, Hz.",
    "path": "Folder of the export.",
}


def clean_text(text: str | None) -> str:
    """One line, no field separators: trainers split these files on '|' and newlines."""
    return re.sub(r"\s+", " ", (text or "").replace("|", " ")).strip()


def character_dirs(characters: Iterable[str]) -> dict[str, str]:
    """A distinct, filesystem-safe folder name per character (slug, hashed on collision)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for c in sorted(set(characters)):
        name = slug(c)
        if name in used:
            import hashlib

            name = f"{name}-{hashlib.sha1(c.encode()).hexdigest()[:6]}"
        used.add(name)
        out[c] = name
    return out


def eligible(rows: pl.DataFrame, limits: TrainerLimits) -> pl.DataFrame:
    """The rows this trainer accepts (split, duration, text and language limits)."""
    df = rows.filter(pl.col("split").is_in(list(limits.splits))
                     & pl.col("duration_s").is_between(limits.min_s, limits.max_s))
    if limits.needs_text:
        df = df.filter(pl.col("text").map_elements(clean_text, return_dtype=pl.Utf8) != "")
    if limits.max_text_chars is not None:
        df = df.filter(pl.col("text").map_elements(lambda t: len(clean_text(t)),
                                                   return_dtype=pl.Int64) <= limits.max_text_chars)
    if limits.languages is not None:
        df = df.filter(pl.col("language").map_elements(sovits_language, return_dtype=pl.Utf8)
                       .is_in(list(limits.languages)))
    return df


def sovits_language(code: str | None) -> str | None:
    c = (code or "").casefold().split("-")[0].split("_")[0]
    return {"jp": "ja", "cn": "zh", "cmn": "zh", "kr": "ko"}.get(c, c) or None


def dataset_rows(clips: pl.DataFrame, splits: pl.DataFrame,
                 emotion: pl.DataFrame | None) -> pl.DataFrame:
    """Kept clips with their split and emotion: the fused rows every export writes."""
    emotion = emotion if emotion is not None else pl.DataFrame(schema={"id": pl.Utf8})
    emo_cols = [c for c in ("emotion", "emotion_confidence", "emotion_source", "emotion_reason")
                if c in emotion.columns]
    rows = clips.filter(pl.col("keep")).join(
        splits.select("id", "group", "split", "split_reason", "duplicate_of"), on="id",
        how="inner")
    if emo_cols:
        # Emotion is per utterance; a long utterance cut into several clips shares it.
        key = "utterance_id" if "utterance_id" in rows.columns else "id"
        rows = rows.join(emotion.select(pl.col("id").alias(key), *emo_cols), on=key, how="left")
    else:
        rows = rows.with_columns(pl.lit(None, dtype=pl.Utf8).alias("emotion"))
    return rows


def write_audio_at(src: str, dst: Path, rate: int) -> None:
    """Write a clip as 16-bit mono at ``rate``; hard-link the source file when it already is
    (copy where a link cannot be made)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    info = sf.info(src)
    if info.samplerate == rate and info.channels == 1 and info.subtype == "PCM_16":
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        return
    x, sr = sf.read(src, dtype="float64", always_2d=False)
    y = resample(x, sr, rate)
    sf.write(dst, np.clip(y, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")


def _summary(series: str, fmt: str, df: pl.DataFrame, rate: int,
             path: Path) -> list[dict[str, Any]]:
    out = []
    for (character, split), g in sorted(df.group_by("character", "split"),
                                        key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        out.append({"series": series, "format": fmt, "character": character, "split": split,
                    "n_clips": g.height, "minutes": float(g["duration_s"].sum()) / 60.0,
                    "sample_rate": rate, "path": str(path)})
    return out


def export_series(rows: pl.DataFrame, root: str | Path, series: str,
                  formats: Iterable[str] = FORMATS, dataset_rate: int = 44_100,
                  rvc_rate: int = 44_100, progress: Progress = silent) -> pl.DataFrame:
    """Write every requested format for one series; return the EXPORT_SCHEMA summary.

    ``rows``: kept clips of the series with their split, emotion and clip ``audio_path``.
    """
    if rvc_rate not in RVC_RATES:
        raise ValueError(f"RVC sample rate must be one of {RVC_RATES}, not {rvc_rate}")
    missing = [p for p in rows["audio_path"].to_list() if not p or not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} clip files are missing, e.g. {missing[0]}; "
                                "re-materialize `clips` for their episodes")
    root = Path(root) / component(series, "series")
    rows = rows.filter(pl.col("series") == series).sort("id")
    dirs = character_dirs(rows["character"].to_list())
    writers: dict[str, Callable[..., list[dict[str, Any]]]] = {
        "dataset": _export_parquet, "hf": _export_hf, "ljspeech": _export_ljspeech,
        "gpt_sovits": _export_sovits, "rvc": _export_rvc, "f5_tts": _export_f5,
    }
    summary: list[dict[str, Any]] = []
    formats = list(formats)
    for done, fmt in enumerate(formats):
        if fmt not in writers:
            raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
        limits = LIMITS[fmt]
        rate = rvc_rate if fmt == "rvc" else (limits.sample_rate or dataset_rate)
        df = eligible(rows, limits)
        target = root / fmt
        with atomic_dir(target) as tmp:
            summary += writers[fmt](df, tmp, target, series, rate, dirs)
        progress("exports", done + 1, len(formats))
    return pl.DataFrame(summary, schema=EXPORT_SCHEMA)


def _fused(df: pl.DataFrame) -> pl.DataFrame:
    return df.select([c for c in FUSED_COLUMNS if c in df.columns])


def _export_parquet(df: pl.DataFrame, tmp: Path, final: Path, series: str, rate: int,
                    dirs: dict[str, str]) -> list[dict[str, Any]]:
    rel = [f"wavs/{i}.wav" for i in df["id"]]
    for src, r in zip(df["audio_path"], rel, strict=True):
        write_audio_at(src, tmp / r, rate)
    out = _fused(df.with_columns(pl.Series("audio_path", rel, dtype=pl.Utf8),
                                 pl.lit(rate).cast(pl.Int64).alias("sample_rate")))
    for split in LIMITS["dataset"].splits:
        out.filter(pl.col("split") == split).write_parquet(tmp / f"{split}.parquet")
    return _summary(series, "dataset", df, rate, final)


def _export_hf(df: pl.DataFrame, tmp: Path, final: Path, series: str, rate: int,
               dirs: dict[str, str]) -> list[dict[str, Any]]:
    """A DatasetDict with one Dataset per non-empty split (datasets cannot reload an empty
    split it saved). The audio column is built as Arrow {bytes, path} structs and cast to
    ``Audio``, which needs no audio encoder at write time."""
    import datasets

    scratch = tmp / ".wavs"
    meta = _fused(df).drop("audio_path", "sample_rate")
    features = {c: _hf_value(meta.schema[c]) for c in meta.columns}
    features["source"] = datasets.Value("string")
    features["audio"] = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    parts = {}
    for split in LIMITS["hf"].splits:
        sub = df.filter(pl.col("split") == split)
        if sub.is_empty():
            continue
        audio = []
        for i, src in zip(sub["id"], sub["audio_path"], strict=True):
            dst = scratch / f"{i}.wav"
            write_audio_at(src, dst, rate)
            audio.append({"bytes": dst.read_bytes(), "path": f"{i}.wav"})
        data = meta.filter(pl.col("split") == split).to_dict(as_series=False)
        data["source"] = sub["character"].to_list()
        data["audio"] = audio
        parts[split] = datasets.Dataset.from_dict(
            data, features=datasets.Features(features)).cast_column(
            "audio", datasets.Audio(sampling_rate=rate))
    shutil.rmtree(scratch, ignore_errors=True)
    datasets.DatasetDict(parts).save_to_disk(str(tmp))
    return _summary(series, "hf", df, rate, final)


def _hf_value(dtype: pl.DataType) -> Any:
    import datasets

    if dtype == pl.Float64:
        return datasets.Value("float64")
    if dtype == pl.Int64:
        return datasets.Value("int64")
    if dtype == pl.Boolean:
        return datasets.Value("bool")
    return datasets.Value("string")


def _export_ljspeech(df: pl.DataFrame, tmp: Path, final: Path, series: str, rate: int,
                     dirs: dict[str, str]) -> list[dict[str, Any]]:
    files = {"train": "metadata.csv", "validation": "metadata_val.csv", "test": "metadata_test.csv"}
    for character, g in df.group_by("character"):
        folder = tmp / dirs[str(character[0])]
        lines: dict[str, list[str]] = {s: [] for s in files}
        for r in g.sort("id").iter_rows(named=True):
            write_audio_at(r["audio_path"], folder / "wavs" / f"{r['id']}.wav", rate)
            text = clean_text(r["text"])
            lines[r["split"]].append(f"{r['id']}|{text}|{text}")
        for split, name in files.items():
            (folder / name).write_text("".join(f"{line}\n" for line in lines[split]),
                                       encoding="utf-8")
    return _summary(series, "ljspeech", df, rate, final)


def _export_sovits(df: pl.DataFrame, tmp: Path, final: Path, series: str, rate: int,
                   dirs: dict[str, str]) -> list[dict[str, Any]]:
    for character, g in df.group_by("character"):
        name = dirs[str(character[0])]
        lines = []
        for r in g.sort("id").iter_rows(named=True):
            write_audio_at(r["audio_path"], tmp / name / "wavs" / f"{r['id']}.wav", rate)
            # The list holds the final (absolute) path: GPT-SoVITS opens it as written.
            wav = final / name / "wavs" / f"{r['id']}.wav"
            lines.append(f"{wav}|{name}|{sovits_language(r['language'])}|{clean_text(r['text'])}")
        (tmp / name / f"{name}.list").write_text("".join(f"{x}\n" for x in lines),
                                                 encoding="utf-8")
    return _summary(series, "gpt_sovits", df, rate, final)


def _export_rvc(df: pl.DataFrame, tmp: Path, final: Path, series: str, rate: int,
                dirs: dict[str, str]) -> list[dict[str, Any]]:
    for r in df.iter_rows(named=True):
        write_audio_at(r["audio_path"], tmp / dirs[r["character"]] / f"{r['id']}.wav", rate)
    return _summary(series, "rvc", df, rate, final)


def _export_f5(df: pl.DataFrame, tmp: Path, final: Path, series: str, rate: int,
               dirs: dict[str, str]) -> list[dict[str, Any]]:
    for character, g in df.group_by("character"):
        folder = tmp / dirs[str(character[0])]
        lines = ["audio_file|text"]
        for r in g.sort("id").iter_rows(named=True):
            write_audio_at(r["audio_path"], folder / "wavs" / f"{r['id']}.wav", rate)
            lines.append(f"wavs/{r['id']}.wav|{clean_text(r['text'])}")
        (folder / "metadata.csv").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return _summary(series, "f5_tts", df, rate, final)


# ------------------------------------------------------------------------------ readers


def read_hf_audio(example_audio: Any) -> tuple[np.ndarray, int]:
    """Decode one HF ``audio`` value: a torchcodec decoder when datasets decodes, else the
    stored ``{"bytes", "path"}`` (read with soundfile)."""
    if isinstance(example_audio, dict):
        data, sr = sf.read(io.BytesIO(example_audio["bytes"]), dtype="float32")
        return data, int(sr)
    samples = example_audio.get_all_samples()
    return samples.data.numpy().mean(axis=0), int(samples.sample_rate)
