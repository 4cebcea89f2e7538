"""``hub.lock``: the reviewable record of exactly which code, weights and goldens were verified.

The file is TOML, written deterministically: tables sorted by key, one table
per entry, no timestamps, hostnames, absolute paths or tool versions, so
writing the same content twice gives the same bytes and a change shows up as a
small diff.  Example::

    # hub.lock -- written by reprohub; review changes to it like code.
    version = "2.3"

    [repos."acme/tiny:v1"]
    artifacts = [
        "https://example.org/tiny-weights.pt",
    ]
    commit = "1f0e3dad99908345f7439f8ffabdffc4f0b2d3a1"
    git_tree = "computed"
    host = "https://api.github.com"
    swhid_dir = "swh:1:dir:5b4a..."
    tree_sha256 = "v2:4c2b..."

    [artifacts."https://example.org/tiny-weights.pt"]
    sha256 = "9f86..."
    size = 1234

    [goldens."tiny_mlp/forward"]
    file = "fixtures/goldens/tiny_mlp/forward.safetensors"
    sha256 = "e3b0..."

**Compatibility rule.** The major version changes when a value changes meaning; a reader refuses
a major it does not know ("upgrade reprohub").  A newer *minor* version only adds: fields in an
entry and whole tables, which this reader ignores with one warning (and drops when it rewrites the
lock).  Of the current or an older minor, an unknown field or table is an error (a typo must not
pass silently).  Version 2.0 writes tree digests as ``v2:<hex>`` (:mod:`reprohub.fetch.tree`);
1.x locks, whose bare-hex digests are version 1, are still read and verified.  Version 2.1 adds a
repo's ``artifacts`` (what its entrypoints download, so a locked cold load starts them early), and 2.2
``[requests]``: what repo and test code fetched themselves (:mod:`reprohub.lock.hermetic`), and 2.3 a
repo's tree SWHID (``swhid_dir``, ``git_tree``).  A lock is
always written with this reprohub's version, whatever it holds: the line changes once, when this version
first writes a lock, never when a lock first holds a request (which read as a format change in review);
an older 2.x reader reads it, warning once and ignoring what it does not know.  A malformed entry
is refused with the line it stands on.  Reading is linear in the size of the lock: its TOML is parsed once
(where an entry stands is looked up only for one that is refused).

Example:
    >>> lock = Lockfile()
    >>> lock.repos["a/b:v1"] = RepoPin("a/b:v1", "https://api.github.com", "f" * 40, "0" * 64)
    >>> Lockfile.loads(lock.dumps()) == lock
    True
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from ..cache.layout import CacheLayout, get_dir
from ..errors import LockfileError
from ..fetch.fsutil import atomic_write_bytes
from ..fetch.locks import file_lock
from .entries import BadEntry, entry as _entry

try:  # tomli's wheels are compiled (mypyc): a lock of 100,000 entries parses in 1.6 s instead of 3.6 s
    import tomli as tomllib
except ImportError:  # pragma: no cover -- the standard library's pure-Python parser, the same format
    import tomllib

SCHEMA_MAJOR, SCHEMA_MINOR = 2, 3
READABLE_MAJORS = (1, 2)  # 1.x: version-1 tree digests, still verified
HEADER = "# hub.lock -- written by reprohub; review changes to it like code.\n"


@dataclass(frozen=True)
class RepoPin:
    """A repo spec pinned to a commit and the digest of its extracted files.

    ``artifacts``: the URLs its entrypoints downloaded into the cache while recording (schema 2.1), so
    that a locked cold load can start them while the repo archive downloads (:mod:`reprohub.cache.prefetch`).
    Only a hint of what to fetch early: every byte is still checked against its ``[artifacts]`` pin.

    ``swhid_dir``, ``git_tree`` (schema 2.3): the Software Heritage identifier of the commit's tree, for a
    paper to cite and for the fallback to check the archive against, and how it is known (``computed``,
    ``git``, ``archive``, or ``unknown: <why>``; :mod:`reprohub.sources.swhid`).  The commit's own,
    ``swh:1:rev:<commit>``, is :attr:`swhid`: derived, never stored, so it cannot disagree with ``commit``.
    """

    spec: str
    host: str
    commit: str
    tree_sha256: str
    artifacts: tuple[str, ...] = ()
    swhid_dir: str = ""
    git_tree: str = ""

    def __post_init__(self) -> None:  # one spelling whatever the source (TOML list, JSON from a worker)
        object.__setattr__(self, "artifacts", tuple(sorted(set(self.artifacts))))

    @property
    def swhid(self) -> str:
        """The commit's Software Heritage identifier."""
        return f"swh:1:rev:{self.commit}"

    def fetching(self, url: str) -> "RepoPin":
        """This pin with ``url`` among the artifacts its entrypoints download."""
        return self if url in self.artifacts else replace(self, artifacts=(*self.artifacts, url))


