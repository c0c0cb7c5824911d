"""The voice trainer as a Dagster resource: which trainer builds character voices, and how.

``piper`` (embedded default: VITS trained in its own process, fine-tuned from
``piper-base-<lang>`` when the models dir has it), ``reference`` (zero-shot prompt packs, no
training), ``rvc`` and ``gpt-sovits`` (the projects' own training code, run as an external
process through Dagster Pipes, a subprocess of the step: on Kubernetes the step's own pod,
which asks for a GPU).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from voice_assets.dataset.exports import clean_text, sovits_language
from voice_assets.errors import VoiceAssetsError
from voice_assets.models import get
from voice_assets.paths import Layout
from voice_assets.voices.trainers import (
    Progress,
    ReferenceTrainer,
    TrainedVoice,
    TrainingSet,
    VoiceTrainer,
)

# Where the external trainers come from, for the error that says what to install.
EXTERNAL_REPOS = {
    "rvc": "https://github.com/RVC-Project/Retrieval-based-Voice-Conversion-WebUI",
    "gpt-sovits": "https://github.com/RVC-Boss/GPT-SoVITS",
}


class VoiceTrainerResource(dg.ConfigurableResource):
    """Which trainer builds a character's voice, with its training budget."""

    backend: str = Field(default="piper", description="piper | reference | rvc | gpt-sovits")
    max_steps: int = Field(default=2000, description="Training steps (piper, external)")
    batch_size: int = Field(default=16, description="Training batch size (piper)")
    checkpoint_every: int = Field(default=500, description="Steps between checkpoints (piper)")
    model_size: str = Field(default="medium", description="piper: medium (the published "
                            "voices' size; fine-tunes from piper-base-<lang>) or tiny (tests)")
    base_checkpoint: str | None = Field(
        default=None, description="piper: a checkpoint to fine-tune from (default: the "
        "models dir's piper-base-<lang> when present, else training from scratch)")
    prompts: int = Field(default=5, description="reference: prompts per pack (3-10)")
    repo: str | None = Field(default=None, description="rvc / gpt-sovits: the project's "
                             "checkout, with its base weights in place")
    command: list[str] = Field(default_factory=list, description="rvc / gpt-sovits: the "
                               "training command speaking Dagster Pipes; '{repo}' and "
                               "'{python}' are filled in")
    python: str | None = Field(default=None, description="rvc / gpt-sovits: that project's "
                               "interpreter (default: this one)")

    def trainer(self, context: dg.AssetExecutionContext | None = None,
                layout: Layout | None = None) -> VoiceTrainer:
        try:
            make = BACKENDS[self.backend]
        except KeyError:
            raise ValueError(f"unknown voice trainer '{self.backend}'; choose one of "
                             f"{', '.join(sorted(BACKENDS))}") from None
        return make(self, context, layout or Layout.from_env())


def _reference(res: VoiceTrainerResource, _ctx: Any, _layout: Layout) -> VoiceTrainer:
    return ReferenceTrainer(prompts=min(max(res.prompts, 3), 10))


def _piper(res: VoiceTrainerResource, _ctx: Any, layout: Layout) -> VoiceTrainer:
    from voice_assets.voices.piper import PiperTrainer

    base = Path(res.base_checkpoint) if res.base_checkpoint else None
    return PiperTrainer(max_steps=res.max_steps, batch_size=res.batch_size,
                        checkpoint_every=res.checkpoint_every, model_size=res.model_size,
                        base_checkpoint=base,
                        base_for=lambda lang: _piper_base(layout, lang))


def _piper_base(layout: Layout, language: str | None) -> Path | None:
    """The models dir's base checkpoint for a language, when pulled."""
    try:
        spec = get(f"piper-base-{(language or 'en').split('-')[0]}")
    except KeyError:
        return None
    if not spec.is_present(layout):
        return None
    return next(iter(sorted(spec.path(layout).glob("*.ckpt"))), None)


