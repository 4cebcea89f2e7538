"""What a client is answered: the :class:`Reply`, the bytes it reads (hashed as they go), and its own
condition or range answered from a whole pinned answer, as a host would answer it.

The recorder asks the origin for the whole answer (no ``Range``, no ``If-None-Match``: a developer's warm
client cache must not pin ``304, 0 bytes``), and replays it to every client; what a client asked for
beyond that is answered here, from the pin: ``304 Not Modified`` where its condition holds, ``206`` with
exactly the bytes of its range (the body was verified whole before it is served).

Example:
    >>> pinned = Reply(200, (("etag", '"v1"'),), Path("w.bin"), "0" * 64, 100)
    >>> not_modified(pinned, {"if-none-match": '"v1"'}).status, ranged(pinned, {"range": "bytes=-10"}).offset
    (304, 90)
"""

from __future__ import annotations

import hashlib
import http.client
import io
import re
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Iterator

from ..errors import HashMismatchError

CHUNK = 1 << 16


@dataclass(frozen=True)
class Request:
    """A request repo or test code made: ``headers`` with lower-case names; ``caller`` the ``file:line``
    of the repo or test code that made it (empty where none is on the stack: a library's own thread)."""

    method: str
    url: str
    headers: dict
    caller: str = ""


@dataclass(frozen=True)
class Reply:
    """The answer: status, headers (lower-case names; the length is added here), and the body's file
    (``None``: empty), whose bytes must hash to ``sha256`` (checked as they are read); ``evictable``: the
    file is a cache copy, removed when its bytes turn out wrong (the next request fetches it anew)."""

    status: int
    headers: tuple
    body: "Path | None"
    sha256: str | None = None
    size: int = 0
    url: str = ""
    evictable: bool = False
    offset: int = 0  # a range of the body: ``size`` bytes from here (the whole body was verified before)

    @property
    def reason(self) -> str:
        return http.client.responses.get(self.status, "")



CONDITIONS = ("if-none-match", "if-modified-since")


def not_modified(reply: Reply, headers: dict) -> Reply:
    """``reply``, or ``304 Not Modified`` where the client's own condition holds for it: its cache has the pinned
    body (``If-None-Match`` names the pinned ``ETag``, or ``If-Modified-Since`` is not before ``Last-Modified``).

    Example:
        >>> pinned = Reply(200, (("etag", '"v1"'),), None, "0" * 64, 0)
        >>> not_modified(pinned, {"if-none-match": 'W/"v0", "v1"'}).status, not_modified(pinned, {}).status
        (304, 200)
    """
    if reply.status != 200 or not any(name in headers for name in CONDITIONS):
        return reply
    pinned = dict(reply.headers)
    if "if-none-match" in headers:
        tags = {tag.strip().removeprefix("W/") for tag in headers["if-none-match"].split(",")}
        etag = pinned.get("etag", "").removeprefix("W/")
        modified = not (etag and (etag in tags or "*" in tags))
    else:
        try:
            modified = parsedate_to_datetime(pinned["last-modified"]) > parsedate_to_datetime(
                headers["if-modified-since"])
        except (KeyError, TypeError, ValueError):
            modified = True
    if modified:
        return reply
    kept = tuple((n, v) for n, v in reply.headers if n in ("etag", "last-modified"))
    return Reply(304, kept, None, url=reply.url)


