"""The progress bar of a long download: tqdm on stderr, left on screen when done (as torch.hub's), and a resume
shown as bytes already there without counting them in the speed.

Example:
    >>> progress_bar("https://h/w.pt", progress=False) is None
    True
"""

from __future__ import annotations

import os
import sys


def progress_bar(url: str, progress: bool):
    """A tqdm bar on stderr for a download of ``url`` (``None`` without ``progress``); it stays when done."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    name = os.path.basename(url.split("?", 1)[0]) or url
    # the finished bar stays on screen, as torch.hub's does
    return tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=name[:40], file=sys.stderr, leave=True)


def start_bar(bar, total: int | None, offset: int) -> None:
    """Show ``offset`` bytes as already there (a resume) without counting them in the speed: tqdm's rate is
    (n - initial) over the time, and its smoothed rate counts from ``last_print_n``."""
    bar.reset(total=total)
    bar.n = bar.initial = bar.last_print_n = offset
    bar.refresh()
