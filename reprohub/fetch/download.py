"""Stream a URL to a file: sha256 in flight, timeouts, retries, resume, atomic rename.

One code path serves every transfer (weights, repo archives, API-free
downloads), and it is the path both the ``responses`` mocks and the real
servers in the tests exercise: ``requests`` opens the connection; the body is
pumped by two threads, one reading the socket into reused 1 MiB buffers, the
other hashing and writing them, so hashing costs no extra pass over the data.

What it guarantees, unlike ``torch.hub.download_url_to_file``:

* every transfer is sha256-hashed while it streams and the digest returned;
* a body shorter than ``Content-Length`` or a dropped connection is resumed
  with a ``Range`` request (a server that answers 200 instead of 206 is
  handled by starting over) and, if it cannot be completed, is an error --
  never a file;
* connect/read timeouts, and retries with exponential backoff on connection
  errors and 408/429/5xx, honouring ``Retry-After``;
* the destination is replaced atomically only after the digest checks out, so
  a failed or mismatched download leaves any earlier file in place.

Example:
    >>> got = Downloader().fetch(weights_url, tmp + "/w.pt", progress=False)
    >>> import hashlib; got.sha256 == hashlib.sha256(open(tmp + "/w.pt", "rb").read()).hexdigest()
    True
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.client
import logging
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import requests
import urllib3

from .. import settings
from ..errors import (DownloadError, HashMismatchError, HTTPStatusError, OfflineError, ReprohubError,
                      TruncatedDownloadError)
from .fsutil import fsync_dir, writable
from .partial import Partial
from .pump import INLINE_MAX, NETWORK_ERRORS, pump, pump_inline
from .urls import is_file_url, local_path

log = logging.getLogger("reprohub")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
NOT_RETRYABLE = (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                 requests.exceptions.InvalidHeader, requests.exceptions.URLRequired)


@dataclass(frozen=True)
class Downloaded:
    """What a finished transfer produced: where, its sha256 and size in bytes."""

    url: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class DownloadPolicy:
    """Timeouts (seconds), retry budget and buffer size for transfers.

    Example:
        >>> DownloadPolicy(retries=2).retries
        2
    """

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    chunk_size: int = 4 << 20

    @classmethod
    def from_env(cls) -> "DownloadPolicy":
        """Defaults, overridden by ``REPROHUB_TIMEOUT`` and ``REPROHUB_RETRIES``."""
        return cls(read_timeout=settings.read_number(settings.TIMEOUT, cls.read_timeout),
                   retries=int(settings.read_number(settings.RETRIES, cls.retries)))


class _ShortBody(Exception):
    """The body ended before Content-Length bytes: resume (retryable)."""


class _Restart(Exception):
    """The server refused our Range request (416, or another range): ask again from byte 0."""


class Downloader:
    """Fetches URLs to files; holds the HTTP session and the policy.

    Args:
        session: a ``requests.Session`` to reuse (one is made if omitted).
        policy: timeouts and retries.
        offline: refuse every transfer with :class:`~reprohub.errors.OfflineError`.
        sleep: the function used to wait between retries (tests pass a fake).
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        policy: DownloadPolicy | None = None,
        offline: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session or _new_session()
        self.policy = policy or DownloadPolicy.from_env()
        self.offline = offline
        self._sleep = sleep

    def fetch(
        self,
        url: str,
        dst: "str | os.PathLike[str]",
        *,
        expected_sha256: str | None = None,
        hash_prefix: str | None = None,
        progress: bool = True,
        headers: Mapping[str, str] | None = None,
        resumable: bool = False,
        sync: bool = True,
    ) -> Downloaded:
        """Download ``url`` to ``dst`` atomically and return its digest.

        Args:
            expected_sha256: the full digest the bytes must have.
            hash_prefix: a prefix the digest must start with (torch.hub's check).
            progress: show a tqdm bar on stderr.
            headers: extra request headers (for example an API token).
            resumable: the caller holds ``dst``'s file lock: gather the bytes in a fixed partial file
                that a later call resumes if this one is killed (:mod:`reprohub.fetch.partial`).
            sync: flush the bytes to disk before the rename.  ``False`` only where the caller records
                the boot the file was written in (:mod:`reprohub.fetch.durability`).

        Raises:
            HashMismatchError: the bytes arrived but have another digest; ``dst`` is untouched.
            TruncatedDownloadError: the body could not be completed within the retries.
            DownloadError: an HTTP error status or a network failure after all retries.
            OfflineError: offline mode is on.
        """
        local = is_file_url(url)
        if self.offline and not local:
            raise OfflineError(
                f"network access to fetch {url}",
                "offline mode (REPROHUB_OFFLINE=1 or offline=True) and no cached copy",
                "prefetch it on a machine with network (`reprohub fetch --lock hub.lock`) or turn offline mode off",
            )
        dst = Path(os.path.expanduser(os.fspath(dst)))
        with writable(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
        partial = Partial(dst, url, resumable and not local)
        try:
            with writable(dst):
                out, hasher, validator = partial.open()
            with out:
                if local:
                    digest, size = _copy_local(url, out)
                else:
                    digest, size = self._transfer(url, out, progress, dict(headers or {}), hasher, validator,
                                                  partial.learned, sync)
                out.flush()
                if sync:
                    os.fsync(out.fileno())
            _check_digest(url, digest, expected_sha256, hash_prefix)
            partial.finish()
            if sync:
                fsync_dir(dst.parent)
        except BaseException as err:
            partial.after_failure(resumable_error=isinstance(err, DownloadError) and not isinstance(err, HTTPStatusError))
            raise
        return Downloaded(url=url, path=dst, sha256=digest, size=size)

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> requests.Response:
        """A small GET (API calls), retried like transfers on connection errors and 5xx.

        Other statuses are returned for the caller to explain (a 403 or 429 from an API is a
        rate limit the caller should name, not something to sleep through).

        Raises:
            DownloadError: the host could not be reached, or kept failing, within the retries.
        """
        for attempt in range(self.policy.retries + 1):
            try:
                response = self.session.get(url, headers=dict(headers or {}),
                                            timeout=(self.policy.connect_timeout, self.policy.read_timeout))
            except NOT_RETRYABLE as err:
                raise _unusable_url(url, err) from None
            except requests.RequestException as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code} {response.reason or ''}".strip()
            if attempt < self.policy.retries:
                self._sleep(self._backoff(attempt + 1))
        raise DownloadError(f"an answer from {url}", f"{problem} after {self.policy.retries + 1} attempts",
                            "check the network and the host (REPROHUB_GITHUB_API_URL); retry later")

    def _transfer(self, url: str, out, progress: bool, headers: dict[str, str], hasher,
                  validator: str | None, learned: Callable[[str | None], None], sync: bool = True) -> tuple[str, int]:
        failures = restarts = 0
        bar = _progress_bar(url, progress)
        try:
            while True:
                offset = out.tell()
                try:
                    response = self._open(url, offset, validator, headers)
                    if response.status_code == 200 and offset:  # Range ignored: take this body from byte 0
                        restarts = _count_restart(url, restarts, self.policy.retries, offset)
                        out.seek(0)
                        out.truncate()
                        hasher, offset = hashlib.sha256(), 0
                    with contextlib.closing(response):
                        total = _expected_total(response, offset)
                        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
                        learned(validator)
                        if bar is not None:
                            bar.reset(total=total)
                            bar.update(offset)
                        size = _buffer_size(self.policy.chunk_size, total, offset)
                        if total is not None and total - offset <= INLINE_MAX:
                            pump_inline(_reader_of(response), out, hasher, bar, size)
                        else:
                            pump(_reader_of(response), out, hasher, bar, size, writeback=sync)
                    if total is not None and out.tell() < total:
                        raise _ShortBody(f"{out.tell()} of {total} bytes before the body ended")
                    return hasher.hexdigest(), out.tell()
                except _Restart:
                    restarts = _count_restart(url, restarts, self.policy.retries, offset)
                    out.seek(0)
                    out.truncate()
                    hasher = hashlib.sha256()
                except _ShortBody as err:
                    failures = self._after_interruption(url, err, out.tell(), offset, failures)
                except ReprohubError:
                    raise
                except NOT_RETRYABLE as err:
                    raise _unusable_url(url, err) from None
                except NETWORK_ERRORS as err:
                    failures = self._after_interruption(url, err, out.tell(), offset, failures)
                except _RetryableStatus as status:
                    failures += 1
                    if failures > self.policy.retries:
                        raise _status_error(url, status.code, status.reason, status.headers) from None
                    wait = status.retry_after if status.retry_after is not None else self._backoff(failures)
                    log.warning("%s answered %d; retrying in %.1fs", url, status.code, wait)
                    self._sleep(min(wait, self.policy.max_backoff))
        finally:
            if bar is not None:
                bar.close()

    def _after_interruption(self, url: str, err: BaseException, got: int, offset: int, failures: int) -> int:
        """Count a failed attempt (progress resets the count), wait, or give up."""
        failures = 0 if got > offset else failures + 1
        if failures > self.policy.retries:
            raise _final_error(url, err, got) from err
        wait = self._backoff(failures)
        log.warning("download of %s interrupted at %d bytes (%s); retrying in %.2fs", url, got, err, wait)
        self._sleep(wait)
        return failures

    def _open(self, url: str, offset: int, validator: str | None, headers: dict[str, str]) -> requests.Response:
        request_headers = {"User-Agent": f"reprohub/{settings.VERSION}", "Accept-Encoding": "identity", **headers}
        if offset:
            request_headers["Range"] = f"bytes={offset}-"
            if validator:
                request_headers["If-Range"] = validator
        response = self.session.get(
            url,
            headers=request_headers,
            stream=True,
            timeout=(self.policy.connect_timeout, self.policy.read_timeout),
        )
        code = response.status_code
        if code == 416 and offset:
            response.close()
            raise _Restart()
        if code in RETRYABLE_STATUS:
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            raise _RetryableStatus(code, response.reason or "", retry_after, response.headers)
        if code not in (200, 206):
            response.close()
            raise _status_error(url, code, response.reason or "", response.headers)
        if code == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            response.close()
            raise _Restart()
        return response

    def _backoff(self, failures: int) -> float:
        base = self.policy.backoff * (2 ** max(failures - 1, 0))
        return min(self.policy.max_backoff, base * (1 + random.random() / 4))


