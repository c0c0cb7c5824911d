"""Many machines: Dagster's celery executor over Redis, or one Kubernetes Job per step.

Embedded (the default), every run executes its steps in its own process.

- ``VOICE_ASSETS_EXECUTOR=celery``: the jobs hand each step to celery workers through the Redis
  broker at ``VOICE_ASSETS_REDIS_URL``; the model stages (separation, diarization, ASR, faces,
  emotion features, voice training) go to the ``gpu`` queue, everything else to ``dagster``.
  Start workers with ``voice-assets worker --queue gpu`` on a GPU machine and ``voice-assets
  worker`` elsewhere.
- ``VOICE_ASSETS_EXECUTOR=k8s``: dagster-k8s's ``k8s_job_executor`` runs each step as a
  Kubernetes Job from the code location's image; the model stages ask for a GPU and tolerate
  the GPU nodes' taint, training asks for more memory, the rest take the run launcher's
  defaults (``deploy/helm/values.yaml``).

Every worker, pod and the process that launches runs share the instance
(``VOICE_ASSETS_POSTGRES_URL``) and the store (``VOICE_ASSETS_HOME`` on shared storage).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import dagster as dg

EXECUTOR_ENV = "VOICE_ASSETS_EXECUTOR"
REDIS_ENV = "VOICE_ASSETS_REDIS_URL"
EXECUTORS = ("in_process", "celery", "k8s")
DEFAULT_QUEUE = "dagster"  # dagster-celery's own default queue
GPU_QUEUE = "gpu"
QUEUE_TAG = "dagster-celery/queue"
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's resource and node taint


@dataclass(frozen=True)
class StageResources:
    """What one step's pod asks of Kubernetes."""

    cpu: str
    memory: str
    memory_limit: str
    gpus: int = 0

    def k8s_config(self) -> dict[str, Any]:
        """The step's ``dagster-k8s/config``: container requests and limits, and for GPU
        stages the toleration of the GPU nodes' taint."""
        limits: dict[str, str] = {"memory": self.memory_limit}
        if self.gpus:
            limits[GPU_RESOURCE] = str(self.gpus)
        config: dict[str, Any] = {"container_config": {"resources": {
            "requests": {"cpu": self.cpu, "memory": self.memory}, "limits": limits}}}
        if self.gpus:
            config["pod_spec_config"] = {"tolerations": [
                {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]}
        return config


# Separation, diarization, ASR, faces and emotion hold a few GB of models and audio on a
# 24-minute episode (peak RSS < 4 GB on the CPU); voice training holds a dataset and a model.
MODEL_STAGE = StageResources(cpu="2", memory="6Gi", memory_limit="12Gi", gpus=1)
TRAINING_STAGE = StageResources(cpu="4", memory="16Gi", memory_limit="24Gi", gpus=1)


def _stage_tags(resources: StageResources) -> dict[str, str]:
    return {QUEUE_TAG: GPU_QUEUE, K8S_CONFIG_TAG: json.dumps(resources.k8s_config())}


# Op tags of the model stages: celery sends them to the GPU workers, Kubernetes to GPU nodes.
GPU_STAGE_TAGS: dict[str, str] = _stage_tags(MODEL_STAGE)
TRAINING_STAGE_TAGS: dict[str, str] = _stage_tags(TRAINING_STAGE)


def executor_kind() -> str:
    """``in_process``, ``celery`` or ``k8s``, from ``VOICE_ASSETS_EXECUTOR``."""
    value = os.environ.get(EXECUTOR_ENV, "in_process").strip().lower()
    if value not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={value!r}: choose one of {', '.join(EXECUTORS)}")
    return value


def distributed() -> bool:
    """Whether other processes (celery workers, Kubernetes pods) execute the steps."""
    return executor_kind() != "in_process"


def executor() -> dg.ExecutorDefinition:
    """The executor every job uses: in-process, celery, or a Kubernetes Job per step (celery
    fails at once when the broker URL is missing, not at the first step)."""
    kind = executor_kind()
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if kind == "in_process":
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
