"""Sidecar subtitles (ASS/SSA, SRT, WebVTT) -> plain lines with times, speaker names and styles.

Fan and broadcast subtitles come in whatever encoding their author's editor used, so the bytes
are decoded by BOM first, then as strict UTF-8, then by charset-normalizer restricted to the
encodings subtitles are actually written in (restricting it is what makes short files come out
right: unrestricted it calls Shift-JIS "mac_iceland" and CP1252 "cp1250"). pysubs2 reads the
formats; it silently folds an SRT cue with a malformed timestamp into the previous cue's text,
so timestamp lines are validated here first. One bad cue must not cost the episode its other
lines: bad cues (malformed timestamps, cues ending before they start) are left out and listed
in ``Subtitles.bad_cues``, each named by its line; a file where most cues are bad is an error
that lists them, since it is more likely the wrong file or a broken export than a typo.
"""

from __future__ import annotations

import codecs
import html
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer
import pysubs2

from voice_assets.errors import SubtitleError

# Encodings tried (after BOMs and strict UTF-8), in charset-normalizer's preference order.
CANDIDATE_ENCODINGS: tuple[str, ...] = ("utf_8", "cp932", "euc_jp", "gb18030", "big5", "cp1252")

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf_32_le"),
    (codecs.BOM_UTF32_BE, "utf_32_be"),
    (codecs.BOM_UTF8, "utf_8"),
    (codecs.BOM_UTF16_LE, "utf_16_le"),
    (codecs.BOM_UTF16_BE, "utf_16_be"),
)
_FORMATS = {".srt": "srt", ".ass": "ass", ".ssa": "ssa", ".vtt": "vtt"}
_TS = r"(?:\d+:)?\d{1,2}:\d{1,2}(?:[.,:]\d{1,3})?"
_CUE_TIMING = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}(?:\s.*)?$")
_ASS_EVENT = re.compile(r"^\s*(Dialogue|Comment)\s*:\s*[^,]*,\s*([^,]*?)\s*,\s*([^,]*?)\s*,",
                        re.IGNORECASE)
_ASS_TS = re.compile(r"^\d+:\d{1,2}:\d{1,2}(?:[.:]\d{1,3})?$")
_VTT_VOICE = re.compile(r"<v(?:\.[\w.-]+)*\s+([^>]+)>")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_SPEAKER = re.compile(r"^\s*([^\W\d][^:：\n.!?,;]{0,23}?)(?<!\d)\s*[:：]\s*(\S.*)$", re.DOTALL)
_SPACES = re.compile(r"[ \t\u3000]+")


@dataclass(frozen=True)
class SubtitleLine:
    line: int  # 0-based among kept events, in file order
    start: float
    end: float
    text: str
    name: str | None
    style: str | None
    effect: str | None


@dataclass(frozen=True)
class BadCue:
    """A cue left out of the lines, and where it is in the file."""

    where: str  # "line 7" (of the file) or "event 12" (when only the event is known)
    text: str
    reason: str

    def describe(self) -> str:
        return f"{self.where}: {self.reason}: {self.text[:60]!r}"


@dataclass(frozen=True)
class Subtitles:
    path: Path
    format: str
    encoding: str
    lines: tuple[SubtitleLine, ...]
    skipped: int  # comments, vector drawings and events without text
    bad_cues: tuple[BadCue, ...] = ()


