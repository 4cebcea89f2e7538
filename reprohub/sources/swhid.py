"""The SWHIDs a lock cites for a pinned commit: ``swh:1:rev:<commit>`` and, where it can be known, the
tree's ``swh:1:dir:<git tree id>``.

How the tree id is known is recorded beside it (``git_tree`` in the lock), and an id is never guessed:

* ``git``: asked of git itself (a ``git+`` remote's bare mirror);
* ``archive``: checked against Software Heritage's revision when the tree came from there;
* ``computed``: recomputed from the extracted files, where nothing can have rewritten them
  (:func:`reprohub.fetch.gittree.blockers`), and only while the files are still the ones the tree
  digest covers;
* ``unknown: <why>``: anything else, with the reason.

Extraction notes in the commit's record (``<commit>.json``) which case applies (``git_tree``); the id
itself is computed at most once, when a lock first records the commit, and kept in the record.

Example:
    >>> repo = Hub(hub_dir=tmp).resolve("acme/tiny:v1", trust_repo=True, verbose=False)
    >>> ident = tree_identity(repo.path)
    >>> ident.how, ident.swhid_dir.startswith("swh:1:dir:")
    ('computed', True)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..cache.layout import manifest_beside
from ..fetch.archive import ExtractResult
from ..fetch.fsutil import atomic_write_json, read_record
from ..fetch.locks import file_lock
from ..fetch.gittree import SWHID_DIR, folder_entries, is_git_id, tree_id
from ..fetch.tree import TreeDigests

log = logging.getLogger("reprohub")
KNOWN_WAYS = ("computed", "git", "archive")
COMPUTABLE = "computable"
CHANGED = ("unknown: the extracted files changed since extraction (load with force_reload=True to extract them "
           "again, then record)")
FROM_BUNDLE = ("unknown: the tree came from a bundle, which keeps its files but not what the origin's archive "
               "left out")
OLD_RECORD = ("unknown: extracted before reprohub noted what an archive leaves out; remove the commit's folder "
              "from the cache (or load with force_reload=True) and record again")


@dataclass(frozen=True)
class TreeIdentity:
    """A tree's SWHID (empty when unknown) and how it is known (``computed``, ``git``, ``archive``,
    ``unknown: <why>``)."""

    swhid_dir: str
    how: str


def manifest_note(result: ExtractResult, vouched_by: str = "") -> str:
    """What a commit's record says of its git tree right after extraction: ``<way>:<id>`` when the
    extractor's source vouched for the id (``vouched_by``: ``git`` or ``archive``), else ``computable``
    or ``unknown: <why>``."""
    if vouched_by and is_git_id(result.git_tree):
        return f"{vouched_by}:{result.git_tree}"
    if result.git_blockers:
        return "unknown: " + "; ".join(result.git_blockers)
    return COMPUTABLE


def tree_identity(repo_dir: "str | os.PathLike[str]") -> TreeIdentity:
    """The SWHID of the extracted commit at ``repo_dir`` and how it is known, computing it (once) where
    its record says it can be."""
    manifest_path = manifest_beside(repo_dir)
    record = read_record(manifest_path) or {}
    note = record.get("git_tree")
    if not isinstance(note, str):
        return TreeIdentity("", OLD_RECORD)
    if note.startswith("unknown: "):
        return TreeIdentity("", note)
    way, _, oid = note.partition(":")
    if way in KNOWN_WAYS and is_git_id(oid):
        return TreeIdentity(SWHID_DIR + oid, way)
    if note != COMPUTABLE or not isinstance(record.get("paths"), list):
        return TreeIdentity("", OLD_RECORD)
    try:
        found = folder_entries(repo_dir, record["paths"])
    except OSError:  # a file of the tree removed or made unreadable since
        found = None
    if found is None:
        return TreeIdentity("", CHANGED)
    digests = TreeDigests.of({rel: ({"100755": "x", "120000": "l"}.get(mode, "-"), sha)
                              for rel, (mode, _, sha) in found.items()})
    if digests.current != record.get("tree_sha256"):
        return TreeIdentity("", CHANGED)
    oid = tree_id({rel: (mode, blob) for rel, (mode, blob, _) in found.items()})
    _keep(manifest_path, record, f"computed:{oid}")
    return TreeIdentity(SWHID_DIR + oid, "computed")


def _keep(manifest_path, record: dict, note: str) -> None:
    """Add the id to the commit's record, under the tree's lock, unless it was re-extracted meanwhile (a hint:
    written without a flush; lost, it is computed again)."""
    try:
        with file_lock(manifest_path.with_suffix(".lock"), "noting a git tree id"):
            if read_record(manifest_path) == record:
                atomic_write_json(manifest_path, {**record, "git_tree": note}, durable=False)
    except OSError as err:  # a read-only shared cache: computed again next time
        log.debug("could not keep the git tree id in %s (%s)", manifest_path, err)
