"""Time the GPU profile where there is a GPU and no network: every model the profile loads at
its published size with random weights (the compute of the real ones), on a generated episode.

    VOICE_ASSETS_PROFILE=gpu scripts/setup.sh
    .venv-gpu/bin/python tests/scripts/gpu_bench.py --minutes 10 --out bench-gpu.json

Prints `voice-assets bench --profile gpu`'s report (per-stage RTF, load time, peak RSS and
peak GPU memory) and writes its JSON. Random weights make the outputs meaningless: read the
times and memory, not the counts. With real weights (`models pull --profile gpu`), run
`voice-assets bench --profile gpu` instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: random_models

# Generated episodes of about 1, 10 and 24 minutes (the CPU profile's bench episodes).
EPISODES = {
    1: dict(series="demo", name="Episode 01", seed=0, index=1),
    10: dict(series="bench", name="Long 01", seed=3, index=1, turns=190, interjections=30,
             overlaps=12),
    24: dict(series="bench", name="Long 02", seed=5, index=2, turns=470, interjections=70,
             overlaps=30),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, choices=sorted(EPISODES), default=10)
    parser.add_argument("--out", type=Path, default=Path("bench-gpu.json"))
    parser.add_argument("--small", action="store_true",
                        help="shrunken models (tiny.en for Whisper): check the script on a CPU")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="voice-assets-gpu-bench-"))
    os.environ["VOICE_ASSETS_HOME"] = str(home)
    os.environ.pop("VOICE_ASSETS_MODELS", None)
    import random_models

    from voice_assets import bench
    from voice_assets.paths import Layout
    from voice_assets.synth import EpisodeSpec, cached_episode

    t0 = time.perf_counter()
    made = random_models.gpu_profile_models(Layout(home), full=not args.small)
    print(f"built {', '.join(made)} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    episode = cached_episode(EpisodeSpec(**EPISODES[args.minutes]))
    report = bench.run_benchmark(Path(episode.video), Path(episode.subtitles), profile="gpu")
    print(bench.format_table(report))
    args.out.write_text(report.to_json())
    print(f"JSON: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
