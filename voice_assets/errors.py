"""Errors a user can act on: each names the file or model and the cause."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote


class VoiceAssetsError(Exception):
    """Base class for errors that carry a user-facing explanation."""


class MediaError(VoiceAssetsError):
    """A media file cannot be used (empty, corrupt, truncated, no audio stream, ...)."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class SubtitleError(VoiceAssetsError):
    """A subtitle file cannot be parsed."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class PartitionKeyError(VoiceAssetsError):
    """Two inbox files map to the same episode key, or a key is not usable."""


class ModelMissingError(VoiceAssetsError):
    """A model selected in config is not on this machine."""

    def __init__(self, model: str, looked_in: str | Path, how_to_fetch: str) -> None:
        self.model = model
        self.looked_in = str(looked_in)
        self.how_to_fetch = how_to_fetch
        super().__init__(
            f"model '{model}' is not available locally (looked in {self.looked_in}). "
            f"On a machine with internet access run: {how_to_fetch}"
        )


class ServiceUnavailableError(VoiceAssetsError):
    """An external service (Label Studio) is down, slow or refuses our credentials."""


class CorruptDatabaseError(VoiceAssetsError):
    """The tables file cannot be opened: truncated, emptied or overwritten."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"{self.path} is not a readable DuckDB database ({cause}). Move it aside "
            f"(`mv '{self.path}' '{self.path}.broken'`), rebuild the tables with "
            "`voice-assets run --all`, and read the human labels back from Label Studio with "
            "`voice-assets corrections pull --all`"
        )


class CorruptTableFileError(VoiceAssetsError):
    """A Parquet table file cannot be read (damaged by hand or by a failing disk: the store
    itself only ever renames whole files into place)."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = Path(path)
        partition = self.path.stem.removeprefix("p=")
        table = self.path.parent.name
        if self.path.stem.startswith("p="):
            fix = (f"re-run that episode's table: `voice-assets run --episode "
                   f"{unquote(partition)} --select {table}`")
        elif self.path.stem == "all":
            fix = f"re-run the series table: `voice-assets run --series --select {table}`"
        else:  # a ledger part: people's input, which Label Studio still holds
            fix = "read the human labels back with `voice-assets corrections pull --all`"
        super().__init__(f"{self.path} is not a readable Parquet file ({cause}). Move it "
                         f"aside (`mv '{self.path}' '{self.path}.broken'`), then {fix}")


class StoreError(VoiceAssetsError):
    """The shared store (VOICE_ASSETS_STORE) cannot be reached or refuses a file; the message
    names the file and the store."""


class DiskFullError(VoiceAssetsError):
    """A write failed because the filesystem holding it is full."""

    def __init__(self, path: str | Path, free_bytes: int | None, cause: str = "") -> None:
        self.path = Path(path)
        self.free_bytes = free_bytes
        free = "unknown" if free_bytes is None else f"{free_bytes / 2**20:.0f} MiB"
        super().__init__(
            f"no space left on the disk holding {self.path} ({free} free"
            f"{'; ' + cause if cause else ''}). Free some space there, or move "
            "$VOICE_ASSETS_HOME to a larger disk, then run the same command again: finished "
            "stages are kept and nothing half-written was left behind"
        )
