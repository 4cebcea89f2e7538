"""Shared, read-only hub caches (``REPROHUB_SHARED_CACHE``): a cluster's cache an admin filled on a shared
filesystem, or a warm cache baked into a CI image's read-only layer.

One or more hub dirs, separated by ``os.pathsep``, are consulted in order after the user's own cache and
before the mirrors and the origin.  Nothing is ever written into them: a file or tree found there is used in
place, and what is missing is fetched into the user's own cache as usual.  Every entry is verified as any
cache entry is -- an artifact by its record (size, mtime, sha256; hashed again where the record does not
match, as after a copy that lost mtimes) and against the lock's pin; a tree by its manifest, whose digest must
be the pinned one, and re-hashed where the manifest is from another boot.  A shared entry that fails is never
used, and the warning names it, so the admin can repair the shared copy.

Example:
    >>> shared_layouts("")
    []
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .. import settings
from ..fetch import durability
from ..fetch.download import Downloaded
from ..fetch.fsutil import read_record
from .layout import CacheLayout
from .store import cached_digest

if TYPE_CHECKING:
    from ..fetch.tree import TreeDigests

log = logging.getLogger("reprohub")


def shared_layouts(value: "str | None" = None) -> list[CacheLayout]:
    """The shared hub dirs (``value``, else ``REPROHUB_SHARED_CACHE``) that exist, in order."""
    value = settings.read(settings.SHARED_CACHE) if value is None else value
    return [CacheLayout(part) for part in (value or "").split(os.pathsep)
            if part.strip() and Path(os.path.expanduser(part.strip())).is_dir()]


def shared_artifact(layouts: list[CacheLayout], own: CacheLayout, path: Path, url: str, expected: "str | None",
                    prefix: "str | None") -> "Downloaded | None":
    """The verified copy of the artifact the user's cache keeps at ``path``, in the first shared cache that has
    one; ``None`` when none has a usable one (each unusable one is named in a warning)."""
    relative = path.relative_to(own.root)
    for layout in layouts:
        candidate = layout.root / relative
        if not candidate.is_file():
            continue
        got = cached_digest(candidate, url)  # a record it cannot write is only skipped: read-only is fine
        if got is None:
            log.warning("shared cache: %s no longer matches its record; not used (repair the shared copy)", candidate)
        elif expected is not None and got.sha256 != expected.lower().removeprefix("sha256:"):
            log.warning("shared cache: %s has sha256 %s, but %s is pinned; not used", candidate, got.sha256, expected)
        elif prefix is not None and not got.sha256.startswith(prefix):
            log.warning("shared cache: %s does not match the hash in its name; not used", candidate)
        else:
            return got
    return None


def shared_tree(layouts: list[CacheLayout], source: str, repo, commit: str,
                pinned_tree: "str | None") -> "tuple[Path, TreeDigests] | None":
    """The extracted tree of ``commit`` in the first shared cache holding an intact one: its manifest well formed,
    its digest the pinned one (when pinned), and its files re-hashed (:func:`~reprohub.fetch.treefiles.files_changed`) where
    the manifest was written in another boot."""
    from ..fetch.tree import TreeDigests  # here, not at import: weights alone never need a tree
    from ..fetch.treefiles import files_changed

    for layout in layouts:
        path, manifest = layout.repo_dir(source, repo, commit), read_record(layout.repo_manifest(source, repo, commit))
        digests = TreeDigests.from_record(manifest) if manifest else None
        if digests is None or not layout.holds_dir(path):
            continue
        if pinned_tree is not None and not digests.matches(pinned_tree):
            log.warning("shared cache: %s has tree %s, but %s is pinned; not used", path, digests.current, pinned_tree)
        elif durability.needs_recheck(manifest) and files_changed(path, digests, manifest):
            log.warning("shared cache: the files of %s changed since they were extracted; not used", path)
        else:
            return path, digests
    return None
