"""Bodies of the requests repo and test code made, kept by their sha256 (:mod:`reprohub.lock.hermetic` pins them).

``<hub_dir>/reprohub/responses/sha256/<sha256>``, each with the sidecar every cached file has.  A body is
streamed into a temporary file beside its place, hashed in flight, and renamed to its digest's name
once the digest is known, so two processes storing one body write the same bytes and a reader sees a
whole file or none.  The rename is not flushed: the sidecar carries the boot id, and a body written
in another boot is hashed again before use (:mod:`reprohub.fetch.durability`).

Example:
    >>> layout = CacheLayout(tmp)
    >>> got = store_stream(layout, [b"{}", b"\\n"], "https://h/a.json")
    >>> known_body(layout, got.sha256) == got.path, got.size
    (True, 3)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from ..fetch.download import Downloaded, RESUME_RECORD_MIN, progress_bar
from ..fetch.fsutil import temp_path_beside
from .layout import CacheLayout
from .store import cached_digest, write_sidecar


def known_body(layout: CacheLayout, sha256: str) -> "Path | None":
    """The cached body with this digest, or ``None`` (missing, or damaged since it was written)."""
    place = layout.response_body(sha256)
    known = cached_digest(place)
    return place if known is not None and known.sha256 == sha256 else None


def store_stream(layout: CacheLayout, chunks: Iterable[bytes], url: str, total: int = 0) -> Downloaded:
    """Stream ``chunks`` (the body of ``url``) into its place by digest; a progress bar past 8 MiB of ``total``."""
    folder = layout.response_body("0" * 64).parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(folder / "body")
    bar = progress_bar(url, total > RESUME_RECORD_MIN)
    hasher, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                hasher.update(chunk)
                size += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        got = Downloaded(url, layout.response_body(hasher.hexdigest()), hasher.hexdigest(), size)
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
