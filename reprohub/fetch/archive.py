"""Safe, fast extraction of zip archives (the repo archives GitHub serves).

Every member is checked before anything is written: no absolute paths or
drive letters, no ``..`` components, no backslashes, no symlink whose target
leaves the tree, no more than ``max_files`` members or ``max_bytes``
uncompressed bytes (zipfile never yields more than a member's declared size,
so the declared sum bounds the output).  Members are written by a few threads,
each with its own handle on the archive (zlib, sha256 and file writes release
the GIL), and each file is hashed as it is written, giving a digest of the
*extracted tree* that stays stable even when the archive's bytes do not.

The tree digest is the sha256 of the sorted lines ``"<kind> <sha256> <path>\\n"``
(kind ``x`` executable, ``-`` regular, ``l`` symlink hashed by its target).

Example:
    >>> import pathlib
    >>> src = pathlib.Path(tmp, "src"); src.mkdir(); _ = (src / "hubconf.py").write_text("def f(): pass")
    >>> _ = write_tree_zip(src, tmp + "/repo.zip")
    >>> result = extract_zip(tmp + "/repo.zip", tmp + "/out", strip_top=False)
    >>> result.files, result.tree_sha256 == tree_digest(src)
    (1, True)
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ArchiveError
from . import durability
from .fsutil import SpillFile, atomic_replace_with, fsync_dir, make_temp_dir_beside, remove_tree, sha256_file

MAX_FILES = 200_000
MAX_BYTES = 8 << 30
COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`extract_zip` wrote: the tree digest, file count and bytes."""

    tree_sha256: str
    files: int
    bytes: int
    top_folder: str


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    rel: str
    kind: str  # "-" file, "x" executable, "l" symlink, "d" folder


def extract_zip(
    zip_path: "str | os.PathLike[str] | SpillFile",
    dest: "str | os.PathLike[str]",
    *,
    strip_top: bool = True,
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_BYTES,
    threads: int | None = None,
    flush: bool = False,
) -> ExtractResult:
    """Extract ``zip_path`` into the empty or new folder ``dest``, safely.

    Args:
        strip_top: drop the single top folder (``owner-repo-sha7/``) GitHub puts in archives.
        max_files, max_bytes: refuse archives above these sizes.
        threads: writer threads (default: up to 4, fewer for small archives).
        flush: ``fsync`` every file before returning (for trees no boot id vouches for).

    Raises:
        ArchiveError: an unsafe or oversized archive; nothing is left in ``dest``'s place.
    """
    dest = Path(dest)
    try:
        zf = _open_zip(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ArchiveError("a zip archive", f"{zip_path}: {err}", "download it again; the file is damaged") from err
    with zf:
        members, top = _plan(zf.infolist(), strip_top, max_files, max_bytes, str(zip_path))
        _make_folders(dest, members)
        files = [m for m in members if m.kind in "-x"]
        digests = _write_files(zf, zip_path, dest, files, threads, flush)
        links = [m for m in members if m.kind == "l"]
        for m in links:
            digests[m.rel] = _write_link(zf, dest, m)
        _check_links_resolve_inside(dest, links)
    kinds = {m.rel: m.kind for m in members}
    return ExtractResult(
        tree_sha256=_tree_sha256({rel: (kinds[rel], digest) for rel, digest in digests.items()}),
        files=len(digests),
        bytes=sum(m.info.file_size for m in files),
        top_folder=top,
    )


def _open_zip(source: "str | os.PathLike[str] | SpillFile") -> zipfile.ZipFile:
    """A zip reader of its own (one per thread): of a file, or of an archive held in a :class:`SpillFile`."""
    return zipfile.ZipFile(source.reader() if isinstance(source, SpillFile) else source)


def _make_folders(dest: Path, members: list[_Member]) -> None:
    """Create every folder once, up front, so the writers never stat or mkdir."""
    folders = {m.rel for m in members if m.kind == "d"}
    folders.update(m.rel.rpartition("/")[0] for m in members if m.kind != "d")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted(f for f in folders if f):
        (dest / rel).mkdir(parents=True, exist_ok=True)


def tree_digest(folder: "str | os.PathLike[str]") -> str:
    """The tree digest of an extracted folder, recomputed from disk (``reprohub verify`` uses it).

    Equal to :attr:`ExtractResult.tree_sha256` for an untouched extraction.
    """
    entries = {}
    for rel, path in tree_files(folder):
        if path.is_symlink():
            entries[rel] = ("l", hashlib.sha256(os.readlink(path).encode("utf-8", "surrogateescape")).hexdigest())
        else:
            entries[rel] = ("x" if path.stat().st_mode & 0o100 else "-", sha256_file(path))
    return _tree_sha256(entries)


def tree_files(folder: "str | os.PathLike[str]") -> "list[tuple[str, Path]]":
    """What a tree is made of, for its digest and its bundle zip alike: files and links by relative path,
    sorted, without ``__pycache__`` (imports write it into cached repos) and without empty folders."""
    root = Path(folder)
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*")
                  if (p.is_symlink() or p.is_file()) and "__pycache__" not in p.relative_to(root).parts)


