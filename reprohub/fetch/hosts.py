"""What reprohub knows about requests and hosts without the HTTP stack: which connections are its own,
which hosts were found gone a moment ago, and the rules for statuses, ``Retry-After`` and validators.

Split from :mod:`reprohub.fetch.transport` so that what every load consults (a prefetch marking nothing,
the hermetic layer letting reprohub's own connections through, a partial's validator) does not import
``requests``: ``import reprohub`` and a load from a warm cache never import the HTTP stack, and the first
request does (issue 41: ``python benchmarks/run.py --only imports``).

Example:
    >>> parse_retry_after("7"), parse_retry_after(None), is_strong('W/"x"')
    (7.0, None, False)
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Mapping
from urllib.parse import urlsplit

from ..errors import DownloadError, HTTPStatusError


class Restart(Exception):
    """The server refused our Range request (416, or another range): ask again from byte 0."""


RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


_own = threading.local()


def is_own_request() -> bool:
    """Whether this thread is inside :func:`own_requests` (a connection reprohub itself makes)."""
    return getattr(_own, "depth", 0) > 0


@contextlib.contextmanager
def own_requests() -> Iterator[None]:
    """Within the block, on this thread, connections and subprocesses are reprohub's own: the hermetic layer
    (:mod:`reprohub.runtime.network`), which answers the requests of repo and test code, lets them through.

    Example:
        >>> with own_requests():
        ...     is_own_request()
        True
    """
    _own.depth = getattr(_own, "depth", 0) + 1
    try:
        yield
    finally:
        _own.depth -= 1


# Hosts found unreachable (a name that does not resolve, or refused connections through ~1.75 s of
# retries): a later request to one fails at once with the same error, as a dead mirror is skipped,
# instead of each load spending its retries on a host that is gone.  Only for a while: the first
# failure is remembered for DEAD_FOR seconds, each renewed one twice as long (at most DEAD_FOR_MAX), and
# a host that answers is forgotten -- a host that restarted, or a blip, does not stay dead for a long
# session.  A prefetch never marks a host (its failure is only logged, the load asks again), and a
# transient resolver error (EAI_AGAIN) is an ordinary network error, retried with backoff.
DEAD_FOR, DEAD_FOR_MAX = 5.0, 60.0
REFUSED_WAITS = (0.25, 0.5, 1.0)  # a refused connection is asked again after these: a host restarting is waited for


@dataclass
class _Dead:
    problem: str
    until: float
    strikes: int


_dead_hosts: dict[str, _Dead] = {}
_dead_lock = threading.Lock()
_quiet = threading.local()  # set on a prefetch thread: its failures mark no host


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def remembering() -> bool:
    """Whether a failure on this thread may mark a host or mirror as gone (not on a prefetch thread)."""
    return not getattr(_quiet, "on", False)


def remember_dead(url: str, problem: str) -> None:
    """Fail requests to ``url``'s host at once for a while (longer each time it is found gone again); not on a
    prefetch thread."""
    if not remembering():
        return
    with _dead_lock:
        host = host_of(url)
        strikes = _dead_hosts[host].strikes + 1 if host in _dead_hosts else 1
        wait = min(DEAD_FOR_MAX, DEAD_FOR * 2 ** (strikes - 1))
        _dead_hosts[host] = _Dead(problem, time.monotonic() + wait, strikes)


def revived(url: str) -> None:
    """``url``'s host answered: forget that it was gone."""
    if _dead_hosts:  # the usual case, no host ever gone: no lock, no parsing
        with _dead_lock:
            _dead_hosts.pop(host_of(url), None)


@contextlib.contextmanager
def failures_not_remembered() -> Iterator[None]:
    """Within the block, on this thread, an unreachable host is not remembered (a prefetch: its failure is
    left to the load's own request, which must ask the host again)."""
    before = getattr(_quiet, "on", False)
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = before


def forget_dead_hosts() -> None:
    """Forget every host remembered as unreachable (tests; a long-lived process whose network came back)."""
    with _dead_lock:
        _dead_hosts.clear()


def check_alive(url: str) -> None:
    """Raise at once if ``url``'s host was found unreachable a short while ago (see ``DEAD_FOR``)."""
    if not _dead_hosts:
        return
    dead = _dead_hosts.get(host_of(url))
    if dead is not None and time.monotonic() < dead.until:
        left = dead.until - time.monotonic()
        raise unreachable_error(url, f"{dead.problem} (earlier in this process; not asked again for {left:.0f} s)")


def unreachable_error(url: str, problem: str) -> DownloadError:
    return DownloadError(f"an answer from {url}", problem,
                         "check the host name and the network; if the origin is gone for good, a bundle brings "
                         "back what a lock pins (REPROHUB_MIRROR=<bundle>; `reprohub bundle` writes one)")


class RetryableStatus(Exception):
    """A status worth retrying (408, 429, 5xx), with the wait the server asked for."""

    def __init__(self, code: int, reason: str, retry_after: float | None, headers: Mapping[str, str]) -> None:
        super().__init__(code)
        self.code, self.reason, self.retry_after, self.headers = code, reason, retry_after, headers


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        import email.utils  # only for a date-valued Retry-After

        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def status_error(url: str, code: int, reason: str, headers: Mapping[str, str] | None = None) -> HTTPStatusError:
    fix = {
        401: "the host needs credentials: set GITHUB_TOKEN or check the URL",
        403: "access denied or rate-limited: set GITHUB_TOKEN or wait",
        404: "check the URL; the file may have moved or been deleted",
    }.get(code, "check the URL and the server; retry later if the server is failing")
    return HTTPStatusError(f"HTTP 200 from {url}", f"HTTP {code} {reason}".strip(), fix, status=code, url=url,
                           reason=reason, headers=dict(headers or {}))


def is_strong(validator: str | None) -> bool:
    """Whether a validator can vouch that a resumed body continues the same bytes (a weak ``W/`` ETag cannot)."""
    return bool(validator) and not validator.startswith("W/")
