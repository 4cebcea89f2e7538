"""Safe, fast extraction of zip archives (the repo archives GitHub serves).

Every member is checked before anything is written: no absolute paths or
drive letters, no ``..`` components, no backslashes, no symlink whose target
leaves the tree, no more than ``max_files`` members or ``max_bytes``
uncompressed bytes (zipfile never yields more than a member's declared size,
so the declared sum bounds the output).  Members are written by a few threads,
each with its own handle on the archive (zlib, sha256 and file writes release
the GIL), and each file is hashed as it is written, giving a digest of the
*extracted tree* that stays stable even when the archive's bytes do not.

What a tree is (its files: nothing inside ``__pycache__``, which is never extracted) and its
digest (versioned, length-prefixed, so no file name can forge it) are defined once, in
:mod:`reprohub.fetch.tree`.  Every failure to read an archive -- not a zip, a damaged member, a name
that is not valid UTF-8, two members with one path, a chain of links that loops -- is an
:class:`~reprohub.errors.ArchiveError` naming the archive and the member.

Example:
    >>> import pathlib
    >>> from reprohub.fetch.treefiles import tree_digest, write_tree_zip
    >>> src = pathlib.Path(tmp, "src"); src.mkdir(); _ = (src / "hubconf.py").write_text("def f(): pass")
    >>> _ = write_tree_zip(src, tmp + "/repo.zip")
    >>> result = extract_zip(tmp + "/repo.zip", tmp + "/out", strip_top=False)
    >>> result.files, result.digests == tree_digest(src)
    (1, True)
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import stat
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ArchiveError
from . import durability, gittree
from .fsutil import SpillFile, fsync_dir, make_temp_dir_beside, remove_tree
from .tree import TreeDigests, is_tree_path

MAX_FILES = 200_000
MAX_BYTES = 8 << 30
COPY_BLOCK = 1 << 20
# what zipfile raises on damaged bytes: a bad CRC or header, a cut stream, names that are not UTF-8
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, NotImplementedError, zipfile.LargeZipFile)


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`extract_zip` wrote: the tree's digests, file count and bytes, and its paths (the files the
    tree digest covers: repo code may write more files into its folder later)."""

    digests: TreeDigests
    files: int
    bytes: int
    top_folder: str
    paths: tuple[str, ...] = ()
    git_tree: str = ""  # the git tree id, where the archive's maker vouched for it (Software Heritage, git)
    git_blockers: tuple[str, ...] = ()  # why the files may not be the commit's tree (fetch/gittree.py)

    @property
    def tree_sha256(self) -> str:
        """The tree digest recorded now (version 2, ``v2:<hex>``)."""
        return self.digests.current


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
    with open_zip(zip_path) as zf:
        members, top, omitted = _plan(zf.infolist(), strip_top, max_files, max_bytes, str(zip_path))
        _make_folders(dest, members, str(zip_path))
        files = [m for m in members if m.kind in "-x"]
        digests = _write_files(zf, zip_path, dest, files, threads, flush)
        links = [m for m in members if m.kind == "l"]
        for m in links:
            digests[m.rel] = _read_member(zf, m, str(zip_path), lambda: _write_link(zf, dest, m))
        _check_links_resolve_inside(dest, links)
    kinds = {m.rel: m.kind for m in members}
    return ExtractResult(
        digests=TreeDigests.of({rel: (kinds[rel], digest) for rel, digest in digests.items()}),
        files=len(digests),
        bytes=sum(m.info.file_size for m in files),
        top_folder=top,
        paths=tuple(sorted(digests)),
        git_blockers=tuple(gittree.blockers(dest, digests, empty_folders(kinds), omitted)),
    )


def empty_folders(kinds: "dict[str, str]") -> list[str]:
    """The folder members with nothing inside: in an archive of a git commit, submodules."""
    parents = {rel.rpartition("/")[0] for rel in kinds}
    return [rel for rel, kind in kinds.items() if kind == "d" and rel not in parents]


def open_zip(source: "str | os.PathLike[str] | SpillFile") -> zipfile.ZipFile:
    """A zip reader of its own (one per thread): of a file, or of an archive held in a :class:`SpillFile`.

    Raises:
        ArchiveError: not a zip archive, or one whose directory is damaged (named by its URL or path).
    """
    try:
        return zipfile.ZipFile(source.reader() if isinstance(source, SpillFile) else source)
    except (*_DAMAGED, OSError) as err:
        raise ArchiveError("a zip archive", f"{source}: {type(err).__name__}: {err}",
                           "download it again; the file is damaged or is not an archive") from err


