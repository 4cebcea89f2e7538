"""``hub.lock``: the reviewable record of exactly which code, weights and goldens were verified.

The file is TOML, written deterministically: tables sorted by key, one table
per entry, no timestamps, hostnames, absolute paths or tool versions, so
writing the same content twice gives the same bytes and a change shows up as a
small diff.  Example::

    # hub.lock -- written by reprohub; review changes to it like code.
    version = "1.0"

    [repos."acme/tiny:v1"]
    host = "https://api.github.com"
    commit = "1f0e3dad99908345f7439f8ffabdffc4f0b2d3a1"
    tree_sha256 = "4c2b..."

    [artifacts."https://example.org/tiny-weights.pt"]
    sha256 = "9f86..."
    size = 1234

    [goldens."tiny_mlp/forward"]
    file = "fixtures/goldens/tiny_mlp/forward.safetensors"
    sha256 = "e3b0..."

An unknown major version is refused; a newer minor version is read with a
warning.  A malformed entry is refused with the line it stands on.

Example:
    >>> lock = Lockfile()
    >>> lock.repos["a/b:v1"] = RepoPin("a/b:v1", "https://api.github.com", "f" * 40, "0" * 64)
    >>> Lockfile.loads(lock.dumps()) == lock
    True
"""

from __future__ import annotations

import hashlib
import re
import sys
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import tomli_w

from ..cache.layout import CacheLayout, get_dir
from ..errors import LockfileError
from ..fetch.fsutil import atomic_write_bytes
from ..fetch.locks import file_lock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCHEMA_MAJOR, SCHEMA_MINOR = 1, 0
HEADER = "# hub.lock -- written by reprohub; review changes to it like code.\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class RepoPin:
    """A repo spec pinned to a commit and the digest of its extracted files."""

    spec: str
    host: str
    commit: str
    tree_sha256: str


@dataclass(frozen=True)
class ArtifactPin:
    """A downloaded file pinned to its sha256 and size."""

    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class GoldenPin:
    """A recorded golden output: its key, file (relative to the lock) and digest."""

    key: str
    file: str
    sha256: str


# table name -> (entry type, the field that is the table key)
TABLES = {"repos": (RepoPin, "spec"), "artifacts": (ArtifactPin, "url"), "goldens": (GoldenPin, "key")}
_CHECKS = {"commit": _HEX40, "tree_sha256": _HEX64, "sha256": _HEX64}


