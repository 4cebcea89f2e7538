"""Bodies of the requests repo and test code made, kept by their sha256 (:mod:`reprohub.lock.hermetic` pins them).

``<hub_dir>/reprohub/responses/sha256/<sha256>``, each with the sidecar every cached file has.  A body is
streamed into a temporary file beside its place, hashed in flight, and renamed to its digest's name
once the digest is known, so two processes storing one body write the same bytes and a reader sees a
whole file or none.  The rename is not flushed: the sidecar carries the boot id, and a body written
in another boot is hashed again before use (:mod:`reprohub.fetch.durability`).

**Bound to the requests it answered.**  A digest alone does not say which request a body answers: a
lock edited to give ``GET .../labels.txt`` the digest of another cached body must not be served that
body.  So a body is served for a request only if it was fetched for it (the sidecar's URL) or a
binding ``responses/requests/<sha256 of the request key>`` holding its digest says so (:func:`bind`,
written when a body is fetched or verified for a request; lost in a crash, the body is fetched again).

**Verified before it is served.**  A record says the file was whole when written; it cannot see bytes
replaced since (same size and mtime).  A client that reads a prefix (``readline``, a first chunk) would
act on them before the streaming hash ends the read.  So :func:`verified_body` hashes a body once in
each process before it is first served (memo by inode, size and mtime) and drops a damaged one.

Example:
    >>> layout = CacheLayout(tmp)
    >>> got = store_stream(layout, [b"{}", b"\\n"], "https://h/a.json")
    >>> known_body(layout, got.sha256) == got.path, got.size
    (True, 3)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import LocalDiskError
from ..fetch.download import Downloaded, RESUME_RECORD_MIN
from ..fetch.progress import progress_bar
from ..fetch.fsutil import atomic_write_bytes, sha256_file, temp_path_beside
from ..fetch.urls import canonical_url
from .layout import CacheLayout
from .store import cached_digest, write_sidecar

log = logging.getLogger("reprohub")
_verified: dict[str, tuple[int, int, int]] = {}  # path -> (inode, size, mtime_ns) hashed whole in this process
_verified_lock = threading.Lock()


def known_body(layout: CacheLayout, sha256: str) -> "Path | None":
    """The cached body with this digest, or ``None`` (missing, or damaged since it was written)."""
    place = layout.response_body(sha256)
    known = cached_digest(place)
    return place if known is not None and known.sha256 == sha256 else None


def bound_body(layout: CacheLayout, key: str, url: str, sha256: str) -> "Path | None":
    """The cached body with this digest if it answers the request ``key`` (of canonical ``url``), else ``None``."""
    place = layout.response_body(sha256)
    known = cached_digest(place)
    if known is None or known.sha256 != sha256:
        return None
    if canonical_url(known.url) == url:
        return place
    try:
        return place if layout.response_binding(key).read_bytes().decode("ascii", "replace") == sha256 else None
    except OSError:
        return None


def bind(layout: CacheLayout, key: str, sha256: str) -> None:
    """Record that the cached body ``sha256`` answers the request ``key`` (not flushed: lost, it is refetched)."""
    place = layout.response_binding(key)
    try:
        if place.read_bytes() == sha256.encode():
            return
    except OSError:
        pass
    place.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(place, sha256.encode(), durable=False)


def verified_body(path: Path, sha256: str, evict: bool) -> bool:
    """Whether the file ``path`` holds exactly the bytes of ``sha256``, hashed whole once per process (and again
    when it changed); a damaged file is removed when ``evict`` (a cache copy: the next request fetches it anew)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    if _verified.get(str(path)) == stamp:
        return True
    if sha256_file(path) != sha256:
        log.warning("%s is damaged (its bytes no longer hash to sha256 %s)%s", path, sha256,
                    "; removed, it is fetched again" if evict else "")
        if evict:
            path.unlink(missing_ok=True)
        return False
    with _verified_lock:
        _verified[str(path)] = stamp
    return True


def store_stream(layout: CacheLayout, chunks: Iterable[bytes], url: str, total: int = 0) -> Downloaded:
    """Stream ``chunks`` (the body of ``url``) into its place by digest; a progress bar past 8 MiB of ``total``."""
    folder = layout.response_body("0" * 64).parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(folder / "body")
    bar = progress_bar(url, total > RESUME_RECORD_MIN)
    hasher, size = hashlib.sha256(), 0
    try:
        with _local_writes(folder):
            out = open(tmp, "wb", buffering=0)  # unbuffered: a full disk fails the write that met it
        with out:
            for chunk in chunks:  # the host's errors come from here; the disk's from the write
                with _local_writes(folder):
                    view = memoryview(chunk)
                    while view:  # a raw write may be short (a disk filling up): the rest, or its error
                        view = view[out.write(view):]
                hasher.update(chunk)
                size += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        got = Downloaded(url, layout.response_body(hasher.hexdigest()), hasher.hexdigest(), size)
        with _local_writes(folder):
            os.replace(tmp, got.path)
        write_sidecar(got, unflushed=True)
    finally:
        tmp.unlink(missing_ok=True)
        if bar is not None:
            bar.close()
    return got


def adopt(got: Downloaded) -> Path:
    """Record a body written to its place by another path (a mirror's copy), as :func:`store_stream` does."""
    write_sidecar(got, unflushed=True)
    return got.path


@contextlib.contextmanager
def _local_writes(folder: Path) -> Iterator[None]:
    """Turn an ``OSError`` of a write on this machine into a :class:`LocalDiskError` (not the host's failure)."""
    try:
        yield
    except LocalDiskError:
        raise
    except OSError as error:
        raise LocalDiskError(f"room to write a request body into {folder}", f"{type(error).__name__}: {error}",
                             "free space on this machine's disk (or point TORCH_HOME elsewhere) and record "
                             "again; nothing was recorded") from error