@dataclass
class PipesTrainer:
    """An external project's training, run as a process that speaks Dagster Pipes.

    The process gets, as Pipes extras: ``dataset_dir`` (``wavs/`` at the source rate plus
    ``train.list``, GPT-SoVITS' ``path|speaker|language|text``), ``output_dir`` (where its
    model files go; checkpoints it leaves there are its to resume from), ``character``,
    ``language`` and ``max_steps``. It reports progress with ``log`` and its figures with
    ``report_asset_materialization(metadata=...)``.
    """

    name: str
    context: dg.AssetExecutionContext | None
    command: list[str]
    repo: Path
    max_steps: int
    needs_text: bool = True
    client: Callable[[], dg.PipesSubprocessClient] = field(default=dg.PipesSubprocessClient)

    def train(self, data: TrainingSet, folder: Path, progress: Progress) -> TrainedVoice:
        if self.context is None:
            raise VoiceAssetsError(f"the {self.name} trainer runs through Dagster Pipes: "
                                   "materialize voice_models from Dagster")
        dataset = folder / "work" / "dataset"
        _write_list(data, dataset)
        out = folder / "model"
        out.mkdir(parents=True, exist_ok=True)
        invocation = self.client().run(
            context=self.context, command=self.command, cwd=str(self.repo),
            extras={"dataset_dir": str(dataset), "output_dir": str(out),
                    "character": data.character, "series": data.series,
                    "language": sovits_language(data.language) or "en",
                    "max_steps": self.max_steps})
        reported: dict[str, Any] = {}
        for result in invocation.get_results():
            reported.update({k: getattr(v, "value", v)
                             for k, v in (result.metadata or {}).items()})
        step = int(reported.get("step", 0) or 0)
        progress({"step": step, **{k: v for k, v in reported.items()
                                   if isinstance(v, int | float)}})
        files = {p.name: str(p.relative_to(folder)) for p in sorted(out.rglob("*"))
                 if p.is_file()}
        return TrainedVoice(self.name, folder, step=step, files=files, metadata=reported)


def _write_list(data: TrainingSet, target: Path) -> None:
    import shutil

    wavs = target / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    lang = sovits_language(data.language) or "en"
    lines = []
    for r in data.train.select("id", "audio_path", "text").iter_rows(named=True):
        dst = wavs / f"{r['id']}.wav"
        if not dst.exists():
            shutil.copyfile(r["audio_path"], dst)
        lines.append(f"{dst}|{data.character}|{lang}|{clean_text(r['text'])}")
    (target / "train.list").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _external(name: str) -> Callable[[VoiceTrainerResource, Any, Layout], VoiceTrainer]:
    def make(res: VoiceTrainerResource, ctx: Any, _layout: Layout) -> VoiceTrainer:
        url = EXTERNAL_REPOS[name]
        if not res.repo or not Path(res.repo).is_dir():
            where = f"'{res.repo}' is not a folder" if res.repo else "voice_trainer.repo is unset"
            raise VoiceAssetsError(
                f"the {name} trainer needs the project's checkout with its base weights "
                f"({where}): git clone {url}, install it and its pretrained models as its "
                "README says, then set voice_trainer.repo to that folder and "
                "voice_trainer.command to its Pipes training command")
        if not res.command:
            raise VoiceAssetsError(
                f"the {name} trainer needs voice_trainer.command: the command that runs "
                f"{name}'s training and speaks Dagster Pipes (see README, 'Voice models')")
        python = res.python or sys.executable
        command = [c.replace("{repo}", res.repo).replace("{python}", python)
                   for c in res.command]
        if len(command) == 1:
            command = shlex.split(command[0])
        return PipesTrainer(name, ctx, command, Path(res.repo), res.max_steps,
                            needs_text=name != "rvc")
    return make


BACKENDS: dict[str, Callable[[VoiceTrainerResource, Any, Layout], VoiceTrainer]] = {
    "piper": _piper,
    "reference": _reference,
    "rvc": _external("rvc"),
    "gpt-sovits": _external("gpt-sovits"),
}

__all__ = ["BACKENDS", "PipesTrainer", "VoiceTrainerResource"]
