"""From a ref to a commit, remembered in the cache: one question to the host per ref, however many processes ask.

``reprohub/refs/<host>/<owner>/<repo>.json`` maps each ref (``:default`` for a spec without one)
to the commit it last resolved to, and ``@validated:<sha>`` to commits that passed torch.hub's fork
check.  The file is a hint, written without a flush: lost or damaged (any shape but an object of
strings counts as empty), the host is simply asked again.

Example:
    >>> from reprohub.cache.layout import CacheLayout
    >>> from reprohub.refs import parse_ref
    >>> from reprohub.sources.github import GitHubSource
    >>> layout, src = CacheLayout(tmp), GitHubSource(server.api_url)
    >>> commit, archive = resolve_commit(layout, src, parse_ref("acme/tiny:v1"), False, True, False)
    >>> archive.close(); resolve_commit(layout, src, parse_ref("acme/tiny:v1"), False, True, False) == (commit, None)
    True
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..cache.layout import CacheLayout
from ..fetch.fsutil import SpillFile, atomic_write_json, read_record
from ..fetch.locks import file_lock
from ..refs import RepoRef, is_full_commit
from .github import GitHubSource

log = logging.getLogger("reprohub")
DEFAULT_REF_KEY = ":default"


def names_a_commit(ref: str | None) -> bool:
    """A ref that is (the start of) a commit id rather than a branch or tag name."""
    return ref is not None and re.fullmatch(r"[0-9a-f]{7,40}", ref) is not None


def resolve_commit(layout: CacheLayout, src, repo: RepoRef, force_reload: bool, origin: bool,
                   progress: bool) -> tuple[str, SpillFile | None]:
    """The commit ``repo.ref`` names, and, when a GitHub-compatible host had to be asked for a branch or
    tag, that commit's archive (downloaded to resolve it; the caller closes it)."""
    if repo.ref is not None and is_full_commit(repo.ref):
        return repo.ref, None
    refs_file = layout.refs_file(src.key, repo)
    key = repo.ref or DEFAULT_REF_KEY
    if not force_reload and (known := _known_commit(refs_file, key)):
        return known, None
    # Under the lock, so N processes starting cold ask the host once (rate limits!) and the rest
    # read the answer; force_reload asks again regardless.
    with file_lock(refs_file.with_suffix(".lock"), f"resolving {repo}"):
        if not force_reload and (known := _known_commit(refs_file, key)):
            return known, None
        if isinstance(src, GitHubSource) and repo.ref is not None and not names_a_commit(repo.ref) and origin:
            commit, archive = src.resolve_by_archive(repo, refs_file, progress)  # one request, no API
        else:
            commit, archive = src.resolve(repo), None
        table = read_record(refs_file) or {}
        if table.get(key) != commit:
            if table.get(key):
                log.warning("%s moved: %s -> %s", repo, table[key], commit)
            table[key] = commit
            atomic_write_json(refs_file, table, durable=False)  # a hint: lost, the ref is asked again
    return commit, archive


def check_not_forked(layout: CacheLayout, src: GitHubSource, repo: RepoRef, commit: str) -> None:
    """torch.hub's fork check for refs that are commits, asked of the host once per commit.

    Only called with the origin reachable: offline, only a commit already in the cache can load, and it
    was checked (or explicitly skipped) when it was first downloaded.
    """
    refs_file = layout.refs_file(src.key, repo)
    key = f"@validated:{commit}"
    if (read_record(refs_file) or {}).get(key) == commit:
        return
    src.check_not_forked(repo, commit)
    with file_lock(refs_file.with_suffix(".lock"), f"recording {repo}"):
        atomic_write_json(refs_file, {**(read_record(refs_file) or {}), key: commit}, durable=False)


def _known_commit(refs_file: Path, key: str) -> str | None:
    known = (read_record(refs_file) or {}).get(key)
    return known if isinstance(known, str) and is_full_commit(known) else None
