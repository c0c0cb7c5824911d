"""Benchmark: per-stage peak memory is really per stage; the report covers every stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voice_assets import bench


def test_peak_rss_is_reset_between_stages():
    with bench.peak_rss() as big:
        block = np.ones(150 * 1024 * 1024 // 8)  # 150 MiB, touched
        assert block.sum() > 0
        del block
    with bench.peak_rss() as small:
        np.ones(1024).sum()
    assert big.method in {"vmhwm", "sampled"}
    assert big.peak_kb - small.peak_kb > 120 * 1024
    assert small.peak_kb > 0


def test_format_table_and_json_round_trip():
    stages = [bench.StageResult(s, 1.5, 0.05, 800.0, 600.0, {"n": 3}) for s in bench.STAGES]
    report = bench.BenchReport("ep.mkv", None, 30.0, stages, 10.5, 0.35, 900.0, 2.5, "vmhwm",
                               "cpu", 2, {"asr_model": "tiny.en"})
    table = bench.format_table(report)
    for s in bench.STAGES:
        assert s in table
    assert "end to end" in table and "0.350" in table
    data = json.loads(report.to_json())
    assert [s["stage"] for s in data["stages"]] == list(bench.STAGES)
    assert data["total_rtf"] == 0.35 and data["total_load_s"] == 2.5
    assert "load s" in table


@pytest.mark.slow
def test_benchmark_on_demo_episode(demo_episode, tmp_path):
    from voice_assets.media.probe import probe_media

    ep = demo_episode
    report = bench.run_benchmark(Path(ep.video), Path(ep.subtitles), workdir=tmp_path)
    assert [s.stage for s in report.stages] == list(bench.STAGES)
    assert report.audio_s == pytest.approx(probe_media(Path(ep.video)).duration_s, abs=0.5)
    assert all(s.wall_s > 0 and s.peak_rss_mb > 0 for s in report.stages)
    assert report.total_wall_s >= sum(s.wall_s for s in report.stages) - 1e-6
    assert report.total_rtf == pytest.approx(report.total_wall_s / report.audio_s)
    assert report.peak_rss_mb >= max(s.peak_rss_mb for s in report.stages)
    # Model loading is reported apart, inside each model stage's wall time.
    for stage in ("stems", "diarization", "transcript", "faces"):
        assert 0 < by_load(report, stage) < next(s.wall_s for s in report.stages
                                                 if s.stage == stage), stage
    assert report.total_load_s == pytest.approx(sum(s.load_s for s in report.stages))
    by = {s.stage: s for s in report.stages}
    assert by["alignment"].detail["lines"] > 0
    # ASR text against the subtitles' dialogue, normalised (measured 0.056 on the demo).
    assert 0.0 <= by["alignment"].detail["asr_wer_vs_subtitles"] <= 0.15
    assert by["utterances"].detail["rows"] > 0
    # The stages after the speech ones: the video's cuts, prosody, and the cut clips.
    assert by["shots"].detail["shots"] > 10
    assert by["emotion_features"].detail["rows"] == by["utterances"].detail["rows"]
    assert by["clips"].detail["clips"] >= by["utterances"].detail["rows"]
    assert 0 < by["clips"].detail["kept"] < by["clips"].detail["clips"]
    assert by["faces"].detail["tracks"] > 10 and by["faces"].detail["turns_with_face"] > 0
    print(bench.format_table(report))


def by_load(report: bench.BenchReport, stage: str) -> float:
    return next(s.load_s for s in report.stages if s.stage == stage)
