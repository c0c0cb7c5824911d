"""`voice-assets labelstudio up|down|status`: the local Label Studio server for human review."""

from __future__ import annotations

import sys

import click

from voice_assets.errors import VoiceAssetsError
from voice_assets.paths import Layout


def _progress(stage: str, done: int, total: int) -> None:
    if done == 0:
        click.echo(f"{stage} ...", err=True)


@click.group(name="labelstudio")
def labelstudio() -> None:
    """Run Label Studio locally (own virtualenv, data under $VOICE_ASSETS_HOME/label-studio)."""


@labelstudio.command()
@click.option("--port", default=8080, show_default=True, help="Port on 127.0.0.1.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for /health.")
def up(port: int, timeout: float) -> None:
    """Install if needed, start on 127.0.0.1 and wait until healthy."""
    from voice_assets.review import server

    layout = Layout.from_env()
    try:
        st = server.up(layout.home, port=port, timeout_s=timeout, progress=_progress)
    except VoiceAssetsError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    sf = server.files(layout.home)
    click.echo(st.describe())
    click.echo(f"login: {server.ADMIN_USERNAME} (password in {sf.password_file})")
    click.echo(f"API token: in {sf.token_file} (mode 0600); or export LABEL_STUDIO_API_KEY")


@labelstudio.command()
def down() -> None:
    """Stop the server of this $VOICE_ASSETS_HOME."""
    from voice_assets.review import server

    stopped = server.down(Layout.from_env().home)
    click.echo("Label Studio stopped" if stopped else "Label Studio was not running")


@labelstudio.command()
def status() -> None:
    """Say whether the server is installed, running and healthy (exit 1 when not up)."""
    from voice_assets.review import server

    st = server.status(Layout.from_env().home)
    click.echo(st.describe())
    sys.exit(0 if st.healthy else 1)
