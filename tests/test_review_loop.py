"""The Label Studio loop against a real server started once for this module.

Tasks are pushed by the real ``review_tasks`` asset, annotations are submitted through the API
as the UI does, the real sensor pulls them back, and the real ``utterances`` asset applies them.
The assets upstream of utterances (episode audio, aligned transcript, diarization, embeddings) and
the dataset assets downstream are small stand-ins with the same keys and table contracts, built
from a scripted episode, so the loop is tested without running the speech models.
"""

import copy
import json
import os
import socket
import stat
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from voice_assets.assets.characters import character_map
from voice_assets.assets.common import episode_asset_kwargs, series_asset_kwargs
from voice_assets.assets.review import review_tasks
from voice_assets.assets.utterances import utterances
from voice_assets.atomic import write_wav
from voice_assets.cli_labelstudio import labelstudio
from voice_assets.faces.tables import FACE_TRACK_SCHEMA, SPEAKING_SCHEMA
from voice_assets.paths import Layout
from voice_assets.resources import default_resources
from voice_assets.resources.diarizer import DiarizerResource
from voice_assets.resources.faces import FaceDetectorResource
from voice_assets.resources.label_studio import API_KEY_ENV, LabelStudioResource
from voice_assets.resources.storage import StorageResource
from voice_assets.review import server
from voice_assets.review.client import ReviewClient
from voice_assets.review.corrections import load_corrections
from voice_assets.review.names import load_confirmed_names
from voice_assets.review.tasks import SPEAKER_NAMING, UTTERANCE_REVIEW
from voice_assets.sensors import headless
from voice_assets.sensors.characters import character_names_sensor
from voice_assets.sensors.corrections import (
    TAG_CORRECTION_IDS,
    label_studio_corrections_sensor,
)
from voice_assets.speech.asr import WORD_DTYPE

pytestmark = pytest.mark.labelstudio

SERIES = "loop"
EP1, EP2 = f"{SERIES}__ep01", f"{SERIES}__ep02"
DURATION = 40.0
RATE = 16_000
# (start, end, voice, subtitle name, text); voice A/B/C are three people.
LINES = [
    (1.0, 2.6, "A", "Alice", "good morning everyone"),
    (3.0, 4.4, "B", "Bob", "morning alice"),
    (4.8, 6.6, "A", "Alice", "did you sleep well"),
    (7.0, 8.5, "B", "Bob", "fine thanks"),
    (9.0, 10.8, "C", None, "the train is late again"),
    (11.2, 12.6, "B", "Alice", "we should walk"),  # the subtitles disagree with diarization
    (30.0, 31.8, "A", "Alice", "let us go then"),
    (32.2, 33.6, "C", None, "wait for me"),
]
VOICE_HZ = {"A": 220.0, "B": 330.0, "C": 495.0}
SPEAKER_OF = {"A": "SPK_00", "B": "SPK_01", "C": "SPK_02"}
SWAPPED = {"A": "SPK_01", "B": "SPK_02", "C": "SPK_00"}  # how another diarization numbers them
VOICE_VECTORS = {
    v: (lambda x: (x / np.linalg.norm(x)).astype(np.float32))(
        np.random.default_rng(i).normal(size=64)
    )
    for i, v in enumerate("ABC")
}


# --------------------------------------------------------------------------- stand-in upstream
class DiarizationConfig(dg.Config):
    shift_s: float = 0.0
    swap: bool = False  # number the speakers as a different diarization model would


def _voice_at(start: float, end: float) -> str:
    best = max(LINES, key=lambda ln: min(end, ln[1]) - max(start, ln[0]))
    return best[2]


@dg.asset(**episode_asset_kwargs)
def episode_audio(context: dg.AssetExecutionContext, storage: StorageResource) -> pl.DataFrame:
    """A 16 kHz WAV with one tone per voice where each line is spoken."""
    t = np.arange(int(DURATION * RATE)) / RATE
    audio = np.zeros_like(t, dtype=np.float32)
    for s, e, voice, _, _ in LINES:
        m = (t >= s) & (t < e)
        audio[m] = 0.2 * np.sin(2 * np.pi * VOICE_HZ[voice] * t[m])
    path = storage.episode_dir(context.partition_key, "episode_audio") / "analysis.wav"
    write_wav(path, audio, RATE)
    return pl.DataFrame(
        [
            {
                "episode": context.partition_key,
                "analysis_path": str(path),
                "dataset_path": str(path),
                "duration_s": DURATION,
                "rms_dbfs": -20.0,
                "silence_ratio": 0.5,
                "loudness_lufs": -23.0,
            }
        ]
    )


