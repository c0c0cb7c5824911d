"""Small PNG figures for asset metadata: waveforms, spectrograms, speaker timelines, bars."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def waveform_png(samples: np.ndarray, sample_rate: int, title: str = "") -> bytes:
    """Min/max envelope of a mono signal, cheap for hour-long audio."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    bins = 2000
    n = max(1, len(x) // bins)
    usable = x[: (len(x) // n) * n].reshape(-1, n) if len(x) >= n else x.reshape(1, -1)
    t = np.arange(usable.shape[0]) * n / sample_rate
    fig, ax = plt.subplots(figsize=(10, 2))
    ax.fill_between(t, usable.min(axis=1), usable.max(axis=1), linewidth=0, color="#3b6ea5")
    ax.set_xlim(0, max(t[-1] if len(t) else 0, 1e-3))
    ax.set_ylim(-1, 1)
    ax.set_xlabel("seconds")
    ax.set_title(title)
    return _png(fig)


def spectrogram_png(samples: np.ndarray, sample_rate: int, title: str = "") -> bytes:
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    fig, ax = plt.subplots(figsize=(10, 2.5))
    if len(x) >= 512:
        ax.specgram(x, NFFT=1024, Fs=sample_rate, noverlap=512, cmap="magma")
    ax.set_xlabel("seconds")
    ax.set_ylabel("Hz")
    ax.set_title(title)
    return _png(fig)


def timeline_png(
    turns: Sequence[tuple[float, float, str]], duration: float, title: str = ""
) -> bytes:
    """One row per label, a bar per (start, end, label) turn."""
    labels = sorted({label for _, _, label in turns})
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.4 * max(1, len(labels))))
    cmap = plt.get_cmap("tab10")
    for row, label in enumerate(labels):
        spans = [(s, e - s) for s, e, lab in turns if lab == label]
        ax.broken_barh(spans, (row - 0.4, 0.8), color=cmap(row % 10))
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlim(0, max(duration, 1e-3))
    ax.set_xlabel("seconds")
    ax.set_title(title)
    return _png(fig)


def bar_png(values: Mapping[str, float], xlabel: str, title: str = "") -> bytes:
    names = list(values)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.35 * max(1, len(names))))
    ax.barh(names, [values[n] for n in names], color="#3b6ea5")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def stacked_bar_png(values: Mapping[str, Mapping[str, float]], xlabel: str,
                    title: str = "") -> bytes:
    """One bar per row key, stacked by the inner keys (e.g. minutes per character by episode)."""
    rows = sorted(values, key=lambda r: -sum(values[r].values()))
    parts = sorted({p for r in rows for p in values[r]})
    fig, ax = plt.subplots(figsize=(7, 0.7 + 0.35 * max(1, len(rows))))
    cmap = plt.get_cmap("tab20")
    left = np.zeros(len(rows))
    for i, part in enumerate(parts):
        widths = np.array([values[r].get(part, 0.0) for r in rows])
        ax.barh(rows, widths, left=left, color=cmap(i % 20), label=part)
        left += widths
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if parts:
        ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def curves_png(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str,
               title: str = "") -> bytes:
    """Lines (x, y) by name on one axis: losses over training steps."""
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for name, (x, y) in sorted(series.items()):
        ax.plot(list(x), list(y), label=name, linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if series:
        ax.legend(fontsize=7)
    return _png(fig)
