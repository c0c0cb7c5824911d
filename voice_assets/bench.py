"""Benchmark the speech pipeline on one episode: wall time, real-time factor, peak memory.

Runs the same domain functions the assets call, in pipeline order (decode audio -> stems ->
voice activity -> diarization -> transcript -> alignment -> utterances -> shots -> emotion
features -> clips -> faces), in this process and without Dagster, so the figures are the
models' cost and not the orchestrator's.

Peak memory per stage: Linux keeps a per-process resident-set high-water mark (VmHWM in
/proc/self/status) that writing "5" to /proc/self/clear_refs resets. Resetting it before a
stage and reading it after gives that stage's own peak, exactly and at no cost, including
short spikes inside native code (ONNX, CTranslate2, torch) that a sampling thread can miss.
``ru_maxrss`` cannot be reset: its per-stage deltas are zero for any stage that peaks below an
earlier one, so it is only the whole-run figure. Where clear_refs is unavailable (not Linux,
or a locked-down /proc), a thread samples the RSS every 5 ms instead (method 'sampled').
Models load inside the stage that first needs them: the figures are a cold run's.

The model stages are built from the same resources the code location runs with, with the
backends of a profile (``--profile cpu|gpu``, default $VOICE_ASSETS_PROFILE), so the figures
are those of what a run would do. On a CUDA device each stage also reports its peak GPU
memory: the device's used memory, sampled every 5 ms (it counts CTranslate2's and
onnxruntime's allocations, which torch's own counters miss), and torch's peak allocation.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voice_assets.paths import Layout
from voice_assets.profiles import Profile
from voice_assets.progress import Progress, silent

STAGES = ("decode_audio", "stems", "voice_activity", "diarization", "transcript", "alignment",
          "utterances", "shots", "emotion_features", "clips", "faces")


# --- memory measurement -----------------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _rss_kb() -> int:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb
    # No /proc: the best portable figure is the lifetime maximum.
    scale = 1 if sys.platform != "darwin" else 1 / 1024  # macOS reports bytes
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


@dataclass
class _Peak:
    method: str = ""
    peak_kb: int = 0


@contextmanager
def peak_rss() -> Iterator[_Peak]:
    """Measure the peak resident set size of this process while the block runs."""
    out = _Peak()
    if _reset_hwm():
        out.method = "vmhwm"
        try:
            yield out
        finally:
            out.peak_kb = _status_kb("VmHWM") or 0
        return
    out.method = "sampled"
    with _sampled_max(_rss_kb) as peak:
        yield out
    out.peak_kb = peak[0]


@contextmanager
def _sampled_max(read: Callable[[], int]) -> Iterator[list[int]]:
    """Read ``read()`` every 5 ms while the block runs; the list's one item is the maximum
    seen (final once the block has left)."""
    peak = [read()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], read())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], read())


@dataclass
class _GpuPeak:
    used_mb: float | None = None
    torch_mb: float | None = None


def _cuda() -> Any:
    """torch.cuda when torch is loaded and sees a GPU, else None (never imports torch)."""
    torch = sys.modules.get("torch")
    try:
        return torch.cuda if torch is not None and torch.cuda.is_available() else None
    except Exception:  # a broken CUDA install: measure nothing rather than fail the bench
        return None


@contextmanager
def peak_gpu() -> Iterator[_GpuPeak]:
    """Peak GPU memory while the block runs (see the module docstring); None without CUDA."""
    out = _GpuPeak()
    cuda = _cuda()
    if cuda is None:
        yield out
        return

    def used() -> int:
        free, total = cuda.mem_get_info()
        return int(total - free)

    cuda.reset_peak_memory_stats()
    with _sampled_max(used) as peak:
        yield out
    out.used_mb = peak[0] / 2**20
    out.torch_mb = cuda.max_memory_allocated() / 2**20


# --- report -----------------------------------------------------------------------------------


@dataclass
class StageResult:
    stage: str
    wall_s: float
    rtf: float  # processing seconds per second of audio (model loading included)
    peak_rss_mb: float
    rss_after_mb: float
    detail: dict[str, Any] = field(default_factory=dict)
    # Of wall_s: loading the stage's models and their first call on a second of silence
    # (weights, imports, JIT compilation), paid once per process.
    load_s: float = 0.0
    # On a CUDA device: the device's peak used memory during the stage, and torch's own peak.
    gpu_peak_mb: float | None = None
    torch_gpu_peak_mb: float | None = None


@dataclass
class BenchReport:
    media: str
    subtitles: str | None
    audio_s: float
    stages: list[StageResult]
    total_wall_s: float
    total_rtf: float
    peak_rss_mb: float
    total_load_s: float
    memory_method: str
    device: str
    cpu_count: int
    settings: dict[str, Any] = field(default_factory=dict)
    profile: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def format_table(report: BenchReport) -> str:
    """A plain-text table: one row per stage, then end to end."""
    head = (f"{Path(report.media).name}: {report.audio_s:.1f} s of audio, profile "
            f"{report.profile}, device {report.device}, {report.cpu_count} CPUs, "
            f"peak memory by {report.memory_method}")
    rows = [("stage", "wall s", "load s", "RTF", "peak RSS MB", "notes")]
    for s in report.stages:
        gpu = {"gpu_peak_mb": round(s.gpu_peak_mb)} if s.gpu_peak_mb is not None else {}
        notes = ", ".join(f"{k}={v}" for k, v in {**s.detail, **gpu}.items())
        rows.append((s.stage, f"{s.wall_s:.2f}", f"{s.load_s:.2f}", f"{s.rtf:.3f}",
                     f"{s.peak_rss_mb:.0f}", notes))
    rows.append(("end to end", f"{report.total_wall_s:.2f}", f"{report.total_load_s:.2f}",
                 f"{report.total_rtf:.3f}", f"{report.peak_rss_mb:.0f}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [head, ""]
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [r[k].rjust(widths[k]) for k in (1, 2, 3, 4)] + [r[5]]
        lines.append("  ".join(cells).rstrip())
        if i == 0 or i == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------


class _Timer:
    def __init__(self) -> None:
        self.stages: list[StageResult] = []
        self.method = ""
        self._load = 0.0

    def load(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (a model load and warm-up) as the current stage's load time."""
        t0 = time.perf_counter()
        value = fn()
        self._load += time.perf_counter() - t0
        return value

    def run(self, stage: str, fn: Callable[[], Any],
            detail: Callable[[Any], dict[str, Any]] | None = None) -> Any:
        self._load = 0.0
        with peak_rss() as mem, peak_gpu() as gpu:
            t0 = time.perf_counter()
            value = fn()
            wall = time.perf_counter() - t0
        self.method = mem.method
        self.stages.append(StageResult(stage, wall, 0.0, mem.peak_kb / 1024,
                                       _rss_kb() / 1024, detail(value) if detail else {},
                                       load_s=self._load, gpu_peak_mb=gpu.used_mb,
                                       torch_gpu_peak_mb=gpu.torch_mb))
        return value


