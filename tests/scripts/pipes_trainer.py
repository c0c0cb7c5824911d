"""A stand-in external trainer speaking Dagster Pipes (what an RVC or GPT-SoVITS wrapper does).

It reads the extras voice-assets passes, checks the dataset list, "trains" by counting the
clips' samples for ``max_steps`` steps, resumes from a checkpoint it left in ``output_dir``,
writes a model file there, and reports its figures.
"""

import json
from pathlib import Path

import soundfile as sf
from dagster_pipes import open_dagster_pipes

with open_dagster_pipes() as pipes:
    extras = pipes.extras
    dataset, out = Path(extras["dataset_dir"]), Path(extras["output_dir"])
    lines = (dataset / "train.list").read_text(encoding="utf-8").splitlines()
    seconds = 0.0
    for line in lines:
        path, speaker, language, text = line.split("|", 3)
        assert speaker == extras["character"] and language == extras["language"] and text
        seconds += sf.info(path).duration
    ckpt = out / "checkpoint.json"
    start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    step = int(extras["max_steps"])
    for k in range(start, step, max(1, (step - start) // 4)):
        pipes.log.info(f"step {k}/{step}")
    ckpt.write_text(json.dumps({"step": step}))
    (out / "model.pth").write_bytes(b"stand-in weights")
    pipes.report_asset_materialization(metadata={
        "step": step, "resumed_from": start, "clips": len(lines), "seconds": round(seconds, 2),
        "loss": 1.0 / (1 + step)})