def _copy_local(url: str, out) -> tuple[str, int]:
    """Copy a ``file://`` URL's bytes into ``out``, hashing them; a missing file is a 404-like error."""
    path = local_path(url)
    hasher = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as src:
            pump_inline(src.readinto, out, hasher, None, 1 << 20, until_eof=True)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
        raise DownloadError(f"a file at {url}", f"{type(err).__name__}: {path}", "check the path", status=404) from err
    return hasher.hexdigest(), out.tell()


def _new_session() -> requests.Session:
    """A session that also honours ``SSL_CERT_FILE``/``SSL_CERT_DIR`` (urllib's and torch.hub's CA settings);
    requests itself reads only ``REQUESTS_CA_BUNDLE``, which still wins when set."""
    session = requests.Session()
    ca = settings.read(settings.SSL_CERT_FILE) or settings.read(settings.SSL_CERT_DIR)
    if ca:
        session.verify = ca
    return session


def _count_restart(url: str, restarts: int, limit: int, offset: int) -> int:
    """One more start from byte 0 (a server that ignores or refuses Range); bounded, so it cannot loop."""
    if restarts >= limit:
        raise TruncatedDownloadError(f"the complete body of {url}", f"a server that cut the body at {offset} "
                                     f"bytes and ignored Range requests {restarts + 1} times",
                                     "the server cannot resume this file; try again later (nothing was cached)")
    log.info("%s could not resume at byte %d; downloading from the start", url, offset)
    return restarts + 1


