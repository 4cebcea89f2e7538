"""What of a URL may be shown: the one place secrets are taken out of messages, warnings and output.

A URL may carry a password (``http://user:pass@mirror/...``), a token (``?access_token=``) or a
signature (``?X-Amz-Signature=``).  Every :class:`~reprohub.errors.ReprohubError` message and every
record of the ``reprohub`` logger passes through :func:`redact_text`, so no message, retry warning
or command output shows one; the real URL is only ever sent to its own host.

Example:
    >>> redact_text("retrying http://u:secret@h:8/b/x?sig=abc&v=1 in 2s")
    'retrying http://***@h:8/b/x?sig=***&v=1 in 2s'
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

# Query parameters that sign a URL for a while (S3, GCS, Azure SAS, CloudFront): not part of what it names.
SIGNING_PREFIXES = ("x-amz-", "x-goog-")
SIGNING_NAMES = frozenset({"signature", "expires", "awsaccesskeyid", "googleaccessid", "key-pair-id", "policy",
                           "sig", "se", "st", "sp", "sv", "sr", "spr", "srt", "ss", "skoid", "sktid", "skt", "ske",
                           "sks", "skv", "sdd"})
# query parameters that carry a secret outright
SECRET_NAMES = frozenset({"token", "access_token", "api_key", "apikey", "key", "password", "secret", "auth",
                          "credential"})
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def is_signing(name: str) -> bool:
    """Whether a (lower-case) query parameter name only signs a URL."""
    return name in SIGNING_NAMES or name.startswith(SIGNING_PREFIXES)


def redact_url(url: str) -> str:
    """``url`` with its userinfo and the values of secret or signing query parameters masked.

    Example:
        >>> redact_url("http://user:pass@mirror.example/b?X-Amz-Signature=abc&v=1")
        'http://***@mirror.example/b?X-Amz-Signature=***&v=1'
    """
    if "@" not in url and "?" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that cannot be parsed>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(_masked(pair) for pair in parts.query.split("&")) if parts.query else parts.query
    return parts._replace(netloc=netloc, query=query).geturl()


def _masked(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    lowered = name.lower()
    return f"{name}=***" if eq and (is_signing(lowered) or lowered in SECRET_NAMES) else pair


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group()), text)


class RedactingFilter(logging.Filter):
    """Rewrites each record of the ``reprohub`` logger with its URLs redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install() -> None:
    """Put the filter on the ``reprohub`` logger (once; done when :mod:`reprohub.errors` is imported)."""
    logger = logging.getLogger("reprohub")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