@dg.asset(**episode_asset_kwargs)
def aligned_transcript(context: dg.AssetExecutionContext) -> pl.DataFrame:
    rows = []
    for i, (s, e, _, name, text) in enumerate(LINES):
        ws = text.split()
        d = (e - s) / len(ws)
        rows.append(
            {
                "episode": context.partition_key,
                "line": i,
                "start": s,
                "end": e,
                "text": text,
                "words": [
                    {
                        "word": w,
                        "start": round(s + k * d, 3),
                        "end": round(s + (k + 1) * d, 3),
                        "score": 0.9,
                    }
                    for k, w in enumerate(ws)
                ],
                "text_source": "subtitle",
                "kind": "dialogue",
                "name": name,
                "drift_s": 0.0,
                "confidence": 0.9,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"words": pl.List(WORD_DTYPE)})


@dg.asset(**episode_asset_kwargs)
def transcript(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "episode": context.partition_key,
                "start": 0.0,
                "end": DURATION,
                "text": "",
                "words": [],
                "language": "en",
                "avg_logprob": -0.2,
                "no_speech_prob": 0.01,
                "model": "stand-in",
            }
        ],
        schema_overrides={"words": pl.List(WORD_DTYPE)},
    )


@dg.asset(**episode_asset_kwargs)
def face_tracks(context: dg.AssetExecutionContext, storage: StorageResource) -> pl.DataFrame:
    """Stand-in: Alice is on screen (one face track with a review crop, as the real asset
    saves it); nobody else is."""
    import cv2

    crop = storage.episode_dir(context.partition_key, "face_tracks") / "track0001_0.jpg"
    crop.parent.mkdir(parents=True, exist_ok=True)
    face = np.full((64, 64, 3), (60, 120, 200), np.uint8)
    cv2.circle(face, (32, 32), 20, (180, 200, 230), -1)
    crop.write_bytes(cv2.imencode(".jpg", face)[1].tobytes())
    return pl.DataFrame([{"episode": context.partition_key, "track_id": 1, "shot": 0,
                          "start": 0.0, "end": DURATION, "crop_paths": [str(crop)]}],
                        schema=FACE_TRACK_SCHEMA)