@dataclass(frozen=True)
class ArtifactPin:
    """A downloaded file pinned to its sha256 and size."""

    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class GoldenPin:
    """A recorded golden output: its key, file (relative to the lock), digest, and the id of the
    environment it was recorded in (an ``[environments]`` entry; empty in locks written before)."""

    key: str
    file: str
    sha256: str
    environment: str = ""


@dataclass(frozen=True)
class EnvironmentPin:
    """One environment goldens were recorded in (:mod:`reprohub.golden.environment`), shared by id."""

    id: str
    values: dict = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class UnreachablePin:
    """A URL whose download failed while recording, in a run that still passed (the test expected it):
    check runs then let it fail the same way instead of calling it unpinned. ``error`` is stable text
    (``HTTP 404``, ``DownloadError``), never a port or a time."""

    url: str
    error: str


@dataclass(frozen=True)
class RequestPin:
    """One HTTP(S) request that repo or test code made itself (urllib, requests, httpx...), and the answer it
    got (schema 2.2; :mod:`reprohub.lock.hermetic`).  ``key`` is ``"GET <url>"`` or ``"HEAD <url>"`` (the
    canonical URL); ``headers`` the response headers a client relies on (never a credential or cookie);
    ``sha256``/``size`` the body's bytes; ``repo`` the spec whose code asked (empty for test code), so a
    prune keeps the pin while that repo is used even where the answer was already on disk."""

    key: str
    status: int
    sha256: str
    size: int
    headers: dict = field(default_factory=dict, hash=False)
    repo: str = ""

    @property
    def method(self) -> str:
        return self.key.split(" ", 1)[0]

    @property
    def url(self) -> str:
        return self.key.split(" ", 1)[1]


def request_key(method: str, url: str) -> str:
    """The ``[requests]`` key of a request (``url`` already canonical).

    Example:
        >>> request_key("get", "https://h/a.json")
        'GET https://h/a.json'
    """
    return f"{method.upper()} {url}"


# table name -> (entry type, the field that is the table key)
TABLES = {"repos": (RepoPin, "spec"), "artifacts": (ArtifactPin, "url"), "goldens": (GoldenPin, "key"),
          "unreachable": (UnreachablePin, "url"), "environments": (EnvironmentPin, "id"),
          "requests": (RequestPin, "key")}
SINGULAR = {"repos": "repo", "artifacts": "artifact", "goldens": "golden", "unreachable": "unreachable URL",
            "environments": "environment", "requests": "request"}
OPTIONAL_TABLES = ("unreachable", "environments", "requests")  # shown in counts only where they have entries


