"""What an entry of ``hub.lock`` may hold: every entry is checked as it is read, and refused unless well-formed.

A lock is text a pull request can edit, and its values reach a terminal (the report), an HTTP client
(a request's replayed status and headers) and the file system (golden paths).  So, beyond each
field's own form (hex digests, http(s) URLs, statuses, the headers clients act on):

* **No control character in an answer**: no key or text of a ``[requests]`` or ``[unreachable]``
  entry may hold one (ESC, BEL, CR, LF, DEL, the C1 controls): they are replayed to clients as HTTP
  answers and errors, and quoted in failures.  An ``[unreachable]`` error with a newline would forge
  a line of the report (``reprohub: all goldens verified``); a request key with ``\\x1b[2J`` would
  clear the terminal.  The recorder never writes one, so refusing them on read costs nothing real.
  Other tables' text (golden keys, environment values) is read as it is and escaped wherever it is
  printed (:func:`reprohub.redact.printable`).

Example:
    >>> from reprohub.lock.lockfile import UnreachablePin
    >>> entry(UnreachablePin, "url", "https://h/w.pt", {"error": "HTTP 404"}, "unreachable")
    UnreachablePin(url='https://h/w.pt', error='HTTP 404')
    >>> entry(UnreachablePin, "url", "https://h/w.pt", {"error": "HTTP 404\\nreprohub: ok"}, "unreachable")
    Traceback (most recent call last):
    ...
    reprohub.lock.entries.BadEntry: text without control characters
"""

from __future__ import annotations

import functools
import re
from dataclasses import MISSING, fields

from ..fetch import tree

# The response headers a lock may hold: what clients act on (type, encoding, validators, redirects, ranges,
# a file name, huggingface_hub's commit and linked-file headers).  Anything else -- Set-Cookie, auth
# challenges, rate-limit counters, dates -- is neither recorded nor, from an edited lock, replayed.
RESPONSE_HEADERS = ("accept-ranges", "content-disposition", "content-encoding", "content-length", "content-range",
                    "content-type", "etag", "last-modified", "location", "x-error-code", "x-error-message",
                    "x-linked-etag", "x-linked-size", "x-repo-commit")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_SWHID_DIR = re.compile(r"swh:1:dir:[0-9a-f]{40}")
_CHECKS = {"commit": _HEX40, "sha256": _HEX64}
ANSWER_TABLES = ("requests", "unreachable")  # replayed to clients as answers: no control character at all
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_REQUEST_KEY = re.compile(r"(GET|HEAD) https?://[^/\s]+\S*")


class BadEntry(Exception):
    """An entry that is refused; :meth:`~reprohub.lock.lockfile.Lockfile.loads` adds where it stands."""

    def __init__(self, expected: str, found: str, fix: str) -> None:
        super().__init__(expected)
        self.expected, self.found, self.fix = expected, found, fix


@functools.lru_cache(maxsize=None)
def _field_names(kind, key_field: str) -> "tuple[list[str], frozenset[str]]":
    """An entry type's fields (less its key) and which of them are optional, looked up once per type."""
    names = [f.name for f in fields(kind) if f.name != key_field]
    return names, frozenset(f.name for f in fields(kind) if f.default is not MISSING or f.default_factory is not MISSING)


