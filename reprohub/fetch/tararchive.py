"""Safe extraction of ``.tar.gz`` archives (what Software Heritage's vault cooks), with the git tree id of
what they hold.

The same rules as zip extraction (:mod:`reprohub.fetch.archive`): every path is checked before it is
written (no absolute path, ``..``, backslash or NUL; one top folder when ``strip_top``), links must stay
inside the tree (each on its own text, then chains on disk), the member count and the bytes are bounded
as they stream, a ``__pycache__`` is never written, and each file is hashed as it is written.  A tar
can hold what a zip cannot: hard links, devices and FIFOs are refused outright, and a member that
names an existing path again is refused (the second would silently win).

Every file is hashed twice while it streams: sha256 for reprohub's tree digest, git's blob sha1 for
the tree id the archive must have (:mod:`reprohub.fetch.gittree`) -- committed ``__pycache__`` files
included, since git's tree holds them even though reprohub does not extract them.

Example:
    >>> import io, tarfile
    >>> buf = io.BytesIO()
    >>> with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    ...     info = tarfile.TarInfo("top/hello.txt"); info.size = 3
    ...     tar.addfile(info, io.BytesIO(b"hi\\n"))
    >>> _ = buf.seek(0)
    >>> result = extract_tar(buf, tmp + "/out")
    >>> result.paths, result.git_tree
    (('hello.txt',), '7a2871192d49caaff5451df37b27afc373d8298b')
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import tarfile
import zlib
from pathlib import Path

from ..errors import ArchiveError
from . import gittree
from .archive import MAX_BYTES, MAX_FILES, ExtractResult, _check_links_resolve_inside, _Member, _safe_relative
from .archive import empty_folders
from .tree import TreeDigests, is_tree_path

COPY_BLOCK = 1 << 20
PLACEHOLDER_SIZE = max(len(text) for text in gittree.PLACEHOLDERS) + 1
PLACEHOLDER_DIGESTS = {hashlib.sha256(text + end).hexdigest() for text in gittree.PLACEHOLDERS for end in (b"", b"\n")}


def extract_tar(source, dest: "str | os.PathLike[str]", *, strip_top: bool = True, max_files: int = MAX_FILES,
                max_bytes: int = MAX_BYTES, flush: bool = False) -> ExtractResult:
    """Extract the gzip'd tar ``source`` (a path or a readable file object) into the new folder ``dest``.

    The result's ``git_tree`` is the git tree id of everything the archive held (``__pycache__`` included),
    for the caller to compare with the id it expects.  Links are made last, so no file is written through one.

    Raises:
        ArchiveError: a damaged or unsafe archive, or one over the limits.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = str(getattr(source, "source", None) or source)
    state = _State(dest, name, max_files, max_bytes, flush)
    try:
        with (tarfile.open(source, mode="r|gz") if isinstance(source, (str, os.PathLike))
              else tarfile.open(fileobj=source.reader() if hasattr(source, "reader") else source, mode="r|gz")) as tar:
            top = None
            for info in tar:
                if strip_top:
                    first = info.name.split("/", 1)[0]
                    top = first if top is None else top
                    if first != top:
                        raise ArchiveError("one top folder", f"{top!r} and {first!r} in {name}",
                                           "extract with strip_top=False")
                rel = _safe_relative(info.name, f"{top}/" if strip_top else "", name)
                if rel:
                    state.add(tar, info, rel)
            for link in state.links:
                state.make_link(link)
    except (FileExistsError, NotADirectoryError) as err:
        raise ArchiveError("each path once, as a file, a folder or a link", f"{err.filename} twice in {name}",
                           "do not use this archive") from err
    except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile) as err:
        raise ArchiveError("a readable .tar.gz archive", f"{type(err).__name__}: {err} in {name}",
                           "download it again; it is damaged or not a gzip'd tar") from err
    _check_links_resolve_inside(dest, [_Member(None, rel, "l") for rel, _ in state.links])
    kinds = {rel: kind for rel, (kind, _) in state.entries.items()} | {rel: "d" for rel in state.folders}
    paths = tuple(sorted(state.entries))
    return ExtractResult(TreeDigests.of(state.entries), len(paths), state.bytes, top or "", paths,
                         git_tree=gittree.tree_id(state.git),
                         git_blockers=tuple(
                             [f"{rel} holds Software Heritage's placeholder text instead of its content (too large "
                              "for the archive, or taken down)" for rel in state.placeholders]
                             + [f"{rel} is an empty folder (a submodule, whose files the archive does not hold)"
                                for rel in empty_folders(kinds)]))


