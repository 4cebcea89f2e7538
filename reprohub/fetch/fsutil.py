"""Atomic file writes and inter-process locks: the only place files are replaced.

Every write is: a temporary file in the destination's own folder, ``fsync``,
``os.replace``.  A reader therefore sees the old file or the new one, never a
half-written one, even if the writer is killed.  Locks are in :mod:`reprohub.fetch.locks`.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> atomic_write_bytes(os.path.join(d, "x.txt"), b"hello")
    >>> open(os.path.join(d, "x.txt"), "rb").read()
    b'hello'
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping


from ..errors import CacheWriteError, ProjectPathError

log = logging.getLogger("reprohub")
HASH_BLOCK = 1 << 20


def temp_path_beside(path: "str | os.PathLike[str]", suffix: str = ".incomplete") -> Path:
    """A fresh, unique temporary name in ``path``'s folder (same filesystem, so rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}{suffix}")


def fsync_dir(folder: "str | os.PathLike[str]") -> None:
    """Flush a folder's entries, so a rename inside it survives a crash."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def writable(path: "str | os.PathLike[str]") -> Iterator[None]:
    """Turn "read-only file system" and "permission denied" while writing ``path`` into a
    :class:`~reprohub.errors.CacheWriteError` that names the folder and the fix."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise CacheWriteError(
            f"a writable folder for {path}", f"{err.strerror} ({err.filename or path})",
            "point the hub dir at a writable folder (TORCH_HOME=/some/writable/dir or reprohub.set_dir(...)); "
            "a read-only cache that already holds everything works with --hub-offline or REPROHUB_OFFLINE=1",
        ) from err


def atomic_write_bytes(path: "str | os.PathLike[str]", data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync unless ``durable=False``, ``os.replace``)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_replace_with(path, write, durable)


def atomic_replace_with(path: "str | os.PathLike[str]", write: "Callable[[Path], None]",
                        durable: bool = True) -> None:
    """Let ``write`` fill a temporary file beside ``path``, fsync it, and rename it over ``path``.

    If ``write`` raises, ``path`` is untouched and the temporary file is removed.  ``durable=False``
    skips the flushes: still atomic for every reader, but after a power loss the file may be old,
    missing or unreadable, which is fine for records that are only hints or carry a boot id.
    """
    path = Path(path)
    tmp = temp_path_beside(path, ".tmp")
    try:
        with writable(path):
            try:
                write(tmp)
            except FileNotFoundError:  # the folder does not exist yet: the rare case, so no mkdir up front
                path.parent.mkdir(parents=True, exist_ok=True)
                write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_json(path: "str | os.PathLike[str]", obj: Any, durable: bool = True) -> None:
    """Write ``obj`` as sorted, indented JSON, atomically (``durable=False``: without the flushes)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), durable)


def read_json(path: "str | os.PathLike[str]") -> Any | None:
    """The JSON in ``path``, or ``None`` if it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def read_record(path: "str | os.PathLike[str]", types: "Mapping[str, type | tuple[type, ...]] | None" = None) -> dict | None:
    """The JSON object in ``path``, or ``None`` if it is missing, unreadable, not an object, or if a field
    named in ``types`` has another type: a record of the wrong shape counts as no record at all.

    Example:
        >>> import tempfile, os; p = os.path.join(tempfile.mkdtemp(), "r.json")
        >>> _ = open(p, "w").write('{"url": 5}')
        >>> read_record(p), read_record(p, {"url": str})
        ({'url': 5}, None)
    """
    return checked_record(read_json(path), types)


def checked_record(data, types: "Mapping[str, type | tuple[type, ...]] | None" = None) -> dict | None:
    """``data`` if it is a JSON object whose fields named in ``types`` have those types, else ``None``."""
    if not isinstance(data, dict):
        return None
    for name, kind in (types or {}).items():
        if name in data and (not isinstance(data[name], kind) or isinstance(data[name], bool) and kind is int):
            return None
    return data


