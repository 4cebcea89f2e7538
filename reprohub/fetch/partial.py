"""Where a download's bytes gather before the rename, and how an interrupted one is picked up again.

Two kinds of partial file:

* **private** (``.<name>.<pid>.<hex>.incomplete``): unique to one call, removed when it ends; used
  where no lock guards the destination (``download_url_to_file``).
* **resumable** (``.<name>.incomplete`` plus ``.<name>.incomplete.json``): used only while the
  caller holds the destination's lock, so one writer at a time owns the name.  In the cache that lock
  is the partial file itself (:func:`claim`, :func:`~reprohub.fetch.locks.held_file`): a download
  creates one file, not a partial and a lock file, and leaves none behind.  The record
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
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from . import durability
from .fsutil import atomic_write_json, read_record, remove_tree, temp_path_beside
from .locks import held_file, is_held, lock_path
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
        held: the caller's :func:`claim` on ``dst``: the partial is already open, and written through it.
    """

    def __init__(self, dst: Path, url: str, resumable: bool, held=None) -> None:
        self.dst, self.url, self.resumable = dst, url, resumable
        # plain strings: a small download builds no Path objects it does not need (each a few µs of held GIL)
        self.path = _resumable_name(dst) if resumable else os.fspath(temp_path_beside(dst))
        self.record = self.path + ".json"
        self._held = held if resumable else None
        self._validator: str | None = None
        self._record_seen = False  # a resume record may exist (found at open, or written): remove it at the end

    def open(self) -> "tuple[BinaryIO, hashlib._Hash, str | None]":
        """The file to write (at its end), the hash of what it holds, and the validator to resume with."""
        if not self.resumable:
            out = open(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666), "r+b")
            return out, hashlib.sha256(), None  # the umask decides the mode
        # two lookups by name, never a listing of the folder: a download into a folder of 10,000 files costs
        # what one into an empty folder does.  Only where an interrupted download left its partial (a
        # process died) are the dead processes' private partials looked for too.  An empty partial is
        # the lock this call holds (claim), not a leftover.
        out = None if self._held is None else open(self._held.fd, "r+b", buffering=1 << 16, closefd=False)
        has_bytes = out.seek(0, os.SEEK_END) > 0 if out is not None else _holds_something(self.path)
        leftovers = {self.path} if has_bytes else set()
        leftovers |= {self.record} if os.path.lexists(self.record) else set()
        if leftovers:
            remove_dead_private_partials(self.dst)
        self._record_seen = self.record in leftovers
        state = (read_record(self.record, RECORD_FIELDS) or {}) if self._record_seen else {}
        if self._resumable(state):
            out = out or open(os.open(self.path, os.O_RDWR | _NOFOLLOW), "r+b")
            out.seek(0)
            hasher = _hash_of(out)
            log.info("resuming %s at byte %d (left by an interrupted download)", self.url, out.tell())
            self._validator = state["validator"]
            return out, hasher, self._validator
        if leftovers:  # cut, not removed: a claimed partial is the lock, and its name must keep its file
            _unlink_quiet(self.record)
            if out is None and not _regular_file(self.path):
                remove_tree(self.path)  # a planted link or folder
        # no O_TRUNC on an empty partial: ext4 flushes a file truncated to 0 when it is closed (auto_da_alloc),
        # 50 µs here for 200 KiB, more beside other writers; only one with bytes is cut
        out = out or open(os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666), "r+b")
        if has_bytes:
            out.seek(0)
            out.truncate(0)
        return out, hashlib.sha256(), None

    def _resumable(self, state: dict) -> bool:
        """A partial worth continuing: a real file, of this URL, with a strong validator, written in this boot."""
        current = durability.boot_id()
        return (state.get("url") == self.url and bool(state.get("validator")) and current is not None
                and state.get("boot_id") == current and os.path.isfile(self.path) and not os.path.islink(self.path))

    def learned(self, validator: str | None) -> None:
        """The server named its version of the file: record it, so a killed download can resume."""
        if self.resumable and is_strong(validator) and validator != self._validator:
            self._record_seen = True
            atomic_write_json(self.record, {"url": self.url, "validator": validator, **durability.stamp()},
                              durable=False)  # a hint, valid in this boot only
            self._validator = validator

    def finish(self) -> None:
        """The bytes are complete and verified: rename them into place."""
        os.replace(self.path, self.dst)
        if self._record_seen:
            _unlink_quiet(self.record)

    def discard(self) -> None:
        remove_tree(self.path)
        if self.resumable:
            _unlink_quiet(self.record)

    def after_failure(self, resumable_error: bool) -> None:
        """Keep a resumable partial after a network failure or Ctrl-C (the next call resumes it); else remove it."""
        if not (self.resumable and resumable_error and self._validator):
            self.discard()


