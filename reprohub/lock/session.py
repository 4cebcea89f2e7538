"""A lockfile applied to one run: enforce pins, record what is used, collect changes.

:class:`LockSession` is the :class:`~reprohub.record.Pins` a Hub consults and a
listener on its :class:`~reprohub.record.Recorder`.  Modes:

* check (default): a repo or artifact missing from the lock, or different from
  it, raises :class:`~reprohub.errors.LockMismatchError` naming the entry and
  the command that records it; the lock is never written.
* update: anything new or changed is recorded; the caller writes the merged lock.
* refresh: pinned commits are ignored and refs re-resolved; what moved is
  reported (with update, written only when everything passed).

Sessions in pytest-xdist workers :meth:`export` their records as JSON-able
data, and the controller :meth:`absorb` s them, so the lock written with ``-n``
is byte-identical to the one written without.

Example:
    >>> session = LockSession(Lockfile(), "hub.lock", update=True)
    >>> session.pinned_commit("https://api.github.com", "a/b:v1") is None
    True
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace

from .. import settings
from ..runtime.threads import starting_test
from ..errors import GoldenConflictError, LockMismatchError
from ..fetch.tree import TreeDigests
from .citations import check_cited, cited
from .prefetch_hosts import prefetch_host_allowed
from .lockfile import TABLES, ArtifactPin, EnvironmentPin, GoldenPin, Lockfile, RepoPin, RequestPin, UnreachablePin
from .record import ArtifactFailure, ArtifactUse, RepoUse


def _answer_of(pin: RequestPin) -> tuple:
    return pin.status, pin.sha256, pin.size, sorted(pin.headers.items())


def _answer_text(pin: RequestPin) -> str:
    return f"HTTP {pin.status}, {pin.size} bytes, sha256 {pin.sha256[:12]}"


@dataclass
class Change:
    """An entry whose recorded value differs from the lock's (``old`` is None for new entries)."""

    table: str
    key: str
    old: dict | None
    new: dict


