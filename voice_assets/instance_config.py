"""How many runs and model steps this machine can hold at once, and the dagster.yaml that says so.

A run of the episode pipeline holds every model it has loaded until it ends (1.3-1.7 GB peak
measured on CPU), so the run queue is bounded by memory as well as by cores. Model steps
(separation, diarization, ASR, emotion) share one concurrency pool; with a GPU that pool has
one slot per GPU, so runs overlap their CPU work while the GPU runs one model at a time.
Each run gets ``cores // runs`` threads (OMP_NUM_THREADS) so parallel runs do not fight over
cores.

The file is rewritten from these numbers whenever the CLI starts, unless the user took it
over by deleting the marker line. Every number can be overridden by an environment variable
(see ``OVERRIDES``).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from voice_assets.atomic import write_text

MARKER = "# written by voice-assets"
RUN_MEMORY_GB = 2.0  # one episode run's peak (1.3-1.7 GB measured) plus headroom
RESERVED_GB = 2.0  # daemon, code server and webserver

# The concurrency pools the assets use (``pool=`` on the asset).
MODELS_POOL = "models"  # a neural network over a whole episode
SERIES_POOL = "series"  # cross-episode outputs: one rebuild at a time
LABEL_STUDIO_POOL = "label_studio"  # one local labeling server
TRAINING_POOL = "training"  # voice model training: one at a time, beside the episode runs

OVERRIDES = {
    "VOICE_ASSETS_MAX_RUNS": "runs at once (default: cores, and memory / run memory)",
    "VOICE_ASSETS_MODEL_SLOTS": "model steps at once across runs (default: GPUs, else max runs)",
    "VOICE_ASSETS_THREADS_PER_RUN": "threads each run may use (default: cores / max runs)",
    "VOICE_ASSETS_RUN_MEMORY_GB": f"peak memory assumed per run (default {RUN_MEMORY_GB})",
}


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_gb: float
    gpus: int

    @classmethod
    def detect(cls) -> Machine:
        return cls(cores=_cores(), memory_gb=_memory_gb(), gpus=_gpus())


@dataclass(frozen=True)
class RunPlan:
    machine: Machine
    max_runs: int
    model_slots: int
    threads_per_run: int
    run_memory_gb: float

    @property
    def pools(self) -> dict[str, int]:
        return {MODELS_POOL: self.model_slots, SERIES_POOL: 1, LABEL_STUDIO_POOL: 1,
                TRAINING_POOL: 1}

    def describe(self) -> str:
        m = self.machine
        return (f"{m.cores} cores, {m.memory_gb:.0f} GB, {m.gpus} GPU(s): up to {self.max_runs} "
                f"run(s) at once, {self.model_slots} model step(s) at once, "
                f"{self.threads_per_run} thread(s) per run")


def _env_int(name: str, env: dict[str, str]) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number ({OVERRIDES[name]})") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1 ({OVERRIDES[name]})")
    return value


def plan_runs(machine: Machine, env: dict[str, str] | None = None) -> RunPlan:
    """The run queue limit, model slots and threads per run for ``machine`` (env overrides)."""
    env = dict(os.environ if env is None else env)
    raw_mem = env.get("VOICE_ASSETS_RUN_MEMORY_GB", "").strip()
    try:
        run_gb = float(raw_mem) if raw_mem else RUN_MEMORY_GB
    except ValueError:
        raise ValueError(f"VOICE_ASSETS_RUN_MEMORY_GB={raw_mem!r} is not a number") from None
    if run_gb <= 0:
        raise ValueError(f"VOICE_ASSETS_RUN_MEMORY_GB={raw_mem!r} must be above 0")
    by_memory = math.floor(max(0.0, machine.memory_gb - RESERVED_GB) / run_gb)
    max_runs = _env_int("VOICE_ASSETS_MAX_RUNS", env) or max(1, min(machine.cores, by_memory))
    model_slots = _env_int("VOICE_ASSETS_MODEL_SLOTS", env) or (
        min(machine.gpus, max_runs) if machine.gpus else max_runs)
    threads = _env_int("VOICE_ASSETS_THREADS_PER_RUN", env) or max(1, machine.cores // max_runs)
    return RunPlan(machine, max_runs, model_slots, threads, run_gb)


POSTGRES_ENV = "VOICE_ASSETS_POSTGRES_URL"


def postgres_storage() -> str:
    """The instance's run, event-log and schedule storage in PostgreSQL (dagster-postgres),
    read from $VOICE_ASSETS_POSTGRES_URL when the instance loads (the secret stays out of
    the file)."""
    return ("# Runs, events and schedules in PostgreSQL: every machine of the deployment sees\n"
            f"# one history (set by {POSTGRES_ENV}).\n"
            "storage:\n"
            "  postgres:\n"
            "    postgres_url:\n"
            f"      env: {POSTGRES_ENV}\n")


def normalise_postgres_url(url: str) -> str:
    """``url`` with the psycopg2 driver named (SQLAlchemy 2.1 reads a bare ``postgresql://``
    as psycopg 3, which is not installed; dagster-postgres ships with psycopg2)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def render(plan: RunPlan, postgres: bool | None = None) -> str:
    """dagster.yaml for ``plan``: a bounded run queue, op-level pools, no telemetry; storage
    in PostgreSQL when ``postgres`` (default: when $VOICE_ASSETS_POSTGRES_URL is set), else
    Dagster's local SQLite files."""
    if postgres is None:
        postgres = bool(os.environ.get(POSTGRES_ENV))
    return (
        f"{MARKER} from this machine ({plan.describe()}).\n"
        "# It is rewritten when the CLI starts; delete the line above to manage this file\n"
        "# yourself, or set VOICE_ASSETS_MAX_RUNS / VOICE_ASSETS_MODEL_SLOTS /\n"
        "# VOICE_ASSETS_THREADS_PER_RUN / VOICE_ASSETS_RUN_MEMORY_GB instead.\n"
        "telemetry:\n"
        "  enabled: false\n"
        "# The daemon fails runs that never start; the CLI fails runs whose process died.\n"
        "run_monitoring:\n"
        "  enabled: true\n"
        "  start_timeout_seconds: 300\n"
        "  max_resume_run_attempts: 0\n"
        "concurrency:\n"
        "  runs:\n"
        f"    max_concurrent_runs: {plan.max_runs}\n"
        "  pools:\n"
        f"    default_limit: {plan.model_slots}\n"
        "    granularity: op\n"
    ) + (postgres_storage() if postgres else "")


