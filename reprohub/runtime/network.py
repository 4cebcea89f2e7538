"""Hand every HTTP(S) request repo and test code make to an answerer: the interception of hermetic locks.

Real hub repos fetch more than torch.hub's functions: yolov5 asks GitHub's API with ``requests``,
once-for-all calls ``urlretrieve``, timm goes through huggingface_hub's ``httpx``, and tests
``urlopen`` a sample image.  While :func:`answering` holds an :class:`Answerer`, no such request
reaches the network; the answerer (:mod:`reprohub.lock.hermetic`: record, replay, refuse) answers it:

* ``http.client`` (so ``urllib.request`` and ``urlretrieve``) and ``urllib3`` (so ``requests``): a
  connection opened gets no socket but an :class:`_Exchange`, which reads the request the client
  writes and gives the answer to the client's *own* parser (``http.client.HTTPResponse``), so
  redirects, content decoding and error statuses behave as they do with a host.  Every answer says
  ``Connection: close``, and a connection kept alive from before is closed first: no request can
  ride on a socket opened outside the interception.
* ``httpcore`` and ``httpcore2`` (so ``httpx``, ``httpx2`` and huggingface_hub 1.x and 2.x): their
  connection pools (sync and async) return the answer as the library's own ``Response``.

An answer's body is a file, hashed as the client reads it: bytes other than the pinned ones end the
read with :class:`~reprohub.errors.HashMismatchError`.  reprohub's own requests
(:func:`~reprohub.fetch.hosts.own_requests`) pass untouched.  What no client patch sees -- a raw
socket, another client (aiohttp, pycurl), a subprocess -- :mod:`reprohub.runtime.fence` shows the answerer.

Example:
    >>> import urllib.request
    >>> class Teapot:
    ...     def answer(self, request):
    ...         return Reply(418, (("content-type", "text/plain"),), None)
    ...     def refuse(self, what, caller):
    ...         raise RuntimeError(what)
    ...     def answers(self, host, port):
    ...         return True
    ...     def lookup(self, name, caller):
    ...         pass
    >>> with answering(Teapot()):
    ...     urllib.request.urlopen("http://192.0.2.7/tea")          # no packet leaves the machine
    Traceback (most recent call last):
    ...
    urllib.error.HTTPError: HTTP Error 418: I'm a Teapot
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import importlib.util
import io
import socket
import threading
from typing import Callable, Iterator, Protocol

from ..fetch.hosts import is_own_request, own_requests
from .callsite import caller
from .replies import CHUNK, Reply, ReplyBody, ReplyChunks, Request, reply_headers, status_and_headers

HTTPCORES = ("httpcore", "httpcore2")  # httpx's transport and httpx2's: the same pool interface


class Answerer(Protocol):
    """What :func:`answering` hands requests to (:class:`reprohub.lock.hermetic.RequestAnswerer`)."""

    def answer(self, request: Request) -> Reply:
        """The reply to ``request``; raise to refuse it (the client sees the exception)."""

    def refuse(self, what: str, caller: str) -> None:
        """Something outside the interception would reach the network (``what``): raise to stop it."""

    def answers(self, host: str, port: int) -> bool:
        """Whether requests to ``host:port`` are answered (``False``: they go to the network, unpinned)."""

    def lookup(self, name: str, caller: str) -> None:
        """Repo or test code resolves ``name`` (not loopback): raise to refuse it."""


_answerers: list[Answerer] = []
_installed = 0
_install_lock = threading.Lock()
_saved: dict[tuple[type, str], Callable] = {}


def current() -> "Answerer | None":
    """The answerer of this moment (process-wide: a library's download threads are answered too)."""
    return _answerers[-1] if _answerers and not is_own_request() else None


@contextlib.contextmanager
def answering(answerer: Answerer) -> Iterator[None]:
    """Within the block, requests of every thread (but reprohub's own) go to ``answerer``; nestable."""
    install()
    _answerers.append(answerer)
    try:
        yield
    finally:
        _answerers.remove(answerer)
        uninstall()


def install() -> None:
    """Patch the clients (once, counted: each :func:`install` is undone by one :func:`uninstall`)."""
    global _installed
    with _install_lock:
        _installed += 1
        if _installed > 1:
            return
        for owner, name, replacement in _patches():
            _saved[(owner, name)] = owner.__dict__[name]
            setattr(owner, name, replacement(owner.__dict__[name]))


def uninstall() -> None:
    """Undo one :func:`install`; the last one puts the clients' own methods back."""
    global _installed
    with _install_lock:
        _installed -= 1
        if _installed == 0:
            for (owner, name), original in _saved.items():
                setattr(owner, name, original)
            _saved.clear()


def _patches() -> Iterator[tuple[type, str, Callable]]:
    yield http.client.HTTPConnection, "connect", _connect_patch("http")
    yield http.client.HTTPSConnection, "connect", _connect_patch("https")
    yield http.client.HTTPConnection, "putrequest", _putrequest_patch
    if importlib.util.find_spec("urllib3") is not None:
        urllib3_connection = importlib.import_module("urllib3.connection")
        yield urllib3_connection.HTTPConnection, "connect", _connect_patch("http")
        yield urllib3_connection.HTTPSConnection, "connect", _connect_patch("https")
    for name in HTTPCORES:  # httpx's transport, and httpx2's (huggingface_hub 2.x)
        if importlib.util.find_spec(name) is not None:
            httpcore = importlib.import_module(name)
            yield httpcore.ConnectionPool, "handle_request", _pool_patch(httpcore.Response)
            yield httpcore.AsyncConnectionPool, "handle_async_request", _async_pool_patch(httpcore.Response)


# -- http.client and urllib3 ------------------------------------------------------------------------


def _connect_patch(scheme: str) -> Callable:
    def patch(original: Callable) -> Callable:
        def connect(self) -> None:
            answerer = current()
            tunnel = getattr(self, "_tunnel_host", None)
            host, port = (tunnel, getattr(self, "_tunnel_port", None)) if tunnel else (self.host, self.port)
            if answerer is None:
                return original(self)
            if not answerer.answers(host, port or (443 if scheme == "https" else 80)):
                with own_requests():  # a host the answerer leaves alone: a real connection, not fenced
                    return original(self)
            self.sock = _Exchange(answerer, scheme, host, port)
            if hasattr(self, "is_verified"):  # urllib3: nothing to verify, no proxy in between
                self.is_verified, self._has_connected_to_proxy = True, False
        return connect
    return patch


def _putrequest_patch(original: Callable) -> Callable:
    def putrequest(self, method, url, *args, **kwargs):
        if current() is not None and self.sock is not None and not isinstance(self.sock, _Exchange):
            self.close()  # kept alive from before the interception: connect again, to be answered
        return original(self, method, url, *args, **kwargs)
    return putrequest


class _Exchange:
    """A connection's socket while requests are answered: it reads what the client writes and, once the
    request's head is complete, gives the client the answer to read.  No packet is sent."""

    def __init__(self, answerer: Answerer, scheme: str, host: str, port: "int | None") -> None:
        self._answerer, self._scheme, self._host, self._port = answerer, scheme, host, port
        self._sent = bytearray()
        self._answer: "io.RawIOBase | None" = None
        self._timeout: "float | None" = None
        self._dropped: "socket.socket | None" = None

    def sendall(self, data) -> None:
        if self._answer is not None:
            return  # a request body after the head (never for GET or HEAD, the only methods answered)
        self._sent += data
        end = self._sent.find(b"\r\n\r\n")
        if end >= 0:
            self._answer = self._ask(bytes(self._sent[:end]))

    def send(self, data) -> int:
        self.sendall(data)
        return len(data)

    def _ask(self, head: bytes) -> io.RawIOBase:
        method, target, headers = _parse_head(head)
        if target.startswith(("http://", "https://")):  # through a forwarding proxy: the whole URL
            url = target
        else:
            default = 443 if self._scheme == "https" else 80
            host = f"[{self._host}]" if ":" in self._host else self._host
            port = f":{self._port}" if self._port and self._port != default else ""
            url = f"{self._scheme}://{host}{port}{target}"
        reply = self._answerer.answer(Request(method, url, headers, caller()))
        return ReplyBody(reply, head=status_and_headers(reply, method), with_body=method != "HEAD")

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        if self._answer is None:
            raise ConnectionResetError("no request was written on this connection")
        answer, self._answer = self._answer, None
        return io.BufferedReader(answer, CHUNK)

    def fileno(self) -> int:
        """A descriptor that always reads as closed by the peer: a client pooling this connection (urllib3's
        ``is_connection_dropped``) opens a new one, which is answered again."""
        if self._dropped is None:
            self._dropped, peer = socket.socketpair()
            peer.close()
        return self._dropped.fileno()

    def close(self) -> None:
        if self._dropped is not None:
            self._dropped.close()

    def settimeout(self, value) -> None:
        self._timeout = value

    def gettimeout(self):
        return self._timeout

    def setsockopt(self, *args) -> None:
        pass

    def shutdown(self, how) -> None:
        pass

    def getpeername(self):
        return (self._host, self._port)


def _parse_head(head: bytes) -> tuple[str, str, dict]:
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method.upper(), target, headers


# -- httpcore (httpx) -------------------------------------------------------------------------------


def _httpcore_reply(request) -> "tuple[Reply, str] | None":
    answerer = current()
    url = request.url
    if answerer is None or not answerer.answers(url.host.decode(), url.port or (443 if url.scheme == b"https" else 80)):
        return None
    port = f":{url.port}" if url.port else ""
    full = f"{url.scheme.decode()}://{url.host.decode()}{port}{url.target.decode('latin-1')}"
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
    method = request.method.decode().upper()
    return answerer.answer(Request(method, full, headers, caller())), method


def _httpcore_response(response_type: type, reply: Reply, method: str, content):
    headers = [(n.encode("latin-1"), v.encode("latin-1", "replace")) for n, v in reply_headers(reply, method)]
    return response_type(reply.status, headers=headers, content=content,
                         extensions={"http_version": b"HTTP/1.1", "reason_phrase": reply.reason.encode()})


def _pool_patch(response_type: type) -> Callable:
    def patch(original: Callable) -> Callable:
        def handle_request(self, request):
            answered = _httpcore_reply(request)
            if answered is None:
                with own_requests():
                    return original(self, request)
            reply, method = answered
            return _httpcore_response(response_type, reply, method, ReplyChunks(reply, method != "HEAD"))
        return handle_request
    return patch


def _async_pool_patch(response_type: type) -> Callable:
    def patch(original: Callable) -> Callable:
        async def handle_async_request(self, request):
            answered = _httpcore_reply(request)
            if answered is None:
                with own_requests():
                    return await original(self, request)
            reply, method = answered
            return _httpcore_response(response_type, reply, method, ReplyChunks(reply, method != "HEAD"))
        return handle_async_request
    return patch