@dg.asset(**episode_asset_kwargs)
def speaking_faces(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """Stand-in: Alice's face speaks each of her lines."""
    return pl.DataFrame(
        [{"episode": context.partition_key, "start": s, "end": e, "speaker": SPEAKER_OF[v],
          "track_id": 1, "score": 0.9} for s, e, v, _, _ in LINES if v == "A"],
        schema=SPEAKING_SCHEMA)


@dg.asset(**episode_asset_kwargs)
def diarization(context: dg.AssetExecutionContext, config: DiarizationConfig) -> pl.DataFrame:
    names = SWAPPED if config.swap else SPEAKER_OF
    return pl.DataFrame(
        [
            {
                "episode": context.partition_key,
                "start": s - 0.1 + config.shift_s,
                "end": e + 0.1 + config.shift_s,
                "speaker": names[voice],
                "overlap": False,
                "confidence": 0.45 if i == 4 else 0.9,
            }
            for i, (s, e, voice, _, _) in enumerate(LINES)
        ]
    )


@dg.asset(**episode_asset_kwargs)
def speaker_embeddings(
    context: dg.AssetExecutionContext, diarization: pl.DataFrame
) -> pl.DataFrame:
    """The same voice gets nearly the same centroid in every episode (cosine about 0.97: the
    noise is seeded by the episode, not by Python's per-process string hash, and small enough
    that a voice always links to itself across episodes, at 0.80)."""
    rng = np.random.default_rng(zlib.crc32(context.partition_key.encode()))
    rows = []
    for speaker, turns in diarization.sort("speaker").group_by("speaker", maintain_order=True):
        voice = _voice_at(turns["start"][0], turns["end"][0])
        vec = VOICE_VECTORS[voice] + 0.02 * rng.normal(size=64).astype(np.float32)
        rows.append(
            {
                "episode": context.partition_key,
                "speaker": speaker[0],
                "embedding": (vec / np.linalg.norm(vec)).astype(np.float32).tolist(),
                "dim": 64,
                "model": "stand-in-ge2e",
                "speech_s": 5.0,
                "n_windows": 10,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"embedding": pl.List(pl.Float32)})


# --------------------------------------------------------------------------- stand-in downstream
@dg.asset(**episode_asset_kwargs)
def clips(context: dg.AssetExecutionContext, utterances: pl.DataFrame) -> pl.DataFrame:
    return utterances.select("episode", "id", "speaker", "character", "text")


@dg.asset(**series_asset_kwargs,  # the real automation condition
          ins={"clips": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
def dataset_splits(clips: pl.DataFrame) -> pl.DataFrame:
    return clips.select("episode", "id", "character", pl.lit("train").alias("split"))


ASSETS = [
    episode_audio,
    aligned_transcript,
    transcript,
    diarization,
    speaker_embeddings,
    face_tracks,
    speaking_faces,
    character_map,
    utterances,
    review_tasks,
    clips,
    dataset_splits,
]
UPSTREAM = [
    "episode_audio",
    "aligned_transcript",
    "transcript",
    "diarization",
    "speaker_embeddings",
    "face_tracks",
    "speaking_faces",
    "character_map",
    "utterances",
]


# --------------------------------------------------------------------------- the server
@pytest.fixture(scope="session")
def ls_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real Label Studio (installed into its own venv if needed) on a free loopback port."""
    home = tmp_path_factory.mktemp("review-home")
    started = time.monotonic()
    try:
        st = server.up(home, port=server.free_port(), timeout_s=600)
    except Exception as exc:
        server.down(home)
        pytest.fail(
            f"Label Studio could not be installed or started for the review tests: {exc}",
            pytrace=False,
        )
    print(f"\nLabel Studio up at {st.url} in {time.monotonic() - started:.0f} s")
    yield home
    server.down(home)
    assert not server.status(home).running


class Loop:
    """One $VOICE_ASSETS_HOME, one Dagster instance and one Label Studio for the module."""

    def __init__(self, home: Path, instance: dg.DagsterInstance, io_manager: Any) -> None:
        self.home = home
        self.io_manager = io_manager
        self.layout = Layout(home)
        self.instance = instance
        self.token = server.read_token(home)
        self.url = server.status(home).url
        self.cursor: str | None = None
        self.texts: list[str] = []  # every sensor message and tag, scanned for the token

    def resources(self, **ls: Any) -> dict[str, Any]:
        return {
            "io_manager": self.io_manager,
            "storage": StorageResource(home=str(self.home)),
            "diarizer": DiarizerResource(),
            "face_detector": FaceDetectorResource(),
            "label_studio": LabelStudioResource(
                home=str(self.home), api_key=dg.EnvVar(API_KEY_ENV), **ls
            ),
        }

    @property
    def client(self) -> ReviewClient:
        return ReviewClient(self.url, self.token)

    def materialize(
        self,
        episode: str,
        selection: list[str] | None = None,
        run_config: dict | None = None,
        tags: dict | None = None,
    ) -> dg.ExecuteInProcessResult:
        if not self.instance.has_dynamic_partition("episodes", episode):
            self.instance.add_dynamic_partitions("episodes", [episode])
        result = dg.materialize(
            ASSETS,
            selection=selection,
            partition_key=episode,
            instance=self.instance,
            resources=self.resources(),
            run_config=run_config,
            tags=tags,
            raise_on_error=False,
        )
        failures = [
            e.step_failure_data.error.to_string()
            for e in result.all_events
            if e.is_step_failure and e.step_failure_data.error
        ]
        assert result.success, "\n".join(failures)
        return result

    def tick(self, cursor: str | None = None, **ls: Any) -> dg.SensorResult | dg.SkipReason:
        defs = dg.Definitions(
            assets=ASSETS, sensors=[label_studio_corrections_sensor], resources=self.resources(**ls)
        )
        with dg.build_sensor_context(
            instance=self.instance, cursor=cursor, definitions=defs, resources=self.resources(**ls)
        ) as ctx:
            result = label_studio_corrections_sensor(ctx)
        if isinstance(result, dg.SkipReason):
            self.texts.append(result.skip_message or "")
        else:
            self.texts.append(json.dumps([dict(r.tags) for r in result.run_requests or []]))
            if result.skip_reason:
                self.texts.append(result.skip_reason.skip_message or "")
            self.texts.append(result.cursor or "")
        return result

    def automation(self, cursor: Any = None) -> tuple[list[str], Any]:
        """The assets the real series automation condition requests now (and its cursor)."""
        result = dg.evaluate_automation_conditions(
            defs=dg.Definitions(assets=ASSETS, resources=self.resources()),
            instance=self.instance, cursor=cursor)
        keys = sorted(k.to_user_string() for r in result.results if r.true_subset.size
                      for k in [r.key])
        return keys, result.cursor

    def materialize_series(self, selection: list[str]) -> None:
        result = dg.materialize(ASSETS, selection=selection, instance=self.instance,
                                resources=self.resources(), raise_on_error=False)
        assert result.success

    def names_tick(self) -> dg.SensorResult | dg.SkipReason:
        defs = dg.Definitions(
            assets=ASSETS, sensors=[character_names_sensor], resources=self.resources()
        )
        with dg.build_sensor_context(
            instance=self.instance, definitions=defs, resources=self.resources()
        ) as ctx:
            return character_names_sensor(ctx)

    def table(self, name: str, episode: str | None = None) -> pl.DataFrame:
        with duckdb.connect(str(self.layout.database)) as con:
            cat = con.execute("select current_database()").fetchall()[0][0]
            sql = f'select * from "{cat}".voice_assets.{name}'
            if episode:
                sql += f" where episode = '{episode}'"
            return pl.from_arrow(con.sql(sql).to_arrow_table())

    def project(self, kind: str) -> int:
        return next(p.id for p in self.client.projects() if p.kind == kind and p.series == SERIES)

    def tasks(self, kind: str, episode: str) -> list[dict[str, Any]]:
        return sorted(self.client.episode_tasks(self.project(kind), episode), key=lambda t: t["id"])

    def annotate(self, task: dict[str, Any], result: list[dict[str, Any]]) -> int:
        """Submit an annotation through the API the way the UI does (copy of the prediction)."""
        clean = [{k: v for k, v in r.items() if k != "origin"} for r in result]
        ann = self.client.call(
            "create annotation",
            lambda: self.client._sdk.annotations.create(task["id"], result=clean, lead_time=12.5),
        )
        return int(ann.id)


@pytest.fixture(scope="module")
def loop(ls_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(API_KEY_ENV, server.read_token(ls_home))
        io_manager = default_resources(Layout(ls_home))["io_manager"]  # the project's own
        storage_dir = tmp_path_factory.mktemp("dagster-instance")
        with dg.instance_for_test(temp_dir=str(storage_dir)) as instance:
            lp = Loop(ls_home, instance, io_manager)
            lp.storage_dir = storage_dir  # type: ignore[attr-defined]
            yield lp


@pytest.fixture(scope="module")
def pushed(loop: Loop) -> Loop:
    """Episode 1 materialized up to review_tasks."""
    started = time.monotonic()
    loop.materialize(EP1, selection=[*UPSTREAM, "review_tasks"])
    print(f"\nepisode pushed in {time.monotonic() - started:.1f} s")
    return loop


def _turn_task(loop: Loop, episode: str, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for task in loop.tasks(UTTERANCE_REVIEW, episode):
        for turn in task["data"]["turns"]:
            if turn["text"] == text:
                return task, turn
    raise AssertionError(f"no task with the turn '{text}'")


# --------------------------------------------------------------------------- tests
def test_server_files_are_private_and_cli_reports_status(
    ls_home: Path, monkeypatch: pytest.MonkeyPatch
):
    sf = server.files(ls_home)
    for secret in (sf.token_file, sf.password_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    monkeypatch.setenv("VOICE_ASSETS_HOME", str(ls_home))
    runner = CliRunner()
    out = runner.invoke(labelstudio, ["status"])
    assert out.exit_code == 0, out.output
    assert "is up at http://127.0.0.1:" in out.output
    started = time.monotonic()
    port = str(server.status(ls_home).url).rsplit(":", 1)[1]
    again = runner.invoke(labelstudio, ["up", "--port", port])
    assert again.exit_code == 0, again.output
    assert time.monotonic() - started < 10  # already running: reused, not restarted
    assert server.read_token(ls_home) not in out.output + again.output
    assert str(sf.token_file) in again.output


def test_push_tasks_and_read_them_back_with_predictions(pushed: Loop):
    loop = pushed
    table = loop.table("review_tasks", EP1)
    utter = table.filter(pl.col("kind") == UTTERANCE_REVIEW)
    tasks = loop.tasks(UTTERANCE_REVIEW, EP1)
    assert len(tasks) == utter.height >= 2
    assert sorted(t["id"] for t in tasks) == sorted(utter["task_id"].to_list())
    turns = [turn for t in tasks for turn in t["data"]["turns"]]
    assert sorted(tn["text"] for tn in turns) == sorted(ln[4] for ln in LINES)
    for task in tasks:
        assert len(task["predictions"]) == 1
        pred = task["predictions"][0]
        assert pred["model_version"].startswith("voice-assets ")
        assert "stand-in-ge2e" in pred["model_version"]
        regions = {r["id"] for r in pred["result"] if r["from_name"] == "speaker"}
        assert regions == {tn["region"] for tn in task["data"]["turns"]}
        texts = {
            r["id"]: r["value"]["text"][0] for r in pred["result"] if r["from_name"] == "transcript"
        }
        assert texts == {tn["region"]: tn["text"] for tn in task["data"]["turns"]}
    # Active-learning order: the disagreeing turn is in the first task of the queue, whose
    # prediction score is the lowest (Label Studio's uncertainty sampling serves it first).
    first = tasks[0]
    assert "we should walk" in [tn["text"] for tn in first["data"]["turns"]]
    assert first["predictions"][0]["score"] == min(t["predictions"][0]["score"] for t in tasks)
    # One speaker-naming task per diarization speaker.
    naming = loop.tasks(SPEAKER_NAMING, EP1)
    assert sorted(t["data"]["speaker"] for t in naming) == ["SPK_00", "SPK_01", "SPK_02"]
    # The naming task shows the face that speaks with the voice, served by Label Studio.
    faces = {t["data"]["speaker"]: t["data"]["faces"] for t in naming}
    assert faces["SPK_01"] == faces["SPK_02"] == "<i>No face on screen speaks with this voice.</i>"
    src = faces["SPK_00"].split('src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert src.startswith("/data/local-files/?d=episodes/") and src.endswith("track0001_0.jpg")
    req = urllib.request.Request(loop.url + src,
                                 headers={"Authorization": f"Token {loop.token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read()[:3] == b"\xff\xd8\xff"  # the JPEG crop
    # Audio is served by Label Studio's local-files storage.
    req = urllib.request.Request(
        loop.url + first["data"]["audio"], headers={"Authorization": f"Token {loop.token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    assert body[:4] == b"RIFF" and len(body) > RATE  # > 0.5 s of 16-bit audio

    # A re-run updates the same tasks in place: same ids, no duplicates.
    before = {t["id"] for t in tasks} | {t["id"] for t in naming}
    result = loop.materialize(EP1, selection=["review_tasks"])
    after = {t["id"] for t in loop.tasks(UTTERANCE_REVIEW, EP1)} | {
        t["id"] for t in loop.tasks(SPEAKER_NAMING, EP1)
    }
    assert after == before
    md = result.asset_materializations_for_node("review_tasks")[0].metadata["sync"].value
    assert "| 0 | " in md and "created" in md
    assert all(f"| {kind} | " in md for kind in (UTTERANCE_REVIEW, SPEAKER_NAMING))


def test_correction_flows_back_and_survives_rerun(pushed: Loop):
    loop = pushed
    baseline = loop.tick(loop.cursor)  # nothing annotated yet
    assert isinstance(baseline, dg.SensorResult) and not baseline.run_requests
    loop.cursor = baseline.cursor

    # A person fixes a word of Bob's line and renames speaker SPK_01 (whom the subtitles
    # call Bob) "Robert".
    task, turn = _turn_task(loop, EP1, "fine thanks")
    result = copy.deepcopy(task["predictions"][0]["result"])
    for item in result:
        if item["id"] == turn["region"] and item["from_name"] == "transcript":
            item["value"]["text"] = ["fine, thank you"]
    fix_id = loop.annotate(task, result)
    naming = next(t for t in loop.tasks(SPEAKER_NAMING, EP1) if t["data"]["speaker"] == "SPK_01")
    name_id = loop.annotate(
        naming,
        [
            {
                "id": "name",
                "from_name": "name",
                "to_name": "audio",
                "type": "textarea",
                "value": {"text": ["Robert"]},
            },
            {
                "id": "cluster",
                "from_name": "cluster",
                "to_name": "audio",
                "type": "choices",
                "value": {"choices": ["one character"]},
            },
        ],
    )

    started = time.monotonic()
    tick = loop.tick(loop.cursor)
    tick_s = time.monotonic() - started
    assert isinstance(tick, dg.SensorResult), tick
    corr = load_corrections(loop.layout.database, EP1)
    got = {
        (r["field"], r["old_value"], r["new_value"], r["annotation_id"])
        for r in corr.iter_rows(named=True)
    }
    assert got == {
        ("text", "fine thanks", "fine, thank you", fix_id),
        ("speaker_name", "Bob", "Robert", name_id),
    }
    text_row = corr.filter(pl.col("field") == "text").row(0, named=True)
    assert text_row["utterance_id"] == f"{EP1}_00007000"
    assert (text_row["start"], text_row["end"]) == (7.0, 8.5)
    assert text_row["annotator"] == server.ADMIN_USERNAME
    assert text_row["task_id"] == task["id"] and text_row["annotated_at"] is not None
    # One run for just this episode: utterances and the partitioned assets below it, for the
    # text fix (the name reaches utterances through the character map, below).
    [request] = tick.run_requests
    assert request.partition_key == EP1
    assert sorted(k.to_user_string() for k in request.asset_selection) == ["clips", "utterances"]
    assert request.tags[TAG_CORRECTION_IDS] == corr.filter(pl.col("field") == "text")[
        "correction_id"
    ].item()
    assert {e.asset_key.to_user_string() for e in tick.asset_events} == {
        "corrections",
        "speaker_names",
    }
    assert tick_s < 10
    # Confirmed name kept per series with the voice's embedding.
    named = load_confirmed_names(loop.layout.database, SERIES)
    assert named.select("episode", "speaker", "name", "scope").rows() == [
        (EP1, "SPK_01", "Robert", "voice")
    ]
    assert len(named["embedding"][0]) == 64
    loop.cursor = tick.cursor

    # The requested run applies the corrections.
    loop.materialize(
        EP1,
        selection=[k.to_user_string() for k in request.asset_selection],
        tags=dict(request.tags),
    )
    utt = loop.table("utterances", EP1)
    fixed = utt.filter(pl.col("id") == f"{EP1}_00007000").row(0, named=True)
    assert fixed["text"] == "fine, thank you" and fixed["text_source"] == "human"
    assert "fine, thank you" in loop.table("clips", EP1)["text"].to_list()
    # The name changes the character map: the character sensor asks for this episode only.
    names_tick = loop.names_tick()
    assert isinstance(names_tick, dg.SensorResult)
    [remap] = names_tick.run_requests
    assert remap.partition_key == EP1
    assert sorted(k.to_user_string() for k in remap.asset_selection) == [
        "character_map",
        "clips",
        "utterances",
    ]
    loop.materialize(EP1, selection=[k.to_user_string() for k in remap.asset_selection])
    utt = loop.table("utterances", EP1)
    spk01 = utt.filter(pl.col("speaker") == "SPK_01")
    assert set(spk01["character"]) == {"Robert"} and set(spk01["character_source"]) == {"human"}
    # Alice is named by her subtitle lines; voice C has no name anywhere: a series voice.
    assert set(utt.filter(pl.col("speaker") == "SPK_00")["character"]) == {"Alice"}
    assert set(utt.filter(pl.col("speaker") == "SPK_02")["character"]) == {"voice-03"}
    assert isinstance(loop.names_tick(), dg.SkipReason)

    # The episode runs are done: the series outputs' automation condition asks for one rebuild,
    # and the corrections sensor itself requests nothing more.
    requested, cursor = loop.automation()
    assert requested == ["dataset_splits"]
    loop.materialize_series(requested)
    assert loop.automation(cursor)[0] == []
    quiet = loop.tick(loop.cursor)
    assert isinstance(quiet, dg.SensorResult) and not quiet.run_requests
    assert "no new annotations" in quiet.skip_reason.skip_message
    loop.cursor = quiet.cursor

    # Re-running the models (diarization renumbers the speakers, turns move 40 ms) and
    # utterances never overwrites the human labels.
    loop.materialize(
        EP1,
        selection=["diarization", "speaker_embeddings", "character_map", "utterances"],
        run_config={"ops": {"diarization": {"config": {"shift_s": 0.04, "swap": True}}}},
    )
    utt = loop.table("utterances", EP1)
    assert utt.filter(pl.col("id") == f"{EP1}_00007000")["text"].item() == "fine, thank you"
    bob = utt.filter(pl.col("character") == "Robert")
    assert set(bob["speaker"]) == {"SPK_02"}  # Bob's voice under its new id
    assert sorted(bob["text"]) == sorted(["morning alice", "fine, thank you", "we should walk"])


def test_confirmed_names_pre_annotate_the_next_episode(pushed: Loop):
    loop = pushed
    if load_confirmed_names(loop.layout.database, SERIES).is_empty():
        pytest.fail("needs the name given in test_correction_flows_back_and_survives_rerun")
    loop.materialize(EP2, selection=[*UPSTREAM, "review_tasks"])
    naming = {t["data"]["speaker"]: t for t in loop.tasks(SPEAKER_NAMING, EP2)}
    bob = naming["SPK_01"]
    pred = bob["predictions"][0]["result"]
    # The person's name for the voice outranks episode 2's own subtitles ("Bob").
    assert {"Robert"} == {r["value"]["text"][0] for r in pred if r["from_name"] == "name"}
    assert "currently Robert from human-voice" in bob["data"]["hint"]
    assert naming["SPK_00"]["data"]["predicted_name"] == "Alice"  # from the subtitles
    assert naming["SPK_02"]["data"]["predicted_name"] is None
    assert "series voice voice-03" in naming["SPK_02"]["data"]["hint"]
    # The series' characters are offered in the next episode's review tasks.
    task = loop.tasks(UTTERANCE_REVIEW, EP2)[0]
    offered = [c["value"] for c in task["data"]["characters"]]
    assert offered == ["Alice", "Robert", "voice-03"]


def test_server_down_then_recovery_loses_nothing(pushed: Loop):
    loop = pushed
    settled = loop.tick(loop.cursor)
    assert isinstance(settled, dg.SensorResult)
    loop.cursor = settled.cursor
    task, turn = _turn_task(loop, EP1, "the train is late again")
    result = copy.deepcopy(task["predictions"][0]["result"])
    result.append(
        {
            "id": turn["region"],
            "from_name": "emotion",
            "to_name": "audio",
            "type": "choices",
            "value": {
                "start": turn["start"] - task["data"]["offset"],
                "end": turn["end"] - task["data"]["offset"],
                "channel": 0,
                "choices": ["angry"],
            },
        }
    )
    ann_id = loop.annotate(task, result)
    port = int(loop.url.rsplit(":", 1)[1])

    assert server.down(loop.home)
    down = loop.tick(loop.cursor)
    assert isinstance(down, dg.SkipReason)
    assert "is down" in down.skip_message and "Cursor unchanged" in down.skip_message
    assert (
        load_corrections(loop.layout.database, EP1)
        .filter(pl.col("annotation_id") == ann_id)
        .is_empty()
    )
    # Pushing tasks meanwhile fails with a message that says what to do.
    push = dg.materialize(
        ASSETS,
        selection=["review_tasks"],
        partition_key=EP1,
        instance=loop.instance,
        resources=loop.resources(),
        raise_on_error=False,
    )
    assert not push.success
    error = next(e.step_failure_data.error for e in push.all_events if e.is_step_failure)
    assert "is down" in error.to_string() and "voice-assets labelstudio up" in error.to_string()

    started = time.monotonic()
    server.up(loop.home, port=port, timeout_s=300)
    print(f"\nwarm restart {time.monotonic() - started:.1f} s")
    back = loop.tick(loop.cursor)  # the same cursor as before the outage
    assert isinstance(back, dg.SensorResult)
    rows = load_corrections(loop.layout.database, EP1).filter(pl.col("annotation_id") == ann_id)
    assert rows.select("field", "old_value", "new_value").rows() == [("emotion", None, "angry")]
    assert [r.partition_key for r in back.run_requests] == [EP1]
    loop.cursor = back.cursor


def test_corrections_pull_headless_records_and_reruns(pushed: Loop, tmp_path: Path):
    """`voice-assets corrections pull` ticks the same sensor once without the daemon: the
    'angry' label given while the server was down lands in utterances by a run executed here,
    and a second pull finds nothing new."""
    loop = pushed
    defs = dg.Definitions(assets=ASSETS, sensors=[label_studio_corrections_sensor],
                          resources=loop.resources())
    cursors = tmp_path / "cursors.json"
    first = headless.tick(defs, loop.instance, "label_studio_corrections_sensor", cursors)
    assert first.skipped is None and first.ok, first
    assert EP1 in [episode for episode, _, _ in first.runs]
    run_ids = [run_id for episode, run_id, _ in first.runs if episode == EP1]
    assert loop.instance.get_run_by_id(run_ids[0]).status == dg.DagsterRunStatus.SUCCESS
    utt = loop.table("utterances", EP1)
    late = utt.filter(pl.col("text") == "the train is late again").row(0, named=True)
    assert late["emotion"] == "angry", late
    second = headless.tick(defs, loop.instance, "label_studio_corrections_sensor", cursors)
    assert not second.runs and "no new annotations" in (second.skipped or ""), second


def test_unauthorized_and_slow_server_skip_without_moving(pushed: Loop):
    loop = pushed
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(API_KEY_ENV, "not-the-token-0123456789")
        refused = loop.tick(loop.cursor)
    assert isinstance(refused, dg.SkipReason)
    assert "refuses our API token (HTTP 401)" in refused.skip_message
    assert "Cursor unchanged" in refused.skip_message

    # A server that accepts connections but never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        slow = loop.tick(
            loop.cursor, url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1.0
        )
    finally:
        silent.close()
    assert isinstance(slow, dg.SkipReason)
    assert "is slow" in slow.skip_message and "timed out after 1 s" in slow.skip_message


def test_token_appears_in_no_log_config_or_metadata(
    pushed: Loop, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
):
    loop = pushed
    token = loop.token
    with caplog.at_level("DEBUG"):
        loop.materialize(EP1, selection=["review_tasks"])
        loop.tick(loop.cursor)
    out, err = capfd.readouterr()
    haystack = [out, err, caplog.text, *loop.texts]
    for run in loop.instance.get_runs():
        haystack.append(json.dumps(run.run_config, default=str))
        haystack.append(json.dumps(dict(run.tags)))
        for entry in loop.instance.all_logs(run.run_id):
            haystack.append(dg.serialize_value(entry))
    assert len(loop.instance.get_runs()) >= 5
    # Every file the Dagster instance wrote (event log, run storage, compute logs) ...
    for path in Path(loop.storage_dir).rglob("*"):  # type: ignore[attr-defined]
        if path.is_file():
            haystack.append(path.read_bytes().decode("latin-1"))
    # ... the server's own log, the DuckDB tables and the tasks' data.
    haystack.append(server.files(loop.home).log_file.read_text())
    for name in ("review_tasks", "corrections", "speaker_names", "utterances"):
        haystack.append(loop.table(name).write_json())
    haystack.append(json.dumps(loop.tasks(UTTERANCE_REVIEW, EP1), default=str))
    assert all(isinstance(h, str) for h in haystack)
    leaks = [h[:200] for h in haystack if token in h]
    assert not leaks
    assert os.environ.get(API_KEY_ENV) == token  # the runs really authenticated with it


@pytest.mark.slow
def test_demo_episode_through_the_real_pipeline_to_review_tasks(loop: Loop, demo_episode):
    """The generated demo episode, run by the real models, lands as pre-annotated tasks."""
    import shutil

    from voice_assets.definitions import all_assets, defs
    from voice_assets.partitions import episode_key

    folder = loop.layout.inbox / "Demo"
    folder.mkdir(parents=True, exist_ok=True)
    for path in (demo_episode.video, demo_episode.subtitles):
        shutil.copy2(path, folder / Path(path).name)
    key = episode_key("Demo", Path(demo_episode.video).stem)
    loop.instance.add_dynamic_partitions("episodes", [key])
    graph = defs.resolve_asset_graph()
    selection = dg.AssetSelection.assets("review_tasks").upstream().resolve(graph)
    resources = {**default_resources(loop.layout), **loop.resources()}
    result = dg.materialize(all_assets, selection=list(selection), partition_key=key,
                            instance=loop.instance, resources=resources, raise_on_error=False)
    assert result.success, [e.event_specific_data for e in result.all_events if e.is_failure]

    utter = loop.table("utterances", key)
    series = next(p for p in loop.client.projects() if p.kind == UTTERANCE_REVIEW
                  and p.series == "demo")
    tasks = loop.client.episode_tasks(series.id, key)
    turns = [turn for t in tasks for turn in t["data"]["turns"]]
    assert len(turns) == utter.height >= 15
    assert sorted(tn["text"] for tn in turns) == sorted(utter["text"].to_list())
    for task in tasks:
        (pred,) = task["predictions"]
        assert pred["model_version"].startswith("voice-assets ")
        assert {r["id"] for r in pred["result"] if r["from_name"] == "speaker"} == {
            tn["region"] for tn in task["data"]["turns"]}
    naming = next(p for p in loop.client.projects() if p.kind == SPEAKER_NAMING
                  and p.series == "demo")
    speakers = {t["data"]["speaker"] for t in loop.client.episode_tasks(naming.id, key)}
    assert len(speakers) == len(demo_episode.characters)