def remove_tree(path: "str | os.PathLike[str]") -> None:
    """Remove a file or folder if it exists (never following a link out, never opening a FIFO or device: anything
    but a real folder is unlinked)."""
    try:
        is_folder = stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return
    if is_folder:
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def inside_project(project: "str | os.PathLike[str]", path: "str | os.PathLike[str]", what: str) -> Path:
    """``path`` if, with every link followed, it still lies inside the folder ``project``; else a
    :class:`~reprohub.errors.ProjectPathError`.  For what reprohub writes or deletes in a project (goldens,
    ``hub-responses/``): a folder committed as a link to ``../outside`` must not steer a prune there.  A link
    that stays inside the project is followed as usual.

    Example:
        >>> import tempfile; root = Path(tempfile.mkdtemp()); (root / "out").mkdir()
        >>> (root / "project").mkdir(); (root / "project" / "hub-responses").symlink_to("../out")
        >>> inside_project(root / "project", root / "project" / "hub-responses", "hub-responses/")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        reprohub.errors.ProjectPathError: expected hub-responses/ inside the project ...
    """
    real, top = Path(path).resolve(), Path(project).resolve()
    if real != top and top not in real.parents:
        raise ProjectPathError(f"{what} inside the project {top}", f"a link to {real}",
                               "nothing was written or deleted there; replace the link with a folder of the "
                               "project (git rm it, then record again)")
    return Path(path)


def make_temp_dir_beside(path: "str | os.PathLike[str]") -> Path:
    """A fresh temporary folder next to ``path`` (for build-then-rename), with the modes the umask gives any
    folder: ``mkdtemp`` makes it 0700, and renamed into a shared cache it would shut the group out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    made = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".incomplete", dir=path.parent))
    os.chmod(made, 0o777 & ~current_umask())
    return made


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: POSIX has no other way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256_file(path: "str | os.PathLike[str]") -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks.

    Example:
        >>> import tempfile; p = tempfile.mktemp(); _ = open(p, "wb").write(b"abc")
        >>> sha256_file(p)[:12]
        'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


class SpillFile(io.RawIOBase):
    """A scratch file for a body read once (a repo archive): in memory up to ``limit`` bytes, then in a
    temporary file beside ``near`` (the cache's filesystem, not a small /tmp), removed on close.

    A small archive thus costs no file create, rename and unlink; :meth:`reader` hands each extraction
    thread its own view of the bytes.

    Example:
        >>> import tempfile, os
        >>> with SpillFile(os.path.join(tempfile.mkdtemp(), "repo"), limit=4) as f:
        ...     _ = f.write(b"ab"); in_memory = f.path is None
        ...     _ = f.write(b"cdef"); spilled = f.path is not None
        ...     in_memory, spilled, f.reader().read()
        (True, True, b'abcdef')
    """

    def __init__(self, near: "str | os.PathLike[str]", limit: int = 32 << 20) -> None:
        super().__init__()
        self._near, self._limit = Path(near), limit
        self._file: Any = io.BytesIO()
        self.path: Path | None = None
        self.source = "an archive held in memory"  # what errors call it: the URL it came from, once known

    def __str__(self) -> str:
        return self.source

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.path is None and self._file.tell() + len(data) > self._limit:
            self._spill()
        return self._file.write(data)

    def readinto(self, buf) -> int:
        return self._file.readinto(buf)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def truncate(self, size: int | None = None) -> int:
        return self._file.truncate(size)

    def flush(self) -> None:
        self._file.flush()

    def reader(self) -> BinaryIO:
        """A new, independent reader of everything written so far."""
        self._file.flush()
        return open(self.path, "rb") if self.path is not None else io.BytesIO(self._file.getbuffer())

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._file.close()
            if self.path is not None:
                self.path.unlink(missing_ok=True)

    def _spill(self) -> None:
        self.path = temp_path_beside(self._near, ".zip")
        with writable(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            spilled = open(self.path, "w+b")
        spilled.write(self._file.getbuffer())
        self._file = spilled
