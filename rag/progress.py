"""A progress bar for long work (ingesting, evaluating) on stderr, with rate and ETA."""
from __future__ import annotations

import sys
from typing import Callable

from tqdm import tqdm


def progress_bar(desc: str, unit: str = "text") -> tuple[tqdm, Callable[[int, int], None]]:
    """A tqdm bar and an `update(done, total)` callback that library code can report through."""
    bar = tqdm(total=0, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.2 if sys.stderr.isatty() else 5.0)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update
