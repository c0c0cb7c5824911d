"""Subprocess entry for piper-tts 1.8's VITS trainer (``piper.train``): ``fit`` and ``export``.

Run by `voice_assets.voices.piper_train` as ``python -m voice_assets.voices.piper_trainer_main``;
not an API. It patches two gaps of the piper-tts 1.8.0 wheel in this process only (nothing in
site-packages is edited):

- The wheel ships ``piper/train/vits/monotonic_align/`` without its compiled Cython ``core``, so
  ``from .monotonic_align.core import maximum_path_c`` fails on the first training batch.
  `install_monotonic_align` puts a ``core`` module into ``sys.modules`` under that name, backed
  by `monotonic_alignment_search` (PyPI, prebuilt Cython) or a vectorised numpy fallback. The
  layouts differ: piper's (VITS) ``maximum_path_c`` takes ``[batch, frames, phonemes]`` with
  ``(t_ys, t_xs)``, monotonic_alignment_search's (glow-tts) takes ``[batch, phonemes, frames]``
  with ``(t_xs, t_ys)``; aliasing one to the other trains to inf/NaN on the first step.
- torch >= 2.9 exports ONNX with the dynamo exporter by default (needs onnxscript, and cannot
  trace VITS's data-dependent lengths); piper's ``export_onnx`` was written for the TorchScript
  exporter, so ``export`` runs it with ``dynamo=False``.

``fit`` runs piper's own LightningCLI (``piper.train.__main__.main``) with our callbacks in place
of piper's default ones: one ``last.ckpt`` written atomically every N steps and at the end (with
the voice config embedded, for export), and progress as JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

PROGRESS_PREFIX = "@@voice-assets-piper "
CHECKPOINT_NAME = "last.ckpt"
SIDECAR_NAME = "last.json"
CONFIG_KEY = "voice_assets_piper"  # checkpoint dict key: piper voice config + voice name
_CORE = "piper.train.vits.monotonic_align.monotonic_align.core"


# ---------------------------------------------------------------- monotonic alignment search


def maximum_path_numpy(paths: np.ndarray, values: np.ndarray, t_ys: np.ndarray,
                       t_xs: np.ndarray, max_neg_val: float = -1e9) -> None:
    """piper's ``maximum_path_c`` in numpy, vectorised over the batch and the phonemes.

    ``paths`` (int32) and ``values`` (float32) are ``[batch, t_y, t_x]`` (frames, phonemes);
    ``paths`` gets a 1 at the chosen phoneme of every frame, in place. Same recursion and
    tie-breaking as piper's ``core.pyx``.
    """
    b, t_y_max, t_x_max = values.shape
    t_ys = np.asarray(t_ys, dtype=np.int64).reshape(b, 1)
    t_xs = np.asarray(t_xs, dtype=np.int64).reshape(b, 1)
    x = np.arange(t_x_max, dtype=np.int64).reshape(1, -1)
    acc = np.full((b, t_y_max, t_x_max), max_neg_val, dtype=np.float32)
    prev = np.full((b, t_x_max), max_neg_val, dtype=np.float32)
    for y in range(t_y_max):
        cur = np.where(x == y, max_neg_val, prev)  # stay on the same phoneme
        shifted = np.empty_like(prev)  # advance from the previous phoneme
        shifted[:, 1:] = prev[:, :-1]
        shifted[:, 0] = 0.0 if y == 0 else max_neg_val
        row = np.maximum(cur, shifted) + values[:, y, :]
        valid = (x >= np.maximum(0, t_xs + y - t_ys)) & (x < np.minimum(t_xs, y + 1))
        row = np.where(valid, row, max_neg_val).astype(np.float32)
        acc[:, y, :] = row
        prev = row
    paths[...] = 0
    rows = np.arange(b)
    index = (t_xs[:, 0] - 1).copy()
    for y in range(t_y_max - 1, -1, -1):
        active = y < t_ys[:, 0]
        paths[rows[active], y, index[active]] = 1
        if y == 0:
            break
        left = np.maximum(index - 1, 0)
        step = (index != 0) & ((index == y) | (acc[rows, y - 1, index] < acc[rows, y - 1, left]))
        index = np.where(active & step, index - 1, index)


def maximum_path_c(paths: np.ndarray, values: np.ndarray, t_ys: np.ndarray,
                   t_xs: np.ndarray) -> None:
    """piper's ``monotonic_align.core.maximum_path_c`` (``[batch, frames, phonemes]``), backed by
    monotonic_alignment_search's Cython core (``[batch, phonemes, frames]``) when installed."""
    try:
        from monotonic_alignment_search.core import maximum_path_c as glow_tts_core
    except ImportError:
        maximum_path_numpy(paths, values, t_ys, t_xs)
        return
    paths_t = np.zeros((paths.shape[0], paths.shape[2], paths.shape[1]), dtype=np.int32)
    values_t = np.ascontiguousarray(np.transpose(values, (0, 2, 1)), dtype=np.float32)
    glow_tts_core(paths_t, values_t, np.ascontiguousarray(t_xs, dtype=np.int32),
                  np.ascontiguousarray(t_ys, dtype=np.int32))
    paths[...] = np.transpose(paths_t, (0, 2, 1))


def _compiled_core_present() -> bool:
    """True when piper's own Cython core was built into its tree (then it is used as is)."""
    spec = importlib.util.find_spec("piper.train.vits")  # imports piper.train, not vits
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = Path(next(iter(spec.submodule_search_locations))) / "monotonic_align"
    return any((folder / "monotonic_align").glob("core*.so")) or any(
        (folder / "monotonic_align").glob("core*.pyd"))