@dataclass
class LockSession:
    """Pins from a lockfile plus everything observed during a run."""

    lock: Lockfile
    lock_path: str
    update: bool = False
    refresh: bool = False
    accept: bool = False
    recorded: Lockfile = field(default_factory=Lockfile)
    touched: dict[str, set[str]] = field(default_factory=lambda: {t: set() for t in TABLES})
    golden_writers: dict[str, tuple[str, str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)
    usage: dict[str, dict[str, set[str]]] = field(default_factory=lambda: {t: {} for t in TABLES})
    current_test: str | None = None
    failed_goldens: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)  # golden lock key -> which variant it was compared with
    reviews: dict[str, dict] = field(default_factory=dict)  # golden lock key -> how it moved (golden/review.py)
    callers: dict[str, set[str]] = field(default_factory=dict)  # request key -> file:line of the code that made it
    fenced: dict[str, list[str]] = field(default_factory=dict)  # test -> the requests it was refused (hermetic.py)
    dropped: set[str] = field(default_factory=set)  # artifacts an accept dropped (no "unused" warning for them)
    provenance: dict[str, str] = field(default_factory=dict)  # spec -> where its code came from, if not the usual
    _cited: set = field(default_factory=set, repr=False)  # trees whose cited SWHID this check run verified
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- Pins ----------------------------------------------------------------------------------

    def pinned_commit(self, host: str, spec: str) -> str | None:
        """The locked commit of ``spec``; in check mode a missing entry is an error."""
        pin = self.lock.repos.get(spec)
        self.touch("repos", spec)
        if pin is None and not (self.update or self.refresh):
            raise LockMismatchError(f"repo {spec!r} pinned in {self.lock_path}", "no such entry",
                                    self.record_hint())
        return None if pin is None or self.refresh else pin.commit

    def is_locked(self, spec: str) -> bool:
        """Whether the lock pins ``spec`` at all (a reviewed lock is the trust decision, in every mode)."""
        return spec in self.lock.repos

    def pinned_sha256(self, url: str) -> str | None:
        """The locked digest of ``url``; in check mode a missing entry is an error (a URL recorded as
        unreachable is let through: it fails again, as when it was recorded)."""
        pin = self.lock.artifacts.get(url)
        if pin is None and url in self.lock.unreachable:
            self.touch("unreachable", url)
            return None
        self.touch("artifacts", url)
        if pin is None and not (self.update or self.refresh):
            raise LockMismatchError(f"artifact {url} pinned in {self.lock_path}", "no such entry",
                                    self.record_hint())
        return None if pin is None or self.update or self.refresh else pin.sha256

    def pinned_host(self, spec: str) -> str | None:
        """The host recorded for ``spec`` in the lock, or ``None``."""
        pin = self.lock.repos.get(spec)
        return pin.host if pin is not None else None

    def pinned_tree_sha256(self, host: str, spec: str) -> str | None:
        """The locked tree digest of ``spec``'s pinned commit (``None`` when not pinned, or refreshing)."""
        pin = self.lock.repos.get(spec)
        return None if pin is None or self.refresh else pin.tree_sha256

    def prefetch_for(self, spec: str) -> "list[tuple[str, str]]":
        """The pinned ``(url, sha256)`` that the lock says ``spec``'s entrypoints download, in check mode only
        (recording re-learns the digests).  Not a use: an entry is counted when a test asks for it.

        Only URLs on a host the repo's entry already names (:func:`prefetch_host_allowed`): the list is
        text a pull request can edit, and a prefetch is a request no reviewed code has made yet.
        """
        pin = self.lock.repos.get(spec)
        if pin is None or not self._strict:
            return []
        extra = settings.read(settings.PREFETCH_HOSTS)
        return [(url, self.lock.artifacts[url].sha256) for url in pin.artifacts
                if url in self.lock.artifacts and prefetch_host_allowed(url, pin.host, extra)]

    def pinned_request(self, key: str) -> "RequestPin | None":
        """The pin of a request repo or test code made (``"GET <url>"``), or ``None``; a use either way."""
        self.touch("requests", key)
        return self.lock.requests.get(key)

    def record_request(self, pin: RequestPin, caller: str = "") -> None:
        """A request answered (recorded, or replayed from its pin), and where the code that made it stands."""
        self._note("requests", pin.key, pin)
        if caller:
            with self._lock:
                self.callers.setdefault(pin.key, set()).add(caller)

    def record_unreachable(self, key: str, error: str) -> None:
        """While recording: a request that could not be answered (``error``: stable text), replayed as that failure."""
        if not self._strict:
            self._note("unreachable", key, UnreachablePin(key, error))

    def refused_outside_tests(self) -> list[str]:
        """The refusals no test took (see :meth:`fence`), as conflicts that fail the session; taken once."""
        with self._lock:
            left, self.fenced = self.fenced, {}
        return [f"reprohub refused {what}, " + (f"asked by a thread that {test} started, after that test's report"
                                                if test else "asked outside any test")
                for test, refused in sorted(left.items()) for what in dict.fromkeys(refused)]

    def fence(self, what: str) -> None:
        """Keep a refusal for the test it belongs to -- the one that started the thread asking (a thread is
        stamped by :func:`attribute_threads`), else the current one -- which then fails even if repo code caught
        the exception.  One no test can take (between tests, after the last, from a thread whose test ended) is
        left in ``fenced`` and fails the session."""
        test = starting_test() or self.current_test or ""
        with self._lock:
            self.fenced.setdefault(test, []).append(what)

    def record_hint(self) -> str:
        return f"record it: pytest --hub-lock {self.shown_path} --hub-update (then review the diff of the lock)"

    @property
    def shown_path(self) -> str:
        """The lock's path as a fix command shows it: relative to where pytest runs when it lies below (a runner's
        absolute path cannot be pasted on a laptop), quoted for a shell.

        Example:
            >>> import os; LockSession(Lockfile(), os.path.join(os.getcwd(), "tests", "hub.lock")).shown_path
            'tests/hub.lock'
        """
        import os
        import shlex

        try:
            relative = os.path.relpath(self.lock_path)
        except ValueError:  # another drive (Windows)
            relative = self.lock_path
        return shlex.quote(self.lock_path if relative.startswith("..") else relative)

    # -- observation ----------------------------------------------------------------------------

    def observe(self, use: "RepoUse | ArtifactUse | ArtifactFailure") -> None:
        """Recorder listener: remember the use, and in check mode verify it against the lock."""
        if isinstance(use, RepoUse):
            pin = RepoPin(use.spec, use.host, use.commit, use.tree_sha256)
            locked = self.lock.repos.get(use.spec)
            same_tree = locked is not None and TreeDigests(use.tree_sha256, use.legacy_tree_sha256).matches(
                locked.tree_sha256)
            # the same content from another host URL (a new port, a mirror) is no change; a version-1 digest
            # naming the same tree stands in check mode, and is upgraded to version 2 when recording
            if same_tree and locked.commit == pin.commit and (locked.tree_sha256 == pin.tree_sha256 or self._strict):
                pin = locked
            elif same_tree and locked.commit == pin.commit:  # upgraded digest: what its code fetches stays known
                pin = replace(pin, artifacts=locked.artifacts)
            if not self._strict and use.path:
                pin = cited(pin, use.path)
            if use.via:
                with self._lock:
                    self.provenance[use.spec] = f"{use.spec} at {use.commit[:12]} came from {use.via}"
            self._note("repos", use.spec, pin)
            if self._strict and locked is not None and not same_tree:
                raise LockMismatchError(
                    f"repo {use.spec} at {locked.commit} with tree sha256 {locked.tree_sha256}",
                    f"tree sha256 {pin.tree_sha256} (the host served other files for the same commit)",
                    "do not trust this host; if the lock was edited by hand, restore it from version control")
            citation = (use.path, locked.swhid_dir) if locked is not None else None
            if self._strict and same_tree and locked.swhid_dir and use.path and citation not in self._cited:
                check_cited(use.spec, locked, use.path, self.record_hint())
                self._cited.add(citation)  # once a session: a suite loads one repo in hundreds of tests
        elif isinstance(use, ArtifactFailure):
            if self.update or self.refresh:
                self._note("unreachable", use.url, UnreachablePin(use.url, use.error))
        else:
            if self._strict and use.url in self.lock.unreachable and use.url not in self.lock.artifacts:
                raise LockMismatchError(f"{use.url} to fail to download ({self.lock.unreachable[use.url].error}), "
                                        f"as when {self.lock_path} was recorded", "it downloads now",
                                        self.record_hint())
            self._note("artifacts", use.url, ArtifactPin(use.url, use.sha256, use.size))
            if not self._strict and use.fetched_by is not None:
                self._learn_fetch(use.fetched_by, use.url)

    def _learn_fetch(self, spec: str, url: str) -> None:
        """While recording: ``spec``'s entrypoints download ``url`` (kept in its repo entry for prefetching)."""
        with self._lock:
            pin = self.recorded.repos.get(spec)
            if pin is not None and url.startswith(("http://", "https://")):
                self.recorded.repos[spec] = pin.fetching(url)

    def record_golden(self, pin: GoldenPin) -> None:
        """Remember a golden checked or recorded by the current test.

        Raises:
            GoldenConflictError: another test of this run wrote the same key with other content.
        """
        test = self.current_test or "?"
        with self._lock:
            conflict = self._conflict(pin.key, test, pin.sha256)
        if conflict:
            raise GoldenConflictError(f"one golden per key; {pin.key!r} written by one test only", conflict,
                                      "give one of the checks its own key= (or let the default key, which names "
                                      "the test, apply)")
        self._note("goldens", pin.key, pin)

    def _conflict(self, key: str, test: str, digest: str) -> str | None:
        first = self.golden_writers.setdefault(key, (test, digest))
        if first[0] != test and first[1] != digest:
            text = f"{first[0]} and {test} wrote different outputs"
            self.conflicts.append(f"golden {key}: {text}; give each check its own key=")
            return text
        return None

    def touch(self, table: str, key: str) -> None:
        """Note that a test asked for this entry (even if its load or check then failed)."""
        with self._lock:
            self._used(table, key)

    def _note(self, table: str, key: str, pin) -> None:
        with self._lock:
            getattr(self.recorded, table)[key] = pin
            self._used(table, key)

    def _used(self, table: str, key: str) -> None:
        self.touched[table].add(key)
        if self.current_test is not None:
            self.usage[table].setdefault(key, set()).add(self.current_test)

    @property
    def _strict(self) -> bool:
        return not (self.update or self.refresh)

    # -- results --------------------------------------------------------------------------------

    def changes(self) -> list[Change]:
        """Entries new in, or different from, the lock."""
        found = []
        for table in TABLES:
            locked, seen = getattr(self.lock, table), getattr(self.recorded, table)
            for key in sorted(seen):
                if locked.get(key) != seen[key]:
                    old = asdict(locked[key]) if key in locked else None
                    found.append(Change(table, key, old, asdict(seen[key])))
        return found

    def unused(self) -> dict[str, list[str]]:
        """Lock entries that no test of this run asked for (a failed load or check still counts as a use).

        What a used repo's code downloads counts as used too: on a warm machine the code finds the file it
        wrote into its own folder or under ``~`` and asks for nothing, and a prune must not unpin it."""
        repos = self.touched["repos"]
        by_repos = {"artifacts": {url for spec in repos if spec in self.lock.repos
                                  for url in self.lock.repos[spec].artifacts},
                    "requests": {key for key, pin in self.lock.requests.items() if pin.repo in repos}}
        found = {t: sorted(set(getattr(self.lock, t)) - self.touched[t] - by_repos.get(t, set())) for t in TABLES}
        found["artifacts"] = [url for url in found["artifacts"] if url not in self.dropped]
        named = {self.lock.goldens[k].environment for k in self.touched["goldens"] if k in self.lock.goldens}
        found["environments"] = sorted(set(self.lock.environments) - named - self.touched["environments"])
        return found

    def result(self) -> Lockfile:
        """The lock to write in update mode: the old one with this run's records merged in, keeping only
        the environments some golden still names (they are derived data)."""
        lock = self.lock.merged(self.recorded)
        named = {pin.environment for pin in lock.goldens.values()}
        lock.environments = {k: v for k, v in lock.environments.items() if k in named}
        return lock

    def record_environment(self, pin: EnvironmentPin) -> None:
        """The environment a golden of this run names (recorded once, whatever the number of goldens)."""
        self._note("environments", pin.id, pin)

    # -- xdist ------------------------------------------------------------------------------------

    def export(self) -> dict:
        """Records and usage as plain data (for a pytest-xdist worker to send)."""
        return {
            "recorded": {t: [asdict(p) for p in getattr(self.recorded, t).values()] for t in TABLES},
            "usage": {t: {k: sorted(v) for k, v in self.usage[t].items()} for t in TABLES},
            "failed_goldens": sorted(self.failed_goldens),
            "touched": {t: sorted(v) for t, v in self.touched.items()},
            "golden_writers": self.golden_writers,
            "conflicts": self.conflicts,
            "accepted": self.accepted,
            "notes": self.notes,
            "reviews": self.reviews,
            "callers": {k: sorted(v) for k, v in self.callers.items()},
            "fenced": self.fenced,  # what no test of the worker took: the session fails for it
            "provenance": self.provenance,
        }

    def absorb(self, data: dict) -> None:
        """Merge what :meth:`export` produced in another process."""
        with self._lock:
            for table, (kind, key_field) in TABLES.items():
                for entry in data["recorded"][table]:
                    pin, known = kind(**entry), getattr(self.recorded, table).get(entry[key_field])
                    if table == "repos" and known is not None and known.commit == pin.commit:
                        pin = replace(pin, artifacts=known.artifacts + pin.artifacts)  # what each worker saw
                    if table == "requests" and known is not None and _answer_of(known) != _answer_of(pin):
                        self.conflicts.append(f"request {pin.key}: two workers got different answers "
                                              f"({_answer_text(known)} and {_answer_text(pin)}); record it without "
                                              "-n, or make the answer stable")
                    getattr(self.recorded, table)[entry[key_field]] = pin
                for key, tests in data["usage"][table].items():
                    self.usage[table].setdefault(key, set()).update(tests)
            self.failed_goldens.update(data["failed_goldens"])
            for table, keys in data["touched"].items():
                self.touched[table].update(keys)
            self.conflicts.extend(data["conflicts"])
            self.accepted.update(data["accepted"])
            self.notes.update(data.get("notes", {}))
            self.reviews.update(data.get("reviews", {}))
            self.provenance.update(data.get("provenance", {}))
            for test, refused in data.get("fenced", {}).items():
                self.fenced.setdefault(test, []).extend(refused)
            for key, callers in data.get("callers", {}).items():
                self.callers.setdefault(key, set()).update(callers)
            for key, (test, digest) in data["golden_writers"].items():
                self._conflict(key, test, digest)  # two xdist workers writing one key differently
