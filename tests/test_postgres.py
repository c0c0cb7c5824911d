"""The instance on PostgreSQL: one setting moves runs, events and pool limits into a real
PostgreSQL server (started here on a free loopback port), and the CLI works against it."""

from __future__ import annotations

from pathlib import Path

import pytest
from testdata import PostgresServer, invoke, music


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


def test_runs_and_pools_live_in_postgres_when_the_url_is_set(postgres, tmp_path: Path,
                                                           monkeypatch) -> None:
    import psycopg2

    home, dagster_home = tmp_path / "home", tmp_path / "home" / "dagster"
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("VOICE_ASSETS_POSTGRES_URL", postgres.url)
    from voice_assets.media.encode import AudioTrack, write_media

    source = tmp_path / "Pilot.mkv"
    write_media(source, [AudioTrack(music(4.0, 16_000), 16_000, "flac")])
    ingested = invoke("ingest", str(source), "--series", "Test Show")
    assert ingested.exit_code == 0, ingested.output
    key = "test-show__pilot"

    ran = invoke("run", "--episode", key, "--select", "episode_media,episode_audio")
    assert ran.exit_code == 0, ran.output
    config = (dagster_home / "dagster.yaml").read_text()
    assert "postgres_url:\n      env: VOICE_ASSETS_POSTGRES_URL" in config
    assert postgres.url not in config  # the secret stays in the environment
    assert not (dagster_home / "history" / "runs.db").exists()  # no local SQLite history
    with psycopg2.connect(postgres.url) as con, con.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM runs GROUP BY status")
        assert dict(cur.fetchall()) == {"SUCCESS": 1}
        cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = "
                    "'ASSET_MATERIALIZATION'")
        assert cur.fetchone()[0] == 2  # episode_media and episode_audio
        cur.execute('SELECT concurrency_key, "limit" FROM concurrency_limits')
        pools = dict(cur.fetchall())
    assert pools["series"] == 1 and pools["training"] == 1 and pools["models"] >= 1
    # The CLI reads the history back from PostgreSQL.
    status = invoke("status")
    rows = {line.split()[0]: line.split()[1:] for line in status.output.splitlines()[1:]}
    assert rows["episode_audio"] == ["x"] and rows["stems"] == ["."], status.output