def run_benchmark(media_path: Path, subtitles: Path | None = None, *,
                  profile: str | None = None, asr_model: str | None = None,
                  separation: str | None = None, workdir: Path | None = None,
                  progress: Progress = silent) -> BenchReport:
    """Run every speech stage once on ``media_path`` and time it (see the module docstring).

    ``profile`` names the backends (default: $VOICE_ASSETS_PROFILE, else cpu); ``asr_model``
    and ``separation`` override the profile's ASR model and separation backend.
    Intermediate files go to ``workdir`` (default: a temporary directory, removed after).
    """
    from voice_assets.media.probe import probe_media
    from voice_assets.profiles import active_profile, get_profile

    chosen = get_profile(profile) if profile else active_profile()
    media_path = Path(media_path)
    probe_media(media_path)  # fail fast, naming the file, before any model loads
    overrides = {"asr_model": asr_model, "separation": separation}
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return _run(media_path, subtitles, chosen, overrides, workdir, progress)
    with tempfile.TemporaryDirectory(prefix="voice-assets-bench-") as tmp:
        return _run(media_path, subtitles, chosen, overrides, Path(tmp), progress)


def _stage_resources(layout: Layout, profile: Profile, overrides: dict[str, str | None]
                     ) -> dict[str, Any]:
    """The profile's model resources, with the bench's overrides applied."""
    from voice_assets.resources import model_resources

    res = model_resources(layout, profile)
    if overrides.get("asr_model"):
        res["asr"] = res["asr"].model_copy(update={"model": overrides["asr_model"]})
    if overrides.get("separation"):
        res["separator"] = res["separator"].model_copy(
            update={"backend": overrides["separation"]})
    return res


