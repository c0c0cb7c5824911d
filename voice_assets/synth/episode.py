"""A short multi-character episode with its ground truth, generated from scratch.

Characters take turns (with overlaps and short interjections) over synthesised music and sound
effects; the video shows the speaking character's face with a moving mouth; an .ass file
carries each line with the character in its Name field. The truth (RTTM, utterances JSON/CSV,
the clean dialogue and background tracks, shots and effects) lies beside it in a hidden
`.<stem>.truth/` folder, so every stage can be scored and an inbox scan never mistakes the
truth WAVs for episodes. Same spec, same bytes of audio: episodes are cached on disk by spec.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from voice_assets.atomic import atomic_dir, atomic_path, write_text, write_wav
from voice_assets.progress import Progress, silent
from voice_assets.synth import music as score
from voice_assets.synth.script import (
    CAST,
    DEFAULT_CAST,
    ScriptLine,
    cast_language,
    write_script,
)
from voice_assets.synth.video import Frames, envelope, plan, shot_list
from voice_assets.synth.voices import STYLES, TTS_SAMPLE_RATE, Synthesizer

# Bump when the output for an unchanged spec changes: it is part of the cache key.
SYNTH_VERSION = 8
SAMPLE_RATE = 44_100
SPEECH_RMS_DB = -20.0  # each neutral line's active RMS; styles move it by their gain
LEAD_IN_S = 1.0
OUTRO_S = 2.0
_SIGNS = ("HARBOR STATION", "THE OLD LIGHTHOUSE", "MARKET STREET", "NORTH PIER", "THE BAKERY")


@dataclass(frozen=True)
class Utterance:
    """One true speaker turn: exact speech boundaries of the trimmed TTS audio in the mix."""

    start: float
    end: float
    character: str
    text: str
    style: str
    interjection: bool = False
    overlap: bool = False  # another character speaks during part of it


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything that determines an episode (and its cache key).

    ``index`` picks the lines (episodes of one series never share one); ``seed`` varies
    turn-taking, timing, music and prosody. ``styles``: "neutral", "script" (each line's
    natural style) or "cycle" (neutral, excited, sad in turn, for emotion tests).
    """

    series: str = "demo"
    name: str = "Episode 01"
    seed: int = 0
    index: int = 1
    cast: tuple[str, ...] = DEFAULT_CAST
    turns: int = 18
    interjections: int = 3
    overlaps: int = 2
    styles: str = "neutral"
    music: bool = True
    music_db: float = -14.0  # music RMS relative to the dialogue's speech RMS
    music_intro_s: float = 0.0  # music-only opening before the first line
    sfx: bool = True
    sfx_db: float = -6.0  # effect RMS relative to speech RMS
    silent: bool = False  # no dialogue, no music: an audio track of digital silence
    silent_noise_db: float | None = None  # with silent: a hiss at this dBFS (near-silence)
    silent_duration_s: float = 20.0
    subtitles: bool = True
    subtitle_timing: str = "loose"  # "loose" (human-made, off by ~0.1-0.3 s) or "exact"
    subtitle_offset_s: float = 0.0  # shift every subtitle (a badly synced release)
    signs: bool = True  # an on-screen sign line (style "Sign", no Name) in the .ass
    width: int = 320
    height: int = 240
    fps: int = 12
    container: str = "mkv"
    language: str = "eng"

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "v": SYNTH_VERSION}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Refuse specs that cannot make a sensible episode, naming the field."""
        problems = []
        if not self.name or "/" in self.name or self.name.startswith("."):
            problems.append(f"name '{self.name}' must be a plain file stem")
        unknown = [c for c in self.cast if c not in CAST]
        if unknown:
            problems.append(f"cast has unknown characters {unknown} (known: {', '.join(CAST)})")
        if len(self.cast) < 2:
            problems.append("cast needs at least 2 characters")
        if not unknown and len({CAST[c].language for c in self.cast}) > 1:
            problems.append(f"cast {list(self.cast)} mixes languages")
        if self.turns < 1 or self.interjections < 0 or self.overlaps < 0:
            problems.append("turns must be >= 1, interjections and overlaps >= 0")
        if self.styles not in ("neutral", "script", "cycle"):
            problems.append(f"styles '{self.styles}' is not 'neutral', 'script' or 'cycle'")
        if self.subtitle_timing not in ("loose", "exact"):
            problems.append(f"subtitle_timing '{self.subtitle_timing}' is not 'loose'/'exact'")
        if self.container not in ("mkv", "mp4"):
            problems.append(f"container '{self.container}' is not 'mkv' or 'mp4'")
        if self.music_intro_s < 0 or self.silent_duration_s <= 0:
            problems.append("music_intro_s must be >= 0 and silent_duration_s > 0")
        if not (64 <= self.width <= 1920 and 64 <= self.height <= 1080 and 1 <= self.fps <= 60):
            problems.append(f"picture {self.width}x{self.height}@{self.fps} is out of range")
        if problems:
            raise ValueError("invalid episode spec: " + "; ".join(problems))


@dataclass
class SynthEpisode:
    """Paths of a generated episode and its truth; `utterances` are the true speaker turns."""

    video: Path
    subtitles: Path | None
    rttm: Path
    truth: Path  # utterances JSON: a list of Utterance dicts
    dialogue_wav: Path  # clean dialogue, mono 44.1 kHz float: mix = dialogue + background
    background_wav: Path  # music + effects, mono 44.1 kHz float
    duration_s: float
    utterances: list[Utterance] = field(default_factory=list)
    meta: Path | None = None  # episode.json: spec, cast and voices, shots, effects, timings
    utterances_csv: Path | None = None
    spec: EpisodeSpec | None = None

    @property
    def characters(self) -> list[str]:
        return sorted({u.character for u in self.utterances})

    @property
    def truth_rttm(self) -> Path:
        return self.rttm

    @property
    def truth_dir(self) -> Path:
        return self.rttm.parent

    def info(self) -> dict[str, Any]:
        """The episode.json metadata (shots with face boxes, effects, voices, timings)."""
        return json.loads(Path(self.meta).read_text()) if self.meta else {}


# ---------------------------------------------------------------- audio


def _trim(x: np.ndarray, rate: int, threshold_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing silence: the kept audio's extent is the truth boundary."""
    frame = max(1, rate // 200)  # 5 ms
    n = x.size // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    if loud.size == 0:
        return x[:0]
    return x[loud[0] * frame:(loud[-1] + 1) * frame]


def _level(x: np.ndarray, rms_db: float) -> np.ndarray:
    """Scale to an active-speech RMS (frames above -40 dB of the peak) in dBFS."""
    frame = SAMPLE_RATE // 100
    n = x.size // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    active = rms[rms > rms.max() * 0.01]
    current = float(np.sqrt(np.mean(active**2)))
    out = x * (10 ** (rms_db / 20) / (current + 1e-12))
    ramp = min(out.size // 2, SAMPLE_RATE // 400)  # 2.5 ms fades: no clicks at the cut
    if ramp:
        out[:ramp] *= np.linspace(0, 1, ramp)
        out[-ramp:] *= np.linspace(1, 0, ramp)
    return out.astype(np.float32)


def _speak_all(script: list[ScriptLine], spec: EpisodeSpec,
               progress: Progress) -> list[np.ndarray]:
    seed = int(hashlib.sha256(f"{spec.series}:{spec.seed}:{spec.index}".encode()).hexdigest()[:6],
               16)
    synth = Synthesizer(seed)
    out = []
    for i, line in enumerate(script):
        style = STYLES[line.style]
        raw = synth.speak(line.text, CAST[line.character].voice, style)
        speech = _trim(raw, TTS_SAMPLE_RATE)
        speech = resample_poly(speech, SAMPLE_RATE, TTS_SAMPLE_RATE).astype(np.float32)
        out.append(_level(_trim(speech, SAMPLE_RATE), SPEECH_RMS_DB + style.gain_db))
        progress("synthesise lines", i + 1, len(script))
    return out


def _place(script: list[ScriptLine], clips: list[np.ndarray],
           start_s: float) -> list[tuple[int, Utterance]]:
    """Lay the lines on the timeline: pauses, talk-over lines, reactions during a line."""
    placed: list[tuple[int, Utterance]] = []
    end_max, last_line = start_s, None
    own_end: dict[str, float] = {}
    for line, audio in zip(script, clips, strict=True):
        if not placed:
            start = start_s
        elif line.interjection and line.overlap and last_line is not None:
            start = last_line.start + line.overlap_at * (last_line.end - last_line.start)
        elif line.overlap:
            prev = max((u for _, u in placed), key=lambda u: u.end)
            start = max(prev.start + 0.3,
                        prev.end - min(line.overlap_at, 0.4 * (prev.end - prev.start)))
        else:
            start = end_max + line.pause_s
        start = max(start, own_end.get(line.character, 0.0) + 0.15)  # nobody talks over self
        a = round(start * SAMPLE_RATE)
        utt = Utterance(a / SAMPLE_RATE, (a + audio.size) / SAMPLE_RATE, line.character,
                        line.text, line.style, line.interjection)
        placed.append((a, utt))
        end_max = max(end_max, utt.end)
        own_end[line.character] = utt.end
        if not line.interjection:
            last_line = utt
    utts = [u for _, u in placed]
    out = []
    for (a, u), other in zip(placed, range(len(utts)), strict=True):
        overlap = any(v.start < u.end and u.start < v.end for j, v in enumerate(utts)
                      if j != other)
        out.append((a, replace(u, overlap=overlap)))
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))) if x.size else 0.0


