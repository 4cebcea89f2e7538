"""Git's own names for a tree: blob and tree ids, so a pinned commit can be cited and found by content.

A git tree id (``swh:1:dir:<id>`` in Software Heritage's spelling) is the sha1 of git's tree object::

    b"tree <len>\\0" + for each entry, sorted by name (a folder's name compared as "name/"):
        mode (b"100644" file, b"100755" executable, b"120000" symlink, b"40000" folder)
        + b" " + name + b"\\0" + the 20 raw bytes of the entry's id

and a blob id the sha1 of ``b"blob <len>\\0" + content`` (a symlink's content is its target).

**When files give back the id.**  An archive of a commit holds its tree's files, so their id can be
recomputed -- unless something rewrote or dropped files on the way, which nothing in the files shows
for sure.  :func:`blockers` names each reason the id cannot be known from an archive, and then it is
recorded ``unknown``, never guessed:

* ``.gitattributes`` with ``export-subst`` or ``ident`` (content rewritten), ``export-ignore`` (files
  dropped), ``eol``/``crlf``/``filter``/``working-tree-encoding`` (content converted) -- in any folder,
  or in a macro (``[attr]name ...``);
* a submodule: it arrives as an empty folder (git has no empty folders, so one is always a submodule);
* a committed ``__pycache__``, which reprohub never extracts (:mod:`reprohub.fetch.tree`).

Symlinks and the executable bit come from the archive (zip ``external_attr``, tar modes) and are kept
on disk, so they count.  The residual case no archive can show -- a ``.gitattributes`` that
``export-ignore`` s itself -- cannot produce a wrong load: the tree digest in the lock still decides.

Example:
    >>> blob_id(b"")
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    >>> tree_id({"hello.txt": ("100644", blob_id(b"hi\\n"))})
    '7a2871192d49caaff5451df37b27afc373d8298b'
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

FILE, EXECUTABLE, SYMLINK, FOLDER = "100644", "100755", "120000", "40000"
MODE_OF_KIND = {"-": FILE, "x": EXECUTABLE, "l": SYMLINK}
SWHID_DIR, SWHID_REV = "swh:1:dir:", "swh:1:rev:"
_SHA1 = re.compile(r"[0-9a-f]{40}")
# attributes with which git archive changes or drops files (set, or set to a value; "-attr" and "!attr" unset)
REWRITING = ("export-subst", "export-ignore", "ident", "filter", "eol", "crlf", "working-tree-encoding")
# what Software Heritage's vault writes in place of a content it does not hold (swh-vault's to_disk.py)
PLACEHOLDERS = (
    b"This content is missing from the Software Heritage archive (or from the mirror used while retrieving it).",
    b"This content has not been retrieved in the Software Heritage archive due to its size.",
    b"This content is hidden.",
)

# path -> (mode, blob id hex)
GitEntries = Mapping[str, "tuple[str, str]"]


def blob_id(content: bytes) -> str:
    """Git's id of a file whose bytes are ``content``.

    Example:
        >>> blob_id(b"hi\\n")
        '45b983be36b73c0788dc9cbcb76cbb80fc7bb057'
    """
    return blob_hasher(len(content), content).hexdigest()


def blob_hasher(size: int, first: bytes = b""):
    """A sha1 primed with a blob's header, for contents hashed as they stream (``update`` the rest)."""
    hasher = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    hasher.update(first)
    return hasher


def tree_id(entries: GitEntries) -> str:
    """The git tree id of ``{"a/b.py": (mode, blob id)}`` (folders implied by the paths; none empty).

    Example:
        >>> tree_id({})  # git's empty tree
        '4b825dc642cb6eb9a060e54bf8d69288fbee4904'
    """
    root: dict = {}
    for path, (mode, oid) in entries.items():
        *folders, name = path.split("/")
        node = root
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = (mode, oid)
    return _tree_object_id(root)


def _tree_object_id(node: dict) -> str:
    def order(name: str) -> bytes:
        raw = name.encode("utf-8", "surrogateescape")
        return raw + b"/" if isinstance(node[name], dict) else raw

    body = bytearray()
    for name in sorted(node, key=order):
        value = node[name]
        mode, oid = (FOLDER, _tree_object_id(value)) if isinstance(value, dict) else value
        body += mode.encode() + b" " + name.encode("utf-8", "surrogateescape") + b"\0" + bytes.fromhex(oid)
    return hashlib.sha1(b"tree %d\0" % len(body) + bytes(body), usedforsecurity=False).hexdigest()


def folder_entries(folder: "str | os.PathLike[str]", paths: Iterable[str]) -> "dict[str, tuple[str, str, str]]":
    """``{path: (mode, blob id, sha256)}`` of ``paths`` in an extracted tree, read once from disk (both
    digests from one read, so the caller can check the files are still the tree's before citing them)."""
    found = {}
    for rel in paths:
        path = Path(folder, rel)
        if path.is_symlink():
            target = os.fsencode(os.readlink(path))
            found[rel] = (SYMLINK, blob_id(target), hashlib.sha256(target).hexdigest())
            continue
        size = path.stat().st_size
        git, sha = blob_hasher(size), hashlib.sha256()
        with open(path, "rb", buffering=0) as src:
            while chunk := src.read(1 << 20):
                git.update(chunk)
                sha.update(chunk)
        found[rel] = (EXECUTABLE if path.stat().st_mode & 0o100 else FILE, git.hexdigest(), sha.hexdigest())
    return found


def attribute_blockers(rel: str, text: str) -> list[str]:
    """Why a ``.gitattributes`` file at ``rel`` makes an archive's files differ from its commit's tree.

    Example:
        >>> attribute_blockers(".gitattributes", "*.py text\\nversion.py export-subst\\n*.bin -crlf\\n")
        ['.gitattributes sets export-subst']
    """
    found = []
    for line in text.splitlines():
        words = line.strip().split()
        if not words or words[0].startswith("#"):
            continue
        for word in words[1:]:
            name = word.split("=", 1)[0]
            if name in REWRITING and not word.startswith(("-", "!")):
                found.append(f"{rel} sets {name}")
    return list(dict.fromkeys(found))


def blockers(folder: "str | os.PathLike[str]", paths: Iterable[str], empty_folders: Iterable[str] = (),
             omitted: Iterable[str] = ()) -> list[str]:
    """Every reason the extracted tree at ``folder`` may not be its commit's tree byte for byte (see the
    module docstring); empty when its git tree id can be computed from its files."""
    found = []
    for rel in paths:
        if rel == ".gitattributes" or rel.endswith("/.gitattributes"):
            path = Path(folder, rel)
            if not path.is_symlink():
                found += attribute_blockers(rel, path.read_bytes().decode("utf-8", "replace"))
    found += [f"{rel} is a submodule (an archive holds it as an empty folder)" for rel in sorted(empty_folders)]
    found += [f"{rel} is inside __pycache__, which reprohub never extracts" for rel in sorted(omitted)][:1]
    return found


def is_git_id(value: object) -> bool:
    """Whether ``value`` is a 40-hex git object id."""
    return isinstance(value, str) and _SHA1.fullmatch(value) is not None
