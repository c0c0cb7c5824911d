"""Vocal/background separation: chunked overlap-add, Spleeter quality, demucs loading, assets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import random_models
import soundfile as sf
import soxr
from testdata import (
    EpisodeHome,
    check_results,
    demo_mixture,
    demo_path,
    music,
    pyannote_sample,
    si_sdr,
    step_errors,
)

from voice_assets.errors import MediaError, ModelMissingError
from voice_assets.models import get
from voice_assets.paths import Layout
from voice_assets.resources.separator import SeparatorResource
from voice_assets.speech import separation as sep
from voice_assets.speech.audio_io import read_mono

RATE = sep.STEM_RATE


@pytest.fixture(scope="module")
def speech44() -> np.ndarray:
    """The pyannote sample's two real voices at 44.1 kHz (the clean dialogue)."""
    wav, _, _ = pyannote_sample()
    x, sr = sf.read(str(wav), dtype="float32")
    return soxr.resample(x, sr, RATE).astype(np.float32)


@pytest.fixture(scope="module")
def dialogue_and_mix(request, speech44, tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    """(clean dialogue, mixture) at 44.1 kHz: the demo episode's (its video decoded by the
    ingest code) when the synth fixture exists, else the sample's speech over synthetic
    music at 0 dB speech-to-music."""
    try:
        demo = request.getfixturevalue("demo_episode")
    except pytest.FixtureLookupError:
        bg = music(speech44.size / RATE, RATE, seed=3)
        bg *= np.sqrt(np.mean(speech44**2) / np.mean(bg**2))
        return speech44, (speech44 + bg) * 0.7
    mix, _ = read_mono(demo_mixture(demo, tmp_path_factory.mktemp("demo")), RATE)
    clean, _ = read_mono(demo_path(demo, "dialogue_wav", "clean_dialogue", "dialogue"), RATE)
    n = min(clean.size, mix.size)
    return clean[:n], mix[:n]


def test_overlap_add_reproduces_a_perfect_separator_exactly() -> None:
    """Chunking with cross-faded overlap must be invisible: identity in, identity out, for
    lengths that are not multiples of the hop and for audio shorter than one chunk."""
    ident = sep.PassThrough(chunk_s=1.0, overlap_s=0.3, sample_rate=1000)
    rng = np.random.default_rng(0)
    for n in (1, 299, 1000, 1701, 5003):
        x = rng.standard_normal(n).astype(np.float32)
        voc, bg = sep.separate_array(x, ident)
        assert voc.shape == x.shape
        np.testing.assert_allclose(voc, x, atol=1e-6)
        np.testing.assert_allclose(bg, 0.0, atol=1e-6)


def test_spleeter_raises_vocal_si_sdr_by_3_db(dialogue_and_mix) -> None:
    clean, mix = dialogue_and_mix
    separator = SeparatorResource(backend="spleeter").separator(Layout(Path("unused")))
    vocals, background = sep.separate_array(mix, separator)
    assert vocals.shape == mix.shape == background.shape
    np.testing.assert_allclose(vocals + background, mix, atol=1e-5)  # stems add up exactly
    before, after = si_sdr(mix, clean), si_sdr(vocals, clean)
    print(f"SI-SDR vs clean dialogue: mixture {before:.1f} dB, spleeter vocals {after:.1f} dB")
    assert after - before >= 3.0


@pytest.mark.heavy_backend
def test_demucs_backend_loads_the_on_disk_format_and_separates(tmp_path: Path) -> None:
    import torch
    from demucs.apply import apply_model

    repo = tmp_path / "models" / "htdemucs"
    random_models.htdemucs(repo)
    assert len(list(repo.glob("955717e8-*.th"))) == 1
    assert get("htdemucs").is_present(Layout(tmp_path))  # the pulled layout's checks pass
    x = (music(9.0, RATE, seed=1) * 0.5).astype(np.float32)

    # One chunk: exactly what demucs's own apply_model gives for the mono-as-stereo input.
    whole = sep.DemucsSeparator(repo, chunk_s=20.0, overlap_s=2.0)
    voc, bg = sep.separate_array(x, whole)
    model = sep.load_demucs(repo, "htdemucs")
    scale = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    mix = torch.from_numpy(x / scale)[None].repeat(2, 1)[None]
    with torch.inference_mode():
        ref = apply_model(model, mix, shifts=0, split=True, overlap=0.25)
    expected = ref[0, model.sources.index("vocals")].mean(dim=0).numpy() * scale
    np.testing.assert_allclose(voc, expected, atol=1e-5)
    np.testing.assert_allclose(voc + bg, x, atol=1e-5)

    # Several chunks (bounded memory): same length, finite, still adding up.
    chunked = sep.DemucsSeparator(repo, chunk_s=4.0, overlap_s=1.0)
    voc2, bg2 = sep.separate_array(x, chunked)
    assert voc2.shape == x.shape and np.isfinite(voc2).all()
    np.testing.assert_allclose(voc2 + bg2, x, atol=1e-5)
    # Away from chunk seams the chunked estimate tracks the whole-file one.
    corr = np.corrcoef(voc2[RATE : 2 * RATE], voc[RATE : 2 * RATE])[0, 1]
    assert corr > 0.9


def test_missing_demucs_model_names_model_and_pull_command(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "home")
    with pytest.raises(ModelMissingError) as err:
        SeparatorResource(backend="demucs").separator(layout)
    assert err.value.model == "htdemucs"
    assert "voice-assets models pull htdemucs" in str(err.value)
    with pytest.raises(ModelMissingError, match="voice-assets models pull htdemucs_ft"):
        SeparatorResource(backend="demucs", demucs_model="htdemucs_ft").separator(layout)
    with pytest.raises(ValueError, match="unknown separation backend"):
        SeparatorResource(backend="uvr").separator(layout)


def test_stems_asset_writes_both_stems_and_passes_its_check(tmp_path: Path, speech44) -> None:
    home = EpisodeHome(tmp_path / "home")
    bg = music(speech44.size / RATE, RATE, seed=5) * 0.3
    key = home.add_episode("Episode 01", (speech44 + bg) * 0.7, RATE)
    result = home.materialize(key, ["episode_media", "episode_audio", "stems"])
    assert result.success, step_errors(result)
    assert check_results(result)["stems_match_audio"] is True
    row = home.table("stems", key).row(0, named=True)
    assert (row["backend"], row["model"], row["sample_rate"]) == (
        "spleeter",
        "spleeter-2stems",
        RATE,
    )
    audio = home.table("episode_audio", key).row(0, named=True)
    for col in ("vocals_path", "background_path"):
        info = sf.info(row[col])
        assert (info.samplerate, info.channels) == (RATE, 1)
        assert info.frames / RATE == pytest.approx(audio["duration_s"], abs=1e-3)
    assert Path(row["vocals_path"]).parent == home.layout.episode_dir(key, "stems")
    # Music went to the background: it is louder there than in the vocals' share of it.
    assert row["vocals_lufs"] > row["background_lufs"]
    mats = result.asset_materializations_for_node("stems")
    meta = mats[0].metadata
    assert meta["vocals_spectrogram"].value.startswith("![vocals spectrogram](data:image/png")
    assert meta["backend"].value == "spleeter"


def test_none_backend_keeps_the_mixture_and_a_silent_background(tmp_path: Path) -> None:
    x = music(3.0, RATE, seed=2)
    src = tmp_path / "in.wav"
    sf.write(src, x, RATE, subtype="PCM_16")
    res = sep.separate_file(
        src, tmp_path / "stems", SeparatorResource(backend="none").separator(Layout(tmp_path))
    )
    voc, _ = sf.read(res.vocals_path, dtype="float32")
    bg, _ = sf.read(res.background_path, dtype="float32")
    ref, _ = sf.read(src, dtype="float32")
    np.testing.assert_array_equal(voc, ref)
    assert np.abs(bg).max() == 0.0
    assert res.background_lufs is None and res.vocals_lufs is not None


def test_demucs_selected_but_missing_fails_the_asset_before_writing(tmp_path: Path) -> None:
    home = EpisodeHome(tmp_path / "home")
    key = home.add_episode("Episode 02", music(2.0, RATE), RATE)
    result = home.materialize(
        key,
        ["episode_media", "episode_audio", "stems"],
        separator=SeparatorResource(backend="demucs"),
    )
    assert not result.success
    text = step_errors(result)
    assert "model 'htdemucs' is not available locally" in text
    assert "voice-assets models pull htdemucs" in text
    assert not home.layout.episode_dir(key, "stems").exists()


def test_unreadable_input_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(MediaError, match=r"broken\.wav"):
        sep.separate_file(bad, tmp_path / "out", sep.PassThrough())
    assert not (tmp_path / "out" / sep.VOCALS_FILE).exists()


def test_spleeter_weights_ship_in_the_package() -> None:
    spec = get("spleeter-2stems")
    assert spec.embedded and spec.is_present()
    assert (spec.path() / "testcheckpoint0.ckpt").is_file()
