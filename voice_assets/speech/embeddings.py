"""GE2E speaker embeddings (Resemblyzer's pretrained LSTM) for many short windows at once.

Resemblyzer's own API embeds one utterance per call; diarization needs thousands of
fixed-length windows, so we compute the mel spectrogram of the whole signal once, slice it
per window and run the LSTM on batches of slices. Each window is level-normalised (mel power
scaled by the gain that brings its waveform to Resemblyzer's -30 dBFS training level) so a
quiet line and a shouted one of the same voice land close together.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_assets.progress import Progress, silent

SAMPLE_RATE = 16000
MEL_HOP = 160  # 10 ms frames, Resemblyzer's hparams
MEL_WIN = 400  # 25 ms
MEL_BANDS = 40
TARGET_DBFS = -30.0
SILENCE_MS = 1e-8  # mean square below -80 dBFS: the window is silent
EMBEDDING_DIM = 256
HIDDEN = 256  # LSTM hidden size and layers, as in Resemblyzer's hparams
LAYERS = 3
MODEL_NAME = "resemblyzer-ge2e"

_ENCODERS: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def mel_frames(samples: np.ndarray) -> np.ndarray:
    """Resemblyzer's (non-log) 40-band mel power spectrogram, frames x bands, float32."""
    import librosa

    x = np.asarray(samples, dtype=np.float32)
    if x.size < MEL_WIN:
        x = np.pad(x, (0, MEL_WIN - x.size))
    mel = librosa.feature.melspectrogram(
        y=x, sr=SAMPLE_RATE, n_fft=MEL_WIN, hop_length=MEL_HOP, n_mels=MEL_BANDS
    )
    return np.ascontiguousarray(mel.T, dtype=np.float32)


def _load_encoder(weights: Path, device: str):
    key = (str(weights), device)
    with _LOCK:
        if key not in _ENCODERS:
            import torch

            class _Encoder(torch.nn.Module):
                # Same layers as resemblyzer.VoiceEncoder, built here because importing the
                # resemblyzer package pulls in webrtcvad (which needs pkg_resources) and its
                # constructor prints and picks a device on its own; we only need the weights.
                def __init__(self) -> None:
                    super().__init__()
                    self.lstm = torch.nn.LSTM(MEL_BANDS, HIDDEN, LAYERS, batch_first=True)
                    self.linear = torch.nn.Linear(HIDDEN, EMBEDDING_DIM)
                    self.relu = torch.nn.ReLU()

                def forward(self, mels: torch.Tensor) -> torch.Tensor:
                    _, (hidden, _) = self.lstm(mels)
                    raw = self.relu(self.linear(hidden[-1]))
                    return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-8)

            model = _Encoder()
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
            # strict=False: the checkpoint also holds GE2E's training-only similarity scale.
            missing, _ = model.load_state_dict(state["model_state"], strict=False)
            if missing:
                raise ValueError(f"{weights}: not a Resemblyzer encoder (missing {missing[:3]})")
            model.eval().to(device)
            _ENCODERS[key] = model
        return _ENCODERS[key]


@dataclass
class SpeakerEncoder:
    """Batched GE2E embeddings of fixed-length windows of a 16 kHz signal."""

    weights: Path
    device: str = "cpu"
    batch_size: int = 128

    def embed_windows(
        self,
        samples: np.ndarray,
        starts_s: np.ndarray,
        window_s: float,
        progress: Progress = silent,
    ) -> np.ndarray:
        """L2-normalised embeddings (n x 256) of windows [start, start + window_s).

        Windows running past the end of the signal are zero-padded.
        """
        import torch

        starts = np.asarray(starts_s, dtype=np.float64).reshape(-1)
        if not starts.size:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        x = np.asarray(samples, dtype=np.float32)
        n_frames = max(1, round(window_s * SAMPLE_RATE / MEL_HOP))
        win_samples = n_frames * MEL_HOP
        mel = mel_frames(x)
        first = np.clip(np.round(starts * SAMPLE_RATE / MEL_HOP).astype(np.int64), 0, None)
        need = int(first.max()) + n_frames
        if mel.shape[0] < need:
            mel = np.pad(mel, ((0, need - mel.shape[0]), (0, 0)))
        # Per-window level: mean square of the waveform under the window.
        sq = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        a = np.clip(first * MEL_HOP, 0, x.size)
        b = np.clip(first * MEL_HOP + win_samples, 0, x.size)
        ms = (sq[b] - sq[a]) / win_samples
        target = 10 ** (TARGET_DBFS / 10)
        audible = ms > SILENCE_MS
        gains = np.where(audible, target / np.maximum(ms, SILENCE_MS), 1.0).astype(np.float32)

        model = _load_encoder(self.weights, self.device)
        out = np.zeros((starts.size, EMBEDDING_DIM), np.float32)
        idx = first[:, None] + np.arange(n_frames)[None, :]
        total = starts.size
        with torch.inference_mode():
            for lo in range(0, total, self.batch_size):
                hi = min(total, lo + self.batch_size)
                batch = mel[idx[lo:hi]] * gains[lo:hi, None, None]
                emb = model(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
                out[lo:hi] = emb.cpu().numpy()
                progress("speaker embeddings", hi, total)
        out[~audible] = 0.0  # digital silence carries no voice: callers drop zero rows
        return out

    def embed_tiled(
        self,
        samples: np.ndarray,
        spans_s: np.ndarray,
        window_s: float,
        progress: Progress = silent,
    ) -> np.ndarray:
        """Embeddings of short spans (n x 2, seconds), each repeated to fill a window.

        A span shorter than a window would otherwise be embedded with its surroundings,
        which may hold another speaker's voice; repeating the span keeps the window pure.
        """
        spans = np.asarray(spans_s, dtype=np.float64).reshape(-1, 2)
        if not spans.size:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        x = np.asarray(samples, dtype=np.float32)
        n_frames = max(1, round(window_s * SAMPLE_RATE / MEL_HOP))
        win_samples = n_frames * MEL_HOP
        pieces = []
        for a, b in spans:
            seg = x[int(a * SAMPLE_RATE) : max(int(a * SAMPLE_RATE) + 1, int(b * SAMPLE_RATE))]
            if not seg.size:
                seg = np.zeros(1, np.float32)
            reps = -(-win_samples // seg.size)
            pieces.append(np.tile(seg, reps)[:win_samples])
        aux = np.concatenate(pieces)
        starts = np.arange(len(pieces)) * (win_samples / SAMPLE_RATE)
        return self.embed_windows(aux, starts, window_s, progress)
