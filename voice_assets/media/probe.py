"""Probe a media file with PyAV: container, streams, languages, duration, and the audio to use.

Probing is where bad input is refused, before anything is decoded or written: an empty file,
something that is not media, a file without audio, or a file cut short (its header promises
more than its data holds) each raise MediaError naming the file and the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from voice_assets.errors import MediaError

# Preference for the audio track (and sidecar subtitles): original Japanese, then English.
DEFAULT_LANGUAGES: tuple[str, ...] = ("jpn", "ja", "eng", "en")

# Containers whose header states the duration; for them a shortfall of data means truncation.
# (MPEG-TS and MP3 durations are estimates from the data itself, so they cannot be checked.)
HEADER_DURATION_FORMATS = frozenset({"matroska", "webm", "mov", "mp4", "m4a", "avi"})

_SUFFIX_NAMES = {".mkv": "matroska", ".webm": "webm", ".mp4": "mp4", ".m4a": "m4a"}


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    language: str | None
    sample_rate: int
    channels: int
    default: bool
    commentary: bool
    title: str | None


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    size_bytes: int
    container: str
    duration_s: float
    has_video: bool
    width: int | None
    height: int | None
    fps: float | None
    video_codec: str | None
    audio_streams: tuple[AudioStream, ...]
    audio: AudioStream
    audio_choice: str  # why this stream was chosen, for run metadata

    @property
    def duration_from_header(self) -> bool:
        return self.container in HEADER_DURATION_FORMATS


def open_media(path: Path) -> av.container.InputContainer:
    """av.open with the failure explained: empty, text, truncated MP4 or unreadable."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if size == 0:
        raise MediaError(path, "empty file (0 bytes); was the copy interrupted?")
    try:
        return av.open(str(path), metadata_errors="replace")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(path, _diagnose_unreadable(path, exc)) from exc


def _diagnose_unreadable(path: Path, exc: Exception) -> str:
    with path.open("rb") as f:
        head = f.read(4096)
    if head[4:8] == b"ftyp":
        return (
            "MP4/MOV file whose index (moov atom) cannot be read; the file is probably "
            f"truncated (interrupted download or copy) [{exc}]"
        )
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return f"Matroska file that cannot be opened; it is corrupt or truncated [{exc}]"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and (not text or text.isprintable() or "\n" in text):
        return (
            f"not a media file: it contains plain text ({text[:40]!r}...), not audio or video, "
            "although its name ends in " + path.suffix
        )
    return f"not a readable audio/video file (FFmpeg: {exc})"


def container_name(container: av.container.InputContainer, path: Path) -> str:
    """Short container name: 'matroska', 'webm', 'mp4', 'mpegts', 'wav', ... ."""
    names = container.format.name.split(",")
    alias = _SUFFIX_NAMES.get(path.suffix.lower())
    return alias if alias in names else names[0]


def _language(stream: av.stream.Stream) -> str | None:
    lang = (stream.metadata.get("language") or "").strip().lower()
    return None if lang in {"", "und", "unk", "unknown", "zxx", "mis"} else lang


# ISO 639-1 -> 639-2 for the languages series are commonly dubbed or subtitled in, so that a
# preference written either way matches a track tagged either way.
_ISO639_2 = {
    "ja": "jpn", "en": "eng", "zh": "zho", "chi": "zho", "ko": "kor", "fr": "fra", "fre": "fra",
    "de": "deu", "ger": "deu", "es": "spa", "it": "ita", "pt": "por", "ru": "rus", "pl": "pol",
    "nl": "nld", "dut": "nld", "sv": "swe", "ar": "ara", "th": "tha", "vi": "vie", "id": "ind",
}


def _base_language(tag: str) -> str:
    base = tag.lower().replace("_", "-").split("-")[0]
    return _ISO639_2.get(base, base)


def iso639_1(tag: str | None) -> str | None:
    """The two-letter code of a track tag ('jpn', 'ja-JP' -> 'ja'); None when unknown."""
    if not tag:
        return None
    base = _base_language(tag)
    for short, long in _ISO639_2.items():
        if len(short) == 2 and long == base:
            return short
    return base if len(base) == 2 else None


def language_matches(language: str | None, wanted: str) -> bool:
    """'jpn' matches 'ja', 'ja-JP' and 'JPN'; region subtags are ignored."""
    if not language:
        return False
    return _base_language(language) == _base_language(wanted)


