"""Install, start, stop and inspect a local Label Studio server.

Label Studio pins Django, pytz, pyarrow and protobuf versions that fight Dagster's, so it lives
in its own virtualenv (default ``~/.cache/voice-assets/label-studio-<version>``, shared by CI and
tests).
Its data lives under ``$VOICE_ASSETS_HOME/label-studio``. The admin user and API token are created
non-interactively from files with mode 0600; secrets go to the server through its environment,
never on a command line (visible in ``ps``) and never in a log line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voice_assets.atomic import write_text
from voice_assets.errors import ServiceUnavailableError, VoiceAssetsError
from voice_assets.paths import Layout
from voice_assets.progress import Progress
from voice_assets.scratch import pid_alive

DEFAULT_VERSION = "1.23.2"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
ADMIN_USERNAME = "admin@voice-assets.local"

ENV_VENV = "VOICE_ASSETS_LABEL_STUDIO_VENV"
ENV_VERSION = "VOICE_ASSETS_LABEL_STUDIO_VERSION"
ENV_PYTHON = "VOICE_ASSETS_LABEL_STUDIO_PYTHON"

_MARKER = ".voice-assets-installed"
_INSTALL_TIMEOUT_S = 1800


class LabelStudioError(VoiceAssetsError):
    """Label Studio could not be installed or started; the message says why and what to do."""


@dataclass(frozen=True)
class ServerFiles:
    """Our files beside Label Studio's own data (sqlite db, media, exports)."""

    data_dir: Path

    @property
    def token_file(self) -> Path:
        return self.data_dir / "api-token"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "admin-password"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "server.json"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"


@dataclass(frozen=True)
class ServerStatus:
    """What ``status`` reports; contains no secret."""

    installed: bool
    version: str
    venv: Path
    running: bool
    healthy: bool
    url: str | None
    pid: int | None
    data_dir: Path
    log_file: Path

    def describe(self) -> str:
        if not self.installed:
            return f"Label Studio {self.version} is not installed (venv {self.venv})"
        if not self.running:
            return f"Label Studio {self.version} is installed in {self.venv} but not running"
        state = "up" if self.healthy else "starting or unhealthy"
        return (
            f"Label Studio {self.version} is {state} at {self.url} (pid {self.pid}, "
            f"data {self.data_dir}, log {self.log_file})"
        )


def files(home: str | Path | None = None) -> ServerFiles:
    layout = Layout(Path(home).resolve()) if home else Layout.from_env()
    return ServerFiles(layout.label_studio)


def default_version() -> str:
    return os.environ.get(ENV_VERSION, DEFAULT_VERSION)


def venv_dir(version: str | None = None) -> Path:
    """Where the server's own virtualenv lives (env override for CI caches)."""
    override = os.environ.get(ENV_VENV)
    if override:
        return Path(override).expanduser().resolve()
    version = version or default_version()
    return Path.home() / ".cache" / "voice-assets" / f"label-studio-{version}"


def executable(venv: Path) -> Path:
    return venv / "bin" / "label-studio"


def is_installed(venv: Path | None = None, version: str | None = None) -> bool:
    version = version or default_version()
    venv = venv or venv_dir(version)
    marker = venv / _MARKER
    if not (marker.is_file() and executable(venv).is_file()):
        return False
    try:
        return json.loads(marker.read_text()).get("version") == version
    except (OSError, ValueError):
        return False


