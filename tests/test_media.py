"""Probing, decoding and level metrics on media generated with PyAV (known ground truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from voice_assets.errors import MediaError
from voice_assets.media import fingerprint
from voice_assets.media.decode import (
    ANALYSIS_NAME,
    ANALYSIS_RATE,
    DATASET_NAME,
    DATASET_RATE,
    decode_episode_audio,
    downmix_weights,
)
from voice_assets.media.encode import AudioTrack, VideoTrack, tone, write_media
from voice_assets.media.metrics import LevelMeter, measure
from voice_assets.media.probe import AudioStream, choose_audio_stream, probe_media

DUR = 3.0
TOL = 0.020  # seconds: decoded durations must be this close to the truth


def _two_tracks(path: Path) -> Path:
    """English AAC stereo at 48 kHz + Japanese FLAC mono at 44.1 kHz, 3 s, with video."""
    return write_media(
        path,
        [
            AudioTrack(tone(DUR, 48000, 220, channels=2), 48000, "aac", "eng", default=True),
            AudioTrack(tone(DUR, 44100, 330), 44100, "flac", "jpn"),
        ],
        VideoTrack(DUR, fps=10),
    )


def _tone_index(path: Path) -> float:
    """Dominant frequency of a mono WAV, to tell which track was decoded."""
    x, sr = sf.read(path)
    spec = np.abs(np.fft.rfft(x))
    return float(np.argmax(spec) * sr / len(x))


# ------------------------------------------------------------------------------ probe


def test_probe_chooses_audio_by_language(tmp_path: Path) -> None:
    path = _two_tracks(tmp_path / "ep.mkv")
    info = probe_media(path)
    assert info.container == "matroska"
    assert info.has_video and (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(10.0)
    assert info.duration_s == pytest.approx(DUR, abs=0.05)
    assert len(info.audio_streams) == 2
    # default preference: Japanese first, even though English is the container's default
    assert (info.audio.language, info.audio.codec, info.audio.sample_rate) == ("jpn", "flac", 44100)
    assert info.audio.channels == 1
    english = probe_media(path, ["eng", "en"])
    assert (english.audio.language, english.audio.channels) == ("eng", 2)
    # no preferred language present -> the container's default track
    other = probe_media(path, ["fra"])
    assert other.audio.language == "eng" and "default" in other.audio_choice


def test_choose_audio_stream_demotes_commentary() -> None:
    def s(i: int, lang: str | None, default: bool = False, commentary: bool = False) -> AudioStream:
        return AudioStream(i, "aac", lang, 48000, 2, default, commentary, None)

    streams = [s(1, "jpn", commentary=True), s(2, "jpn"), s(3, "eng", default=True)]
    assert choose_audio_stream(streams, ["ja"])[0].index == 2  # 'ja' matches a 'jpn' track
    assert choose_audio_stream(streams, ["jpn"])[0].index == 2
    assert choose_audio_stream([s(1, None), s(2, None)], ["jpn"])[0].index == 1
    assert choose_audio_stream([s(1, "ja-JP"), s(2, "en")], ["ja"])[0].index == 1


@pytest.mark.parametrize(
    ("name", "tracks", "video", "container"),
    [
        ("a.mp4", [AudioTrack(tone(DUR, 48000, channels=2), 48000, "aac")], VideoTrack(DUR), "mp4"),
        ("a.webm", [AudioTrack(tone(DUR, 48000), 48000, "libopus")],
         VideoTrack(DUR, codec="libvpx"), "webm"),
        ("a.avi", [AudioTrack(tone(DUR, 48000), 48000, "mp2")], VideoTrack(DUR), "avi"),
        ("a.ts", [AudioTrack(tone(DUR, 48000, channels=6), 48000, "ac3")], VideoTrack(DUR),
         "mpegts"),
        ("a.wav", [AudioTrack(tone(DUR, 16000), 16000, "pcm_s16le")], None, "wav"),
        ("a.flac", [AudioTrack(tone(DUR, 48000), 48000, "flac")], None, "flac"),
        ("a.mp3", [AudioTrack(tone(DUR, 44100), 44100, "libmp3lame")], None, "mp3"),
        ("a.m4a", [AudioTrack(tone(DUR, 44100), 44100, "aac")], None, "m4a"),
        ("a.opus", [AudioTrack(tone(DUR, 48000), 48000, "libopus")], None, "ogg"),
    ],
)
def test_decode_every_inbox_format(
    tmp_path: Path, name: str, tracks: list[AudioTrack], video: VideoTrack | None, container: str
) -> None:
    path = write_media(tmp_path / name, tracks, video)
    info = probe_media(path)
    assert info.container == container
    assert info.has_video == (video is not None)
    out = decode_episode_audio(path, info.audio.index, tmp_path / "out")
    analysis, dataset = sf.info(str(out.analysis_path)), sf.info(str(out.dataset_path))
    assert (analysis.samplerate, analysis.channels) == (ANALYSIS_RATE, 1)
    assert (dataset.samplerate, dataset.channels) == (DATASET_RATE, 1)
    assert abs(dataset.frames / DATASET_RATE - DUR) <= TOL
    assert abs(analysis.frames / ANALYSIS_RATE - DUR) <= TOL
    assert out.duration_s == pytest.approx(dataset.frames / DATASET_RATE)
    # a 0.3-amplitude sine keeps its level through the mono down-mix (no +3 dB, no clipping)
    assert out.levels.rms_dbfs == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.5)
    assert out.levels.peak < 0.36


def test_decode_picks_the_chosen_stream(tmp_path: Path) -> None:
    path = _two_tracks(tmp_path / "ep.mkv")
    info = probe_media(path)
    out = decode_episode_audio(path, info.audio.index, tmp_path / "out")
    assert _tone_index(out.dataset_path) == pytest.approx(330, abs=2)  # the Japanese track
    assert out.source_sample_rate == 44100 and out.source_channels == 1
    english = probe_media(path, ["eng"])
    out = decode_episode_audio(path, english.audio.index, tmp_path / "out2")
    assert _tone_index(out.dataset_path) == pytest.approx(220, abs=2)
    assert out.source_channels == 2


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".ts"])
def test_late_audio_stays_on_the_container_timeline(tmp_path: Path, suffix: str) -> None:
    """Audio that starts 0.5 s after the video gets 0.5 s of leading silence, so subtitle
    times (relative to the container) still point at the right audio."""
    path = write_media(
        tmp_path / f"late{suffix}",
        [AudioTrack(tone(2.0, 48000), 48000, "aac", start_s=0.5)],
        VideoTrack(2.5),
    )
    out = decode_episode_audio(path, probe_media(path).audio.index, tmp_path / "out")
    x, sr = sf.read(out.dataset_path)
    onset = np.argmax(np.abs(x) > 0.05) / sr
    assert onset == pytest.approx(0.5, abs=TOL)
    assert out.duration_s == pytest.approx(2.5, abs=TOL)


def test_decode_reports_progress_in_percentages_of_duration(tmp_path: Path) -> None:
    path = write_media(tmp_path / "long.flac", [AudioTrack(tone(25.0, 16000), 16000, "flac")])
    calls: list[tuple[str, int, int]] = []
    decode_episode_audio(path, 0, tmp_path / "out", progress=lambda *a: calls.append(a),
                         chunk_s=5.0)
    assert [c[0] for c in calls] == ["decode audio"] * len(calls)
    done = [c[1] for c in calls]
    assert len(calls) >= 5 and done == sorted(done)
    assert calls[-1][1:] == (25, 25)


def test_loudness_and_silence_ratio(tmp_path: Path) -> None:
    """Half a tone, half digital silence: silence ratio ~0.5; loudness as pyloudnorm says."""
    sr = 48000
    x = np.concatenate([tone(2.0, sr, 1000, 0.25), np.zeros(2 * sr, np.float32)])
    path = write_media(tmp_path / "half.wav", [AudioTrack(x, sr, "pcm_s16le")])
    out = decode_episode_audio(path, 0, tmp_path / "out")
    assert out.levels.silence_ratio == pytest.approx(0.5, abs=0.03)
    y, ysr = sf.read(out.dataset_path)
    assert out.levels.loudness_lufs == pytest.approx(
        pyloudnorm.Meter(ysr).integrated_loudness(y), abs=0.05
    )


# ------------------------------------------------------------------------------ metrics


def test_streaming_loudness_equals_pyloudnorm() -> None:
    rng = np.random.default_rng(1)
    sr = 44100
    x = (rng.standard_normal(int(7.37 * sr)) * 0.05).astype(np.float32)
    x[: sr] *= 0.001  # a quiet start exercises the relative gate
    meter = LevelMeter(sr)
    for i in range(0, len(x), 12345):
        meter.add(x[i : i + 12345])
    ours = meter.result().loudness_lufs
    assert ours == pytest.approx(pyloudnorm.Meter(sr).integrated_loudness(x.astype(np.float64)),
                                 abs=1e-6)


def test_levels_of_short_and_silent_audio() -> None:
    short = measure(tone(0.3, 16000), 16000)  # shorter than a 400 ms gating block
    assert short.loudness_lufs is None and short.rms_dbfs is not None
    silent = measure(np.zeros(32000, np.float32), 16000)
    assert silent.loudness_lufs is None and silent.rms_dbfs is None
    assert silent.silence_ratio == 1.0
    assert measure(np.zeros(0, np.float32), 16000).duration_s == 0.0


def test_downmix_weights() -> None:
    assert downmix_weights(["FL", "FR"]).tolist() == pytest.approx([0.5, 0.5])
    w = dict(zip(["FL", "FR", "FC", "LFE", "BL", "BR"],
                 downmix_weights(["FL", "FR", "FC", "LFE", "BL", "BR"]), strict=True))
    assert w["LFE"] == 0 and w["FC"] > w["FL"] > w["BL"] > 0
    assert sum(w.values()) == pytest.approx(1.0)


# ------------------------------------------------------------------------------ hashing


def test_content_hash_whole_and_sampled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = tmp_path / "a.srt"
    small.write_bytes(b"x" * 1000)
    h = fingerprint.content_hash(small)
    assert h.startswith("b2f:") and fingerprint.content_hash(small) == h
    small.write_bytes(b"x" * 999 + b"y")
    assert fingerprint.content_hash(small) != h

    monkeypatch.setattr(fingerprint, "FULL_HASH_MAX_BYTES", 1000)
    monkeypatch.setattr(fingerprint, "EDGE_BYTES", 100)
    monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 10)
    big = tmp_path / "big.mkv"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    big.write_bytes(bytes(data))
    base = fingerprint.content_hash(big)
    assert base.startswith("b2s:")
    for pos in (5, len(data) - 5):  # head and tail are always read
        changed = bytearray(data)
        changed[pos] ^= 0xFF
        big.write_bytes(bytes(changed))
        assert fingerprint.content_hash(big) != base
    big.write_bytes(bytes(data) + b"\0")  # size is part of the hash
    assert fingerprint.content_hash(big) != base
    big.write_bytes(bytes(data))
    assert fingerprint.content_hash(big) == base


# ------------------------------------------------------------------------------ bad input


def _no_wavs(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.mkv"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="empty file") as err:
        probe_media(path)
    assert str(path) in str(err.value)


def test_text_renamed_to_mp4_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("These are my notes, not a video.\n" * 20)
    with pytest.raises(MediaError, match="not a media file") as err:
        probe_media(path)
    assert str(path) in str(err.value) and "plain text" in str(err.value)


def test_video_without_audio_is_refused(tmp_path: Path) -> None:
    path = write_media(tmp_path / "silent-film.mkv", [], VideoTrack(DUR))
    with pytest.raises(MediaError, match=r"no audio stream \(streams found: video mpeg4\)") as err:
        probe_media(path)
    assert str(path) in str(err.value)


def test_truncated_mp4_is_refused(tmp_path: Path) -> None:
    full = write_media(tmp_path / "full.mp4", [AudioTrack(tone(6.0, 48000), 48000, "aac")],
                       VideoTrack(6.0))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MediaError, match="truncated") as err:
        probe_media(cut)
    assert str(cut) in str(err.value)


def test_truncated_mkv_is_refused_by_probe_or_decode_without_output(tmp_path: Path) -> None:
    full = write_media(tmp_path / "full.mkv", [AudioTrack(tone(6.0, 48000), 48000, "aac")],
                       VideoTrack(6.0))
    data = full.read_bytes()
    for frac in (0.5, 0.9):
        cut = tmp_path / f"cut{int(frac * 100)}.mkv"
        cut.write_bytes(data[: int(len(data) * frac)])
        out = tmp_path / f"out{int(frac * 100)}"
        with pytest.raises(MediaError, match="truncated") as err:
            decode_episode_audio(cut, probe_media(cut).audio.index, out)
        assert str(cut) in str(err.value)
        assert _no_wavs(out), "a failed decode must leave no WAV behind"


def test_failed_decode_keeps_previous_output_intact(tmp_path: Path) -> None:
    good = write_media(tmp_path / "good.flac", [AudioTrack(tone(2.0, 16000), 16000, "flac")])
    out = tmp_path / "out"
    decode_episode_audio(good, 0, out)
    before = (out / DATASET_NAME).read_bytes(), (out / ANALYSIS_NAME).read_bytes()
    full = write_media(tmp_path / "full.mkv", [AudioTrack(tone(6.0, 48000), 48000, "aac")],
                       VideoTrack(6.0))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.9)])
    with pytest.raises(MediaError):
        decode_episode_audio(cut, 1, out)
    assert ((out / DATASET_NAME).read_bytes(), (out / ANALYSIS_NAME).read_bytes()) == before
    assert sorted(p.name for p in out.iterdir()) == sorted([DATASET_NAME, ANALYSIS_NAME])
