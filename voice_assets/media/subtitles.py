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

A file that is recognisably subtitles but holds no dialogue cues (an empty file, an ASS header
without events) is not an error: the episode goes on as if it had none. Rips that merge two
tracks repeat cues; a cue with the same text as another whose time span contains it (an exact
copy included) is collapsed into that one and listed in ``Subtitles.duplicates``. Cues that
still share time with another are two lines on screen at once and are marked
``overlaps_other``, both of them.
"""

from __future__ import annotations

import codecs
import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
_SSA_SECTION = re.compile(r"^\s*\[(script info|v4\+? styles|events)\]\s*$",
                          re.IGNORECASE | re.MULTILINE)
# Two cues that share less time than this are consecutive lines with a frame or two of timing
# slop, not two lines on screen at once.
CUE_OVERLAP_MIN_S = 0.1


@dataclass(frozen=True)
class SubtitleLine:
    line: int  # 0-based among kept events, in file order
    start: float
    end: float
    text: str
    name: str | None
    style: str | None
    effect: str | None
    overlaps_other: bool = False  # shares CUE_OVERLAP_MIN_S or more with another kept cue


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
    duplicates: tuple[BadCue, ...] = ()  # copies collapsed into a cue with the same text
    past_end: tuple[BadCue, ...] = ()  # left out by drop_cues_past


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
                line=-1,  # numbered once duplicates are collapsed
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
    if not lines and not skipped and not _has_header(fmt, text):
        raise SubtitleError(path, f"no subtitle events found in this {fmt} file")
    kept, duplicates = _collapse_duplicates(lines)
    return Subtitles(path, fmt, used, _numbered(kept), skipped, tuple(bad), duplicates)


def drop_cues_past(subs: Subtitles, end_s: float) -> Subtitles:
    """``subs`` without the cues that start after ``end_s`` (the episode's end), which are
    listed in ``past_end``: subtitles made for a longer cut of the episode."""
    late = [ln for ln in subs.lines if ln.start > end_s]
    if not late:
        return subs
    why = f"starts past the episode's end (after {_fmt_time(end_s)})"
    return replace(
        subs,
        lines=_numbered([ln for ln in subs.lines if ln.start <= end_s]),
        past_end=subs.past_end + tuple(BadCue(_span(ln), ln.text, why) for ln in late),
    )


def _has_header(fmt: str, text: str) -> bool:
    """Whether the text is recognisably a (cue-less) file of this format: an ASS/SSA section
    header or the WEBVTT signature. SRT has no header, so words alone are not an SRT file."""
    if fmt in {"ass", "ssa"}:
        return bool(_SSA_SECTION.search(text))
    return fmt == "vtt" and text.lstrip().startswith("WEBVTT")


def _span(ln: SubtitleLine) -> str:
    return f"{_fmt_time(ln.start)} --> {_fmt_time(ln.end)}"


def _same_speaker(a: SubtitleLine, b: SubtitleLine) -> bool:
    return a.name is None or b.name is None or a.name == b.name


def _collapse_duplicates(
    lines: list[SubtitleLine],
) -> tuple[list[SubtitleLine], tuple[BadCue, ...]]:
    """Lines without copies: a line goes when another with the same text, and no other
    speaker, spans all of its time (the earlier of two exact copies stays). The line kept
    takes the copy's name when it has none. Different speakers saying the same words at
    once are two lines (marked as overlapping, not collapsed)."""
    by_text: dict[str, list[int]] = {}
    for i, ln in enumerate(lines):
        by_text.setdefault(ln.text, []).append(i)
    keeper: dict[int, int] = {}  # dropped index -> the index that covers it
    for group in by_text.values():
        for i in group:
            a = lines[i]
            for j in group:
                b = lines[j]
                if j == i or not (b.start <= a.start and a.end <= b.end) or \
                        not _same_speaker(a, b):
                    continue
                if (b.start, b.end) != (a.start, a.end) or j < i:
                    keeper[i] = j
                    break
    if not keeper:
        return lines, ()
    out = list(lines)
    duplicates: list[BadCue] = []
    for i, j in sorted(keeper.items()):
        while j in keeper:  # a copy of a copy: the line that covers both
            j = keeper[j]
        if out[j].name is None and lines[i].name is not None:
            out[j] = replace(out[j], name=lines[i].name)
        duplicates.append(BadCue(_span(lines[i]), lines[i].text,
                                 f"same text as the cue at {_span(lines[j])}"))
    return [ln for i, ln in enumerate(out) if i not in keeper], tuple(duplicates)


def _numbered(lines: list[SubtitleLine]) -> tuple[SubtitleLine, ...]:
    """The lines numbered in order, each marked when it shares CUE_OVERLAP_MIN_S or more of
    its time with another line."""
    marked = shared_time([(ln.start, ln.end) for ln in lines])
    return tuple(replace(ln, line=k, overlaps_other=k in marked) for k, ln in enumerate(lines))


def shared_time(spans: Sequence[tuple[float, float]],
                min_s: float = CUE_OVERLAP_MIN_S) -> set[int]:
    """Indices of the (start, end) spans that share ``min_s`` or more of their time with
    another span: lines on screen at once, not consecutive lines with timing slop."""
    out: set[int] = set()
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    for pos, i in enumerate(order):
        for j in order[pos + 1:]:
            if spans[j][0] >= spans[i][1]:
                break
            if min(spans[i][1], spans[j][1]) - spans[j][0] >= min_s - 1e-6:
                out.update((i, j))
    return out


def _where(text: str, exc: Exception) -> str:
    """' (line N)' for the line holding the value a parser error quotes, if any."""
    m = re.search(r"'([^']+)'", str(exc))
    if not m:
        return ""
    for number, raw in enumerate(text.splitlines(), start=1):
        if m.group(1) in raw:
            return f" (line {number}: {raw.strip()[:80]!r})"
    return ""
