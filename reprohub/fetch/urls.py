"""URL helpers every stage shares: checking a setting's URL, ``file://`` URLs, and the canonical form.

Example:
    >>> canonical_url("https://h/w.pt?X-Amz-Signature=1")
    'https://h/w.pt'
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ..errors import SettingError
from ..redact import is_secret


def check_url(url: str, setting: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL; else a :class:`SettingError` naming ``setting``.

    A value that can never work fails at once instead of after every retry.

    Example:
        >>> check_url("localhost:9", "REPROHUB_GITHUB_API_URL")
        Traceback (most recent call last):
        ...
        reprohub.errors.SettingError: expected REPROHUB_GITHUB_API_URL as an http(s) URL, found 'localhost:9'. Fix: write it with a scheme and host, e.g. REPROHUB_GITHUB_API_URL=http://127.0.0.1:8000/api
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingError(f"{setting} as an http(s) URL", repr(url),
                           f"write it with a scheme and host, e.g. {setting}=http://127.0.0.1:8000/api")
    return url


def is_file_url(url: str) -> bool:
    """Whether ``url`` names a local file (``file://``), which needs no network and works offline."""
    return url[:7].lower() == "file://"


def local_path(url: str) -> Path:
    """The local path of a ``file://`` URL.

    Example:
        >>> local_path("file:///srv/bundle/a%20b").as_posix()
        '/srv/bundle/a b'
    """
    from urllib.request import url2pathname

    return Path(url2pathname(urlsplit(url).path))




def canonical_url(url: str) -> str:
    """``url`` without the query parameters that only sign it or carry a credential, so a presigned URL that
    changes on every request still names one cached file and one lock entry, and no token
    (``private_token=``, ``access_token=``...) is written into a lock that is committed; and without a
    fragment, which no client sends (``#x`` must not make a redirect target look like another URL).
    The names are :data:`reprohub.redact.SIGNING_NAMES` and ``SECRET_NAMES``.

    Example:
        >>> canonical_url("https://b.s3.amazonaws.com/w.pt?X-Amz-Signature=ab&X-Amz-Date=1&versionId=3")
        'https://b.s3.amazonaws.com/w.pt?versionId=3'
        >>> canonical_url("https://gitlab.example/w.pt?private_token=glpat-1&ref=v1")
        'https://gitlab.example/w.pt?ref=v1'
        >>> canonical_url("https://release-assets.example/a/b?sp=r&sv=2018&se=2026&sig=x%3D&jwt=eyJ&rscd=a&filename=w.pt#x")
        'https://release-assets.example/a/b?filename=w.pt'
    """
    if "?" not in url and "#" not in url:
        return url
    parts = urlsplit(url)
    kept = [pair for pair in parts.query.split("&") if pair and not is_secret(pair.partition("=")[0])]
    return parts._replace(query="&".join(kept), fragment="").geturl()
