"""Sidecar subtitles: formats, names, tag stripping, encodings, and broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
from testdata import STYLES

from voice_assets.errors import SubtitleError
from voice_assets.media.subtitles import (
    decode_subtitle_bytes,
    drop_cues_past,
    join_lines,
    parse_subtitles,
    split_speaker,
)
from voice_assets.media.tables import EPISODE_SUBTITLES_SCHEMA, subtitles_table

ASS = r"""[Script Info]
ScriptType: v4.00+
PlayResX: 1920

[V4+ Styles]
@STYLES@

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.50,Default,春香,0,0,0,,{\i1}おはよう{\i0}\Nございます
Comment: 0,0:00:03.00,0:00:04.00,Default,Taro,0,0,0,,a translator's note
Dialogue: 0,0:00:05.00,0:00:06.25,Default,Taro,0,0,0,,{\fad(200,200)}Good morning,\Nyou two!
Dialogue: 0,0:00:07.00,0:00:08.00,Sign,,0,0,0,Banner;12,{\pos(960,80)}SCHOOL\hFESTIVAL
Dialogue: 0,0:00:09.00,0:00:10.00,Default,,0,0,0,,{\p1}m 0 0 l 100 0 100 100{\p0}
""".replace("@STYLES@\n", STYLES)

SRT = """1
00:00:01,000 --> 00:00:02,500
春香：おはようございます。
今日はいい天気ですね。

2
00:00:03,000 --> 00:00:04,000
<i>Hello</i> <font color="#ff0000">there</font>,
second line

3
00:00:05,000 --> 00:00:06,000
JOHN: Fish &amp; chips.

"""

VTT = """WEBVTT

00:01.000 --> 00:02.000
<v Roger Bingham>We are in New York City

