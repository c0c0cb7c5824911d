"""A short multi-character episode with its ground truth, generated from scratch.

Three characters take turns (with overlaps and short interjections) over synthesised music
and sound effects; the video shows the speaker's face with a moving mouth; an .ass file
carries each line with the character in its Name field. The truth (RTTM, utterances JSON,
the clean dialogue and background tracks) lies beside it, so every stage can be scored.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from voice_assets.atomic import atomic_dir
from voice_assets.progress import Progress, silent
from voice_assets.synth import music as sfx
from voice_assets.synth.video import FPS, render
from voice_assets.synth.voices import CHARACTERS, SAMPLE_RATE, STYLES, speak

SYNTH_VERSION = 2

_LINES = (
    "I told you the door was locked before we left the station.",
    "Nobody listens to me when the weather turns bad like this.",
    "We should check the map again before it gets dark.",
    "The train to the harbor leaves in twenty minutes.",
    "My grandmother kept every letter in a wooden box.",
    "If we hurry, we can still catch the last ferry home.",
    "That noise came from the basement, not the kitchen.",
    "I found the key under the flower pot by the gate.",
    "The market opens early on Saturday mornings.",
    "Please bring the lantern and the blue blanket.",
    "Someone has been reading my notebook again.",
    "The bridge was closed after the storm last night.",
    "I think the captain knows more than he says.",
    "Let us wait here until the rain stops.",
    "The old clock in the hall stopped at midnight.",
    "You promised to help me paint the fence today.",
    "There is a light moving on the other side of the river.",
    "We need more wood for the fire before morning.",
    "Her brother works at the library near the station.",
    "I have never seen the village this quiet before.",
    "Turn left at the bakery and follow the narrow street.",
    "The letter arrived three days after she left.",
    "Keep your voice down, they might still be listening.",
    "I can hear the bells from the church on the hill.",
    "Tomorrow we will climb the tower and look for the ship.",
    "He left his bicycle in the rain again.",
    "Everyone was waiting for the doctor to come back.",
    "The garden looks beautiful after the spring rain.",
    "Did you remember to feed the cat this morning?",
    "This soup tastes much better than yesterday.",
)
_INTERJECTIONS = ("Yeah.", "What?", "Okay.", "Really?", "No way.")


@dataclass(frozen=True)
class Utterance:
    start: float
    end: float
    character: str
    text: str
    style: str
    interjection: bool = False


@dataclass
class SynthEpisode:
    """Paths of a generated episode and its truth; `utterances` are the true speaker turns."""

    video: Path
    subtitles: Path | None
    rttm: Path
    truth: Path
    dialogue_wav: Path
    background_wav: Path
    duration_s: float
    utterances: list[Utterance] = field(default_factory=list)

    @property
    def characters(self) -> list[str]:
        return sorted({u.character for u in self.utterances})

    @property
    def truth_rttm(self) -> Path:
        return self.rttm


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything that determines an episode (and its cache key)."""

    series: str = "demo"
    name: str = "Episode 01"
    seed: int = 0
    index: int = 1  # which episode of the series: selects different lines
    turns: int = 18
    interjections: int = 3
    overlaps: int = 2
    music: bool = True
    music_db: float = -14.0  # music level relative to the dialogue, RMS
    sfx: bool = True
    music_intro_s: float = 0.0
    styles: str = "neutral"  # "neutral" or "cycle" (neutral/excited/sad in turn)
    silent: bool = False
    subtitles: bool = True

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "v": SYNTH_VERSION}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _script(spec: EpisodeSpec) -> list[tuple[int, str, str, bool]]:
    """(character index, text, style, is_interjection) in speaking order."""
    rng = np.random.default_rng(spec.seed * 1000 + spec.index)
    pool = list(_LINES)
    offset = (spec.index - 1) * spec.turns
    order = [pool[(offset + i) % len(pool)] for i in range(spec.turns)]
    script: list[tuple[int, str, str, bool]] = []
    who = int(rng.integers(len(CHARACTERS)))
    for i, text in enumerate(order):
        who = (who + 1 + int(rng.integers(len(CHARACTERS) - 1))) % len(CHARACTERS)
        style = STYLES[i % len(STYLES)] if spec.styles == "cycle" else "neutral"
        script.append((who, text, style, False))
    slots = rng.choice(
        np.arange(1, len(script)), size=min(spec.interjections, len(script) - 1), replace=False
    )
    for k, slot in enumerate(sorted(slots.tolist(), reverse=True)):
        prev = script[slot - 1][0]
        who = (prev + 1 + k % (len(CHARACTERS) - 1)) % len(CHARACTERS)
        script.insert(slot, (who, _INTERJECTIONS[k % len(_INTERJECTIONS)], "neutral", True))
    return script


