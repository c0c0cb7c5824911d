"""`voice-assets`: the headless entry point (ingest, run, status, ui, demo, models, bench,
voices, speak).

Runs go into the same Dagster instance the UI shows ($DAGSTER_HOME, by default
$VOICE_ASSETS_HOME/dagster), so a headless run and the UI see the same history.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from voice_assets.cli_labelstudio import labelstudio
from voice_assets.cli_voices import speak, voices
from voice_assets.errors import VoiceAssetsError
from voice_assets.paths import Layout
from voice_assets.progress import tqdm_progress

# webrtcvad and pyworld import pkg_resources (pinned setuptools keeps it): not the user's concern.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


def _layout() -> Layout:
    return Layout.from_env()


def _run_plan():  # -> instance_config.RunPlan
    from voice_assets import instance_config

    try:
        return instance_config.plan_runs(instance_config.Machine.detect())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _instance():  # -> dg.DagsterInstance, imported lazily: dagster is slow to import
    """The project's Dagster instance, its dagster.yaml and pool limits sized to this machine."""
    import dagster as dg

    from voice_assets import instance_config

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(_layout().dagster_home)
        os.environ["DAGSTER_HOME"] = home
    Path(home).mkdir(parents=True, exist_ok=True)
    url = os.environ.get(instance_config.POSTGRES_ENV)
    if url:  # this process and the daemon, webserver and runs it starts
        os.environ[instance_config.POSTGRES_ENV] = instance_config.normalise_postgres_url(url)
    managed = instance_config.is_managed(Path(home))
    if managed:
        plan = _run_plan()
        instance_config.write_instance_config(Path(home), plan)
    instance = dg.DagsterInstance.get()
    from voice_assets.dead_runs import mark_dead_runs_failed

    for run_id in mark_dead_runs_failed(instance):
        click.echo(f"run {run_id} was left running by a process that is gone: marked failed",
                   err=True)
    if managed:  # a user who took the file over sets pool limits in the UI or CLI
        storage = instance.event_log_storage
        for pool, slots in plan.pools.items():
            if storage.get_concurrency_info(pool).slot_count != slots:
                storage.set_concurrency_slots(pool, slots)
    return instance


def _sized_environment() -> dict[str, str]:
    """The environment for daemon-launched runs: each run gets its share of the cores."""
    env = dict(os.environ)
    threads = str(_run_plan().threads_per_run)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, threads)
    return env


def _fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