def resumable_path(dst: "str | os.PathLike[str]") -> Path:
    """The fixed partial file of downloads into ``dst`` (also the lock :func:`claim` holds)."""
    return Path(_resumable_name(dst))


def _resumable_name(dst: "str | os.PathLike[str]") -> str:
    folder, name = os.path.split(os.fspath(dst))
    return os.path.join(folder, f".{name}{SUFFIX}")


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def claim(dst: "str | os.PathLike[str]", what: str) -> Iterator[object]:
    """Hold the lock on writing ``dst``: its resumable partial file, held as its own lock.

    Yields the handle to pass on as ``Downloader.fetch(..., claimed=)`` (``None`` where locks are files beside).

    Inside the block, this process alone writes ``dst`` (a resumable download, an eviction).  An empty partial
    the block left unused (the file was there after the wait, or a mirror filled it) is removed before the lock
    is let go; one with bytes stays for the next call to resume.

    Example:
        >>> import tempfile
        >>> dst = Path(tempfile.mkdtemp()) / "w.pt"
        >>> with claim(dst, "writing w.pt"):
        ...     is_being_written(dst)
        True
        >>> is_being_written(dst), sorted(p.name for p in dst.parent.iterdir())
        (False, [])
    """
    path = _resumable_name(dst)
    with held_file(path, what) as lock:
        try:
            yield lock
        finally:
            # only while the name is still the file locked: once the block renamed it into place, the name is
            # free, and a file there now is another process's lock
            with contextlib.suppress(OSError):
                if (lock is None or lock.names(path)) and os.lstat(path).st_size == 0 \
                        and not os.path.lexists(path + ".json"):
                    os.unlink(path)  # a waiter then finds the name gone and looks again


def is_being_written(dst: "str | os.PathLike[str]") -> bool:
    """Whether some process holds the lock on writing ``dst`` right now (:func:`claim`, or an older reprohub's
    ``<name>.lock`` beside it)."""
    return is_held(resumable_path(dst), follow=False) or is_held(lock_path(dst))


def remove_unheld(path: Path) -> bool:
    """Remove the leftover ``path`` (a partial file or folder, or a resume record) unless its download is running
    now; True if removed.  A resumable partial is removed while its own lock is held, so a download that starts
    meanwhile never loses the file it writes."""
    dst = _resumable_destination(path)
    if dst is None:
        if not is_stale(path):
            return False
        remove_tree(path)
        return True
    if is_being_written(dst):
        return False
    with claim(dst, f"pruning {path.name}"):
        remove_tree(_resumable_name(dst))
        _unlink_quiet(_resumable_name(dst) + ".json")
    return True


def _resumable_destination(path: Path) -> "Path | None":
    """The file a resumable partial (``.<name>.incomplete``) or its record belongs to; ``None`` for anything else."""
    name = path.name.removesuffix(".json")
    if not (name.startswith(".") and name.endswith(SUFFIX)) or _PRIVATE.match(path.name):
        return None
    return path.with_name(name[1: -len(SUFFIX)])


def _holds_something(path: Path) -> bool:
    """Whether ``path`` exists as anything but an empty regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_size > 0 or not stat.S_ISREG(st.st_mode)


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


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
    dst = _resumable_destination(path)
    return dst is not None and not is_being_written(dst)  # held: being downloaded right now

