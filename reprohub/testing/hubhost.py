"""A Hugging Face Hub look-alike on 127.0.0.1, for tests and benchmarks that use ``huggingface_hub`` offline.

It answers as the Hub and its CDN do today, which a static file server does not:

* ``HEAD`` or ``GET /{repo_id}/resolve/{revision}/{filename}`` answers ``302`` to the CDN (a second
  server on 127.0.0.2: another host name, as clients tell the Hub from its CDN by name) with ``X-Repo-Commit``, ``X-Linked-Etag`` (the file's sha256, quoted) and
  ``X-Linked-Size``, and a ``Location`` signed for this request (``Expires``, ``Policy``,
  ``Signature``, ``Key-Pair-Id``, as CloudFront signs): a new signature every time;
* the CDN serves a signed URL until it expires (``expiry`` seconds), with ``Range`` support, and
  answers ``403`` once it has expired or to a signature it never issued;
* ``GET /api/models/{repo_id}/revision/{revision}`` answers the commit, as the Hub's API does.

Point ``HF_ENDPOINT`` at :attr:`HubLookalike.url` before ``huggingface_hub`` is imported.

Example:
    >>> import urllib.request
    >>> with HubLookalike({"acme/tiny": {"config.json": b"{}"}}) as host:
    ...     urllib.request.urlopen(host.url + "/acme/tiny/resolve/main/config.json").read()
    b'{}'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from .server import QuietHTTPServer

COMMIT = "a" * 40


class HubLookalike:
    """The Hub (:attr:`url`) and its CDN (:attr:`cdn_url`), serving ``files``: repo id -> file name -> bytes.

    ``requests`` lists ``(host, method, path)`` of every request, ``host`` being ``"hub"`` or ``"cdn"``.
    """

    def __init__(self, files: "dict[str, dict[str, bytes]]", expiry: float = 1.0) -> None:
        self.files, self.expiry = files, expiry
        self.requests: list[tuple[str, str, str]] = []
        self._issued: dict[str, float] = {}  # signature -> when it expires
        self._lock = threading.Lock()
        self._hub = QuietHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        self._cdn = QuietHTTPServer(("127.0.0.2", 0), self._handler("cdn"))  # another host, as a CDN is
        self.url = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.2:{self._cdn.server_address[1]}"

    def __enter__(self) -> "HubLookalike":
        for server in (self._hub, self._cdn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop both hosts (a reviewer's internet is dark)."""
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    def sign(self, path: str) -> str:
        """A CDN URL for ``path``, signed for one request until it expires."""
        signature = os.urandom(12).hex()
        with self._lock:
            self._issued[signature] = time.monotonic() + self.expiry
        expires = int(time.time() + self.expiry)
        return f"{self.cdn_url}{path}?Expires={expires}&Policy=eyJ{signature}&Signature={signature}&Key-Pair-Id=K2FPY"

    def _valid(self, query: str) -> bool:
        signature = dict(p.partition("=")[::2] for p in query.split("&")).get("Signature", "")
        with self._lock:
            return self._issued.get(signature, 0) > time.monotonic()

    def _handler(self, role: str) -> type:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                host.requests.append((role, self.command, self.path))
                path, _, query = self.path.partition("?")
                if role == "cdn":
                    return self._cdn(path, query, head)
                api = re.fullmatch(r"/api/models/(.+)/revision/([^/]+)", path)
                if api and api.group(1) in host.files:
                    return self._send(200, json.dumps({"id": api.group(1), "sha": COMMIT}).encode(),
                                      {"Content-Type": "application/json"}, head)
                resolve = re.fullmatch(r"/(.+)/resolve/([^/]+)/(.+)", path)
                body = host.files.get(resolve.group(1), {}).get(resolve.group(3)) if resolve else None
                if body is None:
                    return self._send(404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"}, head)
                digest = hashlib.sha256(body).hexdigest()
                self._send(302, b"", {"Location": host.sign(f"/repos/{resolve.group(1)}/{digest}"),
                                      "X-Repo-Commit": COMMIT, "X-Linked-Etag": f'"{digest}"',
                                      "X-Linked-Size": str(len(body)), "ETag": f'"{digest[:20]}"'}, head)

            def _cdn(self, path: str, query: str, head: bool) -> None:
                digest = path.rsplit("/", 1)[-1]
                body = next((b for files in host.files.values() for b in files.values()
                             if hashlib.sha256(b).hexdigest() == digest), None)
                if body is None or not host._valid(query):
                    return self._send(403, b"<Error><Code>AccessDenied</Code></Error>", {}, head)
                status, headers = 200, {"ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
                ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if ranged:
                    start = int(ranged.group(1))
                    end = int(ranged.group(2)) if ranged.group(2) else len(body) - 1
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                    status, body = 206, body[start:end + 1]
                self._send(status, body, headers, head)

            def _send(self, status: int, body: bytes, headers: dict, head: bool) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler
