"""Cut every utterance out of the vocal stem as a clean, loudness-normalised dataset clip.

One clip per utterance, keep or reject, and rejected clips stay in the table with the gates they
failed, so the numbers in a dataset card can be traced back and a gate can be re-tuned without
re-listening. Clipping is measured on the original mixture and stem samples before any gain is
applied (normalisation would hide nothing but denoising/resampling would smear flat tops).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyloudnorm
import scipy.ndimage
import scipy.signal
import soundfile as sf

from voice_assets.atomic import write_wav
from voice_assets.dataset.fingerprint import fingerprint
from voice_assets.dataset.prosody import resample
from voice_assets.dataset.quality import (
    QualityGates,
    bandwidth_hz,
    clipping_ratio,
    level_db,
    reject_reasons,
    residual_music_score,
    source_bandwidth_gate,
    wada_snr,
)
from voice_assets.episode_keys import EPISODE_COLUMN, SERIES_COLUMN, series_of
from voice_assets.errors import MediaError
from voice_assets.progress import Progress, silent
from voice_assets.speech.fusion import word_is_overlapped
from voice_assets.speech.japanese import join_words

MIN_DATASET_SR = 16_000


@dataclass(frozen=True)
class ClipConfig:
    """How clips are cut and which gates they must pass."""

    sample_rate: int = 44_100
    pad_s: float = 0.15  # context read around the utterance before trimming silence
    keep_margin_s: float = 0.05  # silence kept at each end after trimming
    trim_top_db: float = 40.0
    target_lufs: float = -23.0
    peak_ceiling_dbfs: float = -1.0
    denoise: bool = False
    scene_gap_s: float = 4.0  # a pause this long starts a new scene
    scene_cut_pause_s: float = 1.5  # ...and one this long with a shot cut in it
    gates: QualityGates = field(default_factory=QualityGates)

    def __post_init__(self) -> None:
        if self.sample_rate < MIN_DATASET_SR:
            raise ValueError(
                f"dataset sample_rate {self.sample_rate} Hz is below {MIN_DATASET_SR} Hz: "
                "no voice trainer we export for works from narrower audio"
            )


CLIP_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(), "utterance_id": pl.Utf8(), "episode": pl.Utf8(), "series": pl.Utf8(),
    "speaker": pl.Utf8(), "character": pl.Utf8(), "character_source": pl.Utf8(),
    "start": pl.Float64(), "end": pl.Float64(),
    "clip_start": pl.Float64(), "clip_end": pl.Float64(), "duration_s": pl.Float64(),
    "text": pl.Utf8(), "language": pl.Utf8(), "text_source": pl.Utf8(), "overlap": pl.Boolean(),
    "overlap_s": pl.Float64(), "overlap_cut_s": pl.Float64(),
    "scene": pl.Utf8(), "audio_path": pl.Utf8(), "sample_rate": pl.Int64(),
    "source_lufs": pl.Float64(), "loudness_lufs": pl.Float64(), "peak_dbfs": pl.Float64(),
    "clipping_ratio": pl.Float64(), "snr_db": pl.Float64(), "bandwidth_hz": pl.Float64(),
    "residual_music": pl.Float64(), "background_rel_db": pl.Float64(),
    "keep": pl.Boolean(), "reject_reason": pl.Utf8(), "reject_reasons": pl.List(pl.Utf8()),
    "fingerprint": pl.List(pl.Int64()),
}
CLIP_DESCRIPTIONS: dict[str, str] = {
    "id": "Clip id `<episode>_<start_ms:08d>` (a long utterance cut in pieces gives several).",
    "utterance_id": "The utterance the clip was cut from (utterances.id).",
    "episode": EPISODE_COLUMN,
    "series": SERIES_COLUMN,
    "speaker": "Diarization speaker of the utterance.",
    "character": "Who the clip belongs to: the series character, else `<episode>:<speaker>`.",
    "character_source": "Why this character (the utterance's source; 'speaker' when the map "
    "left it open).",
    "start": "Start of the utterance (or piece), seconds.",
    "end": "End of the utterance (or piece), seconds.",
    "clip_start": "Start of the audio actually cut, after padding and silence trimming, "
    "seconds.",
    "clip_end": "End of the audio actually cut, seconds.",
    "duration_s": "Length of the clip audio, seconds.",
    "text": "Transcript of the clip.",
    "language": "Language of the transcript.",
    "text_source": "'subtitle', 'asr' or 'none'.",
    "overlap": "True when another voice is heard in the clip (rejected by default).",
    "overlap_s": "Seconds of the clip in which another voice is heard.",
    "overlap_cut_s": "Seconds cut off the turn to keep its longest run of words nobody "
    "speaks over.",
    "scene": "Scene id `<episode>:scene_<start_ms>` from pauses and shot cuts; splits deal "
    "whole scenes.",
    "audio_path": "The clip's WAV: mono, sample_rate, loudness-normalised (null: silent).",
    "sample_rate": "Sample rate of the clip's WAV, Hz.",
    "source_lufs": "Loudness of the clip before normalisation, LUFS.",
    "loudness_lufs": "Loudness of the clip's WAV after normalisation, LUFS.",
    "peak_dbfs": "Peak level of the clip's WAV, dBFS.",
    "clipping_ratio": "Share of the original samples on flat tops at the peak (clipped audio).",
    "snr_db": "Blind signal-to-noise ratio (WADA-SNR), dB.",
    "bandwidth_hz": "Upper edge of the clip's long-term spectrum, Hz (low: telephone or "
    "low-bitrate source).",
    "residual_music": "Share of energy in persistent tonal lines off the voice's harmonics: "
    "music left by separation.",
    "background_rel_db": "Level of the background stem under the clip relative to the clip, "
    "dB.",
    "keep": "Whether the clip passes every quality gate and goes into the dataset.",
    "reject_reason": "First gate the clip fails (null: kept).",
    "reject_reasons": "Every gate the clip fails.",
    "fingerprint": "Audio fingerprint (32 bits per 11.6 ms frame) that finds repeated audio "
    "(recaps, previews, songs).",
}


def resolve_character(utterances: pl.DataFrame) -> pl.DataFrame:
    """Add ``character`` = the series character of the turn (from the character map: a name,
    ``voice-NN`` or ``background``), else `<episode>:<speaker>` for a turn the map left open.

    The one place that decides who a clip belongs to; ``character_source`` says why.
    """
    if "character" not in utterances.columns:
        utterances = utterances.with_columns(pl.lit(None, dtype=pl.Utf8).alias("character"))
    utterances = utterances.with_columns(pl.col("character").cast(pl.Utf8),
                                         pl.col("speaker").cast(pl.Utf8))
    named = pl.col("character").is_not_null() & (pl.col("character").str.strip_chars() != "")
    source = (pl.col("character_source") if "character_source" in utterances.columns
              else pl.lit("human"))
    fallback = pl.col("episode") + pl.lit(":") + pl.col("speaker").fill_null("unknown")
    return utterances.with_columns(
        pl.when(named).then(pl.col("character").str.strip_chars()).otherwise(fallback)
        .alias("character"),
        pl.when(named).then(source).otherwise(pl.lit("speaker")).alias("character_source"),
    )


def split_long_utterances(utterances: pl.DataFrame, max_s: float,
                          min_s: float = 1.0) -> pl.DataFrame:
    """Cut utterances longer than ``max_s`` at their longest pauses between words.

    A monologue is one speaker turn but too long for any trainer; rather than reject it, each
    cut goes into the widest gap between words that leaves both sides at least ``min_s``, until
    every piece fits. Pieces get the usual `<episode>_<start_ms>` id and keep the source
    utterance's id in ``utterance_id`` (emotion and corrections are per utterance). Turns
    without word timings are left whole (and rejected as too long later).
    """
    if "utterance_id" not in utterances.columns:
        utterances = utterances.with_columns(pl.col("id").alias("utterance_id"))
    if utterances.is_empty() or "words" not in utterances.columns:
        return utterances
    long = (pl.col("end") - pl.col("start")) > max_s
    if utterances.filter(long).is_empty():
        return utterances
    out: list[dict[str, Any]] = []
    for row in utterances.iter_rows(named=True):
        words = [w for w in (row.get("words") or []) if w and w.get("start") is not None
                 and w.get("end") is not None]
        if row["end"] - row["start"] <= max_s or len(words) < 2:
            out.append(row)
            continue
        pieces = [words]
        done: list[list[dict[str, Any]]] = []
        while pieces:
            ws = pieces.pop()
            if ws[-1]["end"] - ws[0]["start"] <= max_s or len(ws) < 2:
                done.append(ws)
                continue
            best, best_gap = None, -1.0
            for i in range(1, len(ws)):
                left, right = ws[i - 1]["end"] - ws[0]["start"], ws[-1]["end"] - ws[i]["start"]
                gap = ws[i]["start"] - ws[i - 1]["end"]
                if left >= min_s and right >= min_s and gap > best_gap:
                    best, best_gap = i, gap
            if best is None:
                done.append(ws)
                continue
            pieces += [ws[best:], ws[:best]]
        for ws in sorted(done, key=lambda w: w[0]["start"]):
            start = max(row["start"], float(ws[0]["start"]))
            end = min(row["end"], float(ws[-1]["end"]))
            out.append({**row, "id": f"{row['episode']}_{max(0, round(start * 1000)):08d}",
                        "start": start, "end": end, "words": ws,
                        "text": join_words([str(w["word"]) for w in ws])})
    return pl.DataFrame(out, schema=utterances.schema)


def cut_around_overlaps(utterances: pl.DataFrame, min_s: float = 1.0) -> pl.DataFrame:
    """Keep the longest run of words nobody speaks over, instead of rejecting the whole turn.

    Overlaps in dialogue sit at the edges of turns (an answer that starts early, a "Right"
    over the end of a line), so most of an overlapped turn is clean speech. A row marked
    ``overlap`` whose words say where (``overlap_s`` per word, from `mark_overlaps`) is cut to
    its longest clean run when that run lasts ``min_s``; the text becomes the run's words, so
    text and audio still match. ``overlap_cut_s`` says how much was cut. A row whose overlap
    has no word timings (or a person's flag) stays whole and is rejected by the gate.
    """
    if utterances.is_empty() or "words" not in utterances.columns:
        return utterances.with_columns(pl.lit(0.0).alias("overlap_cut_s"))
    out: list[dict[str, Any]] = []
    for row in utterances.iter_rows(named=True):
        row = {**row, "overlap_cut_s": 0.0, "_cut_before": False, "_cut_after": False}
        words = [w for w in row.get("words") or [] if w and w.get("start") is not None]
        spoken_over = [word_is_overlapped(w) for w in words]
        if not row.get("overlap") or not any(spoken_over):
            out.append(row)
            continue
        # The longest run [i0, i1) of clean words (the first, on a tie).
        i0 = i1 = i = 0
        while i < len(words):
            if spoken_over[i]:
                i += 1
                continue
            j = i
            while j < len(words) and not spoken_over[j]:
                j += 1
            if i0 == i1 or words[j - 1]["end"] - words[i]["start"] > \
                    words[i1 - 1]["end"] - words[i0]["start"]:
                i0, i1 = i, j
            i = j
        best = words[i0:i1]
        if not best or best[-1]["end"] - best[0]["start"] < min_s:
            out.append(row)
            continue
        start, end = float(best[0]["start"]), float(best[-1]["end"])
        # No padding towards the cut-away words: two voices are heard there, and the second
        # one's edge is only known to a tenth of a second or two (``OVERLAP_GUARD_S``), so the
        # gap before them is not silence to be trusted.
        out.append({**row, "start": start, "end": end, "words": best,
                    "_cut_before": i0 > 0, "_cut_after": i1 < len(words),
                    "text": join_words([str(w["word"]) for w in best]),
                    "overlap": False, "overlap_s": 0.0,
                    "overlap_cut_s": round((row["end"] - row["start"]) - (end - start), 3)})
    return pl.DataFrame(out, schema={**utterances.schema, "overlap_cut_s": pl.Float64(),
                                     "_cut_before": pl.Boolean(), "_cut_after": pl.Boolean()})


def free_padding(utterances: pl.DataFrame, pad_s: float) -> pl.DataFrame:
    """Per row, how far its clip may reach before and after it without entering other speech.

    Padding is there to keep a soft word onset or a trailing breath; reaching into the
    neighbour's words would put another voice in the clip. Speech of other rows is their
    words (or their span when they have none); the padding stops there.
    """
    if utterances.is_empty():
        return utterances.with_columns(pl.lit(pad_s).alias("pad_before_s"),
                                       pl.lit(pad_s).alias("pad_after_s"))
    spans: list[tuple[float, float, int]] = []
    rows = list(utterances.iter_rows(named=True))
    for i, r in enumerate(rows):
        ws = [w for w in r.get("words") or [] if w and w.get("start") is not None]
        spans += [(float(w["start"]), float(w["end"]), i) for w in ws] or \
            [(float(r["start"]), float(r["end"]), i)]
    s = np.array([a for a, _, _ in spans])
    e = np.array([b for _, b, _ in spans])
    owner = np.array([i for _, _, i in spans])
    before, after = [], []
    for i, r in enumerate(rows):
        other = owner != i
        left = e[other & (e <= r["start"] + 1e-6)]
        right = s[other & (s >= r["end"] - 1e-6)]
        b = r["start"] - left.max() if left.size else pad_s
        a = right.min() - r["end"] if right.size else pad_s
        if r.get("_cut_before"):  # words cut away for an overlap (see cut_around_overlaps)
            b = 0.0
        if r.get("_cut_after"):
            a = 0.0
        before.append(float(np.clip(b, 0.0, pad_s)))
        after.append(float(np.clip(a, 0.0, pad_s)))
    return utterances.with_columns(pl.Series("pad_before_s", before, pl.Float64),
                                   pl.Series("pad_after_s", after, pl.Float64))


def assign_scenes(utterances: pl.DataFrame, gap_s: float = 4.0,
                  cuts: Mapping[str, Sequence[float]] | None = None,
                  cut_pause_s: float = 1.5) -> pl.Series:
    """Scene id per utterance, from pauses in the dialogue and the video's shot cuts.

    A new scene starts after ``gap_s`` without anyone speaking (where a TV episode cuts
    between scenes, and where eyecatches, the opening and the ending sit), or after a shorter
    pause of ``cut_pause_s`` that a shot cut falls in (``cuts``: episode -> cut times): a cut
    during conversation follows the speakers, a cut while nobody talks moves the story. An
    episode without video (no cuts) falls back to the pauses. The id is
    `<episode>:scene_<start_ms>` of the scene's first line, so it does not change when a
    later episode is added.
    """
    if utterances.is_empty():
        return pl.Series("scene", [], dtype=pl.Utf8)
    cuts = cuts or {}
    order = np.lexsort((utterances["start"].to_numpy(), utterances["episode"].to_list()))
    eps = utterances["episode"].to_list()
    starts = utterances["start"].to_numpy()
    ends = utterances["end"].to_numpy()
    scene = [""] * len(order)
    current, last_end, last_ep = "", -np.inf, None
    for i in order:
        gap = starts[i] - last_end
        ep_cuts = np.asarray(cuts.get(eps[i], ()), dtype=float)
        cut_in_gap = gap >= cut_pause_s and bool(
            ((ep_cuts >= last_end - 0.1) & (ep_cuts <= starts[i] + 0.3)).any())
        if eps[i] != last_ep or gap >= gap_s or cut_in_gap:
            current = f"{eps[i]}:scene_{max(0, round(starts[i] * 1000)):08d}"
            last_end = -np.inf
        scene[i] = current
        last_end = max(last_end, float(ends[i]))
        last_ep = eps[i]
    return pl.Series("scene", scene, dtype=pl.Utf8)


def spectral_denoise(x: np.ndarray, sr: int, reduction_db: float = 12.0) -> np.ndarray:
    """Stationary spectral subtraction: attenuate bins near the clip's own noise floor.

    The noise power of a bin is estimated from its 10th percentile over time (pauses between
    words), scaled to a mean (for a noise-only bin the 10th percentile of an exponential
    power is 0.105 of its mean); the attenuation is capped at ``reduction_db`` so speech is
    never gated to silence.
    """
    if len(x) < 2048:
        return x
    nper = 1024
    _, _, z = scipy.signal.stft(x, fs=sr, nperseg=nper, noverlap=nper * 3 // 4)
    power = np.abs(z) ** 2
    noise = np.percentile(power, 10, axis=1, keepdims=True) / 0.1054
    floor = 10 ** (-reduction_db / 10)
    gain = np.sqrt(np.clip(1.0 - 1.5 * noise / (power + 1e-20), floor, 1.0))
    gain = scipy.ndimage.uniform_filter(gain, size=(3, 5))
    _, y = scipy.signal.istft(z * gain, fs=sr, nperseg=nper, noverlap=nper * 3 // 4)
    return np.asarray(y[: len(x)], dtype=np.float64)


def trim_silence(x: np.ndarray, sr: int, top_db: float, margin_s: float) -> tuple[int, int]:
    """[first, last) sample of the clip's sound: frames within ``top_db`` of its loudest."""
    if len(x) == 0:
        return 0, 0
    hop, n = 256, 1024
    if len(x) < n:
        return 0, len(x)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    loud = np.flatnonzero(db >= db.max() - top_db)
    if len(loud) == 0 or db.max() < -80:
        return 0, 0
    margin = int(margin_s * sr)
    first = max(0, loud[0] * hop - margin)
    last = min(len(x), loud[-1] * hop + n + margin)
    return int(first), int(last)


def normalize_loudness(x: np.ndarray, sr: int, target_lufs: float,
                       ceiling_dbfs: float) -> tuple[np.ndarray, float, float]:
    """(normalised samples, source LUFS, output LUFS); peaks kept under the ceiling.

    Clips shorter than one 400 ms gating block fall back to RMS level as the loudness.
    """
    try:
        source = float(pyloudnorm.Meter(sr).integrated_loudness(x)) if len(x) >= 0.4 * sr \
            else float("-inf")
    except ValueError:
        source = float("-inf")
    if not np.isfinite(source):
        source = level_db(x)
    gain = 10 ** ((target_lufs - source) / 20) if np.isfinite(source) else 1.0
    y = x * gain
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    ceiling = 10 ** (ceiling_dbfs / 20)
    if peak > ceiling:
        y = y * (ceiling / peak)
        gain *= ceiling / peak
    out = source + 20 * np.log10(gain) if np.isfinite(source) else float("nan")
    return y, source, float(out)


class SpanReader:
    """Random access to a WAV's spans in seconds (mono float64), without loading the file."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.fh: sf.SoundFile | None = None
        if self.path is not None:
            if not self.path.is_file():
                raise MediaError(self.path, "file does not exist")
            try:
                self.fh = sf.SoundFile(str(self.path))
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise MediaError(self.path, f"not a readable audio file ({exc})") from exc

    @property
    def sr(self) -> int:
        return int(self.fh.samplerate) if self.fh else 0

    def read(self, start: float, end: float) -> np.ndarray:
        if self.fh is None:
            return np.zeros(0)
        a = max(0, round(start * self.sr))
        b = min(self.fh.frames, round(end * self.sr))
        if b <= a:
            return np.zeros(0)
        self.fh.seek(a)
        data = self.fh.read(b - a, dtype="float64", always_2d=True)
        return data.mean(axis=1)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def cut_clips(utterances: pl.DataFrame, vocals_path: str | Path, out_dir: str | Path,
              config: ClipConfig | None = None, mixture_path: str | Path | None = None,
              background_path: str | Path | None = None,
              shot_cuts: Sequence[float] = (),
              progress: Progress = silent) -> pl.DataFrame:
    """One row per utterance (CLIP_SCHEMA); WAVs for every non-silent clip under ``out_dir``.

    ``vocals_path`` is the separated vocal stem the clip audio comes from; ``mixture_path``
    (the episode's decoded audio) and the stem itself are where clipping is measured;
    ``background_path`` gives the level of music/effects that was under the line;
    ``shot_cuts`` (seconds) are the video's cuts, which mark scenes with the pauses.
    """
    config = config or ClipConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if utterances.is_empty():
        return pl.DataFrame(schema=CLIP_SCHEMA)
    episodes = utterances["episode"].unique().to_list()
    utt = resolve_character(utterances).with_columns(assign_scenes(
        utterances, config.scene_gap_s, {e: list(shot_cuts) for e in episodes},
        config.scene_cut_pause_s))
    utt = cut_around_overlaps(utt, config.gates.min_duration_s)
    utt = split_long_utterances(utt, config.gates.max_duration_s - 2 * config.pad_s,
                                config.gates.min_duration_s).sort("start")
    utt = free_padding(utt, config.pad_s)
    vocals, mixture, background = SpanReader(vocals_path), SpanReader(mixture_path), \
        SpanReader(background_path)
    rows: list[dict[str, Any]] = []
    try:
        total = utt.height
        for done, u in enumerate(utt.iter_rows(named=True)):
            rows.append(_one_clip(u, vocals, mixture, background, out_dir, config))
            progress("clips", done + 1, total)
    finally:
        for r in (vocals, mixture, background):
            r.close()
    rows = relax_bandwidth_gate(rows, config.gates.min_bandwidth_hz)
    return pl.DataFrame(rows, schema=CLIP_SCHEMA, orient="row") if rows else \
        pl.DataFrame(schema=CLIP_SCHEMA)


def relax_bandwidth_gate(rows: list[dict[str, Any]], gate_hz: float) -> list[dict[str, Any]]:
    """Clips whose only fault against ``gate_hz`` is the band of a narrowband source are kept:
    each episode is gated at ``source_bandwidth_gate`` of its own clips."""
    by_episode: dict[str, list[float]] = {}
    for r in rows:
        by_episode.setdefault(str(r["episode"]), []).append(r["bandwidth_hz"])
    gates = {e: source_bandwidth_gate(b, gate_hz) for e, b in by_episode.items()}
    out = []
    for r in rows:
        reasons = list(r["reject_reasons"])
        bw = r["bandwidth_hz"]
        if "low_bandwidth" in reasons and bw is not None and bw >= gates[str(r["episode"])]:
            reasons.remove("low_bandwidth")
            r = {**r, "reject_reasons": reasons, "keep": not reasons,
                 "reject_reason": reasons[0] if reasons else None}
        out.append(r)
    return out


def _one_clip(u: Mapping[str, Any], vocals: SpanReader, mixture: SpanReader, background: SpanReader,
              out_dir: Path, cfg: ClipConfig) -> dict[str, Any]:
    start, end = float(u["start"]), float(u["end"])
    seg_start = max(0.0, start - u.get("pad_before_s", cfg.pad_s))
    raw = vocals.read(seg_start, end + u.get("pad_after_s", cfg.pad_s))
    # Clipping on original samples: the mixture and the stem, over the utterance itself.
    clip_ratio = max(clipping_ratio(vocals.read(start, end)),
                     clipping_ratio(mixture.read(start, end)))

    sr = cfg.sample_rate
    x = resample(raw, vocals.sr, sr) if len(raw) else np.zeros(0)
    if cfg.denoise:
        x = spectral_denoise(x, sr)
    a, b = trim_silence(x, sr, cfg.trim_top_db, cfg.keep_margin_s)
    x = x[a:b]
    clip_start = seg_start + a / sr
    clip_end = seg_start + b / sr
    duration = len(x) / sr
    is_silent = len(x) == 0 or level_db(x) < -70.0

    base = {
        "id": u["id"], "utterance_id": u["utterance_id"], "episode": u["episode"],
        "series": series_of(str(u["episode"])),
        "speaker": u.get("speaker"), "character": u["character"],
        "character_source": u["character_source"], "start": start, "end": end,
        "clip_start": clip_start, "clip_end": clip_end, "duration_s": duration,
        "text": u.get("text"), "language": u.get("language"), "text_source": u.get("text_source"),
        "overlap": bool(u.get("overlap") or False),
        "overlap_s": float(u.get("overlap_s") or 0.0),
        "overlap_cut_s": float(u.get("overlap_cut_s") or 0.0), "scene": u["scene"],
        "sample_rate": sr, "clipping_ratio": clip_ratio,
    }
    if is_silent:
        return {**base, "audio_path": None, "source_lufs": None, "loudness_lufs": None,
                "peak_dbfs": None, "snr_db": None, "bandwidth_hz": None, "residual_music": None,
                "background_rel_db": None, "keep": False, "reject_reason": "silent",
                "reject_reasons": ["silent"], "fingerprint": []}

    snr = wada_snr(x, sr)
    bw = bandwidth_hz(x, sr)
    music = residual_music_score(x, sr)
    bg = background.read(clip_start, clip_end)
    bg_rel = level_db(bg) - level_db(x) if len(bg) else float("nan")
    y, src_lufs, out_lufs = normalize_loudness(x, sr, cfg.target_lufs, cfg.peak_ceiling_dbfs)
    path = write_wav(out_dir / f"{u['id']}.wav", np.clip(y, -1.0, 1.0), sr)
    reasons = reject_reasons(duration_s=duration, clipping=clip_ratio, snr_db=snr,
                             residual_music=music, bandwidth=bw, text=u.get("text"),
                             overlap=u.get("overlap"), gates=cfg.gates,
                             review_flags=list(u.get("review_flags") or []),
                             character=u.get("character"))
    peak = float(np.max(np.abs(y)))
    return {**base, "audio_path": str(path), "source_lufs": _finite(src_lufs),
            "loudness_lufs": _finite(out_lufs), "peak_dbfs": _finite(20 * np.log10(peak + 1e-12)),
            "snr_db": _finite(snr), "bandwidth_hz": _finite(bw), "residual_music": _finite(music),
            "background_rel_db": _finite(bg_rel), "keep": not reasons,
            "reject_reason": reasons[0] if reasons else None, "reject_reasons": reasons,
            "fingerprint": fingerprint(y, sr).astype(np.int64).tolist()}


def _finite(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None