class _RetryableStatus(Exception):
    def __init__(self, code: int, reason: str, retry_after: float | None, headers: Mapping[str, str]) -> None:
        super().__init__(code)
        self.code, self.reason, self.retry_after, self.headers = code, reason, retry_after, headers


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def _expected_total(response: requests.Response, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        return None
    return offset + int(length) if response.status_code == 206 else int(length)


def _reader_of(response: requests.Response) -> Callable[[memoryview], int]:
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


def _buffer_size(chunk_size: int, total: int | None, offset: int) -> int:
    """Buffers no larger than the body (small files need not allocate 4 MiB buffers)."""
    if total is None:
        return chunk_size
    return max(64 << 10, min(chunk_size, total - offset))


def _progress_bar(url: str, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    name = os.path.basename(url.split("?", 1)[0]) or url
    return tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=name[:40], file=sys.stderr, leave=False)


def _check_digest(url: str, digest: str, expected: str | None, prefix: str | None) -> None:
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


def _status_error(url: str, code: int, reason: str, headers: Mapping[str, str] | None = None) -> HTTPStatusError:
    fix = {
        401: "the host needs credentials: set GITHUB_TOKEN or check the URL",
        403: "access denied or rate-limited: set GITHUB_TOKEN or wait",
        404: "check the URL; the file may have moved or been deleted",
    }.get(code, "check the URL and the server; retry later if the server is failing")
    return HTTPStatusError(f"HTTP 200 from {url}", f"HTTP {code} {reason}".strip(), fix, status=code, url=url,
                           reason=reason, headers=dict(headers or {}))


def _unusable_url(url: str, err: BaseException) -> DownloadError:
    """A URL no retry can fix (no scheme, bad host, bad header): an error at once."""
    return DownloadError(f"a URL requests can fetch ({url!r})", f"{type(err).__name__}: {err}",
                         "check the URL or the setting it came from (it needs http:// or https:// and a host)")


def _final_error(url: str, err: BaseException, got: int) -> DownloadError:
    truncations = (_ShortBody, http.client.IncompleteRead, urllib3.exceptions.ProtocolError,
                   requests.exceptions.ChunkedEncodingError)
    cls = TruncatedDownloadError if isinstance(err, truncations) else DownloadError
    return cls(
        f"the complete body of {url}",
        f"{type(err).__name__} after {got} bytes: {err}",
        "the connection keeps failing; check the network or the server and try again (nothing was cached)",
    )
