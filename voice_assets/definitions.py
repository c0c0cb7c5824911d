"""The one Definitions object of the voice-assets code location."""

from __future__ import annotations

import dagster as dg

from voice_assets import assets as assets_package
from voice_assets.assets.human_input import corrections, speaker_names
from voice_assets.distributed import executor
from voice_assets.partitions import characters, episodes
from voice_assets.paths import Layout
from voice_assets.resources import default_resources
from voice_assets.sensors import all_sensors

all_assets = dg.load_assets_from_package_module(assets_package)
all_checks = dg.load_asset_checks_from_package_module(assets_package)

# Review pushes to a Label Studio server, which may not be running: it gets its own job so
# the episode pipeline never fails for want of a labeling server.
REVIEW_GROUP = "review"

episode_assets = [
    key
    for a in all_assets
    if isinstance(a, dg.AssetsDefinition) and a.partitions_def == episodes
    for key in a.keys
    if a.group_names_by_key.get(key) != REVIEW_GROUP
]
# Label Studio pushes: partitioned, but outside the episode pipeline (its own job).
review_assets = [
    key
    for a in all_assets
    if isinstance(a, dg.AssetsDefinition) and a.partitions_def == episodes
    for key in a.keys
    if a.group_names_by_key.get(key) == REVIEW_GROUP
]
series_assets = [
    key
    for a in all_assets
    if isinstance(a, dg.AssetsDefinition) and a.partitions_def is None
    for key in a.keys
]

# Every run executes its steps in one process, so a model is loaded once per run rather than
# once per step (the multiprocess default would reload separation, diarization and ASR in each
# step's process). Runs, not steps, are what run side by side: the instance's run queue and
# model pool (voice_assets/instance_config.py) size that to the machine.
EXECUTOR = executor()  # in-process, or celery workers (voice_assets/distributed.py)

episode_pipeline = dg.define_asset_job(
    "episode_pipeline",
    selection=dg.AssetSelection.assets(*episode_assets),
    partitions_def=episodes,
    executor_def=EXECUTOR,
    description="Every per-episode asset, from the inbox file to the dataset clips.",
)
series_datasets = dg.define_asset_job(
    "series_datasets",
    selection=dg.AssetSelection.assets(*series_assets),
    executor_def=EXECUTOR,
    description="Cross-episode outputs (splits, exports, cards, character registry) rebuilt "
    "from all episodes; kept current by the series_automation sensor.",
)
# Voice models: one partition per series character, trained in its own job (hours per voice
# on a CPU), so a training run never holds up the episode pipeline.
train_voice_models = dg.define_asset_job(
    "train_voice_models",
    selection=dg.AssetSelection.assets("voice_models"),
    partitions_def=characters,
    executor_def=EXECUTOR,
    description="Train (or re-train) the voice model of a series character.",
)
jobs = [episode_pipeline, series_datasets, train_voice_models]
if review_assets:
    jobs.append(
        dg.define_asset_job(
            "push_review_tasks",
            selection=dg.AssetSelection.groups(REVIEW_GROUP),
            partitions_def=episodes,
            # A few API calls, made where the run is launched, not on the workers.
            executor_def=dg.in_process_executor,
            description="Push an episode's pre-annotated review tasks to Label Studio.",
        )
    )



def episode_pipeline_job() -> dg.JobDefinition:
    """The episode pipeline, for runs whose steps other processes execute (celery workers
    rebuild it from this module-level function)."""
    return defs.resolve_job_def("episode_pipeline")


def series_datasets_job() -> dg.JobDefinition:
    """The series job, reconstructable like `episode_pipeline_job`."""
    return defs.resolve_job_def("series_datasets")


def build_defs(layout: Layout | None = None) -> dg.Definitions:
    """The code location's Definitions, with resources rooted at ``layout`` (default: the
    current $VOICE_ASSETS_HOME, read now rather than when this module was first imported)."""
    return dg.Definitions(
        assets=[*all_assets, corrections, speaker_names],
        asset_checks=all_checks,
        jobs=jobs,
        sensors=all_sensors(dg.AssetSelection.assets(*series_assets)),
        resources=default_resources(layout),
        executor=EXECUTOR,
    )


defs = build_defs()
