"""Test material: reference recordings fetched once from PyPI, synthetic music, and a
throw-away $VOICE_ASSETS_HOME that materializes real episodes through the real assets.

The pyannote.audio 4.0.7 wheel ships a 30 s, 16 kHz, two-speaker recording with its
reference diarization (RTTM) and transcript (STM). We only need those three files, not the
package (whose torch pins clash with ours), so the wheel is downloaded without dependencies
and the files are extracted with zipfile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

PYANNOTE_WHEEL = "pyannote-audio==4.0.7"
SAMPLE_FILES = ("sample.wav", "sample.rttm", "sample.stm")
_IN_WHEEL = "pyannote/audio/sample/"


def cache_dir() -> Path:
    """$VOICE_ASSETS_TESTDATA, else ~/.cache/voice-assets/testdata."""
    env = os.environ.get("VOICE_ASSETS_TESTDATA")
    return Path(env) if env else Path.home() / ".cache" / "voice-assets" / "testdata"


def _extract(wheel: Path, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".pyannote-sample.", dir=target.parent))
    tmp.chmod(0o755)
    try:
        with zipfile.ZipFile(wheel) as zf:
            for name in SAMPLE_FILES:
                (tmp / name).write_bytes(zf.read(_IN_WHEEL + name))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pyannote_sample() -> tuple[Path, Path, Path]:
    """(wav, rttm, stm) of pyannote.audio's sample, downloading the wheel on first use."""
    root = cache_dir()
    target = root / "pyannote-audio-4.0.7-sample"
    paths = tuple(target / name for name in SAMPLE_FILES)
    if all(p.is_file() for p in paths):
        return paths  # type: ignore[return-value]
    root.mkdir(parents=True, exist_ok=True)
    wheels = sorted(root.glob("pyannote_audio-4.0.7-*.whl"))
    if not wheels:
        with tempfile.TemporaryDirectory(dir=root) as dl:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    PYANNOTE_WHEEL,
                    "-d",
                    dl,
                ],
                check=True,
            )
            found = sorted(Path(dl).glob("pyannote_audio-4.0.7-*.whl"))
            if not found:
                raise FileNotFoundError(f"pip download {PYANNOTE_WHEEL} produced no wheel")
            _extract(found[0], target)
    else:
        _extract(wheels[0], target)
    return paths  # type: ignore[return-value]


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) turns of an RTTM file."""
    turns = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER":
            start, dur = float(parts[3]), float(parts[4])
            turns.append((start, start + dur, parts[7]))
    return turns


def one_voice(x: np.ndarray, reference: list[tuple[float, float, str]], speaker: str,
              sample_rate: int = 16000, pause_s: float = 0.6) -> np.ndarray:
    """``speaker``'s turns of ``x`` without what any other voice overlaps, joined with
    ``pause_s`` of silence after each."""
    others = [(s, e) for s, e, spk in reference if spk != speaker]
    pieces = []
    for s, e, spk in reference:
        if spk != speaker:
            continue
        keep = np.ones(int((e - s) * sample_rate), bool)
        for a, b in others:
            lo, hi = max(s, a), min(e, b)
            if hi > lo:
                keep[int((lo - s) * sample_rate):int((hi - s) * sample_rate)] = False
        seg = x[int(s * sample_rate):int(s * sample_rate) + keep.size]
        pieces += [seg[keep[:seg.size]], np.zeros(int(pause_s * sample_rate), np.float32)]
    return np.concatenate(pieces)


# ------------------------------------------------------------------ synthetic material


def music(duration_s: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A loud, speech-free backing track: sustained chords with vibrato plus noise drums.

    Harmonic, stationary and percussive parts are what a separator must keep out of the
    vocal stem; none of it is speech, so VAD should stay quiet on it.
    """
    rng = np.random.default_rng(seed)
    n = int(duration_s * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros(n, np.float64)
    bar = int(2.0 * sample_rate)
    for start in range(0, n, bar):
        seg = slice(start, min(n, start + bar))
        root = rng.choice([110.0, 130.8, 146.8, 164.8, 196.0])
        for ratio in (1.0, 1.25, 1.5, 2.0):
            f = root * ratio
            vib = 1 + 0.004 * np.sin(2 * np.pi * 5 * t[seg])
            out[seg] += 0.12 / ratio * np.sin(2 * np.pi * f * vib * t[seg])
    beat = int(0.5 * sample_rate)
    env = np.exp(-np.arange(beat) / (0.03 * sample_rate))
    for start in range(0, n - beat, beat):
        out[start : start + beat] += 0.25 * env * rng.standard_normal(beat)
    return (out / np.max(np.abs(out)) * 0.5).astype(np.float32)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR (dB) of an estimate against a reference of the same length."""
    n = min(estimate.size, reference.size)
    est = np.asarray(estimate[:n], np.float64)
    ref = np.asarray(reference[:n], np.float64)
    target = (est @ ref) / (ref @ ref) * ref
    return float(10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


# ------------------------------------------------------------------ materializing episodes


# Every episode asset a clip depends on: what tests that score clips materialize.
UP_TO_CLIPS = ["episode_media", "episode_audio", "episode_subtitles", "stems", "voice_activity",
               "diarization", "speaker_embeddings", "transcript", "aligned_transcript",
               "face_tracks", "speaking_faces", "character_map", "utterances", "shots", "clips"]


class EpisodeHome:
    """$VOICE_ASSETS_HOME in a tmp dir with an ephemeral instance; episodes in its inbox."""

    SERIES = "Test Show"

    def __init__(self, root: Path) -> None:
        from voice_assets.paths import Layout

        self.layout = Layout(root)
        self.instance = dg.DagsterInstance.ephemeral()

    def add_episode(self, stem: str, samples: np.ndarray, sample_rate: int) -> str:
        """Write a mono FLAC-in-Matroska episode into the inbox; return its partition key."""
        from voice_assets.media.encode import AudioTrack, write_media
        from voice_assets.partitions import episode_key

        path = self.layout.inbox / self.SERIES / f"{stem}.mkv"
        write_media(path, [AudioTrack(np.asarray(samples, np.float32), sample_rate, "flac")])
        key = episode_key(self.SERIES, stem)
        if key not in self.instance.get_dynamic_partitions("episodes"):
            self.instance.add_dynamic_partitions("episodes", [key])
        return key

    def materialize(
        self, key: str, selection: list[str], **resources: Any
    ) -> dg.ExecuteInProcessResult:
        from voice_assets import assets as assets_package
        from voice_assets.resources import default_resources

        all_assets = dg.load_assets_from_package_module(assets_package)
        checks = dg.load_asset_checks_from_package_module(assets_package)
        res = {**default_resources(self.layout), **resources}
        return dg.materialize(
            [*all_assets, *checks],
            selection=selection,
            partition_key=key,
            instance=self.instance,
            resources=res,
            raise_on_error=False,
        )

    def table(self, name: str, key: str) -> pl.DataFrame:
        import duckdb

        with duckdb.connect(str(self.layout.database)) as con:
            df = pl.from_arrow(
                con.sql(
                    f"select * from voice_assets.{name} where episode = '{key}'"
                ).to_arrow_table()
            )
        assert isinstance(df, pl.DataFrame)
        return df


def step_errors(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's error text, causes included."""
    return "\n".join(
        e.step_failure_data.error.to_string()
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error is not None
    )


def log_messages(home: EpisodeHome, result: dg.ExecuteInProcessResult, level: int) -> list[str]:
    """User log messages of a run at ``level`` (e.g. logging.WARNING)."""
    return [
        r.user_message
        for r in home.instance.all_logs(result.run_id)
        if r.level == level and r.user_message
    ]


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def demo_path(episode: Any, *names: str) -> Path:
    """The first of ``names`` that the synthetic demo episode has, as a Path."""
    for name in names:
        value = getattr(episode, name, None)
        if value is not None:
            return Path(value)
    raise AttributeError(f"demo episode has none of {names}")


def demo_mixture(episode: Any, workdir: Path) -> Path:
    """The demo video's audio decoded by the ingest code (44.1 kHz mono dataset WAV)."""
    from voice_assets.media.decode import decode_episode_audio
    from voice_assets.media.probe import probe_media

    video = demo_path(episode, "video", "media", "path")
    audio = decode_episode_audio(video, probe_media(video).audio.index, workdir)
    return Path(audio.dataset_path)


# The [V4+ Styles] section of the .ass files the subtitle and ingest tests write.
STYLES = (
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,"
    "1,2,2,2,10,10,10,1\n"
    "Style: Sign,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,"
    "1,2,2,8,10,10,10,1\n"
)


def invoke(*args: str) -> Any:
    """`voice-assets ARGS` in process, as a user types it (click's Result)."""
    from click.testing import CliRunner

    from voice_assets.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ------------------------------------------------------------------ services


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    raise FileNotFoundError(f"PostgreSQL's {name} is not installed (Debian: apt-get install "
                            "postgresql)")


class PostgresServer:
    """A throw-away PostgreSQL cluster on a free loopback port (initdb in a temp folder).

    PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres` (else
    `nobody`) account, in a folder that account can reach.
    """

    def __init__(self) -> None:
        import pwd

        self.root = Path(tempfile.mkdtemp(prefix="va-postgres."))
        self.root.chmod(0o755)
        self.data, self.port = self.root / "data", free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = next((u for u in ("postgres", "nobody") if _has_user(u)), "nobody")
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-t", "60", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.prefix, *cmd], check=True, capture_output=True, cwd=self.root)

    def stop(self) -> None:
        try:
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class RedisServer:
    """A throw-away Redis (Debian's redis-server) on a free loopback port, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install "
                                    "redis-server)")
        self.root = Path(tempfile.mkdtemp(prefix="va-redis."))
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket
        import time

        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class S3Server:
    """A real S3 endpoint (moto's server: the S3 REST API over HTTP) on a free loopback port,
    with the environment a client needs (credentials and AWS_ENDPOINT_URL) in ``env``."""

    def __init__(self, bucket: str = "voice-assets") -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.bucket = bucket
        self.env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}"}

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(key="test", secret="test",
                                 endpoint_url=self.env["AWS_ENDPOINT_URL"])

    def stop(self) -> None:
        self.server.stop()
