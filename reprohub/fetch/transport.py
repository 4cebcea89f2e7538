"""The HTTP side of a transfer: the session, opening a (ranged) body, reading it, and what its errors mean.

:mod:`reprohub.fetch.download` drives transfers with these; nothing here retries or writes files.  This
is the only module of the download path that imports ``requests``, and it is imported at the first
request, not with ``reprohub`` (the rules that need no HTTP stack are in :mod:`reprohub.fetch.hosts`).

Example:
    >>> unreachable_kind(requests.ConnectionError(ConnectionRefusedError(111, "Connection refused")))
    'refused'
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from typing import Callable, Iterator, Mapping

import requests
import requests.adapters
import urllib3

from .. import settings
from ..errors import DownloadError
from .hosts import RETRYABLE_STATUS, Restart, RetryableStatus, is_strong, own_requests, parse_retry_after, \
    status_error

NOT_RETRYABLE = (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                 requests.exceptions.InvalidHeader, requests.exceptions.URLRequired)
NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError,
                  TimeoutError)
TRUNCATIONS = (http.client.IncompleteRead, urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError)


def new_session() -> requests.Session:
    """A session that also honours ``SSL_CERT_FILE``/``SSL_CERT_DIR`` (urllib's and torch.hub's CA settings).

    requests looks at the environment on every request (proxy variables, a netrc file, its CA
    variables): about 0.5 ms each here, a sixth of a small download.  Where no proxy variable and
    no netrc file exist, all that lookup could find is the CA bundle, so it is read once here
    (``REQUESTS_CA_BUNDLE`` still wins) and the per-request lookup is turned off.
    """
    session = requests.Session()
    for prefix in ("https://", "http://"):
        session.mount(prefix, _OwnAdapter())
    ca = settings.ca_bundle()
    if ca:
        session.verify = ca
    session.trust_env = settings.proxies_or_netrc()
    return session



class _OwnAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, marking every request it sends as reprohub's own (a session from :func:`new_session`)."""

    def send(self, request, *args, **kwargs):
        with own_requests():
            return super().send(request, *args, **kwargs)


def unreachable_kind(err: BaseException) -> str | None:
    """``"name"`` for a host name that does not resolve, ``"refused"`` for a refused connection, else ``None``
    (timeouts, resets, 5xx and a resolver that answered "try again" are worth the usual retries)."""
    chain = _chain(err)
    if any(_resolver_busy(e) for e in chain):
        return None
    for current in chain:
        if isinstance(current, (urllib3.exceptions.NameResolutionError, socket.gaierror)):
            return "name"
        if isinstance(current, ConnectionRefusedError) or (
                isinstance(current, urllib3.exceptions.NewConnectionError) and "refused" in str(current).lower()):
            return "refused"
    return None


def _chain(err: BaseException, depth: int = 8) -> list[BaseException]:
    """``err`` and what it wraps: requests wraps urllib3's error, which wraps the socket's; followed through
    ``reason``, the first argument, then ``__cause__`` (at most ``depth`` deep)."""
    found: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and len(found) < depth:
        found.append(current)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__
    return found


def _resolver_busy(err: BaseException) -> bool:
    """A transient resolver failure: ``EAI_AGAIN``, "Temporary failure in name resolution" (a DNS server that
    timed out, a network coming up), not a name that does not exist."""
    return ((isinstance(err, socket.gaierror) and err.errno == socket.EAI_AGAIN)
            or "temporary failure in name resolution" in str(err).lower())


