"""Bad input and faults, as a user meets them: each case one parametrized test, through the
real CLI (in process, or as a subprocess where it must be killed) on a real home.

The episodes are short noise recordings written as real WAV files: what is under test is what
the platform does with names, disks, databases, kills and servers, not the speech models.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import soundfile as sf
from testdata import invoke

from voice_assets.errors import DiskFullError, ServiceUnavailableError
from voice_assets.paths import Layout

RATE = 16_000


def recording(path: Path, seconds: float = 3.0, seed: int = 0) -> Path:
    """A short band-limited noise 'episode' (not silent, so ingest accepts it)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(int(seconds * RATE)).astype(np.float32)
    kernel = np.hanning(9) / np.hanning(9).sum()
    audio = 0.2 * np.convolve(noise, kernel, mode="same")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, RATE)
    return path


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def temp_leftovers(home: Path) -> list[Path]:
    """Temp files and folders a run may leave: scratch folders, dot-named files beside data."""
    found = [p for p in (home / "tmp").glob("*")] if (home / "tmp").exists() else []
    found += [p for p in (home / "episodes").rglob(".*")] if (home / "episodes").exists() else []
    return found


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    "series", ["../../escape", "/abs/escape", ".", "..", ".hidden", "a/../../b", "x\\..\\y"]
)
def test_ingest_series_never_writes_outside_the_home(home: Path, tmp_path: Path, series: str):
    src = recording(tmp_path / "src" / "ep1.wav")
    outside_before = files_under(tmp_path) - files_under(home)
    result = invoke("ingest", str(src), "--series", series)
    assert result.exit_code == 0, result.output
    key = result.output.split()[0]
    assert "__" in key and "/" not in key and not key.startswith(".")
    copied = files_under(home / "inbox")
    assert len(copied) == 1
    [path] = copied
    assert path.parent.parent == home / "inbox" and not path.parent.name.startswith(".")
    assert files_under(tmp_path) - files_under(home) == outside_before  # nothing else written


@pytest.mark.parametrize(
    "stem",
    ["é" * 122,  # 244 bytes of UTF-8: the name that used to fail in the temp-file prefix
     "a" * 246,
     "日本語のエピソード　第１話「始まり」",
     "Épisode 01 – L'été",
     ],
    ids=["244-byte-accents", "246-byte-ascii", "japanese", "french"],
)
def test_long_and_unicode_names_ingest_and_run(home: Path, tmp_path: Path, stem: str):
    src = recording(tmp_path / "src" / f"{stem}.wav")
    result = invoke("ingest", str(src), "--series", "シリーズ「テスト」")
    assert result.exit_code == 0, result.output
    key = result.output.split()[0]
    assert len(key.encode("utf-8")) <= 130, key
    ran = invoke("run", "--episode", key, "--select", "episode_media,episode_audio")
    assert ran.exit_code == 0, ran.output
    audio = Layout(home).episode_dir(key, "episode_audio")
    assert sorted(p.suffix for p in audio.iterdir()) == [".wav", ".wav"]
    assert temp_leftovers(home) == []


def test_an_episode_key_that_is_a_path_is_refused(home: Path):
    from voice_assets.errors import PartitionKeyError

    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(PartitionKeyError, match="cannot name a folder"):
            Layout(home).episode_dir(bad, "clips")


