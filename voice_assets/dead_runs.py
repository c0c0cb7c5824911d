"""Runs whose process died (kill -9, out of memory, a reboot) are marked failed.

Dagster marks a run failed when its worker reports the failure; a worker killed outright
reports nothing, and the run would show as running in the UI forever. Every run of this
project records its worker (``voice_assets/worker``: host, pid and the process's start time)
when its storage resource starts, and CLI runs carry it from creation; whoever starts next (the
CLI, on every command that opens the instance) marks the runs of dead workers on this host as
failed, with the reason. A run of another host is never judged from here.
"""

from __future__ import annotations

import dagster as dg

from voice_assets.resources.storage import WORKER_TAG
from voice_assets.scratch import worker_alive

_UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.CANCELING]


def mark_dead_runs_failed(instance: dg.DagsterInstance) -> list[str]:
    """Report every unfinished run whose recorded worker is gone as failed; return their ids."""
    failed: list[str] = []
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=_UNFINISHED))
    for run in runs:
        worker = run.tags.get(WORKER_TAG)
        if not worker or worker_alive(worker) is not False:
            continue
        instance.report_run_failed(
            run,
            f"the process running it ({worker}) is gone (killed or crashed) without reporting; "
            "marked failed. Its temp files are removed by the next run, and re-running the "
            "same selection resumes from the stages that finished",
        )
        failed.append(run.run_id)
    return failed