def expected_total(response: requests.Response, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        return None
    return offset + int(length) if response.status_code == 206 else int(length)


@contextlib.contextmanager
def finished(response: requests.Response, complete: Callable[[], bool]) -> Iterator[None]:
    """Read the body in the block; then hand the connection back to the pool if ``complete()`` (the
    whole sized body was read): the next request to that host skips the connect (and, over HTTPS,
    the handshake).  A body cut short, or a block that raised, closes the connection instead."""
    try:
        yield
    except BaseException:
        response.close()
        raise
    if complete() and response.raw is not None:
        response.raw.release_conn()
    else:
        response.close()


def reader_of(response: requests.Response) -> Callable[[memoryview], int]:
    """``readinto`` of the body: straight from http.client when the body is plain bytes."""
    raw = response.raw
    fp = getattr(raw, "_fp", None)
    plain = not response.headers.get("Content-Encoding") and isinstance(fp, http.client.HTTPResponse)
    if plain and fp.length is not None:
        def read_checked(buf: memoryview) -> int:
            n = fp.readinto(buf)
            if n == 0 and fp.length:
                raise urllib3.exceptions.IncompleteRead(0, fp.length)
            return n
        return read_checked
    return raw.readinto


def unusable_url(url: str, err: BaseException) -> DownloadError:
    """A URL no retry can fix (no scheme, bad host, bad header): an error at once."""
    return DownloadError(f"a URL requests can fetch ({url!r})", f"{type(err).__name__}: {err}",
                         "check the URL or the setting it came from (it needs http:// or https:// and a host)")


def validator_of(response: requests.Response) -> str | None:
    """The server's name for this version of the body: its ``ETag``, else its ``Last-Modified``."""
    return response.headers.get("ETag") or response.headers.get("Last-Modified")


def _nothing_to_merge(session: requests.Session) -> bool:
    """Whether ``Session.request`` would add nothing to a request of ours: no environment lookup, proxies,
    auth, cookies, hooks, client certificate or extra adapter settings to merge in."""
    return not (session.trust_env or session.proxies or session.auth or session.cookies or session.cert
                or session.params or any(session.hooks.values()))


def stream_get(session: requests.Session, url: str, headers: Mapping[str, str],
               timeout: tuple[float, float]) -> requests.Response:
    """``session.get(url, headers=headers, stream=True, timeout=timeout)``, a sixth cheaper.

    ``Session.request`` merges cookies, environment, proxies, auth and hooks into every request: 0.12 of
    the 0.67 ms a small local GET costs here (``python benchmarks/fixed_costs.py``), two or three times a
    cold load.  Where the session has none of those (:func:`_nothing_to_merge`, the usual case: no proxy
    variable, no netrc), the request is prepared and handed to the session's adapter directly -- the call
    the ``responses`` mocks patch -- and a redirect is followed by the session's own ``resolve_redirects``,
    so its rules (``Authorization`` dropped on a change of host, 303 -> GET, the redirect limit) stay
    requests' own.  Otherwise this is ``session.get``.

    Example:
        >>> import responses
        >>> with responses.RequestsMock() as mock:
        ...     _ = mock.get("https://h.example/a", status=302, headers={"Location": "https://i.example/b"})
        ...     _ = mock.get("https://i.example/b", body=b"ok")
        ...     r = stream_get(new_session(), "https://h.example/a", {"Authorization": "token t"}, (5, 5))
        ...     r.url, r.content, "Authorization" in mock.calls[1].request.headers
        ('https://i.example/b', b'ok', False)
    """
    if not _nothing_to_merge(session):
        return session.get(url, headers=dict(headers), stream=True, timeout=timeout)
    request = requests.PreparedRequest()
    request.prepare(method="GET", url=url, headers={**session.headers, **headers})
    settings = {"stream": True, "timeout": timeout, "verify": session.verify, "cert": None, "proxies": {}}
    response = session.get_adapter(url).send(request, **settings)
    if response.is_redirect:
        history = [response, *session.resolve_redirects(response, request, **settings)]
        response = history.pop()
        response.history = history
    return response


def open_body(session: requests.Session, url: str, offset: int, validator: str | None, headers: dict[str, str],
              timeout: tuple[float, float], direct=None) -> requests.Response:
    """GET ``url``'s body from byte ``offset`` (``Range`` + ``If-Range`` on a resume), streamed.

    A body is continued only from the same representation: without a strong validator no ``Range``
    is sent (the server answers the whole body, and the caller starts over), and a 206 is accepted
    only when it starts at ``offset`` *and* carries the validator resumed with -- a server that
    ignores ``If-Range`` and answers 206 from a changed file would otherwise splice two versions.
    ``direct``: the short road a plain GET from byte 0 takes (:mod:`reprohub.fetch.direct`), checked by the
    same rules.

    Raises:
        Restart: the server refused the range, or answered a part of another version; ask again from byte 0.
        RetryableStatus: 408, 429 or a 5xx, with the server's ``Retry-After``.
        HTTPStatusError: any other status but 200 and 206.
    """
    request_headers = {"User-Agent": f"reprohub/{settings.VERSION}", "Accept-Encoding": "identity", **headers}
    if offset and is_strong(validator):
        request_headers["Range"] = f"bytes={offset}-"
        request_headers["If-Range"] = validator
    response = None
    if direct is not None and "Range" not in request_headers and direct.takes(url):  # fetch/direct.py
        response = direct.get(url, {"Accept": "*/*", **request_headers}, timeout)
    if response is None:
        response = stream_get(session, url, request_headers, timeout)
    code = response.status_code
    if code == 416 and offset:
        response.close()
        raise Restart()
    if code in RETRYABLE_STATUS:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        response.close()
        raise RetryableStatus(code, response.reason or "", retry_after, response.headers)
    if code not in (200, 206):
        response.close()
        raise status_error(url, code, response.reason or "", response.headers)
    if code == 206 and (not offset or not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
                        or validator_of(response) != validator):
        response.close()
        raise Restart()
    return response
