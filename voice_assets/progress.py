"""Progress reporting shared by domain code: logs in Dagster, bars in the CLI."""

from __future__ import annotations

import logging
from collections.abc import Callable

# progress(stage, done, total): domain loops call it; callers decide how to show it.
Progress = Callable[[str, int, int], None]


def silent(_stage: str, _done: int, _total: int) -> None:
    return None


def logging_progress(
    logger: logging.Logger | logging.LoggerAdapter, every_pct: int = 10
) -> Progress:
    """Log '<stage>: done/total (pct%)' each time another `every_pct` percent is done."""
    last: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        pct = 100 if total <= 0 else int(100 * done / total)
        step = pct // every_pct
        if last.get(stage) == step and done < total:
            return
        last[stage] = step
        logger.info("%s: %d/%d (%d%%)", stage, done, total, pct)

    return report


def tqdm_progress() -> Progress:
    """Terminal progress bars, one per stage, for the CLI (closed when a stage completes)."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=max(total, 1), desc=stage, leave=False)
        bar.total = max(total, 1)
        bar.n = min(done, bar.total)
        bar.refresh()
        if done >= total:
            bar.close()
            del bars[stage]

    return report
