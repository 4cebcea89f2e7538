"""Any Git remote the ``git`` command can fetch (``file://`` paths and bare repos included).

Kept as a bare mirror in the cache; a commit's files are written with
``git archive`` and the safe extractor.

Example:
    >>> git_spec_parts("git+file:///srv/models.git#v1")[0]
    'file:///srv/models.git'
"""

from __future__ import annotations

import dataclasses

import logging
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache.layout import source_key
from ..errors import OfflineError, SourceError
from ..fetch.fsutil import temp_path_beside
from ..fetch.locks import file_lock
from ..fetch.hosts import own_requests
from ..refs import RepoRef

if TYPE_CHECKING:
    from ..fetch.archive import ExtractResult  # imported when a tree is first extracted

log = logging.getLogger("reprohub")
ENV_GITHUB_TOKEN = "GITHUB_TOKEN"


GIT_PREFIX = "git+"


def git_spec_parts(spec: str) -> tuple[str, RepoRef]:
    """Split ``REMOTE[#ref]`` (optionally prefixed ``git+``) into the remote and a cache-safe :class:`RepoRef`.

    Example:
        >>> git_spec_parts("git+file:///srv/models.git#v1")
        ('file:///srv/models.git', RepoRef(owner='git', name='models', ref='v1'))
    """
    remote, _, ref = spec.removeprefix(GIT_PREFIX).partition("#")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(remote.rstrip("/")).removesuffix(".git"))[:100]
    return remote, RepoRef("git", name if name not in ("", ".", "..") else "repo", ref or None)


def git_source_key(remote: str) -> str:
    """The cache folder name of a Git remote's repos."""
    return "git-" + source_key(remote)


class GitSource:
    """Any Git remote the ``git`` command can fetch, mirrored under the cache.

    Args:
        remote: a URL or path git understands (``file:///srv/repo.git``, ``/srv/repo``).
        mirror: the bare mirror folder to keep (from :class:`~reprohub.paths.CacheLayout`).
        offline: resolve only from the mirror.
    """

    def __init__(self, remote: str, mirror: Path, offline: bool = False) -> None:
        self.url = remote
        self.key = self.content_key = git_source_key(remote)
        self.mirror = Path(mirror)
        self.offline = offline

    def resolve(self, repo: RepoRef) -> str:
        """Fetch the remote into the mirror (unless offline) and return the ref's commit."""
        ref = repo.ref or "HEAD"
        if not self.offline:
            self._update_mirror()
        elif not self.mirror.exists():
            raise OfflineError(f"a mirror of {self.url}", "none in the cache, and offline",
                               "run once online to fetch the remote")
        for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            out = self._git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", check=False)
            if out:
                return out
        raise SourceError(f"a branch, tag or commit {ref!r} in {self.url}", "no such ref",
                          "check the ref with `git ls-remote`")

    def materialize(self, repo: RepoRef, commit: str, dest: Path, progress: bool,
                    archive: object = None) -> "ExtractResult":
        """Write the tree of ``commit`` with ``git archive`` and the safe extractor (``archive``: unused,
        the same signature as :meth:`GitHubSource.materialize`; a Git remote's archive is made locally)."""
        from ..fetch.archive import extract_into_place

        if not self.mirror.exists():
            self._update_mirror()
        zip_path = temp_path_beside(dest, ".zip")
        try:
            self._git("archive", "--format=zip", "-o", str(zip_path), commit)
            result = extract_into_place(zip_path, dest, strip_top=False)
            return dataclasses.replace(result, git_tree=self._git("rev-parse", f"{commit}^{{tree}}"))  # git's own
        finally:
            zip_path.unlink(missing_ok=True)

    def _update_mirror(self) -> None:
        with file_lock(self.mirror.with_suffix(".lock"), f"fetching {self.url}"), own_requests():
            if not self.mirror.exists():
                subprocess.run(["git", "init", "--quiet", "--bare", str(self.mirror)], check=True)
            self._git("fetch", "--quiet", "--prune", "--force", self.url,
                      "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
            head = self._git("ls-remote", "--symref", self.url, "HEAD", check=False)
            for line in head.splitlines():
                if line.startswith("ref: "):
                    self._git("symbolic-ref", "HEAD", line.split()[1])

    def _git(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["git", "--git-dir", str(self.mirror), *args], capture_output=True, text=True,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        if check and proc.returncode != 0:
            raise SourceError(f"`git {args[0]}` to succeed for {self.url}", proc.stderr.strip()[-500:],
                              "check that the remote exists and git can reach it")
        return proc.stdout.strip() if proc.returncode == 0 else ""