def _read_member(zf: zipfile.ZipFile, m: "_Member", name: str, read):
    """Run ``read`` (which reads member ``m``), turning damaged bytes and loops into an :class:`ArchiveError`."""
    try:
        return read()
    except _DAMAGED as err:
        raise ArchiveError(f"a readable member {m.rel!r}", f"{type(err).__name__}: {err} in {name}",
                           "download the archive again; it is damaged") from err
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as err:
        raise ArchiveError("each path once in the archive, as a file, a folder or a link",
                           f"{m.rel!r} twice in {name}", "do not use this archive") from err
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise ArchiveError("links that resolve", f"{m.rel!r} in {name} goes through a loop of links",
                           "do not use this archive") from err


def _make_folders(dest: Path, members: list[_Member], name: str) -> None:
    """Create every folder once, up front, so the writers never stat or mkdir."""
    folders = {m.rel for m in members if m.kind == "d"}
    folders.update(m.rel.rpartition("/")[0] for m in members if m.kind != "d")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted(f for f in folders if f):
        try:
            (dest / rel).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as err:
            raise ArchiveError("each path once, as a file or as a folder", f"{rel!r} as both in {name}",
                               "do not use this archive") from err


def extract_into_place(
    zip_path: "str | os.PathLike[str] | SpillFile",
    final_dir: "str | os.PathLike[str]",
    check: "Callable[[ExtractResult], None] | None" = None,
    extract: "Callable[..., ExtractResult] | None" = None,
    **kwargs,
) -> ExtractResult:
    """Extract into a temporary folder beside ``final_dir``, then rename it into place.

    A crash leaves only a ``.incomplete`` folder, never a half-filled ``final_dir``.
    ``check`` sees the result before the rename; if it raises, nothing is put in place.  ``extract``: the
    extractor (default :func:`extract_zip`; :func:`reprohub.fetch.tararchive.extract_tar` for tarballs).
    Nothing is flushed where this boot's id vouches for the tree (the caller's manifest carries it and
    a later boot re-hashes the tree, :mod:`reprohub.fetch.durability`); without one, every file and
    the rename are flushed.
    """
    final_dir = Path(final_dir)
    tmp = make_temp_dir_beside(final_dir)
    flush = durability.boot_id() is None
    try:
        result = (extract or extract_zip)(zip_path, tmp, flush=flush, **kwargs)
        if check is not None:
            check(result)
        if os.path.lexists(final_dir):  # an old tree, or a link planted in its place (removed, not followed)
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
    members, seen, omitted = [], set(), []
    for info in infos:
        rel = _safe_relative(info.filename, top, name)
        if rel and not is_tree_path(rel):  # a committed __pycache__ is never extracted (fetch/tree.py)
            omitted.append(rel)
        if not rel or not is_tree_path(rel):
            continue
        kind = _kind(info)
        if rel in seen and kind != "d":
            raise ArchiveError("each path once in the archive", f"two members named {rel!r} in {name}",
                               "do not use this archive: which of the two is meant cannot be told")
        seen.add(rel)
        members.append(_Member(info, rel, kind))
    return members, top, omitted


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
        with open_zip(zip_path) as own:
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

        def write_one() -> None:
            fd = os.open(f"{dest}/{m.rel}", flags, 0o777 if m.kind == "x" else 0o666)  # minus the umask
            with zf.open(m.info) as src, open(fd, "wb", buffering=0) as out:
                while n := src.readinto(buf):
                    chunk = view[:n]
                    digest.update(chunk)
                    out.write(chunk)
                if flush:
                    os.fsync(fd)

        _read_member(zf, m, zf.filename or "the archive", write_one)
        digests[m.rel] = digest.hexdigest()
    return digests


def _check_links_resolve_inside(dest: Path, links: list[_Member]) -> None:
    """Each link, followed through every other link on disk, must still land inside ``dest``.

    Each target was checked on its own text; chains (``a -> .``, ``b -> a/..``) are only seen here.
    """
    root = os.path.realpath(dest)
    for m in links:
        try:
            real = os.path.realpath(dest / m.rel, strict=True)
        except FileNotFoundError:  # a dangling link: where its text points (checked inside) is all there is
            real = os.path.realpath(dest / m.rel)
        except OSError as err:
            raise ArchiveError("links that resolve", f"{m.rel!r} goes through a loop of links ({err.strerror})",
                               "do not use this archive") from err
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


def zip_tree_digest(zip_path: "str | os.PathLike[str]", strip_top: bool = False) -> TreeDigests:
    """The tree digests the archive would extract to, computed without writing a file.

    Raises:
        ArchiveError: the archive is damaged or unsafe.
    """
    entries = {}
    with open_zip(zip_path) as zf:
        members, _, _ = _plan(zf.infolist(), strip_top, MAX_FILES, MAX_BYTES, str(zip_path))
        for m in members:
            if m.kind == "d":
                continue
            digest = hashlib.sha256()

            def read_one() -> None:
                with zf.open(m.info) as src:
                    while chunk := src.read(COPY_BLOCK):
                        digest.update(chunk)

            _read_member(zf, m, str(zip_path), read_one)
            entries[m.rel] = (m.kind, digest.hexdigest())
    return TreeDigests.of(entries)