class _Main(click.Group):
    """Errors a user can act on end the command with their message and exit 1, not a
    traceback: ours (VoiceAssetsError), and a full disk in whatever shape it surfaces."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VoiceAssetsError as exc:
            _fail(exc)
        except Exception as exc:
            from voice_assets.diskspace import as_disk_full

            full = as_disk_full(exc, _layout().home)
            if full is None:
                raise
            _fail(full)


@click.group(cls=_Main)
@click.version_option(package_name="voice-assets")
def main() -> None:
    """Turn the episodes of a series into per-character voice datasets."""


# --------------------------------------------------------------------------- ingest
@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--series", help="Series name (default: each file's parent folder name).")
def ingest(paths: Sequence[Path], series: str | None) -> None:
    """Copy episode files (and same-stem subtitles) into the inbox and register them."""
    from voice_assets import inbox

    layout = _layout()
    try:
        added, replaced = inbox.ingest_files(list(paths), layout.inbox, series=series)
    except VoiceAssetsError as exc:
        _fail(exc)
    instance = _instance()
    from voice_assets.partitions import episodes

    keys = [item.key for item in added]
    new = [k for k in keys if not instance.has_dynamic_partition(episodes.name, k)]
    if new:
        instance.add_dynamic_partitions(episodes.name, new)
    for item in added:
        subs = f" + {item.subtitle.name}" if item.subtitle else ""
        click.echo(f"{item.key}\t{item.path}{subs}")
        if item.key in replaced:
            click.secho(f"{item.key}: replaced a different file of the same name; its results "
                        f"are stale until `voice-assets run --episode {item.key}`",
                        fg="yellow", err=True)


# --------------------------------------------------------------------------- run
def _resolve_selection(names: str | None):
    """'a,b+' -> (asset keys, the keys named outright); a trailing '+' adds everything
    downstream of that asset."""
    import dagster as dg

    from voice_assets.definitions import defs

    if not names:
        return None, set()
    graph = defs.resolve_asset_graph()
    keys: set[dg.AssetKey] = set()
    named: set[dg.AssetKey] = set()
    for raw in names.split(","):
        name = raw.strip()
        if not name:
            continue
        downstream = name.endswith("+")
        key = dg.AssetKey(name.rstrip("+"))
        if key not in graph.get_all_asset_keys():
            raise click.BadParameter(
                f"unknown asset '{key.to_user_string()}'", param_hint="--select"
            )
        named.add(key)
        sel = dg.AssetSelection.assets(key)
        keys |= set((sel.downstream() if downstream else sel).resolve(graph))
    return keys, named


def _preflight() -> None:
    """Fail before any work on what would fail it later: a full disk, an unreadable tables file."""
    from voice_assets.diskspace import require_free_space
    from voice_assets.review.corrections import check_database

    layout = _layout()
    require_free_space(layout.home)
    check_database(layout.database)


def run_pipeline(
    episodes_to_run: Sequence[str], select: str | None = None, series_outputs: bool = True
) -> bool:
    """Materialize the selected assets for each episode, then the cross-episode outputs."""
    from tqdm import tqdm

    from voice_assets.definitions import (
        build_defs,
        episode_assets,
        review_assets,
        series_assets,
    )
    from voice_assets.partitions import episodes
    from voice_assets.resources.storage import WORKER_TAG
    from voice_assets.scratch import worker_id

    _preflight()
    defs = build_defs()  # resources rooted at $VOICE_ASSETS_HOME as it is now
    instance = _instance()
    selected, named = _resolve_selection(select)
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    ok = True

    per_episode = [k for k in episode_assets if selected is None or k in selected]
    # Label Studio pushes run when named (`--select review_tasks`), never as a side effect of
    # `name+`: the labeling server may not be up. Say so rather than skip them silently.
    review = [k for k in review_assets if k in named]
    left_out = [k for k in review_assets if selected is not None and k in selected
                and k not in named]
    cross = [k for k in series_assets if selected is None or k in selected]
    if left_out:
        click.echo(f"left out {', '.join(k.to_user_string() for k in left_out)} (Label Studio):"
                   " name it in --select to push review tasks", err=True)
    if selected is not None and not (per_episode and episodes_to_run) and not (
            review and episodes_to_run) and not (cross and series_outputs):
        raise click.UsageError(f"--select {select} selects nothing this command runs")
    missing = [k for k in episodes_to_run if not instance.has_dynamic_partition(episodes.name, k)]
    if missing:
        instance.add_dynamic_partitions(episodes.name, missing)

    for job_name, chosen in (("episode_pipeline", per_episode), ("push_review_tasks", review)):
        if not (chosen and episodes_to_run):
            continue
        job = defs.resolve_job_def(job_name)
        for key in tqdm(episodes_to_run, desc="episodes", unit="ep", file=sys.stderr):
            result = _execute(job, instance, chosen, quiet, key,
                              {"voice_assets/source": "cli", WORKER_TAG: worker_id()})
            _warnings(instance, key, result.run_id)
            if not result.success:
                ok = False
                click.secho(f"{key}: run {result.run_id} failed", fg="red", err=True)
                _explain(result)
    if cross and series_outputs and ok:
        result = _execute(defs.resolve_job_def("series_datasets"), instance, cross, quiet, None,
                          {"voice_assets/source": "cli", WORKER_TAG: worker_id()})
        if not result.success:
            click.secho(f"series outputs: run {result.run_id} failed", fg="red", err=True)
            _explain(result)
        ok = ok and result.success
    return ok


def _execute(job, instance, selection, run_config, partition_key, tags):
    """Run ``job`` on ``selection``: in this process, or, with the celery or Kubernetes
    executor, as a run whose steps workers or pods execute (this process orchestrates and
    waits)."""
    import dagster as dg

    from voice_assets import definitions
    from voice_assets.distributed import distributed

    # Jobs the workers do not take (the Label Studio push: a few API calls) run here.
    target = {"episode_pipeline": definitions.episode_pipeline_job,
              "series_datasets": definitions.series_datasets_job}.get(job.name)
    if not distributed() or target is None:
        return job.execute_in_process(partition_key=partition_key, instance=instance,
                                      asset_selection=selection, raise_on_error=False,
                                      run_config=run_config, tags=tags)
    if partition_key is not None:
        tags = {**tags, "dagster/partition": partition_key}
    return dg.execute_job(dg.reconstructable(target), instance=instance,
                          run_config=run_config, tags=tags, asset_selection=list(selection),
                          raise_on_error=False)


def _warnings(instance, key: str, run_id: str) -> None:
    """Repeat the run's warnings (bad subtitle cues, skipped stages, ...) once each at the end,
    where a headless user sees them; the full log stays in the instance."""
    import logging

    seen: set[str] = set()
    for entry in instance.all_logs(run_id):
        if entry.is_dagster_event or entry.level < logging.WARNING:
            continue
        message = entry.user_message.strip()
        if message and message not in seen:
            seen.add(message)
            click.secho(f"{key}: warning: {message}", fg="yellow", err=True)


def _explain(result) -> None:  # result: dg.ExecuteInProcessResult
    """The cause of each failed step, as the user-facing message when there is one."""
    for event in result.all_events:
        if not event.is_step_failure or event.step_failure_data is None:
            continue
        error = event.step_failure_data.error
        while error is not None and error.cause is not None and error.cls_name in (
                "DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"):
            error = error.cause
        message = (error.message if error else "failed").strip().splitlines()[-1]
        click.secho(f"  {event.step_key}: {message}", fg="red", err=True)


@main.command()
@click.option("--episode", "episode_keys", multiple=True, help="Episode key (repeatable).")
@click.option("--all", "all_episodes", is_flag=True, help="Every known episode.")
@click.option("--select", help="Comma-separated asset names; 'name+' adds its downstream "
              "(Label Studio's review_tasks only when named).")
@click.option("--series", "series_only", is_flag=True,
              help="Only rebuild the cross-episode outputs (splits, exports, cards, registry).")
def run(episode_keys: tuple[str, ...], all_episodes: bool, select: str | None,
        series_only: bool) -> None:
    """Materialize assets headless, into the instance the UI shows."""
    from voice_assets.partitions import episodes

    instance = _instance()
    known = instance.get_dynamic_partitions(episodes.name)
    if series_only:
        if episode_keys or all_episodes or select:
            raise click.UsageError("--series takes no --episode, --all or --select")
        if not known:
            raise click.UsageError("no episodes yet: nothing to build the series outputs from")
        if not run_pipeline([], None):
            sys.exit(1)
        return
    if all_episodes:
        keys = list(known)
    elif episode_keys:
        unknown = [k for k in episode_keys if k not in known]
        if unknown:
            raise click.BadParameter(
                f"unknown episode(s) {', '.join(unknown)}; known: {', '.join(known) or 'none'}",
                param_hint="--episode",
            )
        keys = list(episode_keys)
    else:
        raise click.UsageError("give --episode KEY (repeatable), --all or --series")
    if not keys:
        raise click.UsageError(
            "no episodes yet: drop files into the inbox or use `voice-assets ingest`")
    if not run_pipeline(keys, select):
        sys.exit(1)


# --------------------------------------------------------------------------- status
def _changed_in_inbox(instance, keys: Sequence[str]) -> list[str]:
    """Episodes whose inbox file (or subtitle) differs from what episode_media ingested."""
    from voice_assets.inbox import revision_of, scan_inbox
    from voice_assets.sensors.inbox import ingested_revision

    files = scan_inbox(_layout().inbox).files
    changed = []
    for key in keys:
        was = ingested_revision(instance, key)
        if was is None or key not in files:
            continue
        try:
            now = revision_of(files[key])[1]
        except OSError:
            continue
        if now != was:
            changed.append(key)
    return changed


@main.command()
@click.option("--wide", is_flag=True, help="One column per episode even for many episodes.")
def status(wide: bool) -> None:
    """Which assets are materialized for which episode, and which series outputs are stale."""
    import dagster as dg

    from voice_assets.automation import series_freshness
    from voice_assets.definitions import defs, episode_assets, series_assets
    from voice_assets.partitions import episodes
    from voice_assets.review.corrections import check_database

    check_database(_layout().database)  # a broken tables file is not "all materialized"
    instance = _instance()
    keys = instance.get_dynamic_partitions(episodes.name)
    if not keys:
        click.echo("no episodes yet: drop files into the inbox or run `voice-assets ingest`")
        return
    graph = defs.resolve_asset_graph()
    order = {k: i for i, k in enumerate(graph.toposorted_asset_keys)}
    assets = sorted(episode_assets, key=order.__getitem__)
    width = max(len(a.to_user_string()) for a in [*assets, *series_assets])
    changed = _changed_in_inbox(instance, keys)
    if len(keys) <= 8 or wide:
        click.echo("asset".ljust(width) + "  " + "  ".join(keys))
        for asset in assets:
            done = instance.get_materialized_partitions(asset)
            cells = [("." if k not in done else "~" if k in changed else "x").center(len(k))
                     for k in keys]
            click.echo(asset.to_user_string().ljust(width) + "  " + "  ".join(cells))
        if changed:
            click.echo("(x materialized, ~ stale: the inbox file changed, . not yet)")
    else:
        click.echo(f"{len(keys)} episodes; materialized per asset:")
        for asset in assets:
            n = len(instance.get_materialized_partitions(asset) & set(keys))
            click.echo(f"{asset.to_user_string().ljust(width)}  {n}/{len(keys)}")
    stale = []
    for asset in sorted(series_assets, key=order.__getitem__):
        fresh = series_freshness(instance, graph, asset)
        when = "never" if fresh.last_run_id is None else f"last run {fresh.last_run_id[:8]}"
        click.echo(f"{asset.to_user_string().ljust(width)}  (all episodes) {when}; "
                   f"{fresh.describe()}")
        if fresh.stale:
            stale.append(fresh)
    for key in changed:
        click.echo(f"{key}: its inbox file changed since it was ingested; its results are "
                   f"stale until `voice-assets run --episode {key}` (or the inbox sensor) "
                   "re-runs it")
    active = instance.get_runs_count(dg.RunsFilter(statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
    if active:
        click.echo(f"{active} run(s) queued or running")
    if stale:
        episodes_behind = sorted({e for f in stale for e in f.episodes})
        click.echo(
            f"{len(stale)} series output(s) out of date"
            + (f" (episodes {', '.join(episodes_behind)})" if episodes_behind else "")
            + ": the series_automation sensor rebuilds them once episode runs finish while "
            "`voice-assets ui` or `voice-assets watch` runs; now: `voice-assets run --series`"
        )


# --------------------------------------------------------------------------- ui, watch
def _exec(tool: str, args: list[str]) -> None:
    _instance()
    click.echo(_run_plan().describe(), err=True)
    path = shutil.which(tool) or str(Path(sys.executable).with_name(tool))
    os.execve(path, [path, *args], _sized_environment())


@main.command()
@click.option("--port", default=3000, show_default=True)
def ui(port: int) -> None:
    """Start the Dagster UI (and its daemon) on 127.0.0.1 with this project's instance."""
    _exec("dagster", ["dev", "-m", "voice_assets.definitions", "-h", "127.0.0.1", "-p", str(port)])


