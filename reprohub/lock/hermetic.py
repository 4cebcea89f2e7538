"""Record, replay and fence the requests repo and test code make themselves: hermetic locks.

Under ``pytest --hub-lock``, :mod:`reprohub.runtime.network` hands every GET or HEAD request of repo
code, test code or any library (urllib, requests, httpx...) to a :class:`RequestAnswerer`:

* **update** (``--hub-update``): a request the lock pins is answered from its pinned body where that
  is at hand (an update adds entries; it does not churn the ones a download counter changed); a new
  one is fetched by reprohub -- streamed into the cache, hashed in flight -- and pinned as
  ``[requests."GET <url>"]``: status, the headers clients act on, size and sha256 of the body, and
  the repo whose code asked.  The update report names the ``file:line`` that asked.
* **refresh** (``--hub-refresh``, ``--hub-accept``): every request is fetched again and pinned anew.
* **check**: a pinned request is answered from the cache, else from the small bodies that travel
  beside the lock, else from a mirror (a bundle), else from the origin, whose bytes must have the
  pinned digest -- or the test fails naming the URL and both digests, even where its output would
  still match.  A request the lock does not pin fails the test, naming the URL, the ``file:line``
  that asked and ``--hub-update``; so does another method than GET or HEAD, a connection to
  another machine and a downloading subprocess (the audit hook's findings).
* **offline** (``--hub-offline``): as check, and nothing is fetched: a body not at hand is an
  :class:`~reprohub.errors.OfflineError`.

Failing the test does not rest on the exception reaching it: repo code often catches everything
(yolov5 falls back to ``curl``), so each refusal is also kept for the test (``LockSession.fence``),
and the plugin fails the test when it ends.

**What an edit of the lock alone can do.**  A body is always checked against its digest, and comes
from the cache, the project's ``hub-responses/`` (a folder a pull request shows), a mirror the CI
names, or the URL's origin; so a changed digest only makes a check fail.  Status and headers are
replayed as the lock has them, and a redirect's ``Location`` decides the next URL: before a body is
fetched from the origin of a URL the client reached through replayed redirects, each redirect is
asked again at its origin and must point there still (a pull request that points a redirect at its
own host, and pins that host's bytes, is refused before the host is asked).  A request whose fetch failed while recording (a test
that passed without it) is pinned as unreachable and fails the same way in a check, without a request.

**Answers that change on every request.**  GitHub's release JSON carries download counts: fetched
again, its digest would differ on every fresh machine.  So bodies of at most :data:`BESIDE_MAX`
bytes travel with the project, beside the lock in ``hub-responses/<sha256>[.json|.txt|...]``
(reviewable in a pull request: they are input to repo code, review them like the lock), and a check
replays them from there; larger bodies (weights) are fetched and verified.

**Crash safety.**  Bodies are kept by :mod:`reprohub.cache.bodies` (renamed into place by digest, the
boot id in the record instead of a flush), and every read of a body is hashed as it streams
(:mod:`reprohub.runtime.network`), so a damaged file is never served silently.

Example:
    >>> import hashlib, urllib.request
    >>> from reprohub.runtime.network import answering
    >>> answerer = RequestAnswerer(LockSession(Lockfile(), tmp + "/hub.lock", update=True),
    ...                            CacheLayout(tmp + "/hub"), Downloader())
    >>> with answering(answerer):
    ...     body = urllib.request.urlopen(weights_url).read()
    >>> [(pin.key == "GET " + weights_url, pin.sha256 == hashlib.sha256(body).hexdigest())
    ...  for pin in answerer.session.recorded.requests.values()]
    [(True, True)]
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urljoin

import urllib3

from ..cache.layout import CacheLayout
from ..cache.bodies import adopt, known_body, store_stream
from ..errors import DownloadError, LockMismatchError, OfflineError, ReprohubError
from ..fetch.download import Downloaded, Downloader
from ..fetch.urls import canonical_url
from ..redact import printable
from ..runtime.network import CHUNK, Reply, Request
from .lockfile import RESPONSE_HEADERS, Lockfile, RequestPin, request_key
from .mirror import MirrorSet
from .session import LockSession

BESIDE_FOLDER = "hub-responses"
BESIDE_MAX = 64 << 10
MAX_HOPS = 10  # redirects re-checked back from one fetch (clients stop at 20-30)
ANSWERED_METHODS = ("GET", "HEAD")
# request headers reprohub does not pass on when it fetches for the client: the connection's own, and a
# range (the whole body is pinned and served)
NOT_FORWARDED = frozenset({"host", "connection", "keep-alive", "content-length", "transfer-encoding", "te",
                           "upgrade", "range", "if-range", "proxy-connection"})
_SUFFIXES = (("application/json", ".json"), ("text/", ".txt"), ("image/jpeg", ".jpg"), ("image/png", ".png"),
             ("application/x-yaml", ".yaml"))


def beside_name(pin: RequestPin) -> str:
    """The file name of a small body beside the lock: its digest, and a suffix from its type for review tools.

    Example:
        >>> beside_name(RequestPin("GET https://h/a", 200, "ab" * 32, 2, {"content-type": "application/json"}))[-8:]
        'bab.json'
    """
    kind = pin.headers.get("content-type", "").split(";")[0].strip().lower()
    return pin.sha256 + next((suffix for prefix, suffix in _SUFFIXES if kind.startswith(prefix)), "")


class RequestAnswerer:
    """The :class:`~reprohub.runtime.network.Answerer` of a locked pytest session (see the module docstring).

    Args:
        running_spec: the spec of the repo whose code runs now (``None``: test code), pinned with a request.
    """

    def __init__(self, session: LockSession, layout: CacheLayout, downloader: Downloader,
                 mirrors: "MirrorSet | None" = None, running_spec: Callable[[], "str | None"] = lambda: None,
                 offline: bool = False, unpinned_hosts: "Iterable[str]" = ()) -> None:
        self.session, self.layout, self.downloader = session, layout, downloader
        self.mirrors, self.running_spec, self.offline = mirrors, running_spec, offline
        self.unpinned_hosts = frozenset(h.strip().lower() for h in unpinned_hosts if h.strip())
        self.beside = Path(session.lock_path).parent / BESIDE_FOLDER
        self._steered: dict[str, RequestPin] = {}  # URL -> the replayed redirect pin that pointed the client there

    # -- the Answerer protocol ------------------------------------------------------------------

    def answer(self, request: Request) -> Reply:
        url = canonical_url(request.url)
        key = request_key(request.method, url)
        if request.method not in ANSWERED_METHODS:
            self.refuse(f"a {request.method} request to {url} (a lock pins GET and HEAD requests only)",
                        request.caller)
        pin = self.session.pinned_request(key)
        strict = not (self.session.update or self.session.refresh)
        if pin is None and not strict:  # asked before in this run: answered as then
            pin = self.session.recorded.requests.get(key)
        if pin is None and strict and key in self.session.lock.unreachable:  # recording asks again
            return self._failed_as_recorded(key)
        if pin is None and strict:
            self._fence(f"a request the lock does not pin: {key}", request.caller, LockMismatchError,
                        self.session.record_hint())
        if pin is not None and not self.session.refresh:
            if pin.size == 0:  # a HEAD, a redirect: nothing to find
                return self._replayed(pin, None, request.caller)
            body = self._body_at_hand(pin, request.url)
            if body is None and strict:
                body = self._verified_from_origin(pin, request)
            if body is not None:
                return self._replayed(pin, body, request.caller)
        return self._recorded(key, request)

    def answers(self, host: str, port: int) -> bool:
        """Whether requests to ``host:port`` are answered: not to a host the project named as unpinned
        (``hub_unpinned_hosts``: a test's own servers, ``name`` for every port or ``name:port``).

        Example:
            >>> answerer = RequestAnswerer(LockSession(Lockfile(), "hub.lock"), CacheLayout(tmp), Downloader(),
            ...                            unpinned_hosts=["localhost", "127.0.0.1:8080"])
            >>> answerer.answers("localhost", 5000), answerer.answers("127.0.0.1", 8080), answerer.answers("127.0.0.1", 80)
            (False, False, True)
        """
        host = host.lower().strip("[]")
        return not ({host, f"{host}:{port}"} & self.unpinned_hosts)

    def refuse(self, what: str, caller: str) -> None:
        """Stop something outside the interception (the audit hook's finding), and fail the test for it."""
        fix = ("fetch it with urllib, requests or httpx inside the test, where reprohub can pin it, or before "
               "the locked run")
        self._fence(what, caller, OfflineError if self.offline else LockMismatchError, fix)

    def body_for(self, pin: RequestPin) -> "Path | None":
        """The verified body of a pinned request, from wherever it is at hand, else from its origin (asked
        without the client's headers: ``reprohub fetch`` fills the cache before ``--hub-offline``).

        Raises:
            LockMismatchError: the origin now answers other bytes.
            OfflineError: offline, and no copy is at hand.
        """
        if not pin.size:
            return None
        return self._body_at_hand(pin, pin.url) or self._verified_from_origin(pin, Request(pin.method, pin.url, {}))

    # -- answers --------------------------------------------------------------------------------

    def _replayed(self, pin: RequestPin, body: "Path | None", caller: str) -> Reply:
        self.session.record_request(pin, caller)
        if 300 <= pin.status < 400 and "location" in pin.headers:  # where the lock sends the client next
            self._steered[canonical_url(urljoin(pin.url, pin.headers["location"]))] = pin
        return Reply(pin.status, tuple(sorted(pin.headers.items())), body, pin.sha256, pin.size, pin.url,
                     evictable=body == self.layout.response_body(pin.sha256))

    def _recorded(self, key: str, request: Request) -> Reply:
        if self.offline:
            raise OfflineError(f"a recorded answer to {key}", "none in the lock or the cache (--hub-offline)",
                               "run once online with --hub-update, then review and commit the lock")
        try:
            pin, body = self._fetch(key, request)
        except DownloadError as err:
            self.session.record_unreachable(key, f"HTTP {err.status}" if err.status else type(err).__name__)
            raise
        return self._replayed(replace(pin, repo=self.running_spec() or ""), body, request.caller)

    def _failed_as_recorded(self, key: str) -> Reply:
        self.session.touch("unreachable", key)
        error = printable(self.session.lock.unreachable[key].error)  # refused on read where it holds a control
        raise DownloadError(f"an answer to {key}", f"{error}, as when the lock was recorded (nothing was asked)",
                            "if the URL answers now, record it: " + self.session.record_hint())

    def _verified_from_origin(self, pin: RequestPin, request: Request) -> "Path | None":
        """A pinned body at hand nowhere: fetched again, and used only if it is the pinned one."""
        if self.offline:
            raise OfflineError(f"the pinned answer to {pin.key} (sha256 {pin.sha256})",
                               "it in neither the cache, the lock's hub-responses/ folder nor a mirror",
                               "fill the cache first: run once online, or point REPROHUB_MIRROR at a bundle "
                               "(reprohub bundle)")
        self._check_redirects_to(pin, request.caller)
        fetched, body = self._fetch(pin.key, request)
        if (fetched.sha256, fetched.status) != (pin.sha256, pin.status):
            self._fence(f"the pinned answer to {pin.key}: HTTP {pin.status}, sha256 {pin.sha256}",
                        request.caller, LockMismatchError,
                        "the host now serves other bytes; if that is intended, re-record them: "
                        + self.session.record_hint(),
                        found=f"HTTP {fetched.status}, sha256 {fetched.sha256}")
        return body

    def _check_redirects_to(self, pin: RequestPin, caller: str) -> None:
        """Before a body is fetched from a URL the client reached through a replayed redirect, ask the origin
        whether it redirects there (each hop back): a ``Location`` is text in the lock, and an edit of the lock
        alone must not send CI to a host of the editor's choosing, even with a digest to match."""
        target, hops = pin.url, 0
        while (redirect := self._steered.get(target)) is not None and hops < MAX_HOPS:
            fetched, _ = self._fetch(redirect.key, Request(redirect.method, redirect.url, {}))
            now = canonical_url(urljoin(redirect.url, fetched.headers.get("location", "")))
            if fetched.status != redirect.status or now != target:
                self._fence(f"the redirect of {redirect.key} to {target}, as the lock replays it", caller,
                            LockMismatchError, "restore hub.lock from version control, or re-record: "
                            + self.session.record_hint(), found=f"HTTP {fetched.status} to {now} at the origin")
            target, hops = redirect.url, hops + 1

    def _fence(self, what: str, caller: str, error: type, fix: str, found: str = "") -> None:
        where = f" (asked at {caller})" if caller else ""
        self.session.fence(f"{what}{where}" + (f": found {found}" if found else "") + f". Fix: {fix}")
        if found:
            raise error(what, found + where, fix)
        raise error(f"every request of a locked test pinned in {self.session.lock_path}", what + where, fix)

    # -- bodies ---------------------------------------------------------------------------------

    def _body_at_hand(self, pin: RequestPin, url: str) -> "Path | None":
        """A pinned body from the cache, beside the lock or from a mirror; ``None`` when it is nowhere."""
        cached = known_body(self.layout, pin.sha256)
        beside = self.beside / beside_name(pin)
        if cached is not None or beside.is_file():
            return cached or beside
        place = self.layout.response_body(pin.sha256)
        got = self.mirrors.fetch_artifact(pin.sha256, place, sync=False) if self.mirrors else None
        return adopt(Downloaded(url, place, got.sha256, got.size)) if got is not None else None

    def _fetch(self, key: str, request: Request) -> "tuple[RequestPin, Path | None]":
        """Ask the origin as the client would have (its headers, no redirect followed) and stream the body into
        the cache, hashed in flight."""
        headers = {name: None for name in self.downloader.session.headers}  # not requests' defaults: the client's
        headers.update({k: v for k, v in request.headers.items() if k not in NOT_FORWARDED})
        # retried as reprohub's own downloads are: a host restarting for a second is no unreachable URL
        response = self.downloader.request(request.method, request.url, headers, stream=True, allow_redirects=False)
        try:
            with response:
                answer = {k.lower(): v for k, v in response.headers.items() if k.lower() in RESPONSE_HEADERS}
                if request.method == "GET":
                    answer.pop("content-length", None)  # the body's size is pinned; its length is sent anew
                total = int(response.headers.get("content-length") or 0)
                stored = store_stream(self.layout, response.raw.stream(CHUNK, decode_content=False), request.url,
                                      total) if request.method == "GET" else None
                digest, size = (stored.sha256, stored.size) if stored else (hashlib.sha256().hexdigest(), 0)
        except (OSError, urllib3.exceptions.HTTPError) as err:  # the body broke off (requests' errors are OSErrors)
            raise DownloadError(f"the body of the answer to {key}", f"{type(err).__name__}: {err}",
                                "check the network and the host; nothing was recorded") from err
        body = self.layout.response_body(digest) if size else None
        return RequestPin(key, response.status_code, digest, size, answer), body


def response_body_at_hand(pin: RequestPin, layout: CacheLayout, lock_dir: "str | os.PathLike[str]") -> "Path | None":
    """The file holding a pinned request's body on this machine, unverified: in the cache, else beside the lock
    (``None`` where neither has it, or the body is empty)."""
    if not pin.size:
        return None
    for place in (layout.response_body(pin.sha256), Path(lock_dir) / BESIDE_FOLDER / beside_name(pin)):
        if place.is_file():
            return place
    return None


def response_body_for_bundle(pin: RequestPin, layout: CacheLayout, lock_path: str) -> Path:
    """The file of a pinned request's body for ``reprohub bundle`` (verified as it is copied).

    Raises:
        ReprohubError: neither the cache nor the lock's folder has it.
    """
    path = response_body_at_hand(pin, layout, Path(lock_path).resolve().parent)
    if path is None:
        raise ReprohubError(f"the body of {pin.key} (sha256 {pin.sha256}) in the cache or beside the lock",
                            "neither has it", f"run the locked tests once on this machine (pytest --hub-lock "
                            f"{lock_path}), then bundle again")
    return path


def _wanted_beside(lock: Lockfile) -> dict[str, RequestPin]:
    """The files ``hub-responses/`` should hold for ``lock``: each small body (at most BESIDE_MAX bytes) by name."""
    return {beside_name(pin): pin for pin in lock.requests.values() if 0 < pin.size <= BESIDE_MAX}


def write_beside(lock: Lockfile, lock_path: "str | os.PathLike[str]", layout: CacheLayout) -> list[str]:
    """Copy each small pinned body from the cache into ``hub-responses/`` beside the lock, where a check on a
    fresh machine replays it.  Returns what it wrote, as report lines.

    Example:
        >>> write_beside(Lockfile(), tmp + "/hub.lock", CacheLayout(tmp + "/hub"))
        []
    """
    folder = Path(lock_path).parent / BESIDE_FOLDER
    lines = []
    for name, pin in sorted(_wanted_beside(lock).items()):
        target = folder / name
        if target.is_file():
            continue
        known = known_body(layout, pin.sha256)
        if known is None:
            lines.append(f"  warning: the body of {pin.key} is not in this cache; {target} was not written")
            continue
        folder.mkdir(exist_ok=True)
        Downloader(offline=True).fetch(known.as_uri(), target, expected_sha256=pin.sha256, progress=False)
        lines.append(f"  wrote {folder.name}/{name} ({pin.size} bytes, the answer to {pin.key})")
    return lines


def prune_beside(lock: Lockfile, lock_path: "str | os.PathLike[str]") -> list[str]:
    """Delete the files of ``hub-responses/`` that no pin of ``lock`` names (after a prune was written)."""
    folder = Path(lock_path).parent / BESIDE_FOLDER
    wanted = _wanted_beside(lock)
    stale = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in wanted) if folder.is_dir() else []
    for path in stale:
        path.unlink()
    return [f"  pruned {folder.name}/{path.name}" for path in stale]