class _State:
    """What an extraction wrote so far, and the checks each new member must pass."""

    def __init__(self, dest: Path, name: str, max_files: int, max_bytes: int, flush: bool) -> None:
        self.dest, self.name, self.max_files, self.max_bytes, self.flush = dest, name, max_files, max_bytes, flush
        self.entries: dict[str, tuple[str, str]] = {}  # written: path -> (kind, sha256)
        self.git: dict[str, tuple[str, str]] = {}  # held: path -> (mode, blob id)
        self.folders: set[str] = set()
        self.placeholders: list[str] = []  # files holding Software Heritage's text instead of their content
        self.links: list[tuple[str, str]] = []  # (path, target), made after every file
        self.bytes = self.count = 0

    def add(self, tar: tarfile.TarFile, info: tarfile.TarInfo, rel: str) -> None:
        self.count += 1
        if self.count > self.max_files:
            raise ArchiveError(f"at most {self.max_files} members", f"more in {self.name}",
                               "raise max_files if you trust it")
        if rel in self.git or (rel in self.folders and not info.isdir()):
            raise ArchiveError("each path once in the archive", f"{rel!r} twice in {self.name}",
                               "do not use this archive: which of the two is meant cannot be told")
        if info.isdir():
            self.folders.add(rel)
            if is_tree_path(rel):
                (self.dest / rel).mkdir(parents=True, exist_ok=True)
        elif info.isreg():
            self._file(tar, info, rel)
        elif info.issym():
            self._link(info, rel)
        else:
            raise ArchiveError("files, folders and symlinks only", f"{rel!r} is a "
                               f"{'hard link' if info.islnk() else 'device or FIFO'} in {self.name}",
                               "do not use this archive")

    def _file(self, tar: tarfile.TarFile, info: tarfile.TarInfo, rel: str) -> None:
        self.bytes += info.size
        if self.bytes > self.max_bytes:
            raise ArchiveError(f"at most {self.max_bytes} uncompressed bytes", f"more in {self.name}",
                               "raise max_bytes if you trust it")
        kind = "x" if info.mode & 0o100 else "-"
        git, sha = gittree.blob_hasher(info.size), hashlib.sha256()
        src = tar.extractfile(info)
        out = None
        if is_tree_path(rel):  # a committed __pycache__ is hashed (git's tree holds it), never written
            (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            out = os.open(self.dest / rel, flags, 0o777 if kind == "x" else 0o666)  # minus the umask
        try:
            while chunk := src.read(COPY_BLOCK):
                git.update(chunk)
                sha.update(chunk)
                if out is not None:
                    os.write(out, chunk)
            if out is not None and self.flush:
                os.fsync(out)
        finally:
            if out is not None:
                os.close(out)
        self.git[rel] = (gittree.EXECUTABLE if kind == "x" else gittree.FILE, git.hexdigest())
        if info.size <= PLACEHOLDER_SIZE and sha.hexdigest() in PLACEHOLDER_DIGESTS:
            self.placeholders.append(rel)
        if out is not None:
            self.entries[rel] = (kind, sha.hexdigest())

    def _link(self, info: tarfile.TarInfo, rel: str) -> None:
        target = info.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../") or "\0" in target:
            raise ArchiveError("symlinks that stay inside the archive's folder", f"{rel} -> {target}",
                               "do not use this archive: a link points outside it")
        raw = target.encode("utf-8", "surrogateescape")
        self.git[rel] = (gittree.SYMLINK, gittree.blob_id(raw))
        if is_tree_path(rel):
            self.entries[rel] = ("l", hashlib.sha256(raw).hexdigest())
            self.links.append((rel, target))

    def make_link(self, link: "tuple[str, str]") -> None:
        rel, target = link
        (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, self.dest / rel)
