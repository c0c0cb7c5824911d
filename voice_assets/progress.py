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