def _envelope(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Per-video-frame RMS, normalised to [0, 1]."""
    hop = SAMPLE_RATE // FPS
    padded = np.zeros(n_frames * hop, np.float32)
    padded[: min(audio.size, padded.size)] = audio[: padded.size]
    rms = np.sqrt(np.mean(padded.reshape(n_frames, hop) ** 2, axis=1))
    return np.clip(rms / (np.percentile(rms[rms > 0], 95) + 1e-9) if np.any(rms > 0) else rms, 0, 1)


def _write_ass(
    path: Path, utterances: Sequence[Utterance], extra_signs: bool, rng: np.random.Generator
) -> None:
    """Dialogue lines with loose, human-made timing (what aligners must fix), plus a sign."""
    import pysubs2

    subs = pysubs2.SSAFile()
    subs.styles["Sign"] = pysubs2.SSAStyle(alignment=pysubs2.Alignment.TOP_CENTER)
    for u in utterances:
        start = max(0.0, u.start - 0.12 + float(rng.uniform(-0.1, 0.1)))
        end = u.end + 0.25 + float(rng.uniform(-0.1, 0.1))
        subs.append(
            pysubs2.SSAEvent(
                start=int(start * 1000),
                end=int(end * 1000),
                text=u.text,
                name=u.character,
                style="Default",
            )
        )
    if extra_signs and utterances:
        t = utterances[0].start
        subs.append(
            pysubs2.SSAEvent(
                start=0,
                end=int(max(0.5, t) * 1000),
                text=r"{\pos(160,20)}HARBOR STATION",
                style="Sign",
            )
        )
    subs.sort()
    subs.save(str(path))


def _rttm(uri: str, utterances: Sequence[Utterance]) -> str:
    uri = uri.replace(" ", "_")  # RTTM fields are space-separated
    return "".join(
        f"SPEAKER {uri} 1 {u.start:.3f} {u.end - u.start:.3f} <NA> <NA> {u.character} <NA> <NA>\n"
        for u in utterances
    )


def generate_episode(out_dir: Path, spec: EpisodeSpec, progress: Progress = silent) -> SynthEpisode:
    """Write `<out_dir>/<spec.name>.mkv` (+ .ass and truth files); returns their paths."""
    from voice_assets.atomic import write_text, write_wav
    from voice_assets.media.encode import AudioTrack, VideoTrack, write_media

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    script = _script(spec)
    clips: list[tuple[int, np.ndarray, str, str, bool]] = []
    for i, (who, text, style, inter) in enumerate(script):
        clips.append(
            (who, speak(text, CHARACTERS[who], style, seed=spec.seed + i), text, style, inter)
        )
        progress("synthesise lines", i + 1, len(script))

    overlap_at = set(
        rng.choice(
            [i for i, c in enumerate(clips) if i > 0 and not c[4]],
            size=min(spec.overlaps, len(clips) - 1),
            replace=False,
        ).tolist()
    )
    t = 1.0 + spec.music_intro_s
    placed: list[tuple[int, np.ndarray, Utterance]] = []
    prev_end = t
    for i, (who, audio, text, style, inter) in enumerate(clips):
        dur = audio.size / SAMPLE_RATE
        if i == 0:
            start = t
        elif inter:  # interjections cut in just before the previous line ends
            start = prev_end - 0.35
        elif i in overlap_at:  # a line that starts while the previous one is finishing
            start = prev_end - 0.6
        else:
            start = prev_end + float(rng.uniform(0.35, 0.9))
        start = round(start * SAMPLE_RATE) / SAMPLE_RATE
        utt = Utterance(start, start + dur, CHARACTERS[who].name, text, style, inter)
        placed.append((who, audio, utt))
        prev_end = max(prev_end, utt.end)
    duration = prev_end + 1.5
    n = round(duration * SAMPLE_RATE)
    dialogue = np.zeros(n, np.float32)
    per_char = np.zeros((len(CHARACTERS), n), np.float32)
    for who, audio, utt in placed:
        a = round(utt.start * SAMPLE_RATE)
        dialogue[a : a + audio.size] += audio
        per_char[who, a : a + audio.size] += audio
    background = np.zeros(n, np.float32)
    if spec.music:
        bed = sfx.music(duration, SAMPLE_RATE, seed=spec.seed)
        speech_rms = np.sqrt(np.mean(dialogue[dialogue != 0] ** 2)) if np.any(dialogue) else 0.1
        bed *= speech_rms * 10 ** (spec.music_db / 20) / (np.sqrt(np.mean(bed**2)) + 1e-9)
        if spec.music_intro_s > 0:  # the intro plays louder, as an opening theme would
            ramp = np.ones(n, np.float32)
            k = int(spec.music_intro_s * SAMPLE_RATE)
            ramp[:k] = 3.0
            bed *= ramp
        background += bed
    if spec.sfx:
        speech_peak = float(np.max(np.abs(dialogue))) if np.any(dialogue) else 0.3
        for j, effect in enumerate(
            (sfx.knock(SAMPLE_RATE, spec.seed), sfx.whoosh(SAMPLE_RATE, spec.seed))
        ):
            at = int((0.3 + 0.4 * j) * duration * SAMPLE_RATE)
            end = min(n, at + effect.size)
            background[at:end] += 0.5 * speech_peak * effect[: end - at]
    mix = dialogue + background
    if spec.silent:
        mix = np.zeros(n, np.float32)
        dialogue[:] = 0
        background[:] = 0
        placed = []
    peak = float(np.max(np.abs(mix)))
    if peak > 0.95:
        scale = 0.95 / peak
        mix, dialogue, background = mix * scale, dialogue * scale, background * scale

    n_frames = int(np.ceil(duration * FPS))
    speaker_at, openness = [], np.zeros(n_frames)
    envs = [_envelope(per_char[k], n_frames) for k in range(len(CHARACTERS))]
    current = placed[0][0] if placed else 0
    for f in range(n_frames):
        sec = f / FPS
        active = [who for who, _, u in placed if u.start <= sec < u.end]
        if active:
            current = max(active, key=lambda w: envs[w][f])
        speaker_at.append(current)
        openness[f] = envs[current][f] if active else 0.0
    frames = render(speaker_at, openness)
    progress("render video", 1, 1)

    stem = spec.name
    video = out_dir / f"{stem}.mkv"
    write_media(
        video,
        [AudioTrack(mix, SAMPLE_RATE, codec="aac", language="eng", default=True)],
        VideoTrack(
            duration_s=duration,
            fps=FPS,
            width=frames[0].shape[1],
            height=frames[0].shape[0],
            codec="mpeg4",
            frames=frames,
        ),
    )
    utterances = [u for _, _, u in placed]
    subtitles = None
    if spec.subtitles and not spec.silent:
        subtitles = out_dir / f"{stem}.ass"
        _write_ass(subtitles, utterances, extra_signs=True, rng=rng)
    truth_dir = out_dir / f".{stem}.truth"
    truth_dir.mkdir(exist_ok=True)
    rttm = write_text(truth_dir / "speakers.rttm", _rttm(stem, utterances))
    truth = write_text(
        truth_dir / "utterances.json", json.dumps([asdict(u) for u in utterances], indent=1)
    )
    dialogue_wav = write_wav(truth_dir / "dialogue.wav", dialogue, SAMPLE_RATE, "FLOAT")
    background_wav = write_wav(truth_dir / "background.wav", background, SAMPLE_RATE, "FLOAT")
    progress("write episode", 1, 1)
    return SynthEpisode(
        video, subtitles, rttm, truth, dialogue_wav, background_wav, n / SAMPLE_RATE, utterances
    )


def _cache_root() -> Path:
    root = os.environ.get("VOICE_ASSETS_CACHE")
    base = (
        Path(root)
        if root
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voice-assets"
    )
    return base / "synth"


def _load(folder: Path, spec: EpisodeSpec) -> SynthEpisode:
    truth_dir = folder / f".{spec.name}.truth"
    rows = json.loads((truth_dir / "utterances.json").read_text())
    subtitles = folder / f"{spec.name}.ass"
    import soundfile as sf

    info = sf.info(str(truth_dir / "dialogue.wav"))
    return SynthEpisode(
        video=folder / f"{spec.name}.mkv",
        subtitles=subtitles if subtitles.exists() else None,
        rttm=truth_dir / "speakers.rttm",
        truth=truth_dir / "utterances.json",
        dialogue_wav=truth_dir / "dialogue.wav",
        background_wav=truth_dir / "background.wav",
        duration_s=info.frames / info.samplerate,
        utterances=[Utterance(**r) for r in rows],
    )


def cached_episode(spec: EpisodeSpec, progress: Progress = silent) -> SynthEpisode:
    """The episode for `spec` from the disk cache, generating it (atomically) when absent."""
    folder = _cache_root() / spec.key()
    if not (folder / f"{spec.name}.mkv").exists():
        with atomic_dir(folder) as tmp:
            generate_episode(tmp, spec, progress)
    return _load(folder, spec)


def demo_episode(
    inbox: Path,
    series: str = "demo",
    seed: int = 0,
    index: int = 1,
    progress: Progress = silent,
    **options: object,
) -> SynthEpisode:
    """Generate (or reuse) a demo episode and copy it into `<inbox>/<series>/`."""
    import shutil

    from voice_assets.atomic import atomic_path

    spec = EpisodeSpec(
        series=series, name=f"Episode {index:02d}", seed=seed, index=index, **options
    )  # type: ignore[arg-type]
    cached = cached_episode(spec, progress)
    folder = Path(inbox) / series
    folder.mkdir(parents=True, exist_ok=True)
    copies = [p for p in (cached.subtitles, cached.video) if p is not None]  # video last
    for src in copies:
        with atomic_path(folder / src.name) as tmp:
            shutil.copyfile(src, tmp)
    return SynthEpisode(
        folder / cached.video.name,
        folder / cached.subtitles.name if cached.subtitles else None,
        cached.rttm,
        cached.truth,
        cached.dialogue_wav,
        cached.background_wav,
        cached.duration_s,
        cached.utterances,
    )
