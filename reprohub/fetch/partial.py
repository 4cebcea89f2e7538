"""Where a download's bytes gather before the rename, and how an interrupted one is picked up again.

Two kinds of partial file:

* **private** (``.<name>.<pid>.<hex>.incomplete``): unique to one call, removed when it ends; used
  where no lock guards the destination (``download_url_to_file``).
* **resumable** (``.<name>.incomplete`` plus ``.<name>.incomplete.json``): used only while the
  caller holds the destination's file lock, so one writer at a time owns the name.  The record
  holds the URL, the server's *strong* validator (``ETag`` or ``Last-Modified``) and the boot it
  was written in.  When a writer stops (``kill -9``, a crash, Ctrl-C), the next process to take the
  lock finds the partial, re-hashes its bytes, and asks for the rest with ``Range`` + ``If-Range``;
  only a 206 that carries the same validator continues it (:mod:`reprohub.fetch.transport`), anything
  else starts over.  Without a record, with another URL, or from an *earlier boot* the partial is
  removed: its bytes were never flushed, so after a power loss they may be zeros, and no digest
  exists to tell (where the system has no boot id, partials are therefore never resumed across
  processes).  A partial's name is never followed as a link: one planted there is removed, so no
  write lands outside the cache.  Private partials of dead processes are removed then too.

Nothing here is ever trusted as the file itself: the destination is only replaced by rename after
the whole body's digest checked out (:mod:`reprohub.fetch.download`).

Example:
    >>> is_stale(Path("/hub/checkpoints/k/.w.pt.999999999.0a1b2c3d4e5f.incomplete"))
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import BinaryIO

from . import durability
from .fsutil import atomic_write_json, read_record, remove_tree, temp_path_beside
from .locks import is_held, lock_path
from .hosts import is_strong

log = logging.getLogger("reprohub")
SUFFIX = ".incomplete"
RECORD_FIELDS = {"url": str, "validator": str, "boot_id": str}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_PRIVATE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+(\.incomplete|\.zip|\.tmp)$")


class Partial:
    """The partial file of one download into ``dst``.

    Args:
        resumable: the caller holds ``dst``'s lock, so a fixed, resumable name is safe.
    """

    def __init__(self, dst: Path, url: str, resumable: bool) -> None:
        self.dst, self.url, self.resumable = dst, url, resumable
        self.path = dst.with_name(f".{dst.name}{SUFFIX}") if resumable else temp_path_beside(dst)
        self.record = self.path.with_name(self.path.name + ".json")
        self._validator: str | None = None

    def open(self) -> "tuple[BinaryIO, hashlib._Hash, str | None]":
        """The file to write (at its end), the hash of what it holds, and the validator to resume with."""
        if self.resumable:
            # two lookups by name, never a listing of the folder: a download into a folder of 10,000 files costs
            # what one into an empty folder does.  Only where an interrupted download left its partial (a
            # process died) are the dead processes' private partials looked for too.
            leftovers = {p.name for p in (self.path, self.record) if os.path.lexists(p)}
            if leftovers:
                remove_dead_private_partials(self.dst)
            state = (read_record(self.record, RECORD_FIELDS) or {}) if self.record.name in leftovers else {}
            if self._resumable(state):
                out = open(os.open(self.path, os.O_RDWR | _NOFOLLOW), "r+b")
                hasher = _hash_of(out)
                log.info("resuming %s at byte %d (left by an interrupted download)", self.url, out.tell())
                self._validator = state["validator"]
                return out, hasher, self._validator
            if leftovers & {self.path.name, self.record.name}:
                self.discard()
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | (0 if self.resumable else os.O_EXCL)
        return open(os.open(self.path, flags, 0o666), "w+b"), hashlib.sha256(), None  # the umask decides the mode

    def _resumable(self, state: dict) -> bool:
        """A partial worth continuing: a real file, of this URL, with a strong validator, written in this boot."""
        current = durability.boot_id()
        return (state.get("url") == self.url and bool(state.get("validator")) and current is not None
                and state.get("boot_id") == current and self.path.is_file() and not self.path.is_symlink())

    def learned(self, validator: str | None) -> None:
        """The server named its version of the file: record it, so a killed download can resume."""
        if self.resumable and is_strong(validator) and validator != self._validator:
            atomic_write_json(self.record, {"url": self.url, "validator": validator, **durability.stamp()},
                              durable=False)  # a hint, valid in this boot only
            self._validator = validator

    def finish(self) -> None:
        """The bytes are complete and verified: rename them into place."""
        os.replace(self.path, self.dst)
        self.record.unlink(missing_ok=True)

    def discard(self) -> None:
        remove_tree(self.path)
        self.record.unlink(missing_ok=True)

    def after_failure(self, resumable_error: bool) -> None:
        """Keep a resumable partial after a network failure or Ctrl-C (the next call resumes it); else remove it."""
        if not (self.resumable and resumable_error and self._validator):
            self.discard()


def _hash_of(out: BinaryIO) -> "hashlib._Hash":
    hasher = hashlib.sha256()
    while chunk := out.read(1 << 20):
        hasher.update(chunk)
    return hasher


def remove_dead_private_partials(dst: Path) -> "set[str]":
    """Remove the private partials of ``dst`` whose writing process no longer exists; return the names
    beside ``dst`` that start with ``.<its name>.`` and are still there (its resumable partial, its record)."""
    prefix, left = f".{dst.name}.", set()
    with contextlib.suppress(OSError), os.scandir(dst.parent) as entries:
        for entry in entries:
            if not entry.name.startswith(prefix):
                continue
            match = _PRIVATE.match(entry.name)
            if match and match["name"] == dst.name and not pid_alive(int(match["pid"])):
                remove_tree(entry.path)
            else:
                left.add(entry.name)
    return left


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's process
    except (OverflowError, ValueError):
        return False  # no process can have this id
    return True


def is_stale(path: Path) -> bool:
    """Whether a leftover partial (file or folder) belongs to no running writer, so pruning it is safe."""
    match = _PRIVATE.match(path.name)
    if match:
        return not pid_alive(int(match["pid"]))
    name = path.name.removesuffix(".json")
    if name.startswith(".") and name.endswith(SUFFIX):
        return not is_held(lock_path(path.with_name(name[1: -len(SUFFIX)])))  # held: being downloaded right now
    return False