def install_monotonic_align() -> str:
    """Make ``piper.train.vits.monotonic_align`` importable; returns which backend serves it."""
    if _CORE in sys.modules:
        return getattr(sys.modules[_CORE], "backend", "already installed")
    if _compiled_core_present():
        return "piper's compiled core"
    backend = ("monotonic_alignment_search"
               if importlib.util.find_spec("monotonic_alignment_search") else "numpy")
    package = types.ModuleType(_CORE.rsplit(".", 1)[0])
    package.__path__ = []  # a package, so that `.core` below it resolves
    core = types.ModuleType(_CORE)
    core.maximum_path_c = maximum_path_c  # type: ignore[attr-defined]
    core.backend = backend  # type: ignore[attr-defined]
    package.core = core  # type: ignore[attr-defined]
    sys.modules[package.__name__] = package
    sys.modules[_CORE] = core
    return backend


# ---------------------------------------------------------------- callbacks


def _emit(event: dict[str, Any]) -> None:
    print(PROGRESS_PREFIX + json.dumps(event), flush=True)


def _scalars(metrics: dict[str, Any], keep: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if name in ("epoch", "step") or not keep(name):
            continue
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _callbacks(checkpoint_dir: Path, every: int, voice_name: str,
               model_args: dict[str, Any]) -> list[Any]:
    import lightning as L

    class AtomicLastCheckpoint(L.Callback):
        """``last.ckpt`` every ``every`` global steps and at the end, written then renamed."""

        def __init__(self) -> None:
            self.last_saved = -1

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.last_saved = trainer.global_step

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            if every > 0 and trainer.global_step - self.last_saved >= every:
                self.save(trainer)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.global_step != self.last_saved or not (
                    checkpoint_dir / CHECKPOINT_NAME).exists():
                self.save(trainer)

        def on_save_checkpoint(self, trainer: Any, pl_module: Any,
                               checkpoint: dict[str, Any]) -> None:
            config = getattr(trainer.datamodule, "piper_config", None)
            checkpoint[CONFIG_KEY] = {
                "voice_name": voice_name,
                "piper_config": config.to_dict() if config is not None else None,
                "model_args": model_args,
            }

        def save(self, trainer: Any) -> None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            target = checkpoint_dir / CHECKPOINT_NAME
            tmp = checkpoint_dir / f".{CHECKPOINT_NAME}.{os.getpid()}.tmp"
            trainer.save_checkpoint(tmp)
            os.replace(tmp, target)
            stat = target.stat()
            sidecar = {"global_step": int(trainer.global_step),
                       "epoch": int(trainer.current_epoch), "voice_name": voice_name,
                       "model_args": model_args, "size": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns}
            tmp_json = checkpoint_dir / f".{SIDECAR_NAME}.{os.getpid()}.tmp"
            tmp_json.write_text(json.dumps(sidecar), encoding="utf-8")
            os.replace(tmp_json, checkpoint_dir / SIDECAR_NAME)
            self.last_saved = trainer.global_step
            _emit({"event": "checkpoint", "step": int(trainer.global_step),
                   "path": str(target)})

    class Progress(L.Callback):
        """Step, epoch and losses after every batch (and validation metrics) on stdout."""

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            _emit({"event": "start", "step": int(trainer.global_step),
                   "epoch": int(trainer.current_epoch), "max_steps": int(trainer.max_steps)})

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            losses = _scalars(trainer.callback_metrics, lambda n: not n.startswith("val_"))
            _emit({"event": "step", "step": int(trainer.global_step),
                   "epoch": int(trainer.current_epoch), "losses": losses})

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            metrics = _scalars(trainer.callback_metrics, lambda n: n.startswith("val_"))
            _emit({"event": "validation", "step": int(trainer.global_step),
                   "epoch": int(trainer.current_epoch), "metrics": metrics})

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            _emit({"event": "end", "step": int(trainer.global_step),
                   "epoch": int(trainer.current_epoch)})

    return [Progress(), AtomicLastCheckpoint()]  # a step's event before its checkpoint's


# ---------------------------------------------------------------- commands


def _fit(args: argparse.Namespace, lightning_args: list[str]) -> None:
    backend = install_monotonic_align()
    print(f"monotonic alignment search: {backend}", flush=True)
    import piper.train.__main__ as piper_main

    model_args = json.loads(args.model_args)
    callbacks = _callbacks(Path(args.checkpoint_dir), args.checkpoint_every, args.voice_name,
                           model_args)
    piper_main._DEFAULT_CALLBACKS[:] = callbacks  # piper's main reads this list when called
    sys.argv = ["piper.train", "fit", *lightning_args]
    piper_main.main()


def _export(export_args: list[str]) -> None:
    install_monotonic_align()
    import torch

    torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)  # type: ignore[assignment]
    from piper.train import export_onnx

    sys.argv = ["piper.train.export_onnx", *export_args]
    export_onnx.main()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("fit", "export"):
        raise SystemExit("usage: piper_trainer_main fit OPTIONS -- LIGHTNING_ARGS | "
                         "export --checkpoint C --output-file F")
    command, rest = argv[0], argv[1:]
    if command == "export":
        _export(rest)
        return
    ours, lightning_args = (rest[: rest.index("--")], rest[rest.index("--") + 1:]) \
        if "--" in rest else (rest, [])
    parser = argparse.ArgumentParser(prog="piper_trainer_main fit")
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--voice-name", default="voice")
    parser.add_argument("--model-args", default="{}", help="JSON: recorded in checkpoints")
    _fit(parser.parse_args(ours), lightning_args)


if __name__ == "__main__":
    main()
