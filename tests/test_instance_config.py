"""Runs sized to the machine: the run queue, model slots and threads per run, and the
dagster.yaml the CLI writes from them (loaded by Dagster itself to prove it is valid)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from voice_assets.instance_config import (
    MARKER,
    MODELS_POOL,
    Machine,
    plan_runs,
    render,
    write_instance_config,
)


@pytest.mark.parametrize(
    ("machine", "runs", "slots", "threads"),
    [
        (Machine(cores=2, memory_gb=24, gpus=0), 2, 2, 1),  # this project's CI machine
        (Machine(cores=16, memory_gb=128, gpus=1), 16, 1, 1),  # one GPU: one model at a time
        (Machine(cores=8, memory_gb=6, gpus=0), 2, 2, 4),  # memory binds before cores
        (Machine(cores=1, memory_gb=2, gpus=0), 1, 1, 1),  # never below one run
    ],
)
def test_plan_follows_cores_memory_and_gpus(machine: Machine, runs: int, slots: int,
                                            threads: int) -> None:
    plan = plan_runs(machine, env={})
    assert (plan.max_runs, plan.model_slots, plan.threads_per_run) == (runs, slots, threads)
    assert plan.pools[MODELS_POOL] == slots


def test_environment_overrides_and_their_errors() -> None:
    machine = Machine(cores=2, memory_gb=24, gpus=0)
    plan = plan_runs(machine, env={"VOICE_ASSETS_MAX_RUNS": "1"})
    assert (plan.max_runs, plan.model_slots, plan.threads_per_run) == (1, 1, 2)
    plan = plan_runs(machine, env={"VOICE_ASSETS_RUN_MEMORY_GB": "20"})
    assert plan.max_runs == 1
    with pytest.raises(ValueError, match="VOICE_ASSETS_MAX_RUNS='two' is not a whole number"):
        plan_runs(machine, env={"VOICE_ASSETS_MAX_RUNS": "two"})
    with pytest.raises(ValueError, match="VOICE_ASSETS_MODEL_SLOTS='0' must be at least 1"):
        plan_runs(machine, env={"VOICE_ASSETS_MODEL_SLOTS": "0"})


def test_written_config_is_loaded_by_dagster_and_left_alone_once_taken_over(
        tmp_path: Path) -> None:
    plan = plan_runs(Machine(cores=4, memory_gb=16, gpus=0), env={})
    assert write_instance_config(tmp_path, plan)
    config = yaml.safe_load((tmp_path / "dagster.yaml").read_text())
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == plan.max_runs == 4
    assert config["concurrency"]["pools"] == {"default_limit": 4, "granularity": "op"}
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        settings = instance.get_concurrency_config()
        assert settings.run_queue_config.max_concurrent_runs == 4
        assert settings.pool_config.default_pool_limit == 4
    finally:
        instance.dispose()
    assert not write_instance_config(tmp_path, plan)  # unchanged: not rewritten

    smaller = plan_runs(Machine(cores=2, memory_gb=16, gpus=0), env={})
    assert write_instance_config(tmp_path, smaller)
    assert "max_concurrent_runs: 2" in (tmp_path / "dagster.yaml").read_text()

    own = render(smaller).replace(MARKER, "# mine")
    (tmp_path / "dagster.yaml").write_text(own)
    assert not write_instance_config(tmp_path, plan)
    assert (tmp_path / "dagster.yaml").read_text() == own


def test_cli_instance_sets_the_pools_unless_the_file_was_taken_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voice_assets.cli import _instance

    monkeypatch.setenv("VOICE_ASSETS_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("VOICE_ASSETS_MODEL_SLOTS", "3")
    instance = _instance()
    slots = {p: instance.event_log_storage.get_concurrency_info(p).slot_count
             for p in ("models", "series", "label_studio")}
    assert slots == {"models": 3, "series": 1, "label_studio": 1}
    instance.dispose()

    config = tmp_path / "dagster" / "dagster.yaml"
    config.write_text(config.read_text().replace(MARKER, "# mine"))
    monkeypatch.setenv("VOICE_ASSETS_MODEL_SLOTS", "1")
    instance = _instance()
    assert instance.event_log_storage.get_concurrency_info("models").slot_count == 3
    assert "# mine" in config.read_text()
    instance.dispose()
