"""Software Heritage as the last source of a pinned commit, and the check that it holds what a lock pins.

The archive names code by content: a commit is ``swh:1:rev:<commit>``, its tree ``swh:1:dir:<git tree
id>``.  When a locked load needs a commit that neither the cache, a mirror nor the origin has, the Hub
asks here (:meth:`SoftwareHeritage.materialize`)::

    GET  /api/1/revision/<commit>/                      -> {"directory": <tree>}   (404: never archived)
    POST /api/1/vault/flat/swh:1:dir:<tree>/            -> {"status": "new" | "pending" | "done" | "failed",
    GET  (the same, polled: 1 s apart at first, x1.5      "fetch_url": ..., "progress_message": ...}
          each time, at most REPROHUB_SWH_POLL_MAX)
    GET  fetch_url                                      -> a .tar.gz whose top folder is swh:1:dir:<tree>

What arrives is trusted only after three checks: it extracts safely (:mod:`reprohub.fetch.tararchive`);
the git tree id of everything it holds equals the revision's directory (the vault writes placeholder
text for a content it does not hold -- too large, or taken down -- and such a tree is refused, naming
the files); and reprohub's own tree digest equals the lock's.  A lock that records the tree's SWHID
(``swhid_dir``) must agree with the archive's revision before anything is cooked.

**Trust and manners.**  The archive's root comes from ``REPROHUB_SWH_URL`` (``off`` turns the fallback
off), never from a lock, so an edited lock cannot send the request elsewhere; ``REPROHUB_SWH_TOKEN`` is
sent as a bearer token to that root's host only (not to a ``fetch_url`` on another host) and never
printed or recorded.  Requests go through reprohub's own downloader, never through the hermetic
recorder.  Anonymous clients get about 120 requests an hour: ``X-RateLimit-Remaining: 0`` makes the next
request wait for ``X-RateLimit-Reset``, a 429 waits its ``Retry-After`` -- each only while the wait
fits in ``REPROHUB_SWH_TIMEOUT`` (default 1800 s for a whole fallback), else the error says when to retry.

Example:
    >>> from reprohub.testing.swhost import ArchiveHost
    >>> with ArchiveHost() as host:                       # a Software-Heritage-like archive on 127.0.0.1
    ...     host.add_repo(server.repo_path)
    ...     commit = next(iter(host.commits()))
    ...     SoftwareHeritage(Downloader(), url=host.url).known([commit, "0" * 40]) == {commit: True, "0" * 40: False}
    True
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Callable, Iterable
from urllib.parse import quote, urljoin, urlsplit

from .. import settings
from ..errors import AuthError, DownloadError, HashMismatchError, OfflineError, SourceError
from ..fetch.archive import ExtractResult, extract_into_place
from ..fetch.download import Downloader
from ..fetch.fsutil import SpillFile
from ..fetch.gittree import SWHID_DIR, SWHID_REV, is_git_id
from ..fetch.hosts import parse_retry_after
from ..fetch.tararchive import extract_tar
from ..fetch.urls import check_url

log = logging.getLogger("reprohub")
DEFAULT_URL = "https://archive.softwareheritage.org"
DEFAULT_TIMEOUT = 1800.0
DEFAULT_POLL_MAX = 30.0
FIRST_POLL = 1.0
BUNDLE_ADVICE = ("a bundle brings it back (REPROHUB_MIRROR=<bundle>; `reprohub bundle` writes one); before "
                 "publishing, `reprohub archive --lock hub.lock --save` asks Software Heritage to archive what it lacks")


def configured_url() -> str | None:
    """The archive's root from ``REPROHUB_SWH_URL`` (default Software Heritage's), ``None`` when set to ``off``.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict("os.environ", REPROHUB_SWH_URL="https://swh.example.org/"):
        ...     configured_url()
        'https://swh.example.org'
        >>> with mock.patch.dict("os.environ", REPROHUB_SWH_URL="off"):
        ...     configured_url() is None
        True
    """
    value = settings.read(settings.SWH_URL) or DEFAULT_URL
    if value.strip().lower() in ("off", "0", "no", "none", "false"):
        return None
    return check_url(value, settings.SWH_URL).rstrip("/")


class SoftwareHeritage:
    """A client of one Software Heritage archive (its web API and vault).

    Args:
        downloader: does every request (reprohub's own transport; its offline flag is honoured).
        url: the archive's root (default: :func:`configured_url`).
        token: a bearer token (default ``$REPROHUB_SWH_TOKEN``); sent to the root's host only.
        timeout: seconds one fallback may take, rate-limit waits and cooking included.
        clock, sleep: for tests.
    """

    def __init__(self, downloader: Downloader, url: str | None = None, token: str | None = None,
                 timeout: float | None = None, poll_max: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] | None = None) -> None:
        root = url or configured_url()
        if root is None:
            raise SourceError("a Software Heritage archive", "REPROHUB_SWH_URL=off", "unset REPROHUB_SWH_URL")
        self.url = root.rstrip("/")
        self.downloader = downloader
        self._token = token if token is not None else settings.read(settings.SWH_TOKEN)
        self.timeout = timeout if timeout is not None else settings.read_number(settings.SWH_TIMEOUT, DEFAULT_TIMEOUT)
        self.poll_max = poll_max if poll_max is not None else settings.read_number(settings.SWH_POLL_MAX,
                                                                                    DEFAULT_POLL_MAX)
        self._clock, self._sleep = clock, sleep or downloader._sleep
        self._wait_until = 0.0  # the archive said: no request before this (clock time)
        self._deadline = clock() + self.timeout  # for known() and save(); each fallback starts its own

    def __repr__(self) -> str:  # never shows the token
        return f"SoftwareHeritage({self.url!r}, token={'set' if self._token else 'unset'})"

    # -- questions ------------------------------------------------------------------------------

    def revision_directory(self, commit: str, what: str = "") -> str:
        """The git tree id of ``commit``, as the archive's revision records it.

        Raises:
            SourceError: the archive never saw the commit (naming it, with the bundle advice).
        """
        response = self._call("GET", f"/api/1/revision/{commit}/")
        if response.status_code == 404:
            raise SourceError(f"{what or 'commit ' + commit} in Software Heritage ({self.url})",
                              f"the archive never saw {SWHID_REV}{commit} (HTTP 404)", BUNDLE_ADVICE)
        directory = self._json(response, f"the revision {commit}").get("directory")
        if not is_git_id(directory):
            raise SourceError(f"a revision naming its directory from {self.url}", f"{directory!r}",
                              "check REPROHUB_SWH_URL: it must be a Software Heritage archive's root")
        return directory

    def known(self, commits: Iterable[str]) -> dict[str, bool]:
        """Which commits the archive holds, in one request (``POST /api/1/known/``)."""
        swhids = [SWHID_REV + c for c in commits]
        answer = self._json(self._call("POST", "/api/1/known/", swhids), "the known-objects answer")
        return {s.removeprefix(SWHID_REV): bool((answer.get(s) or {}).get("known")) for s in swhids}

    def save(self, origin_url: str) -> dict:
        """Ask the archive to visit ``origin_url`` ("Save Code Now"); the request's status, as it answers."""
        response = self._call("POST", f"/api/1/origin/save/git/url/{quote(origin_url, safe=':/')}/")
        if response.status_code == 403:
            return {"save_request_status": "rejected", "origin_url": origin_url,
                    "why": "the archive refuses this origin (not public, or not a git repository it accepts)"}
        return self._json(response, f"the save request of {origin_url}")

    # -- the fallback ---------------------------------------------------------------------------

    def materialize(self, commit: str, dest, pinned_tree: str, pinned_dir: str | None = None,
                    what: str = "", progress: bool = False) -> ExtractResult:
        """Fetch ``commit``'s tree from the archive into ``dest``, verified (see the module docstring).

        Raises:
            SourceError: not archived, cooking failed or timed out, or placeholders instead of files.
            HashMismatchError: the archive's tree is not the one the lock pins.
        """
        self._deadline = self._clock() + self.timeout
        what = what or f"commit {commit}"
        directory = self.revision_directory(commit, what)
        if pinned_dir and pinned_dir != SWHID_DIR + directory:
            raise HashMismatchError(f"{pinned_dir} for {what}, as the lock records it",
                                    f"{SWHID_DIR}{directory} in Software Heritage's revision {commit}",
                                    "do not trust this archive (REPROHUB_SWH_URL); if the lock was edited by hand, "
                                    "restore it from version control")
        fetch_url = self._cook(directory)

        def verify(result: ExtractResult) -> None:
            _check_tree(result, directory, pinned_tree, what)

        with SpillFile(dest) as tarball:
            tarball.source = f"Software Heritage's tarball of {SWHID_DIR}{directory}"
            self.downloader.fetch_into(fetch_url, tarball, progress=progress, headers=self._auth_for(fetch_url))
            tarball.seek(0)
            return extract_into_place(tarball, dest, check=verify, extract=extract_tar)

    def _cook(self, directory: str) -> str:
        """Ask the vault for the tree's tarball and wait until it is cooked; its URL."""
        path = f"/api/1/vault/flat/{SWHID_DIR}{directory}/"
        answer = self._json(self._call("POST", path), "the vault's answer")
        interval, shown = min(FIRST_POLL, self.poll_max), None
        while answer.get("status") != "done":
            status = answer.get("status")
            if status not in ("new", "pending"):
                raise SourceError(f"the vault to cook {SWHID_DIR}{directory}",
                                  f"status {status!r}: {answer.get('progress_message') or 'no message'}",
                                  f"retry later; {BUNDLE_ADVICE}")
            line = f"reprohub: Software Heritage is preparing {SWHID_DIR}{directory} ({status}" + (
                f": {answer['progress_message']})" if answer.get("progress_message") else ")")
            if line != shown:  # one line per change of state, on a terminal or in a CI log
                log.info("%s", line)
                if sys.stderr is not None:
                    sys.stderr.write(line + "\n")
                shown = line
            self._pause(interval, f"the vault to cook {SWHID_DIR}{directory}")
            interval = min(self.poll_max, interval * 1.5)
            answer = self._json(self._call("GET", path), "the vault's answer")
        fetch_url = answer.get("fetch_url") or f"{self.url}{path}raw/"
        return check_url(urljoin(self.url + "/", fetch_url), "the vault's fetch_url")

    # -- the HTTP side --------------------------------------------------------------------------

    def _call(self, method: str, path: str, body=None):
        """One API request, waiting out the archive's rate limit where the timeout allows."""
        url = self.url + path
        if self.downloader.offline:
            raise OfflineError(f"an answer from Software Heritage ({self.url})", "offline mode",
                               "run this step online, or use a bundle (REPROHUB_MIRROR=<bundle>)")
        for attempt in range(4):
            self._pause(self._wait_until - self._clock(), f"the rate limit of {self.url}", limit=True)
            headers = {"Accept": "application/json", **self._auth_for(url)}
            if body is not None:
                headers["Content-Type"] = "application/json"
            response = self.downloader.request(method, url, headers,
                                               body=None if body is None else json.dumps(body).encode())
            self._note_limit(response)
            if response.status_code == 429 and attempt < 3:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                self._wait_until = self._clock() + (wait if wait is not None else 60.0)
                continue
            if response.status_code == 401:
                raise AuthError(f"access to {self.url}", "HTTP 401 (REPROHUB_SWH_TOKEN "
                                f"{'was sent' if self._token else 'is unset'})",
                                "renew or unset REPROHUB_SWH_TOKEN")
            if response.status_code not in (200, 201, 403, 404):
                raise DownloadError(f"an answer from {url}", f"HTTP {response.status_code}",
                                    "retry later", status=response.status_code)
            return response
        raise AuthError(f"an answer from {self.url}", "HTTP 429 four times in a row",
                        "wait an hour, or set REPROHUB_SWH_TOKEN for a higher rate limit")

    def _note_limit(self, response) -> None:
        if response.headers.get("X-RateLimit-Remaining", "").strip() == "0":
            try:
                reset = float(response.headers.get("X-RateLimit-Reset", ""))
            except ValueError:
                return
            self._wait_until = max(self._wait_until, self._clock() + max(0.0, reset - time.time()))

    def _pause(self, seconds: float, waiting_for: str, limit: bool = False) -> None:
        if seconds <= 0:
            return
        if self._clock() + seconds > self._deadline:
            raise (AuthError if limit else SourceError)(
                f"{waiting_for} within REPROHUB_SWH_TIMEOUT ({self.timeout:g} s)",
                f"{seconds:.0f} s more to wait", "retry later, raise REPROHUB_SWH_TIMEOUT"
                + (", or set REPROHUB_SWH_TOKEN for a higher rate limit" if limit else ""))
        if limit:
            log.warning("Software Heritage's rate limit: waiting %.0f s before the next request", seconds)
        self._sleep(seconds)

    def _auth_for(self, url: str) -> dict[str, str]:
        """The token, for the archive's own host only."""
        if not self._token or _origin(url) != _origin(self.url):
            return {}
        return {"Authorization": f"Bearer {self._token}"}

    def _json(self, response, what: str):
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400 or not isinstance(data, dict):
            raise SourceError(f"{what} as JSON from {self.url}", f"HTTP {response.status_code}: "
                              f"{response.text[:120]!r}", "check REPROHUB_SWH_URL: it must be a Software Heritage "
                              "archive's root")
        return data


def _check_tree(result: ExtractResult, directory: str, pinned_tree: str, what: str) -> None:
    """Refuse a cooked tree that is not the revision's, or not the one the lock pins."""
    if result.git_tree != directory:
        named = result.git_blockers  # what the tarball's extractor saw: placeholder texts, submodules' folders
        raise SourceError(f"the files of {SWHID_DIR}{directory} for {what}",
                          ("; ".join(named) if named else f"a tree whose git id is {result.git_tree}")
                          + " (the archive does not hold every content of this tree)", BUNDLE_ADVICE)
    if not result.digests.matches(pinned_tree):
        raise HashMismatchError(f"tree sha256 {pinned_tree} for {what} (pinned)",
                                f"{result.digests.current} in Software Heritage's {SWHID_DIR}{directory}",
                                "the archive holds the commit as git stores it; the lock pins the files the origin's "
                                "archive served, which .gitattributes (export-subst, export-ignore) can change: "
                                + BUNDLE_ADVICE)


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)

