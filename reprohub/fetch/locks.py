"""Inter-process locks: one lock file (``<name>.lock``) per guarded path, held with ``flock``.

A lock file stays in place after release: removing it would let two processes
lock two different inodes under one name.  The kernel drops a ``flock`` when
its holder dies, so a killed process never leaves a stale lock behind.  Two
handles on one file exclude each other even within one process (the lock
belongs to the open file), so threads queue exactly like processes.

**Shared filesystems.**  Linux NFS clients (since 2.6.12, ``man 2 flock``) carry a ``flock`` to the server as a
whole-file ``fcntl`` lock, so it holds across nodes; Lustre does so only when mounted with ``-o flock``
(``localflock`` keeps locks on one node, ``noflock`` refuses them).  A filesystem that refuses ``flock`` is a
:class:`~reprohub.errors.LockUnsupportedError` naming the mount option, never a lock silently not taken.
Correctness never rests on the lock alone (temporary file and rename, digests): a lock only saves a second
download.

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
import time
from pathlib import Path
from typing import Iterator

from .. import settings
from ..errors import LockTimeoutError, LockUnsupportedError
from .fsutil import writable

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


def is_held(path: "str | os.PathLike[str]") -> bool:
    """Whether some process (or another handle in this one) holds the lock ``path`` right now."""
    if not os.path.exists(path):
        return False
    lock = _Lock(Path(path))
    try:
        return not lock.try_acquire()
    finally:
        lock.close()


def _wait(lock: "_Lock", path: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
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

    def __init__(self, path: Path) -> None:
        if fcntl is None:
            from filelock import FileLock

            self._portable = FileLock(str(path), is_singleton=False)
            return
        self._portable, self.path = None, path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)  # group members wait on it too

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
