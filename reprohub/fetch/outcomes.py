"""What a transfer's end means: a digest that does not match, a body cut short, a server that will not resume,
and the error a transfer gives up with.  :mod:`reprohub.fetch.download` raises these; they hold no state.

Example:
    >>> check_digest("https://h/w.pt", "ab" * 32, None, "abab")   # torch.hub's hash_prefix check: passes
    >>> final_error("https://h/w.pt", ShortBody("10 of 20 bytes"), 10).__class__.__name__
    'TruncatedDownloadError'
"""

from __future__ import annotations

import logging

from ..errors import DownloadError, HashMismatchError, TruncatedDownloadError
from ..redact import redact_exception

log = logging.getLogger("reprohub")


class ShortBody(Exception):
    """The body ended before Content-Length bytes: resume (retryable)."""


def count_restart(url: str, restarts: int, limit: int, offset: int) -> int:
    """One more start from byte 0 (a server that ignores or refuses Range); bounded, so it cannot loop."""
    if restarts >= limit:
        raise TruncatedDownloadError(f"the complete body of {url}", f"a server that cut the body at {offset} "
                                     f"bytes and ignored Range requests {restarts + 1} times",
                                     "the server cannot resume this file; try again later (nothing was cached)")
    log.info("%s could not resume at byte %d; downloading from the start", url, offset)
    return restarts + 1


def check_digest(url: str, digest: str, expected: str | None, prefix: str | None) -> None:
    if expected is not None and digest != expected.lower().removeprefix("sha256:"):
        raise HashMismatchError(
            f"sha256 {expected} for {url}",
            f"sha256 {digest}",
            "the file changed upstream or was corrupted in transit; if the change is intended, "
            "update the pinned digest (`pytest --hub-update` or `reprohub lock`)",
        )
    if prefix is not None and not digest.startswith(prefix):
        raise HashMismatchError(
            f'a sha256 starting with "{prefix}" for {url} (invalid hash value)',
            f'"{digest}"',
            "the file changed upstream or was corrupted; check the URL and the hash in its name",
        )


def final_error(url: str, err: BaseException, got: int) -> DownloadError:
    from .transport import TRUNCATIONS

    cls = TruncatedDownloadError if isinstance(err, (ShortBody, *TRUNCATIONS)) else DownloadError
    redact_exception(err)  # the chained cause a traceback prints shows no signed query either
    return cls(
        f"the complete body of {url}",
        f"{type(err).__name__} after {got} bytes: {err}",
        "the connection keeps failing; check the network or the server and try again (nothing was cached)",
    )
