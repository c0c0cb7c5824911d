"""Zero-shot reference packs: a character's best few clips, laid out for the cloning models.

GPT-SoVITS, F5-TTS, CosyVoice and XTTS clone a voice from a 3-10 s prompt and its transcript,
with no training. The pack picks 3-10 kept train clips of the character: one per emotion
first (a prompt's emotion carries into the speech), then the cleanest of the rest, and writes
them in each model's own layout beside a ``manifest.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from voice_assets.atomic import atomic_dir
from voice_assets.dataset.exports import sovits_language, write_audio_at
from voice_assets.errors import VoiceAssetsError

PROMPT_MIN_S = 3.0
PROMPT_MAX_S = 10.0
# Each layout: folder -> sample rate of its WAVs.
LAYOUTS: dict[str, int] = {"gpt_sovits": 32_000, "f5_tts": 24_000, "cosyvoice": 16_000,
                           "xtts": 22_050}


@dataclass(frozen=True)
class Prompt:
    """One reference clip of the pack."""

    id: str
    text: str
    emotion: str | None
    duration_s: float
    snr_db: float
    source: str  # the clip's WAV in the dataset


class NotEnoughPrompts(VoiceAssetsError):
    """The character has fewer usable prompts than the pack needs."""


def choose_prompts(rows: pl.DataFrame, n: int = 5, least: int = 3) -> list[Prompt]:
    """The ``n`` best 3-10 s train clips with text: each emotion's cleanest first, then the
    cleanest of the rest (SNR, less residual music). Fails below ``least`` candidates."""
    if "split" in rows.columns:
        rows = rows.filter(pl.col("split") == "train")
    cand = rows.filter(pl.col("duration_s").is_between(PROMPT_MIN_S, PROMPT_MAX_S)
                       & (pl.col("text").str.strip_chars().str.len_chars() > 0)
                       & pl.col("audio_path").is_not_null())
    if cand.height < least:
        raise NotEnoughPrompts(
            f"{cand.height} kept train clips of {PROMPT_MIN_S:g}-{PROMPT_MAX_S:g} s with text; "
            f"a reference pack needs {least}")
    music = pl.col("residual_music").fill_null(0.0) if "residual_music" in cand.columns \
        else pl.lit(0.0)
    emotion = pl.col("emotion") if "emotion" in cand.columns else pl.lit(None, pl.Utf8)
    cand = (cand.with_columns((pl.col("snr_db").fill_null(0.0) - 20.0 * music).alias("_score"),
                              emotion.alias("_emotion"))
            .sort("_score", "id", descending=[True, False]))
    picked: list[dict] = []
    seen: set[str | None] = set()
    for r in cand.iter_rows(named=True):  # one per emotion, best first
        if r["_emotion"] not in seen:
            seen.add(r["_emotion"])
            picked.append(r)
    for r in cand.iter_rows(named=True):
        if len(picked) >= n:
            break
        if r not in picked:
            picked.append(r)
    picked = sorted(picked[:n], key=lambda r: -r["_score"])
    return [Prompt(r["id"], str(r["text"]).strip(), r["_emotion"], float(r["duration_s"]),
                   float(r["snr_db"] or 0.0), str(r["audio_path"])) for r in picked]


def write_pack(prompts: list[Prompt], target: Path, *, series: str, character: str,
               language: str | None) -> Path:
    """Write the pack into ``target`` (swapped in whole) and return its manifest path.

    Layouts: ``gpt_sovits/ref.wav`` + ``ref.json`` (prompt text and language, the other
    prompts as ``aux_ref_audio_paths``); ``f5_tts/ref.wav``, ``ref.txt`` and ``infer.toml``
    (``f5-tts_infer-cli -c``); ``cosyvoice/prompt.wav`` (16 kHz) + ``prompt.txt``;
    ``xtts/speaker_NN.wav`` (every prompt: XTTS averages its ``speaker_wav`` list).
    """
    if not prompts:
        raise NotEnoughPrompts("no prompts to write")
    lang = sovits_language(language) or "en"
    best = prompts[0]
    with atomic_dir(target) as tmp:
        for k, p in enumerate(prompts):
            write_audio_at(p.source, tmp / "prompts" / f"{k:02d}.wav", LAYOUTS["xtts"])
            (tmp / "prompts" / f"{k:02d}.txt").write_text(p.text + "\n", encoding="utf-8")
        sov = tmp / "gpt_sovits"
        write_audio_at(best.source, sov / "ref.wav", LAYOUTS["gpt_sovits"])
        aux = []
        for k, p in enumerate(prompts[1:], start=1):
            write_audio_at(p.source, sov / "aux" / f"{k:02d}.wav", LAYOUTS["gpt_sovits"])
            aux.append(f"aux/{k:02d}.wav")
        (sov / "ref.json").write_text(json.dumps(
            {"ref_audio_path": "ref.wav", "prompt_text": best.text, "prompt_lang": lang,
             "aux_ref_audio_paths": aux}, ensure_ascii=False, indent=1), encoding="utf-8")
        f5 = tmp / "f5_tts"
        write_audio_at(best.source, f5 / "ref.wav", LAYOUTS["f5_tts"])
        (f5 / "ref.txt").write_text(best.text + "\n", encoding="utf-8")
        (f5 / "infer.toml").write_text(
            f'ref_audio = "ref.wav"\nref_text = {json.dumps(best.text, ensure_ascii=False)}\n',
            encoding="utf-8")
        cosy = tmp / "cosyvoice"
        write_audio_at(best.source, cosy / "prompt.wav", LAYOUTS["cosyvoice"])
        (cosy / "prompt.txt").write_text(best.text + "\n", encoding="utf-8")
        for k, p in enumerate(prompts):
            write_audio_at(p.source, tmp / "xtts" / f"speaker_{k:02d}.wav", LAYOUTS["xtts"])
        (tmp / "manifest.json").write_text(json.dumps(
            {"series": series, "character": character, "language": lang, "trainer": "reference",
             "layouts": {k: f"{k}/" for k in LAYOUTS},
             "prompts": [asdict(p) for p in prompts]}, ensure_ascii=False, indent=1),
            encoding="utf-8")
    return Path(target) / "manifest.json"