def _tree_sha256(entries: "dict[str, tuple[str, str]]") -> str:
    lines = "".join(f"{kind} {digest} {rel}\n" for rel, (kind, digest) in sorted(entries.items()))
    return hashlib.sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()


def extract_into_place(
    zip_path: "str | os.PathLike[str] | SpillFile",
    final_dir: "str | os.PathLike[str]",
    check: "Callable[[ExtractResult], None] | None" = None,
    **kwargs,
) -> ExtractResult:
    """Extract into a temporary folder beside ``final_dir``, then rename it into place.

    A crash leaves only a ``.incomplete`` folder, never a half-filled ``final_dir``.
    ``check`` sees the result before the rename; if it raises, nothing is put in place.
    Nothing is flushed where this boot's id vouches for the tree (the caller's manifest carries it and
    a later boot re-hashes the tree, :mod:`reprohub.fetch.durability`); without one, every file and
    the rename are flushed.
    """
    final_dir = Path(final_dir)
    tmp = make_temp_dir_beside(final_dir)
    flush = durability.boot_id() is None
    try:
        result = extract_zip(zip_path, tmp, flush=flush, **kwargs)
        if check is not None:
            check(result)
        if final_dir.exists():
            remove_tree(final_dir)
        os.rename(tmp, final_dir)
        if flush:
            fsync_dir(final_dir.parent)
        return result
    finally:
        remove_tree(tmp)


def _plan(infos: list[zipfile.ZipInfo], strip_top: bool, max_files: int, max_bytes: int, name: str):
    if len(infos) > max_files:
        raise ArchiveError(f"at most {max_files} members", f"{len(infos)} in {name}", "raise max_files if you trust it")
    declared = sum(i.file_size for i in infos)
    if declared > max_bytes:
        raise ArchiveError(f"at most {max_bytes} uncompressed bytes", f"{declared} in {name}",
                           "raise max_bytes if you trust it")
    top = _top_folder(infos, name) if strip_top else ""
    members = []
    for info in infos:
        rel = _safe_relative(info.filename, top, name)
        if rel:
            members.append(_Member(info, rel, _kind(info)))
    return members, top


def _top_folder(infos: list[zipfile.ZipInfo], name: str) -> str:
    tops = {i.filename.split("/", 1)[0] for i in infos}
    if len(tops) != 1 or not all("/" in i.filename or i.is_dir() for i in infos):
        raise ArchiveError("one top folder (as in GitHub archives)", f"{sorted(tops)[:5]} in {name}",
                           "extract with strip_top=False")
    return tops.pop() + "/"


def _safe_relative(filename: str, top: str, name: str) -> str:
    def unsafe(why: str) -> ArchiveError:
        return ArchiveError("member paths inside the archive's folder", f"{filename!r} ({why}) in {name}",
                            "do not use this archive: it tries to write outside its folder")

    if "\\" in filename or "\x00" in filename:
        raise unsafe("backslash or NUL")
    if filename.startswith("/") or (len(filename) > 1 and filename[1] == ":"):
        raise unsafe("absolute path")
    if top and not filename.startswith(top) and filename != top.rstrip("/"):
        raise unsafe("outside the top folder")
    rel = filename[len(top):] if top else filename
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise unsafe("'..' component")
    return "/".join(parts)


def _kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.is_dir():
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    return "x" if mode & 0o111 else "-"