def _background(spec: EpisodeSpec, n: int, utts: list[Utterance],
                rng: random.Random) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """Stereo (2, n) music + effects at levels relative to the speech, and what was placed."""
    speech = 10 ** (SPEECH_RMS_DB / 20)
    out = np.zeros((2, n), np.float32)
    info: dict[str, Any] = {}
    if spec.music:
        theme = score.Theme.for_series(spec.series)
        bed = score.music(n / SAMPLE_RATE, SAMPLE_RATE, theme, spec.seed)
        bed *= speech * 10 ** (spec.music_db / 20) / (_rms(bed.mean(axis=0)) + 1e-12)
        gain = np.ones(n, np.float32)
        first = min((u.start for u in utts), default=n / SAMPLE_RATE)
        last = max((u.end for u in utts), default=n / SAMPLE_RATE)
        if spec.music_intro_s > 0:  # an opening theme plays up, then ducks under the lines
            top = np.float32(10 ** (8 / 20))
            a, b = round((first - 1.8) * SAMPLE_RATE), round((first - 0.3) * SAMPLE_RATE)
            gain[: max(a, 0)] = top
            if b > a:
                gain[max(a, 0):b] = np.linspace(top, 1, b - a)[max(0, -a):]
        a = round((last + 0.3) * SAMPLE_RATE)
        if a < n:  # and swells again after the last line
            gain[a:] = np.linspace(1, 10 ** (6 / 20), n - a)
        out += bed * gain
        info = {**theme.describe(), "music_db": spec.music_db}
    events: list[dict[str, Any]] = []
    if spec.sfx:
        duration = n / SAMPLE_RATE
        # One effect every ~12 s: the first ones go into long pauses, the rest anywhere.
        gaps = sorted(
            (b.start - a.end, a.end) for a, b in itertools.pairwise(utts)
            if b.start - a.end > 1.2
        )[::-1]
        count = max(2, int(duration // 12))
        kinds = list(score.EFFECTS)
        for k in range(count):
            if k < len(gaps):
                at = gaps[k][1] + 0.2
            else:
                at = rng.uniform(LEAD_IN_S + spec.music_intro_s, max(duration - 3.0, 1.0))
            kind = kinds[(k + spec.seed) % len(kinds)]
            fx = score.effect(kind, SAMPLE_RATE, spec.seed * 100 + k)
            fx *= speech * 10 ** (spec.sfx_db / 20) / (_rms(fx[np.abs(fx) > 0.01]) + 1e-12)
            s = round(at * SAMPLE_RATE)
            e = min(n, s + fx.size)
            if e <= s:
                continue
            pan = rng.uniform(-0.5, 0.5)
            theta = (pan + 1) * np.pi / 4
            out[0, s:e] += fx[: e - s] * np.float32(np.cos(theta) * np.sqrt(2))
            out[1, s:e] += fx[: e - s] * np.float32(np.sin(theta) * np.sqrt(2))
            events.append({"kind": kind, "start": s / SAMPLE_RATE, "end": e / SAMPLE_RATE})
    return out, events, info


# ---------------------------------------------------------------- truth files


def _rttm(uri: str, utterances: list[Utterance]) -> str:
    uri = uri.replace(" ", "_")  # RTTM fields are space-separated
    return "".join(
        f"SPEAKER {uri} 1 {u.start:.3f} {u.end - u.start:.3f} <NA> <NA> {u.character} <NA> <NA>\n"
        for u in utterances
    )


def _csv(utterances: list[Utterance]) -> str:
    buf = io.StringIO()
    names = [f.name for f in fields(Utterance)]
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for u in utterances:
        writer.writerow(asdict(u))
    return buf.getvalue()


def _ass(spec: EpisodeSpec, utterances: list[Utterance], rng: random.Random) -> str:
    """Dialogue lines named by character; loose timing is what human subtitlers produce
    (and aligners must fix); a sign line has no Name, as in fansub releases."""
    import pysubs2

    subs = pysubs2.SSAFile()
    subs.info["Title"] = f"{spec.series} - {spec.name}"
    subs.info["PlayResX"], subs.info["PlayResY"] = str(spec.width), str(spec.height)
    subs.styles["Default"].fontsize = 16
    subs.styles["Sign"] = pysubs2.SSAStyle(fontsize=14, alignment=pysubs2.Alignment.TOP_CENTER)
    for u in utterances:
        start, end = u.start, u.end
        if spec.subtitle_timing == "loose":
            start -= 0.12 + rng.uniform(-0.1, 0.1)
            end += 0.25 + rng.uniform(-0.1, 0.1)
        start, end = start + spec.subtitle_offset_s, end + spec.subtitle_offset_s
        subs.append(pysubs2.SSAEvent(start=max(0, round(start * 1000)),
                                     end=max(1, round(end * 1000)),
                                     text=u.text, name=u.character, style="Default"))
    if spec.signs and utterances:
        first = utterances[0].start
        sign = _SIGNS[(spec.index + spec.seed) % len(_SIGNS)]
        subs.append(pysubs2.SSAEvent(start=0, end=round(max(0.8, first) * 1000),
                                     text=r"{\an8}" + sign, style="Sign"))
    subs.sort()
    return subs.to_string("ass")


def _video_codec() -> str:
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # a PyAV build without x264
        return "mpeg4"


# ---------------------------------------------------------------- render


def _render(folder: Path, spec: EpisodeSpec, progress: Progress) -> None:
    """Write the episode and its truth into ``folder`` (a fresh directory)."""
    from voice_assets.media.encode import AudioTrack, VideoTrack, write_media

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    rng = random.Random(f"render:{spec.series}:{spec.seed}:{spec.index}")
    if spec.silent:
        script: list[ScriptLine] = []
        clips: list[np.ndarray] = []
    else:
        script = write_script(spec.cast, series=spec.series, seed=spec.seed, index=spec.index,
                              turns=spec.turns, interjections=spec.interjections,
                              overlaps=spec.overlaps, style_mode=spec.styles)  # type: ignore[arg-type]
        clips = _speak_all(script, spec, progress)
    timings["tts_s"] = time.perf_counter() - t0

    placed = _place(script, clips, LEAD_IN_S + spec.music_intro_s)
    utts = [u for _, u in placed]
    duration = max(u.end for u in utts) + OUTRO_S if utts else spec.silent_duration_s
    # Whole AAC frames (1024 samples): the decoded track is then exactly as long as the truth.
    n = int(np.ceil(duration * SAMPLE_RATE / 1024)) * 1024
    duration = n / SAMPLE_RATE
    dialogue: np.ndarray = np.zeros(n, np.float32)
    tracks: dict[str, np.ndarray] = {c: np.zeros(n, np.float32) for c in spec.cast}
    for (a, u), audio in zip(placed, clips, strict=True):
        dialogue[a:a + audio.size] += audio
        tracks[u.character][a:a + audio.size] += audio

    t1 = time.perf_counter()
    if spec.silent:
        background: np.ndarray = np.zeros((2, n), np.float32)
        events: list[dict[str, Any]] = []
        music_info: dict[str, Any] = {}
        if spec.silent_noise_db is not None:
            hiss = np.random.default_rng(spec.seed).standard_normal(n).astype(np.float32)
            level = np.float32(10 ** (spec.silent_noise_db / 20))
            background = np.stack([hiss, hiss]) * level  # RMS = silent_noise_db, mono or not
    else:
        background, events, music_info = _background(spec, n, utts, rng)
    mix = dialogue[None, :] + background
    peak = float(np.max(np.abs(mix))) if n else 0.0
    if peak > 0.95:  # scale everything alike so mix == dialogue + background still holds
        k = np.float32(0.95 / peak)
        mix, dialogue, background = mix * k, dialogue * k, background * k
        tracks = {c: t * k for c, t in tracks.items()}
    timings["mix_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    n_frames = int(np.ceil(duration * spec.fps))
    intervals: dict[str, list[tuple[float, float]]] = {}
    for u in utts:
        intervals.setdefault(u.character, []).append((u.start, u.end))
    frames = Frames(
        shots=plan(intervals, spec.cast, n_frames, spec.fps),
        openings={c: envelope(tracks[c], SAMPLE_RATE, n_frames, spec.fps) for c in spec.cast},
        faces={c: CAST[c].face for c in spec.cast},
        colors={c: CAST[c].color for c in spec.cast},
        width=spec.width, height=spec.height, title=spec.series.upper(),
        on_frame=lambda done, total: progress("render video", done, total)
        if done % (spec.fps * 5) == 0 or done == total else None,
    )
    stem = spec.name
    video = folder / f"{stem}.{spec.container}"
    write_media(
        video,
        [AudioTrack(np.ascontiguousarray(mix.T), SAMPLE_RATE, codec="aac",
                    language=spec.language, default=True)],
        VideoTrack(duration_s=n_frames / spec.fps, fps=spec.fps, width=spec.width,
                   height=spec.height, codec=_video_codec(), frames=frames),
    )
    timings["video_s"] = time.perf_counter() - t2

    truth_dir = folder / f".{stem}.truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_text(truth_dir / "speakers.rttm", _rttm(stem, utts))
    write_text(truth_dir / "utterances.json", json.dumps([asdict(u) for u in utts], indent=1))
    write_text(truth_dir / "utterances.csv", _csv(utts))
    write_wav(truth_dir / "dialogue.wav", dialogue, SAMPLE_RATE, "FLOAT")
    write_wav(truth_dir / "background.wav", background.mean(axis=0), SAMPLE_RATE, "FLOAT")
    if spec.subtitles and utts:
        write_text(folder / f"{stem}.ass", _ass(spec, utts, rng))
    timings["total_s"] = time.perf_counter() - t0
    meta = {
        "version": SYNTH_VERSION,
        "spec": asdict(spec),
        "sample_rate": SAMPLE_RATE,
        "duration_s": n / SAMPLE_RATE,
        "cast": [{"name": c, "voice": CAST[c].voice.describe(), "face": CAST[c].face}
                 for c in spec.cast],
        "speech_rms_dbfs": SPEECH_RMS_DB,
        "music": music_info,
        "sfx": events,
        "shots": [s.to_dict() for s in shot_list(frames, spec.fps)],
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    write_text(truth_dir / "episode.json", json.dumps(meta, indent=1))
    progress("write episode", 1, 1)


def _load(folder: Path, spec: EpisodeSpec) -> SynthEpisode:
    truth_dir = folder / f".{spec.name}.truth"
    rows = json.loads((truth_dir / "utterances.json").read_text())
    meta = json.loads((truth_dir / "episode.json").read_text())
    subtitles = folder / f"{spec.name}.ass"
    return SynthEpisode(
        video=folder / f"{spec.name}.{spec.container}",
        subtitles=subtitles if subtitles.exists() else None,
        rttm=truth_dir / "speakers.rttm",
        truth=truth_dir / "utterances.json",
        dialogue_wav=truth_dir / "dialogue.wav",
        background_wav=truth_dir / "background.wav",
        duration_s=float(meta["duration_s"]),
        utterances=[Utterance(**r) for r in rows],
        meta=truth_dir / "episode.json",
        utterances_csv=truth_dir / "utterances.csv",
        spec=spec,
    )


def cache_root() -> Path:
    """$VOICE_ASSETS_CACHE/synth, else ~/.cache/voice-assets/synth (XDG_CACHE_HOME honoured)."""
    root = os.environ.get("VOICE_ASSETS_CACHE")
    base = Path(root) if root else (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voice-assets")
    return base / "synth"


def _spec(spec: EpisodeSpec | None, options: dict[str, Any]) -> EpisodeSpec:
    if spec is not None and options:
        spec = replace(spec, **options)
    elif spec is None:
        known = {f.name for f in fields(EpisodeSpec)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown episode options {unknown}; known: {', '.join(sorted(known))}")
        if "cast" in options:
            options = {**options, "cast": tuple(options["cast"])}
            if "language" not in options and cast_language(options["cast"]) == "ja":
                options["language"] = "jpn"  # the audio track is tagged as a release would
        spec = EpisodeSpec(**options)
    spec.validate()
    return spec


def cached_episode(spec: EpisodeSpec | None = None, progress: Progress = silent,
                   **options: Any) -> SynthEpisode:
    """The episode for ``spec`` from the disk cache, generating it (atomically) when absent.

    The cache folder is written whole or not at all, so an interrupted run never leaves a
    half episode that a later test would trust.
    """
    spec = _spec(spec, options)
    folder = cache_root() / spec.key()
    done = folder / f".{spec.name}.truth" / "episode.json"
    if not done.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        # One renderer per spec at a time: parallel test sessions wait instead of racing.
        with open(folder.parent / f".{spec.key()}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not done.exists():
                    with atomic_dir(folder) as tmp:
                        _render(tmp, spec, progress)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return _load(folder, spec)


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def generate_episode(out_dir: str | Path, spec: EpisodeSpec | None = None, *,
                     progress: Progress = silent, cache: bool = True,
                     **options: Any) -> SynthEpisode:
    """Write ``<out_dir>/<name>.mkv`` and ``<name>.ass``, truth in ``<out_dir>/.<name>.truth/``.

    Pass an EpisodeSpec or its fields as keywords (``series=``, ``name=``, ``seed=``, ...).
    With ``cache`` the episode is rendered once per spec and copied from the cache.
    """
    spec = _spec(spec, options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not cache:
        # Render beside the target (same filesystem), publish, then drop the scratch copy.
        with tempfile.TemporaryDirectory(prefix=f".{spec.name}.render-", dir=out_dir) as tmp:
            _render(Path(tmp), spec, progress)
            _publish(_load(Path(tmp), spec), out_dir, spec)
        return _load(out_dir, spec)
    src = cached_episode(spec, progress)
    _publish(src, out_dir, spec)
    return _load(out_dir, spec)


def _publish(src: SynthEpisode, out_dir: Path, spec: EpisodeSpec) -> None:
    """Copy truth first and the video last: whoever watches for the video finds it complete."""
    with atomic_dir(out_dir / f".{spec.name}.truth") as tmp:
        for p in src.truth_dir.iterdir():
            shutil.copyfile(p, tmp / p.name)
    stale = out_dir / f"{spec.name}.ass"
    if src.subtitles is not None:
        _copy(src.subtitles, stale)
    else:
        stale.unlink(missing_ok=True)
    _copy(src.video, out_dir / src.video.name)


def demo_episode(inbox: str | Path, series: str = "demo", seed: int = 0, index: int = 1,
                 progress: Progress = silent, **options: Any) -> SynthEpisode:
    """Generate (or reuse) demo episode ``index`` and copy it into ``<inbox>/<series>/``.

    Only the video and its .ass go into the inbox (the truth stays in the cache, where an
    inbox scan cannot take its WAVs for episodes); the returned paths say where each is.
    """
    spec = _spec(None, {"series": series, "name": f"Episode {index:02d}", "seed": seed,
                        "index": index, **options})
    cached = cached_episode(spec, progress)
    folder = Path(inbox) / series
    folder.mkdir(parents=True, exist_ok=True)
    subtitles = None
    if cached.subtitles is not None:
        subtitles = folder / cached.subtitles.name
        _copy(cached.subtitles, subtitles)
    video = folder / cached.video.name
    _copy(cached.video, video)  # last: the inbox sensor sees a complete pair
    return replace(cached, video=video, subtitles=subtitles)
