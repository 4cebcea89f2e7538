r"""What of a text may be shown: the one place secrets and terminal controls are taken out of output.

**Secrets.** A URL may carry a password (``http://user:pass@mirror/...``), a token
(``?access_token=``, ``?private_token=``) or a signature (``?X-Amz-Signature=``).  Every
:class:`~reprohub.errors.ReprohubError` message, every record of the ``reprohub`` logger and every
failure report the pytest plugin prints passes through :func:`redact_text`, so no message, retry
warning, chained cause or traceback shows one; the real URL is only ever sent to its own host.
Query values are masked by the parameter's *name* wherever a query appears, with or without a
scheme in front: urllib3 writes ``Max retries exceeded with url: /w.pth?X-Amz-Signature=...``.
Names compare case-insensitively, with ``-`` and ``_`` alike (``api-key`` is ``api_key``).

**Many lines of one kind** are cut to :data:`MAX_LINES_PER_KIND` and a count (:func:`capped`).

**Terminal controls.** Text read from a lock or a golden file is the author's (or an attacker's)
text: :func:`printable` escapes every control and format character in it, so an escape sequence
cannot retitle or clear the terminal and a newline cannot forge a line of output.

Example:
    >>> redact_text("retrying http://u:secret@h:8/b/x?sig=abc&v=1 in 2s")
    'retrying http://***@h:8/b/x?sig=***&v=1 in 2s'
    >>> redact_text("Max retries exceeded with url: /w.pth?X-Amz-Credential=AKIA&private-token=t0k")
    'Max retries exceeded with url: /w.pth?X-Amz-Credential=***&private-token=***'
    >>> printable("1.0\n--index-url http://x \x1b[2J")
    '1.0\\n--index-url http://x \\x1b[2J'
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

# Query parameters that sign a URL for a while (S3, GCS, Azure SAS, CloudFront): not part of what it names.
SIGNING_PREFIXES = ("x-amz-", "x-goog-")
# GitHub's release-assets host signs with an Azure SAS (sig, se, sp, ... and its response overrides rscd, rsct)
# plus a ``jwt``; Hugging Face's CDN (CloudFront) with Expires, Policy, Signature, Key-Pair-Id.
SIGNING_NAMES = frozenset({"signature", "expires", "awsaccesskeyid", "googleaccessid", "key-pair-id", "policy",
                           "sig", "se", "st", "sp", "sv", "sr", "spr", "srt", "ss", "skoid", "sktid", "skt", "ske",
                           "sks", "skv", "sdd", "jwt", "rscd", "rsct", "rscc", "rsce", "rscl"})
# query parameters that carry a secret outright
SECRET_NAMES = frozenset({"token", "access_token", "api_key", "apikey", "key", "password", "secret", "auth",
                          "credential", "private_token", "client_secret", "refresh_token", "id_token",
                          "auth_token", "session_token", "passwd", "pwd", "code_verifier"})
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# a query parameter anywhere in a text: after ? or & (or their %-escapes), a name, =, a value
_PARAM = re.compile(r"(?P<lead>[?&;]|%3[Ff]|%26)(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&;\s'\"<>)#\\]*)")


def is_signing(name: str) -> bool:
    """Whether a (lower-case) query parameter name only signs a URL."""
    return name in SIGNING_NAMES or name.startswith(SIGNING_PREFIXES)


def is_secret(name: str) -> bool:
    """Whether a query parameter of this name carries a secret or a signature (any case, ``-`` as ``_``).

    Example:
        >>> is_secret("Access-Token"), is_secret("X-Amz-Signature"), is_secret("v")
        (True, True, False)
    """
    lowered = name.lower()
    return is_signing(lowered) or lowered.replace("-", "_") in SECRET_NAMES


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
    return f"{name}=***" if eq and is_secret(name) else pair


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`, and every secret query value
    masked where a query stands without its URL (a path, a ``repr`` of one)."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group()), text)
    if "=" in text:
        text = _PARAM.sub(_masked_param, text)
    return text


def _masked_param(match: "re.Match[str]") -> str:
    if not is_secret(match["name"]) or match["value"] in ("", "***"):
        return match.group()
    return f"{match['lead']}{match['name']}=***"


def redact_exception(err: BaseException) -> BaseException:
    """``err`` with the text of every exception in its chain redacted in place (its ``args``, a ``url``,
    each cause and context, an exception held in ``reason`` or an argument), so a chained cause that
    Python or pytest prints shows no secret either; returns ``err``.

    Example:
        >>> inner = OSError("Max retries exceeded with url: /w?Signature=abc")
        >>> outer = RuntimeError(inner); outer.__cause__ = inner
        >>> str(redact_exception(outer).__cause__)
        'Max retries exceeded with url: /w?Signature=***'
    """
    pending, seen = [err], set()
    while pending and len(seen) < 32:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        try:
            current.args = tuple(redact_text(a) if isinstance(a, str) else a for a in current.args)
            if isinstance(getattr(current, "url", None), str):
                current.url = redact_text(current.url)
        except (AttributeError, TypeError):  # an exception type with read-only attributes stays as it is
            pass
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += [a for a in current.args if isinstance(a, BaseException)]
        pending = [e for e in pending if isinstance(e, BaseException)]
    return err


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(text: str) -> str:
    r"""``text`` with every control or invisible format character escaped (``\n``, ``\x1b``,
    ``\u202e``): what a lock or golden holds is shown, never obeyed by the terminal.

    Example:
        >>> printable("ok\ttab"), printable("a\u202eb")
        ('ok\\ttab', 'a\\u202eb')
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


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


MAX_LINES_PER_KIND = 50  # per-entry lines of one kind (new, unused...) shown before the rest is counted


def capped(lines: list[str], what: str, limit: int = MAX_LINES_PER_KIND) -> list[str]:
    """``lines``, or the first ``limit`` of them and one line counting the rest: a lock of 100,000 requests
    must not print 100,000 warnings.

    Example:
        >>> capped([f"  unused request {n}" for n in range(5)], "unused requests", limit=2)
        ['  unused request 0', '  unused request 1', '  ... and 3 more unused requests']
    """
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"  ... and {len(lines) - limit} more {what}"]
