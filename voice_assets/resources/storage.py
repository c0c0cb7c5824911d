"""Where binaries go: the episode/asset folder layout under $VOICE_ASSETS_HOME.

For the length of a run the resource also owns the run's scratch folder: every atomic write
puts its temp files there, the folder is removed when the run ends, and a run that starts
removes the folders that killed runs left behind (voice_assets/scratch.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from voice_assets import scratch
from voice_assets.atomic import use_scratch
from voice_assets.paths import Layout

WORKER_TAG = "voice_assets/worker"  # <host>:<pid>:<start>: lets the CLI spot dead runs


class StorageResource(dg.ConfigurableResource):
    """Root of the on-disk store; assets ask it for their per-episode folder."""

    home: str

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.home))

    def episode_dir(self, episode: str, asset: str) -> Path:
        path = self.layout.episode_dir(episode, asset)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[StorageResource]:
        if not context.run_id:  # a sensor tick or a direct call: no run, no temp files
            yield self
            return
        home = self.layout.home
        removed = scratch.sweep(home)
        if removed and context.log is not None:
            context.log.info(
                "removed %d temp folder(s) left by runs that were killed: %s",
                len(removed), ", ".join(p.name for p in removed),
            )
        run_id = context.run_id
        if context.instance is not None:
            with contextlib.suppress(Exception):  # bookkeeping must never fail a run
                context.instance.add_run_tags(context.run_id, {WORKER_TAG: scratch.worker_id()})
        folder = scratch.open_scratch(home, run_id)
        try:
            with use_scratch(folder):
                yield self
        finally:
            scratch.close_scratch(folder)
