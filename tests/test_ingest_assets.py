"""The three ingest assets materialized for real partitions, read back from DuckDB."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
import soundfile as sf
from testdata import STYLES

from voice_assets.assets import ingest
from voice_assets.inbox import STABLE_TICKS
from voice_assets.media.decode import ANALYSIS_RATE, DATASET_RATE
from voice_assets.media.encode import AudioTrack, VideoTrack, tone, write_media
from voice_assets.partitions import episode_key
from voice_assets.paths import Layout
from voice_assets.resources import default_resources
from voice_assets.resources.storage import StorageResource
from voice_assets.sensors.inbox import inbox_sensor

DUR = 4.0
ASSETS = dg.load_assets_from_modules([ingest])
CHECKS = dg.load_asset_checks_from_modules([ingest])


ASS_CP932 = r"""[Script Info]
ScriptType: v4.00+

[V4+ Styles]
@STYLES@

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.20,0:00:01.00,Default,春香,0,0,0,,{\i1}おはよう{\i0}ございます
Dialogue: 0,0:00:02.00,0:00:03.50,Default,太郎,0,0,0,,行くぞ！\Nついて来い
""".replace("@STYLES@\n", STYLES)


class Home:
    """$VOICE_ASSETS_HOME in tmp_path with an ephemeral instance; materializes partitions."""

    def __init__(self, root: Path) -> None:
        self.layout = Layout(root)
        self.instance = dg.DagsterInstance.ephemeral()

    def show(self, name: str) -> Path:
        return self.layout.inbox / "Test Show" / name

    def materialize(self, key: str, selection: list | None = None) -> dg.ExecuteInProcessResult:
        if key not in self.instance.get_dynamic_partitions("episodes"):
            self.instance.add_dynamic_partitions("episodes", [key])
        return dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection,
            partition_key=key,
            instance=self.instance,
            resources=default_resources(self.layout),
            raise_on_error=False,
        )

    def table(self, name: str, key: str | None = None) -> pl.DataFrame:
        with duckdb.connect(str(self.layout.database)) as con:
            (exists,) = con.sql(
                "select count(*) from information_schema.tables "
                f"where table_schema = 'voice_assets' and table_name = '{name}'"
            ).fetchall()
            if not exists[0]:
                return pl.DataFrame()
            sql = f"select * from voice_assets.{name}"
            if key is not None:
                sql += f" where episode = '{key}'"
            df = pl.from_arrow(con.sql(sql + " order by all").to_arrow_table())
            assert isinstance(df, pl.DataFrame)
            return df


def errors(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's error text, causes included."""
    return "\n".join(
        e.step_failure_data.error.to_string()
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error is not None
    )


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


def _episode(home: Home) -> tuple[str, Path]:
    """An English AAC stereo track (the container default) and a Japanese FLAC mono track with
    1 s of silence in its middle, plus a Shift-JIS ASS sidecar with names."""
    sr = 44100
    jpn = tone(DUR, sr, 330)
    jpn[sr : 2 * sr] = 0.0
    path = write_media(
        home.show("Episode 01.mkv"),
        [
            AudioTrack(tone(DUR, 48000, 220, channels=2), 48000, "aac", "eng", default=True),
            AudioTrack(jpn, sr, "flac", "jpn"),
        ],
        VideoTrack(DUR),
    )
    home.show("Episode 01.ja.ass").write_bytes(ASS_CP932.encode("cp932"))
    return episode_key("Test Show", "Episode 01"), path


