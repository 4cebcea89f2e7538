"""Which hosts a lock-driven prefetch may ask before the repo's code does: the repo's own host (GitHub's
hosts, for a repo on GitHub), or those ``REPROHUB_PREFETCH_HOSTS`` names.  A lock is text a pull request can
edit, so the URLs it pins are fetched early only where the repo itself would have sent its users.
"""

from __future__ import annotations

from urllib.parse import urlsplit


GITHUB_HOSTS = frozenset({"api.github.com", "github.com", "codeload.github.com", "objects.githubusercontent.com",
                          "raw.githubusercontent.com", "release-assets.githubusercontent.com"})


def prefetch_host_allowed(url: str, repo_host: str, extra: "str | None" = None) -> bool:
    """Whether a pinned ``url`` of a repo hosted at ``repo_host`` may be fetched before its code asks for it:
    on the repo's own host (GitHub's hosts, for a repo on GitHub), or a host ``extra`` names
    (``REPROHUB_PREFETCH_HOSTS``: comma-separated names, ``*`` for any) -- set where the lock is not.

    Example:
        >>> prefetch_host_allowed("https://github.com/o/r/releases/download/v1/w.pt", "https://api.github.com")
        True
        >>> prefetch_host_allowed("http://attacker.example/x", "https://api.github.com")
        False
        >>> prefetch_host_allowed("https://download.pytorch.org/w.pth", "https://api.github.com", "download.pytorch.org")
        True
    """
    (host, port), (own, own_port) = (_host_port(u) for u in (url, repo_host))
    allowed = {name.strip().lower() for name in (extra or "").split(",") if name.strip()}
    return bool(host) and ((host, port) == (own, own_port) or "*" in allowed or host in allowed
                           or (own in GITHUB_HOSTS and host in GITHUB_HOSTS and port == 443))


def _host_port(url: str) -> "tuple[str, int | None]":
    """A URL's host name and port (the scheme's default where none is written): another port is another host."""
    try:
        parts = urlsplit(url)
        return parts.hostname or "", parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is no number
        return "", None
