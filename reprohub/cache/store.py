"""A cache of downloaded artifacts that knows what it holds.

Each cached file has a record of its URL, size, ``mtime_ns`` and sha256: an extended attribute of
the file, or a sidecar ``<file>.reprohub.json`` where the filesystem keeps none (:func:`write_sidecar`).
A cache hit whose size and mtime still match the record costs a ``stat`` and a
``getxattr``, and no read of the file; a file whose size or mtime changed
is re-hashed, and if its bytes no longer match it is fetched again -- a
corrupt file is never silently loaded.  A cold miss takes a per-file lock (the partial file itself), so N
processes asking at once cause one download; correctness does not rest on the
lock alone: downloads land by atomic rename, and a process that finds a
complete file with a matching digest simply uses it.

Example:
    >>> store = ArtifactStore(Downloader())
    >>> got = store.ensure(weights_url, tmp + "/w.pt", progress=False)
    >>> store.ensure(weights_url, tmp + "/w.pt") == got      # a hit: one stat, no request
    True
    >>> read_file_record(got.path)["sha256"] == got.sha256, sidecar_path(got.path).exists()
    (True, False)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from ..errors import CacheCollisionError, OfflineError
from ..fetch import durability
from ..fetch.download import Downloaded, Downloader
from ..fetch.fsutil import atomic_write_json, checked_record, read_record, sha256_file, temp_path_beside
from ..fetch.partial import claim
from ..fetch.urls import canonical_url, is_file_url
from .layout import SIDECAR_FIELDS, SIDECAR_SUFFIX

log = logging.getLogger("reprohub")
RECORD_ATTRIBUTE = "user.reprohub.record"


def sidecar_path(path: "str | os.PathLike[str]") -> Path:
    """The sidecar record of a cached file."""
    return Path(_sidecar_name(path))


def _sidecar_name(path: "str | os.PathLike[str]") -> str:
    return os.fspath(path) + SIDECAR_SUFFIX  # a string: every download asks for it, and needs no Path


def write_sidecar(got: Downloaded, unflushed: bool = False) -> None:
    """Record ``got``'s URL, size, mtime and digest with its file.

    The record is an extended attribute of the file itself (``user.reprohub.record``): one system call,
    no second file to create and rename (18 µs to 0.14 ms a file on this ext4, with its state:
    ``python benchmarks/fixed_costs.py``), set and read atomically,
    and gone with the file.  Where the filesystem keeps no user attributes (some NFS and FUSE mounts),
    it is the sidecar file ``<file>.reprohub.json`` beside it, written atomically, as before.
    ``unflushed``: the file was renamed into place without an fsync, so the record carries this
    boot's id and the file is hashed once more in a later boot (:mod:`reprohub.fetch.durability`).
    Best effort: on a read-only folder (a shared, pre-filled model_dir) the record is skipped and the
    file is simply hashed again on the next use.
    """
    st = os.stat(got.path)
    record = {"url": got.url, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": got.sha256}
    stamp = durability.stamp() if unflushed else {}
    text = json.dumps({**record, **stamp}, sort_keys=True).encode()
    try:
        os.setxattr(got.path, RECORD_ATTRIBUTE, text)
        if not stamp:  # no boot id vouches for it: the record is flushed with the file's metadata
            _flush(got.path)
        with contextlib.suppress(FileNotFoundError):  # a record from before, or from another filesystem
            os.unlink(_sidecar_name(got.path))
        return
    except (OSError, AttributeError) as err:  # no user attributes here (or no os.setxattr): the sidecar
        log.debug("no extended attribute on %s (%s); writing a sidecar", got.path, err)
    try:
        # a stamped record is re-checked in a later boot anyway, so it needs no flush of its own either
        atomic_write_json(sidecar_path(got.path), {**record, **stamp}, durable=not stamp)
    except OSError as err:
        log.debug("no sidecar for %s (%s); it will be hashed again next time", got.path, err)


def read_file_record(path: "str | os.PathLike[str]") -> dict | None:
    """The record :func:`write_sidecar` kept for ``path`` (its attribute, else its sidecar), or ``None``.

    Example:
        >>> import tempfile, os; p = os.path.join(tempfile.mkdtemp(), "w.pt"); _ = open(p, "wb").write(b"x")
        >>> write_sidecar(Downloaded("https://h/w.pt", p, "ab" * 32, 1)); read_file_record(p)["url"]
        'https://h/w.pt'
    """
    try:
        return checked_record(json.loads(os.getxattr(path, RECORD_ATTRIBUTE)), SIDECAR_FIELDS)
    except (OSError, AttributeError, ValueError):
        return read_record(sidecar_path(path), SIDECAR_FIELDS)


def _flush(path: "str | os.PathLike[str]") -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cached_digest(path: "str | os.PathLike[str]", url: str | None = None) -> Downloaded | None:
    """What the cache knows of ``path``, re-hashing only if the file changed since recorded.

    Returns ``None`` when there is no file, or when the file's bytes no longer
    match its record (it is corrupt; the next download replaces it atomically -- it is not
    deleted here, where another process may be replacing it with a good copy at this moment).

    Raises:
        CacheCollisionError: the file was downloaded from another URL.
    """
    path = path if isinstance(path, Path) else Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    record = read_file_record(path) or {}  # a damaged record: hashed again
    if url is not None and record.get("url") is not None and canonical_url(record["url"]) != canonical_url(url):
        raise CacheCollisionError(
            f"{path} to hold the download of {url}",
            f"a file downloaded from {record['url']}",
            "pass a different file_name= (or model_dir=) so the two files do not share a path",
        )
    recorded_url = record.get("url") or (canonical_url(url) if url else "")
    unchanged = record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns
    if unchanged and record.get("sha256") and not durability.needs_recheck(record):
        return Downloaded(url=recorded_url, path=path, sha256=record["sha256"], size=st.st_size)
    digest = sha256_file(path)
    if record.get("sha256") and record["sha256"] != digest:
        log.warning("cached file %s changed since it was downloaded (sha256 %s, now %s); fetching it again",
                    path, record["sha256"], digest)
        return None
    got = Downloaded(url=recorded_url, path=path, sha256=digest, size=st.st_size)
    if recorded_url:
        write_sidecar(got)
    return got


def adopt_torch_hub_file(legacy: Path, path: Path) -> None:
    """Link a file torch.hub already downloaded (``<hub>/checkpoints/<name>``) to reprohub's place for it.

    Offline machines and images prepared with torch.hub keep working.  Nothing is trusted blindly:
    the file is hashed on first use like any cached file without a record, so a pinned digest or a
    ``check_hash`` prefix still decides whether it is used.
    """
    if path.exists() or not legacy.is_file():
        return
    tmp = temp_path_beside(path, ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(legacy, tmp)
        except OSError:  # another filesystem, or no hard links: copy
            shutil.copyfile(legacy, tmp)
        os.replace(tmp, path)
        log.info("using %s, downloaded earlier by torch.hub", legacy)
    except OSError as err:
        log.debug("could not adopt %s (%s)", legacy, err)
    finally:
        tmp.unlink(missing_ok=True)


class ArtifactStore:
    """Fetch-once, verify-always access to cached artifacts.

    Args:
        downloader: does the transfers (and knows whether we are offline).
    """

    def __init__(self, downloader: Downloader) -> None:
        self.downloader = downloader

    def ensure(
        self,
        url: str,
        path: "str | os.PathLike[str]",
        *,
        expected_sha256: str | None = None,
        hash_prefix: str | None = None,
        progress: bool = True,
        headers: dict[str, str] | None = None,
        prefill: "Callable[[Path, bool], Downloaded | None] | None" = None,
    ) -> Downloaded:
        """Return the cached, verified file for ``url`` at ``path``, downloading it at most once.

        A cached file whose digest differs from ``expected_sha256`` (or does not
        start with ``hash_prefix``) is not used: it is downloaded again, and if
        the fresh bytes differ too, :class:`~reprohub.errors.HashMismatchError`
        is raised and the old file is left in place.  ``prefill`` is asked first
        on a miss (reprohub's mirrors): it writes ``path`` verified (flushed if its second argument,
        ``sync``, says so: the store decides, as for its own downloads), or returns ``None``.
        """
        path = path if isinstance(path, Path) else Path(path)
        hit = self._usable(path, url, expected_sha256, hash_prefix)
        if hit is not None:
            return hit
        with claim(path, f"downloading {url}") as held:  # the partial file is the lock: no lock file to create
            hit = self._usable(path, url, expected_sha256, hash_prefix)
            if hit is not None:
                return hit
            unflushed = durability.boot_id() is not None  # a boot id vouches for the bytes instead of an fsync
            got = prefill(path, not unflushed) if prefill is not None else None
            if got is None:
                if self.downloader.offline and not is_file_url(url):  # a local file needs no network
                    raise OfflineError(
                        f"a cached copy of {url} at {path}",
                        "no usable cached file (nor in any mirror), and offline mode forbids downloading",
                        "prefetch with network access (`reprohub fetch --lock hub.lock`), or fill the cache "
                        "from a bundle (`reprohub fetch --lock hub.lock --from BUNDLE`)",
                    )
                log.info('Downloading: "%s" to %s', url, path)
                got = self.downloader.fetch(url, path, expected_sha256=expected_sha256, hash_prefix=hash_prefix,
                                            progress=progress, headers=headers, resumable=True, sync=not unflushed,
                                            claimed=held)
            got = Downloaded(canonical_url(url), got.path, got.sha256, got.size)  # the origin's URL, not a mirror's
            write_sidecar(got, unflushed=unflushed)
            return got

    @staticmethod
    def evict(path: "str | os.PathLike[str]") -> None:
        """Remove a cached file and its record (under its lock): it proved unusable, and must not stay trusted."""
        path = Path(path)
        with claim(path, f"evicting {path.name}"):
            path.unlink(missing_ok=True)
            sidecar_path(path).unlink(missing_ok=True)

    @staticmethod
    def _usable(path: Path, url: str, expected: str | None, prefix: str | None) -> Downloaded | None:
        hit = cached_digest(path, url)
        if hit is None:
            return None
        if expected is not None and hit.sha256 != expected.lower().removeprefix("sha256:"):
            log.warning("cached %s has sha256 %s but %s is pinned; fetching again", path, hit.sha256, expected)
            return None
        if prefix is not None and not hit.sha256.startswith(prefix):
            return None
        return hit