def test_materialize_ingest_assets(home: Home) -> None:
    key, path = _episode(home)
    result = home.materialize(key)
    assert result.success, errors(result)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "episode_media_one_row": True,
        "episode_audio_matches_media": True,
        "episode_subtitles_within_episode": True,
    }

    media = home.table("episode_media", key)
    assert media.height == 1
    row = media.row(0, named=True)
    assert row["episode"] == key and row["series"] == "Test Show"
    assert row["source_path"] == str(path)
    assert row["subtitle_path"] == str(home.show("Episode 01.ja.ass"))
    assert row["content_hash"].startswith("b2f:")
    assert row["size_bytes"] == path.stat().st_size
    assert row["duration_s"] == pytest.approx(DUR, abs=0.05)
    assert (row["container"], row["has_video"], row["width"], row["height"]) == (
        "matroska", True, 64, 48)
    assert row["fps"] == pytest.approx(10.0)
    assert (row["audio_language"], row["audio_codec"], row["audio_stream_index"]) == (
        "jpn", "flac", 2)
    assert (row["source_sample_rate"], row["source_channels"], row["n_audio_streams"]) == (
        44100, 1, 2)

    audio = home.table("episode_audio", key).row(0, named=True)
    assert audio["duration_s"] == pytest.approx(DUR, abs=0.020)
    folder = home.layout.episode_dir(key, "episode_audio")
    assert Path(audio["analysis_path"]).parent == folder
    for col, rate in (("analysis_path", ANALYSIS_RATE), ("dataset_path", DATASET_RATE)):
        info = sf.info(audio[col])
        assert (info.samplerate, info.channels) == (rate, 1)
        assert abs(info.frames / rate - DUR) <= 0.020
    assert audio["silence_ratio"] == pytest.approx(0.25, abs=0.03)
    assert audio["rms_dbfs"] == pytest.approx(20 * np.log10(0.3 / np.sqrt(2 * 4 / 3)), abs=0.3)
    assert -20 < audio["loudness_lufs"] < -10
    x, sr = sf.read(audio["dataset_path"])
    peak_hz = np.argmax(np.abs(np.fft.rfft(x))) * sr / len(x)
    assert peak_hz == pytest.approx(330, abs=2)  # the Japanese track, not the default English

    subs = home.table("episode_subtitles", key).sort("line")
    assert subs.select("line", "start", "end", "text", "name", "style").rows() == [
        (0, 0.2, 1.0, "おはようございます", "春香", "Default"),
        (1, 2.0, 3.5, "行くぞ！ついて来い", "太郎", "Default"),
    ]

    # the asset metadata carries the waveform picture
    mats = result.asset_materializations_for_node("episode_audio")
    assert mats[0].metadata["waveform"].value.startswith("![waveform](data:image/png;base64,")


def test_rematerialize_is_idempotent(home: Home) -> None:
    key, _ = _episode(home)
    assert home.materialize(key).success
    first = {t: home.table(t) for t in ("episode_media", "episode_audio", "episode_subtitles")}
    wav = Path(first["episode_audio"]["dataset_path"][0]).read_bytes()
    assert home.materialize(key).success
    for name, df in first.items():
        assert home.table(name).equals(df), name
    assert Path(first["episode_audio"]["dataset_path"][0]).read_bytes() == wav
    folder = home.layout.episode_dir(key, "episode_audio")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["episode_audio"]  # no temp dirs


def _ticks(home: Home, cursor: str | None) -> list:
    """STABLE_TICKS + 1 inbox-sensor ticks (enough for a file to settle), chaining the cursor."""
    results = []
    for _ in range(STABLE_TICKS + 1):
        with dg.build_sensor_context(
            cursor=cursor,
            instance=home.instance,
            resources={"storage": StorageResource(home=str(home.layout.home))},
        ) as ctx:
            result = inbox_sensor(ctx)
        cursor = result.cursor
        results.append(result)
    return results


def test_sensor_with_a_reset_cursor_does_not_redo_ingested_episodes(home: Home) -> None:
    key, _ = _episode(home)
    assert home.materialize(key).success
    results = _ticks(home, None)
    cursor = results[-1].cursor
    assert all(not r.run_requests for r in results)
    last = results[-1].skip_reason
    assert last is not None and "1 unchanged" in last.skip_message
    home.show("Episode 01.ja.ass").write_bytes(
        ASS_CP932.replace("行くぞ", "行こう").encode("cp932")  # an edited subtitle
    )
    result = _ticks(home, cursor)[-1]
    assert [r.partition_key for r in result.run_requests or []] == [key]


def test_episode_without_subtitles_and_second_episode(home: Home) -> None:
    """The very first episode has no subtitles: the table must still exist (empty, with its
    schema) so the check and downstream assets can read it."""
    write_media(home.show("Episode 02.wav"), [AudioTrack(tone(2.0, 16000), 16000, "pcm_s16le")])
    key2 = episode_key("Test Show", "Episode 02")
    result = home.materialize(key2)
    assert result.success, errors(result)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["episode_subtitles_within_episode"] is True
    media = home.table("episode_media", key2).row(0, named=True)
    assert media["subtitle_path"] is None and media["has_video"] is False
    assert media["width"] is None and media["fps"] is None
    assert media["container"] == "wav"
    empty = home.table("episode_subtitles", key2)
    assert empty.height == 0 and "name" in empty.columns
    assert home.table("episode_audio", key2)["duration_s"][0] == pytest.approx(2.0, abs=0.02)

    key1, _ = _episode(home)
    assert home.materialize(key1).success
    assert home.table("episode_subtitles", key1).height == 2
    assert home.table("episode_subtitles", key2).height == 0
    assert home.table("episode_media").height == 2