00:00:03.000 --> 00:00:04.500 align:start
Fish &amp; chips
"""


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_ass_names_styles_effects_and_tags(tmp_path: Path) -> None:
    subs = parse_subtitles(_write(tmp_path, "ep.ass", ASS))
    assert subs.format == "ass"
    rows = [(ln.line, ln.start, ln.end, ln.text, ln.name, ln.style, ln.effect) for ln in subs.lines]
    assert rows == [  # the CJK line break joins without a space, the English one with one
        (0, 1.0, 2.5, "おはようございます", "春香", "Default", None),
        (1, 5.0, 6.25, "Good morning, you two!", "Taro", "Default", None),
        (2, 7.0, 8.0, "SCHOOL FESTIVAL", None, "Sign", "Banner;12"),
    ]
    assert subs.skipped == 2  # the comment and the vector drawing


def test_srt_speaker_prefix_tags_and_entities(tmp_path: Path) -> None:
    subs = parse_subtitles(_write(tmp_path, "ep.srt", SRT))
    assert [(ln.text, ln.name, ln.style) for ln in subs.lines] == [
        ("おはようございます。今日はいい天気ですね。", "春香", None),
        ("Hello there, second line", None, None),
        ("Fish & chips.", "JOHN", None),
    ]
    assert [ln.line for ln in subs.lines] == [0, 1, 2]


def test_vtt_voice_tags_become_names(tmp_path: Path) -> None:
    subs = parse_subtitles(_write(tmp_path, "ep.vtt", VTT))
    assert [(ln.start, ln.end, ln.text, ln.name) for ln in subs.lines] == [
        (1.0, 2.0, "We are in New York City", "Roger Bingham"),
        (3.0, 4.5, "Fish & chips", None),
    ]


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", "utf_8"),
        ("utf-8-sig", "utf_8 (BOM)"),
        ("utf-16", "utf_16_le (BOM)"),  # Python writes a little-endian BOM
        ("utf-16-be-bom", "utf_16_be (BOM)"),
        ("cp932", "cp932"),  # Shift-JIS as Windows writes it
        ("shift_jis", "cp932"),
    ],
)
def test_japanese_srt_in_every_encoding(tmp_path: Path, encoding: str, expected: str) -> None:
    if encoding == "utf-16-be-bom":
        data = "\ufeff".encode("utf-16-be") + SRT.encode("utf-16-be")
    else:
        data = SRT.encode(encoding)
    path = tmp_path / "ep.srt"
    path.write_bytes(data)
    subs = parse_subtitles(path)
    assert subs.encoding == expected
    assert subs.lines[0].text == "おはようございます。今日はいい天気ですね。"
    assert subs.lines[0].name == "春香"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("小明：早上好。今天天气很好，我们去散步吧。", "gb18030"),
        ("小明：早安。今天天氣很好，我們去散步吧。", "big5"),
        ("Zoé: Ça va très bien, merci. Où est le café ?", "cp1252"),
        ("Jürgen: Grüß dich, schönes Wetter heute.", "cp1252"),
    ],
)
def test_other_legacy_encodings(tmp_path: Path, text: str, encoding: str) -> None:
    srt = f"1\n00:00:01,000 --> 00:00:02,000\n{text}\n\n"
    subs = parse_subtitles(_write(tmp_path, "ep.srt", srt, encoding))
    assert subs.encoding == encoding
    name, body = text.split(": ", 1) if ": " in text else text.split("：", 1)
    assert (subs.lines[0].name, subs.lines[0].text) == (name, body)


def test_japanese_ass_header_heavy_file_in_shift_jis(tmp_path: Path) -> None:
    """Mostly ASCII (the ASS header) with a few Japanese characters: the hard case."""
    subs = parse_subtitles(_write(tmp_path, "ep.ass", ASS, "cp932"))
    assert subs.encoding == "cp932"
    assert subs.lines[0].name == "春香" and subs.lines[0].text == "おはようございます"


def test_forced_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path, "ep.srt", SRT, "cp932")
    assert parse_subtitles(path, encoding="cp932").lines[0].name == "春香"
    with pytest.raises(SubtitleError, match="cannot decode as utf-8") as err:
        parse_subtitles(path, encoding="utf-8")
    assert str(path) in str(err.value)


def test_bomless_utf16_is_recognised(tmp_path: Path) -> None:
    text, enc = decode_subtitle_bytes(SRT.encode("utf-16-le"), tmp_path / "x.srt")
    assert (text, enc) == (SRT, "utf_16_le")


def test_a_broken_srt_cue_is_left_out_and_named(tmp_path: Path) -> None:
    broken = SRT.replace("00:00:03,000 --> 00:00:04,000", "00:00:0x,000 --> 00:00:04,000")
    subs = parse_subtitles(_write(tmp_path, "ep.srt", broken))
    # pysubs2 alone would fold the cue's text into the cue before it.
    assert [ln.text for ln in subs.lines] == ["おはようございます。今日はいい天気ですね。",
                                              "Fish & chips."]
    assert [b.describe() for b in subs.bad_cues] == [
        "line 7: broken timestamp: '00:00:0x,000 --> 00:00:04,000'"]


def test_two_bad_cues_of_twenty_cost_only_those_two(tmp_path: Path) -> None:
    cues = [f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i:02d},800\nLine number {i}.\n"
            for i in range(20)]
    cues[4] = "5\n00:00:04,000 --> 00:00:0x,800\nA typo in the time.\n"
    cues[11] = "12\n00:00:11,900 --> 00:00:11,000\nBackwards.\n"
    subs = parse_subtitles(_write(tmp_path, "ep.srt", "\n".join(cues)))
    assert len(subs.lines) == 18
    assert {"A typo in the time.", "Backwards."}.isdisjoint(ln.text for ln in subs.lines)
    assert [(b.where, b.reason) for b in subs.bad_cues] == [
        ("line 18", "broken timestamp"), ("line 46", "it ends before it starts")]


def test_a_file_of_mostly_broken_cues_is_refused_with_the_list(tmp_path: Path) -> None:
    text = SRT.replace("00:00:03,000", "00:00:0x,000").replace("00:00:05,000", "0:0:5;000")
    path = _write(tmp_path, "ep.srt", text)
    with pytest.raises(SubtitleError, match=r"2 of 3 cues are broken.*line 7.*line 12") as err:
        parse_subtitles(path)
    assert str(path) in str(err.value)


def test_a_broken_ass_event_is_left_out_and_named(tmp_path: Path) -> None:
    subs = parse_subtitles(_write(tmp_path, "ep.ass", ASS.replace("0:00:06.25", "0:00:0x.25")))
    assert "Good morning, you two!" not in {ln.text for ln in subs.lines}
    assert len(subs.lines) == 2
    assert [(b.where, b.reason) for b in subs.bad_cues] == [("line 14", "broken timestamp")]


def test_cue_ending_before_it_starts_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "ep.srt", "1\n00:00:05,000 --> 00:00:04,000\nBackwards\n\n")
    with pytest.raises(SubtitleError, match=r"1 of 1 cues.*line 2: it ends before it starts") \
            as err:
        parse_subtitles(path)
    assert str(path) in str(err.value)


ASS_HEADER = ASS.split("[Events]")[0]
ASS_FORMAT = "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ep.ass", ASS_HEADER),  # a valid header and no [Events] section at all
        ("ep.ass", ASS_HEADER + "[Events]\n"),
        ("ep.ass", ASS_HEADER + "[Events]\n" + ASS_FORMAT),  # only the Format line
        ("ep.vtt", "WEBVTT\n\n"),
    ],
    ids=["ass-no-events-section", "ass-empty-events", "ass-format-line-only", "vtt-header-only"],
)
def test_a_subtitle_file_without_dialogue_cues_is_not_an_error(
    tmp_path: Path, name: str, text: str
) -> None:
    """Like an empty .srt: no cues, no error; the episode goes on without subtitles."""
    subs = parse_subtitles(_write(tmp_path, name, text))
    assert subs.lines == () and subs.bad_cues == ()
    assert subs.format == Path(name).suffix[1:]
    df = subtitles_table("show__ep", subs)
    assert df.height == 0 and dict(df.schema) == EPISODE_SUBTITLES_SCHEMA


@pytest.mark.parametrize(
    ("name", "data", "cause"),
    [
        ("ep.srt", b"just some words\nand nothing else\n", "no subtitle events"),
        ("ep.ass", b"just some words\nand nothing else\n", "no subtitle events"),
        ("ep.ass", bytes(range(256)) * 8, "cannot determine the text encoding"),  # binary
        ("ep.srt", bytes(range(256)) * 8, "cannot determine the text encoding"),
        ("ep.ass", b"PK\x03\x04\x14\x00\x00\x00" + b"word/document.xml" * 20,
         "no subtitle events"),  # a decodable non-subtitle file
        ("ep.ass", (ASS_HEADER + "[Events]\n" + ASS_FORMAT
                    + "Dialogue: 0,0:00:0x.00,0:00:02.00,Default,,0,0,0,,Hi\n").encode(),
         "1 of 1 cues are broken"),
    ],
    ids=["srt-words", "ass-words", "ass-binary", "srt-binary", "ass-zip",
         "ass-only-broken-cues"],
)
def test_a_broken_subtitle_file_is_still_an_error(
    tmp_path: Path, name: str, data: bytes, cause: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(SubtitleError, match=cause) as err:
        parse_subtitles(path)
    assert str(path) in str(err.value)


def _srt(*cues: tuple[str, str, str]) -> str:
    return "\n".join(f"{i + 1}\n{a} --> {b}\n{text}\n" for i, (a, b, text) in enumerate(cues))


@pytest.mark.parametrize(
    ("name", "text", "expected", "duplicates"),
    [
        (  # two merged tracks: every cue twice, the second copy without the speaker's name
            "ep.srt",
            _srt(("00:00:01,000", "00:00:02,000", "AKI: Where are you going?"),
                 ("00:00:01,000", "00:00:02,000", "Where are you going?"),
                 ("00:00:03,000", "00:00:04,000", "Nowhere."),
                 ("00:00:03,000", "00:00:04,000", "BEN: Nowhere.")),
            [(1.0, 2.0, "Where are you going?", "AKI"), (3.0, 4.0, "Nowhere.", "BEN")],
            ["0:00:01.000 --> 0:00:02.000", "0:00:03.000 --> 0:00:04.000"],
        ),
        (  # a copy whose time span lies inside another cue with the same text
            "ep.ass",
            ASS_HEADER + "[Events]\n" + ASS_FORMAT
            + "Dialogue: 0,0:00:01.20,0:00:01.80,Default,Aki,0,0,0,,Where are you going?\n"
            + "Dialogue: 0,0:00:01.00,0:00:02.00,Default,Aki,0,0,0,,Where are you going?\n"
            + "Dialogue: 0,0:00:03.00,0:00:04.00,Default,Ben,0,0,0,,Nowhere.\n",
            [(1.0, 2.0, "Where are you going?", "Aki"), (3.0, 4.0, "Nowhere.", "Ben")],
            ["0:00:01.200 --> 0:00:01.800"],
        ),
    ],
    ids=["exact-duplicates", "contained-duplicate"],
)
def test_duplicate_cues_are_collapsed_and_counted(
    tmp_path: Path, name: str, text: str, expected: list, duplicates: list[str]
) -> None:
    subs = parse_subtitles(_write(tmp_path, name, text))
    assert [(ln.start, ln.end, ln.text, ln.name) for ln in subs.lines] == expected
    assert [ln.line for ln in subs.lines] == list(range(len(expected)))
    assert [d.where for d in subs.duplicates] == duplicates
    assert not any(ln.overlaps_other for ln in subs.lines)
    assert subs.bad_cues == ()


@pytest.mark.parametrize(
    ("cues", "marked"),
    [
        (  # a reply shown over the end of a line: two voices at once
            [("00:00:01,000", "00:00:03,000", "REX: We start on Monday!"),
             ("00:00:02,500", "00:00:03,500", "ROBO: Wait!"),
             ("00:00:05,000", "00:00:06,000", "REX: Good.")],
            [True, True, False],
        ),
        (  # the same words from two characters at once is not a duplicate
            [("00:00:01,000", "00:00:02,000", "AKI: Thank you for the meal!"),
             ("00:00:01,000", "00:00:02,000", "BEN: Thank you for the meal!")],
            [True, True],
        ),
        (  # a frame of timing slop between consecutive lines is not an overlap
            [("00:00:01,000", "00:00:02,040", "Where are you going?"),
             ("00:00:02,000", "00:00:03,000", "Nowhere.")],
            [False, False],
        ),
    ],
    ids=["reply-over-a-line", "two-speakers-same-words", "timing-slop"],
)
def test_simultaneous_cues_are_kept_and_both_marked(
    tmp_path: Path, cues: list, marked: list[bool]
) -> None:
    subs = parse_subtitles(_write(tmp_path, "ep.srt", _srt(*cues)))
    assert len(subs.lines) == len(cues) and subs.duplicates == ()
    assert [ln.overlaps_other for ln in subs.lines] == marked
    df = subtitles_table("show__ep", subs)
    assert df["overlaps_other"].to_list() == marked


def test_cues_past_the_episode_end_are_dropped_and_named(tmp_path: Path) -> None:
    """Subtitles for a longer cut: cues that start after the audio ends are left out."""
    subs = parse_subtitles(_write(tmp_path, "ep.srt", _srt(
        ("00:00:01,000", "00:00:02,000", "First."),
        ("00:00:09,000", "00:00:12,000", "Straddles the end."),
        ("00:00:20,000", "00:00:21,000", "After the end."),
        ("00:00:11,000", "00:00:11,500", "Also after it."),
        ("00:00:20,500", "00:00:22,000", "AKI: Over the other late one."))))
    assert [ln.overlaps_other for ln in subs.lines] == [False, True, True, True, True]
    kept = drop_cues_past(subs, 10.5)
    assert [(ln.line, ln.text, ln.overlaps_other) for ln in kept.lines] == [
        (0, "First.", False), (1, "Straddles the end.", False)]
    assert [d.describe() for d in kept.past_end] == [
        "0:00:20.000 --> 0:00:21.000: starts past the episode's end (after 0:00:10.500): "
        "'After the end.'",
        "0:00:11.000 --> 0:00:11.500: starts past the episode's end (after 0:00:10.500): "
        "'Also after it.'",
        "0:00:20.500 --> 0:00:22.000: starts past the episode's end (after 0:00:10.500): "
        "'Over the other late one.'",
    ]
    assert drop_cues_past(subs, 100.0) == subs
    assert subtitles_table("show__ep", kept).height == 2


def test_empty_subtitle_file_gives_empty_table(tmp_path: Path) -> None:
    subs = parse_subtitles(_write(tmp_path, "ep.srt", ""))
    df = subtitles_table("show__ep", subs)
    assert df.height == 0 and dict(df.schema) == EPISODE_SUBTITLES_SCHEMA
    none = subtitles_table("show__ep", None)
    assert none.height == 0 and dict(none.schema) == EPISODE_SUBTITLES_SCHEMA


def test_subtitles_table_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, "ep.ass", ASS)
    df = subtitles_table("show__ep", parse_subtitles(path))
    assert df["episode"].unique().to_list() == ["show__ep"]
    assert df["line"].to_list() == [0, 1, 2]
    assert df["source_path"].unique().to_list() == [str(path)]
    assert df["name"].to_list() == ["春香", "Taro", None]


def test_join_lines_and_split_speaker() -> None:
    assert join_lines("おはよう\nございます") == "おはようございます"
    assert join_lines("Good morning,\nyou two!") == "Good morning, you two!"
    assert join_lines("はい\nOK") == "はい OK"
    assert split_speaker("HARUKA: Hello") == ("HARUKA", "Hello")
    assert split_speaker("春香：はい") == ("春香", "はい")
    assert split_speaker("At 10:30 we leave") == (None, "At 10:30 we leave")
    assert split_speaker("Wait, what: really?") == (None, "Wait, what: really?")
    assert split_speaker("So this is how it ends then: badly")[0] is None  # too many words
