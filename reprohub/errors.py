"""One exception tree for everything reprohub raises.

Every error is a :class:`ReprohubError` *and* the builtin exception a caller of
``torch.hub`` would already catch (``ValueError``, ``RuntimeError``,
``ConnectionError`` ...), so swapping ``torch.hub`` for ``reprohub`` never
breaks an ``except`` clause.  Each error carries three parts, shown in its
message and available as attributes:

* ``expected`` -- what reprohub needed,
* ``found``    -- what it got instead,
* ``fix``      -- what the user can do about it.

Example:
    >>> from reprohub.errors import RefError
    >>> try:
    ...     raise RefError("owner/repo[:ref]", "'nope'", "write it as owner/repo or owner/repo:branch")
    ... except ValueError as err:
    ...     print(err.found)
    'nope'
"""

from __future__ import annotations

import pickle
from urllib.error import HTTPError, URLError

from . import redact

redact.install()  # every record of the "reprohub" logger has its URLs' secrets masked


class ReprohubError(Exception):
    """Root of every error reprohub raises.

    Args:
        expected: what reprohub needed.
        found: what it found instead.
        fix: what the user should do.
    """

    def __init__(self, expected: str, found: str, fix: str = "") -> None:
        self.expected = expected
        self.found = found
        self.fix = fix
        Exception.__init__(self, self._compose())  # not super(): URLError/HTTPError bases take other arguments

    def __str__(self) -> str:  # ours, also where a builtin base (URLError, HTTPError) has its own
        return self._compose()

    def _compose(self) -> str:
        text = f"expected {self.expected}, found {self.found}"
        # a URL's password, token or signature never reaches a message (reprohub.redact)
        return redact.redact_text(f"{text}. Fix: {self.fix}" if self.fix else text)

    def __reduce__(self):  # picklable across pytest-xdist and multiprocessing
        return (self.__class__, (self.expected, self.found, self.fix))


def pinned_hint(err: ReprohubError, item: str, repo: bool = False, bundle: "str | None" = None) -> ReprohubError:
    """``err`` with the way back for an item a lock pins: a bundle (``bundle``: one found beside the lock, named
    as the setting to use) and, for a repo whose host answered, moving the pin (no help where the host is gone).

    Example:
        >>> str(pinned_hint(ReprohubError("x", "y", "check the network"), "w.pt")).endswith("writes one)")
        True
        >>> str(pinned_hint(ReprohubError("x", "y"), "w.pt", bundle="hub-bundle")).endswith("REPROHUB_MIRROR=hub-bundle")
        True
    """
    hint = (f"{item} is pinned in the lock, and " + (f"the bundle beside it brings it back: REPROHUB_MIRROR={bundle}"
            if bundle else "a bundle brings it back (REPROHUB_MIRROR=<bundle>; `reprohub bundle` writes one)"))
    host_gone = isinstance(err, DownloadError) and err.status is None
    if repo and not host_gone:
        hint += "; or move the pin to what the host has now with `pytest --hub-lock hub.lock --hub-accept`"
    if hint not in err.fix:
        err.fix = f"{err.fix}; {hint}" if err.fix else hint
    return err


class SettingError(ReprohubError, ValueError):
    """An environment variable or option has a value that can never work."""


class RefError(ReprohubError, ValueError):
    """A repo spec such as ``owner/repo:ref`` is malformed."""


class CachePathError(ReprohubError, ValueError):
    """A name would resolve to a path outside the hub dir."""


class ProjectPathError(ReprohubError, PermissionError):
    """A path in the project that reprohub would write or delete leads out of it (a link a pull request made)."""


class LocalDiskError(ReprohubError, OSError):
    """A write on this machine failed (a full disk, an I/O error): a local failure, never the host's."""


class CacheWriteError(ReprohubError, PermissionError):
    """The cache (hub dir or model_dir) cannot be written: read-only or not ours."""


class LockUnsupportedError(ReprohubError, OSError):
    """The filesystem of the hub dir takes no ``flock`` (a Lustre mount with ``noflock``, some FUSE filesystems)."""


class LockTimeoutError(ReprohubError, TimeoutError):
    """Another process held a cache lock longer than ``REPROHUB_LOCK_TIMEOUT``."""


class CacheCollisionError(ReprohubError, FileExistsError):
    """A cached file at the asked path belongs to a different URL."""