def decode_subtitle_bytes(
    data: bytes, path: str | Path, encoding: str | None = None
) -> tuple[str, str]:
    """(text, encoding used). ``encoding`` forces one; otherwise BOM, UTF-8, then detection."""
    path = Path(path)
    if encoding:
        try:
            return data.decode(encoding).lstrip("\ufeff"), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise SubtitleError(path, f"cannot decode as {encoding}: {exc}") from exc
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(name), name + " (BOM)"
            except UnicodeDecodeError as exc:
                raise SubtitleError(
                    path, f"has a {name} byte-order mark but is not {name}: {exc}"
                ) from exc
    guess = _bomless_utf16(data)
    if guess:
        try:
            return data.decode(guess), guess
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf_8"), "utf_8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(data, cp_isolation=list(CANDIDATE_ENCODINGS)).best()
    if best is None:
        best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise SubtitleError(
            path,
            "cannot determine the text encoding (tried BOMs, UTF-8, "
            + ", ".join(CANDIDATE_ENCODINGS)
            + "); convert it to UTF-8 or set the subtitle encoding in the run config",
        )
    return str(best), best.encoding


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM shows up as a NUL in every other byte of ASCII-heavy text."""
    head = data[:4096]
    if len(head) < 8:
        return None
    even, odd = head[0::2], head[1::2]
    even_nul, odd_nul = even.count(0) / len(even), odd.count(0) / len(odd)
    if odd_nul > 0.3 and even_nul < 0.05:
        return "utf_16_le"
    if even_nul > 0.3 and odd_nul < 0.05:
        return "utf_16_be"
    return None


def subtitle_format(path: Path, text: str) -> str:
    """pysubs2 format name, from the content when it is unambiguous, else from the suffix."""
    try:
        return pysubs2.formats.autodetect_format(text)
    except pysubs2.exceptions.FormatAutodetectionError:
        fmt = _FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise SubtitleError(path, "not a subtitle file (.ass, .ssa, .srt or .vtt)") from None
        return fmt


def _seconds(ts: str) -> float:
    """'01:02:03,500', '02:03.5' or '0:02:03.50' -> seconds."""
    parts = re.split(r"[:]", ts.strip().replace(",", "."))
    if len(parts) == 4:  # h:mm:ss:cc (a colon before the fraction)
        parts = [parts[0], parts[1], f"{parts[2]}.{parts[3]}"]
    total = 0.0
    for part in parts:
        total = total * 60 + float(part)
    return total


def _backwards(start: str, end: str) -> bool:
    return _seconds(end) < _seconds(start)


def _srt_timing_problem(line: str) -> str | None:
    if not _CUE_TIMING.match(line):
        return "broken timestamp"
    start, end = (part.split()[0] for part in line.split("-->", 1))
    return "it ends before it starts" if _backwards(start, end) else None


def _drop_bad_srt_cues(text: str) -> tuple[str, list[BadCue]]:
    """The text without cues whose timing line is malformed, and those cues.

    A cue is its optional number line, the timing line and the text up to the next blank line.
    """
    lines = text.splitlines()
    keep = [True] * len(lines)
    bad: list[BadCue] = []
    for i, raw in enumerate(lines):
        line = raw.strip()
        if "-->" not in line or not line[:1].isdigit():
            continue
        reason = _srt_timing_problem(line)
        if reason is None:
            continue
        bad.append(BadCue(f"line {i + 1}", line, reason))
        first = i - 1 if i and lines[i - 1].strip().isdigit() else i
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        for k in range(first, j):
            keep[k] = False
    return "\n".join(raw for raw, k in zip(lines, keep, strict=True) if k) + "\n", bad


def _drop_bad_ass_events(text: str) -> tuple[str, list[BadCue]]:
    """The text without Dialogue/Comment events whose start or end is not a timestamp."""
    out: list[str] = []
    bad: list[BadCue] = []
    for i, raw in enumerate(text.splitlines()):
        m = _ASS_EVENT.match(raw)
        if m and not (_ASS_TS.match(m.group(2)) and _ASS_TS.match(m.group(3))):
            bad.append(BadCue(f"line {i + 1}", raw.strip(), "broken timestamp"))
            continue
        if m and _backwards(m.group(2), m.group(3)):
            bad.append(BadCue(f"line {i + 1}", raw.strip(), "it ends before it starts"))
            continue
        out.append(raw)
    return "\n".join(out) + "\n", bad


def _fmt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _is_cjk(ch: str) -> bool:
    if not ch:
        return False
    name = unicodedata.name(ch, "")
    return any(k in name for k in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "IDEOGRAPHIC",
                                   "FULLWIDTH"))


def join_lines(text: str) -> str:
    """Line breaks become a space, except between two CJK characters (no spaces there)."""
    parts = [p.strip() for p in text.split("\n")]
    out = ""
    for part in parts:
        if not part:
            continue
        if out and not (_is_cjk(out[-1]) and _is_cjk(part[0])):
            out += " "
        out += part
    return _SPACES.sub(" ", out).strip()


def split_speaker(text: str) -> tuple[str | None, str]:
    """'HARUKA: Hello' -> ('HARUKA', 'Hello'); a short name-like prefix before ':' or '：'."""
    first, sep, rest = text.partition("\n")
    m = _SPEAKER.match(first)
    if not m or len(m.group(1).split()) > 3:
        return None, text
    return m.group(1).strip(), m.group(2) + (sep + rest if sep else "")


def parse_subtitles(path: str | Path, encoding: str | None = None) -> Subtitles:
    """Read a sidecar subtitle file; SubtitleError naming the file and line if it is broken."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SubtitleError(path, f"cannot read file ({exc.strerror or exc})") from exc
    text, used = decode_subtitle_bytes(data, path, encoding)
    if not text.strip():
        return Subtitles(path, _FORMATS.get(path.suffix.lower(), "unknown"), used, (), 0)
    fmt = subtitle_format(path, text)
    bad: list[BadCue] = []
    if fmt in {"srt", "vtt"}:
        text, bad = _drop_bad_srt_cues(text)
        if fmt == "vtt":
            text = _VTT_VOICE.sub(r"\1: ", text).replace("</v>", "")
    elif fmt in {"ass", "ssa"}:
        text, bad = _drop_bad_ass_events(text)
    try:
        subs = pysubs2.SSAFile.from_string(text, format_=fmt)
    except Exception as exc:  # pysubs2 raises ValueError and its own errors alike
        raise SubtitleError(path, f"cannot parse as {fmt}: {exc}{_where(text, exc)}") from exc
    lines: list[SubtitleLine] = []
    skipped = 0
    for event in subs.events:
        if event.is_comment or event.is_drawing:
            skipped += 1
            continue
        plain = event.plaintext
        if fmt in {"srt", "vtt"}:
            plain = html.unescape(_HTML_TAG.sub("", plain))
        name: str | None = (event.name or "").strip() or None
        if name is None and fmt in {"srt", "vtt"}:
            name, plain = split_speaker(plain.strip())
        body = join_lines(plain)
        if not body:
            skipped += 1
            continue
        start, end = event.start / 1000.0, event.end / 1000.0
        if end < start:
            bad.append(BadCue(f"event {len(lines) + skipped + len(bad) + 1}",
                              f"{_fmt_time(start)} --> {_fmt_time(end)} {body}",
                              "it ends before it starts"))
            continue
        lines.append(
            SubtitleLine(
                line=len(lines),
                start=start,
                end=end,
                text=body,
                name=name,
                style=(event.style or None) if fmt in {"ass", "ssa"} else None,
                effect=(event.effect or None),
            )
        )
    if bad and len(bad) >= len(lines):
        listed = "; ".join(b.describe() for b in bad)
        raise SubtitleError(path, f"{len(bad)} of {len(bad) + len(lines)} cues are broken "
                                  f"(is this the right file?): {listed}")
    if not lines and not skipped:
        raise SubtitleError(path, f"no subtitle events found in this {fmt} file")
    return Subtitles(path, fmt, used, tuple(lines), skipped, tuple(bad))


def _where(text: str, exc: Exception) -> str:
    """' (line N)' for the line holding the value a parser error quotes, if any."""
    m = re.search(r"'([^']+)'", str(exc))
    if not m:
        return ""
    for number, raw in enumerate(text.splitlines(), start=1):
        if m.group(1) in raw:
            return f" (line {number}: {raw.strip()[:80]!r})"
    return ""
