"""How the test host answers: its request handler (the REST endpoints, archives, files with ``Range``), the
faults a test injects (:class:`Fault`) and what it was told and saw (:class:`State`).  :mod:`reprohub.testing.server`
runs it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mimetypes
import re
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .gitrepo import compare_refs, git_output, ref_page, rev_parse

log = logging.getLogger("reprohub.server")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Fault:
    """One injected misbehaviour, used by the next request to a path.

    kind: ``"status"`` (answer ``status`` with ``retry_after``), ``"truncate"``
    (send the full ``Content-Length`` but only ``after`` bytes, then close),
    ``"ignore_range"`` (answer 200 with the whole body to a Range request),
    ``"corrupt"`` (flip one byte of the body), ``"slow"`` (send ``after`` bytes,
    then pause ``delay`` seconds, repeatedly), ``"ignore_if_range"`` (answer a Range request
    with 206 from the file as it is now, whatever ``If-Range`` says: a broken cache or CDN),
    ``"hold"`` (answer only once every path in ``until`` has been requested since the fault was
    injected, or after ``delay``
    seconds: shows which requests a client makes before it has this answer), ``"redirect"`` (answer
    ``status``, e.g. 302, with ``Location: location``).
    """

    kind: str
    status: int = 503
    retry_after: str | None = None
    after: int = 0
    delay: float = 0.0
    ignore_range: bool = False  # with any kind: also answer a Range request with 200 and the whole body
    until: tuple[str, ...] = ()
    location: str = ""
    hits_before: dict = field(default_factory=dict)


@dataclass
class State:
    repos: dict[str, Path] = field(default_factory=dict)
    files: dict[str, "bytes | Path"] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    full_downloads: Counter = field(default_factory=Counter)
    log: list[tuple[str, str, dict]] = field(default_factory=list)
    zips: dict[tuple[str, str], bytes] = field(default_factory=dict)
    token: str | None = None
    refused_tokens: set = field(default_factory=set)
    rate_limited: bool = False
    connections: int = 0
    archive_comments: bool = True
    latency: float = 0.0
    held: list[tuple[str, bool]] = field(default_factory=list)  # (path, whether `until` came before `delay`)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    open_sockets: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    etags: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # name -> (the bytes, their ETag)

    def etag_of(self, name: str, content: bytes) -> str:
        """The ETag of an in-memory file, hashed once per content (a real host does not hash a file per request:
        on 2 cores that would tax every client the benchmarks compare, 0.15 ms a 200 KiB file)."""
        known = self.etags.get(name)
        if known is None or known[0] is not content:
            known = self.etags[name] = (content, hashlib.sha256(content).hexdigest()[:16])
        return known[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: never wait for a delayed ACK
    state: State

    def log_message(self, fmt, *args):  # quiet: tests read .requests instead
        log.debug(fmt, *args)

    def setup(self):
        super().setup()
        with self.state.lock:
            self.state.connections += 1
            self.state.open_sockets.add(self.connection)

    def finish(self):
        with self.state.lock:
            self.state.open_sockets.discard(self.connection)
        super().finish()

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        path = urlsplit(self.path).path
        with self.state.lock:
            self.state.hits[path] += 1
            self.state.log.append(("HEAD" if head else "GET", path, dict(self.headers)))
            queued = self.state.faults.get(path)
            fault = queued.pop(0) if queued else None
        with self.state.arrived:
            self.state.arrived.notify_all()
        if self.state.latency:
            time.sleep(self.state.latency)
        if fault is not None and fault.kind == "hold":
            with self.state.arrived:
                met = self.state.arrived.wait_for(lambda: all(self.state.hits[p] > fault.hits_before[p]
                                                              for p in fault.until), fault.delay)
            self.state.held.append((path, met))
        if fault is not None and fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return self._send_json({"message": "injected"}, fault.status, extra)
        if fault is not None and fault.kind == "redirect":
            return self._send_json({"message": "moved"}, fault.status, {"Location": fault.location})
        try:
            if path.startswith("/api/"):
                return self._api(path[len("/api"):], fault, head)
            if path.startswith("/files/"):
                return self._file(unquote(path[len("/files/"):]), path, fault, head)
            if m := re.fullmatch(r"/([^/]+)/([^/]+)/archive/(.+)\.zip", path):
                return self._archive(m.group(1), m.group(2), unquote(m.group(3)), path, fault, head)
            self._send_json({"message": "Not Found"}, 404)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- API --------------------------------------------------------------------

    def _api(self, path: str, fault: Fault | None, head: bool):
        if self.state.rate_limited:
            return self._send_json({"message": "API rate limit exceeded"}, 403, {"X-RateLimit-Remaining": "0"})
        sent = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if sent in self.state.refused_tokens or (self.state.token and sent != self.state.token):
            return self._send_json({"message": "Bad credentials"}, 401)
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)(?:/(commits|zipball|compare)/(.+)|/(branches|tags))?", path)
        git_dir = self.state.repos.get(f"{m.group(1)}/{m.group(2)}") if m else None
        if git_dir is None:
            return self._send_json({"message": "Not Found"}, 404)
        if m.group(5) is not None:
            return self._send_json(ref_page(git_dir, m.group(5), urlsplit(self.path).query))
        if m.group(3) == "compare":
            base, _, head_sha = unquote(m.group(4)).partition("...")
            return self._send_json({"status": compare_refs(git_dir, base, head_sha)})
        if m.group(3) is None:
            head_ref = git_output(git_dir, "symbolic-ref", "--short", "HEAD") or "main"
            return self._send_json({"full_name": f"{m.group(1)}/{m.group(2)}", "default_branch": head_ref})
        if m.group(3) == "commits":
            sha = rev_parse(git_dir, unquote(m.group(4)))
            if sha is None:
                return self._send_json({"message": f"No commit found for SHA: {m.group(4)}"}, 422)
            return self._send_json({"sha": sha})
        return self._archive(m.group(1), m.group(2), unquote(m.group(4)), "/api" + path, fault, head)

    def _archive(self, owner: str, name: str, ref: str, path: str, fault: Fault | None, head: bool):
        git_dir = self.state.repos.get(f"{owner}/{name}")
        if self.state.token and not path.startswith("/api/"):
            git_dir = None  # with a token required, repos are private: the web route says 404, as GitHub's does
        sha = rev_parse(git_dir, ref) if git_dir is not None else None
        if sha is None:
            return self._send_json({"message": "Not Found"}, 404)
        key = (f"{owner}/{name}", sha)
        with self.state.lock:
            body = self.state.zips.get(key)
        if body is None:
            prefix = f"{owner}-{name}-{sha[:7]}/"
            body = subprocess.run(["git", "-C", str(git_dir), "archive", "--format=zip", f"--prefix={prefix}", sha],
                                  check=True, capture_output=True).stdout
            with self.state.lock:
                self.state.zips[key] = body
        if not self.state.archive_comments:  # a host whose archives do not name their commit
            end = body.rfind(b"PK\x05\x06")
            body = body[: end + 20] + b"\x00\x00"
        self._send_body(io.BytesIO(body), len(body), path, fault, head, "application/zip", etag=sha)

    # -- files --------------------------------------------------------------------

    def _file(self, name: str, path: str, fault: Fault | None, head: bool):
        content = self.state.files.get(name)
        if content is None:
            return self._send_json({"message": "Not Found"}, 404)
        if isinstance(content, bytes):
            src, size, etag = io.BytesIO(content), len(content), self.state.etag_of(name, content)
        else:
            st = content.stat()
            src, size, etag = open(content, "rb"), st.st_size, f"{st.st_size}-{st.st_mtime_ns}"
        try:
            ctype = _content_type(name)
            self._send_body(src, size, path, fault, head, ctype, etag=etag)
        finally:
            src.close()

    def _send_body(self, src, size: int, path: str, fault: Fault | None, head: bool, ctype: str, etag: str):
        start, end = 0, size - 1
        ranged = self.headers.get("Range")
        m = _RANGE.match(ranged or "")
        if_range = self.headers.get("If-Range")
        honours_range = fault is None or (fault.kind != "ignore_range" and not fault.ignore_range)
        blind = fault is not None and fault.kind == "ignore_if_range"
        use_range = m is not None and honours_range and (blind or if_range in (None, f'"{etag}"'))
        if use_range:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else size - 1
            if start >= size:
                return self._send_json({"message": "Range Not Satisfiable"}, 416, {"Content-Range": f"bytes */{size}"})
        length = end - start + 1
        self.send_response(206 if use_range else 200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        if use_range:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        send = length if fault is None or fault.kind != "truncate" else min(length, fault.after)
        if not use_range and send == length:
            with self.state.lock:
                self.state.full_downloads[path] += 1
        if fault is not None and fault.kind == "slow":
            self._copy_slowly(src, start, send, fault)
        else:
            self._copy(src, start, send, corrupt=fault is not None and fault.kind == "corrupt")
        if send < length:
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)

    def _copy(self, src, start: int, count: int, corrupt: bool):
        self.wfile.flush()
        if hasattr(src, "fileno") and not corrupt and not isinstance(src, io.BytesIO):
            sent = 0
            while sent < count:
                n = self.connection.sendfile(src, start + sent, count - sent)
                if not n:
                    break
                sent += n
            return
        src.seek(start)
        remaining, first = count, True
        while remaining > 0:
            chunk = src.read(min(remaining, 1 << 20))
            if not chunk:
                break
            if corrupt and first:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                first = False
            self.wfile.write(chunk)
            remaining -= len(chunk)

    def _copy_slowly(self, src, start: int, count: int, fault: Fault):
        src.seek(start)
        step = max(1, fault.after)
        while count > 0:
            chunk = src.read(min(count, step))
            if not chunk:
                break
            self.wfile.write(chunk)
            self.wfile.flush()
            count -= len(chunk)
            time.sleep(fault.delay)

    def _send_json(self, obj, status: int = 200, headers: dict | None = None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _content_type(name: str) -> str:
    """A file's type by its name, as a static host sends it: a page as a page, weights as bytes (Python's table
    calls ``.pt`` a SNES page table and ``.bin`` a macbinary file)."""
    kind = mimetypes.guess_type(name, strict=True)[0]
    return kind if kind and kind.startswith(("text/", "image/", "application/json", "application/zip")) else \
        "application/octet-stream"
