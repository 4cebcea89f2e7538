"""A repo tree as files on disk: its digest recomputed from them (``reprohub verify``), the files the repo's
code added since, and its byte-deterministic zip (a bundle's).  What a tree *is* is in :mod:`reprohub.fetch.tree`;
extracting one safely is :mod:`reprohub.fetch.archive`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import zipfile
from pathlib import Path
from typing import Collection

from .fsutil import atomic_replace_with, sha256_file
from .tree import TreeDigests, is_tree_path

log = logging.getLogger("reprohub")

COPY_BLOCK = 1 << 20


def tree_digest(folder: "str | os.PathLike[str]", only: "Collection[str] | None" = None) -> TreeDigests:
    """The tree digests of an extracted folder, recomputed from disk (``reprohub verify`` uses them).

    Equal to :attr:`ExtractResult.digests` for an untouched extraction.  ``only``: the paths the tree was
    extracted with (:attr:`ExtractResult.paths`); files the repo's code wrote since are no part of it, and
    one of those paths that is gone still changes the digest.
    """
    entries = {}
    for rel, path in tree_files(folder, only):
        if path.is_symlink():
            entries[rel] = ("l", hashlib.sha256(os.readlink(path).encode("utf-8", "surrogateescape")).hexdigest())
        else:
            entries[rel] = ("x" if path.stat().st_mode & 0o100 else "-", sha256_file(path))
    return TreeDigests.of(entries)


def extra_files(folder: "str | os.PathLike[str]", only: "Collection[str]") -> list[str]:
    """Files in an extracted tree's folder that the tree did not bring (written there by the repo's code:
    silero-models downloads into its own folder), sorted.

    Example:
        >>> import tempfile, pathlib
        >>> src = pathlib.Path(tempfile.mkdtemp()); _ = (src / "hubconf.py").write_text(""); _ = (src / "w.pt").write_text("")
        >>> extra_files(src, ["hubconf.py"])
        ['w.pt']
    """
    kept = set(only)
    return [rel for rel, _ in tree_files(folder) if rel not in kept]


def tree_files(folder: "str | os.PathLike[str]", only: "Collection[str] | None" = None) -> "list[tuple[str, Path]]":
    """What a tree is made of, for its digest and its bundle zip alike: files and links by relative path,
    sorted, as :func:`reprohub.fetch.tree.is_tree_path` defines (no ``__pycache__``, no empty folders);
    with ``only``, just those of these paths."""
    root = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if is_tree_path(d)]
        base = Path(dirpath)
        for entry in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            path = base / entry
            if path.is_symlink() or path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    if only is not None:
        kept = set(only)
        found = [(rel, path) for rel, path in found if rel in kept]
    return sorted(found)


def write_tree_zip(folder: "str | os.PathLike[str]", dest: "str | os.PathLike[str]",
                   only: "Collection[str] | None" = None) -> int:
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
        >>> from reprohub.fetch.archive import zip_tree_digest
        >>> write_tree_zip(src, out), zip_tree_digest(out) == tree_digest(src)
        (1, True)
    """
    entries = tree_files(folder, only)

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


def files_changed(path: "str | os.PathLike[str]", recorded: TreeDigests, manifest: dict) -> bool:
    """Whether the files a cached tree was extracted with changed since (files its code wrote later do not count):
    its manifest's ``paths`` hashed again and compared with ``recorded``; a change is logged, naming the tree."""
    paths = manifest.get("paths")
    found = tree_digest(path, paths if isinstance(paths, list) else None)
    if found != recorded:
        log.warning("cached tree %s was changed (tree sha256 %s, extracted as %s); extracting it again",
                    path, found.current, recorded.current)
        return True
    return False
