"""The artifact side of a Hub: torch.hub's download functions, the cache path, and early pinned downloads.

:class:`ArtifactMethods` is a part of :class:`~reprohub.hub.Hub` (which it is mixed into): the
files repo code downloads -- ``download_url_to_file``, ``load_state_dict_from_url`` and the cached,
verified, recorded :meth:`~ArtifactMethods.fetch_artifact` under both -- and, for a locked repo
whose commit must be extracted, the start of the downloads the lock says its entrypoints make
(:mod:`reprohub.cache.prefetch`).  The Hub provides ``layout``, ``store``, ``downloader``, ``mirrors``,
``pins``, ``recorder`` and ``prefetcher``.

Example:
    >>> got = Hub(hub_dir=tmp).fetch_artifact(weights_url, progress=False)
    >>> got.path.is_file(), len(got.sha256)
    (True, 64)
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any, Iterator

from .cache.layout import check_file_name, file_name_from_url
from .cache.prefetch import Prefetch
from .cache.shared import shared_artifact
from .cache.store import adopt_torch_hub_file, cached_digest, write_sidecar
from .errors import DownloadError, ReprohubError, pinned_hint
from .fetch.download import Downloaded
from .fetch.partial import claim
from .fetch.urls import canonical_url
from .lock.mirror import INDEX as BUNDLE_INDEX  # the constant only: lock.bundle is for `reprohub bundle`
from .lock.record import ArtifactFailure, ArtifactUse

BUNDLE_FOLDER = "hub-bundle"  # the folder name the README gives a bundle shipped beside hub.lock

HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")


class ArtifactMethods:
    """Downloads made by repo code, for :class:`~reprohub.hub.Hub`."""

    _fetching_for: list[str | None]  # the spec whose entrypoint is running (innermost last); set by Hub

    def download_url_to_file(self, url: str, dst: str, hash_prefix: str | None = None,
                             progress: bool = True, *, durable: bool = False) -> Downloaded:
        """Download ``url`` to ``dst`` atomically, sha256 in flight; as ``torch.hub.download_url_to_file``.

        Returns the :class:`~reprohub.download.Downloaded` record (torch.hub returns ``None``).
        Atomic for every reader, as torch.hub's; ``durable=True`` also flushes the file before the
        rename, so it survives a power loss (reprohub never reads ``dst`` back, so it does not by default).

        Example:
            >>> got = Hub().download_url_to_file(weights_url, tmp + "/w.pt", progress=False)
            >>> got.path.name, len(got.sha256)
            ('w.pt', 64)
        """
        expected = self._pinned_sha256(url)
        got = self._pinned_copy(url, expected, Path(dst), durable) if expected else None
        if got is None and expected and self.mirrors:
            got = self.mirrors.fetch_artifact(expected, Path(dst), progress, sync=durable)
        if got is None:  # under the partial's own lock: a Ctrl-C or kill is resumed by the next call
            with self._noting_failure(url, pinned=expected is not None), \
                    claim(Path(os.path.expanduser(dst)), f"downloading {url} to {dst}") as held:
                got = self.downloader.fetch(url, dst, hash_prefix=hash_prefix, progress=progress,
                                            expected_sha256=expected, sync=durable, resumable=True, claimed=held)
        fetched_by = self._fetching_for[-1] if self._fetching_for else None  # what a locked load prefetches
        if self.pins is not None:
            self._keep_in_cache(url, got)
        self.recorder.add_artifact(ArtifactUse(canonical_url(url), got.sha256, got.size, fetched_by))
        return got

    def _keep_in_cache(self, url: str, got: Downloaded) -> None:
        """Under a lock: a verified copy of a file downloaded to the caller's path in the cache's own place for
        ``url`` too, so a recording leaves the cache as ``reprohub verify`` checks it and a fresh copy of ``dst``
        comes from there (the caller's file is theirs: a repo may change it)."""
        try:
            place = self._cache_place(url, check_file_name(file_name_from_url(url)))
            known = cached_digest(place, url)
        except ReprohubError:  # a URL whose name cannot be a cache file, or a place another URL holds
            return
        if known is None or known.sha256 != got.sha256:
            with claim(place, f"caching {url}"):
                copied = self.downloader.fetch(got.path.as_uri(), place, expected_sha256=got.sha256, progress=False,
                                               sync=False)
                write_sidecar(Downloaded(canonical_url(url), copied.path, copied.sha256, copied.size), unflushed=True)

    def _pinned_copy(self, url: str, expected: str, dst: Path, durable: bool) -> Downloaded | None:
        """A pinned file a locked load prefetched into the cache's own place for ``url``, copied to ``dst``
        (verified as it is copied); ``None`` where the cache has no such copy."""
        try:
            place = self._cache_place(url, check_file_name(file_name_from_url(url)))
        except ReprohubError:  # a URL whose name cannot be a cache file: never prefetched either
            return None
        self.prefetcher.wait(place)
        known = cached_digest(place)
        if known is None or known.sha256 != expected:
            return None
        got = self.downloader.fetch(place.as_uri(), dst, expected_sha256=expected, progress=False, sync=durable)
        return Downloaded(url, got.path, got.sha256, got.size)

    def load_state_dict_from_url(self, url: str, model_dir: str | None = None, map_location: Any = None,
                                 progress: bool = True, check_hash: bool = False, file_name: str | None = None,
                                 weights_only: bool = True) -> Any:
        """Download once, verify, and ``torch.load`` a checkpoint; as torch.hub's, safer.

        Cached under ``<hub_dir>/checkpoints/<url-key>/<file>`` (two URLs with
        the same basename never collide), or ``model_dir/<file>`` when given.
        ``weights_only`` defaults to ``True``; pass ``False`` for pickles you trust.

        Example:
            >>> sd = Hub(hub_dir=tmp).load_state_dict_from_url(hashed_url, check_hash=True, progress=False)
            >>> sd["fc1.weight"].shape
            torch.Size([8, 3])
        """
        from .cache.weights import load_checkpoint, not_a_checkpoint

        got = self.fetch_artifact(url, model_dir=model_dir, file_name=file_name, check_hash=check_hash,
                                  progress=progress)
        try:
            return load_checkpoint(got.path, map_location=map_location, weights_only=weights_only)
        except Exception as err:
            raise not_a_checkpoint(url, got.path, got.size, self.store.evict) or err

    def fetch_artifact(self, url: str, *, model_dir: str | None = None, file_name: str | None = None,
                       check_hash: bool = False, progress: bool = True) -> Downloaded:
        """The cached, verified file for ``url`` (downloaded at most once), recorded for the lockfile.

        Example:
            >>> Hub(hub_dir=tmp).fetch_artifact(weights_url, progress=False).path.parent.parent.name
            'checkpoints'
        """
        name = check_file_name(file_name if file_name is not None else file_name_from_url(url))
        own_place = model_dir is None and file_name is None  # where a prefetch puts it, and a lock remembers
        path = self._cache_place(url, name) if model_dir is None else Path(os.path.expanduser(model_dir)) / name
        self.prefetcher.wait(path)
        match = HASH_REGEX.search(name) if check_hash else None
        expected = self._pinned_sha256(url)
        prefix = match.group(1) if match else None
        got = shared_artifact(self.shared, self.layout, path, url, expected, prefix) \
            if own_place and self.shared and not path.exists() else None
        if got is None:
            with self._noting_failure(url, pinned=expected is not None):
                got = self.store.ensure(url, path, expected_sha256=expected, hash_prefix=prefix, progress=progress,
                                        prefill=self._mirror_prefill(expected, progress))
        fetched_by = self._fetching_for[-1] if own_place and self._fetching_for else None
        self.recorder.add_artifact(ArtifactUse(canonical_url(url), got.sha256, got.size, fetched_by))
        return got

    def _prefetch_pinned(self, spec: str) -> None:
        """Start the pinned downloads the lock says ``spec``'s entrypoints make (a cold locked repo)."""
        pinned = self.pins.prefetch_for(spec) if self.pins is not None else []
        places = [(url, sha256, self._cache_place(url, check_file_name(file_name_from_url(url)))) for url, sha256 in pinned]
        self.prefetcher.start(Prefetch(url, place, sha256, self._mirror_prefill(sha256, False))
                              for url, sha256, place in places  # what a shared cache holds is not fetched again
                              if not (self.shared and shared_artifact(self.shared, self.layout, place, url, sha256, None)))

    def _cache_place(self, url: str, name: str) -> Path:
        """The cache's own place for ``url`` (a file torch.hub downloaded there first is adopted)."""
        path = self.layout.artifact_path(url, name)
        adopt_torch_hub_file(self.layout.checkpoints / name, path)
        return path

    def _mirror_prefill(self, expected: str | None, progress: bool):
        """The store's ``prefill`` for a pinned file: the mirrors (``None`` without a pin or mirrors)."""
        if not (expected and self.mirrors):
            return None

        def prefill(dst: Path, sync: bool) -> Downloaded | None:
            return self.mirrors.fetch_artifact(expected, dst, progress, sync=sync)
        return prefill

    @contextlib.contextmanager
    def _noting_failure(self, url: str, pinned: bool = False) -> Iterator[None]:
        """Record a failed download (a test may expect it) and re-raise, with the way back for a pinned item."""
        try:
            yield
        except DownloadError as err:
            error = f"HTTP {err.status}" if err.status else type(err).__name__
            self.recorder.add_failure(ArtifactFailure(canonical_url(url), error))
            raise pinned_hint(err, url, bundle=self._bundle_beside_lock()) if pinned else err

    def _bundle_beside_lock(self) -> str | None:
        """A bundle folder (``hub-bundle/``, as the README names it) beside the lock or in the working folder,
        as the value ``REPROHUB_MIRROR`` would take; looked for only when a pinned item cannot be had."""
        lock = getattr(self.pins, "lock_path", None)
        for folder in ([Path(lock).parent / BUNDLE_FOLDER] if lock else []) + [Path(BUNDLE_FOLDER)]:
            if (folder / BUNDLE_INDEX).is_file():
                return str(folder)
        return None

    def _pinned_sha256(self, url: str) -> str | None:
        return self.pins.pinned_sha256(canonical_url(url)) if self.pins is not None else None
