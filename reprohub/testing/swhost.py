"""A Software-Heritage-like archive on 127.0.0.1, built from real git repositories.

It answers the part of the archive's web API reprohub uses, from git's own objects, the way the real
archive does (:mod:`reprohub.sources.swh`)::

    GET  /api/1/revision/<commit>/                 {"id", "directory": <git rev-parse commit^{tree}>}; 404 unknown
    POST /api/1/known/                             {swhid: {"known": bool}} for a JSON list of SWHIDs
    POST|GET /api/1/vault/flat/swh:1:dir:<tree>/   {"status": new -> pending -> done, "fetch_url", ...}
    GET  /api/1/vault/flat/swh:1:dir:<tree>/raw/   a .tar.gz of the tree as git stores it (no .gitattributes
                                                   applied), top folder swh:1:dir:<tree>; a file the archive
                                                   "does not hold" holds the vault's placeholder text
    POST /api/1/origin/save/git/url/<url>/         {"save_request_status": "accepted", ...}

Every answer carries ``X-RateLimit-Limit/Remaining/Reset``; :meth:`ArchiveHost.limit_next` makes the
next request a 429 with ``Retry-After``.  Tests read :attr:`ArchiveHost.log` (method, path, headers).

Example:
    >>> with ArchiveHost() as swh:
    ...     swh.add_repo(server.repo_path)
    ...     len(swh.commits())
    1
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..fetch.gittree import PLACEHOLDERS
from .server import QuietHTTPServer

SKIPPED = PLACEHOLDERS[1]


class ArchiveHost:
    """Serve git repositories as Software Heritage would archive them, on 127.0.0.1."""

    def __init__(self, polls_to_done: int = 2, limit: int = 120) -> None:
        self.repos: list[Path] = []
        self.jobs: dict[str, int] = {}  # tree -> polls answered so far
        self.polls_to_done = polls_to_done  # GETs answered "new"/"pending" before "done"
        self.withheld: dict[str, set[str]] = {}  # tree -> paths served as placeholders
        self.limited: list[str] = []  # Retry-After values of the next 429 answers
        self.remaining = self.limit = limit
        self.saves: list[str] = []
        self.log: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()
        self._httpd = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, git_dir: "str | Path") -> None:
        """Archive every commit of the repository at ``git_dir`` (as it is when asked)."""
        self.repos.append(Path(git_dir))

    def withhold(self, tree: str, path: str) -> None:
        """Serve ``path`` of ``tree`` as the vault does a content it does not hold: its placeholder text."""
        self.withheld.setdefault(tree, set()).add(path)

    def limit_next(self, retry_after: str = "1") -> None:
        """Answer the next request 429 with this ``Retry-After``."""
        self.limited.append(retry_after)

    def commits(self) -> set[str]:
        """Every commit the archive holds."""
        found = set()
        for repo in self.repos:
            found.update(_git(repo, "rev-list", "--all").split())
        return found

    def requests(self, prefix: str = "") -> list[str]:
        """``"METHOD path"`` of each request whose path starts with ``prefix``."""
        return [f"{m} {p}" for m, p, _ in self.log if p.startswith(prefix)]

    def start(self) -> "ArchiveHost":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "ArchiveHost":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the archive knows ------------------------------------------------------------------

    def _object(self, oid: str, kind: str) -> Path | None:
        for repo in self.repos:
            if len(oid) == 40 and _git(repo, "cat-file", "-t", oid) == kind:
                return repo
        return None

    def tarball(self, tree: str) -> bytes:
        """The vault's flat tarball of ``tree``: git's objects, as stored, under ``swh:1:dir:<tree>/``."""
        repo = self._object(tree, "tree")
        top = f"swh:1:dir:{tree}"
        buf = io.BytesIO()
        listing = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "-t", "-z", "--full-tree", tree],
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info(top, tarfile.DIRTYPE, 0o755))
            for line in listing.split(b"\0"):
                if not line:
                    continue
                meta, path = line.split(b"\t", 1)
                mode, kind, oid = meta.decode().split()
                name = f"{top}/{path.decode('utf-8', 'surrogateescape')}"
                rel = name[len(top) + 1:]
                if kind in ("tree", "commit"):  # a submodule: an empty folder, as the vault writes it
                    tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
                    continue
                data = subprocess.run(["git", "-C", str(repo), "cat-file", "blob", oid], capture_output=True,
                                      check=True).stdout
                if mode == "120000":
                    info = _info(name, tarfile.SYMTYPE, 0o777)
                    info.linkname = data.decode("utf-8", "surrogateescape")
                    tar.addfile(info)
                    continue
                if rel in self.withheld.get(tree, ()):
                    data = SKIPPED
                info = _info(name, tarfile.REGTYPE, 0o755 if mode == "100755" else 0o644)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    # -- the HTTP side ---------------------------------------------------------------------------

    def _handler(self) -> type:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def _answer(self, method: str) -> None:
                path = unquote(urlsplit(self.path).path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with host.lock:
                    host.log.append((method, path, dict(self.headers)))
                    retry_after = host.limited.pop(0) if host.limited else None
                    host.remaining = max(0, host.remaining - 1)
                if retry_after is not None:
                    return self._send(429, {"exception": "Throttled"}, {"Retry-After": retry_after})
                status, answer = host.route(method, path, body)
                if isinstance(answer, bytes):
                    return self._send(status, answer, {"Content-Type": "application/gzip"})
                self._send(status, answer)

            def _send(self, status: int, answer, headers: dict | None = None) -> None:
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("X-RateLimit-Limit", str(host.limit))
                self.send_header("X-RateLimit-Remaining", str(host.remaining))
                self.send_header("X-RateLimit-Reset", str(int(time.time()) + 3600))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def route(self, method: str, path: str, body: bytes):
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "1", "revision"] and len(parts) == 4:
            repo = self._object(parts[3], "commit")
            if repo is None:
                return 404, {"exception": "NotFoundExc", "reason": f"Revision with sha1_git {parts[3]} not found."}
            return 200, {"id": parts[3], "directory": _git(repo, "rev-parse", f"{parts[3]}^{{tree}}")}
        if parts[:3] == ["api", "1", "known"] and method == "POST":
            known = self.commits()
            return 200, {s: {"known": s.removeprefix("swh:1:rev:") in known} for s in json.loads(body or b"[]")}
        if parts[:4] == ["api", "1", "vault", "flat"] and len(parts) >= 5:
            return self._vault(method, parts[4], raw=parts[5:] == ["raw"])
        if parts[:5] == ["api", "1", "origin", "save", "git"] and method == "POST":
            origin = path.split("/url/", 1)[1].rstrip("/")
            self.saves.append(origin)
            return 200, {"origin_url": origin, "visit_type": "git", "save_request_status": "accepted",
                         "save_task_status": "pending"}
        return 404, {"exception": "NotFoundExc", "reason": f"no route {path}"}

    def _vault(self, method: str, swhid: str, raw: bool):
        tree = swhid.removeprefix("swh:1:dir:")
        if self._object(tree, "tree") is None:
            return 404, {"exception": "NotFoundExc", "reason": f"{swhid} not found."}
        with self.lock:
            if method == "POST":
                self.jobs.setdefault(tree, 0)
            elif tree in self.jobs and not raw:
                self.jobs[tree] += 1
            polls = self.jobs.get(tree)
        if polls is None:
            return 404, {"exception": "NotFoundExc", "reason": f"Cooking of {swhid} was never requested."}
        status = "new" if polls == 0 else "pending" if polls < self.polls_to_done else "done"
        if raw:
            return (200, self.tarball(tree)) if status == "done" else (404, {"exception": "NotFoundExc"})
        return 200, {"id": 1, "swhid": swhid, "status": status, "progress_message": None if status != "pending"
                     else "Processing...", "fetch_url": f"{self.url}/api/1/vault/flat/{swhid}/raw/"}


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 0
    return info


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""
