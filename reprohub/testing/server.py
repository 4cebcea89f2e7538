"""A GitHub-compatible host on 127.0.0.1: local Git repos and files, over HTTP/1.1.

It serves the REST endpoints reprohub uses, with archives built by
``git archive`` laid out exactly as GitHub's (one top folder
``owner-repo-<sha7>/``), plus plain files with ``Range`` support.  Authors use
it (``reprohub serve``) to try their hubconf offline the way users will load
it; the tests and benchmarks use it as the real network peer, with faults
they can inject.

Endpoints (``<api> = <url>/api``)::

    GET <api>/repos/{owner}/{repo}                  {"default_branch": ...}
    GET <api>/repos/{owner}/{repo}/commits/{ref}    {"sha": ...}
    GET <api>/repos/{owner}/{repo}/zipball/{ref}    the zip archive (an API call)
    GET <api>/repos/{owner}/{repo}/branches|tags    [{"name", "commit": {"sha"}}], ``?per_page=&page=``
    GET <api>/repos/{owner}/{repo}/compare/{base}...{head}   {"status": "behind" | "identical" | "diverged"}
    GET <url>/{owner}/{repo}/archive/{ref}.zip      the same archive, GitHub's web route (no API call)
    GET <url>/files/{name}                          a file (Range, ETag)

Example:
    >>> from reprohub import Hub
    >>> with HubServer() as host:
    ...     host.add_repo("acme/tiny", server.repo_path)        # any local Git repository
    ...     url = host.add_file("w.pt", b"...")
    ...     Hub(hub_dir=tmp, github_api_url=host.api_url).list("acme/tiny:v1", verbose=False)
    ['tiny_mlp']
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from .answers import Fault, Handler, State  # noqa: F401 -- Fault: what tests inject

log = logging.getLogger("reprohub.server")


class QuietHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that takes a client hanging up mid-answer (what fault tests do on purpose) in
    silence, instead of printing socketserver's traceback into the test output; other errors are logged."""

    daemon_threads = True
    # socketserver listens with a backlog of 5: eight clients connecting at once overflow it, and the kernel's
    # SYN retry then adds a whole second to one of them, a stall no real host shows (nginx's backlog is 511)
    request_queue_size = 511

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
            log.warning("the test host failed answering %s", client_address, exc_info=True)


class HubServer:
    """Serve Git repos and files on 127.0.0.1 (port 0 picks a free one), over HTTPS with ``tls`` (an SSL context)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: "ssl.SSLContext | None" = None) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("HubServer only listens on loopback")
        self.state = State()
        handler = type("Handler", (Handler,), {"state": self.state})
        self._httpd = QuietHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.scheme = "https" if tls is not None else "http"
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def add_repo(self, full_name: str, git_dir: "str | os.PathLike[str]") -> None:
        """Serve the Git repository at ``git_dir`` as ``owner/repo``."""
        with self.state.lock:
            self.state.repos[full_name] = Path(git_dir)
            self.state.zips = {k: v for k, v in self.state.zips.items() if k[0] != full_name}

    def add_file(self, name: str, content: "bytes | str | os.PathLike[str]") -> str:
        """Serve ``content`` (bytes, or a file path) at ``/files/<name>``; returns its URL."""
        self.state.files[name] = content if isinstance(content, bytes) else Path(content)
        return self.file_url(name)

    def inject(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next requests to ``path`` (e.g. ``/files/w.pt``)."""
        with self.state.lock:
            for fault in faults:  # a hold waits for requests made from now on, not for earlier ones
                fault.hits_before = {p: self.state.hits[p] for p in fault.until}
            self.state.faults.setdefault(path, []).extend(faults)

    def require_token(self, token: str | None) -> None:
        """Answer 401 to API requests without ``Authorization: Bearer <token>``."""
        self.state.token = token

    def refuse_token(self, token: str) -> None:
        """Answer 401 to API requests that send this (expired) token, as GitHub does even for public repos."""
        self.state.refused_tokens.add(token)

    def set_archive_comments(self, flag: bool) -> None:
        """Whether archives carry their commit id as the zip comment (``git archive``'s and GitHub's do)."""
        self.state.archive_comments = flag

    @property
    def held(self) -> list[tuple[str, bool]]:
        """Each ``"hold"`` fault served: (path, True if every ``until`` path was requested before its ``delay``)."""
        return list(self.state.held)

    def set_latency(self, seconds: float) -> None:
        """Answer every request ``seconds`` after it arrives, as a host one network round trip away
        (benchmarks of how many round trips a load waits for)."""
        self.state.latency = seconds

    def set_rate_limited(self, flag: bool) -> None:
        """Answer 403 with ``X-RateLimit-Remaining: 0`` to every API request."""
        self.state.rate_limited = flag

    def hits(self, prefix: str = "") -> int:
        """How many requests were made to paths starting with ``prefix``."""
        return sum(n for p, n in self.state.hits.items() if p.startswith(prefix))

    def full_downloads(self, path: str) -> int:
        """How many complete bodies of ``path`` were sent (range requests excluded)."""
        return self.state.full_downloads[path]

    @property
    def connections(self) -> int:
        """How many TCP connections clients opened (requests on a kept-alive connection share one)."""
        return self.state.connections

    @property
    def requests(self) -> list[tuple[str, str, dict]]:
        """Every request seen: (method, path, headers)."""
        return list(self.state.log)

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="reprohub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop kept-alive connections too, as a host that goes down does."""
        self._httpd.shutdown()
        self._httpd.server_close()
        with self.state.lock:
            for sock in list(self.state.open_sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