def _run(media_path: Path, subtitles: Path | None, profile: Profile,
         overrides: dict[str, str | None], work: Path, progress: Progress) -> BenchReport:
    import numpy as np
    import polars as pl

    from voice_assets.media.decode import decode_episode_audio
    from voice_assets.media.probe import probe_media
    from voice_assets.media.subtitles import parse_subtitles
    from voice_assets.media.tables import subtitles_table
    from voice_assets.speech import alignment, asr, fusion, vad
    from voice_assets.speech import separation as sep
    from voice_assets.speech.audio_io import read_mono

    episode = "bench"
    timer = _Timer()
    t_start = time.perf_counter()
    ru_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def decode() -> Any:
        info = probe_media(media_path)
        return decode_episode_audio(media_path, info.audio.index, work / "audio",
                                    progress=progress)

    audio = timer.run("decode_audio", decode, lambda a: {"audio_s": round(a.duration_s, 1)})
    duration = float(audio.duration_s)

    layout = Layout.from_env()
    res = _stage_resources(layout, profile, overrides)

    def separate() -> Any:
        separator = timer.load(lambda: res["separator"].separator(layout))
        timer.load(lambda: separator.vocals(np.zeros(separator.sample_rate, np.float32), 1.0))
        return sep.separate_file(audio.dataset_path, work / "stems", separator, progress)

    stems = timer.run("stems", separate, lambda s: {"backend": s.backend, "model": s.model})
    vocals = Path(stems.vocals_path)

    def voice_activity() -> tuple[Any, Any]:
        samples16k, _ = read_mono(vocals, asr.SAMPLE_RATE)
        return samples16k, vad.detect_speech(samples16k, progress=progress)

    samples16k, regions = timer.run(
        "voice_activity", voice_activity,
        lambda v: {"regions": len(v[1]), "speech_s": round(v[1].speech_s, 1)})
    region_list = list(zip(regions.starts.tolist(), regions.ends.tolist(), strict=True))

    def diarize() -> Any:
        diarizer = timer.load(lambda: res["diarizer"].diarizer(layout))
        warm = np.zeros(2 * asr.SAMPLE_RATE, np.float32)
        timer.load(lambda: diarizer.diarize(
            warm, vad.SpeechRegions(np.zeros(1), np.full(1, 2.0), 2.0)))
        return diarizer.diarize(samples16k, regions, progress=progress)

    diar = timer.run("diarization", diarize, lambda d: {"backend": d.backend,
                                                          "speakers": d.n_speakers,
                                                          "turns": len(d.turns)})

    def transcribe() -> Any:
        timer.load(lambda: res["asr"].load())
        return res["asr"].transcribe(samples16k, region_list, progress=progress)

    transcript = timer.run("transcript", transcribe,
                           lambda t: {"backend": res["asr"].backend, "model": t.model,
                                      "words": len(t.words), "language": t.language})

    def align() -> Any:
        if subtitles is not None:
            lines = alignment.subtitle_lines(subtitles_table(episode, parse_subtitles(subtitles)))
            return alignment.align_subtitles(lines, transcript.words, samples16k, region_list,
                                             transcript.language, progress=progress)
        return alignment.asr_lines(transcript.segments, samples16k, region_list,
                                   transcript.language,
                                   progress=progress)

    def align_detail(r: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"lines": len(r.lines), "refiner": r.refiner}
        if subtitles is not None:  # the subtitles' dialogue is a reference for the ASR text
            from voice_assets.speech.wer import word_error_rate

            df = alignment.aligned_frame(episode, r).filter(pl.col("kind") == "dialogue")
            out["dialogue_lines"] = df.height  # the WER's reference: lines heard as speech
            out["asr_wer_vs_subtitles"] = round(word_error_rate(
                df.sort("start")["text"].to_list(), [s.text for s in transcript.segments],
                transcript.language), 3)
        return out

    aligned = timer.run("alignment", align, align_detail)

    def fuse() -> Any:
        turns = pl.DataFrame(
            [{"start": t.start, "end": t.end, "speaker": t.speaker, "overlap": t.overlap,
              "confidence": t.confidence} for t in diar.turns],
            schema={"start": pl.Float64, "end": pl.Float64, "speaker": pl.Utf8,
                    "overlap": pl.Boolean, "confidence": pl.Float64})
        return fusion.fuse_utterances(episode, alignment.aligned_frame(episode, aligned), turns,
                                      transcript.language)

    utterances = timer.run("utterances", fuse, lambda df: {"rows": len(df)})

    def find_shots() -> Any:
        from voice_assets.media.shots import detect_shots

        if not probe_media(media_path).has_video:
            return None
        return detect_shots(media_path, progress=progress)

    shots = timer.run("shots", find_shots, lambda r: {"shots": len(r.shots)} if r else
                      {"skipped": "no video stream"})

    def emotion() -> Any:
        from voice_assets.dataset.emotion import utterance_features

        return utterance_features(utterances, vocals, progress=progress)

    timer.run("emotion_features", emotion, lambda df: {"rows": df.height, "model": "prosody"})

    def cut() -> Any:
        from voice_assets.dataset.clips import ClipConfig, cut_clips

        return cut_clips(utterances, vocals, work / "clips", ClipConfig(),
                         mixture_path=audio.dataset_path,
                         background_path=stems.background_path,
                         shot_cuts=shots.cuts if shots else (), progress=progress)

    timer.run("clips", cut, lambda df: {"clips": df.height,
                                        "kept": int(df["keep"].sum()) if df.height else 0})

    def faces() -> Any:
        from voice_assets.faces.episode import track_episode_faces
        from voice_assets.faces.speaking import Turn, speaking_faces

        detector = timer.load(lambda: res["face_detector"].detector(layout))
        found = track_episode_faces(media_path, region_list, detector, progress=progress)
        turns = [Turn(t.speaker, t.start, t.end) for t in diar.turns]
        ranked = speaking_faces(turns, [t.activity_series() for t in found.tracks])
        return found, ranked

    timer.run("faces", faces, lambda f: {
        "backend": res["face_detector"].backend, "tracks": len(f[0].tracks),
        "detector_passes": f[0].detector_passes, "reused_passes": f[0].reused_passes,
        "embeddings": f[0].embeddings, "reused_embeddings": f[0].reused_embeddings,
        "turns_with_face": sum(r.track_id is not None for r in f[1]),
        **({"skipped": f[0].skipped} if f[0].skipped else {})})

    total = time.perf_counter() - t_start
    for s in timer.stages:
        s.rtf = s.wall_s / duration if duration > 0 else 0.0
    ru_peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, ru_start)
    device, _ = asr.default_device()
    return BenchReport(
        media=str(media_path), subtitles=str(subtitles) if subtitles else None,
        audio_s=duration, stages=timer.stages, total_wall_s=total,
        total_rtf=total / duration if duration > 0 else 0.0,
        total_load_s=sum(s.load_s for s in timer.stages),
        peak_rss_mb=max([ru_peak_kb / 1024] + [s.peak_rss_mb for s in timer.stages]),
        memory_method=timer.method, device=device, cpu_count=os.cpu_count() or 1,
        settings={"separation": res["separator"].backend, "diarization": res["diarizer"].backend,
                  "asr_backend": res["asr"].backend, "asr_model": res["asr"].model,
                  "faces": res["face_detector"].backend},
        profile=profile.name,
    )
