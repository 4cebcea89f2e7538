"""The Software Heritage identifiers a lock cites for a repo's commit: recorded by an update, checked by a
check run (:mod:`reprohub.sources.swhid` computes them from the files).

Example:
    >>> from reprohub.lock.lockfile import RepoPin
    >>> pin = RepoPin(spec="o/r:v1", host="https://api.github.com", commit="a" * 40, tree_sha256="b" * 64,
    ...               git_tree="computed", swhid_dir="swh:1:dir:" + "c" * 40)
    >>> cited(pin, "/nonexistent") is pin   # a known tree id is never replaced
    True
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import LockMismatchError
from .lockfile import RepoPin


def cited(pin: RepoPin, path: str) -> RepoPin:
    """``pin`` with its commit's SWHIDs (:mod:`reprohub.sources.swhid`); a tree id the lock already knows is not
    replaced by an unknown one (a tree later fetched from a bundle cannot vouch for its id)."""
    from ..sources.swhid import KNOWN_WAYS, tree_identity

    if pin.git_tree in KNOWN_WAYS:
        return pin
    ident = tree_identity(path)
    if pin.git_tree and ident.how not in KNOWN_WAYS:
        return pin
    return replace(pin, swhid_dir=ident.swhid_dir, git_tree=ident.how)


def check_cited(spec: str, locked: RepoPin, path: str, hint: str) -> None:
    """A check run: the tree SWHID a lock cites must be the tree's own, wherever its files can tell (a pull
    request that edits only the citation is caught here, not by a reader of the paper)."""
    from ..sources.swhid import KNOWN_WAYS, tree_identity

    ident = tree_identity(path)
    if ident.how in KNOWN_WAYS and ident.swhid_dir != locked.swhid_dir:
        raise LockMismatchError(f"repo {spec} at {locked.commit} with tree {locked.swhid_dir}, as the lock cites it",
                                f"{ident.swhid_dir} ({ident.how} from the files it pins)",
                                f"if the lock was edited by hand, restore it from version control; else {hint}")
