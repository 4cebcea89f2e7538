"""``reprohub bench SPEC ENTRY``: what a cold and a warm load of *your* entrypoint cost, here.

A cold load uses a fresh, empty hub dir each time (resolve, download, extract, import, call); a warm
load reuses one filled hub dir (one process-level import cache is cleared between runs, so each load
re-imports the hubconf as a new process would).  Requests are counted at the HTTP session.

Example:
    >>> lines = bench_load("acme/tiny:v1", "tiny_mlp", repeat=2, trust_repo=True)
    >>> lines[0].startswith("cold load of acme/tiny:v1 tiny_mlp")
    True
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

from ..hub import Hub
from ..runtime.hubconf import forget_repo


def bench_load(spec: str, model: str, repeat: int = 5, **load_kwargs: Any) -> list[str]:
    """Medians of ``repeat`` cold and ``repeat`` warm loads, as report lines."""
    cold, cold_requests = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="reprohub-bench-") as fresh:
            seconds, requests = _timed_load(Hub(hub_dir=fresh), spec, model, load_kwargs)
        cold.append(seconds)
        cold_requests.append(requests)
    warm, warm_requests = [], []
    with tempfile.TemporaryDirectory(prefix="reprohub-bench-") as shared:
        _timed_load(Hub(hub_dir=shared), spec, model, load_kwargs)  # fill it
        for _ in range(repeat):
            seconds, requests = _timed_load(Hub(hub_dir=shared), spec, model, load_kwargs)
            warm.append(seconds)
            warm_requests.append(requests)
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    return [
        f"cold load of {spec} {model}: median {cold_s * 1000:.1f} ms over {repeat} runs, "
        f"{_requests(max(cold_requests))}",
        f"warm load of {spec} {model}: median {warm_s * 1000:.1f} ms over {repeat} runs, "
        f"{_requests(max(warm_requests))}",
        f"warm is {cold_s / warm_s:.1f}x faster than cold" if warm_s else "warm load took no measurable time",
    ]


def _requests(count: int) -> str:
    return f"{count} HTTP request{'s' * (count != 1)}"


def _timed_load(hub: Hub, spec: str, model: str, load_kwargs: dict) -> tuple[float, int]:
    sent = []
    original = hub.downloader.session.request

    def counting(method, url, *args, **kwargs):
        sent.append(url)
        return original(method, url, *args, **kwargs)

    hub.downloader.session.request = counting
    start = time.perf_counter()
    hub.load(spec, model, verbose=False, **load_kwargs)
    seconds = time.perf_counter() - start
    if hub.last_repo is not None:
        forget_repo(hub.last_repo.path)  # the next load imports the hubconf again, as a new process would
    return seconds, len(sent)