@dataclass
class Lockfile:
    """The contents of a ``hub.lock``: repos, artifacts and goldens, each keyed by name."""

    repos: dict[str, RepoPin] = field(default_factory=dict)
    artifacts: dict[str, ArtifactPin] = field(default_factory=dict)
    goldens: dict[str, GoldenPin] = field(default_factory=dict)
    unreachable: dict[str, UnreachablePin] = field(default_factory=dict)
    environments: dict[str, EnvironmentPin] = field(default_factory=dict)
    requests: dict[str, RequestPin] = field(default_factory=dict)

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
        conflict = _conflict_marker(text)
        if conflict:
            raise LockfileError("a lock without merge conflicts", f"git's conflict markers in {name} (line {conflict})",
                                "take one side of each conflict (`git checkout --ours hub.lock` or `--theirs`, or "
                                "edit it), then run `pytest --hub-lock hub.lock --hub-update` on the merged branch and "
                                "review the diff: it records what the merged code uses. Never delete the lock: a new "
                                "one re-pins every repo to wherever its ref points today")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise LockfileError("valid TOML", f"{name}: {err}", "fix the line by hand, or restore the lock from "
                                "version control (git checkout -- hub.lock) and record again with --hub-update; "
                                "never delete it: a new lock re-pins every repo to wherever its ref points today") from err
        newer = _check_version(data.get("version"), name)
        lock = cls()
        for table, (kind, key_field) in TABLES.items():
            entries = data.get(table, {})
            if not isinstance(entries, dict):
                raise LockfileError(f"a table [{table}]", f"{type(entries).__name__} in {name}", "re-record the lock")
            target = getattr(lock, table)
            for key, entry in entries.items():
                try:
                    target[key] = _entry(kind, key_field, key, entry, table, newer)
                except BadEntry as bad:  # where it stands is looked up only for the entry that is refused
                    where = f"{name} line {_header_line(text, table, key)}, [{table}.{_toml_key(key)}]"
                    raise LockfileError(bad.expected, f"{bad.found} at {where}", bad.fix) from None
        unknown = set(data) - {"version", *TABLES}
        if unknown and not newer:  # a newer minor may add tables: ignored, as the rule above says
            raise LockfileError(f"only version, {', '.join(TABLES)}", f"{sorted(unknown)} in {name}",
                                "remove the unknown tables")
        return lock

    def dumps(self) -> str:
        """The lock as deterministic TOML text."""
        doc: dict = {"version": f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"}
        for table, (kind, key_field) in TABLES.items():
            entries = getattr(self, table)
            defaults = {f.name: f.default for f in fields(kind) if f.default is not MISSING}
            if entries:  # an optional field at its default is left out: older entries keep their bytes
                doc[table] = {key: {k: list(v) if isinstance(v, tuple) else v
                                    for k, v in sorted(asdict(entries[key]).items())
                                    if k != key_field and not (k in defaults and v == defaults[k])}
                              for key in sorted(entries)}
        import tomli_w  # a writer's module: reading a lock (every load) does not import it

        return HEADER + tomli_w.dumps(doc)

    def write(self, path: "str | Path", base: "Lockfile | None" = None) -> bool:
        """Write atomically under the writer's lock; return whether the bytes changed.

        ``base``: the lock as this run read it.  Then what this run changed relative to ``base`` is
        applied to the lock *as it is on disk now*, under the lock, so two runs updating one lock at
        once both keep their entries; an entry both changed, differently, is a
        :class:`~reprohub.errors.LockfileError` and nothing is written.

        Example:
            >>> base = Lockfile(); ours = Lockfile(goldens={"a": GoldenPin("a", "a.st", "1" * 64)})
            >>> theirs = Lockfile(goldens={"b": GoldenPin("b", "b.st", "2" * 64)}); _ = theirs.write(tmp + "/hub.lock")
            >>> ours.write(tmp + "/hub.lock", base=base), sorted(Lockfile.read(tmp + "/hub.lock").goldens)
            (True, ['a', 'b'])
        """
        path = Path(path)
        with file_lock(_writer_lock(path), f"writing {path}"):
            lock = self if base is None else base.rebased(self, Lockfile.read(path), str(path))
            text = lock.dumps()
            try:
                if path.read_text(encoding="utf-8") == text:
                    return False
            except FileNotFoundError:
                pass
            atomic_write_bytes(path, text.encode("utf-8"))
        return True

    def rebased(self, ours: "Lockfile", disk: "Lockfile", name: str = "hub.lock") -> "Lockfile":
        """``disk`` with the changes from ``self`` (the base a run read) to ``ours`` applied (a three-way merge).

        Raises:
            LockfileError: an entry changed both on disk and in ``ours``, to different values.
        """
        merged = Lockfile(*(dict(getattr(disk, t)) for t in TABLES))
        for table in TABLES:
            was, now, found = getattr(self, table), getattr(ours, table), getattr(disk, table)
            target = getattr(merged, table)
            for key in sorted(set(was) | set(now)):
                if was.get(key) == now.get(key):
                    continue  # this run left it alone: whatever is on disk stands
                if found.get(key) not in (was.get(key), now.get(key)):
                    raise LockfileError(
                        f"{table} entry {key!r} in {name} changed by this run only",
                        f"another run changed it to {found.get(key)} while this run recorded {now.get(key)}",
                        "nothing was written; run the update again once the other run has finished")
                if now.get(key) is None:
                    target.pop(key, None)
                else:
                    target[key] = now[key]
        return merged

    def merged(self, other: "Lockfile") -> "Lockfile":
        """A new lock with ``other``'s entries added or replacing these; a URL ``other`` pinned is no longer
        unreachable, and one it found unreachable is no longer pinned."""
        lock = Lockfile(*({**getattr(self, t), **getattr(other, t)} for t in TABLES))
        for url in [*other.artifacts, *other.requests]:
            lock.unreachable.pop(url, None)
        for url in other.unreachable:
            lock.artifacts.pop(url, None)
            lock.requests.pop(url, None)
        return lock._repos_name_pinned_artifacts()

    def without(self, names: "dict[str, set[str]]") -> "Lockfile":
        """A new lock without the entries named per table (``{"repos": {...}}``)."""
        return Lockfile(*({k: v for k, v in getattr(self, t).items() if k not in names.get(t, set())}
                          for t in TABLES))._repos_name_pinned_artifacts()

    def _repos_name_pinned_artifacts(self) -> "Lockfile":
        """This lock, each repo's ``artifacts`` cut to URLs that ``[artifacts]`` pins (what was pruned,
        or became unreachable, is not prefetched)."""
        self.repos = {k: replace(pin, artifacts=[u for u in pin.artifacts if u in self.artifacts])
                      for k, pin in self.repos.items()}
        return self

    def entry_count(self) -> dict[str, int]:
        """Entries per table (the rare ``unreachable`` table only where it has any)."""
        return {t: len(getattr(self, t)) for t in TABLES if t not in OPTIONAL_TABLES or getattr(self, t)}


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
    if major not in READABLE_MAJORS:
        raise LockfileError(f"schema version {' or '.join(f'{m}.x' for m in READABLE_MAJORS)}",
                            f"version {version} in {name}",
                            "upgrade reprohub to read this lock, or re-record it with this version")
    newer = major == SCHEMA_MAJOR and minor > SCHEMA_MINOR
    if newer:
        warnings.warn(f"{name} has schema {version}, newer than {SCHEMA_MAJOR}.{SCHEMA_MINOR}; "
                      "fields and tables this reprohub does not know are ignored", stacklevel=3)
    return newer


_CONFLICT = re.compile(r"^(?:<<<<<<<|=======$|>>>>>>>)", re.M)


def _conflict_marker(text: str) -> int:
    """The line of the first git merge-conflict marker in ``text`` (0: none; one regex scan of the text)."""
    found = _CONFLICT.search(text)
    return text.count("\n", 0, found.start()) + 1 if found else 0


def _toml_key(key: str) -> str:
    import tomli_w

    return tomli_w.dumps({key: 0}).split(" = ")[0]


def _header_line(text: str, table: str, key: str) -> int:
    """The line of the ``[table.key]`` header in ``text`` (0 when it is written otherwise), looked up for
    a refused entry only: reading a lock of 100,000 entries parses its TOML once, and no header again."""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped.startswith(f"[{table}.") or not stripped.endswith("]"):
            continue
        try:
            parsed = tomllib.loads(stripped[1:-1] + " = 0")
        except tomllib.TOMLDecodeError:
            continue
        if parsed == {table: {key: 0}}:
            return number
    return 0
