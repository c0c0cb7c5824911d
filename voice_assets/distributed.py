"""Many workers: Dagster's celery executor over Redis, with the model stages on a GPU queue.

Embedded (the default), every run executes its steps in its own process. With
``VOICE_ASSETS_EXECUTOR=celery`` the jobs hand each step to celery workers through the Redis
broker at ``VOICE_ASSETS_REDIS_URL``: the model stages (separation, diarization, ASR, faces,
emotion features, voice training) go to the ``gpu`` queue, everything else to ``dagster``.
Start workers with ``voice-assets worker --queue gpu`` on a GPU machine and ``voice-assets
worker`` elsewhere; every worker and the machine that launches runs share the instance
(``VOICE_ASSETS_POSTGRES_URL``) and the store (``VOICE_ASSETS_HOME`` on shared storage).
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

EXECUTOR_ENV = "VOICE_ASSETS_EXECUTOR"
REDIS_ENV = "VOICE_ASSETS_REDIS_URL"
DEFAULT_QUEUE = "dagster"  # dagster-celery's own default queue
GPU_QUEUE = "gpu"
QUEUE_TAG = "dagster-celery/queue"
# Op tags of the model stages: the celery executor sends them to the GPU workers.
GPU_STAGE_TAGS: dict[str, str] = {QUEUE_TAG: GPU_QUEUE}


def celery_enabled() -> bool:
    value = os.environ.get(EXECUTOR_ENV, "in_process").strip().lower()
    if value not in ("in_process", "celery"):
        raise ValueError(f"{EXECUTOR_ENV}={value!r}: choose in_process or celery")
    return value == "celery"


def executor() -> dg.ExecutorDefinition:
    """The executor every job uses: in-process, or celery when ``VOICE_ASSETS_EXECUTOR`` says
    so (it fails at once when the broker URL is missing, not at the first step)."""
    if not celery_enabled():
        return dg.in_process_executor
    if not os.environ.get(REDIS_ENV):
        raise ValueError(f"{EXECUTOR_ENV}=celery needs {REDIS_ENV} (redis://host:6379/0)")
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {"broker": {"env": REDIS_ENV}, "backend": {"env": REDIS_ENV}}, name="celery")


def celery_app() -> Any:
    """The celery app workers run (``voice_assets.celery_worker``), on the Redis broker."""
    from dagster_celery.make_app import make_app

    url = os.environ.get(REDIS_ENV)
    if not url:
        raise ValueError(f"a celery worker needs {REDIS_ENV} (redis://host:6379/0)")
    app = make_app({"broker": url, "backend": url})
    app.conf.worker_prefetch_multiplier = 1  # a step is minutes long: take one at a time
    return app
