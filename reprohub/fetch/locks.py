"""Inter-process locks held with ``flock``: a lock file (``<name>.lock``) per guarded path, or a file that is its own lock.

A lock file stays in place after release: removing it would let two processes
lock two different inodes under one name (a file that is its own lock solves that another way, below).  The kernel drops a ``flock`` when
its holder dies, so a killed process never leaves a stale lock behind.  Two
handles on one file exclude each other even within one process (the lock
belongs to the open file), so threads queue exactly like processes.

**Shared filesystems.**  Linux NFS clients (since 2.6.12, ``man 2 flock``) carry a ``flock`` to the server as a
whole-file ``fcntl`` lock, so it holds across nodes; Lustre does so only when mounted with ``-o flock``
(``localflock`` keeps locks on one node, ``noflock`` refuses them).  A filesystem that refuses ``flock`` is a
:class:`~reprohub.errors.LockUnsupportedError` naming the mount option, never a lock silently not taken.
Correctness never rests on the lock alone (temporary file and rename, digests): a lock only saves a second
download.

**A file that is its own lock** (:func:`held_file`).  A download's partial file is locked itself, not a
``.lock`` beside it: creating a file costs 20 µs to 0.14 ms on ext4, about what a whole 200 KiB transfer
costs on loopback, and a lock file is one more file per download (and one left behind).  The partial is
renamed into place or removed while its lock is held, so a waiter that then gets the lock may hold an
inode that no longer has the name.  The rule that makes this safe: after ``flock`` returns, the holder
checks that the name still points at the inode it locked (``fstat`` against ``lstat``) and otherwise
opens the name again; and only a holder renames or removes the name.  So at any time at most one
process holds the lock on the file that has the name.  (An older reprohub locked ``<name>.lock``
instead; run beside this one on a shared cache, the two do not exclude each other, and the rename
and the digests still keep every cached file whole: at worst a file is downloaded twice.)

``fcntl.flock`` is called directly where the OS has it.  filelock (used where
it does not, i.e. Windows) wraps the same call in several hundred Python calls
per acquire and release: 0.39 ms against 0.049 ms here (``python
benchmarks/fixed_costs.py``), and a cold load takes three locks.

Example:
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> with file_lock(lock_path(target), "writing w.pt"):
    ...     is_held(lock_path(target))
    True
    >>> is_held(lock_path(target))
    False
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from pathlib import Path
from typing import Iterator

from .. import settings
from ..errors import CachePathError, LockTimeoutError, LockUnsupportedError
from .fsutil import remove_tree, writable

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("reprohub")
POLL_SECONDS = 0.01
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}  # a filesystem without flock, not a held lock


def lock_path(path: "str | os.PathLike[str]") -> Path:
    """The lock file guarding ``path`` while it is written (``<name>.lock`` beside it)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def file_lock(path: "str | os.PathLike[str]", what: str) -> Iterator[None]:
    """Hold the inter-process lock ``path`` (created as needed) while the block runs.

    ``what`` names the thing being protected, for the log line shown while waiting.

    Raises:
        LockTimeoutError: another holder kept it longer than ``REPROHUB_LOCK_TIMEOUT`` seconds.
        CacheWriteError: the lock file cannot be created (a read-only folder).
    """
    path = Path(path)
    timeout = settings.read_number(settings.LOCK_TIMEOUT, 3600)
    with writable(path):
        try:
            lock = _Lock(path)
        except FileNotFoundError:  # the folder does not exist yet
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = _Lock(path)
    try:
        if not lock.try_acquire():
            log.info("waiting for another process to finish %s", what)
            _wait(lock, path, timeout, what)
        yield
    finally:
        lock.close()


@contextlib.contextmanager
def held_file(path: "str | os.PathLike[str]", what: str) -> "Iterator[_Lock | None]":
    """Hold the file at ``path`` (created empty as needed) as its own lock while the block runs.

    Inside the block this process alone may rename or remove ``path``, and the file at ``path`` is the one
    locked (module docstring) until the block renames or removes it; the handle yielded tells
    (``names(path)``).  A link or folder planted at ``path`` is removed, never followed.  Where the OS
    has no ``flock`` (Windows), a ``.lock`` file beside ``path`` is held instead.

    Raises:
        LockTimeoutError: another holder kept it longer than ``REPROHUB_LOCK_TIMEOUT`` seconds.
        CacheWriteError: the file cannot be created (a read-only folder).

    Example:
        >>> import tempfile, os
        >>> partial = os.path.join(tempfile.mkdtemp(), ".w.pt.incomplete")
        >>> with held_file(partial, "writing w.pt"):
        ...     is_held(partial, follow=False)
        True
        >>> is_held(partial, follow=False)
        False
    """
    if fcntl is None:
        with file_lock(lock_path(path), what):
            yield None  # the lock beside ``path`` covers whatever file has the name
        return
    timeout = settings.read_number(settings.LOCK_TIMEOUT, 3600)
    deadline = time.monotonic() + timeout
    while True:
        lock = _own_lock(path)
        try:
            if not lock.try_acquire():
                log.info("waiting for another process to finish %s", what)
                _wait(lock, path, timeout, what, deadline)
            if lock.names(path):
                break
        except BaseException:
            lock.close()
            raise
        lock.close()  # the holder before us renamed or removed it: lock the file that has the name now
    try:
        yield lock
    finally:
        lock.close()


