"""Kubernetes: the step Jobs that dagster-k8s's k8s_job_executor creates, built by its own code
from the Helm values in deploy/helm and the stages' op tags (no cluster here: the manifests are
rendered and read, not applied)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)
from kubernetes.client import ApiClient

from voice_assets.definitions import defs
from voice_assets.distributed import GPU_RESOURCE

ROOT = Path(__file__).resolve().parents[1]
VALUES = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
MODEL_STAGES = {"stems", "diarization", "transcript", "face_tracks", "emotion_features"}


def _launcher_context() -> K8sContainerContext:
    """What the chart's K8sRunLauncher gives every run and step pod."""
    cfg = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    run = cfg["runK8sConfig"]
    return K8sContainerContext(
        env_vars=cfg["envVars"], volumes=cfg["volumes"], volume_mounts=cfg["volumeMounts"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            {"container_config": run["containerConfig"]}))


def _step_jobs(job_name: str) -> dict[str, dict[str, Any]]:
    """Each step's Kubernetes Job as the executor's launch_step builds it, as a manifest."""
    image = VALUES["dagster-user-deployments"]["deployments"][0]["image"]
    job_config = DagsterK8sJobConfig(
        job_image=f"{image['repository']}:{image['tag']}",
        dagster_home="/opt/dagster/dagster_home", instance_config_map="voice-assets-instance",
        postgres_password_secret=VALUES["global"]["postgresqlSecretName"])
    out = {}
    for node in defs.resolve_job_def(job_name).graph.nodes:
        context = _launcher_context().merge(K8sContainerContext(
            run_k8s_config=get_user_defined_k8s_config(node.definition.tags)))
        job = construct_dagster_k8s_job(
            job_config, args=["dagster", "api", "execute_step"],
            job_name=f"dagster-step-{get_k8s_job_name('a-run-id', node.name)}",
            component="step_worker", user_defined_k8s_config=context.run_k8s_config)
        out[node.name] = ApiClient().sanitize_for_serialization(job)
    return out


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return container


def test_model_stages_get_a_gpu_and_the_rest_the_launcher_defaults():
    jobs = _step_jobs("episode_pipeline")
    assert set(jobs) >= MODEL_STAGES and {"episode_media", "clips"} <= set(jobs)
    for name, manifest in jobs.items():
        container = _container(manifest)
        resources = container["resources"]
        tolerations = manifest["spec"]["template"]["spec"].get("tolerations") or []
        if name in MODEL_STAGES:
            assert resources["limits"][GPU_RESOURCE] == "1", name
            assert resources["requests"] == {"cpu": "2", "memory": "6Gi"}, name
            assert [t["key"] for t in tolerations] == [GPU_RESOURCE], name
        else:
            assert GPU_RESOURCE not in resources.get("limits", {}), name
            assert resources["requests"] == {"cpu": "1", "memory": "3Gi"}, name
            assert not tolerations, name
        # Every step sees the shared store and knows where it is.
        assert {"name": "store", "mountPath": "/data"} in container["volumeMounts"], name
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VOICE_ASSETS_HOME"] == "/data" and env["VOICE_ASSETS_EXECUTOR"] == "k8s"
        assert env["VOICE_ASSETS_TABLES"] == "parquet"  # many pods write tables at once
        assert container["image"] == "registry.example.com/voice-assets:0.1.0"


def test_training_asks_for_more_memory_and_a_gpu():
    (manifest,) = _step_jobs("train_voice_models").values()
    resources = _container(manifest)["resources"]
    assert resources["requests"]["memory"] == "16Gi" and resources["limits"][GPU_RESOURCE] == "1"


def _definitions_with(executor: str) -> subprocess.CompletedProcess:
    code = ("from voice_assets.definitions import defs\n"
            "for j in ('episode_pipeline', 'series_datasets', 'train_voice_models', "
            "'push_review_tasks'):\n"
            "    print(j, defs.resolve_job_def(j).executor_def.name)\n")
    env = {**os.environ, "VOICE_ASSETS_EXECUTOR": executor}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_code_location_loads_with_the_kubernetes_executor():
    loaded = _definitions_with("k8s")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    executors = dict(line.split() for line in loaded.stdout.splitlines())
    assert executors == {"episode_pipeline": "k8s", "series_datasets": "k8s",
                         "train_voice_models": "k8s",
                         # Label Studio pushes are a few API calls: made where the run starts.
                         "push_review_tasks": "in_process"}
    wrong = _definitions_with("kubernetes")
    assert wrong.returncode != 0
    assert "VOICE_ASSETS_EXECUTOR='kubernetes': choose one of in_process, celery, k8s" in (
        wrong.stderr)


def test_the_image_serves_the_code_location_the_chart_loads():
    """The chart, the image's command and the local workspace name one module."""
    deployment = VALUES["dagster-user-deployments"]["deployments"][0]
    command = (ROOT / "Dockerfile").read_text().split("CMD")[1]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    modules = {deployment["dagsterApiGrpcArgs"][1],
               command.split('"-m", "')[1].split('"')[0],
               workspace["load_from"][0]["python_module"]["module_name"]}
    assert modules == {"voice_assets.definitions"}
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env == {"VOICE_ASSETS_HOME": "/data", "VOICE_ASSETS_EXECUTOR": "k8s",
                   "VOICE_ASSETS_TABLES": "parquet"}