@main.command()
def watch() -> None:
    """Headless: watch the inbox and keep every dataset current (the Dagster daemon, no UI)."""
    _exec("dagster-daemon", ["run", "-m", "voice_assets.definitions"])


# The same command under the name a server's service manager looks for.
main.add_command(watch, name="daemon")


@main.command()
@click.option("--queue", "queues", multiple=True,
              help="Queues to take steps from (repeatable): 'dagster' (everything but the "
              "model stages) and/or 'gpu' (the model stages). Default: both.")
@click.option("--name", default="voice-assets", show_default=True,
              help="Worker name (the host is appended).")
def worker(queues: tuple[str, ...], name: str) -> None:
    """A celery worker that executes the steps of runs launched with
    VOICE_ASSETS_EXECUTOR=celery (broker: VOICE_ASSETS_REDIS_URL). One step at a time in one
    process, so its models stay loaded between steps."""
    from voice_assets.distributed import DEFAULT_QUEUE, GPU_QUEUE, REDIS_ENV

    if not os.environ.get(REDIS_ENV):
        raise click.UsageError(f"set {REDIS_ENV} to the Redis broker (redis://host:6379/0)")
    chosen = list(queues) or [DEFAULT_QUEUE, GPU_QUEUE]
    unknown = [q for q in chosen if q not in (DEFAULT_QUEUE, GPU_QUEUE)]
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {', '.join(unknown)}", param_hint="--queue")
    _exec("celery", ["-A", "voice_assets.celery_worker", "worker", "--pool", "solo",
                     "--loglevel", "INFO", "-Q", ",".join(chosen), "-n", f"{name}@%h"])