# --------------------------------------------------------------------------- the tables file
def _corrupt(db: Path, how: str) -> None:
    if how == "zero-byte":
        db.write_bytes(b"")
    else:
        size = db.stat().st_size
        with db.open("r+b") as f:
            f.truncate(size // 2)


@pytest.mark.parametrize("how", ["truncated", "zero-byte"])
def test_a_broken_tables_file_fails_fast_and_says_how_to_rebuild(home: Path, tmp_path: Path,
                                                                  how: str):
    key = invoke("ingest", str(recording(tmp_path / "src" / "ep1.wav")), "--series",
                 "Show").output.split()[0]
    assert invoke("run", "--episode", key, "--select", "episode_media").exit_code == 0
    db = Layout(home).database
    _corrupt(db, how)
    started = time.monotonic()
    ran = invoke("run", "--episode", key, "--select", "episode_media,episode_audio")
    took = time.monotonic() - started
    assert ran.exit_code == 1, ran.output
    assert "is not a readable DuckDB database" in ran.output and "corrections pull" in ran.output
    # Not the client's ~100 s of connection retries (a loose bound: it takes a second or two).
    assert took < 60, took
    status = invoke("status")
    assert status.exit_code == 1 and "is not a readable DuckDB database" in status.output
    assert "x" not in "".join(status.output.split("error:")[0])  # no "all materialized" table


# --------------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: needs root (CI and this project's machines run tests as root)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the disk-full cases need a real full "
                    "disk and are skipped on this machine")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): disk-full cases skipped")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill_wav(path: Path) -> None:
    from voice_assets.atomic import write_wav

    write_wav(path, np.zeros(RATE * 200, np.float32), RATE)  # 6.4 MB of PCM_16


def _fill_bytes(path: Path) -> None:
    from voice_assets.atomic import write_bytes

    write_bytes(path, b"\0" * (6 * 2**20))


def _fill_table(path: Path) -> None:
    from voice_assets.resources.tables import DuckDBTablesIOManager

    @dg.asset
    def big():
        rng = np.random.default_rng(0)
        return pl.DataFrame({"x": rng.standard_normal(1_500_000)})

    dg.materialize([big], resources={
        "io_manager": DuckDBTablesIOManager(database=str(path), schema="voice_assets")})


@pytest.mark.parametrize("writer", [_fill_wav, _fill_bytes, _fill_table],
                         ids=["wav-libsndfile", "file-errno-28", "duckdb-table"])
def test_a_full_disk_is_named_with_its_free_space(small_disk: Path, writer):
    target = small_disk / "out" / ("x.duckdb" if writer is _fill_table else "x.wav")
    with pytest.raises(Exception) as caught:
        writer(target)
    error = caught.value
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)  # dagster wraps asset errors
    full = next((e for e in chain if isinstance(e, DiskFullError)), None)
    assert full is not None, repr(error)
    assert "no space left on the disk holding" in str(full) and "MiB free" in str(full)
    assert [p.name for p in small_disk.rglob("*") if p.is_file() and p.name.startswith(".")] \
        == []  # the half-written temp file is gone


def test_a_run_on_a_full_disk_stops_before_starting(small_disk: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    home = small_disk / "home"
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))  # the instance elsewhere
    key = invoke("ingest", str(recording(tmp_path / "src" / "ep1.wav")), "--series",
                 "Show").output.split()[0]
    ran = invoke("run", "--episode", key)
    assert ran.exit_code == 1
    assert "no space left on the disk holding" in ran.output and "a run needs at least" \
        in ran.output, ran.output


# --------------------------------------------------------------------------- kill -9
def _cli() -> str:
    return str(Path(sys.executable).with_name("voice-assets"))


