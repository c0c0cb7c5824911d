"""Voice models from a character's clips: readiness, reference packs, the Pipes path, `speak`.

The dataset is two characters of the generator's cast (Joe, and Grace: the same piper model
pitched up 1.45x), every line rendered by the real TTS and cut as a clip. The tables upstream
of the voice assets (clips, dataset_splits, emotion_tags) are stand-in assets that return
those rows; ``voice_readiness`` and ``voice_models`` run for real with the project's IO
manager, speaker embedder (GE2E) and ASR (whisper tiny.en).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import soundfile as sf
from testdata import invoke

from voice_assets.assets.voices import voice_models, voice_readiness
from voice_assets.dataset.clips import CLIP_SCHEMA
from voice_assets.dataset.prosody import resample
from voice_assets.errors import VoiceAssetsError
from voice_assets.partitions import character_key, characters, episodes
from voice_assets.paths import Layout
from voice_assets.resources import default_resources
from voice_assets.resources.storage import StorageResource
from voice_assets.resources.tables import DuckDBTablesIOManager
from voice_assets.resources.voice_trainer import VoiceTrainerResource
from voice_assets.sensors.voices import voice_models_sensor
from voice_assets.synth.script import CAST
from voice_assets.synth.voices import STYLES, TTS_SAMPLE_RATE, Synthesizer

SR = 44_100
EPISODE = "demo__e1"
LINES = {
    "Joe": [
        ("The library closes early on Sundays, so we should hurry up.", "neutral"),
        ("Have you seen my blue notebook anywhere in the kitchen?", "neutral"),
        ("I cannot believe it, we won the whole contest this year, all of us together!",
         "excited"),
        ("Please close the window, it is freezing in here tonight.", "neutral"),
        ("The elevator is broken again, so we have to take the stairs.", "sad"),
        ("Turn left at the old church and keep going until the river.", "neutral"),
        ("My sister is coming to visit us at the end of next month.", "neutral"),
        ("We finally found the treasure buried under the wooden bridge!", "excited"),
        ("The kettle is boiling already, who wants a cup of tea?", "neutral"),
        ("Every morning the baker sings a song while the bread is baking.", "neutral"),
    ],
    "Grace": [
        ("The garden looks empty without the roses we planted in spring.", "sad"),
        ("Somebody left the garden gate open again last night.", "neutral"),
        ("The baby finally fell asleep after the long walk in the park.", "neutral"),
        ("I think it is going to rain all afternoon, take an umbrella.", "neutral"),
    ],
}
SPLITS = {"Joe": ["train"] * 7 + ["validation"] * 2 + ["test"], "Grace": ["train"] * 3 +
          ["validation"]}
PYTHON = sys.executable
STAND_IN_TRAINER = Path(__file__).parent / "scripts" / "pipes_trainer.py"


def _tables(root: Path) -> dict[str, pl.DataFrame]:
    synth = Synthesizer(seed=0)
    clips, splits, emotions = [], [], []
    t = 1.0
    for character, lines in LINES.items():
        for k, (text, style) in enumerate(lines):
            x = synth.speak(text, CAST[character].voice, STYLES[style])
            x = 0.3 * resample(x, TTS_SAMPLE_RATE, SR).astype(np.float32)
            cid = f"{EPISODE}_{round(t * 1000):08d}"
            path = root / "clips" / f"{cid}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, x, SR)
            dur = len(x) / SR
            clips.append({
                "id": cid, "utterance_id": cid, "episode": EPISODE, "series": "demo",
                "speaker": f"SPK_{character}", "character": character,
                "character_source": "subtitle", "start": t, "end": t + dur,
                "clip_start": t, "clip_end": t + dur, "duration_s": dur, "text": text,
                "language": "en", "text_source": "subtitle", "overlap": False, "overlap_s": 0.0,
                "overlap_cut_s": 0.0, "scene": f"{EPISODE}:scene_{k}", "audio_path": str(path),
                "sample_rate": SR, "snr_db": 40.0, "residual_music": 0.0, "keep": True,
                "reject_reasons": [], "fingerprint": []})
            split = SPLITS[character][k]
            splits.append({"id": cid, "group": f"{EPISODE}:scene_{k}", "split": split,
                           "split_reason": "hash", "duplicate_of": None})
            emotions.append({"id": cid, "emotion": style, "emotion_confidence": 1.0,
                             "emotion_source": "human", "emotion_reason": "test"})
            t += dur + 1.0
    return {"clips": pl.DataFrame(clips, schema_overrides={
                k: v for k, v in CLIP_SCHEMA.items() if k in clips[0]}),
            "dataset_splits": pl.DataFrame(splits, schema_overrides={"duplicate_of": pl.Utf8}),
            "emotion_tags": pl.DataFrame(emotions)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("voices")
    tables = _tables(home)

    # Stand-ins for the dataset assets upstream: they return the rows built above.
    @dg.asset(name="clips", partitions_def=episodes, metadata={"partition_expr": "episode"})
    def clips_in() -> pl.DataFrame:
        return tables["clips"]

    @dg.asset(name="dataset_splits")
    def splits_in() -> pl.DataFrame:
        return tables["dataset_splits"]

    @dg.asset(name="emotion_tags")
    def emotion_in() -> pl.DataFrame:
        return tables["emotion_tags"]

    layout = Layout(home)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(episodes.name, [EPISODE])
    resources = {**default_resources(layout),
                 "io_manager": DuckDBTablesIOManager(database=str(layout.database),
                                                     schema="voice_assets")}
    stand_ins = [clips_in, splits_in, emotion_in]
    assert dg.materialize([clips_in], partition_key=EPISODE, resources=resources,
                          instance=instance).success
    result = dg.materialize([*stand_ins, voice_readiness], selection=[splits_in, emotion_in,
                                                                      voice_readiness],
                            resources=resources, instance=instance)
    assert result.success

    def train(key: str, trainer: VoiceTrainerResource, force: bool = False
              ) -> dg.ExecuteInProcessResult:
        if not instance.has_dynamic_partition(characters.name, key):
            instance.add_dynamic_partitions(characters.name, [key])
        return dg.materialize(
            [*stand_ins, voice_readiness, voice_models], selection=[voice_models],
            partition_key=key, instance=instance, raise_on_error=False,
            resources={**resources, "voice_trainer": trainer},
            run_config={"ops": {"voice_models": {"config": {"force": force}}}})

    return {"home": home, "layout": layout, "tables": tables, "train": train,
            "readiness": result.asset_materializations_for_node("voice_readiness")[0]}


def _read(home: Path, table: str) -> pl.DataFrame:
    import duckdb

    with duckdb.connect(str(Layout(home).database), read_only=True) as con:
        return pl.from_arrow(con.sql(f"SELECT * FROM voice_assets.{table}").to_arrow_table())


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_readiness_says_per_trainer_what_is_missing(world):
    df = _read(world["home"], "voice_readiness")
    joe = {r["trainer"]: r for r in df.filter(pl.col("character") == "Joe").iter_rows(named=True)}
    assert set(joe) == {"reference", "gpt-sovits", "piper", "rvc"}
    assert joe["reference"]["ready"] and joe["reference"]["reasons"] == []
    assert joe["reference"]["key"] == "demo__joe"
    assert joe["reference"]["train_clips"] == 7 and joe["reference"]["validation_clips"] == 2
    assert joe["reference"]["emotions"] == 3  # neutral, excited, sad among the train clips
    # Seven clips of ~3.5 s: below piper's 10 minutes, said with both figures.
    assert not joe["piper"]["ready"]
    assert any(r.startswith("0.4 of 10 train minutes") for r in joe["piper"]["reasons"]), \
        joe["piper"]["reasons"]
    # The excited and sad renderings move the median pitch (1.15x, 0.88x): a real spread.
    assert joe["piper"]["pitch_range_st"] > 1.0
    assert "| demo | Joe | piper | False |" in world["readiness"].metadata["readiness"].value


def test_below_the_floor_is_not_trained_and_the_check_says_why(world):
    result = world["train"]("demo__joe", VoiceTrainerResource(backend="piper"))
    assert result.success
    checks = _checks(result)
    assert not checks["voice_model_ready"].passed
    assert "train minutes" in checks["voice_model_ready"].metadata["missing"].value
    row = _read(world["home"], "voice_models").filter(pl.col("key") == "demo__joe").row(
        0, named=True)
    assert row["status"] == "not_ready" and row["step"] == 0
    assert not (world["home"] / "voices" / "demo" / "joe" / "piper").exists()


def test_reference_pack_holds_the_characters_kept_clips_in_each_layout(world):
    result = world["train"]("demo__joe", VoiceTrainerResource(backend="reference", prompts=4))
    assert result.success, result
    pack = world["home"] / "voices" / "demo" / "joe" / "reference" / "pack"
    manifest = json.loads((pack / "manifest.json").read_text())
    clips = world["tables"]["clips"]
    splits = world["tables"]["dataset_splits"]
    joe_train = set(clips.join(splits, on="id").filter(
        (pl.col("character") == "Joe") & (pl.col("split") == "train"))["id"])
    ids = [p["id"] for p in manifest["prompts"]]
    assert len(ids) == 4 and set(ids) <= joe_train
    # One prompt per emotion comes first: all three of Joe's are in the pack.
    assert {p["emotion"] for p in manifest["prompts"]} == {"neutral", "excited", "sad"}
    text_of = dict(clips.select("id", "text").iter_rows())
    assert [p["text"] for p in manifest["prompts"]] == [text_of[i] for i in ids]
    best = manifest["prompts"][0]
    sovits = json.loads((pack / "gpt_sovits" / "ref.json").read_text())
    assert sovits["prompt_text"] == best["text"] and sovits["prompt_lang"] == "en"
    assert len(sovits["aux_ref_audio_paths"]) == 3
    assert (pack / "f5_tts" / "ref.txt").read_text().strip() == best["text"]
    assert (pack / "cosyvoice" / "prompt.txt").read_text().strip() == best["text"]
    for layout, rate in (("gpt_sovits/ref.wav", 32_000), ("f5_tts/ref.wav", 24_000),
                         ("cosyvoice/prompt.wav", 16_000), ("xtts/speaker_00.wav", 22_050)):
        info = sf.info(pack / layout)
        assert info.samplerate == rate and abs(info.duration - best["duration_s"]) < 0.05
    assert len(list((pack / "xtts").glob("speaker_*.wav"))) == 4
    # Judged as prompts: they are Joe (closer to his held-out clips than to Grace's) and
    # their transcripts match the audio.
    row = _read(world["home"], "voice_models").filter(pl.col("key") == "demo__joe").row(
        0, named=True)
    assert row["status"] == "trained" and row["eval_lines"] == 4 and row["judged_on"] == "prompts"
    assert row["similarity_margin"] > 0, row
    assert row["wer"] <= 0.1, row
    assert _checks(result)["voice_model_quality"].passed


def test_pipes_trainer_runs_an_external_process_and_records_what_it_reports(world, tmp_path):
    def trainer(steps: int) -> VoiceTrainerResource:
        return VoiceTrainerResource(backend="rvc", repo=str(tmp_path), max_steps=steps,
                                    command=["{python}", str(STAND_IN_TRAINER)], python=PYTHON)

    result = world["train"]("demo__grace", trainer(40), force=True)
    assert result.success, result
    row = _read(world["home"], "voice_models").filter(pl.col("key") == "demo__grace").row(
        0, named=True)
    assert row["trainer"] == "rvc" and row["step"] == 40 and row["train_clips"] == 3
    folder = Path(row["folder"])
    assert (folder / "model" / "model.pth").read_bytes() == b"stand-in weights"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["metadata"]["clips"] == 3 and manifest["metadata"]["resumed_from"] == 0
    # A second run with a larger budget resumes from the step the first one reached.
    assert world["train"]("demo__grace", trainer(60), force=True).success
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["step"] == 60 and manifest["metadata"]["resumed_from"] == 40


def test_sensor_adds_every_character_and_trains_only_the_ready(world):
    with dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(),
            resources={"storage": StorageResource(home=str(world["home"])),
                       "voice_trainer": VoiceTrainerResource(backend="reference")}) as ctx:
        result = voice_models_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    (add,) = result.dynamic_partitions_requests
    assert add.partitions_def_name == "characters"
    assert sorted(add.partition_keys) == ["demo__grace", "demo__joe"]
    # Grace's three train clips (~10 s) are under a reference pack's 15 s: not requested.
    assert [r.partition_key for r in result.run_requests] == ["demo__joe"]
    assert result.run_requests[0].run_key == "voice_models:demo__joe"


def test_external_trainer_without_its_repo_names_what_to_install(tmp_path):
    with pytest.raises(VoiceAssetsError) as err:
        VoiceTrainerResource(backend="gpt-sovits").trainer(None, Layout(tmp_path))
    assert "git clone https://github.com/RVC-Boss/GPT-SoVITS" in str(err.value)
    assert "voice_trainer.repo" in str(err.value)
    with pytest.raises(VoiceAssetsError, match=r"voice_trainer\.command"):
        VoiceTrainerResource(backend="rvc", repo=str(tmp_path)).trainer(None, Layout(tmp_path))


def test_character_keys_are_stable_slugs():
    assert character_key("demo", "Joe") == "demo__joe"
    assert character_key("anime", "Hana Sato") == "anime__hana-sato"


def test_piper_voice_trains_resumes_speaks_and_is_judged(world, tmp_path, monkeypatch):
    """piper's own trainer (tiny model, a few steps: the real phonemiser, data module,
    checkpoint and ONNX export) on Joe's seven train clips, forced below piper's floor."""
    def trainer(steps: int) -> VoiceTrainerResource:
        return VoiceTrainerResource(backend="piper", model_size="tiny", max_steps=steps,
                                    batch_size=4, checkpoint_every=2)

    first = world["train"]("demo__joe", trainer(4), force=True)
    assert first.success
    folder = world["home"] / "voices" / "demo" / "joe" / "piper"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["step"] == 4 and manifest["metadata"]["resumed_from_step"] is None
    second = world["train"]("demo__joe", trainer(8), force=True)
    assert second.success
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["step"] == 8 and manifest["metadata"]["resumed_from_step"] == 4
    row = _read(world["home"], "voice_models").filter(pl.col("key") == "demo__joe").row(
        0, named=True)
    assert row["status"] == "trained" and row["trainer"] == "piper" and row["step"] == 8
    # Judged on Joe's two validation lines: every figure computed, the samples kept. Eight
    # steps of a tiny model say noise, so the figures are recorded, not asserted good.
    assert row["eval_lines"] == 2 and len(row["samples"]) == 2
    assert row["judged_on"] == "validation"
    for name in ("similarity_own", "similarity_other", "wer", "duration_ratio"):
        assert row[name] is not None and np.isfinite(row[name]), name
    quality = _checks(second)["voice_model_quality"]
    assert "similarity_margin" in quality.metadata and "wer" in quality.metadata
    meta = second.asset_materializations_for_node("voice_models")[0].metadata
    assert meta["sample_00"].value.endswith("samples/00.wav")
    assert meta["training"].value.startswith("![losses over steps](data:image/png")
    # The exported voice speaks from the command line.
    out = tmp_path / "hello.wav"
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(world["home"]))
    res = invoke("speak", "--character", "Joe", "Hello there, how are you?", "-o", str(out))
    assert res.exit_code == 0, res.output
    info = sf.info(out)
    assert info.samplerate == 22_050 and 0.2 < info.duration < 30


def test_readiness_counts_every_clip_and_reads_pitch_from_a_sample():
    """A character with 150 train clips: minutes and clips count all of them; pitch is read
    from at most 60, spread over the set."""
    from voice_assets.voices.readiness import figures

    rows = pl.DataFrame({"id": [f"c{i:03d}" for i in range(160)],
                         "split": ["train"] * 150 + ["validation"] * 10,
                         "duration_s": [4.0] * 160, "snr_db": [30.0] * 160,
                         "emotion": ["neutral"] * 160,
                         "audio_path": [f"/clips/c{i:03d}.wav" for i in range(160)]})
    read: list[str] = []
    fig = figures(rows, lambda p: read.append(p) or 100.0 + len(read), pitch_clips=60)
    assert fig.train_clips == 150 and fig.train_minutes == pytest.approx(10.0)
    assert fig.validation_clips == 10
    assert 50 <= len(read) <= 60 and read[0] == "/clips/c000.wav" and read[-1] >= "/clips/c140"
    assert fig.pitch_range_st > 0