def choose_audio_stream(
    streams: Sequence[AudioStream], languages: Sequence[str]
) -> tuple[AudioStream, str]:
    """First preferred language present (its default, non-commentary track), else the
    container's default track, else the first one. Returns the stream and the reason."""
    if not streams:
        raise ValueError("no audio streams to choose from")

    def rank(s: AudioStream) -> tuple[bool, bool, int]:
        return (s.commentary, not s.default, s.index)

    for wanted in languages:
        matches = [s for s in streams if language_matches(s.language, wanted)]
        if matches:
            return min(matches, key=rank), f"preferred language '{wanted}'"
    defaults = [s for s in streams if s.default and not s.commentary]
    if defaults:
        return defaults[0], "no preferred language present; container's default track"
    plain = [s for s in streams if not s.commentary] or list(streams)
    return plain[0], "no preferred language present; first audio track"


def _audio_streams(container: av.container.InputContainer) -> list[AudioStream]:
    out = []
    for s in container.streams.audio:
        ctx = s.codec_context
        if not ctx.sample_rate or not ctx.channels:
            continue  # a stream FFmpeg cannot describe cannot be decoded either
        flags = s.disposition
        title = s.metadata.get("title")
        out.append(
            AudioStream(
                index=s.index,
                codec=ctx.name,
                language=_language(s),
                sample_rate=int(ctx.sample_rate),
                channels=int(ctx.channels),
                default=bool(flags & av.stream.Disposition.default),
                commentary=bool(flags & av.stream.Disposition.comment)
                or "commentary" in (title or "").lower(),
                title=title,
            )
        )
    return out


def probe_media(path: str | Path, languages: Sequence[str] = DEFAULT_LANGUAGES) -> MediaInfo:
    """Describe the file and choose its audio stream; MediaError if it cannot be ingested."""
    path = Path(path)
    with open_media(path) as container:
        name = container_name(container, path)
        audio_streams = _audio_streams(container)
        videos = [
            s for s in container.streams.video
            if not s.disposition & av.stream.Disposition.attached_pic  # cover art is not video
        ]
        if not audio_streams:
            kinds = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams)
            raise MediaError(path, f"no audio stream (streams found: {kinds or 'none'})")
        duration = _duration(container, path)
        if name in HEADER_DURATION_FORMATS:
            _check_not_truncated(container, path, duration)
        audio, why = choose_audio_stream(audio_streams, languages)
        video = videos[0] if videos else None
        rate = (video.average_rate or video.guessed_rate) if video is not None else None
        return MediaInfo(
            path=path,
            size_bytes=path.stat().st_size,
            container=name,
            duration_s=duration,
            has_video=video is not None,
            width=int(video.codec_context.width) if video is not None else None,
            height=int(video.codec_context.height) if video is not None else None,
            fps=float(rate) if rate else None,
            video_codec=video.codec_context.name if video is not None else None,
            audio_streams=tuple(audio_streams),
            audio=audio,
            audio_choice=why,
        )


def _duration(container: av.container.InputContainer, path: Path) -> float:
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    ends = [
        float((s.start_time or 0) * s.time_base + s.duration * s.time_base)
        for s in container.streams
        if s.duration and s.time_base
    ]
    if ends:
        return max(ends)
    end = _last_packet_end(container, path, seek_to=None)  # no header: read to the end
    if not end:
        raise MediaError(path, "no duration in the header and no packets with timestamps")
    return end


def _last_packet_end(
    container: av.container.InputContainer, path: Path, seek_to: float | None
) -> float | None:
    """End time (s, from the container's start) of the last packet after ``seek_to``."""
    start = (container.start_time or 0) / av.time_base
    if seek_to is not None:
        container.seek(int((start + seek_to) * av.time_base), any_frame=False, backward=True)
    last = None
    try:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            end = float((packet.pts + (packet.duration or 0)) * packet.time_base) - start
            last = end if last is None else max(last, end)
    except (av.FFmpegError, EOFError):
        pass  # a damaged tail ends the data; what was read so far is the answer
    return last


def _check_not_truncated(
    container: av.container.InputContainer, path: Path, duration: float
) -> None:
    """The header's duration must be backed by packets near the end (cheap: one seek)."""
    try:
        end = _last_packet_end(container, path, seek_to=max(0.0, duration - 5.0))
    except (av.FFmpegError, OSError):
        return  # cannot seek: leave it to the decoder's own duration check
    tolerance = truncation_tolerance(duration)
    if end is None:
        raise MediaError(
            path,
            f"truncated: the header says {duration:.2f} s but there is no media data near the "
            "end (interrupted download or copy?)",
        )
    if end < duration - tolerance:
        raise MediaError(
            path,
            f"truncated: media data ends at {end:.2f} s but the header says {duration:.2f} s "
            "(interrupted download or copy?)",
        )


def truncation_tolerance(duration_s: float) -> float:
    """How much shorter than declared the data may be before we call the file truncated."""
    return 0.5 + 0.005 * duration_s
