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
from the cache (only for a request it was fetched for), the project's ``hub-responses/`` (a folder a
pull request shows; a file only for the request its name carries), a mirror the CI names, or the URL's
origin; so a changed digest only makes a check fail, and cannot swap in another stored answer.
Status and headers are replayed as the lock has them, and a redirect's ``Location`` decides the next
URL: before a body is fetched from the origin of a URL the client reached through replayed redirects,
the chain is walked again from the client's own URL, hop by hop, each hop checked at its origin before
the host it names is asked (a pull request that points a redirect at its own host -- with a fragment,
or through a hop of its own -- and pins that host's bytes, is refused before that host is asked).

**Pinned by content, not by URL.**  A redirect's target is pinned without signing parameters (a CDN
signs it anew on every request), and the body is fetched from the target the origin sends *now*: a
signature that expired is no change; another host, or other bytes, is.

**Failures.**  A request whose fetch failed while recording (a test that passed without it) is pinned as
unreachable and fails the same way in a check, without a request.  A write that fails on this machine (a
full disk) is no answer of the host's: it fails the recording as a local failure and is never pinned.

**Answers that change on every request.**  GitHub's release JSON carries download counts: fetched
again, its digest would differ on every fresh machine.  So bodies of at most :data:`BESIDE_MAX`
bytes travel with the project, beside the lock in ``hub-responses/`` (:mod:`reprohub.lock.beside`)
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
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urljoin

import urllib3

from ..cache.layout import CacheLayout
from ..cache.bodies import adopt, bind, bound_body, store_stream, verified_body
from ..errors import DownloadError, HashMismatchError, LocalDiskError, LockMismatchError, OfflineError
from ..fetch.download import Downloaded, Downloader
from ..fetch.urls import canonical_url
from ..redact import printable
from ..runtime.replies import CHUNK, Reply, Request
from ..runtime.replies import not_modified, ranged
from .entries import RESPONSE_HEADERS
from .lockfile import Lockfile, RequestPin, request_key
from .beside import beside_body
from .mirror import MirrorSet
from .session import LockSession

