"""The last source of a pinned commit: Software Heritage, when the cache, the mirrors and the origin all failed.

:class:`ArchiveFallback` is the part of :class:`reprohub.hub.Hub` that asks the archive
(:mod:`reprohub.sources.swh`) and remembers, for the session summary, which commits came from it.  Only a
commit a lock pins is asked for (its tree digest is what the archive's files are checked against), only
when the origin may be asked at all (never offline, never with ``fetch --from``), and never when
``REPROHUB_SWH_URL=off``.

Example:
    >>> from reprohub import Hub
    >>> Hub(hub_dir=tmp).archive is None      # the tests turn the archive off: REPROHUB_SWH_URL=off
    True
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ReprohubError, pinned_hint
from ..refs import RepoRef

if TYPE_CHECKING:
    from ..fetch.archive import ExtractResult

log = logging.getLogger("reprohub")


class ArchiveFallback:
    """Software Heritage as a Hub's last source (needs the Hub's ``downloader``, ``pins``, ``_archive`` and
    ``from_archive``)."""

    @property
    def archive(self):
        """The Software Heritage client (``None`` with ``REPROHUB_SWH_URL=off``), made at first use."""
        if self._archive is False:
            from .swh import SoftwareHeritage, configured_url

            self._archive = SoftwareHeritage(self.downloader) if configured_url() else None
        return self._archive

    def from_last_source(self, repo: RepoRef, commit: str, path: Path, pinned_tree: str, failure: ReprohubError,
                         bundle: "str | None", progress: bool) -> "ExtractResult":
        """A pinned commit the origin no longer serves, from the archive, verified against the lock; else the
        origin's ``failure``, with the archive's answer and the ways back (``bundle``: one beside the lock)."""
        what = f"{repo.repo}@{commit}"
        if not self.origin or self.archive is None:  # offline (a Git mirror may still answer then): never asked
            raise pinned_hint(failure, what, repo=True, bundle=bundle)
        log.warning("%s: the origin failed (%s); asking Software Heritage", what, failure.found)
        try:
            result = self.archive.materialize(commit, path, pinned_tree, self._pinned_swhid_dir(commit),
                                              what=what, progress=progress)
        except ReprohubError as err:
            err.found = f"{err.found}; and the origin: {failure.found}"
            raise pinned_hint(err, what, repo=True, bundle=bundle) from failure
        self.from_archive[commit] = f"Software Heritage ({self.archive.url}, swh:1:rev:{commit})"
        return result

    def _pinned_swhid_dir(self, commit: str) -> "str | None":
        """The tree SWHID a lock records for ``commit``, which the archive's revision must agree with."""
        lock = getattr(self.pins, "lock", None)
        return next((p.swhid_dir for p in (lock.repos.values() if lock is not None else ())
                     if p.commit == commit and p.swhid_dir), None)
