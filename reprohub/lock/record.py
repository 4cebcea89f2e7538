"""What a Hub used: repos at commits and downloaded artifacts, for the lockfile.

Example:
    >>> rec = Recorder()
    >>> rec.add_artifact(ArtifactUse("https://h/w.pt", "ab" * 32, 10))
    >>> [a.url for a in rec.artifacts()]
    ['https://h/w.pt']
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Protocol


@dataclass(frozen=True)
class RepoUse:
    """One repo used at one commit.

    ``spec`` is what was asked (``owner/repo:ref``), ``host`` the API base URL or
    Git remote, ``tree_sha256`` the digest of the extracted files (version 2) and
    ``legacy_tree_sha256`` its version-1 digest, by which a lock written before still names it.
    """

    spec: str
    host: str
    commit: str
    tree_sha256: str
    legacy_tree_sha256: str | None = None
    path: str = ""  # the extracted tree (where a recording lock computes its SWHID)
    via: str = ""  # where the code came from when that was not the cache, a mirror or the origin


@dataclass(frozen=True)
class ArtifactUse:
    """One file downloaded (or found cached) while repo code ran; ``fetched_by``: the spec of the repo
    whose entrypoint downloaded it into the cache's own place for it (what a locked load may prefetch)."""

    url: str
    sha256: str
    size: int
    fetched_by: str | None = None


@dataclass(frozen=True)
class ArtifactFailure:
    """A download that failed while repo code ran (``error``: stable text such as ``HTTP 404``)."""

    url: str
    error: str


class Pins(Protocol):
    """What a lockfile tells a Hub (see :mod:`reprohub.lock`)."""

    def pinned_commit(self, host: str, spec: str) -> str | None:
        """The commit ``spec`` must resolve to, or ``None`` to resolve it normally."""

    def pinned_sha256(self, url: str) -> str | None:
        """The digest ``url``'s bytes must have, or ``None`` if not pinned."""

    def is_locked(self, spec: str) -> bool:
        """Whether a reviewed lock names ``spec`` (then it counts as trusted)."""

    def pinned_host(self, spec: str) -> str | None:
        """The host the lock recorded ``spec`` from (where a locked load goes unless an API URL is configured)."""

    def pinned_tree_sha256(self, host: str, spec: str) -> str | None:
        """The tree digest the pinned commit of ``spec`` must extract to, or ``None``."""

    def prefetch_for(self, spec: str) -> "list[tuple[str, str]]":
        """``(url, sha256)`` of the pinned artifacts ``spec``'s entrypoints download, to start early (may be empty)."""


class Recorder:
    """Thread-safe collection of what was used, with optional listeners."""

    def __init__(self) -> None:
        self._repos: dict[tuple[str, str], RepoUse] = {}
        self._artifacts: dict[str, ArtifactUse] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[RepoUse | ArtifactUse], None]] = []

    def add_repo(self, use: RepoUse) -> None:
        with self._lock:
            self._repos[(use.host, use.spec)] = use
        self._notify(use)

    def add_artifact(self, use: ArtifactUse) -> None:
        with self._lock:
            self._artifacts[use.url] = use
        self._notify(use)

    def add_failure(self, failure: ArtifactFailure) -> None:
        self._notify(failure)

    def repos(self) -> list[RepoUse]:
        with self._lock:
            return [self._repos[k] for k in sorted(self._repos)]

    def artifacts(self) -> list[ArtifactUse]:
        with self._lock:
            return [self._artifacts[k] for k in sorted(self._artifacts)]

    def _notify(self, use: "RepoUse | ArtifactUse | ArtifactFailure") -> None:
        for listener in list(self.listeners):
            listener(use)
