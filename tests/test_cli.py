"""The `voice-assets` command: ingest, headless run, status, models, as a user types them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from testdata import invoke

from voice_assets.synth import SynthEpisode


def test_ingest_refuses_a_text_file_renamed_mp4_and_copies_nothing(home: Path,
                                                                   tmp_path: Path) -> None:
    bad = tmp_path / "src" / "Show" / "Episode 1.mp4"
    bad.parent.mkdir(parents=True)
    bad.write_text("this is not a video\n")
    result = invoke("ingest", str(bad))
    assert result.exit_code == 1
    assert str(bad) in result.output and "not a media file" in result.output
    assert not (home / "inbox" / "Show").exists() or not any((home / "inbox" / "Show").iterdir())


def test_run_with_nothing_to_run_is_an_error(home: Path) -> None:
    for args in (["run", "--all"], ["run", "--series"]):
        result = invoke(*args)
        assert result.exit_code == 2 and "no episodes yet" in result.output, result.output


def test_models_list_and_verify_name_the_pull_command(home: Path) -> None:
    listing = invoke("models", "list")
    assert listing.exit_code == 0
    assert "whisper-tiny.en" in listing.output and "present" in listing.output
    assert "voice-assets models pull htdemucs" in listing.output
    missing = invoke("models", "verify", "htdemucs")
    assert missing.exit_code == 1
    assert "voice-assets models pull htdemucs" in missing.output
    assert invoke("models", "verify").exit_code == 0  # every embedded model ships installed


def test_models_pull_that_cannot_reach_its_source_says_so_and_writes_nothing(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testdata import free_port

    from voice_assets import models as catalog

    nowhere = f"url:http://127.0.0.1:{free_port()}/weights.th"  # a closed loopback port
    for name in ("probe-a", "probe-b"):
        monkeypatch.setitem(catalog.CATALOG, name, catalog.ModelSpec(
            name=name, stage="test", description="unreachable", embedded=False,
            locate=lambda layout, n=name: layout.models / n,
            pull=f"voice-assets models pull {name}", source=nowhere))
    result = invoke("models", "pull", "probe-a", "probe-b")
    assert result.exit_code == 1, result.output
    assert "probe-a: could not fetch" in result.output
    assert "not pulled: probe-a, probe-b" in result.output and "internet access" in result.output
    assert not (home / "models" / "probe-a").exists()  # atomic: no half model left behind
    assert invoke("models", "pull").exit_code == 2  # nothing named: a usage error


@pytest.mark.slow
def test_run_materializes_the_demo_episode_headless_and_status_shows_it(
        home: Path, tmp_path: Path, demo_episode: SynthEpisode,
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src" / "Demo"
    src.mkdir(parents=True)
    for path in (demo_episode.video, demo_episode.subtitles):
        shutil.copy2(path, src / Path(path).name)
    ingested = invoke("ingest", str(src / Path(demo_episode.video).name))
    assert ingested.exit_code == 0, ingested.output
    key = ingested.output.split()[0]
    assert key == "demo__episode-01"
    assert (home / "inbox" / "Demo" / Path(demo_episode.subtitles).name).exists()

    assert invoke("run", "--episode", "nope").exit_code != 0
    ran = invoke("run", "--episode", key, "--select", "episode_media+")
    assert ran.exit_code == 0, ran.output

    status = invoke("status")
    assert status.exit_code == 0
    rows = {line.split()[0]: line.split()[1:] for line in status.output.splitlines()[1:]}
    for asset in ("episode_media", "episode_audio", "stems", "diarization", "utterances",
                  "clips"):
        assert rows[asset] == ["x"], status.output
    assert "never" not in rows["dataset_exports"], status.output
    assert status.output.count("; current") == 6, status.output  # every series output

    # A re-run of one episode leaves the series outputs behind until `run --series`.
    assert invoke("run", "--episode", key, "--select", "clips").exit_code == 0
    stale = invoke("status").output
    assert "dataset_splits" in stale and "stale: clips of 1 episode(s) updated since" in stale
    assert f"out of date (episodes {key})" in stale and "voice-assets run --series" in stale
    assert invoke("run", "--series", "--all").exit_code == 2  # --series takes no episodes
    rebuilt = invoke("run", "--series")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "out of date" not in invoke("status").output

    # Label Studio pushes run when named; with no server there the run fails, out loud.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{closed}")
    pushed = invoke("run", "--episode", key, "--select", "review_tasks")
    assert pushed.exit_code == 1 and f"{key}: run" in pushed.output, pushed.output
    # A selection with nothing this command runs is an error, not a silent exit 0.
    nothing = invoke("run", "--episode", key, "--select", "corrections")
    assert nothing.exit_code == 2 and "selects nothing" in nothing.output, nothing.output

    import duckdb

    with duckdb.connect(str(home / "tables.duckdb"), read_only=True) as con:
        n = con.execute("select count(*) from voice_assets.utterances where episode = ?",
                        [key]).fetchone()[0]
    assert n >= len([u for u in demo_episode.utterances if not u.interjection]) - 2
    # The run went into the instance the UI reads.
    assert any((home / "dagster").rglob("*.db"))