@dataclass
class Lockfile:
    """The contents of a ``hub.lock``: repos, artifacts and goldens, each keyed by name."""

    repos: dict[str, RepoPin] = field(default_factory=dict)
    artifacts: dict[str, ArtifactPin] = field(default_factory=dict)
    goldens: dict[str, GoldenPin] = field(default_factory=dict)

    @classmethod
    def read(cls, path: "str | Path") -> "Lockfile":
        """Read ``path``; a missing file is an empty lock.

        Raises:
            LockfileError: malformed TOML, an unknown schema, or a broken entry (with its line).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        return cls.loads(text, str(path))

    @classmethod
    def loads(cls, text: str, name: str = "hub.lock") -> "Lockfile":
        """Parse lockfile text (see :meth:`read`)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise LockfileError("valid TOML", f"{name}: {err}", "fix the line by hand, or delete the file and "
                                "re-record it with `pytest --hub-update`") from err
        newer = _check_version(data.get("version"), name)
        lock = cls()
        for table, (kind, key_field) in TABLES.items():
            entries = data.get(table, {})
            if not isinstance(entries, dict):
                raise LockfileError(f"a table [{table}]", f"{type(entries).__name__} in {name}", "re-record the lock")
            for key, entry in entries.items():
                getattr(lock, table)[key] = _entry(kind, key_field, key, entry, table, text, name, newer)
        unknown = set(data) - {"version", *TABLES}
        if unknown:
            raise LockfileError("only version, repos, artifacts and goldens", f"{sorted(unknown)} in {name}",
                                "remove the unknown tables")
        return lock

    def dumps(self) -> str:
        """The lock as deterministic TOML text."""
        doc: dict = {"version": f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"}
        for table, (_, key_field) in TABLES.items():
            entries = getattr(self, table)
            if entries:
                doc[table] = {key: {k: v for k, v in sorted(asdict(entries[key]).items()) if k != key_field}
                              for key in sorted(entries)}
        return HEADER + tomli_w.dumps(doc)

    def write(self, path: "str | Path") -> bool:
        """Write atomically under a lock; return whether the bytes changed."""
        path = Path(path)
        text = self.dumps()
        with file_lock(_writer_lock(path), f"writing {path}"):
            try:
                if path.read_text(encoding="utf-8") == text:
                    return False
            except FileNotFoundError:
                pass
            atomic_write_bytes(path, text.encode("utf-8"))
        return True

    def merged(self, other: "Lockfile") -> "Lockfile":
        """A new lock with ``other``'s entries added or replacing these."""
        return Lockfile({**self.repos, **other.repos}, {**self.artifacts, **other.artifacts},
                        {**self.goldens, **other.goldens})

    def without(self, names: "dict[str, set[str]]") -> "Lockfile":
        """A new lock without the entries named per table (``{"repos": {...}}``)."""
        return Lockfile(*({k: v for k, v in getattr(self, t).items() if k not in names.get(t, set())}
                          for t in TABLES))

    def entry_count(self) -> dict[str, int]:
        return {t: len(getattr(self, t)) for t in TABLES}


def _writer_lock(path: Path) -> Path:
    """The inter-process lock for writing ``path``: in the hub dir, not beside the lock (nothing to .gitignore)."""
    key = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return CacheLayout(get_dir()).internal / "locks" / f"{key}.lock"


def _check_version(version, name: str) -> bool:
    """Refuse another major version; True (with a warning) for a newer minor one."""
    match = re.fullmatch(r"(\d+)\.(\d+)", str(version)) if version is not None else None
    if match is None:
        raise LockfileError('version = "MAJOR.MINOR"', f"{version!r} in {name}",
                            f'add version = "{SCHEMA_MAJOR}.{SCHEMA_MINOR}" at the top')
    major, minor = int(match.group(1)), int(match.group(2))
    if major != SCHEMA_MAJOR:
        raise LockfileError(f"schema version {SCHEMA_MAJOR}.x", f"version {version} in {name}",
                            "upgrade reprohub to read this lock, or re-record it with this version")
    if minor > SCHEMA_MINOR:
        warnings.warn(f"{name} has schema {version}, newer than {SCHEMA_MAJOR}.{SCHEMA_MINOR}; "
                      "fields this reprohub does not know are ignored", stacklevel=3)
    return minor > SCHEMA_MINOR


def _entry(kind, key_field: str, key: str, entry, table: str, text: str, name: str, newer: bool = False):
    where = f"{name} line {_line_of(text, table, key)}, [{table}.{_toml_key(key)}]"
    names = [f.name for f in fields(kind) if f.name != key_field]
    if isinstance(entry, dict) and newer:  # a newer minor schema may add fields: ignore them, as promised
        entry = {k: v for k, v in entry.items() if k in names}
    if not isinstance(entry, dict) or set(entry) != set(names):
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise LockfileError(f"fields {names}", f"{found} at {where}", "restore the entry or re-record it")
    for field_name, pattern in _CHECKS.items():
        if field_name in entry and not (isinstance(entry[field_name], str) and pattern.fullmatch(entry[field_name])):
            raise LockfileError(f"{field_name} as lower-case hex", f"{entry[field_name]!r} at {where}",
                                "restore the entry from version control or re-record it")
    if "size" in entry and (not isinstance(entry["size"], int) or entry["size"] < 0):
        raise LockfileError("size as a whole number", f"{entry['size']!r} at {where}", "re-record the entry")
    return kind(**{key_field: key, **entry})


def _toml_key(key: str) -> str:
    return tomli_w.dumps({key: 0}).split(" = ")[0]


def _line_of(text: str, table: str, key: str) -> int:
    header = f"[{table}.{_toml_key(key)}]"
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() == header:
            return number
    return 0