def _run_and_kill(home: Path, key: str, select: str, wait_for: str, timeout_s: float = 300):
    """Start a headless run and kill -9 it while ``wait_for`` (a temp-file prefix) is being
    written in its scratch folder."""
    env = {**os.environ, "VOICE_ASSETS_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.Popen([_cli(), "run", "--episode", key, "--select", select], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if any((home / "tmp").glob(f"*/{wait_for}*")):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                return
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before {wait_for} appeared")
            time.sleep(0.005)
        pytest.fail(f"{wait_for} never appeared in {timeout_s:.0f} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.mark.parametrize(
    ("select", "wait_for", "output"),
    [("episode_media,episode_audio", ".analysis", "episode_audio"),
     ("episode_media,episode_audio,stems", ".vocals", "stems"),
     pytest.param("episode_media+", ".clips", "clips", marks=pytest.mark.slow)],
    ids=["decoding-audio", "separating-stems", "cutting-clips"],
)
def test_a_killed_run_is_marked_failed_and_its_temp_files_go_with_the_next_run(
        home: Path, tmp_path: Path, select: str, wait_for: str, output: str, request):
    if output == "clips":  # clips need speech: the demo episode, with its subtitles
        demo = request.getfixturevalue("demo_episode")
        for path in (demo.subtitles, demo.video):
            (tmp_path / "src" / "Show").mkdir(parents=True, exist_ok=True)
            src = tmp_path / "src" / "Show" / Path(path).name
            src.write_bytes(Path(path).read_bytes())
    else:
        src = recording(tmp_path / "src" / "ep1.wav", seconds=240.0)
    key = invoke("ingest", str(src), "--series", "Show").output.split()[0]
    _run_and_kill(home, key, select, wait_for, timeout_s=600)
    left = temp_leftovers(home)
    assert left and all(p.parent == home / "tmp" for p in left), left  # in one place only
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        instance = dg.DagsterInstance.get()
        [dead] = instance.get_runs()
        assert dead.status == dg.DagsterRunStatus.STARTED  # the kill reported nothing
    finally:
        del os.environ["DAGSTER_HOME"]

    rerun = invoke("run", "--episode", key, "--select", select)
    assert rerun.exit_code == 0, rerun.output
    assert f"run {dead.run_id} was left running by a process that is gone" in rerun.output
    assert temp_leftovers(home) == []
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        instance = dg.DagsterInstance.get()
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    finally:
        del os.environ["DAGSTER_HOME"]
    # The re-run's files equal a clean run's, byte for byte.
    clean = tmp_path / "clean"
    os.environ["VOICE_ASSETS_HOME"] = str(clean)
    key2 = invoke("ingest", str(src), "--series", "Show").output.split()[0]
    assert invoke("run", "--episode", key2, "--select", select).exit_code == 0
    names = sorted(p.name for p in Layout(home).episode_dir(key, output).iterdir())
    assert names, f"no {output} files"
    for name in names:
        a = (Layout(home).episode_dir(key, output) / name).read_bytes()
        b = (Layout(clean).episode_dir(key2, output) / name).read_bytes()
        assert a == b, name


def test_two_concurrent_runs_of_one_episode_both_finish_and_leave_nothing(home: Path,
                                                                        tmp_path: Path):
    key = invoke("ingest", str(recording(tmp_path / "src" / "ep1.wav", seconds=60.0)),
                 "--series", "Show").output.split()[0]
    env = {**os.environ, "VOICE_ASSETS_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    cmd = [_cli(), "run", "--episode", key, "--select", "episode_media,episode_audio,stems"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert temp_leftovers(home) == []
    stems = Layout(home).episode_dir(key, "stems")
    for wav in stems.iterdir():
        assert sf.info(wav).duration == pytest.approx(60.0, abs=0.1)  # whole, readable files


# --------------------------------------------------------------------------- changed input
def test_a_changed_file_under_the_same_name_is_marked_stale(home: Path, tmp_path: Path):
    src = recording(tmp_path / "src" / "ep1.wav", seed=1)
    key = invoke("ingest", str(src), "--series", "Show").output.split()[0]
    assert invoke("run", "--episode", key, "--select", "episode_media").exit_code == 0
    assert "~" not in invoke("status").output
    recording(src, seed=2)  # same name, other content
    again = invoke("ingest", str(src), "--series", "Show")
    assert again.exit_code == 0
    assert f"{key}: replaced a different file of the same name" in again.output
    status = invoke("status").output
    row = next(line for line in status.splitlines() if line.startswith("episode_media "))
    assert row.split()[1] == "~", status
    assert f"{key}: its inbox file changed since it was ingested" in status
    assert invoke("run", "--episode", key, "--select", "episode_media").exit_code == 0
    assert "changed since it was ingested" not in invoke("status").output


# --------------------------------------------------------------------------- Label Studio
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("server", ["never-started", "stopped"])
def test_corrections_pull_without_label_studio_fails_and_keeps_its_cursor(home: Path,
                                                                          server: str):
    from voice_assets.review import server as ls

    files = ls.files(home)
    files.data_dir.mkdir(parents=True, exist_ok=True)
    files.token_file.write_text("0" * 40)
    if server == "stopped":  # what `labelstudio down` leaves: the URL, no process
        files.state_file.write_text(json.dumps(
            {"pid": None, "url": f"http://127.0.0.1:{_closed_port()}"}))
    from voice_assets.review.pull import Cursor

    kept = {"label_studio_corrections_sensor": Cursor.parse(None).dump()}
    cursor = Layout(home).label_studio / "cli-sensor-cursors.json"
    cursor.write_text(json.dumps(kept))
    pulled = invoke("corrections", "pull")
    assert pulled.exit_code == 1, pulled.output
    expected = "is down" if server == "stopped" else "voice-assets labelstudio up"
    assert expected in pulled.output, pulled.output
    assert json.loads(cursor.read_text()) == kept


def test_label_studio_client_never_talks_to_a_server_it_was_not_given(tmp_path: Path):
    """With no server recorded for the home there is no default port to fall back on: any
    other Label Studio on 127.0.0.1:8080 is never asked (it would answer 401)."""
    from voice_assets.resources.label_studio import LabelStudioResource
    from voice_assets.review import server as ls

    resource = LabelStudioResource(home=str(tmp_path), api_key="t" * 40)
    with pytest.raises(ServiceUnavailableError, match="no Label Studio server is known"):
        resource.base_url()
    files = ls.files(tmp_path)
    files.data_dir.mkdir(parents=True)
    port = _closed_port()
    files.state_file.write_text(json.dumps({"pid": 2**22 + 7, "url": f"http://127.0.0.1:{port}"}))
    assert ls.down(tmp_path) is False  # the recorded process is long gone
    assert resource.base_url() == f"http://127.0.0.1:{port}"  # the URL survives `down`
    assert not ls.status(tmp_path).running


# --------------------------------------------------------------------------- determinism
def _tables(home: Path) -> dict[str, list[tuple]]:
    """Every table's rows in a stable order, with this home's path written as <home>."""
    import duckdb

    def norm(value):
        if isinstance(value, float) and value != value:
            return "NaN"  # NaN != NaN: compare it as a marker
        if isinstance(value, str):
            return value.replace(str(home), "<home>")
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        return value

    out: dict[str, list[tuple]] = {}
    with duckdb.connect(str(Layout(home).database), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'voice_assets'"
        ).fetchall()]
        for name in sorted(names):
            rows = con.execute(f"select * from voice_assets.{name}").fetchall()
            out[name] = sorted((tuple(norm(v) for v in row) for row in rows), key=repr)
    return out


def _files(home: Path) -> dict[str, bytes]:
    out = {}
    for folder in ("episodes", "exports", "dataset"):
        for path in files_under(home / folder):
            data = path.read_bytes()
            if path.suffix in {".txt", ".csv", ".json", ".jsonl", ".list", ".md", ".yaml"}:
                data = data.replace(str(home).encode(), b"<home>")
            out[str(path.relative_to(home))] = data
    return out


@pytest.mark.slow
def test_two_runs_from_scratch_write_identical_tables_and_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_episode):
    """The whole pipeline twice, each in a fresh home: tables and files (clips, exports,
    cards) are the same, byte for byte, apart from the home's own path."""
    homes = [tmp_path / "a", tmp_path / "b"]
    src = tmp_path / "src" / "Demo"
    src.mkdir(parents=True)
    for path in (demo_episode.video, demo_episode.subtitles):
        (src / Path(path).name).write_bytes(Path(path).read_bytes())
    for home in homes:
        monkeypatch.setenv("VOICE_ASSETS_HOME", str(home))
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        assert invoke("ingest", str(src / Path(demo_episode.video).name)).exit_code == 0
        ran = invoke("run", "--all")
        assert ran.exit_code == 0, ran.output
        assert temp_leftovers(home) == []
    tables = [_tables(h) for h in homes]
    assert tables[0].keys() == tables[1].keys() and {"clips", "dataset_splits"} <= tables[0].keys()
    for name in tables[0]:
        assert tables[0][name] == tables[1][name], f"table {name} differs between two runs"
    files = [_files(h) for h in homes]
    assert files[0].keys() == files[1].keys()
    assert any("/cards/" in f for f in files[0]) and any(f.endswith(".wav") for f in files[0])
    differ = sorted(f for f in files[0] if files[0][f] != files[1][f])
    assert differ == [], differ
