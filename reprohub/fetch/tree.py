"""What a repo tree is, and its content address: one definition for extraction, verify, bundle and mirrors.

**A tree's files** are the archive's (or folder's) regular files and symlinks, by ``/``-separated
relative path, except anything inside a ``__pycache__`` folder: Python writes those into cached
repos on import, and a committed one is never extracted (a stale or planted ``.pyc`` would otherwise
run instead of its source).  Empty folders are not part of a tree.  :func:`is_tree_path` is the
rule; extraction, :func:`reprohub.fetch.treefiles.tree_digest`, ``reprohub verify`` and
``reprohub bundle`` all apply it.

**The tree digest** names exactly one tree.  Version 2 (written as ``v2:<hex>``) is the sha256 of
a versioned, length-prefixed encoding, so no choice of names can make two trees encode alike (a
name may hold a newline, a space or anything but NUL and ``/`` as a separator)::

    b"reprohub-tree-v2\\0" + for each entry, sorted by its path's bytes:
        kind (1 byte: b"-" file, b"x" executable file, b"l" symlink)
        + decimal length of the path in bytes + b":" + the path's bytes
        + the 32 raw bytes of sha256(content)            (a symlink's content is its target)

Each record is self-delimiting (one byte, a length, exactly that many bytes, exactly 32 bytes), so
the encoding decodes uniquely back to its entries: the digest is as injective as sha256.
``tests/test_tree.py`` tries it with Hypothesis over adversarial names.

Version 1 (a bare 64-hex value, in locks written before) was the sha256 of the lines
``"<kind> <hex> <path>\\n"``: a newline inside a name could forge lines, so two trees could share
it.  It is still accepted for the trees where it is unambiguous, those without a newline in any
name (the lines then parse uniquely), so old locks keep verifying; for any other tree it is
undefined and matches no pin.

Example:
    >>> entries = {"hubconf.py": ("-", "ab" * 32)}
    >>> digests = TreeDigests.of(entries)
    >>> digests.current.startswith("v2:"), digests.matches(digests.legacy), digests.matches("v2:" + "0" * 64)
    (True, True, False)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Mapping

V2_PREFIX = "v2:"
_V2_MAGIC = b"reprohub-tree-v2\0"
_HEX64 = re.compile(r"[0-9a-f]{64}")
KINDS = ("-", "x", "l")

# path -> (kind, sha256 hex of the content)
Entries = Mapping[str, "tuple[str, str]"]


def is_tree_path(rel: str) -> bool:
    """Whether a relative path belongs to a tree: not inside a ``__pycache__`` folder.

    Example:
        >>> is_tree_path("models/net.py"), is_tree_path("models/__pycache__/net.cpython-311.pyc")
        (True, False)
    """
    return "__pycache__" not in rel.split("/")


def _encode(rel: str) -> bytes:
    return rel.encode("utf-8", "surrogateescape")


def digest_v2(entries: Entries) -> str:
    """The version-2 tree digest (``v2:<hex>``) of ``{path: (kind, content sha256 hex)}``."""
    h = hashlib.sha256(_V2_MAGIC)
    for name, (kind, digest) in sorted((_encode(rel), value) for rel, value in entries.items()):
        if kind not in KINDS or not _HEX64.fullmatch(digest):
            raise ValueError(f"tree entry {name!r}: kind {kind!r}, digest {digest!r}")
        h.update(kind.encode("ascii") + str(len(name)).encode("ascii") + b":" + name + bytes.fromhex(digest))
    return V2_PREFIX + h.hexdigest()


def digest_v1(entries: Entries) -> str | None:
    """The version-1 digest (bare hex), or ``None`` where it is ambiguous (a name holds a newline)."""
    if any("\n" in rel for rel in entries):
        return None
    lines = "".join(f"{kind} {digest} {rel}\n" for rel, (kind, digest) in sorted(entries.items()))
    return hashlib.sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()


def is_digest_text(value: object) -> bool:
    """Whether ``value`` is a tree digest as a lock or bundle writes it (``v2:<hex>``, or a version-1 hex).

    Example:
        >>> is_digest_text("v2:" + "a" * 64), is_digest_text("a" * 64), is_digest_text("v3:" + "a" * 64)
        (True, True, False)
    """
    return isinstance(value, str) and bool(_HEX64.fullmatch(value.removeprefix(V2_PREFIX)))


def item_name(value: str) -> str:
    """Where a bundle keeps the zip of the tree with this digest (relative to the bundle).

    Example:
        >>> item_name("v2:" + "a" * 64)[:14], item_name("b" * 64)[:18]
        ('repos/tree-v2/', 'repos/tree-sha256/')
    """
    if not is_digest_text(value):
        raise ValueError(f"not a tree digest: {value!r}")
    if value.startswith(V2_PREFIX):
        return f"repos/tree-v2/{value.removeprefix(V2_PREFIX)}.zip"
    return f"repos/tree-sha256/{value}.zip"


@dataclass(frozen=True)
class TreeDigests:
    """A tree's digest in every version: :attr:`current` (v2, what is recorded now) and :attr:`legacy` (v1)."""

    current: str
    legacy: str | None

    @classmethod
    def of(cls, entries: Entries) -> "TreeDigests":
        """Both digests of ``{path: (kind, content sha256 hex)}`` (the paths already filtered by :func:`is_tree_path`)."""
        return cls(digest_v2(entries), digest_v1(entries))

    @classmethod
    def from_record(cls, record: Mapping) -> "TreeDigests | None":
        """The digests a manifest recorded (``tree_sha256``, ``tree_sha256_v1``), or ``None`` if it has none."""
        current, legacy = record.get("tree_sha256"), record.get("tree_sha256_v1")
        if not (isinstance(current, str) and current.startswith(V2_PREFIX) and is_digest_text(current)):
            return None
        return cls(current, legacy if isinstance(legacy, str) and _HEX64.fullmatch(legacy) else None)

    def record(self) -> dict[str, str]:
        """The fields a manifest stores (see :meth:`from_record`)."""
        return {"tree_sha256": self.current, **({"tree_sha256_v1": self.legacy} if self.legacy else {})}

    def matches(self, pinned: str | None) -> bool:
        """Whether a pinned digest (either version) names this tree."""
        if pinned is None:
            return False
        return pinned == (self.current if pinned.startswith(V2_PREFIX) else self.legacy)

    def as_pinned(self, pinned: str | None) -> str:
        """The digest to report against a pin: the pin's own text when it names this tree (an old lock stays
        as it is), else the current version."""
        return pinned if pinned is not None and self.matches(pinned) else self.current