def ranged(reply: Reply, headers: dict) -> Reply:
    """``reply``, or ``206`` with exactly the bytes a client's ``Range`` asks of the pinned body (one range:
    ``bytes=a-b``, ``a-`` or ``-n``; resumable downloaders, huggingface_hub's resume), ``416`` past its end.
    An ``If-Range`` naming another validator than the pin's gets the whole body, as from a host.

    Example:
        >>> whole = Reply(200, (("etag", '"v1"'),), Path("w.bin"), "0" * 64, 100)
        >>> part = ranged(whole, {"range": "bytes=10-19"})
        >>> part.status, part.size, part.offset, dict(part.headers)["content-range"]
        (206, 10, 10, 'bytes 10-19/100')
        >>> ranged(whole, {"range": "bytes=-5", "if-range": '"v0"'}).status
        200
    """
    spec = re.fullmatch(r"bytes=(\d*)-(\d*)", headers.get("range", "").strip())
    pinned = dict(reply.headers)
    if (reply.status != 200 or reply.body is None or spec is None or not any(spec.groups())
            or headers.get("if-range", pinned.get("etag")) not in (pinned.get("etag"), pinned.get("last-modified"))):
        return reply
    first, last = spec.groups()
    start = int(first) if first else max(reply.size - int(last), 0)
    end = min(int(last), reply.size - 1) if first and last else reply.size - 1
    if start >= reply.size or start > end:
        return Reply(416, (("content-range", f"bytes */{reply.size}"),), None, url=reply.url)
    kept = tuple((n, v) for n, v in reply.headers if n != "content-range")
    return replace(reply, status=206, headers=(*kept, ("content-range", f"bytes {start}-{end}/{reply.size}")),
                   size=end - start + 1, offset=start, sha256=None)


# -- the bytes a client reads ----------------------------------------------------------------------------


def status_and_headers(reply: Reply, method: str) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {reply.reason}"]
    lines += [f"{name}: {value}" for name, value in reply_headers(reply, method)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def reply_headers(reply: Reply, method: str) -> list[tuple[str, str]]:
    """The headers a client is given: the reply's, the body's length (a HEAD keeps the recorded one), and
    ``Connection: close``."""
    kept = [(n, v) for n, v in reply.headers if n not in ("content-length", "transfer-encoding", "connection")
            or (n == "content-length" and method == "HEAD")]
    if method != "HEAD":
        kept.append(("content-length", str(reply.size)))
    return kept + [("connection", "close")]


class ReplyBody(io.RawIOBase):
    """The bytes a client reads: the status line and headers, then the body's ``size`` bytes, hashed as they
    go; the last one read checks the digest."""

    def __init__(self, reply: Reply, head: bytes = b"", with_body: bool = True) -> None:
        self._head = memoryview(head)
        self._reply = reply
        self._left = reply.size if with_body and reply.body is not None else 0
        self._file = open(reply.body, "rb") if self._left else None
        if self._file is not None and reply.offset:
            self._file.seek(reply.offset)
        self._hash = hashlib.sha256() if self._file is not None and reply.sha256 else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if self._file is None:
            return 0
        view = memoryview(buffer)[:self._left]
        n = self._file.readinto(view)
        if self._hash is not None:
            self._hash.update(view[:n])
        self._left -= n
        if n == 0 or self._left == 0:
            self._finish()
        return n

    def _finish(self) -> None:
        self._file.close()
        self._file = None
        if self._hash is not None and (self._left or self._hash.hexdigest() != self._reply.sha256):
            found = "fewer bytes" if self._left else f"sha256 {self._hash.hexdigest()}"
            if self._reply.evictable:
                self._reply.body.unlink(missing_ok=True)
            fix = ("it was damaged since it was written, and is removed: run again to fetch it anew"
                   if self._reply.evictable else "the file was damaged since it was written; restore it")
            raise HashMismatchError(f"the pinned body of {self._reply.url} (sha256 {self._reply.sha256})",
                                    f"{found} in {self._reply.body}", fix)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


class ReplyChunks:
    """A reply's body as the byte chunks httpcore hands on (sync and async)."""

    def __init__(self, reply: Reply, with_body: bool) -> None:
        self._body = ReplyBody(reply, with_body=with_body)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._body.read(CHUNK):
            yield chunk

    async def __aiter__(self):
        for chunk in self:
            yield chunk

    def close(self) -> None:
        self._body.close()

    async def aclose(self) -> None:
        self.close()