MAX_HOPS = 10  # redirects re-checked back from one fetch (clients stop at 20-30)
ANSWERED_METHODS = ("GET", "HEAD")
# request headers reprohub does not pass on when it fetches for the client: the connection's own, a range (the
# whole body is pinned and served) and a condition (the whole answer is pinned and the client's condition answered
# from it, runtime/replies: a developer's warm client cache must not pin "304, 0 bytes")
NOT_FORWARDED = frozenset({"host", "connection", "keep-alive", "content-length", "transfer-encoding", "te",
                           "upgrade", "range", "if-range", "proxy-connection", "if-none-match", "if-modified-since",
                           "if-match", "if-unmodified-since"})


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
        self.lock_dir = Path(session.lock_path).parent
        self._steered: dict[str, RequestPin] = {}  # URL -> the replayed redirect pin that pointed the client there
        self._signed: dict[str, str] = {}  # a redirect target as pinned -> as the origin just sent it (signed)

    # -- the Answerer protocol ------------------------------------------------------------------

    def answer(self, request: Request) -> Reply:
        return ranged(not_modified(self._answer(request), request.headers), request.headers)

    def _answer(self, request: Request) -> Reply:
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
            body = self._body_at_hand(pin)
            if body is None and strict:
                body = self._verified_from_origin(pin, request, self._steered)
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
        fix = ("where your code asks, fetch with urllib, requests or httpx, which reprohub pins, or before the "
               "locked run; where a library asks through a client reprohub does not answer, fetch before the "
               "locked run, or name the host in hub_unpinned_hosts if it is the suite's own server")
        self._fence(what, caller, OfflineError if self.offline else LockMismatchError, fix)

    def lookup(self, name: str, caller: str) -> None:
        """A name resolved by repo or test code: refused in a check or offline, unless the project named the host
        as unpinned (a client reprohub answers never resolves: the answer needs no address)."""
        if (self.session.update or self.session.refresh) and not self.offline:
            return
        if name.lower() in self.unpinned_hosts or any(h.startswith(name.lower() + ":") for h in self.unpinned_hosts):
            return
        fix = ("a client reprohub answers resolves no name, so " + self.session.record_hint()
               + "; a suite's own server goes in hub_unpinned_hosts")
        self._fence(f"a lookup of the name {name} (nothing may leave the machine in a check)", caller,
                    OfflineError if self.offline else LockMismatchError, fix)

    def body_for(self, pin: RequestPin) -> "Path | None":
        """The verified body of a pinned request, from wherever it is at hand, else from its origin (asked
        without the client's headers, through the origin's current redirects: ``reprohub fetch`` fills the
        cache before ``--hub-offline``).

        Raises:
            LockMismatchError: the origin now answers other bytes, or redirects elsewhere than pinned.
            OfflineError: offline, and no copy is at hand.
        """
        if not pin.size:
            return None
        return self._body_at_hand(pin) or self._verified_from_origin(
            pin, Request(pin.method, pin.url, {}), steering(self.session.lock))

    # -- answers --------------------------------------------------------------------------------

    def _replayed(self, pin: RequestPin, body: "Path | None", caller: str) -> Reply:
        self.session.record_request(pin, caller)
        if is_redirect(pin):  # where the lock sends the client next
            self._steered[redirect_target(pin)] = pin
        return Reply(pin.status, tuple(sorted(pin.headers.items())), body, pin.sha256, pin.size, pin.url,
                     evictable=body == self.layout.response_body(pin.sha256))

    def _recorded(self, key: str, request: Request) -> Reply:
        if self.offline:
            raise OfflineError(f"a recorded answer to {key}", "none in the lock or the cache (--hub-offline)",
                               "run once online with --hub-update, then review and commit the lock")
        url = canonical_url(request.url)
        live = self._signed.pop(url, None) or (self._live_url(url, request.caller, self._steered)
                                               if url in self._steered else request.url)
        try:
            pin, body = self._fetch(key, Request(request.method, live, request.headers, request.caller))
        except DownloadError as err:
            self.session.record_unreachable(key, f"HTTP {err.status}" if err.status else type(err).__name__)
            raise
        if is_redirect(pin):  # pinned without its signature; the client is sent the signed URL's pinned name
            target = urljoin(live, pin.headers["location"])
            self._signed[canonical_url(target)] = target
            pin = replace(pin, headers={**pin.headers, "location": canonical_url(target)})
        return self._replayed(replace(pin, repo=self.running_spec() or ""), body, request.caller)

    def _failed_as_recorded(self, key: str) -> Reply:
        self.session.touch("unreachable", key)
        error = printable(self.session.lock.unreachable[key].error)  # refused on read where it holds a control
        raise DownloadError(f"an answer to {key}", f"{error}, as when the lock was recorded (nothing was asked)",
                            "if the URL answers now, record it: " + self.session.record_hint())

    def _verified_from_origin(self, pin: RequestPin, request: Request, steered: "dict[str, RequestPin]") -> Path:
        """A pinned body at hand nowhere: fetched again, through the origin's current redirects, and used only if
        it is the pinned one (pinned by content: a redirect target signed anew on every request is no change)."""
        if self.offline:
            raise OfflineError(f"the pinned answer to {pin.key} (sha256 {pin.sha256})",
                               "it in neither the cache, the lock's hub-responses/ folder nor a mirror",
                               "fill the cache first: run once online, or point REPROHUB_MIRROR at a bundle "
                               "(reprohub bundle)")
        live = self._live_url(pin.url, request.caller, steered)
        fetched, body = self._fetch(pin.key, Request(request.method, live, request.headers, request.caller))
        if (fetched.sha256, fetched.size, fetched.status) != (pin.sha256, pin.size, pin.status) or body is None:
            self._fence(f"the pinned answer to {pin.key}: HTTP {pin.status}, sha256 {pin.sha256}",
                        request.caller, LockMismatchError,
                        "the host now serves other bytes; if that is intended, re-record them: "
                        + self.session.record_hint(),
                        found=f"HTTP {fetched.status}, sha256 {fetched.sha256}")
        bind(self.layout, pin.key, pin.sha256)
        return body

    def _live_url(self, url: str, caller: str, steered: "dict[str, RequestPin]") -> str:
        """Where to fetch ``url`` from now: itself, or -- where replayed redirects led the client there -- the end
        of the origin's *current* redirect chain, walked from the first URL the client asked.  Each hop must
        still lead where the lock says (its target compared without signing parameters), and each is checked
        before the host it names is asked: an edit of the lock alone cannot send CI to a host of the editor's
        choosing, not through a fragment, not through a hop of its own.

        Raises:
            LockMismatchError: a redirect now answers otherwise, or leads elsewhere (nothing more is asked).
        """
        chain, target = [], url
        while (redirect := steered.get(target)) is not None and len(chain) < MAX_HOPS:
            chain.append(redirect)
            target = redirect.url
        live = target  # the client's own URL: the lock did not choose it
        for redirect in reversed(chain):
            fetched, _ = self._fetch(redirect.key, Request(redirect.method, live, {}))
            now = urljoin(live, fetched.headers.get("location", ""))
            if fetched.status != redirect.status or canonical_url(now) != redirect_target(redirect):
                self._fence(f"the redirect of {redirect.key} to {redirect_target(redirect)}, as the lock replays it",
                            caller, LockMismatchError, "restore hub.lock from version control, or re-record: "
                            + self.session.record_hint(),
                            found=f"HTTP {fetched.status} to {canonical_url(now)} at the origin")
            live = now
        return live

    def _fence(self, what: str, caller: str, error: type, fix: str, found: str = "") -> None:
        where = f" (asked at {caller})" if caller else ""
        self.session.fence(f"{what}{where}" + (f": found {found}" if found else "") + f". Fix: {fix}")
        if found:
            raise error(what, found + where, fix)
        raise error(f"every request of a locked test pinned in {self.session.lock_path}", what + where, fix)

    # -- bodies ---------------------------------------------------------------------------------

    def _body_at_hand(self, pin: RequestPin) -> "Path | None":
        """A pinned body from the cache (fetched for this request), beside the lock (under this request's name)
        or from a mirror, verified whole before it is served; ``None`` when it is nowhere."""
        cached = bound_body(self.layout, pin.key, pin.url, pin.sha256)
        if cached is not None and verified_body(cached, pin.sha256, evict=True):
            return cached
        beside = beside_body(pin, self.lock_dir)
        if beside is not None:
            if not verified_body(beside, pin.sha256, evict=False):
                raise HashMismatchError(f"the answer to {pin.key} beside the lock (sha256 {pin.sha256})",
                                        f"other bytes in {beside}", "restore the file from version control, or "
                                        "re-record: " + self.session.record_hint())
            return beside
        place = self.layout.response_body(pin.sha256)
        got = self.mirrors.fetch_artifact(pin.sha256, place, sync=False) if self.mirrors else None
        if got is None:
            return None
        bind(self.layout, pin.key, pin.sha256)
        return adopt(Downloaded(pin.url, place, got.sha256, got.size))

    def _fetch(self, key: str, request: Request) -> "tuple[RequestPin, Path | None]":
        """Ask the origin as the client would have (its headers less the conditional ones, no redirect followed)
        and stream the body into the cache, hashed in flight (a redirect's body is not kept: it names the
        signed URL).  A write that fails on this machine fails the test as a local failure, never the URL's."""
        headers = {name: None for name in self.downloader.session.headers}  # not requests' defaults: the client's
        headers.update({k: v for k, v in request.headers.items() if k not in NOT_FORWARDED})
        # retried as reprohub's own downloads are: a host restarting for a second is no unreachable URL
        response = self.downloader.request(request.method, request.url, headers, stream=True, allow_redirects=False)
        try:
            with response:
                answer = {k.lower(): v for k, v in response.headers.items() if k.lower() in RESPONSE_HEADERS}
                if request.method == "GET":
                    answer.pop("content-length", None)  # the body's size is pinned; its length is sent anew
                keep = request.method == "GET" and not 300 <= response.status_code < 400
                total = int(response.headers.get("content-length") or 0)
                stored = store_stream(self.layout, response.raw.stream(CHUNK, decode_content=False), request.url,
                                      total) if keep else None
                digest, size = (stored.sha256, stored.size) if stored else (hashlib.sha256().hexdigest(), 0)
        except LocalDiskError as err:
            self._fence(f"a local failure while recording the answer to {key}", request.caller, LocalDiskError,
                        err.fix, found=err.found)
        except (OSError, urllib3.exceptions.HTTPError) as err:  # the body broke off (requests' errors are OSErrors)
            raise DownloadError(f"the body of the answer to {key}", f"{type(err).__name__}: {err}",
                                "check the network and the host; nothing was recorded") from err
        if size:
            bind(self.layout, key, digest)
        body = self.layout.response_body(digest) if size else None
        return RequestPin(key, response.status_code, digest, size, answer), body


def is_redirect(pin: RequestPin) -> bool:
    """Whether a pinned answer sends the client on to another URL."""
    return 300 <= pin.status < 400 and "location" in pin.headers


def redirect_target(pin: RequestPin) -> str:
    """The canonical URL a pinned redirect sends the client to (no fragment, no signing parameter)."""
    return canonical_url(urljoin(pin.url, pin.headers["location"]))


def steering(lock: Lockfile) -> "dict[str, RequestPin]":
    """Each redirect target of ``lock`` -> the pinned redirect that leads there (``reprohub fetch`` walks them from
    the first URL, as a client did)."""
    return {redirect_target(pin): pin for pin in lock.requests.values() if is_redirect(pin)}