def entry(kind, key_field: str, key: str, data, table: str, newer: bool = False):
    """The pin of type ``kind`` that ``data`` (one TOML table) holds under ``key``.

    Raises:
        BadEntry: a field missing, unknown or malformed, or a control character anywhere in it.
    """
    names, optional = _field_names(kind, key_field)
    if isinstance(data, dict) and newer:  # a newer minor schema may add fields: ignore them, as promised
        data = {k: v for k, v in data.items() if k in names}
    if not isinstance(data, dict) or not set(names) - optional <= set(data) <= set(names):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise BadEntry(f"fields {names}", f"{found}", "restore the entry or re-record it")
    for field_name, pattern in _CHECKS.items():
        if field_name in data and not (isinstance(data[field_name], str) and pattern.fullmatch(data[field_name])):
            raise BadEntry(f"{field_name} as lower-case hex", f"{data[field_name]!r}",
                           "restore the entry from version control or re-record it")
    if "tree_sha256" in data and not tree.is_digest_text(data["tree_sha256"]):
        raise BadEntry("tree_sha256 as v2:<64 lower-case hex> (or 64 hex, version 1)",
                       f"{data['tree_sha256']!r}", "restore the entry from version control or re-record it")
    if table == "repos" and not key.startswith("git+") and not is_http_url(data.get("host")):
        raise BadEntry("host as the http(s) URL of a GitHub-compatible API", f"{data.get('host')!r}",
                       "restore the entry from version control, or re-record it with --hub-update")
    if table == "environments" and not (isinstance(data["values"], dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in data["values"].items())):
        raise BadEntry("values as a table of strings", f"{data['values']!r}", "re-record the lock")
    if "artifacts" in data and not (isinstance(data["artifacts"], list) and all(
            isinstance(url, str) and is_http_url(url) for url in data["artifacts"])):
        raise BadEntry("artifacts as a list of http(s) URLs", f"{data['artifacts']!r}",
                       "restore the entry from version control, or re-record it with --hub-update")
    if table == "requests":
        _check_request(key, data)
    if table == "repos":
        _check_swhids(data)
    if table == "unreachable" and not isinstance(data["error"], str):
        raise BadEntry("error as text", repr(data["error"]), "re-record the entry")
    if "size" in data and (not isinstance(data["size"], int) or data["size"] < 0):
        raise BadEntry("size as a whole number", f"{data['size']!r}", "re-record the entry")
    if table in ANSWER_TABLES:
        _check_text(key, data)
    return kind(**{key_field: key, **data})


def _check_swhids(data: dict) -> None:
    """A repo's tree SWHID only with the way it is known (sources/swhid.py)."""
    swhid_dir, how = data.get("swhid_dir", ""), data.get("git_tree", "")
    known = how in ("computed", "git", "archive")
    if not (isinstance(how, str) and (known or how == "" or (how.startswith("unknown: ") and not _CONTROL.search(how)))):
        raise BadEntry("git_tree as computed, git, archive or 'unknown: <why>'", f"{how!r}",
                       "restore the entry from version control or re-record it")
    if (known or swhid_dir) and not (known and isinstance(swhid_dir, str) and _SWHID_DIR.fullmatch(swhid_dir)):
        raise BadEntry("swhid_dir as swh:1:dir:<40 hex>, with git_tree saying how it is known",
                       f"swhid_dir {swhid_dir!r}, git_tree {how!r}", "restore the entry from version control or "
                       "re-record it")


def _check_text(key: str, data: dict) -> None:
    """Refuse a control character in the key or in any text of the entry, at any depth (named by its path)."""
    stack: list = [("the key", key), *data.items()]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{path}.{k}", k) for k in value] + [(f"{path}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(path, item) for item in value]
        elif isinstance(value, str) and _CONTROL.search(value):
            raise BadEntry("text without control characters", f"{path} = {value!r}"[:200],
                           "restore the entry from version control, or re-record it with --hub-update")


def _check_request(key: str, data: dict) -> None:
    """A ``[requests]`` entry is replayed to repo code as an HTTP answer: its key, status and headers are
    refused unless well-formed (a header value with a line break would be a header of its own)."""
    if not _REQUEST_KEY.fullmatch(key):
        raise BadEntry('a key "GET <http(s) URL>" or "HEAD <http(s) URL>"', repr(key), "re-record the lock")
    if not (isinstance(data["status"], int) and 100 <= data["status"] <= 599):
        raise BadEntry("status as an HTTP status (100-599)", repr(data["status"]), "re-record the entry")
    headers = data.get("headers", {})
    if not (isinstance(headers, dict) and all(k in RESPONSE_HEADERS and isinstance(v, str) and not _CONTROL.search(v)
                                              for k, v in headers.items())):
        raise BadEntry(f"headers among {', '.join(RESPONSE_HEADERS)}, one line each", repr(headers),
                       "restore the entry from version control, or re-record it with --hub-update")
    if not isinstance(data.get("repo", ""), str):
        raise BadEntry("repo as the spec of the repo whose code made the request", repr(data["repo"]),
                       "re-record the entry")


def is_http_url(value) -> bool:
    """Whether ``value`` is text that starts as an http(s) URL with a host."""
    return isinstance(value, str) and re.match(r"https?://[^/\s]+", value) is not None
