"""Voice activity: Silero's ONNX sequence model on real speech, silence and music."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from testdata import (
    EpisodeHome,
    check_results,
    log_messages,
    music,
    pyannote_sample,
    read_rttm,
    step_errors,
)

from voice_assets.resources.separator import SeparatorResource
from voice_assets.speech import vad

SR = vad.SAMPLE_RATE


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    wav, rttm, _ = pyannote_sample()
    x, sr = sf.read(str(wav), dtype="float32")
    assert sr == SR
    return x, read_rttm(rttm)


def _coverage(regions: vad.SpeechRegions, turns: list[tuple[float, float, str]], step=0.01):
    """(fraction of reference speech inside regions, seconds of regions outside speech)."""
    t = np.arange(0, regions.duration_s, step)
    ref = np.zeros(t.size, bool)
    for s, e, _ in turns:
        ref |= (t >= s) & (t < e)
    hyp = np.zeros(t.size, bool)
    for s, e in zip(regions.starts, regions.ends, strict=True):
        hyp |= (t >= s) & (t < e)
    return float((ref & hyp).sum() / ref.sum()), float((hyp & ~ref).sum() * step)


def test_regions_cover_the_reference_speech_of_the_sample(sample) -> None:
    x, turns = sample
    regions = vad.detect_speech(x)
    recall, false_s = _coverage(regions, turns)
    print(
        f"VAD on the pyannote sample: {len(regions)} regions, recall {recall:.3f}, "
        f"{false_s:.2f} s outside reference speech"
    )
    assert recall >= 0.97
    assert false_s <= 1.0
    assert 0.70 <= regions.speech_ratio <= 0.85  # 23.3 s of speech in 30 s
    assert np.all(regions.ends > regions.starts)
    assert np.all(regions.starts[1:] >= regions.ends[:-1])


def test_block_chaining_matches_the_package_sequence_model(sample) -> None:
    """Our progress-reporting block loop carries the LSTM state exactly like silero's own."""
    import torch

    threads = torch.get_num_threads()
    from silero_vad.sequence_vad import SileroVADSequence

    x, _ = sample
    ours = vad.speech_probabilities(x)
    theirs = SileroVADSequence(str(vad.model_path())).audio_forward(x)
    torch.set_num_threads(threads)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert torch.get_num_threads() == threads


def test_silence_and_music_have_no_speech() -> None:
    silent = vad.detect_speech(np.zeros(5 * SR, np.float32))
    assert len(silent) == 0 and silent.speech_ratio == 0.0 and silent.duration_s == 5.0
    tune = vad.detect_speech(music(20.0, SR, seed=4))
    assert tune.speech_s <= 1.0


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        vad.VadParams(threshold=1.5)
    with pytest.raises(ValueError, match="min_silence_s"):
        vad.VadParams(min_silence_s=-1)


def test_min_durations_and_padding_are_applied(sample) -> None:
    x, _ = sample
    loose = vad.detect_speech(x, vad.VadParams(min_silence_s=0.05, speech_pad_s=0.0))
    tight = vad.detect_speech(x, vad.VadParams(min_silence_s=1.0, speech_pad_s=0.2))
    assert len(loose) > len(tight)
    assert min(loose.ends - loose.starts) >= 0.25 - 1e-6


def test_asset_on_real_speech_and_on_a_silent_episode(tmp_path: Path, sample) -> None:
    x, _turns = sample
    home = EpisodeHome(tmp_path / "home")
    speech = home.add_episode("Episode 01", x, SR)
    quiet = home.add_episode("Episode 02", np.zeros(4 * SR, np.float32), SR)
    chain = ["episode_media", "episode_audio", "stems", "voice_activity"]
    none = SeparatorResource(backend="none")

    result = home.materialize(speech, chain, separator=none)
    assert result.success, step_errors(result)
    assert check_results(result)["voice_activity_valid"] is True
    table = home.table("voice_activity", speech)
    assert table.columns == ["episode", "start", "end"] and table.height >= 2
    meta = result.asset_materializations_for_node("voice_activity")[0].metadata
    assert 0.70 <= meta["speech_ratio"].value <= 0.85

    result = home.materialize(quiet, chain, separator=none)
    assert result.success, step_errors(result)
    assert home.table("voice_activity", quiet).height == 0
    assert check_results(result)["voice_activity_valid"] is True
    warnings = log_messages(home, result, logging.WARNING)
    assert any("no speech found" in w for w in warnings), warnings
