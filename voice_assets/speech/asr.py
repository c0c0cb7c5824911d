"""Speech recognition of the vocal stem, restricted to the voice-activity regions.

Whisper invents text when it is fed music or silence, and decodes a fixed 30 s window whatever
it holds. So we never hand it the raw episode: the voice-activity regions are padded, packed
into chunks of at most 30 s of *speech only* (pieces joined by short silences), transcribed,
and every time stamp is mapped back to the episode clock. That is also the batching unit for
faster-whisper's batched pipeline.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from voice_assets.episode_keys import EPISODE_COLUMN
from voice_assets.errors import ModelMissingError
from voice_assets.models import CATALOG, get
from voice_assets.paths import Layout
from voice_assets.profiles import GPU_ENVIRONMENT
from voice_assets.progress import Progress, silent
from voice_assets.speech.japanese import join_words

SAMPLE_RATE = 16_000
MAX_UNHEARD_S = 2.0  # speech (s) a chunk may leave without words before it is re-decoded
MAX_CHUNK_S = 30.0

WORD_DTYPE = pl.Struct(
    {"word": pl.Utf8, "start": pl.Float64, "end": pl.Float64, "score": pl.Float64}
)
TRANSCRIPT_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.Utf8(),
    "start": pl.Float64(),
    "end": pl.Float64(),
    "text": pl.Utf8(),
    "words": pl.List(WORD_DTYPE),
    "language": pl.Utf8(),
    "avg_logprob": pl.Float64(),
    "no_speech_prob": pl.Float64(),
    "model": pl.Utf8(),
}
TRANSCRIPT_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "start": "Start of the ASR segment, seconds.",
    "end": "End of the ASR segment, seconds.",
    "text": "Recognised text of the segment.",
    "words": "Recognised words with start and end (seconds) and recognition score (0-1).",
    "language": "Language detected for the episode.",
    "avg_logprob": "Mean token log-probability of the segment (nearer 0: surer).",
    "no_speech_prob": "The model's probability that the segment holds no speech.",
    "model": "ASR model.",
}


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end, "score": self.score}


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0


@dataclass
class Transcript:
    segments: list[Segment]
    language: str
    model: str
    language_probability: float = 1.0
    redecoded_chunks: int = 0  # chunks the batched decoder cut short, decoded again

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


# --- chunk planning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A span of the episode [src_start, src_end) placed at ``dst_start`` inside a chunk."""

    src_start: float
    src_end: float
    dst_start: float

    @property
    def length(self) -> float:
        return self.src_end - self.src_start


