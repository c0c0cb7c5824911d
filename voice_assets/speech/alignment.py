"""Subtitle lines aligned to the audio: subtitle text, audio time.

Subtitles carry the right words and the speaker's name but loose times (fansubs lead or lag
by hundreds of ms, and a release for another cut of the video can be offset by seconds or
drift by a frame-rate ratio). ASR carries good times but wrong words. So:

1. classify lines: songs and on-screen signs are not dialogue;
2. estimate one global time map (scale, offset) from rare words both sides agree on;
3. align all subtitle tokens to all ASR words with a banded edit-distance DP around that map;
4. re-time each line to its matched words, then refine the edges with forced alignment
   (pocketsphinx for English; Montreal Forced Aligner when configured and installed).

Without subtitles the ASR segments become the lines (text_source 'asr').
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from voice_assets.episode_keys import EPISODE_COLUMN
from voice_assets.media.subtitles import shared_time
from voice_assets.progress import Progress, silent
from voice_assets.speech import japanese
from voice_assets.speech.asr import SAMPLE_RATE, WORD_DTYPE, Segment, Word

ALIGNED_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.Utf8(),
    "line": pl.Int64(),
    "start": pl.Float64(),
    "end": pl.Float64(),
    "text": pl.Utf8(),
    "words": pl.List(WORD_DTYPE),
    "text_source": pl.Utf8(),
    "kind": pl.Utf8(),
    "name": pl.Utf8(),
    "drift_s": pl.Float64(),
    "confidence": pl.Float64(),
    "overlaps_other": pl.Boolean(),
}
ALIGNED_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "line": "Index of the subtitle line (or ASR segment) the row comes from.",
    "start": "Start of the line re-timed to the speech, seconds.",
    "end": "End of the line re-timed to the speech, seconds.",
    "text": "Text of the line: the subtitle's, or the ASR segment's without subtitles.",
    "words": "Words of the line with times aligned to the audio (seconds) and match score.",
    "text_source": "Where the text comes from: 'subtitle' or 'asr'.",
    "kind": "'dialogue', 'song', 'sign' or 'no_speech' (no speech under the line); only "
    "dialogue becomes utterances.",
    "name": "Speaker name the subtitle line gives (null: none).",
    "drift_s": "Aligned start minus the subtitle's own start, seconds (null for ASR lines).",
    "confidence": "Share of the line's tokens matched to recognised words (0-1; 0: not "
    "aligned, subtitle times kept).",
    "overlaps_other": "True when the subtitles show another dialogue line at the same time "
    "(two voices at once): words of the line the ASR did not hear count as spoken over.",
}

# --- text normalisation -----------------------------------------------------------------------

_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
    "7": "seven", "8": "eight", "9": "nine", "10": "ten", "11": "eleven", "12": "twelve",
    "20": "twenty", "30": "thirty", "40": "forty", "50": "fifty", "100": "hundred",
}
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Normalised tokens: NFKC, case-folded, curly quotes straightened, punctuation dropped.

    Hyphenated words stay one token ('sakura-chan' -> 'sakurachan') because ASR and subtitles
    disagree on hyphens far more often than on the words.
    """
    if japanese.has_cjk(text):  # no spaces, and kanji vs kana: compare readings
        return japanese.readings(text)
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'").replace("‘", "'")
    text = re.sub(r"(?<=\w)-(?=\w)", "", text)
    return [_NUMBERS.get(t, t) for t in _TOKEN.findall(text)]


def asr_tokens(words: Sequence[Word], run_gap_s: float = 0.5,
               ) -> tuple[list[str], list[tuple[float, float]]]:
    """Recognised words as alignment tokens with their times.

    A word that normalises to several tokens ('well-known' is one, "5:30" is two) keeps its
    first; ones that normalise to nothing drop out. Japanese pieces (Whisper splits unspaced
    text into sub-word pieces) are joined into runs and re-cut into morphemes by reading.
    """
    toks: list[str] = []
    spans: list[tuple[float, float]] = []
    run: list[tuple[str, float, float]] = []

    def flush() -> None:
        for reading, s, e in japanese.timed_readings(run):
            toks.append(reading)
            spans.append((s, e))
        run.clear()

    for w in words:
        if japanese.has_cjk(w.word):
            if run and w.start - run[-1][2] > run_gap_s:
                flush()
            run.append((w.word, w.start, w.end))
            continue
        flush()
        t = tokens(w.word)
        if t:
            toks.append(t[0])
            spans.append((w.start, w.end))
    flush()
    return toks, spans


def similarity(a: str, b: str) -> float:
    """Token similarity in [0, 1] (normalised Indel distance; 'kaito' ~ 'kaido' = 0.8)."""
    from rapidfuzz import fuzz

    return 1.0 if a == b else float(fuzz.ratio(a, b)) / 100.0


# --- line classification ----------------------------------------------------------------------

_SONG_STYLE = re.compile(
    r"(^|[^a-z])(op|ed|song|songs|lyric|lyrics|karaoke|kara|kfx|insert|opening|ending|"
    r"romaji|kanji|music)([^a-z]|$)")
_SIGN_STYLE = re.compile(
    r"(^|[^a-z])(sign|signs|title|titles|typeset|ts|caption|screen|note|notes|eyecatch|"
    r"preview|logo|banner)([^a-z]|$)")