def _refused(home: Home, name: str, data: bytes | None = None) -> tuple[str, str]:
    path = home.show(name)
    if data is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    key = episode_key("Test Show", Path(name).stem)
    result = home.materialize(key)
    assert not result.success
    return key, errors(result)


def test_bad_media_fails_with_clear_error_and_no_output(home: Home) -> None:
    write_media(home.show("No Audio.mkv"), [], VideoTrack(2.0))
    cases = {
        "Empty.mkv": (b"", "empty file"),
        "Notes.mp4": (b"just some notes\n" * 30, "not a media file"),
        "No Audio.mkv": (None, "no audio stream"),
    }
    for name, (data, cause) in cases.items():
        key, text = _refused(home, name, data)
        assert "MediaError" in text and cause in text and str(home.show(name)) in text
        assert home.table("episode_media", key).height == 0
        assert not home.layout.episode_dir(key, "episode_audio").exists()


def test_truncated_video_leaves_no_audio_output(home: Home) -> None:
    full = write_media(home.layout.home / "full.mkv",
                       [AudioTrack(tone(6.0, 48000), 48000, "aac")], VideoTrack(6.0))
    data = full.read_bytes()
    key, text = _refused(home, "Cut.mkv", data[: int(len(data) * 0.9)])
    assert "truncated" in text and str(home.show("Cut.mkv")) in text
    assert home.table("episode_audio", key).height == 0
    folder = home.layout.episode_dir(key, "episode_audio")
    assert not folder.exists() and not any(folder.parent.glob(".episode_audio*"))


def test_broken_subtitles_fail_only_the_subtitle_asset(home: Home) -> None:
    write_media(home.show("Ep 3.mp4"), [AudioTrack(tone(2.0, 48000), 48000, "aac")],
                VideoTrack(2.0))
    home.show("Ep 3.srt").write_text("1\n00:00:01,000 --> 00:00:0x,500\nHello\n\n")
    key = episode_key("Test Show", "Ep 3")
    result = home.materialize(key)
    assert not result.success
    text = errors(result)
    assert "SubtitleError" in text and "line 2: broken timestamp" in text
    assert str(home.show("Ep 3.srt")) in text
    assert home.table("episode_media", key).height == 1
    assert home.table("episode_audio", key).height == 1
    assert home.table("episode_subtitles", key).height == 0


def test_two_bad_cues_of_twenty_are_named_and_the_rest_kept(home: Home) -> None:
    write_media(home.show("Ep 4.mp4"), [AudioTrack(tone(22.0, 48000), 48000, "aac")],
                VideoTrack(22.0))
    cues = [f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i:02d},800\nLine {i}.\n" for i in range(20)]
    cues[3] = "4\n00:00:0x,000 --> 00:00:03,800\nLine 3.\n"
    cues[16] = "17\n00:00:16,900 --> 00:00:16,100\nLine 16.\n"
    home.show("Ep 4.srt").write_text("\n".join(cues))
    key = episode_key("Test Show", "Ep 4")
    result = home.materialize(key)
    assert result.success, errors(result)
    assert home.table("episode_subtitles", key).height == 18
    warnings = [r.user_message for r in home.instance.all_logs(result.run_id)
                if r.level == logging.WARNING and "cue left out" in r.user_message]
    assert len(warnings) == 2
    assert "line 14: broken timestamp" in warnings[0] and "00:00:0x,000" in warnings[0]
    assert "line 66: it ends before it starts" in warnings[1]
    meta = result.asset_materializations_for_node("episode_subtitles")[0].metadata
    assert meta["bad_cues"].value == 2


def _warnings(home: Home, result: dg.ExecuteInProcessResult) -> list[str]:
    return [r.user_message for r in home.instance.all_logs(result.run_id)
            if r.level == logging.WARNING]


def _subtitle_meta(result: dg.ExecuteInProcessResult) -> dict:
    meta = result.asset_materializations_for_node("episode_subtitles")[0].metadata
    return {k: getattr(v, "value", v) for k, v in meta.items()}