def _own_lock(path: "str | os.PathLike[str]") -> "_Lock":
    """Open (creating) the file at ``path`` as a lock, never through a link: a link or folder there is removed."""
    for _ in range(8):
        try:
            with writable(path):
                try:
                    return _Lock(path, follow=False)
                except FileNotFoundError:  # the folder does not exist yet
                    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):
                raise
            log.warning("removing %s: a %s where a partial download belongs", path,
                        "folder" if os.path.isdir(path) and not os.path.islink(path) else "link or special file")
            remove_tree(path)
    raise CachePathError(f"a partial download's file at {path}", "a link or folder planted there again and again",
                         "find what writes into the cache folder and stop it")


def is_held(path: "str | os.PathLike[str]", follow: bool = True) -> bool:
    """Whether some process (or another handle in this one) holds the lock ``path`` right now.

    ``follow=False`` for a file that may be a planted link (a partial): a link is never opened, and counts as
    not held.
    """
    if not os.path.lexists(path) or (not follow and os.path.islink(path)):
        return False
    try:
        lock = _Lock(Path(path), follow=follow, create=False)
    except OSError as err:  # gone, a folder, or (not following) a link or special file: no partial's lock
        if err.errno in (errno.ENOENT, errno.EISDIR, errno.ELOOP, errno.ENXIO):
            return False
        raise
    try:
        return not lock.try_acquire()
    finally:
        lock.close()


def _wait(lock: "_Lock", path: Path, timeout: float, what: str, deadline: "float | None" = None) -> None:
    deadline = time.monotonic() + timeout if deadline is None else deadline
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            raise LockTimeoutError(
                f"the lock {path} within {timeout:g} s (REPROHUB_LOCK_TIMEOUT) for {what}",
                "another process still holds it",
                "let that process finish (a killed holder releases it at once), or raise REPROHUB_LOCK_TIMEOUT",
            )
        time.sleep(POLL_SECONDS)


class _Lock:
    """One open handle on a lock file: ``flock`` on POSIX, filelock elsewhere."""

    def __init__(self, path: Path, follow: bool = True, create: bool = True) -> None:
        if fcntl is None:
            from filelock import FileLock

            self._portable = FileLock(str(path), is_singleton=False)
            return
        self._portable, self.path = None, path
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | (os.O_CREAT if create else 0) \
            | (0 if follow else os.O_NOFOLLOW | os.O_NONBLOCK)  # O_NONBLOCK: a planted FIFO must not hang the open
        self._fd = os.open(path, flags, 0o666)  # 0o666 and the umask: group members wait on it too
        self._identity: "tuple[int, int] | None" = None  # the inode held, known where a name may be swapped
        if not follow:
            st = os.fstat(self._fd)
            self._identity = (st.st_dev, st.st_ino)
            if not stat.S_ISREG(st.st_mode):
                os.close(self._fd)
                raise OSError(errno.ENXIO, "not a regular file", str(path))

    @property
    def fd(self) -> int:
        """The open file held (a file that is its own lock: :func:`held_file`)."""
        return self._fd

    def names(self, path: Path) -> bool:
        """Whether the file locked is still the one at ``path`` (no holder before renamed or removed it)."""
        if self._identity is None:
            mine = os.fstat(self._fd)
            self._identity = (mine.st_dev, mine.st_ino)
        try:
            here = os.lstat(path)
        except FileNotFoundError:
            return False
        return (here.st_dev, here.st_ino) == self._identity

    def try_acquire(self) -> bool:
        if self._portable is not None:
            from filelock import Timeout

            try:
                self._portable.acquire(timeout=0)
            except Timeout:
                return False
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as err:
            if err.errno in _NO_FLOCK:
                raise LockUnsupportedError(
                    f"a filesystem that takes flock locks for {self.path}", f"{type(err).__name__}: {err.strerror}",
                    "mount it with flock support (Lustre: -o flock, not noflock or localflock), or keep the hub dir "
                    "on a local disk and share files through REPROHUB_SHARED_CACHE or a mirror") from None
            raise
        return True

    def close(self) -> None:
        """Release (if held) and close: closing the handle drops its ``flock``."""
        if self._portable is not None:
            self._portable.release(force=True)
        else:
            os.close(self._fd)
