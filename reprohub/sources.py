"""Where repo code comes from: ref -> commit, and commit -> files on disk.

* :class:`GitHubSource` -- any GitHub-compatible REST API (``REPROHUB_GITHUB_API_URL``,
  default ``https://api.github.com``): ``GET /repos/{o}/{r}`` for the default
  branch, ``GET /repos/{o}/{r}/commits/{ref}`` for the commit, and
  ``GET /repos/{o}/{r}/zipball/{commit}`` for the archive.  ``GITHUB_TOKEN`` is
  sent when set, and never logged.
* :class:`GitSource` -- any remote the ``git`` command can fetch (``file://``
  paths and bare repos included), through a bare mirror kept in the cache.

Both turn a ref into a full commit and write that commit's tree into a folder;
neither knows about hubconf.

Example:
    >>> src = GitHubSource("http://127.0.0.1:8000/api")        # doctest: +SKIP
    >>> src.resolve(parse_ref("owner/repo:main"))               # doctest: +SKIP
    '3f786850e387550fdab836ed7e6dc881de23001b'
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import requests

from .archive import ExtractResult, extract_into_place
from .download import Downloader
from .errors import AuthError, DownloadError, OfflineError, SourceError
from .fsutil import file_lock, temp_path_beside
from .paths import DEFAULT_GITHUB_API, source_key
from .refs import RepoRef, is_full_commit

log = logging.getLogger("reprohub")
ENV_GITHUB_API_URL = "REPROHUB_GITHUB_API_URL"
ENV_GITHUB_TOKEN = "GITHUB_TOKEN"


class Source(Protocol):
    """What the hub needs of a place that holds repos."""

    key: str
    url: str

    def resolve(self, repo: RepoRef) -> str:
        """The full commit that ``repo.ref`` (or the default branch) points to now."""

    def materialize(self, repo: RepoRef, commit: str, dest: Path, progress: bool) -> ExtractResult:
        """Write the tree of ``commit`` into ``dest`` (which must not exist yet)."""


class GitHubSource:
    """A GitHub-compatible REST API.

    Args:
        api_url: base URL of the API (default: ``$REPROHUB_GITHUB_API_URL`` or GitHub's).
        token: a token for private repos and higher rate limits (default ``$GITHUB_TOKEN``).
        downloader: does the HTTP transfers (and knows whether we are offline).
    """

    def __init__(self, api_url: str | None = None, token: str | None = None, downloader: Downloader | None = None):
        self.url = (api_url or os.environ.get(ENV_GITHUB_API_URL) or DEFAULT_GITHUB_API).rstrip("/")
        self.key = source_key(self.url)
        self._token = token if token is not None else os.environ.get(ENV_GITHUB_TOKEN) or None
        self.downloader = downloader or Downloader()

    def __repr__(self) -> str:  # never shows the token
        return f"GitHubSource({self.url!r}, token={'set' if self._token else 'unset'})"

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def default_branch(self, repo: RepoRef) -> str:
        """The repo's default branch, from ``GET /repos/{owner}/{repo}``."""
        return self._get_json(f"/repos/{repo.owner}/{repo.name}", repo)["default_branch"]

    def resolve(self, repo: RepoRef) -> str:
        """The full commit of ``repo.ref``; a full sha is returned without any request."""
        if repo.ref is not None and is_full_commit(repo.ref):
            return repo.ref
        ref = repo.ref if repo.ref is not None else self.default_branch(repo)
        sha = self._get_json(f"/repos/{repo.owner}/{repo.name}/commits/{quote(ref, safe='')}", repo).get("sha", "")
        if not is_full_commit(sha):
            raise SourceError(f"a 40-hex commit for {repo}", f"{sha!r} from {self.url}", "check the host's API")
        return sha

    def archive_url(self, repo: RepoRef, commit: str) -> str:
        """Where the zip archive of ``commit`` is served."""
        return f"{self.url}/repos/{repo.owner}/{repo.name}/zipball/{commit}"

    def materialize(self, repo: RepoRef, commit: str, dest: Path, progress: bool) -> ExtractResult:
        """Download the archive of ``commit`` (hashed in flight) and extract it safely into ``dest``."""
        zip_path = temp_path_beside(dest, ".zip")
        try:
            got = self.downloader.fetch(self.archive_url(repo, commit), zip_path, progress=progress,
                                        headers=self.headers)
            log.debug("archive of %s@%s: sha256 %s, %d bytes", repo, commit, got.sha256, got.size)
            return extract_into_place(zip_path, dest, strip_top=True)
        except DownloadError as err:
            raise self._explain(err, repo) from err
        finally:
            zip_path.unlink(missing_ok=True)

    def _get_json(self, path: str, repo: RepoRef) -> dict:
        if self.downloader.offline:
            raise OfflineError(
                f"a cached resolution of {repo}",
                "nothing cached, and offline mode forbids asking the host",
                f"pin a full commit ({repo.repo}:<sha>), use a lockfile, or run once online",
            )
        url = self.url + path
        response = self.downloader.get(url, headers=self.headers)
        if response.status_code != 200:
            raise self._explain(DownloadError(f"HTTP 200 from {url}", f"HTTP {response.status_code}",
                                              status=response.status_code, fix=""), repo, response)
        return response.json()

    def _explain(self, err: DownloadError, repo: RepoRef, response: requests.Response | None = None) -> Exception:
        code = err.status
        token = "a GITHUB_TOKEN was sent" if self._token else "no token was sent"
        if code == 401:
            return AuthError(f"access to {repo} at {self.url}", f"HTTP 401 Unauthorized ({token})",
                             "set GITHUB_TOKEN to a valid token" if not self._token else "the token is invalid or expired: renew GITHUB_TOKEN")
        if code in (403, 429):
            limited = response is not None and (response.headers.get("X-RateLimit-Remaining") == "0" or code == 429)
            what = "rate limit exhausted" if limited else "forbidden"
            fix = ("set GITHUB_TOKEN for a higher rate limit, or wait for the reset"
                   if not self._token else "wait for the rate limit to reset, or check the token's scopes")
            return AuthError(f"access to {repo} at {self.url}", f"HTTP {code}, {what} ({token})", fix)
        if code in (404, 422):
            return SourceError(f"{repo} at {self.url}", f"HTTP {code}: no such repo, branch, tag or commit",
                               "check the spelling of owner, repo and ref; private repos need GITHUB_TOKEN")
        return err


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
        self.key = git_source_key(remote)
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

    def materialize(self, repo: RepoRef, commit: str, dest: Path, progress: bool) -> ExtractResult:
        """Write the tree of ``commit`` with ``git archive`` and the safe extractor."""
        if not self.mirror.exists():
            self._update_mirror()
        zip_path = temp_path_beside(dest, ".zip")
        try:
            self._git("archive", "--format=zip", "-o", str(zip_path), commit)
            return extract_into_place(zip_path, dest, strip_top=False)
        finally:
            zip_path.unlink(missing_ok=True)

    def _update_mirror(self) -> None:
        with file_lock(self.mirror.with_suffix(".lock"), f"fetching {self.url}"):
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