# --------------------------------------------------------------------------- corrections
@main.group()
def corrections() -> None:
    """Label Studio corrections without the daemon."""


@corrections.command("pull")
@click.option("--all", "from_start", is_flag=True,
              help="Re-read every annotation, not only those since the last pull (after the "
              "tables file was rebuilt).")
def corrections_pull(from_start: bool) -> None:
    """Pull new Label Studio corrections and names once, and re-run what they change.

    The same sensors the daemon ticks, ticked once here: corrections are recorded, and
    `utterances`, `character_map` and what follows them re-run for the affected episodes.
    Exits 1 when Label Studio cannot be reached or a run fails; nothing is lost either way.
    """
    from voice_assets.definitions import build_defs
    from voice_assets.sensors.headless import tick

    defs = build_defs()
    instance = _instance()
    cursor_file = _layout().label_studio / "cli-sensor-cursors.json"
    if from_start:
        cursor_file.unlink(missing_ok=True)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    ok = True
    for name in ("label_studio_corrections_sensor", "character_names_sensor"):
        result = tick(defs, instance, name, cursor_file, run_config=quiet)
        for episode, run_id, success in result.runs:
            state = "re-ran" if success else "FAILED"
            click.echo(f"{name}: {state} {episode} (run {run_id})")
        if result.skipped:
            click.echo(f"{name}: {result.skipped}", err=True)
        elif not result.runs:
            click.echo(f"{name}: {result.events} event(s) recorded, nothing to re-run")
        down = name == "label_studio_corrections_sensor" and result.skipped and (
            "Cursor unchanged" in result.skipped)
        ok = ok and result.ok and not down
    if not ok:
        sys.exit(1)