def _write_files(zf: zipfile.ZipFile, zip_path, dest: Path, files: list[_Member], threads: int | None,
                 flush: bool) -> dict[str, str]:
    total = sum(m.info.file_size for m in files)
    if threads is None:
        # creating files is the cost of many small ones (~150 us each on these VMs) and it overlaps across
        # threads as well as inflating and hashing large ones do; a handful of files is not worth a pool
        threads = 1 if total < (32 << 20) and len(files) < 64 else min(4, os.cpu_count() or 1) + 1
    if threads <= 1:
        return _write_shard(zf, str(dest), files, flush)
    shards: list[list[_Member]] = [[] for _ in range(threads)]
    for i, m in enumerate(sorted(files, key=lambda m: -m.info.file_size)):
        shards[i % threads].append(m)

    def write_own(shard: list[_Member]) -> dict[str, str]:
        with _open_zip(zip_path) as own:
            return _write_shard(own, str(dest), shard, flush)

    digests: dict[str, str] = {}
    with ThreadPoolExecutor(threads, thread_name_prefix="reprohub-unzip") as pool:
        for part in pool.map(write_own, shards):
            digests.update(part)
    return digests


def _write_shard(zf: zipfile.ZipFile, dest: str, shard: list[_Member], flush: bool) -> dict[str, str]:
    digests = {}
    buf = bytearray(min(COPY_BLOCK, max((m.info.file_size for m in shard), default=1) or 1))
    view = memoryview(buf)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for m in shard:
        digest = hashlib.sha256()
        fd = os.open(f"{dest}/{m.rel}", flags, 0o755 if m.kind == "x" else 0o644)
        with zf.open(m.info) as src, open(fd, "wb", buffering=0) as out:
            while n := src.readinto(buf):
                chunk = view[:n]
                digest.update(chunk)
                out.write(chunk)
            if flush:
                os.fsync(fd)
        digests[m.rel] = digest.hexdigest()
    return digests


def _check_links_resolve_inside(dest: Path, links: list[_Member]) -> None:
    """Each link, followed through every other link on disk, must still land inside ``dest``.

    Each target was checked on its own text; chains (``a -> .``, ``b -> a/..``) are only seen here.
    """
    root = os.path.realpath(dest)
    for m in links:
        real = os.path.realpath(dest / m.rel)
        if real != root and not real.startswith(root + os.sep):
            raise ArchiveError("symlinks that stay inside the archive's folder",
                               f"{m.rel} resolves to {real} through other links",
                               "do not use this archive: a chain of links points outside it")


def _write_link(zf: zipfile.ZipFile, dest: Path, m: _Member) -> str:
    target = zf.read(m.info).decode("utf-8", "surrogateescape")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(m.rel), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise ArchiveError("symlinks that stay inside the archive's folder", f"{m.rel} -> {target}",
                           "do not use this archive: a link points outside it")
    link = dest / m.rel
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)
    return hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()


def write_tree_zip(folder: "str | os.PathLike[str]", dest: "str | os.PathLike[str]") -> int:
    """Write the files of ``folder`` into a byte-deterministic zip at ``dest`` (atomically); returns members.

    The same tree always gives the same bytes, on any machine: members sorted,
    stored uncompressed (zlib versions would change deflated bytes), a fixed
    timestamp, Unix modes 644/755, symlinks as links; ``__pycache__`` and empty
    folders left out, exactly as :func:`tree_digest` leaves them out, so
    extracting the zip gives the same tree digest as ``folder``.

    Example:
        >>> import tempfile, pathlib
        >>> src = pathlib.Path(tempfile.mkdtemp()); _ = (src / "hubconf.py").write_text("x = 1\\n")
        >>> out = src.parent / (src.name + ".zip")
        >>> write_tree_zip(src, out), zip_tree_digest(out) == tree_digest(src)
        (1, True)
    """
    entries = tree_files(folder)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for rel, path in entries:
                info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
                info.create_system = 3  # Unix: the modes below are honoured
                if path.is_symlink():
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(info, os.readlink(path).encode("utf-8", "surrogateescape"))
                    continue
                mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
                info.external_attr = (stat.S_IFREG | mode) << 16
                with open(path, "rb") as src, zf.open(info, "w") as out:
                    while chunk := src.read(COPY_BLOCK):
                        out.write(chunk)

    atomic_replace_with(dest, write)
    return len(entries)


def zip_tree_digest(zip_path: "str | os.PathLike[str]", strip_top: bool = False) -> str:
    """The tree digest the archive would extract to, computed without writing a file."""
    entries = {}
    with zipfile.ZipFile(zip_path) as zf:
        members, _ = _plan(zf.infolist(), strip_top, MAX_FILES, MAX_BYTES, str(zip_path))
        for m in members:
            if m.kind == "d":
                continue
            digest = hashlib.sha256()
            with zf.open(m.info) as src:
                while chunk := src.read(COPY_BLOCK):
                    digest.update(chunk)
            entries[m.rel] = (m.kind, digest.hexdigest())
    return _tree_sha256(entries)
