"""The short road for a plain download: ``http.client`` on kept-alive connections, where requests adds nothing.

A small file's time is mostly per-request Python: one GET of a 1-byte local file costs 0.61 ms through
requests and urllib3 (preparing, pooling, wrapping) and 0.30 ms through ``http.client`` on a kept-alive
connection (``python benchmarks/fixed_costs.py --quick``).
So a transfer's first request goes this way when requests could not have done anything more:

* the session is reprohub's own (not one a caller passed) and reads no environment (no proxy
  variable, no netrc file: :func:`reprohub.settings.proxies_or_netrc`), and no ``responses`` mock is
  active (tests mock requests' adapter; they must see every request);
* a ``GET`` from byte 0 of an ``http(s)`` URL of plain printable ASCII with no user name in it.

A redirect is followed here by requests' own rules (``Authorization`` dropped on a change of host,
at most 30), except one that sets a cookie (requests would carry it to the next hop): that, a resume
(``Range``/``If-Range``) and a proxy go through requests as before.  The answer is checked by the same rules as requests' (:func:`reprohub.fetch.transport.
open_body`), its body read by the same pump and hashed as it streams; failures to connect are raised as
requests' ``ConnectionError``/``Timeout`` wrapping the socket's error, so the retry loop, the dead-host
memory and the error texts are the same whichever road a request took.  A kept-alive connection that
the server closed meanwhile is retried once on a fresh one.  HTTPS verifies as requests does: the
session's CA bundle (``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``...) or certifi's.

Example:
    >>> road = DirectRoad(verify=True)
    >>> road.takes("https://h.example/w.pt"), road.takes("https://u:p@h.example/w.pt"), road.takes("https://h/a b")
    (True, False, False)
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import threading
from urllib.parse import urljoin, urlsplit

from .hosts import own_requests

_PLAIN_URL = re.compile(r"https?://[^/@\s]+(/[!-~]*)?")
MAX_REDIRECTS = 30  # requests' own limit
REDIRECTS = (301, 302, 303, 307, 308)


class DirectResponse:
    """The parts of a ``requests.Response`` a transfer reads, over an ``http.client`` answer."""

    def __init__(self, road: "DirectRoad", key: tuple, conn: http.client.HTTPConnection,
                 answer: http.client.HTTPResponse) -> None:
        self.status_code, self.reason, self.headers = answer.status, answer.reason, answer.headers
        self.raw = self
        self._fp, self._road, self._key, self._conn = answer, road, key, conn

    def readinto(self, buf) -> int:
        return self._fp.readinto(buf)

    def release_conn(self) -> None:
        """The body was read to its end: the connection serves the next request to this host."""
        self._road.give_back(self._key, self._conn)

    def close(self) -> None:
        self._fp.close()
        self._conn.close()

    def discard(self) -> None:
        """Done with a small answer (a redirect): read it out so the connection serves the next request."""
        if self._fp.length is not None and self._fp.length <= 65536 and not self._fp.will_close:
            self._fp.read()
            self.release_conn()
        else:
            self.close()


class DirectRoad:
    """Kept-alive ``http.client`` connections per host, shared by the threads of one downloader."""

    def __init__(self, verify: "bool | str" = True) -> None:
        self.verify = verify
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def takes(self, url: str) -> bool:
        """Whether ``url`` may go this way (see the module docstring)."""
        return _PLAIN_URL.fullmatch(url) is not None and _requests_unmocked()

    def get(self, url: str, headers: dict[str, str], timeout: tuple[float, float]) -> DirectResponse | None:
        """``GET url``, following redirects by requests' rules; ``None`` where only requests can go on (a
        redirect that sets a cookie, or leads to a URL this road does not take): then requests asks again.

        Raises:
            requests.ConnectionError, requests.Timeout: no answer, wrapping the socket's error.
            requests.TooManyRedirects: more than requests' 30.
        """
        import requests

        for _ in range(MAX_REDIRECTS + 1):
            response = self._get_once(url, headers, timeout)
            if not 300 <= response.status_code < 400 or response.status_code not in REDIRECTS:
                return response
            location = response.headers.get("Location")
            response.discard()
            if not location or response.headers.get("Set-Cookie"):
                return None
            target = urljoin(url, location)
            if not self.takes(target):
                return None
            if requests.sessions.SessionRedirectMixin.should_strip_auth(None, url, target):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = target
        raise requests.TooManyRedirects(f"Exceeded {MAX_REDIRECTS} redirects.")

    def _get_once(self, url: str, headers: dict[str, str], timeout: tuple[float, float]) -> DirectResponse:
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname, parts.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            conn, reused = self._connection(key, timeout)
            try:
                with own_requests():  # reprohub's own: a hermetic run's interception lets it through
                    if conn.sock is None:
                        conn.connect()
                        conn.sock.settimeout(timeout[1])
                    conn.request("GET", target, headers=headers)
                    answer = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as err:
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle connection meanwhile: once more, on a new one
                raise _as_requests_error(err) from None
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                raise _as_requests_error(err) from None
            return DirectResponse(self, key, conn, answer)
        raise AssertionError("unreachable")

    def give_back(self, key: tuple, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def _connection(self, key: tuple, timeout: tuple[float, float]) -> "tuple[http.client.HTTPConnection, bool]":
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout[0], context=self._ssl()), False
        return http.client.HTTPConnection(host, port, timeout=timeout[0]), False

    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            verify = self.verify
            if verify is False:
                context = ssl._create_unverified_context()
            elif isinstance(verify, str) and os.path.isdir(verify):
                context = ssl.create_default_context(capath=verify)
            else:
                import certifi

                context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else certifi.where())
            self._context = context
        return self._context


def _requests_unmocked() -> bool:
    """No ``responses`` mock (or any other patch of requests' adapter) is active: it must see every request."""
    import requests.adapters

    return getattr(requests.adapters.HTTPAdapter.send, "__module__", None) == "requests.adapters"


def _as_requests_error(err: BaseException) -> BaseException:
    """The error requests would raise for the same failure, wrapping the socket's (the retry loop's rules)."""
    import requests

    if isinstance(err, (socket.timeout, TimeoutError)):
        return requests.Timeout(err)
    if isinstance(err, ssl.SSLError):
        return requests.exceptions.SSLError(err)
    return requests.ConnectionError(err)
