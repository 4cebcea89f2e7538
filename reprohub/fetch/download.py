"""Stream a URL to a file: sha256 in flight, timeouts, retries, resume, atomic rename.

One code path serves every transfer (weights, repo archives, API-free
downloads), and it is the path both the ``responses`` mocks and the real
servers in the tests exercise: ``requests`` opens the connection
(:mod:`reprohub.fetch.transport`, which keeps it alive for the next request),
and :mod:`reprohub.fetch.pump` moves the body into the file, hashing each byte
once while it streams.

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

import hashlib
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Mapping

from .. import settings
from ..errors import (DownloadError, HTTPStatusError, OfflineError, ReprohubError)
from .fsutil import fsync_dir, writable
from .partial import Partial
from .hosts import (REFUSED_WAITS, Restart, RetryableStatus, check_alive, host_of, remember_dead, remembering, revived,
                    status_error, unreachable_error)
from .outcomes import ShortBody, check_digest, count_restart, final_error
from .progress import progress_bar, start_bar
from .pump import BUFFER, pump_body, pump_inline
from .urls import is_file_url, local_path

if TYPE_CHECKING:  # requests is imported at the first request (.transport), not with reprohub
    import requests

log = logging.getLogger("reprohub")
RESUME_RECORD_MIN = 8 << 20  # bodies above this size record how to resume them if the process is killed


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
    chunk_size: int = BUFFER

    @classmethod
    def from_env(cls) -> "DownloadPolicy":
        """Defaults, overridden by ``REPROHUB_TIMEOUT`` and ``REPROHUB_RETRIES``."""
        return cls(read_timeout=settings.read_number(settings.TIMEOUT, cls.read_timeout),
                   retries=int(settings.read_number(settings.RETRIES, cls.retries)))


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
        self._session = session
        self._session_of: Downloader | None = None  # a sibling's: the session is shared, made at the first request
        self._direct = None  # made with the session, where it applies
        self.policy = policy or DownloadPolicy.from_env()
        self.offline = offline
        self._sleep = sleep

    @property
    def session(self) -> requests.Session:
        """The HTTP session, made at the first request: a load from a warm cache never imports ``requests``."""
        if self._session is None:
            if self._session_of is not None:
                return self._session_of.session
            from .transport import new_session

            self._session = new_session()
            if not self._session.trust_env:  # nothing for requests to add to a plain GET (fetch/direct.py)
                from .direct import DirectRoad

                self._direct = DirectRoad(self._session.verify)
        return self._session

    @property
    def direct(self):
        """The short road for plain GETs (:mod:`reprohub.fetch.direct`), or ``None`` (a caller's session, proxies)."""
        if self._session_of is not None:
            return self._session_of.direct
        self.session  # made with the session
        return self._direct

    def sibling(self, policy: DownloadPolicy, offline: bool) -> "Downloader":
        """A downloader with another policy that shares this one's session (and its pooled connections).

        Example:
            >>> first = Downloader()
            >>> first.sibling(DownloadPolicy(retries=1), offline=False).session is first.session
            True
        """
        other = Downloader(self._session, policy, offline, self._sleep)
        other._session_of = self
        return other

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
        claimed=None,
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
            claimed: what :func:`reprohub.fetch.partial.claim` on ``dst`` yielded, with ``resumable``: the
                partial it holds open is written through, not opened again.

        Raises:
            HashMismatchError: the bytes arrived but have another digest; ``dst`` is untouched.
            TruncatedDownloadError: the body could not be completed within the retries.
            DownloadError: an HTTP error status or a network failure after all retries.
            OfflineError: offline mode is on.
        """
        local = is_file_url(url)
        self._check_online(url, local)
        text = os.fspath(dst)
        dst = Path(os.path.expanduser(text)) if text.startswith("~") or not isinstance(dst, Path) else dst
        if claimed is None:  # a claim made its partial, so the folder is there
            with writable(dst):
                dst.parent.mkdir(parents=True, exist_ok=True)
        partial = Partial(dst, url, resumable and not local, claimed)
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
            check_digest(url, digest, expected_sha256, hash_prefix)
            partial.finish()
            if sync:
                fsync_dir(dst.parent)
        except BaseException as err:
            # a network failure or Ctrl-C leaves the bytes for the next call to resume, as a kill -9 does
            resumable = isinstance(err, KeyboardInterrupt) or (isinstance(err, DownloadError)
                                                               and not isinstance(err, HTTPStatusError))
            partial.after_failure(resumable_error=resumable)
            raise
        return Downloaded(url=url, path=dst, sha256=digest, size=size)

    def fetch_into(self, url: str, out: BinaryIO, *, progress: bool = False,
                   headers: Mapping[str, str] | None = None) -> tuple[str, int]:
        """Stream ``url`` into the empty, seekable file object ``out``; return its sha256 and size.

        The same retries and resumes as :meth:`fetch`, for bodies that are consumed at once and
        never cached as files (repo archives, which are extracted and dropped).

        Example:
            >>> import io; buf = io.BytesIO()
            >>> Downloader().fetch_into(weights_url, buf)[1] == len(buf.getvalue())
            True
        """
        local = is_file_url(url)
        self._check_online(url, local)
        if local:
            return _copy_local(url, out)
        return self._transfer(url, out, progress, dict(headers or {}), hashlib.sha256(), None, lambda _: None, False)

    def _check_online(self, url: str, local: bool) -> None:
        if self.offline and not local:
            raise OfflineError(
                f"network access to fetch {url}",
                "offline mode (REPROHUB_OFFLINE=1, --hub-offline or offline=True) and no cached copy",
                "fill the cache first: online, `reprohub fetch --lock hub.lock`, or from a bundle, "
                "`reprohub fetch --lock hub.lock --from BUNDLE`; or run this step online",
            )

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> requests.Response:
        """A small GET (API calls), retried like transfers on connection errors and 5xx.

        Other statuses are returned for the caller to explain (a 403 or 429 from an API is a
        rate limit the caller should name, not something to sleep through).

        Raises:
            DownloadError: the host could not be reached, or kept failing, within the retries.
        """
        return self.request("GET", url, headers)

    def request(self, method: str, url: str, headers: "Mapping[str, str | None] | None" = None, *,
                stream: bool = False, allow_redirects: bool = True, body: "bytes | None" = None) -> requests.Response:
        """:meth:`get` for any method; ``stream`` leaves the body to read, ``allow_redirects=False`` returns a
        redirect as it is (a header set to ``None`` is not sent, not even the session's default); ``body``: the
        bytes a PUT or POST sends.

        Example:
            >>> Downloader().request("HEAD", weights_url).status_code
            200
        """
        from requests import RequestException

        from .transport import NOT_RETRYABLE, unreachable_kind, unusable_url

        self._check_online(url, False)  # offline means no traffic, whichever caller forgot to ask first
        refused = 0
        for attempt in range(self.policy.retries + 1):
            check_alive(url)
            try:
                response = self.session.request(method, url, headers=dict(headers or {}), timeout=self._timeout,
                                                stream=stream, allow_redirects=allow_redirects, data=body)
            except NOT_RETRYABLE as err:
                raise unusable_url(url, err) from None
            except RequestException as err:
                problem = f"{type(err).__name__}: {err}"
                if unreachable_kind(err):
                    refused = self._after_unreachable(url, err, refused)
                    continue
            else:
                revived(url)
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code} {response.reason or ''}".strip()
            if attempt < self.policy.retries:
                self._sleep(self._backoff(attempt + 1))
        raise DownloadError(f"an answer from {url}", f"{problem} after {self.policy.retries + 1} attempts",
                            "check the network and the host (REPROHUB_GITHUB_API_URL); retry later")

    def _transfer(self, url: str, out, progress: bool, headers: dict[str, str], hasher,
                  validator: str | None, learned: Callable[[str | None], None], sync: bool = True) -> tuple[str, int]:
        from requests import TooManyRedirects

        from .transport import (NETWORK_ERRORS, NOT_RETRYABLE, expected_total, finished, open_body, reader_of,
                                unreachable_kind, unusable_url, validator_of)

        failures = restarts = refused = 0
        bar = progress_bar(url, progress)
        try:
            while True:
                check_alive(url)
                offset = out.tell()
                try:
                    response = open_body(self.session, url, offset, validator, headers, self._timeout, self.direct)
                    revived(url)
                    if response.status_code == 200 and offset:  # Range ignored: take this body from byte 0
                        restarts = count_restart(url, restarts, self.policy.retries, offset)
                        out.seek(0)
                        out.truncate()
                        hasher, offset = hashlib.sha256(), 0
                    total = expected_total(response, offset)
                    ended = [offset]  # where the body ended in the file: one tell(), not one per question
                    with finished(response, lambda: ended[0] == total):
                        if response.status_code == 200:  # a 206 continues the validator it was checked against
                            validator = validator_of(response)
                        remaining = None if total is None else total - offset
                        if remaining is None or remaining > RESUME_RECORD_MIN:  # smaller: cheaper to fetch again
                            learned(validator)                                  # than to record how to resume
                        if bar is not None:
                            start_bar(bar, total, offset)
                        pump_body(reader_of(response), out, hasher, bar, remaining, self.policy.chunk_size, sync)
                        ended[0] = out.tell()
                    if total is not None and ended[0] < total:
                        raise ShortBody(f"{ended[0]} of {total} bytes before the body ended")
                    return hasher.hexdigest(), ended[0]
                except Restart:
                    restarts = count_restart(url, restarts, self.policy.retries, offset)
                    out.seek(0)
                    out.truncate()
                    hasher = hashlib.sha256()
                except ShortBody as err:
                    failures = self._after_interruption(url, err, out.tell(), offset, failures)
                except ReprohubError:
                    raise
                except NOT_RETRYABLE as err:
                    raise unusable_url(url, err) from None
                except TooManyRedirects as err:  # a loop or a misconfigured host: no retry mends it
                    raise DownloadError(f"a body from {url}", f"{err}", "see where it leads (`curl -sIL URL`) and "
                                        "fix the URL or the server's redirects") from None
                except NETWORK_ERRORS as err:
                    if unreachable_kind(err):
                        refused = self._after_unreachable(url, err, refused)
                        continue
                    failures = self._after_interruption(url, err, out.tell(), offset, failures)
                except RetryableStatus as status:
                    failures += 1
                    if failures > self.policy.retries:
                        raise status_error(url, status.code, status.reason, status.headers) from None
                    wait = status.retry_after if status.retry_after is not None else self._backoff(failures)
                    log.warning("%s answered %d; retrying in %.1fs", url, status.code, wait)
                    self._sleep(min(wait, self.policy.max_backoff))
        finally:
            if bar is not None:
                bar.close()

    def _after_unreachable(self, url: str, err: BaseException, refused: int) -> int:
        """A host that is not there fails fast: a name that does not resolve at once, a refused connection
        after a few quick tries (``REFUSED_WAITS``, ~1.75 s: a host restarting is waited for); either is then
        remembered for a few seconds (see transport.check_alive).  A prefetch gives up at the first such
        failure and marks nothing: the load's own request is the one that waits for the host."""
        from .transport import unreachable_kind

        kind = unreachable_kind(err)
        if kind == "name" or not remembering() or refused >= min(len(REFUSED_WAITS), self.policy.retries):
            problem = (f"{host_of(url)} does not resolve" if kind == "name"
                       else f"{host_of(url)} refused the connection {refused + 1} time{'s' if refused else ''}")
            remember_dead(url, problem)
            raise unreachable_error(url, problem) from None
        self._sleep(REFUSED_WAITS[refused])
        return refused + 1

    def _after_interruption(self, url: str, err: BaseException, got: int, offset: int, failures: int) -> int:
        """Count a failed attempt (progress resets the count), wait, or give up."""
        failures = 0 if got > offset else failures + 1
        if failures > self.policy.retries:
            raise final_error(url, err, got) from err
        wait = self._backoff(failures)
        log.warning("download of %s interrupted at %d bytes (%s); retrying in %.2fs", url, got, err, wait)
        self._sleep(wait)
        return failures

    @property
    def _timeout(self) -> tuple[float, float]:
        return self.policy.connect_timeout, self.policy.read_timeout

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