class DownloadError(ReprohubError, URLError, ConnectionError):
    """A transfer failed after all retries: a ``urllib.error.URLError``, as torch.hub's downloads raise.

    ``status`` is the HTTP status where there was one (see :class:`HTTPStatusError`).
    """

    def __init__(self, expected: str, found: str, fix: str = "", status: int | None = None) -> None:
        self._status = status
        ReprohubError.__init__(self, expected, found, fix)
        if not isinstance(self, HTTPError):  # HTTPError's reason is a property of its msg
            self.reason = found

    @property
    def status(self) -> int | None:
        return self._status

    def __reduce__(self):
        return (self.__class__, (self.expected, self.found, self.fix, self.status))


class HTTPStatusError(DownloadError, HTTPError):
    """The server answered an error status: also a ``urllib.error.HTTPError`` with ``code``, ``reason``,
    ``headers`` and ``url``, so ``except HTTPError as e: if e.code == 404`` works as with torch.hub."""

    def __init__(self, expected: str, found: str, fix: str = "", status: int | None = None, url: str = "",
                 reason: str = "", headers: "dict[str, str] | None" = None) -> None:
        DownloadError.__init__(self, expected, found, fix, status)
        HTTPError.__init__(self, url, status, reason, dict(headers or {}), None)

    def __reduce__(self):
        return (self.__class__, (self.expected, self.found, self.fix, self.status, self.url, self.msg,
                                 dict(self.hdrs)))


class TruncatedDownloadError(DownloadError):
    """The body ended before ``Content-Length`` bytes arrived."""


class HashMismatchError(ReprohubError, RuntimeError):
    """Downloaded or cached bytes do not have the digest they must have."""


class MirrorError(HashMismatchError):
    """A mirror served content whose digest is not the one the lock pins (never used, never cached)."""


class OfflineError(ReprohubError, FileNotFoundError, URLError):
    """Offline mode is on and what is needed is not in the cache.  Also a ``urllib.error.URLError`` (with its
    ``reason``): a test that expects torch.hub's ``URLError`` for a download it cannot make still catches it."""

    def __init__(self, expected: str, found: str, fix: str = "") -> None:
        ReprohubError.__init__(self, expected, found, fix)
        self.reason = found


class CheckpointError(ReprohubError, pickle.UnpicklingError):
    """A cached weight file is not a checkpoint at all (an HTML login page, an error text); it was evicted."""


class ArchiveError(ReprohubError, ValueError):
    """An archive is unsafe (path escapes, links out, too large) or unreadable."""


class SourceError(ReprohubError, ValueError):
    """A repo, ref or commit cannot be found at its source."""


class AuthError(ReprohubError, PermissionError):
    """The host refused the request: bad or missing token, or rate limit."""


class UntrustedRepoError(ReprohubError, PermissionError, EOFError):
    """The repo is not trusted and nobody confirmed it.  Also an ``EOFError``: where torch.hub asks at a
    terminal that is not there, ``input()`` raises that, and code around a torch.hub load catches it."""


class EntrypointError(ReprohubError, RuntimeError):
    """``hubconf.py`` is missing, or has no such callable."""


class HubconfMissingError(EntrypointError, FileNotFoundError):
    """The repo or folder has no ``hubconf.py`` (a ``FileNotFoundError``, as torch.hub's)."""


class MissingDependenciesError(ReprohubError, RuntimeError):
    """Packages listed in ``hubconf.dependencies`` are not installed."""

    def __init__(self, expected: str, found: str, fix: str = "", missing: tuple[str, ...] = ()) -> None:
        self.missing = tuple(missing)
        super().__init__(expected, found, fix)

    def __reduce__(self):
        return (self.__class__, (self.expected, self.found, self.fix, self.missing))


class LockfileError(ReprohubError, ValueError):
    """``hub.lock`` is malformed, of an unknown schema, or hand-broken."""


class BisectError(ReprohubError, RuntimeError):
    """``reprohub bisect`` could not run the tests it was given (pytest's usage error, no tests collected)."""


class LockMismatchError(ReprohubError, AssertionError):
    """Something used differs from, or is missing in, ``hub.lock``."""


class GoldenMismatchError(ReprohubError, AssertionError):
    """An output differs from its recorded golden."""


class GoldenConflictError(ReprohubError, AssertionError):
    """Two tests of one run would write one golden key with different outputs."""


class GoldenMissingError(ReprohubError, AssertionError):
    """No golden is recorded for an output."""


class GoldenFileError(ReprohubError, AssertionError):
    """A golden file cannot be read (damaged, or not a golden); re-record it."""
