"""Crash safety without an ``fsync`` of every large file: trust what was written in *this* boot.

The guarantee: a cached file (or extracted tree) that was not completely written is never used,
even after a power loss.  Two things can go wrong, and each is covered:

* **the process dies** (``kill -9``, an exception): bytes gather in a partial file that is only
  renamed into place after its whole digest checked out, so a reader sees the old file or the new
  one (:mod:`reprohub.fetch.partial`).  The kernel keeps both the data and the rename, so nothing
  needs to reach the disk for this.
* **the machine loses power**: the rename can survive while the file's data blocks did not (a
  file of the right size full of zeros or old blocks).  Only data written in an *earlier boot* can
  be in that state.  So instead of flushing every download before renaming it (what costs the
  time), each record written without a flush carries the boot it was written in (Linux:
  ``/proc/sys/kernel/random/boot_id``).  A record from another boot is *unconfirmed*: its file or
  tree is hashed once more before first use (about 0.5 s per GiB here), and, if it still matches,
  re-recorded as confirmed.  A mismatch is treated like any corrupt cache entry: fetched again.

With a boot id a cold load flushes nothing: downloads, extracted trees and their records carry the
boot id; ref resolutions and resume records are hints (lost, the host is asked again); a repo
archive is deleted once extracted.  Where no boot id exists (macOS, Windows, a sandbox without
``/proc``), records carry none and every cached file, extracted file and record is flushed before
its rename, as before.

Example:
    >>> set_boot_id_source(lambda: "boot-a")
    >>> needs_recheck({"boot_id": "boot-a"}), needs_recheck({"boot_id": "boot-b"}), needs_recheck({})
    (False, True, False)
    >>> set_boot_id_source(None)
"""

from __future__ import annotations

from typing import Callable

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_source: Callable[[], str | None] | None = None
_cached: list[str | None] = []


def _read_boot_id() -> str | None:
    try:
        with open(BOOT_ID_FILE, encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def set_boot_id_source(source: Callable[[], str | None] | None) -> None:
    """Replace where the boot id comes from (tests simulate a reboot); ``None`` restores the system's."""
    global _source
    _source = source
    _cached.clear()


def boot_id() -> str | None:
    """This boot's id, or ``None`` where the system has none (then every file is flushed)."""
    if _source is not None:
        return _source()
    if not _cached:
        _cached.append(_read_boot_id())
    return _cached[0]


def stamp() -> dict[str, str]:
    """What a record written now, without a flush, carries: ``{"boot_id": ...}`` (empty without boot ids)."""
    current = boot_id()
    return {"boot_id": current} if current else {}


def needs_recheck(record: dict) -> bool:
    """Whether a record was written unflushed in another boot, so its bytes must be hashed again before use."""
    written_in = record.get("boot_id")
    return written_in is not None and written_in != boot_id()
