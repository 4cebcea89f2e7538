"""A client's own condition or range, answered from a whole pinned answer, as a host would answer it.

The recorder asks the origin for the whole answer (no ``Range``, no ``If-None-Match``: a developer's warm
client cache must not pin ``304, 0 bytes``), and replays it to every client; what a client asked for
beyond that is answered here, from the pin: ``304 Not Modified`` where its condition holds, ``206`` with
exactly the bytes of its range (the body was verified whole before it is served).

Example:
    >>> from pathlib import Path
    >>> pinned = Reply(200, (("etag", '"v1"'),), Path("w.bin"), "0" * 64, 100)
    >>> not_modified(pinned, {"if-none-match": '"v1"'}).status, ranged(pinned, {"range": "bytes=-10"}).offset
    (304, 90)
"""

from __future__ import annotations

import re
from dataclasses import replace
from email.utils import parsedate_to_datetime

from .network import Reply


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
        >>> from pathlib import Path
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
