"""A GitHub-compatible host: ref -> commit through its REST API, commit -> files through its archives.

A branch or tag is resolved by downloading its archive, which names its
commit in the zip comment (one request that is not rate-limited, no API call).
The API is asked only where that cannot work: ``GET /repos/{o}/{r}`` for the
default branch of a spec without a ref, ``GET /repos/{o}/{r}/commits/{ref}`` for
short shas and for hosts whose archives name no commit, and the fork check of
sha refs.  ``GITHUB_TOKEN`` is sent when set, and never logged.

Example:
    >>> from reprohub.refs import parse_ref
    >>> src = GitHubSource(server.api_url)
    >>> len(src.resolve(parse_ref("acme/tiny:v1")))
    40
    >>> src.archive_url(parse_ref("acme/tiny"), "f" * 40) == f"{server.url}/acme/tiny/archive/{'f' * 40}.zip"
    True
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..cache.layout import DEFAULT_GITHUB_API, source_key
from .. import settings
from ..errors import AuthError, DownloadError, OfflineError, SourceError
from ..fetch.download import Downloader
from ..fetch.urls import check_url
from ..fetch.fsutil import SpillFile
from ..refs import RepoRef, is_full_commit

if TYPE_CHECKING:  # requests is imported at the first request, not with reprohub
    import requests

    from ..fetch.archive import ExtractResult  # imported when an archive is first opened

log = logging.getLogger("reprohub")
CONTENT_KEY = "github"
CODELOAD = "https://codeload.github.com/{owner}/{repo}/zip/{commit}"
WEB_ARCHIVE = "/{owner}/{repo}/archive/{commit}.zip"


def archive_template(api_url: str) -> str | None:
    """Where a host serves commit archives without its REST API (no rate-limited call).

    ``$REPROHUB_ARCHIVE_URL`` wins; github.com's API maps to codeload; a GitHub
    Enterprise API (``https://ghe/api/v3``) or any ``.../api`` base maps to the
    web route ``<base>/{owner}/{repo}/archive/{commit}.zip``.  ``None``: use the
    REST ``zipball`` endpoint.

    Example:
        >>> archive_template("https://ghe.example.com/api/v3")
        'https://ghe.example.com/{owner}/{repo}/archive/{commit}.zip'
    """
    configured = settings.read(settings.ARCHIVE_URL)
    if configured:
        return configured
    if api_url == DEFAULT_GITHUB_API:
        return CODELOAD
    for suffix in ("/api/v3", "/api"):
        if api_url.endswith(suffix):
            return api_url[: -len(suffix)] + WEB_ARCHIVE
    return None


class GitHubSource:
    """A GitHub-compatible REST API.

    Args:
        api_url: base URL of the API (default: ``$REPROHUB_GITHUB_API_URL`` or GitHub's).
        token: a token for private repos and higher rate limits (default ``$GITHUB_TOKEN``).
        downloader: does the HTTP transfers (and knows whether we are offline).
    """

    def __init__(self, api_url: str | None = None, token: str | None = None, downloader: Downloader | None = None):
        self.url = check_url(api_url or settings.read(settings.GITHUB_API_URL) or DEFAULT_GITHUB_API,
                             settings.GITHUB_API_URL).rstrip("/")
        self.key = source_key(self.url)  # where this host's ref resolutions are remembered
        self.content_key = CONTENT_KEY  # commits name their content: one folder whatever host served them
        self._token = token if token is not None else settings.read(settings.GITHUB_TOKEN)
        self.downloader = downloader or Downloader()
        self._probing = False

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
        path = f"/repos/{repo.owner}/{repo.name}"
        branch = self._get_json(path, repo).get("default_branch")
        if not isinstance(branch, str) or not branch:
            raise self._odd_answer(path, "an object naming its default_branch", {"default_branch": branch})
        return branch

    def resolve(self, repo: RepoRef) -> str:
        """The full commit of ``repo.ref``; a full sha is returned without any request."""
        if repo.ref is not None and is_full_commit(repo.ref):
            return repo.ref
        ref = repo.ref if repo.ref is not None else self.default_branch(repo)
        sha = self._get_json(f"/repos/{repo.owner}/{repo.name}/commits/{quote(ref, safe='')}", repo).get("sha", "")
        if not isinstance(sha, str) or not is_full_commit(sha):
            raise SourceError(f"a 40-hex commit for {repo}", f"{sha!r} from {self.url}", "check the host's API "
                              "(REPROHUB_GITHUB_API_URL must be a GitHub-compatible REST API)")
        return sha

    def check_not_forked(self, repo: RepoRef, commit: str) -> None:
        """Raise unless ``commit`` belongs to the repo itself, not a fork's pull request.

        GitHub serves a fork's commits through the parent's API, so ``owner/repo:<sha>`` could run code
        the owner never merged.  Accepted: the tip of a branch or tag (torch.hub's rule), or any commit in
        the history of the default branch (``compare``: "behind" or "identical").

        Raises:
            SourceError: a ``ValueError`` worded as torch.hub's ("Cannot find ... forked repo").
        """
        base = f"/repos/{repo.owner}/{repo.name}"
        for kind in ("branches", "tags"):
            page = 1
            while items := self._get_json(f"{base}/{kind}?per_page=100&page={page}", repo, shape=list):
                if any(_names(item, repo.ref, commit) for item in items):
                    return
                page += 1
        compared = self._get_json(f"{base}/compare/{quote(self.default_branch(repo), safe='')}...{commit}", repo)
        if compared.get("status") in ("behind", "identical"):
            return
        raise SourceError(f"{commit} on a branch or tag of {repo.repo}",
                          f"Cannot find {repo.ref} in {self.url}/repos/{repo.repo}: it is on no branch or tag, "
                          "as a commit from a forked repo would be",
                          "if it's a commit from a forked repo, load the fork (fork_owner/repo:sha) directly; "
                          "pass skip_validation=True only if you trust the commit")

    def archive_url(self, repo: RepoRef, commit: str) -> str:
        """Where the zip archive of ``commit`` is served without an API call (see :func:`archive_template`)."""
        template = archive_template(self.url)
        if template is None:
            return self.api_archive_url(repo, commit)
        return template.format(owner=repo.owner, repo=repo.name, commit=commit)

    def api_archive_url(self, repo: RepoRef, commit: str) -> str:
        """The REST ``zipball`` endpoint (counts against the API rate limit)."""
        return f"{self.url}/repos/{repo.owner}/{repo.name}/zipball/{commit}"

    def resolve_by_archive(self, repo: RepoRef, near: Path, progress: bool) -> tuple[str, SpillFile | None]:
        """The commit of a branch or tag, and its archive, fetched in one request (the caller closes it).

        Archives made by ``git archive`` (GitHub's, and this package's test host's) carry their
        commit id as the zip comment, so downloading one both resolves the ref and fetches the
        files, with no API call: what torch.hub's single ``zipball`` request costs, and the commit
        is still pinned.  A host whose archives name no commit is asked through its API instead
        (and the archive is not returned).  ``near``: a path on the cache's filesystem, where a
        large archive spills to.
        """
        archive = SpillFile(near)
        try:
            commit = self.fetch_ref_archive(repo, archive, progress)
        except BaseException:
            archive.close()
            raise
        if commit is None:
            archive.close()
            return self.resolve(repo), None
        return commit, archive

    def fetch_ref_archive(self, repo: RepoRef, archive: SpillFile, progress: bool) -> str | None:
        """Download the archive of a branch or tag into ``archive``; the commit it names, or ``None``."""
        from ..fetch.archive import open_zip

        self._download_archive(repo, str(repo.ref), archive, progress)
        with open_zip(archive) as zf:  # a damaged archive is an ArchiveError naming its URL, not "no such repo"
            comment = zf.comment.decode("ascii", "replace").strip()
        if is_full_commit(comment):
            return comment
        log.debug("the archive of %s names no commit; asking the API", repo)
        return None

    def materialize(self, repo: RepoRef, commit: str, dest: Path, progress: bool,
                    archive: SpillFile | None = None) -> "ExtractResult":
        """Download the archive of ``commit`` (hashed in flight) and extract it safely into ``dest``.

        The archive route is tried first (no API call); a 4xx there (a private repo, a host
        without that route) falls back to the REST ``zipball`` endpoint, with the token.
        ``archive``: the commit's archive, already downloaded by :meth:`fetch_ref_archive`.
        """
        from ..fetch.archive import extract_into_place

        if archive is not None:
            return extract_into_place(archive, dest, strip_top=True)
        with SpillFile(dest) as fresh:  # in memory unless large: no temp file to create and remove
            self._download_archive(repo, commit, fresh, progress)
            return extract_into_place(fresh, dest, strip_top=True)

    def _download_archive(self, repo: RepoRef, commit: str, out: SpillFile, progress: bool) -> None:
        url, api_url = self.archive_url(repo, commit), self.api_archive_url(repo, commit)
        log.info("downloading %s at %s from %s", repo.repo, commit[:12], url)  # shown with `reprohub -v`
        out.source = f"the archive of {repo} from {url}"
        if url != api_url:
            try:
                self.downloader.fetch_into(url, out, progress=progress)
                return
            except DownloadError as err:
                if err.status is None or not 400 <= err.status < 500:
                    raise
                log.info("%s answered %s; asking the API for the archive instead", url, err.status)
                out.seek(0)
                out.truncate()
        try:
            out.source = f"the archive of {repo} from {api_url}"
            self.downloader.fetch_into(api_url, out, progress=progress, headers=self.headers)
        except DownloadError as err:
            if err.status in (404, 422) and is_full_commit(commit) and self._repo_exists(repo):
                raise SourceError(f"commit {commit} of {repo.repo} ({repo}) at {self.url}",
                                  "the repo exists but this commit does not: it may have been force-pushed "
                                  "away, or its branch deleted and garbage-collected",
                                  "a bundle brings it back (REPROHUB_MIRROR=<bundle>; `reprohub bundle` writes "
                                  "one); or, if the new history is intended, move the pin with "
                                  "`pytest --hub-lock hub.lock --hub-accept`") from err
            raise self._explain(err, repo) from err

    def _repo_exists(self, repo: RepoRef) -> bool:
        """Whether the host knows the repo at all (to tell a vanished commit or ref from a misspelt repo)."""
        self._probing = True  # its own 404 is explained without asking again
        try:
            self.default_branch(repo)
        except (DownloadError, SourceError, AuthError, OfflineError):
            return False
        finally:
            self._probing = False
        return True

    def _odd_answer(self, path: str, expected: str, answer) -> SourceError:
        return SourceError(f"{expected} from {self.url}{path}", f"{str(answer)[:120]!r}",
                           "check that the API URL (REPROHUB_GITHUB_API_URL, hub_api_url) is a GitHub-compatible "
                           "REST API, not a web page or a proxy's error page")

    def _get_json(self, path: str, repo: RepoRef, shape: type = dict):
        if self.downloader.offline:
            raise OfflineError(
                f"a cached resolution of {repo}",
                "nothing cached, and offline mode forbids asking the host",
                f"pin a full commit ({repo.repo}:<sha>), use a lockfile, or run once online",
            )
        url = self.url + path
        response = self.downloader.get(url, headers=self.headers)
        if response.status_code == 401 and self._token:  # an expired token: public repos still answer without it
            anonymous = self.downloader.get(url, headers={k: v for k, v in self.headers.items() if k != "Authorization"})
            if anonymous.status_code == 200:
                log.warning("%s refused GITHUB_TOKEN (HTTP 401); continuing without it. Renew or unset the token.",
                            self.url)
                self._token = None
                response = anonymous
        if response.status_code != 200:
            raise self._explain(DownloadError(f"HTTP 200 from {url}", f"HTTP {response.status_code}",
                                              status=response.status_code, fix=""), repo, response)
        try:
            data = response.json()
        except ValueError:
            raise self._odd_answer(path, "JSON", response.text) from None
        if not isinstance(data, shape):
            raise self._odd_answer(path, f"a JSON {'list' if shape is list else 'object'}", data)
        return data

    def _explain(self, err: DownloadError, repo: RepoRef, response: requests.Response | None = None) -> Exception:
        code = err.status
        token = "a GITHUB_TOKEN was sent" if self._token else "no token was sent"
        if code == 401:
            return AuthError(f"access to {repo} at {self.url}", f"HTTP 401 Unauthorized ({token})",
                             "set GITHUB_TOKEN to a valid token" if not self._token else "the token is invalid or expired: renew GITHUB_TOKEN")
        if code in (403, 429):
            headers = response.headers if response is not None else getattr(err, "headers", None) or {}
            limited = headers.get("X-RateLimit-Remaining") == "0" or code == 429
            what = "rate limit exhausted" if limited else "forbidden"
            fix = ("set GITHUB_TOKEN for a higher rate limit, or wait for the reset"
                   if not self._token else "wait for the rate limit to reset, or check the token's scopes")
            return AuthError(f"access to {repo} at {self.url}", f"HTTP {code}, {what} ({token})", fix)
        if code in (404, 422):
            if repo.ref and not self._probing and self._repo_exists(repo):  # one more request, on this error only
                return SourceError(f"a branch, tag or commit {repo.ref!r} of {repo.repo} at {self.url}",
                                   f"HTTP {code}: the repo exists, but not this ref (deleted, or misspelt)",
                                   f"check the ref's spelling against the repo's branches and tags; a deleted "
                                   f"branch's last commit can still be pinned by its full sha ({repo.repo}:<sha>)")
            return SourceError(f"the repo {repo.repo} at {self.url}", f"HTTP {code}: no such repo (or a private one)",
                               "check the spelling of owner and repo; private repos need GITHUB_TOKEN")
        return err


def _names(item, ref: str | None, commit: str) -> bool:
    """Whether one entry of a branches or tags page is ``ref`` or points at ``commit`` (odd entries: no)."""
    if not isinstance(item, dict):
        return False
    target = item.get("commit")
    return item.get("name") == ref or (isinstance(target, dict) and target.get("sha") == commit)
