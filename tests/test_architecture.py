"""Domain code stays plain Python: it never imports dagster (assets are the thin layer)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import voice_assets

DOMAIN_PACKAGES = ("media", "speech", "characters", "faces", "dataset", "review", "synth")
DOMAIN_MODULES = ("inbox", "episode_keys", "bench", "models", "atomic", "paths", "plots",
                  "instance_config")


def _domain_modules() -> list[str]:
    names = [f"voice_assets.{m}" for m in DOMAIN_MODULES]
    for package in DOMAIN_PACKAGES:
        path = [f"{voice_assets.__path__[0]}/{package}"]
        names.append(f"voice_assets.{package}")
        names += [f"voice_assets.{package}.{m.name}" for m in pkgutil.iter_modules(path)]
    return names


def test_domain_modules_do_not_import_dagster() -> None:
    modules = _domain_modules()
    assert len(modules) > 30
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'dagster' not in sys.modules, name\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
