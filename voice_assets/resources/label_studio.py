"""Label Studio as a Dagster resource: where the server is and how to authenticate.

The token comes from ``dg.EnvVar("LABEL_STUDIO_API_KEY")`` (the UI shows only the variable's
name) or, when unset, from the 0600 file that ``voice-assets labelstudio up`` writes under
``$VOICE_ASSETS_HOME/label-studio``. It is read at call time and never logged or returned.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from voice_assets.errors import ServiceUnavailableError
from voice_assets.paths import Layout
from voice_assets.review import server
from voice_assets.review.client import ReviewClient

API_KEY_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"


class LabelStudioResource(dg.ConfigurableResource):
    """The Label Studio server that review tasks go to and corrections come from."""

    url: str | None = Field(
        default=None,
        description="Base URL. Default: $LABEL_STUDIO_URL, else the URL `voice-assets labelstudio "
        "up` recorded for this home (kept after `down`); never a guessed default port.",
    )
    api_key: str | None = Field(
        default=None,
        description="Set with dg.EnvVar('LABEL_STUDIO_API_KEY'); when empty the token file "
        "under $VOICE_ASSETS_HOME/label-studio is used.",
    )
    home: str | None = Field(default=None, description="$VOICE_ASSETS_HOME (default: from env).")
    timeout_s: float = Field(default=10.0, description="Per-request timeout; slower = 'slow'.")

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.home).resolve()) if self.home else Layout.from_env()

    @property
    def document_root(self) -> Path:
        """Label Studio serves task audio relative to this folder (local-files storage)."""
        return self.layout.home

    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        if os.environ.get(URL_ENV):
            return os.environ[URL_ENV].rstrip("/")
        recorded = server.recorded_url(self.layout.home)
        if recorded:
            return recorded.rstrip("/")
        raise ServiceUnavailableError(
            f"no Label Studio server is known for {self.layout.home}: start one with "
            "`voice-assets labelstudio up`, or point LABEL_STUDIO_URL (and "
            f"{API_KEY_ENV}) at yours"
        )

    def _token(self) -> str:
        if self.api_key:
            return self.api_key
        return server.read_token(self.layout.home)  # says how to get one when missing

    def client(self, timeout_s: float | None = None, max_retries: int = 1) -> ReviewClient:
        return ReviewClient(
            self.base_url(),
            self._token(),
            timeout_s=timeout_s or self.timeout_s,
            max_retries=max_retries,
        )


def label_studio_resource(layout: Layout) -> LabelStudioResource:
    """The default resource: token from the env var when set, else from the token file."""
    api_key = dg.EnvVar(API_KEY_ENV) if os.environ.get(API_KEY_ENV) else None
    return LabelStudioResource(home=str(layout.home), api_key=api_key)  # type: ignore[arg-type]
