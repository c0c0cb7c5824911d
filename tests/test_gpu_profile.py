"""The GPU profile's heavy backends, run for real on the CPU in the GPU profile's environment
(`make test` runs this file there: `VOICE_ASSETS_PROFILE=gpu scripts/setup.sh`).

Each model is built with random weights in the layout `voice-assets models pull` leaves
(tests/random_models.py) and goes through the same loading code: pyannote.audio's
`Pipeline.from_pretrained`, WhisperX's `load_align_model` + `align`, demucs's loader,
insightface's model zoo. Random weights give meaningless labels, so these tests check what
the code does with the outputs (shapes, bounds, which segment a word lands on), not accuracy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import random_models
import soundfile as sf
from testdata import invoke, pyannote_sample

from voice_assets import bench
from voice_assets.partitions import episode_key
from voice_assets.paths import Layout
from voice_assets.speech import asr
from voice_assets.speech import diarization as dia
from voice_assets.speech.vad import SpeechRegions

pytestmark = pytest.mark.gpu_profile


def test_pyannote_pipeline_loads_the_pulled_layout_and_diarizes(tmp_path: Path) -> None:
    from voice_assets.resources.diarizer import DiarizerResource

    layout = Layout(tmp_path)
    random_models.pyannote_pipeline(layout.models / dia.PYANNOTE_MODEL)
    wav, _, _ = pyannote_sample()
    x, rate = sf.read(wav, dtype="float32")
    assert rate == dia.SAMPLE_RATE
    resource = DiarizerResource(backend="pyannote", device="cpu")
    diarizer = resource.diarizer(layout)
    assert isinstance(diarizer, dia.PyannoteDiarizer)
    result = diarizer.diarize(x, SpeechRegions(np.zeros(0), np.zeros(0), x.size / rate))
    assert result.backend == "pyannote" and result.model == dia.PYANNOTE_MODEL
    assert result.turns, "the pipeline's segmentation marks speech somewhere in 30 s"
    assert all(0.0 <= t.start < t.end <= result.duration_s for t in result.turns)
    assert {t.speaker for t in result.turns} <= {f"SPK_{i:02d}" for i in range(10)}
    # One embedding per speaker the pipeline could embed, unit length, 256-d (WeSpeaker).
    for profile in result.speakers:
        assert profile.embedding.shape == (256,)
        assert abs(float(np.linalg.norm(profile.embedding)) - 1.0) < 1e-4
    # Loaded once per process: the next run's resource reuses the pipeline.
    assert DiarizerResource(backend="pyannote", device="cpu").diarizer(layout).pipeline is (
        diarizer.pipeline)
    # The table the diarization asset writes, from this result.
    table = dia.turns_table("s__e1", result)
    assert table.height == len(result.turns)


def test_whisperx_alignment_keeps_a_split_segment_words_on_that_segment(tmp_path: Path) -> None:
    """whisperx.align splits "Hello there. How are you?" at the sentence end; every word of
    both halves stays on that segment, inside its bounds, and the next segment keeps its own."""
    import nltk
    import whisperx

    model_dir = random_models.wav2vec2_ctc(tmp_path / "wav2vec2-base-960h")
    punkt = random_models.punkt_tables(tmp_path / "nltk-punkt-tab")
    nltk.data.path.insert(0, str(punkt))  # for the direct whisperx call below
    rng = np.random.default_rng(0)
    samples = (0.05 * rng.standard_normal(6 * asr.SAMPLE_RATE)).astype(np.float32)
    first = asr.Segment(0.5, 3.0, "Hello there. How are you?",
                        [asr.Word("Hello", 0.5, 0.9, 0.9)])
    second = asr.Segment(3.5, 4.5, "Fine.", [asr.Word("Fine.", 3.5, 4.0, 0.9)])

    model, metadata = whisperx.load_align_model("en", "cpu", model_name=str(model_dir))
    raw = whisperx.align([{"start": 0.5, "end": 3.0, "text": first.text}], model, metadata,
                         samples, "cpu", return_char_alignments=False)
    assert len(raw["segments"]) == 2, "whisperx splits this segment at the sentence end"

    out = asr.whisperx_align(asr.Transcript([first, second], "en", "tiny.en"), samples,
                             model_dir, "cpu", punkt_dir=punkt)
    got, fine = out.segments
    assert [w.word for w in got.words] == ["Hello", "there.", "How", "are", "you?"]
    assert all(0.5 - 1e-6 <= w.start <= w.end <= 3.0 + 1e-6 for w in got.words)
    assert [w.start for w in got.words] == sorted(w.start for w in got.words)
    assert got.text == first.text and (got.start, got.end) == (got.words[0].start,
                                                               got.words[-1].end)
    assert [w.word for w in fine.words] == ["Fine."]
    assert 3.5 - 1e-6 <= fine.words[0].start <= fine.words[0].end <= 4.5 + 1e-6


def test_multilingual_whisper_in_ct2_format_loads_through_the_asr_resource(
        tmp_path: Path) -> None:
    """The large-v3 layout (CTranslate2 model.bin, tokenizer, preprocessor_config's mel
    bins), shrunk: the ASR resource loads it by path and decodes with its batched pipeline."""
    from voice_assets.resources.asr import ASRResource

    folder = random_models.whisper_ct2(tmp_path / "whisper-large-v3")
    resource = ASRResource(model=str(folder), home=str(tmp_path), device="cpu",
                           compute_type="int8")
    model = resource.load()
    assert model.model.is_multilingual and model.feature_extractor.mel_filters.shape[0] == 80
    samples = (0.05 * np.random.default_rng(0).standard_normal(8 * asr.SAMPLE_RATE)).astype(
        np.float32)
    transcript = resource.transcribe(samples, [(0.5, 7.5)], language_hint="en")
    assert transcript.language == "en" and transcript.model == str(folder)
    assert all(0.0 <= s.start <= s.end <= 8.0 + 1e-6 for s in transcript.segments)


def test_full_size_htdemucs_separates_through_the_resource(tmp_path: Path) -> None:
    """The published HTDemucs architecture (random weights) in the pulled layout, through
    the separator resource and the chunked, cross-faded separation the stems asset runs."""
    from voice_assets.resources.separator import SeparatorResource
    from voice_assets.speech import separation as sep

    layout = Layout(tmp_path)
    random_models.htdemucs(layout.models / "htdemucs", full=True)
    separator = SeparatorResource(backend="demucs", device="cpu", chunk_s=4.0,
                                  overlap_s=1.0).separator(layout)
    x = (0.1 * np.random.default_rng(0).standard_normal(6 * sep.STEM_RATE)).astype(np.float32)
    vocals, background = sep.separate_array(x, separator)
    assert vocals.shape == x.shape and np.isfinite(vocals).all()
    np.testing.assert_allclose(vocals + background, x, atol=1e-5)  # the stems add up


@pytest.mark.slow
def test_bench_measures_the_gpu_profile_backends(tmp_path: Path, monkeypatch,
                                                 demo_episode) -> None:
    """`voice-assets bench --profile gpu --json` on the demo episode runs every GPU-profile
    backend (here on the CPU; Whisper large-v3's place is taken by tiny.en, see
    random_models.gpu_profile_models) and reports them per stage."""
    home = tmp_path / "home"
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(home))
    monkeypatch.delenv("VOICE_ASSETS_MODELS", raising=False)
    layout = Layout(home)
    missing = invoke("models", "verify", "--profile", "gpu")
    assert missing.exit_code == 1 and "voice-assets models pull htdemucs" in missing.output
    random_models.gpu_profile_models(layout)
    verified = invoke("models", "verify", "--profile", "gpu")
    assert verified.exit_code == 0, verified.output
    assert verified.output.count("ok ") == 6
    video = Path(demo_episode.video)
    for source in (video, Path(demo_episode.subtitles)):
        target = layout.inbox / "Demo" / f"Episode 01{source.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    result = invoke("bench", "--profile", "gpu", "--json", episode_key("Demo", "Episode 01"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["profile"] == "gpu"
    assert report["settings"] == {"separation": "demucs", "diarization": "pyannote",
                                  "asr_backend": "whisperx", "asr_model": "large-v3",
                                  "faces": "insightface"}
    by = {s["stage"]: s for s in report["stages"]}
    assert list(by) == list(bench.STAGES)
    assert by["stems"]["detail"] == {"backend": "demucs", "model": "htdemucs"}
    assert by["diarization"]["detail"]["backend"] == "pyannote"
    assert by["transcript"]["detail"]["backend"] == "whisperx"
    assert by["faces"]["detail"]["backend"] == "insightface"
    # Each model stage loaded its model inside the stage, reported apart from processing.
    # (Random separation weights make the vocal stem noise, so what the later stages find
    # in it is not checked here: accuracy is the CPU profile's tests' and the real models'.)
    for stage in ("stems", "diarization", "transcript", "faces"):
        assert 0 < by[stage]["load_s"] <= by[stage]["wall_s"], stage
    # No CUDA device here: GPU memory is not reported rather than reported as zero.
    assert all(s["gpu_peak_mb"] is None for s in report["stages"])


@pytest.mark.slow
def test_an_episode_and_its_series_outputs_run_on_the_gpu_profile(tmp_path: Path,
                                                                    monkeypatch,
                                                                    demo_episode) -> None:
    """Every asset of the demo episode, then the series outputs, with the GPU profile's
    resources: pyannote diarizes, WhisperX aligns, insightface finds faces, through the
    assets' own code. Separation is overridden to `none` (random HTDemucs weights would hand
    the later stages noise; HTDemucs has its own test above), as a run config would."""
    import dagster as dg
    from test_exports import _to_inbox

    from voice_assets.definitions import all_assets, all_checks, episode_assets, series_assets
    from voice_assets.partitions import episodes
    from voice_assets.resources import default_resources
    from voice_assets.resources.separator import SeparatorResource

    home = tmp_path / "home"
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(home))
    monkeypatch.setenv("VOICE_ASSETS_PROFILE", "gpu")
    monkeypatch.delenv("VOICE_ASSETS_MODELS", raising=False)
    layout = Layout(home)
    random_models.gpu_profile_models(layout)
    key = _to_inbox(demo_episode, layout.inbox, "demo")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(episodes.name, [key])
    resources = {**default_resources(layout), "separator": SeparatorResource(backend="none")}
    defs = [*all_assets, *all_checks]
    run = dg.materialize(defs, selection=episode_assets, partition_key=key, instance=instance,
                         resources=resources, raise_on_error=False)
    assert run.success, [e.event_specific_data for e in run.all_events if e.is_failure]

    def meta(node: str) -> dict:
        found = run.asset_materializations_for_node(node)[0].metadata
        return {k: getattr(v, "value", v) for k, v in found.items()}

    diarization = meta("diarization")
    assert diarization["backend"] == "pyannote" and diarization["speakers"] >= 1
    transcript = meta("transcript")
    assert transcript["backend"] == "whisperx" and transcript["model"] == "large-v3"
    assert transcript["words"] > 50  # tiny.en's real weights in large-v3's place
    assert meta("face_tracks")["backend"] == "insightface"
    series = dg.materialize(defs, selection=series_assets, instance=instance,
                            resources=resources, raise_on_error=False)
    assert series.success, [e.event_specific_data for e in series.all_events if e.is_failure]