_SONG_TAGS = re.compile(r"\\k[fo]?\d", re.IGNORECASE)
_SIGN_TAGS = re.compile(r"\\(pos|move|org|clip|iclip|frz|fr[xy]?)\s*\(?", re.IGNORECASE)
_MUSIC_CHARS = frozenset("♪♫♬♩")


def _style_key(style: str | None) -> str:
    # 'OP_Romaji' / 'SignBlue' / 'Song-EN' -> 'op romaji' / 'sign blue' / 'song en'
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", style or "")
    return re.sub(r"[^a-z]+", " ", s.lower()).strip()


def classify_line(text: str, style: str | None = None, effect: str | None = None,
                  raw: str | None = None) -> str:
    """'song', 'sign' or 'dialogue' from the style name, effect, override tags and text."""
    if any(c in _MUSIC_CHARS for c in text) or (raw is not None and _SONG_TAGS.search(raw)):
        return "song"
    key = _style_key(style)
    if _SONG_STYLE.search(key):
        return "song"
    if _SIGN_STYLE.search(key):
        return "sign"
    eff = (effect or "").lower()
    if "karaoke" in eff:
        return "song"
    if eff.startswith(("banner", "scroll")) or (raw is not None and _SIGN_TAGS.search(raw)):
        return "sign"
    return "dialogue"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).replace("\\N", ""))


def raw_event_text(subtitle_path: str | Path | None) -> dict[tuple[int, int, str], str]:
    """Raw text (with override tags) of each event, keyed by (start ms, end ms, plain text).

    The subtitles table keeps plain text only; \\pos and \\move tags, which mark typeset
    signs, are only in the file.
    """
    if not subtitle_path or not Path(subtitle_path).is_file():
        return {}
    import pysubs2

    from voice_assets.media.subtitles import decode_subtitle_bytes

    path = Path(subtitle_path)
    try:
        text, _encoding = decode_subtitle_bytes(path.read_bytes(), path)
        subs = pysubs2.SSAFile.from_string(text)
    except Exception:  # the subtitles asset reports parse errors; here tags are only a hint
        return {}
    return {(ev.start, ev.end, _squash(ev.plaintext)): ev.text for ev in subs
            if not ev.is_comment}


# --- data -------------------------------------------------------------------------------------


@dataclass
class SubLine:
    line: int
    start: float
    end: float
    text: str
    name: str | None = None
    style: str | None = None
    effect: str | None = None
    raw: str | None = None


@dataclass
class AlignedLine:
    line: int
    start: float
    end: float
    text: str
    words: list[Word]
    text_source: str
    kind: str
    name: str | None
    drift_s: float | None
    confidence: float
    overlaps_other: bool = False  # the subtitles show another dialogue line at the same time


@dataclass(frozen=True)
class TimeMap:
    """asr_time = scale * subtitle_time + offset."""

    scale: float = 1.0
    offset: float = 0.0
    anchors: int = 0
    inliers: int = 0

    def __call__(self, t: float) -> float:
        return self.scale * t + self.offset


@dataclass
class AlignOptions:
    band_s: float = 4.0           # search band around the mapped subtitle time
    pad_s: float = 0.5            # forced-alignment window beyond the ASR-estimated line
    max_refine_shift_s: float = 0.8  # distrust forced alignment that moves an edge further
    match_similarity: float = 0.6    # token similarity that counts as a match for timing
    no_speech_vad_ratio: float = 0.2  # below this VAD coverage an unmatched line is no_speech
    trim_drop_db: float = 30.0    # line edges move in to where the voice is this far down...
    trim_silence_s: float = 0.12  # ...for this long (0 disables the trimming)
    pocketsphinx: bool = True
    mfa: bool = False
    mfa_dictionary: str = "english_us_arpa"
    mfa_acoustic_model: str = "english_us_arpa"


@dataclass
class AlignmentResult:
    lines: list[AlignedLine]
    time_map: TimeMap
    refiner: str
    match_rate: float
    refined_lines: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


# --- global time map --------------------------------------------------------------------------