# --------------------------------------------------------------------------- demo
@main.command()
@click.option("--series", default="demo", show_default=True)
@click.option(
    "--episodes",
    "n_episodes",
    default=1,
    show_default=True,
    help="How many demo episodes to generate.",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--no-run", is_flag=True, help="Only generate the episode files.")
def demo(series: str, n_episodes: int, seed: int, no_run: bool) -> None:
    """Generate demo episodes into the inbox and materialize everything for them."""
    from voice_assets import synth
    from voice_assets.partitions import episode_key

    layout = _layout()
    keys = []
    for i in range(n_episodes):
        ep = synth.demo_episode(layout.inbox, series=series, seed=seed + i, index=i + 1,
                                progress=tqdm_progress())
        keys.append(episode_key(series, Path(ep.video).stem))
        click.echo(f"generated {ep.video}")
    if no_run:
        return
    if not run_pipeline(keys):
        sys.exit(1)


# --------------------------------------------------------------------------- models
@main.group()
def models() -> None:
    """Where each model comes from, whether it is here, and how to fetch it."""


@models.command("list")
def models_list() -> None:
    from voice_assets import models as catalog

    layout = _layout()
    for spec in sorted(catalog.CATALOG.values(), key=lambda s: (s.stage, s.name)):
        present = spec.is_present(layout)
        origin = "package" if spec.embedded else "models dir"
        state = "present" if present else "MISSING"
        click.echo(f"{spec.stage:<14} {spec.name:<34} {origin:<10} {state:<8} {spec.description}")
        if not present:
            click.echo(f"{'':<14} fetch with: {spec.pull}")


def _profile_specs(names: tuple[str, ...], profile: str | None) -> list[Any] | None:
    """The catalog entries NAMES and/or a profile's models name; None when neither is given."""
    from voice_assets import models as catalog
    from voice_assets.profiles import get_profile

    wanted = list(names) + (list(get_profile(profile).models) if profile else [])
    return [catalog.get(n) for n in dict.fromkeys(wanted)] if wanted else None


_PROFILE_OPTION = click.option(
    "--profile", type=click.Choice(["cpu", "gpu"]), default=None,
    help="Also every model that profile's backends load (VOICE_ASSETS_PROFILE).")


@models.command("verify")
@click.argument("names", nargs=-1)
@_PROFILE_OPTION
def models_verify(names: tuple[str, ...], profile: str | None) -> None:
    """Exit non-zero when a named (default: every embedded) model is missing."""
    from voice_assets import models as catalog

    layout = _layout()
    specs = _profile_specs(names, profile) or [
        s for s in catalog.CATALOG.values() if s.embedded]
    bad = 0
    for spec in specs:
        try:
            path = spec.require(layout)
            click.echo(f"ok       {spec.name}  {path}")
        except VoiceAssetsError as exc:
            bad += 1
            click.secho(f"missing  {exc}", fg="red")
    sys.exit(1 if bad else 0)


@models.command("pull")
@click.argument("names", nargs=-1)
@_PROFILE_OPTION
def models_pull(names: tuple[str, ...], profile: str | None) -> None:
    """Download heavy models into the models dir (run on a machine with internet access)."""
    from voice_assets import models as catalog

    specs = _profile_specs(names, profile)
    if not specs:
        raise click.UsageError("name the models to pull, or give --profile gpu")
    layout = _layout()
    failed = []
    for spec in specs:
        if spec.embedded:
            click.echo(f"{spec.name}: ships inside a Python package; nothing to pull")
            continue
        click.echo(f"{spec.name}: fetching {spec.source} -> {spec.path(layout)}")
        try:
            catalog.pull(spec, layout)
        except Exception as exc:  # network, HTTP and disk errors alike: say which, go on
            failed.append(spec.name)
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            click.secho(f"{spec.name}: could not fetch ({reason}); nothing was written",
                        fg="red", err=True)
    if failed:
        raise click.ClickException(
            f"not pulled: {', '.join(failed)} (this command needs internet access: run it on "
            "a connected machine and copy the models dir, or set VOICE_ASSETS_MODELS)")


# --------------------------------------------------------------------------- tables
@main.group()
def tables() -> None:
    """Where the tables live (VOICE_ASSETS_TABLES): one DuckDB file, or Parquet files."""


@tables.command("migrate")
@click.option("--to", "target", type=click.Path(path_type=Path),
              help="The Parquet folder (default: the VOICE_ASSETS_TABLES location).")
def tables_migrate(target: Path | None) -> None:
    """Copy every table of $VOICE_ASSETS_HOME/tables.duckdb into Parquet files, for many
    writers (celery workers, Kubernetes). The DuckDB file is only read; people's corrections
    and names are appended only where missing, so running it again is safe."""
    import dagster as dg
    import duckdb

    from voice_assets import parquet_store
    from voice_assets.definitions import defs

    layout = _layout()
    source = layout.home / parquet_store.DUCKDB_FILE
    root = target.resolve() if target else layout.database
    if not parquet_store.is_parquet(root):
        raise click.UsageError("set VOICE_ASSETS_TABLES=parquet (or a folder), or give --to")
    if not source.exists():
        raise click.UsageError(f"no tables to migrate: {source} does not exist")
    from voice_assets.review.corrections import check_database

    check_database(source)
    columns: dict[str, str | None] = {}
    for asset in defs.assets or []:
        if not isinstance(asset, dg.AssetsDefinition):
            continue
        for key in asset.keys:
            expr = asset.metadata_by_key.get(key, {}).get("partition_expr")
            columns[key.path[-1]] = str(expr) if asset.partitions_def is not None else None
    try:
        copied, skipped = parquet_store.copy_from_duckdb(source, root, columns)
    except duckdb.IOException as exc:  # another process (a run, the daemon) holds the file
        raise click.ClickException(f"{source} is in use by another process ({exc}); stop "
                                   "the runs and the daemon, then migrate again") from exc
    for name, rows in sorted(copied.items()):
        click.echo(f"{name:<22} {rows:>8} rows")
    if skipped:
        click.echo(f"not copied (no asset or ledger of that name): {', '.join(skipped)}", err=True)
    click.echo(f"{len(copied)} tables in {root}; set VOICE_ASSETS_TABLES to use them")


# --------------------------------------------------------------------------- bench
@main.command()
@click.argument("episode", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--drop", "drop", type=click.IntRange(min=1), default=None,
              help="Hands-off: start the daemon on a fresh home, drop this many demo episodes "
              "into its inbox at once, and measure until the series exports are built.")
@click.option("--timeout", "timeout_s", default=3600, show_default=True,
              help="With --drop: give up after this many seconds.")
@click.option("--profile", "profile", type=click.Choice(["cpu", "gpu"]), default=None,
              help="The backends to measure (default: $VOICE_ASSETS_PROFILE, else cpu); gpu "
              "runs in the GPU profile's environment and reports GPU memory per stage.")
def bench(episode: str | None, as_json: bool, drop: int | None, timeout_s: int,
          profile: str | None) -> None:
    """Real-time factor and peak memory per stage (default: the demo episode)."""
    from voice_assets import bench as benchmark
    from voice_assets import inbox, synth

    layout = _layout()
    if drop is not None:
        if episode:
            raise click.UsageError("--drop generates its own episodes: give no EPISODE")
        import tempfile

        from voice_assets import handsoff

        bench_root = layout.home / "bench"
        bench_root.mkdir(parents=True, exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix="drop-", dir=bench_root))
        click.echo(f"hands-off drop of {drop} episode(s) on {home} "
                   f"({_run_plan().describe()})", err=True)
        drop_report = handsoff.drop_benchmark(drop, home, float(timeout_s),
                                              log=lambda m: click.echo(m, err=True))
        click.echo(json.dumps(drop_report.to_dict(), indent=2) if as_json
                   else drop_report.format())
        if drop_report.failed:
            sys.exit(1)
        return
    if episode:
        source = inbox.resolve_episode(layout.inbox, episode)
        media, subtitles = source.path, source.subtitle
    else:
        ep = synth.demo_episode(layout.home / "bench", series="demo", seed=0, index=1,
                                progress=tqdm_progress())
        media, subtitles = Path(ep.video), Path(ep.subtitles)
    report = benchmark.run_benchmark(media, subtitles, profile=profile,
                                     progress=tqdm_progress())
    click.echo(
        json.dumps(report.to_dict(), indent=2) if as_json else benchmark.format_table(report)
    )


main.add_command(labelstudio)
main.add_command(voices)
main.add_command(speak)

if __name__ == "__main__":
    main()