def is_managed(dagster_home: Path) -> bool:
    """Whether ``dagster.yaml`` is this project's to write (absent, or still carrying MARKER)."""
    path = dagster_home / "dagster.yaml"
    return not path.exists() or MARKER in path.read_text(encoding="utf-8", errors="replace")


def write_instance_config(dagster_home: Path, plan: RunPlan) -> bool:
    """(Re)write ``dagster.yaml`` unless the user took it over; True when it was written."""
    path = dagster_home / "dagster.yaml"
    text = render(plan)
    if not is_managed(dagster_home):
        return False
    if path.exists() and path.read_text(encoding="utf-8", errors="replace") == text:
        return False
    dagster_home.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    return True


def _cores() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = Path("/sys/fs/cgroup/cpu.max")
    if quota.is_file():
        parts = quota.read_text().split()
        if len(parts) == 2 and parts[0] != "max":
            n = min(n, max(1, math.floor(int(parts[0]) / int(parts[1]))))
    return max(1, n)


def _memory_gb() -> float:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.is_file():
        raw = limit.read_text().strip()
        if raw.isdigit():
            total = min(total, int(raw))
    return total / 2**30


def _gpus() -> int:
    """CUDA devices, counted without importing torch (the CLI stays fast)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    dev = Path("/dev")
    return len([p for p in dev.glob("nvidia[0-9]*")])