def estimate_time_map(sub: Sequence[tuple[float, str]], asr: Sequence[tuple[float, str]],
                      max_scale_dev: float = 0.06, inlier_s: float = 1.0) -> TimeMap:
    """Fit asr_time = a * sub_time + b from anchor pairs of rare tokens and bigrams.

    A token seen at most 3 times in the ASR output pairs with every occurrence on the
    subtitle side; the right (a, b) makes many of these pairs agree within ``inlier_s``,
    wrong pairings scatter. Scales are scanned densely (frame-rate ratios such as
    25/23.976 fall inside the scan), then the inliers refit by least squares.
    """
    def grams(seq: Sequence[tuple[float, str]]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for i, (t, tok) in enumerate(seq):
            if len(tok) >= 3:
                out.setdefault(tok, []).append(t)
            if i + 1 < len(seq):
                out.setdefault(f"{tok} {seq[i + 1][1]}", []).append((t + seq[i + 1][0]) / 2)
        return out

    s_grams, a_grams = grams(sub), grams(asr)
    xs: list[float] = []
    ys: list[float] = []
    for g, a_times in a_grams.items():
        s_times = s_grams.get(g)
        if not s_times or len(a_times) > 3 or len(s_times) > 3:
            continue
        for st in s_times:
            for at in a_times:
                xs.append(st)
                ys.append(at)
    if len(xs) < 3:
        return TimeMap(anchors=len(xs))
    x, y = np.asarray(xs), np.asarray(ys)
    cands: list[tuple[int, float, float, float]] = []  # (count, spread, a, b)
    for a in np.arange(1 - max_scale_dev, 1 + max_scale_dev + 1e-9, 0.0005):
        b = np.sort(y - a * x)
        counts = np.searchsorted(b, b + 2 * inlier_s, side="right") - np.arange(len(b))
        k = int(np.argmax(counts))
        window = b[k: k + counts[k]]
        mid = float(np.median(window))
        cands.append((int(counts[k]), float(np.median(np.abs(window - mid))), float(a), mid))
    # Near a short script's true scale many scales keep every anchor inside the window; the
    # true one is where the anchors agree most tightly (then the one nearest 1).
    top = max(c[0] for c in cands)
    _, _, a, b = min((c for c in cands if c[0] >= 0.95 * top),
                     key=lambda c: (round(c[1] / 0.02), abs(c[2] - 1.0)))
    inl = np.abs(y - (a * x + b)) <= inlier_s
    if inl.sum() >= 10 and np.ptp(x[inl]) > 300.0:  # spread enough to refine the slope
        a, b = (float(v) for v in np.polyfit(x[inl], y[inl], 1))
        inl = np.abs(y - (a * x + b)) <= inlier_s
    elif inl.sum() >= 1:
        b = float(np.median(y[inl] - a * x[inl]))
    if inl.sum() < 3:
        return TimeMap(anchors=len(xs), inliers=int(inl.sum()))
    return TimeMap(scale=a, offset=b, anchors=len(xs), inliers=int(inl.sum()))


# --- banded token alignment -------------------------------------------------------------------


def align_tokens(tok: Sequence[str], tok_time: Sequence[float], tok_band: Sequence[float],
                 words: Sequence[str], word_time: Sequence[float],
                 ) -> list[tuple[int, float] | None]:
    """Edit-distance alignment of subtitle tokens to ASR words, restricted to a time band.

    Returns, per token, (word index, similarity) or None when the token aligns to nothing.
    Substitution cost 2*(1-sim) plus a small time penalty (so a repeated word pairs with
    its nearer occurrence); insertion and deletion cost 1.
    """
    n, m = len(tok), len(words)
    if n == 0:
        return []
    wt = np.asarray(word_time, dtype=np.float64)
    tt = np.asarray(tok_time, dtype=np.float64)
    band = np.asarray(tok_band, dtype=np.float64)
    lo = np.searchsorted(wt, tt - band, side="left")
    hi = np.searchsorted(wt, tt + band, side="right")
    # Row r = r tokens consumed; its j range follows the band of token r-1.
    low = np.empty(n + 1, dtype=np.int64)
    high = np.empty(n + 1, dtype=np.int64)
    low[0], high[0] = 0, hi[0]
    low[1:], high[1:] = lo, hi
    high[n] = m
    low = np.maximum.accumulate(low)
    high = np.maximum.accumulate(np.maximum(high, low))
    for r in range(n, 0, -1):  # words between two bands are skipped in the earlier row
        high[r - 1] = max(high[r - 1], low[r])
    high = np.minimum(high, m)
    low = np.minimum(low, high)

    sim_cache: dict[tuple[str, str], float] = {}
    inf = float("inf")
    cost: list[np.ndarray] = []
    back: list[np.ndarray] = []  # 0 diag, 1 up (skip token), 2 left (skip word)
    row0 = np.arange(high[0] - low[0] + 1, dtype=np.float64) + low[0]
    cost.append(row0)
    back.append(np.full(len(row0), 2, dtype=np.int8))
    for r in range(1, n + 1):
        i = r - 1
        lr, hr = int(low[r]), int(high[r])
        pl_, ph = int(low[r - 1]), int(high[r - 1])
        prev = cost[r - 1]
        cur = np.full(hr - lr + 1, inf)
        ptr = np.zeros(hr - lr + 1, dtype=np.int8)
        for j in range(lr, hr + 1):
            best, arg = inf, 0
            if pl_ <= j <= ph:  # skip token i
                best, arg = prev[j - pl_] + 1.0, 1
            if j >= 1 and pl_ <= j - 1 <= ph:  # token i <-> word j-1
                key = (tok[i], words[j - 1])
                s = sim_cache.get(key)
                if s is None:
                    s = sim_cache[key] = similarity(*key)
                c = prev[j - 1 - pl_] + 2.0 * (1.0 - s) + 0.5 * min(
                    1.0, abs(wt[j - 1] - tt[i]) / max(band[i], 1e-6))
                if c < best:
                    best, arg = c, 0
            if j > lr and cur[j - 1 - lr] + 1.0 < best:  # skip word j-1
                best, arg = cur[j - 1 - lr] + 1.0, 2
            cur[j - lr], ptr[j - lr] = best, arg
        cost.append(cur)
        back.append(ptr)
    out: list[tuple[int, float] | None] = [None] * n
    r, j = n, m
    while r > 0 or j > 0:
        op = int(back[r][j - int(low[r])]) if r > 0 else 2
        if op == 0:
            out[r - 1] = (j - 1, sim_cache[(tok[r - 1], words[j - 1])])
            r, j = r - 1, j - 1
        elif op == 1:
            r -= 1
        else:
            j -= 1
    return out


# --- forced alignment: pocketsphinx -----------------------------------------------------------

_IPA_MULTI = {"aɪ": "AY", "aʊ": "AW", "eɪ": "EY", "oʊ": "OW", "ɔɪ": "OY", "tʃ": "CH",
              "dʒ": "JH", "ɜː": "ER", "əʊ": "OW"}
_IPA = {"a": "AA", "æ": "AE", "ɑ": "AA", "ɒ": "AA", "ɔ": "AO", "ə": "AH", "ʌ": "AH",
        "ɐ": "AH", "ɛ": "EH", "e": "EY", "ɪ": "IH", "ᵻ": "IH", "i": "IY", "ʊ": "UH",
        "u": "UW", "o": "OW", "ɚ": "ER", "ɝ": "ER", "ɜ": "ER", "b": "B", "d": "D", "f": "F",
        "ɡ": "G", "g": "G", "h": "HH", "j": "Y", "k": "K", "l": "L", "m": "M", "n": "N",
        "ŋ": "NG", "p": "P", "ɹ": "R", "r": "R", "s": "S", "ʃ": "SH", "t": "T", "θ": "TH",
        "ð": "DH", "v": "V", "w": "W", "z": "Z", "ʒ": "ZH", "ɾ": "T", "x": "K", "ç": "HH",
        "ɬ": "L", "ʍ": "W", "ɫ": "L", "y": "UW", "ø": "ER", "œ": "ER"}
_LETTERS = {"a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH",
            "i": "IY", "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "OW", "p": "P",
            "q": "K", "r": "R", "s": "S", "t": "T", "u": "UW", "v": "V", "w": "W", "x": "K S",
            "y": "Y", "z": "Z"}


def ipa_to_arpabet(ipa: str) -> list[str]:
    """espeak IPA -> CMU phones (stress and length marks dropped)."""
    s = re.sub(r"[ˈˌ\u0329\u032f\u0361]", "", ipa)
    out: list[str] = []
    i = 0
    while i < len(s):
        two = s[i:i + 2]
        if two in _IPA_MULTI:
            out.append(_IPA_MULTI[two])
            i += 2
            continue
        ph = _IPA.get(s[i])
        if ph and not (out and out[-1] == ph and ph == "R"):  # espeak doubles rhotic r
            out.append(ph)
        i += 1
    return out


def guess_phones(word: str) -> list[str]:
    """Pronunciation of a word missing from CMUdict (names!): espeak-ng, else letters."""
    try:
        from piper.phonemize_espeak import EspeakPhonemizer

        phon = EspeakPhonemizer().phonemize("en-us", word)
        phones = ipa_to_arpabet("".join("".join(p) for p in phon))
        if phones:
            return phones
    except Exception:  # espeak missing or refuses the word: fall back to letters
        pass
    phones = []
    for ch in word.lower():
        phones.extend(_LETTERS.get(ch, "").split())
    return phones or ["AH"]


class SphinxAligner:
    """Word-level forced alignment with pocketsphinx's bundled US-English model.

    One decoder per instance (~0.1 s to build); each call aligns one short window.
    """

    def __init__(self) -> None:
        from pocketsphinx import Decoder, get_model_path

        self.decoder = Decoder(hmm=get_model_path("en-us/en-us"),
                               dict=get_model_path("en-us/cmudict-en-us.dict"),
                               lm=None, loglevel="FATAL")
        self._known: set[str] = set()

    def _ensure(self, token: str) -> str:
        word = token
        if word in self._known:
            return word
        if self.decoder.lookup_word(word) is None:
            self.decoder.add_word(word, " ".join(guess_phones(word)), True)
        self._known.add(word)
        return word

    def align(self, samples: np.ndarray, start: float, end: float,
              toks: Sequence[str]) -> list[tuple[float, float]] | None:
        """Episode times of each token inside [start, end], or None if alignment fails."""
        if not toks or end - start < 0.1:
            return None
        try:
            text = " ".join(self._ensure(t) for t in toks)
            a, b = max(0, int(start * SAMPLE_RATE)), int(end * SAMPLE_RATE)
            pcm = (np.clip(samples[a:b], -1, 1) * 32767).astype(np.int16).tobytes()
            d = self.decoder
            d.set_align_text(text)
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            segs = [(re.sub(r"\(\d+\)$", "", s.word), s.start_frame, s.end_frame)
                    for s in (d.seg() or [])]
        except RuntimeError:
            return None
        got = [(a / SAMPLE_RATE + f0 / 100.0, a / SAMPLE_RATE + (f1 + 1) / 100.0)
               for w, f0, f1 in segs if not w.startswith(("<", "["))]
        return got if len(got) == len(toks) else None


# --- forced alignment: Montreal Forced Aligner (optional) ---------------------------------------


def mfa_available() -> str | None:
    """Path of the `mfa` executable, if installed (it lives in its own conda env)."""
    return shutil.which("mfa")


def mfa_align(samples: np.ndarray, windows: Sequence[tuple[float, float, Sequence[str]]],
              dictionary: str, acoustic_model: str,
              exe: str = "mfa") -> list[list[tuple[float, float]] | None]:
    """Align many short windows in one MFA run; None for a window MFA could not align."""
    import soundfile as sf

    results: list[list[tuple[float, float]] | None] = [None] * len(windows)
    with tempfile.TemporaryDirectory(prefix="voice-assets-mfa-") as tmp:
        corpus, out = Path(tmp) / "corpus" / "spk", Path(tmp) / "out"
        corpus.mkdir(parents=True)
        for i, (s, e, toks) in enumerate(windows):
            sf.write(corpus / f"w{i:05d}.wav",
                     samples[int(s * SAMPLE_RATE): int(e * SAMPLE_RATE)], SAMPLE_RATE)
            (corpus / f"w{i:05d}.lab").write_text(" ".join(toks), encoding="utf-8")
        proc = subprocess.run(
            [exe, "align", "--clean", "--single_speaker", "--output_format", "json",
             str(corpus.parent), dictionary, acoustic_model, str(out)],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"mfa align failed: {proc.stderr.strip()[-500:]}")
        for i, (s, _e, toks) in enumerate(windows):
            files = list(out.rglob(f"w{i:05d}.json"))
            if not files:
                continue
            entries = json.loads(files[0].read_text())["tiers"]["words"]["entries"]
            got = [(s + float(a), s + float(b)) for a, b, lab in entries if lab]
            results[i] = got if len(got) == len(toks) else None
    return results


# --- line re-timing -----------------------------------------------------------------------------


def _vad_coverage(regions: np.ndarray, s: float, e: float) -> float:
    if e <= s or len(regions) == 0:
        return 0.0
    inter = np.clip(np.minimum(regions[:, 1], e) - np.maximum(regions[:, 0], s), 0, None)
    return float(inter.sum() / (e - s))


def _snap_to_vad(regions: np.ndarray, s: float, e: float, tol: float = 0.5) -> tuple[float, float]:
    """Snap line edges to the nearest voice-activity onset/offset (no words to go by)."""
    if len(regions) == 0:
        return s, e
    on = regions[np.argmin(np.abs(regions[:, 0] - s)), 0]
    off = regions[np.argmin(np.abs(regions[:, 1] - e)), 1]
    s2 = float(on) if abs(on - s) <= tol else s
    e2 = float(off) if abs(off - e) <= tol else e
    return (s2, e2) if e2 > s2 else (s, e)


def _clip_to_vad(times: list[tuple[float, float]], regions: np.ndarray,
                 tol: float = 0.05) -> list[tuple[float, float]]:
    """Pull a line's outer edges back inside the voice activity they belong to.

    Forced alignment has to put the last word's end somewhere; over music or noise (no
    clean silence to fall into) it stretches that word to the window's edge, sometimes into
    the next speaker's region. Voice activity knows where the voice stopped.
    """
    if len(regions) == 0 or not times:
        return times
    out = list(times)

    def region_of(t: float) -> np.ndarray | None:
        hit = regions[(regions[:, 0] - tol <= t) & (t <= regions[:, 1] + tol)]
        return hit[0] if len(hit) else None

    s0, e0 = out[0]
    home = region_of(min(e0, s0 + 0.1))  # the region the first word's body is in
    if home is not None and s0 < home[0] - tol and home[0] < e0:
        out[0] = (float(home[0]), e0)
    s1, e1 = out[-1]
    home = region_of(max(s1, e1 - 0.1) if e1 - s1 < 0.2 else s1 + 0.1)
    if home is not None and e1 > home[1] + tol and home[1] > s1:
        out[-1] = (s1, float(home[1]))
    return out


def _trim_edges(samples: np.ndarray | None, times: list[tuple[float, float]],
                options: AlignOptions, frame_s: float = 0.01) -> list[tuple[float, float]]:
    """Move a line's outer edges inward to where the voice really starts and stops.

    Forced alignment and ASR both let the first/last word swallow some quiet around it.
    On the vocal stem, the first run of ``trim_silence_s`` more than ``trim_drop_db`` below
    the line's loud frames after the last word's onset is where it ended (the closure of a
    final stop consonant is shorter than that); the start is found the same way, backwards.
    """
    if samples is None or not times or options.trim_silence_s <= 0:
        return times
    drop_db, min_silence_s = options.trim_drop_db, options.trim_silence_s
    out = list(times)
    s0, e_last = out[0][0], out[-1][1]
    a, b = max(0, int(s0 * SAMPLE_RATE)), min(len(samples), int(e_last * SAMPLE_RATE))
    hop = int(frame_s * SAMPLE_RATE)
    n = (b - a) // hop
    if n < 10:
        return out
    x = samples[a:a + n * hop].astype(np.float64).reshape(n, hop)
    level = 10 * np.log10((x ** 2).mean(axis=1) + 1e-12)
    quiet = level < np.percentile(level, 95) - drop_db
    need = max(1, round(min_silence_s / frame_s))

    def first_run(idx: range) -> int | None:
        count = 0
        for f in idx:
            count = count + 1 if quiet[f] else 0
            if count >= need:
                return f - (need - 1) * (1 if idx.step > 0 else -1)
        return None

    ls, le = out[-1]
    f0 = int((min(ls + 0.1, (ls + le) / 2) - s0) / frame_s)
    f = first_run(range(max(f0, 0), n, 1))
    if f is not None:
        out[-1] = (ls, max(ls + 0.05, min(le, s0 + f * frame_s)))
    fs, fe = out[0]
    f1 = int((max(fe - 0.1, (fs + fe) / 2) - s0) / frame_s)
    f = first_run(range(min(f1, n - 1), -1, -1))
    if f is not None:
        new_start = s0 + (f + 1) * frame_s
        out[0] = (min(max(fs, new_start), out[0][1] - 0.05), out[0][1])
    return out


def _spread(times: list[tuple[float, float] | None], toks: Sequence[str], start: float,
            end: float) -> list[tuple[float, float]]:
    """Fill in times of tokens that matched nothing, proportionally to their length."""
    n = len(times)
    weights = [len(t) + 1.0 for t in toks]
    out: list[tuple[float, float]] = []
    i = 0
    while i < n:
        if times[i] is not None:
            out.append(times[i])  # type: ignore[arg-type]
            i += 1
            continue
        k = i
        while k < n and times[k] is None:
            k += 1
        lo = out[-1][1] if out else start
        hi = times[k][0] if k < n else end  # type: ignore[index]
        if hi < lo:
            hi = lo
        total = sum(weights[i:k])
        t = lo
        for q in range(i, k):
            d = (hi - lo) * weights[q] / total
            out.append((t, t + d))
            t += d
        i = k
    return out


def _estimate_edges(match: list[tuple[int, float] | None], toks: Sequence[str],
                    spans: Sequence[tuple[float, float]], per_char: float = 0.065,
                    ) -> tuple[float, float]:
    """Line start/end from its matched words, extrapolating over unmatched edge tokens."""
    idx = [k for k, m in enumerate(match) if m is not None]
    first, last = idx[0], idx[-1]
    s = spans[match[first][0]][0] - sum(per_char * (len(t) + 1) for t in toks[:first])  # type: ignore[index]
    e = spans[match[last][0]][1] + sum(per_char * (len(t) + 1) for t in toks[last + 1:])  # type: ignore[index]
    return s, e


def _pieces(text: str) -> list[tuple[str, int]]:
    """The text's words (whitespace words; morphemes for Japanese) with their token counts."""
    if japanese.has_cjk(text):
        return japanese.word_pieces(text)
    return [(raw, len(tokens(raw))) for raw in text.split()]


def _line_words(text: str, tok_times: Sequence[tuple[float, float]],
                scores: Sequence[float]) -> list[Word]:
    """Per word of the subtitle text: its tokens' span; punctuation-only words join their
    neighbour so the words still spell the whole text."""
    out: list[Word] = []
    k = 0
    pending = ""
    for raw, n in _pieces(text):
        if n == 0:
            if out:
                last = out[-1]
                out[-1] = Word(f"{last.word} {raw}", last.start, last.end, last.score)
            else:
                pending = f"{pending}{raw} "
            continue
        span = tok_times[k:k + n]
        if not span:  # cannot happen while tokens() is applied alike; never index past
            span = [tok_times[-1]]
        sc = float(np.mean(scores[k:k + n] or [0.0]))
        out.append(Word(pending + raw, float(span[0][0]), float(max(p[1] for p in span)), sc))
        pending = ""
        k += n
    if pending and out:
        last = out[-1]
        out[-1] = Word(f"{last.word} {pending.strip()}", last.start, last.end, last.score)
    return out


def _clean_times(times: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Monotone, non-negative word spans rounded to the millisecond (interpolation can
    produce tiny inversions; ids derive from start milliseconds)."""
    out: list[tuple[float, float]] = []
    prev = 0.0
    for s, e in times:
        s = round(max(s, prev, 0.0), 3)
        e = round(max(e, s), 3)
        out.append((s, e))
        prev = s
    return out


@dataclass
class _Work:
    """A line being re-timed: tokens, their current times, and how they were found."""

    idx: int
    toks: list[str]
    times: list[tuple[float, float]]
    scores: list[float]
    est: tuple[float, float]
    matched: float  # summed similarity of matched tokens
    refined: bool = False


def _refine(work: list[_Work], samples: np.ndarray | None, regions: np.ndarray,
            options: AlignOptions, duration: float, progress: Progress) -> tuple[str, int]:
    """Forced alignment of each line in a window around its estimate; edges only move
    when the aligner agrees with the estimate to within max_refine_shift_s."""
    if samples is None or not work:
        return "none", 0
    order = sorted(range(len(work)), key=lambda k: work[k].est[0])
    windows: list[tuple[float, float, Sequence[str]]] = []
    for pos, k in enumerate(order):
        s, e = work[k].est
        lo, hi = max(0.0, s - options.pad_s), min(duration, e + options.pad_s)
        if pos > 0:
            prev_end = work[order[pos - 1]].est[1]
            if prev_end <= s:
                lo = max(lo, prev_end)
        if pos + 1 < len(order):
            next_start = work[order[pos + 1]].est[0]
            if next_start >= e:
                hi = min(hi, next_start)
        windows.append((lo, hi, work[k].toks))
    refiner = "none"
    results: list[list[tuple[float, float]] | None] = [None] * len(windows)
    exe = mfa_available() if options.mfa else None
    if exe:
        try:
            results = mfa_align(samples, windows, options.mfa_dictionary,
                                options.mfa_acoustic_model, exe)
            refiner = "mfa"
        except (RuntimeError, OSError, KeyError, ValueError):
            results = [None] * len(windows)
    if refiner == "none" and options.pocketsphinx:
        aligner = SphinxAligner()
        for q, (lo, hi, toks) in enumerate(windows):
            results[q] = aligner.align(samples, lo, hi, toks)
            progress("forced alignment", q + 1, len(windows))
        refiner = "pocketsphinx"
    n_ok = 0
    for k, got in zip(order, results, strict=True):
        if not got:
            continue
        w = work[k]
        s, e = w.est
        if abs(got[0][0] - s) > options.max_refine_shift_s or abs(
                got[-1][1] - e) > options.max_refine_shift_s:
            continue
        w.times, w.refined = _clip_to_vad(list(got), regions), True
        n_ok += 1
    return refiner, n_ok


def _shown_together(lines: Sequence[SubLine], dialogue: Sequence[int]) -> set[int]:
    """Dialogue lines (indices into ``lines``) whose subtitle times share CUE_OVERLAP_MIN_S or
    more with another dialogue line: two lines on screen at once. Signs
    and songs over a line do not count."""
    together = shared_time([(lines[k].start, lines[k].end) for k in dialogue])
    return {dialogue[i] for i in together}


def align_subtitles(lines: Sequence[SubLine], words: Sequence[Word],
                    samples: np.ndarray | None, regions: Sequence[tuple[float, float]],
                    language: str | None = "en", options: AlignOptions | None = None,
                    progress: Progress = silent) -> AlignmentResult:
    """Re-time subtitle lines to the audio (see the module docstring for the method)."""
    options = options or AlignOptions()
    reg = np.asarray(sorted(regions), dtype=np.float64).reshape(-1, 2)
    duration = len(samples) / SAMPLE_RATE if samples is not None else max(
        [ln.end for ln in lines] + [w.end for w in words] + [0.0])
    kinds = [classify_line(ln.text, ln.style, ln.effect, ln.raw) for ln in lines]
    dialogue = [k for k, ln in enumerate(lines) if kinds[k] == "dialogue" and tokens(ln.text)]
    dialogue.sort(key=lambda k: (lines[k].start, lines[k].line))
    shown_together = _shown_together(lines, dialogue)

    # 1. Subtitle tokens with their naive times (spread over the line by length).
    tok: list[str] = []
    tok_time: list[float] = []
    tok_line: list[int] = []
    tok_band: list[float] = []
    for k in dialogue:
        ln = lines[k]
        toks = tokens(ln.text)
        weights = np.cumsum([0.0] + [len(t) + 1.0 for t in toks])
        dur = max(ln.end - ln.start, 0.0)
        for q, t in enumerate(toks):
            tok.append(t)
            tok_time.append(ln.start + dur * (weights[q] + weights[q + 1]) / 2 / weights[-1])
            tok_line.append(k)
            tok_band.append(options.band_s + dur / 2)
    asr_tok, asr_span = asr_tokens(words)
    asr_mid = [(s + e) / 2 for s, e in asr_span]

    # 2. Global time map, 3. banded alignment.
    tmap = estimate_time_map(list(zip(tok_time, tok, strict=True)),
                             list(zip(asr_mid, asr_tok, strict=True)))
    mapped = [tmap(t) for t in tok_time]
    progress("align tokens", 0, 1)
    match = align_tokens(tok, mapped, tok_band, asr_tok, asr_mid) if tok else []
    progress("align tokens", 1, 1)

    # 4. Per line: estimate from matched words.
    by_line: dict[int, list[int]] = {}
    for q, k in enumerate(tok_line):
        by_line.setdefault(k, []).append(q)
    work: list[_Work] = []
    n_matched_tok = 0
    for k in dialogue:
        qs = by_line[k]
        toks = [tok[q] for q in qs]
        m: list[tuple[int, float] | None] = []
        for q in qs:
            mq = match[q]
            if mq is not None and mq[1] >= options.match_similarity:
                m.append(mq)
            else:
                m.append(None)
        n_matched_tok += sum(1 for x in m if x is not None)
        ln = lines[k]
        s_map, e_map = tmap(ln.start), tmap(ln.end)
        if any(x is not None for x in m):
            est = _estimate_edges(m, toks, asr_span)
            est = (max(0.0, est[0]), min(duration, max(est[1], est[0] + 0.05)))
            known = [asr_span[x[0]] if x else None for x in m]
            times = _spread(known, toks, est[0], est[1])
            scores = [x[1] if x else 0.0 for x in m]
            matched = sum(scores)
        else:
            if _vad_coverage(reg, s_map, e_map) < options.no_speech_vad_ratio:
                kinds[k] = "no_speech"
                continue
            est = _snap_to_vad(reg, max(0.0, s_map), min(duration, e_map))
            times = _spread([None] * len(toks), toks, est[0], est[1])
            scores, matched = [0.0] * len(toks), 0.0
        work.append(_Work(k, toks, times, scores, est, matched))

    # 5. Forced alignment of the edges (English only: the acoustic model is US English).
    english = (language or "en").lower().startswith("en")
    refiner, n_ref = _refine(work if english else [], samples, reg, options, duration,
                             progress)

    out: list[AlignedLine] = []
    done = {w.idx: w for w in work}
    for k, ln in enumerate(lines):
        kind = kinds[k]
        w = done.get(k)
        if w is None:  # songs, signs, no speech, empty text: keep the (mapped) subtitle time
            s, e = max(0.0, tmap(ln.start)), max(0.0, tmap(ln.end))
            out.append(AlignedLine(ln.line, s, max(e, s), ln.text, [], "subtitle",
                                   kind if kind != "dialogue" else "no_speech", ln.name,
                                   s - ln.start, 0.0))
            continue
        times = _clean_times(_trim_edges(samples, w.times, options))
        lw = _line_words(ln.text, times, w.scores)
        s, e = lw[0].start, lw[-1].end
        conf = w.matched / len(w.toks)
        conf = min(1.0, conf + (0.1 if w.refined else 0.0))
        out.append(AlignedLine(ln.line, s, e, ln.text, lw, "subtitle", "dialogue", ln.name,
                               s - ln.start, round(conf, 4), k in shown_together))
    out.sort(key=lambda a: (a.start, a.line))
    return AlignmentResult(
        out, tmap, refiner, n_matched_tok / len(tok) if tok else 0.0, n_ref,
        stats={"tokens": len(tok), "asr_words": len(asr_tok), "matched_tokens": n_matched_tok})


def asr_lines(segments: Sequence[Segment], samples: np.ndarray | None,
              regions: Sequence[tuple[float, float]] = (), language: str | None = "en",
              options: AlignOptions | None = None,
              progress: Progress = silent) -> AlignmentResult:
    """Without subtitles the ASR segments are the lines; forced alignment tightens their
    edges (English)."""
    options = options or AlignOptions()
    duration = len(samples) / SAMPLE_RATE if samples is not None else max(
        [s.end for s in segments] + [0.0])
    work: list[_Work] = []
    keep: list[tuple[Segment, list[Word]]] = []
    for idx, seg in enumerate(segments):
        ws = [w for w in seg.words if tokens(w.word)]
        if not ws:
            continue
        toks = [tokens(w.word)[0] for w in ws]
        keep.append((seg, ws))
        work.append(_Work(idx, toks, [(w.start, w.end) for w in ws], [w.score for w in ws],
                          (ws[0].start, ws[-1].end), 0.0))
    english = (language or "en").lower().startswith("en")
    reg = np.asarray(sorted(regions), dtype=np.float64).reshape(-1, 2)
    refiner, n_ref = _refine(work if english else [], samples, reg, options, duration,
                             progress)
    out: list[AlignedLine] = []
    for i, ((seg, ws), w) in enumerate(zip(keep, work, strict=True)):
        times = _clean_times(_trim_edges(samples, w.times, options))
        lw = [Word(x.word, t[0], t[1], x.score) for x, t in zip(ws, times, strict=True)]
        kind = "song" if any(c in _MUSIC_CHARS for c in seg.text) else "dialogue"
        conf = float(np.mean([x.score for x in ws])) * (1.0 - seg.no_speech_prob)
        out.append(AlignedLine(i, lw[0].start, lw[-1].end, seg.text, lw, "asr", kind, None,
                               None, round(conf, 4)))
    return AlignmentResult(out, TimeMap(), refiner, 1.0, n_ref,
                           stats={"tokens": sum(len(w.toks) for w in work)})


def aligned_frame(episode: str, result: AlignmentResult) -> pl.DataFrame:
    """The `aligned_transcript` table."""
    rows = [{
        "episode": episode, "line": a.line, "start": a.start, "end": a.end, "text": a.text,
        "words": [w.as_dict() for w in a.words], "text_source": a.text_source, "kind": a.kind,
        "name": a.name, "drift_s": a.drift_s, "confidence": a.confidence,
        "overlaps_other": a.overlaps_other,
    } for a in result.lines]
    return pl.DataFrame(rows, schema=ALIGNED_SCHEMA)


def subtitle_lines(df: pl.DataFrame) -> list[SubLine]:
    """SubLines from an `episode_subtitles` table, with raw override tags when the file
    is readable."""
    if df.is_empty():
        return []
    raw: dict[tuple[int, int, str], str] = {}
    if "source_path" in df.columns:
        for path in df.get_column("source_path").drop_nulls().unique().to_list():
            raw.update(raw_event_text(path))
    out = []
    for r in df.sort("line").iter_rows(named=True):
        key = (round(r["start"] * 1000), round(r["end"] * 1000), _squash(r["text"] or ""))
        out.append(SubLine(int(r["line"]), float(r["start"]), float(r["end"]), r["text"] or "",
                           r.get("name") or None, r.get("style"), r.get("effect"), raw.get(key)))
    return out


def drift_summary(df: pl.DataFrame) -> dict[str, float]:
    """Median/p90 absolute drift of aligned subtitle dialogue lines (seconds)."""
    d = df.filter((pl.col("text_source") == "subtitle") & (pl.col("kind") == "dialogue")
                  & (pl.col("confidence") > 0))
    if d.is_empty():
        return {"drift_lines": 0, "median_abs_drift_s": 0.0, "p90_abs_drift_s": 0.0,
                "median_drift_s": 0.0}
    v = d.get_column("drift_s").to_numpy()
    return {"drift_lines": len(v), "median_abs_drift_s": float(np.median(np.abs(v))),
            "p90_abs_drift_s": float(np.quantile(np.abs(v), 0.9)),
            "median_drift_s": float(np.median(v))}


def kind_counts(result: AlignmentResult) -> dict[str, int]:
    return dict(Counter(a.kind for a in result.lines))
