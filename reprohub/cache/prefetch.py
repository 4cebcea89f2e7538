"""Start a locked repo's pinned downloads while its archive downloads and extracts.

A locked run knows, before the first byte, each repo's commit and -- from the repo's
``artifacts`` in the lock -- the weight URLs its entrypoints downloaded when the lock was recorded,
with their digests.  When a locked commit has to be extracted (a cold cache), the Hub hands those
to a :class:`Prefetcher`, which downloads them on a few threads through the same
:class:`~reprohub.cache.store.ArtifactStore` the entrypoint uses: the same per-file locks, the same
check against the pinned digest, the same sidecar records and mirrors.  When the entrypoint then
asks for one, :meth:`Prefetcher.wait` waits for that download (a handoff, no lock polling) and the
store finds the file in place.  A cold locked load then pays one round trip for its requests,
not one per file, on top of the longest transfer.

What cannot change:

* **Verification.** A prefetch is an ordinary cache fill, checked against the pin before it is
  renamed into place; a file the lock does not pin is never prefetched.
* **Errors.** A failed prefetch is only logged, and never marks its host as gone.  The entrypoint's own request then runs as if
  nothing had been prefetched (retries, the error naming the URL, the pinned-item hint).
* **Records.** A prefetch records no use: a URL counts as used when code asks for it, so the
  unused-entry report is the same as without prefetching.
* **Unlocked loads and recording runs** never prefetch (the Hub asks only in check mode).

Downloads run on daemon threads, so a process may exit with one in flight: its partial file is
left as a killed download's is (:mod:`reprohub.fetch.partial`).  ``REPROHUB_PREFETCH`` sets how many
run at once (default 4; 0 turns prefetching off).

Example:
    >>> from reprohub.fetch.download import Downloader
    >>> prefetcher = Prefetcher(ArtifactStore(Downloader()), workers=2)
    >>> prefetcher.start([Prefetch(weights_url, Path(tmp) / "w.pt", weights_sha256)])
    1
    >>> prefetcher.wait(Path(tmp) / "w.pt"); (Path(tmp) / "w.pt").stat().st_size > 0
    True
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .. import settings
from ..fetch.download import Downloaded
from ..fetch.hosts import failures_not_remembered
from .store import ArtifactStore

log = logging.getLogger("reprohub")
DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class Prefetch:
    """One pinned download to start early: into ``path`` (the cache's place for ``url``), checked against ``sha256``;
    ``prefill`` as :meth:`ArtifactStore.ensure` takes it (the mirrors)."""

    url: str
    path: Path
    sha256: str
    prefill: "Callable[[Path, bool], Downloaded | None] | None" = None


class Prefetcher:
    """Pinned downloads running in the background, at most ``workers`` at once (default ``REPROHUB_PREFETCH``, 4)."""

    def __init__(self, store: ArtifactStore, workers: int | None = None) -> None:
        self.store = store
        self.workers = int(settings.read_number(settings.PREFETCH, DEFAULT_WORKERS)) if workers is None else workers
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._running: dict[str, Future] = {}
        self._threads = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def start(self, items: Iterable[Prefetch]) -> int:
        """Queue each download not already started; return how many were queued (0 when turned off)."""
        if self.workers <= 0:
            return 0
        started = 0
        with self._lock:
            self._after_fork()
            for item in items:
                key = os.fspath(item.path)
                if key in self._running:
                    continue
                self._running[key] = future = Future()
                self._jobs.put((item, future))
                started += 1
            for _ in range(min(self.workers, self._threads + started) - self._threads):
                threading.Thread(target=self._work, name="reprohub-prefetch", daemon=True).start()
                self._threads += 1
        if started:
            log.info("prefetching %d pinned file%s", started, "" if started == 1 else "s")
        return started

    def wait(self, path: "str | os.PathLike[str]") -> None:
        """Wait for the prefetch of ``path``, if one was started; its failure is left to the caller's own fetch."""
        if not self._running:  # the common case: nothing prefetched, no lock taken
            return
        with self._lock:
            future = self._running.pop(os.fspath(path), None)
        if future is not None:
            future.exception()  # waits; an error was logged, and the caller's own request meets it again

    def _work(self) -> None:
        while True:
            item, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with failures_not_remembered():  # a host down for a moment stays the load's to ask
                    got = self.store.ensure(item.url, item.path, expected_sha256=item.sha256, progress=False,
                                            prefill=item.prefill)
            except BaseException as err:  # noqa: BLE001 -- handed to the waiter, never lost
                log.info("prefetch of %s did not complete (%s); it is fetched again when asked for", item.url, err)
                future.set_exception(err)
            else:
                future.set_result(got)

    def _after_fork(self) -> None:
        """A forked child has none of its parent's threads: start afresh (queued work stays the parent's)."""
        if self._pid != os.getpid():
            self._pid, self._threads, self._running, self._jobs = os.getpid(), 0, {}, queue.SimpleQueue()