ASS_HEADER_ONLY = ASS_CP932.split("[Events]")[0]
EVENTS_FORMAT = ("[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, "
                 "Effect, Text\n")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("Ep 5.ass", ASS_HEADER_ONLY.encode()),
        ("Ep 5.ass", (ASS_HEADER_ONLY + EVENTS_FORMAT).encode()),
        ("Ep 5.ass", b""),
        ("Ep 5.srt", b""),
    ],
    ids=["ass-header-only", "ass-format-line-only", "ass-0-bytes", "srt-0-bytes"],
)
def test_subtitle_file_without_dialogue_cues_means_audio_only(
    home: Home, name: str, data: bytes
) -> None:
    write_media(home.show("Ep 5.wav"), [AudioTrack(tone(2.0, 16000), 16000, "pcm_s16le")])
    home.show(name).write_bytes(data)
    key = episode_key("Test Show", "Ep 5")
    result = home.materialize(key, ["episode_media", "episode_subtitles"])
    assert result.success, errors(result)
    table = home.table("episode_subtitles", key)
    assert table.height == 0 and "overlaps_other" in table.columns
    note = f"{home.show(name)} holds no dialogue cues; the episode is transcribed from audio only"
    assert [w for w in _warnings(home, result) if note in w]
    meta = _subtitle_meta(result)
    assert meta["lines"] == 0 and meta["transcribed_from"] == "audio only"
    assert note in meta["note"]


def test_cues_past_the_episode_end_are_dropped_counted_and_named(home: Home) -> None:
    """Subtitles for a longer cut of the episode: cues that start after the audio ends (plus
    the slack) leave the table; the metadata counts them, a warning names them, and the
    check (still) says the subtitles do not fit the episode."""
    write_media(home.show("Ep 6.wav"), [AudioTrack(tone(4.0, 16000), 16000, "pcm_s16le")])
    cues = [("00:00:00,500", "00:00:01,500", "Hello."),
            ("00:00:02,000", "00:00:03,000", "Hello, hello."),
            ("00:00:05,500", "00:00:06,500", "Gone with the other cut."),
            ("00:00:09,000", "00:00:10,000", "This one too.")]
    home.show("Ep 6.srt").write_text("\n".join(
        f"{i + 1}\n{a} --> {b}\n{t}\n" for i, (a, b, t) in enumerate(cues)))
    key = episode_key("Test Show", "Ep 6")
    result = home.materialize(key, ["episode_media", "episode_subtitles"])
    assert result.success, errors(result)
    assert home.table("episode_subtitles", key).sort("line")["text"].to_list() == [
        "Hello.", "Hello, hello."]
    meta = _subtitle_meta(result)
    assert meta["cues_past_end"] == 2 and meta["lines"] == 2
    late = [w for w in _warnings(home, result) if "after the episode ends" in w]
    assert len(late) == 1
    assert "2 subtitle cues" in late[0] and str(home.show("Ep 6.srt")) in late[0]
    assert "Gone with the other cut." in late[0] and "This one too." in late[0]
    (check,) = [c for c in result.get_asset_check_evaluations()
                if c.check_name == "episode_subtitles_within_episode"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["cues_past_end"].value == 2
    spec = next(iter(ingest.episode_subtitles_within_episode.check_specs))
    assert "another cut" in (spec.description or "")


def test_colliding_names_are_refused(home: Home) -> None:
    for name in ("Ep 4.mkv", "ep_4.mp4"):
        write_media(home.show(name), [AudioTrack(tone(1.0, 48000), 48000, "aac")], VideoTrack(1.0))
    key = episode_key("Test Show", "Ep 4")
    result = home.materialize(key)
    assert not result.success
    text = errors(result)
    assert "PartitionKeyError" in text
    assert str(home.show("Ep 4.mkv")) in text and str(home.show("ep_4.mp4")) in text
    assert home.table("episode_media", key).height == 0


@pytest.mark.slow
def test_demo_episode(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The synthetic demo episode: duration within 20 ms of its truth, named subtitle lines."""
    try:
        demo = request.getfixturevalue("demo_episode")
    except pytest.FixtureLookupError:
        pytest.skip("tests/conftest.py has no demo_episode fixture yet")
    home = Home(tmp_path / "home")
    media = Path(getattr(demo, "video", None) or demo.media_path)
    subtitle = getattr(demo, "subtitles", None) or getattr(demo, "subtitle_path", None)
    series = home.layout.inbox / "Demo"
    series.mkdir(parents=True)
    (series / media.name).symlink_to(media)
    if subtitle:
        (series / (media.stem + Path(subtitle).suffix)).symlink_to(subtitle)
    key = episode_key("Demo", media.stem)
    result = home.materialize(key)
    assert result.success, errors(result)
    audio = home.table("episode_audio", key).row(0, named=True)
    assert abs(audio["duration_s"] - demo.duration_s) <= 0.020
    subs = home.table("episode_subtitles", key)
    assert subs.height > 0 and subs["name"].drop_nulls().n_unique() >= 2
