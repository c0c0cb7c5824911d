"""`voice-assets voices list|train` and `voice-assets speak`: character voices from the shell."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from voice_assets.errors import VoiceAssetsError
from voice_assets.paths import Layout


@click.group(name="voices")
def voices() -> None:
    """Per-character voice models: who is ready to train, training, where the models are."""


@voices.command("list")
def voices_list() -> None:
    """Readiness per character and trainer, and the models built so far."""
    from voice_assets.sensors.voices import load_readiness
    from voice_assets.voices.library import find_models

    layout = Layout.from_env()
    df = load_readiness(layout.database)
    if df.is_empty():
        raise click.ClickException("voice_readiness is not materialized yet: run "
                                   "`voice-assets run --all` first")
    for r in df.sort("key", "trainer").iter_rows(named=True):
        state = "ready" if r["ready"] else "not ready: " + "; ".join(r["reasons"])
        click.echo(f"{r['key']:<32} {r['trainer']:<11} {r['train_minutes']:6.1f} min  {state}")
    for m in find_models(layout.home):
        click.echo(f"model: {m.series}/{m.character} {m.trainer} step {m.step}  {m.folder}")


@voices.command("train")
@click.argument("keys", nargs=-1)
@click.option("--all-ready", is_flag=True, help="Every character ready for the trainer.")
@click.option("--trainer", default=None, help="piper | reference | rvc | gpt-sovits")
@click.option("--max-steps", type=int, default=None, help="Training steps (piper, external).")
@click.option("--force", is_flag=True, help="Train characters below the trainer's floor too.")
def voices_train(keys: tuple[str, ...], all_ready: bool, trainer: str | None,
                 max_steps: int | None, force: bool) -> None:
    """Train the voice of each KEY (`<series>__<character>`, see `voices list`)."""
    import polars as pl

    from voice_assets.cli import _explain, _instance, _preflight
    from voice_assets.definitions import build_defs
    from voice_assets.partitions import characters
    from voice_assets.sensors.voices import load_readiness

    layout = Layout.from_env()
    df = load_readiness(layout.database)
    if df.is_empty():
        raise click.ClickException("voice_readiness is not materialized yet: run "
                                   "`voice-assets run --all` first")
    backend = trainer or "piper"
    known = sorted(set(df["key"].to_list()))
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise click.ClickException(f"unknown character(s) {', '.join(unknown)}; known: "
                                   f"{', '.join(known) or 'none'}")
    chosen = list(keys)
    if all_ready:
        chosen += [k for k in df.filter(pl.col("ready") & (pl.col("trainer") == backend))
                   ["key"].to_list() if k not in chosen]
    if not chosen:
        raise click.UsageError("name characters to train, or --all-ready (none is ready for "
                               f"{backend}: see `voice-assets voices list`)")
    _preflight()
    instance = _instance()
    missing = [k for k in chosen if not instance.has_dynamic_partition(characters.name, k)]
    if missing:
        instance.add_dynamic_partitions(characters.name, missing)
    trainer_cfg = {"backend": backend, **({"max_steps": max_steps} if max_steps else {})}
    run_config = {"ops": {"voice_models": {"config": {"force": force}}},
                  "resources": {"voice_trainer": {"config": trainer_cfg}},
                  "loggers": {"console": {"config": {"log_level": "INFO"}}}}
    job = build_defs().resolve_job_def("train_voice_models")
    failed, trained = [], []
    for key in chosen:
        click.echo(f"{key}: training ({backend})", err=True)
        result = job.execute_in_process(partition_key=key, instance=instance,
                                        run_config=run_config, raise_on_error=False,
                                        tags={"voice_assets/source": "cli"})
        if not result.success:
            failed.append(key)
            _explain(result)
            continue
        mat = result.asset_materializations_for_node("voice_models")
        meta = mat[0].metadata if mat else {}
        status = getattr(meta.get("status"), "value", None)
        if status == "trained":
            trained.append(key)
            folder = getattr(meta.get("folder"), "value", "")
            click.echo(f"{key}: trained ({backend}, step {meta['step'].value}) in {folder}")
        else:
            missing = getattr(meta.get("missing"), "value", "")
            click.echo(f"{key}: not trained, below the {backend} floor: {missing} "
                       "(--force to train anyway)", err=True)
    if failed:
        click.secho(f"failed: {', '.join(failed)}", fg="red", err=True)
    if failed or not trained:
        sys.exit(1)


@click.command()
@click.argument("text")
@click.option("--character", required=True, help="Character name (or its key).")
@click.option("--series", default=None, help="Series slug (when several have the character).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="WAV file to write.")
def speak(text: str, character: str, series: str | None, output: Path) -> None:
    """Say TEXT in a character's trained voice (a piper voice from `voices train`)."""
    from voice_assets.atomic import write_wav
    from voice_assets.voices.library import resolve_speaker

    layout = Layout.from_env()
    if not text.strip():
        raise click.UsageError("TEXT is empty: nothing to say")
    try:
        say = resolve_speaker(layout.home, character, series)
        samples, rate = say(text)
    except VoiceAssetsError as exc:
        raise click.ClickException(str(exc)) from exc
    write_wav(output, samples, rate)
    click.echo(f"{output}: {len(samples) / rate:.2f} s at {rate} Hz")