@dataclass
class Chunk:
    """At most 30 s of speech pieces, decoded by whisper as one window."""

    pieces: list[Piece]
    join_gap: float

    @property
    def duration(self) -> float:
        last = self.pieces[-1]
        return last.dst_start + last.length

    def to_source(self, t: float, side: str = "start") -> float:
        """Chunk time -> episode time.

        A time inside a joining gap is silence: a word *start* there snaps forward to the next
        piece, a word *end* back to the previous one.
        """
        for i, p in enumerate(self.pieces):
            end = p.dst_start + p.length
            if t < end or i == len(self.pieces) - 1:
                if t < p.dst_start:  # in the gap before this piece
                    return p.src_start if side == "start" else self.pieces[i - 1].src_end
                return float(min(p.src_start + max(t - p.dst_start, 0.0), p.src_end))
        return self.pieces[-1].src_end  # pragma: no cover

    def span_to_source(self, t0: float, t1: float) -> tuple[float, float]:
        """A word's chunk span -> episode span, kept inside the one piece it overlaps most.

        Whisper's word edges are loose around silences; a word that seems to straddle a join
        belongs to one side only.
        """
        best, best_overlap = 0, -1.0
        for i, p in enumerate(self.pieces):
            overlap = min(t1, p.dst_start + p.length) - max(t0, p.dst_start)
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        p = self.pieces[best]
        s = p.src_start + float(np.clip(t0 - p.dst_start, 0.0, p.length))
        e = p.src_start + float(np.clip(t1 - p.dst_start, 0.0, p.length))
        return s, max(e, s)

    def unheard_s(self, segments: Sequence[Segment]) -> float:
        """Seconds of this chunk's speech pieces that no decoded word falls in."""
        heard = [False] * len(self.pieces)
        for seg in segments:
            for w in seg.words:
                mid = (w.start + w.end) / 2
                for i, p in enumerate(self.pieces):
                    if p.src_start - 0.05 <= mid <= p.src_end + 0.05:
                        heard[i] = True
                        break
        return float(sum(p.length for p, h in zip(self.pieces, heard, strict=True) if not h))

    def audio(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        gap = np.zeros(round(self.join_gap * sample_rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        for i, p in enumerate(self.pieces):
            if i:
                parts.append(gap)
            a, b = round(p.src_start * sample_rate), round(p.src_end * sample_rate)
            parts.append(samples[a:b].astype(np.float32, copy=False))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def merge_regions(regions: Sequence[tuple[float, float]], duration: float,
                  pad: float = 0.2) -> list[tuple[float, float]]:
    """Pad regions (so word onsets are not clipped) and merge the ones that then touch."""
    out: list[list[float]] = []
    for s, e in sorted((float(s), float(e)) for s, e in regions if e > s):
        s, e = max(0.0, s - pad), min(duration, e + pad)
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _quiet_cut(samples: np.ndarray, lo: float, hi: float, sample_rate: int) -> float:
    """The middle of the quietest 100 ms in [lo, hi): where to cut a too-long region
    without splitting a word."""
    a, b = int(lo * sample_rate), int(hi * sample_rate)
    seg = samples[a:b]
    frame = int(0.02 * sample_rate)
    n = len(seg) // frame
    if n < 5:
        return (lo + hi) / 2
    energy = (seg[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    smooth = np.convolve(energy, np.ones(5) / 5, mode="valid")  # frames k..k+4
    return lo + (int(np.argmin(smooth)) + 2.5) * frame / sample_rate


def plan_chunks(regions: Sequence[tuple[float, float]], duration: float,
                samples: np.ndarray | None = None, *, pad: float = 0.2, join_gap: float = 0.3,
                max_chunk: float = MAX_CHUNK_S, sample_rate: int = SAMPLE_RATE) -> list[Chunk]:
    """Pack voice-activity regions into chunks of at most ``max_chunk`` seconds of speech.

    A region longer than a chunk is cut at its quietest point in the last 5 s before the limit.
    """
    limit = max_chunk - 0.5  # headroom: whisper's window is exactly 30 s
    spans: list[tuple[float, float]] = []
    for s, e in merge_regions(regions, duration, pad):
        while e - s > limit:
            cut = (_quiet_cut(samples, s + limit - 5.0, s + limit, sample_rate)
                   if samples is not None else s + limit)
            spans.append((s, cut))
            s = cut
        spans.append((s, e))
    chunks: list[Chunk] = []
    pieces: list[Piece] = []
    used = 0.0
    for s, e in spans:
        extra = (join_gap if pieces else 0.0) + (e - s)
        if pieces and used + extra > limit:
            chunks.append(Chunk(pieces, join_gap))
            pieces, used, extra = [], 0.0, e - s
        pieces.append(Piece(s, e, used + (join_gap if pieces else 0.0)))
        used += extra
    if pieces:
        chunks.append(Chunk(pieces, join_gap))
    return chunks


# --- models -----------------------------------------------------------------------------------


def catalog_name(model: str) -> str:
    """'tiny.en' -> 'whisper-tiny.en' (the catalog name); catalog names pass through."""
    return model if model.startswith("whisper-") else f"whisper-{model}"


def resolve_model(model: str, layout: Layout | None = None) -> Path:
    """Local directory of a CTranslate2 whisper model: a path, or a catalog name."""
    direct = Path(model).expanduser()
    if direct.is_dir():
        if not (direct / "model.bin").is_file():
            raise ModelMissingError(model, direct, "a CTranslate2 model directory with model.bin")
        return direct
    name = catalog_name(model)
    if name not in CATALOG:
        known = ", ".join(sorted(n.removeprefix("whisper-") for n in CATALOG
                                 if CATALOG[n].stage == "asr"))
        raise ValueError(f"unknown ASR model '{model}'; known: {known} (or a CT2 model directory)")
    return get(name).require(layout)


def default_device() -> tuple[str, str]:
    """(device, compute_type): CUDA with float16 when a GPU is visible, else CPU with int8."""
    import ctranslate2

    try:
        if ctranslate2.get_cuda_device_count() > 0:
            return "cuda", "float16"
    except Exception:  # a CPU-only build raises instead of returning 0
        pass
    return "cpu", "int8"


def default_batch_size(device: str) -> int:
    """Chunks per batched decode: 8 on a GPU; 4 on CPU, where the batched pipeline (no
    timestamp tokens, no temperature fallback) is still ~3x faster than sequential decoding."""
    return 8 if device == "cuda" else 4


@functools.lru_cache(maxsize=4)
def load_whisper(model_dir: str, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0) -> Any:
    """Load (once per process) a faster-whisper model from a local directory."""
    from faster_whisper import WhisperModel

    auto_device, auto_type = default_device()
    device = auto_device if device == "auto" else device
    if compute_type == "auto":
        compute_type = auto_type if device == auto_device else ("float16" if device == "cuda"
                                                                else "int8")
    return WhisperModel(model_dir, device=device, compute_type=compute_type,
                        cpu_threads=cpu_threads, local_files_only=True)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A pipeline WAV (the vocal stem) as mono float32 at whisper's 16 kHz."""
    from voice_assets.speech.audio_io import read_mono

    samples, _rate = read_mono(path, sample_rate)
    return np.asarray(samples, dtype=np.float32)


# --- transcription ----------------------------------------------------------------------------

# Phrases whisper emits on silence or music (learned from subtitle credits on YouTube).
_HALLUCINATION = re.compile(
    r"^\W*(thank(s| you) (so much )?for watching|please subscribe|subtitles? by|"
    r"transcribed by|translated by|amara\.org|you|thank you|bye)\W*$",
    re.IGNORECASE,
)


def is_hallucination(seg: Segment, no_speech_threshold: float = 0.6,
                     logprob_threshold: float = -1.0, compression_threshold: float = 2.4) -> bool:
    """Whisper's own silence rule, repetition loops, and stock phrases said with low confidence."""
    if seg.no_speech_prob > no_speech_threshold and seg.avg_logprob < logprob_threshold:
        return True
    if seg.compression_ratio > compression_threshold:
        return True
    if not seg.text.strip() or not seg.words:
        return True
    mean_p = float(np.mean([w.score for w in seg.words]))
    return bool(_HALLUCINATION.match(seg.text.strip())) and (mean_p < 0.5
                                                              or seg.no_speech_prob > 0.3)


def _convert(seg: Any, chunk: Chunk, offset: float = 0.0) -> Segment:
    words = [
        Word(w.word.strip(), *chunk.span_to_source(float(w.start) - offset,
                                                   float(w.end) - offset), float(w.probability))
        for w in (seg.words or []) if w.word.strip()
    ]
    start = words[0].start if words else chunk.to_source(float(seg.start) - offset, "start")
    end = words[-1].end if words else chunk.to_source(float(seg.end) - offset, "end")
    return Segment(start=start, end=max(end, start), text=seg.text.strip(), words=words,
                   avg_logprob=float(seg.avg_logprob), no_speech_prob=float(seg.no_speech_prob),
                   compression_ratio=float(getattr(seg, "compression_ratio", 1.0)))


def split_segment(seg: Segment, max_gap: float = 0.8, sentence_gap: float = 0.3) -> list[Segment]:
    """Split a segment at long pauses, or at shorter ones after a sentence end.

    The batched pipeline returns one segment per 30 s chunk; lines of dialogue are shorter.
    """
    if len(seg.words) < 2:
        return [seg]
    groups: list[list[Word]] = [[seg.words[0]]]
    for prev, w in itertools.pairwise(seg.words):
        gap = w.start - prev.end
        if gap >= max_gap or (gap >= sentence_gap and prev.word.rstrip("\"')").endswith(
                (".", "?", "!", "…"))):
            groups.append([])
        groups[-1].append(w)
    if len(groups) == 1:
        return [seg]
    return [replace(seg, start=g[0].start, end=g[-1].end, words=g,
                    text=join_words([w.word for w in g])) for g in groups]


def language_hint(track_language: str | None, subtitle_texts: Sequence[str] = ()) -> str | None:
    """The episode's spoken language before any decoding: the audio track's tag, else kana in
    its subtitles (Japanese); None when neither tells (then the model detects it)."""
    from voice_assets.media.probe import iso639_1
    from voice_assets.speech.japanese import has_kana

    tagged = iso639_1(track_language)
    if tagged:
        return tagged
    texts = [t for t in subtitle_texts if t]
    if texts and sum(has_kana(t) for t in texts) >= 0.5 * len(texts):
        return "ja"
    return None


def detect_language(model: Any, audio: np.ndarray) -> tuple[str, float]:
    """Language of (up to 30 s of) speech; English-only models answer 'en' without looking."""
    if not model.model.is_multilingual:
        return "en", 1.0
    lang, prob, _ = model.detect_language(audio[: int(MAX_CHUNK_S * SAMPLE_RATE)])
    return str(lang), float(prob)


def transcribe_chunks(model: Any, samples: np.ndarray, chunks: Sequence[Chunk], *,
                      model_name: str, language: str | None = None, beam_size: int = 5,
                      batch_size: int = 1, progress: Progress = silent) -> Transcript:
    """Transcribe planned chunks with word time stamps, mapped back to the episode clock.

    ``batch_size`` > 1 uses faster-whisper's batched pipeline (all chunks laid end to end,
    one clip each), worthwhile on a GPU; 1 decodes chunk by chunk.
    """
    if not chunks:
        return Transcript([], language or "en", model_name)
    chunk_audio = [c.audio(samples) for c in chunks]
    prob = 1.0
    if language is None:
        language, prob = detect_language(model, chunk_audio[0])
    options: dict[str, Any] = {
        "language": language, "beam_size": beam_size, "word_timestamps": True,
        "vad_filter": False,
    }
    by_chunk: list[list[Segment]] = [[] for _ in chunks]
    redecoded = 0
    progress("transcribe", 0, len(chunks))

    def decode_one(i: int) -> list[Segment]:
        raw, _info = model.transcribe(chunk_audio[i], condition_on_previous_text=False,
                                      without_timestamps=False, **options)
        return [_convert(seg, chunks[i]) for seg in raw]

    if batch_size > 1:
        from faster_whisper import BatchedInferencePipeline

        offsets = np.cumsum([0.0] + [len(a) / SAMPLE_RATE for a in chunk_audio])
        clips = [{"start": float(offsets[i]), "end": float(offsets[i + 1])}
                 for i in range(len(chunks))]
        pipe = BatchedInferencePipeline(model)
        # without_timestamps: the batched decoder drops a chunk's last segment when it
        # predicts segment time stamps; one segment per chunk, split by words below, is safe.
        raw, _info = pipe.transcribe(np.concatenate(chunk_audio), clip_timestamps=clips,
                                     batch_size=batch_size, without_timestamps=True, **options)
        for seg in raw:
            # Which clip: by the segment's middle (its start may round to just before the
            # clip's own start).
            mid = (float(seg.start) + float(seg.end)) / 2
            i = int(np.clip(np.searchsorted(offsets, mid, side="right") - 1,
                            0, len(chunks) - 1))
            by_chunk[i].append(_convert(seg, chunks[i], float(offsets[i])))
            progress("transcribe", i + 1, len(chunks))
        # Without time stamps the decoder sometimes ends a chunk after its first sentence
        # (measured: one line heard of a 27 s chunk holding twelve). A chunk with speech
        # pieces no word landed in is decoded again on its own, with time stamps (a quarter
        # is allowed: voice activity also fires on effects and breaths that hold no words).
        for i, chunk in enumerate(chunks):
            speech = sum(p.length for p in chunk.pieces)
            if chunk.unheard_s(by_chunk[i]) > max(MAX_UNHEARD_S, 0.25 * speech):
                redo = decode_one(i)
                redecoded += 1
                if chunk.unheard_s(redo) < chunk.unheard_s(by_chunk[i]):
                    by_chunk[i] = redo
    else:
        for i in range(len(chunks)):
            by_chunk[i] = decode_one(i)
            progress("transcribe", i + 1, len(chunks))
    segments = [seg for segs in by_chunk for seg in segs]
    kept = [part for s in segments if not is_hallucination(s) for part in split_segment(s)]
    kept.sort(key=lambda s: s.start)
    return Transcript(kept, str(language), model_name, prob, redecoded)


def transcribe(model: Any, samples: np.ndarray, regions: Sequence[tuple[float, float]], *,
               model_name: str, language: str | None = None, beam_size: int = 5,
               batch_size: int = 1, progress: Progress = silent) -> Transcript:
    """Transcribe the voice-activity ``regions`` of 16 kHz mono ``samples``."""
    duration = len(samples) / SAMPLE_RATE
    chunks = plan_chunks(regions, duration, samples)
    return transcribe_chunks(model, samples, chunks, model_name=model_name, language=language,
                             beam_size=beam_size, batch_size=batch_size, progress=progress)


# --- WhisperX (wav2vec2) word alignment -------------------------------------------------------


def whisperx_align(transcript: Transcript, samples: np.ndarray, align_model_dir: Path,
                   device: str = "cpu", punkt_dir: Path | None = None) -> Transcript:
    """Re-time words with WhisperX's wav2vec2 CTC alignment (more precise word edges).

    whisperx pins a torch that clashes with the CPU profile's, so it lives in the GPU
    profile's environment. It splits segments at sentence ends with NLTK's Punkt tables,
    which it would download on first use: ``punkt_dir`` (the `nltk-punkt-tab` model) holds
    them locally instead.
    """
    try:
        import whisperx
    except ImportError as exc:
        raise ModelMissingError(
            "whisperx", "installed Python packages",
            f"{GPU_ENVIRONMENT} (or choose backend 'faster-whisper')",
        ) from exc
    import nltk

    punkt = str(punkt_dir or get("nltk-punkt-tab").require())
    if punkt not in nltk.data.path:
        nltk.data.path.insert(0, punkt)
    align_model, metadata = whisperx.load_align_model(
        language_code=transcript.language, device=device, model_name=str(align_model_dir))
    out: list[Segment] = []
    # One segment per call: whisperx re-splits a segment at sentence ends, so its output
    # segments do not pair with ours; each call's words all belong to the segment sent.
    for seg in transcript.segments:
        result = whisperx.align([{"start": seg.start, "end": seg.end, "text": seg.text}],
                                align_model, metadata, samples, device,
                                return_char_alignments=False)
        out.append(realigned(seg, result))
    return replace(transcript, segments=out)


def realigned(segment: Segment, result: dict[str, Any]) -> Segment:
    """``segment`` re-timed by whisperx's ``result`` for it: the words of every output segment
    (whisperx may split one at a sentence end), in time order. Words it could not align
    (numbers, symbols: no start/end) drop out of the word list; a segment with none aligned
    keeps the ASR's words."""
    words = [Word(str(w["word"]).strip(), float(w["start"]), float(w["end"]),
                  float(w.get("score", 0.0)))
             for part in result.get("segments", []) for w in part.get("words", [])
             if "start" in w and "end" in w]
    words.sort(key=lambda w: (w.start, w.end))
    if not words:
        return segment
    return replace(segment, words=words, start=words[0].start, end=words[-1].end)


# --- table ------------------------------------------------------------------------------------


def transcript_frame(episode: str, transcript: Transcript) -> pl.DataFrame:
    """The `transcript` table: one row per ASR segment."""
    rows = [{
        "episode": episode, "start": s.start, "end": s.end, "text": s.text,
        "words": [w.as_dict() for w in s.words], "language": transcript.language,
        "avg_logprob": s.avg_logprob, "no_speech_prob": s.no_speech_prob,
        "model": transcript.model,
    } for s in transcript.segments]
    return pl.DataFrame(rows, schema=TRANSCRIPT_SCHEMA)


def frame_words(df: pl.DataFrame) -> list[Word]:
    """All words of a transcript-like table, in time order."""
    words = [Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w["score"] or 0.0))
             for ws in df.get_column("words").to_list() if ws for w in ws]
    return sorted(words, key=lambda w: (w.start, w.end))