def _base_python() -> str:
    """A plain interpreter (not our venv's) to build the server venv from."""
    return os.environ.get(ENV_PYTHON) or getattr(sys, "_base_executable", None) or sys.executable


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise work across processes (installs; project creation by parallel runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install(
    version: str | None = None,
    venv: Path | None = None,
    progress: Progress | None = None,
    timeout_s: float = _INSTALL_TIMEOUT_S,
) -> Path:
    """Create the server virtualenv and pip-install ``label-studio==version`` into it (idempotent).

    A marker file is written last, so an interrupted install is detected and redone from scratch.
    """
    version = version or default_version()
    venv = venv or venv_dir(version)
    if is_installed(venv, version):
        return venv
    log = venv.parent / f"{venv.name}-install.log"
    with file_lock(venv.parent / f".{venv.name}.lock"):
        if is_installed(venv, version):
            return venv
        if progress:
            progress("label-studio install", 0, 2)
        if venv.exists():
            shutil.rmtree(venv)
        steps = [
            [_base_python(), "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                f"label-studio=={version}",
            ],
        ]
        with open(log, "w") as out:
            for i, cmd in enumerate(steps):
                try:
                    done = subprocess.run(
                        cmd,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        timeout=timeout_s,
                        check=False,
                    )
                except subprocess.TimeoutExpired as exc:
                    shutil.rmtree(venv, ignore_errors=True)
                    raise LabelStudioError(
                        f"installing label-studio=={version} into {venv} took longer than "
                        f"{timeout_s:.0f} s; see {log}"
                    ) from exc
                if done.returncode != 0:
                    shutil.rmtree(venv, ignore_errors=True)
                    raise LabelStudioError(
                        f"installing label-studio=={version} into {venv} failed "
                        f"(exit {done.returncode}): {_tail(log)}\nfull log: {log}"
                    )
                if progress:
                    progress("label-studio install", i + 1, 2)
        (venv / _MARKER).write_text(json.dumps({"version": version}))
    return venv


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    # pip's find-links warnings drown the real error; keep the informative lines.
    keep = [line for line in text if "is ignored: it is neither a file nor a directory" not in line]
    return "\n".join(keep[-lines:])


def _write_secret(path: Path, value: str) -> None:
    """Create a 0600 file atomically (never readable by others, even for an instant)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, value.encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _read_or_create_secret(path: Path, make: str) -> str:
    if path.is_file():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, 0o600)
        value = path.read_text().strip()
        if value:
            return value
    _write_secret(path, make)
    return make


def read_token(home: str | Path | None = None) -> str:
    """The API token written by ``up`` (mode 0600)."""
    token_file = files(home).token_file
    try:
        token = token_file.read_text().strip()
    except FileNotFoundError as exc:
        raise ServiceUnavailableError(
            f"no Label Studio API token: {token_file} does not exist. Run `voice-assets "
            "labelstudio up` or set LABEL_STUDIO_API_KEY"
        ) from exc
    if not token:
        raise ServiceUnavailableError(f"Label Studio API token file {token_file} is empty")
    return token


def _is_label_studio(pid: int) -> bool:
    """Guard against pid reuse: only signal a process that is really our server."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "label-studio" in cmdline or "label_studio" in cmdline


def recorded_url(home: str | Path | None = None) -> str | None:
    """The URL of the server `up` started for this home (kept after `down`), None if never."""
    state = _read_state(files(home))
    return str(state["url"]) if state and state.get("url") else None


def _read_state(sf: ServerFiles) -> dict | None:
    try:
        return json.loads(sf.state_file.read_text())
    except (OSError, ValueError):
        return None


def health(url: str, timeout_s: float = 3.0) -> bool:
    """True when ``GET /health`` answers ``{"status": "UP"}``."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as resp:
            return resp.status == 200 and json.loads(resp.read() or b"{}").get("status") == "UP"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _token_accepted(url: str, token: str, timeout_s: float = 10.0) -> bool | None:
    """True/False if the server accepts/refuses the token; None if it could not be asked."""
    req = urllib.request.Request(
        f"{url.rstrip('/')}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        return False if exc.code in (401, 403) else None
    except (OSError, urllib.error.URLError):
        return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _server_env(home: Path, sf: ServerFiles, password: str, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.pop("VIRTUAL_ENV", None)
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(sf.data_dir),
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(home),
            "LABEL_STUDIO_USERNAME": ADMIN_USERNAME,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def status(home: str | Path | None = None, version: str | None = None) -> ServerStatus:
    sf = files(home)
    state = _read_state(sf) or {}
    version = state.get("version") or version or default_version()
    venv = Path(state["venv"]) if state.get("venv") else venv_dir(version)
    pid = state.get("pid")
    running = bool(pid) and pid_alive(int(pid)) and _is_label_studio(int(pid))
    url = state.get("url")
    return ServerStatus(
        installed=is_installed(venv, version),
        version=version,
        venv=venv,
        running=running,
        healthy=bool(running and url and health(url)),
        url=url if running else None,
        pid=int(pid) if running and pid else None,
        data_dir=sf.data_dir,
        log_file=sf.log_file,
    )


def up(
    home: str | Path | None = None,
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    version: str | None = None,
    timeout_s: float = 300.0,
    progress: Progress | None = None,
) -> ServerStatus:
    """Install if needed, start the server in the background and wait until ``/health`` is UP.

    Idempotent: a server already running for this home is reused. The admin user
    (``ADMIN_USERNAME``) and the API token are created on first start; the token lives in
    ``<home>/label-studio/api-token`` (0600) and the UI password in ``admin-password`` (0600).
    """
    home_path = Path(home).resolve() if home else Layout.from_env().home
    sf = files(home_path)
    version = version or default_version()
    current = status(home_path, version)
    if current.running:
        if current.url and _wait_healthy(current.url, current.pid, timeout_s):
            return status(home_path, version)
        raise LabelStudioError(
            f"Label Studio (pid {current.pid}) is running but {current.url}/health is not UP "
            f"after {timeout_s:.0f} s; see {sf.log_file}, or stop it with "
            "`voice-assets labelstudio down`"
        )
    venv = install(version, progress=progress)
    if not _port_free(host, port):
        raise LabelStudioError(
            f"port {port} on {host} is already in use; choose another with `--port`"
        )
    sf.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(sf.data_dir, 0o700)
    token = _read_or_create_secret(sf.token_file, secrets.token_hex(20))
    password = _read_or_create_secret(sf.password_file, secrets.token_urlsafe(18))
    url = f"http://{host}:{port}"
    cmd = [
        str(executable(venv)),
        "start",
        "--no-browser",
        "--internal-host",
        host,
        "-p",
        str(port),
        "--data-dir",
        str(sf.data_dir),
        "--enable-legacy-api-token",
    ]
    with open(sf.log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=sf.data_dir,
            env=_server_env(home_path, sf, password, token),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state = {
        "pid": proc.pid,
        "url": url,
        "host": host,
        "port": port,
        "version": version,
        "venv": str(venv),
        "username": ADMIN_USERNAME,
        "started_at": time.time(),
    }
    write_text(sf.state_file, json.dumps(state, indent=2))
    if progress:
        progress("label-studio start", 0, 1)
    if not _wait_healthy(url, proc.pid, timeout_s, proc):
        code = proc.poll()
        down(home_path)
        why = f"exited with code {code}" if code is not None else f"not UP after {timeout_s:.0f} s"
        raise LabelStudioError(
            f"Label Studio {version} at {url} {why}; last lines of {sf.log_file}:\n"
            f"{_tail(sf.log_file)}"
        )
    if _token_accepted(url, token) is False:
        _recover_token(venv, sf, home_path, password, token)
        if _token_accepted(url, read_token(home_path)) is False:
            down(home_path)
            raise LabelStudioError(
                f"Label Studio in {sf.data_dir} refuses the token in {sf.token_file}; the data "
                "folder was created with other credentials. Stop it, remove that folder (this "
                "deletes its annotations) or restore the old token file, then run `up` again"
            )
    if progress:
        progress("label-studio start", 1, 1)
    return status(home_path, version)


def _wait_healthy(
    url: str, pid: int | None, timeout_s: float, proc: subprocess.Popen | None = None
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if health(url):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        if proc is None and pid is not None and not pid_alive(pid):
            return False
        time.sleep(1.0)
    return False


_TOKEN_IN_USER_INFO = re.compile(r"'token':\s*'([0-9A-Za-z._-]+)'")


def _recover_token(venv: Path, sf: ServerFiles, home: Path, password: str, token: str) -> None:
    """The token file was lost while the database survived: read the admin's real token back.

    ``label-studio user`` prints the token; its output goes into this process only (a pipe),
    never to a log or terminal.
    """
    done = subprocess.run(
        [
            str(executable(venv)),
            "user",
            "--username",
            ADMIN_USERNAME,
            "--data-dir",
            str(sf.data_dir),
        ],
        cwd=sf.data_dir,
        env=_server_env(home, sf, password, token),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    match = _TOKEN_IN_USER_INFO.search(done.stdout)
    if match:
        _write_secret(sf.token_file, match.group(1))


def down(home: str | Path | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the server of this home (SIGTERM to its process group, SIGKILL after ``timeout_s``).

    Returns True if a server was running.
    """
    sf = files(home)
    state = _read_state(sf)
    if not state or not state.get("pid"):
        return False
    pid = int(state["pid"])
    stopped = False
    if pid_alive(pid) and _is_label_studio(pid):
        stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            _reap(pid)
            time.sleep(0.2)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
        _reap(pid)
    # Keep the URL: clients of this home keep talking to (and reporting "down" for) the server
    # this home started, never to whatever else answers on a default port.
    state.update(pid=None, stopped_at=time.time())
    write_text(sf.state_file, json.dumps(state, indent=2))
    return stopped


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (tests), avoiding a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
