"""``reprohub bisect``: which one pinned component, swapped from a good lock into a bad one, turns tests from
passing to failing (``git bisect run`` and Polygraphy's ``debug reduce`` are the models).

The two sides are locks (or bundles: their index pins the same components, and they serve the content as a
mirror).  Every run uses the *bad* side's goldens and environments -- the reference files on disk are the
current ones -- with the good side's repos, artifacts and request bodies, and then one component of the bad
side at a time, in this order: weights (``[artifacts]``), then each repo's commit, then each pinned request
body.  The first swap whose run fails is named.  Before that, the good pins must pass and the bad ones fail,
or there is nothing to bisect and the command says which.

Each run is ``python -m pytest --hub-lock <a temporary lock beside the bad one> <pytest args>``: beside it,
the goldens and ``hub-responses/`` resolve as for the bad lock; content comes from the caches and mirrors
(``REPROHUB_MIRROR``, plus any bundle given) as for any locked run.

Example:
    >>> from reprohub.lock.lockfile import ArtifactPin
    >>> good = Lockfile(artifacts={"https://h/w.pt": ArtifactPin("https://h/w.pt", "a" * 64, 3)})
    >>> bad = Lockfile(artifacts={"https://h/w.pt": ArtifactPin("https://h/w.pt", "b" * 64, 3)})
    >>> [c.label for c in components(good, bad)]
    ['weights https://h/w.pt: sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb']
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import settings
from ..errors import BisectError, LockfileError
from .lockfile import Lockfile
from .mirror import INDEX

ORDER = ("artifacts", "repos", "requests")  # weights first, then commits, then request bodies
KIND = {"artifacts": "weights", "repos": "repo", "requests": "request body"}


@dataclass(frozen=True)
class Component:
    """One pinned entry that differs between the two sides (``None``: absent on that side)."""

    table: str
    key: str
    good: Any
    bad: Any

    @property
    def label(self) -> str:
        """``weights URL: sha256 1a2b.. -> 3c4d..``, ``repo SPEC: commit ... -> ...``, ``request body KEY: ...``."""
        field_name = "commit" if self.table == "repos" else "sha256"
        return f"{KIND[self.table]} {self.key}: {field_name} {_short(self.good, field_name)} -> {_short(self.bad, field_name)}"


def _short(pin: Any, name: str) -> str:
    return getattr(pin, name)[:12] if pin is not None else "(absent)"


@dataclass
class Side:
    """A side of the bisection: its pins, and the bundle folder serving them when it is a bundle."""

    lock: Lockfile
    bundle: "Path | None" = None


@dataclass
class Outcome:
    """What the bisection found: the cause (or ``None``), each run as (what ran, passed), and the verdict line."""

    cause: "Component | None"
    runs: list = field(default_factory=list)
    verdict: str = ""
    exit_code: int = 1


def components(good: Lockfile, bad: Lockfile) -> list[Component]:
    """The pinned entries that differ, in the order they are tried."""
    found = []
    for table in ORDER:
        ours, theirs = getattr(good, table), getattr(bad, table)
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                found.append(Component(table, key, ours.get(key), theirs.get(key)))
    return found


def with_pins_of(base: Lockfile, pins: Lockfile) -> Lockfile:
    """``base`` (goldens, environments, unreachable URLs) with the repos, artifacts and requests of ``pins``."""
    return dataclasses.replace(base, **{table: dict(getattr(pins, table)) for table in ORDER})


def swapped(lock: Lockfile, component: Component) -> Lockfile:
    """``lock`` with ``component`` as the bad side pins it."""
    table = dict(getattr(lock, component.table))
    if component.bad is None:
        table.pop(component.key, None)
    else:
        table[component.key] = component.bad
    return dataclasses.replace(lock, **{component.table: table})


def read_side(location: "str | Path", other: "Lockfile | None" = None) -> Side:
    """A lock file, or a bundle folder whose index pins are completed from ``other`` (the index has no API host
    or response headers: an entry the other side lacks cannot be swapped and is left out).

    Raises:
        LockfileError: neither a lock nor a bundle.
    """
    path = Path(location)
    if path.is_dir():
        index_path = path / INDEX
        if not index_path.is_file():
            raise LockfileError(f"a lock file or a bundle folder at {path}", f"a folder without {INDEX}",
                                "pass the bundle's folder (`reprohub bundle --lock hub.lock FOLDER` wrote it) or a lock")
        return Side(_pins_of_index(json.loads(index_path.read_text()), other or Lockfile()), path)
    if not path.is_file():
        raise LockfileError(f"a lock file or a bundle folder at {path}", "nothing there", "check the path")
    return Side(Lockfile.read(path))


def _pins_of_index(index: dict, other: Lockfile) -> Lockfile:
    lock = Lockfile()
    for spec, entry in index.get("repos", {}).items():
        if spec in other.repos:
            lock.repos[spec] = dataclasses.replace(other.repos[spec], commit=entry["commit"],
                                                   tree_sha256=entry["tree_sha256"])
    for url, entry in index.get("artifacts", {}).items():
        if url in other.artifacts:
            lock.artifacts[url] = dataclasses.replace(other.artifacts[url], sha256=entry["sha256"], size=entry["size"])
    for key, entry in index.get("requests", {}).items():
        if key in other.requests:
            lock.requests[key] = dataclasses.replace(other.requests[key], sha256=entry["sha256"], size=entry["size"])
    return lock


def bisect(good: Side, bad: Side, run: "Callable[[Lockfile], bool]",
           say: "Callable[[str], None]" = lambda line: None) -> Outcome:
    """Run ``run`` (True: the tests passed) on the good pins, the bad lock, then each single swap."""
    changes = components(good.lock, bad.lock)
    if not changes:
        return Outcome(None, [], "the two sides pin the same repos, weights and request bodies: nothing to bisect")
    base = with_pins_of(bad.lock, good.lock)
    outcome = Outcome(None)

    def attempt(what: str, lock: Lockfile) -> bool:
        passed = run(lock)
        outcome.runs.append((what, passed))
        say(f"{what}: {'passes' if passed else 'fails'}")
        return passed

    if not attempt("the good side's pins", base):
        outcome.verdict = ("the tests fail with the good side's pins too (and the bad side's goldens): the cause is "
                           "not in what the locks pin -- the test code, the goldens or the environment")
        return outcome
    if attempt("the bad side's pins", bad.lock):
        outcome.verdict = "the tests pass with the bad side's pins too: nothing to bisect"
        return outcome
    for number, change in enumerate(changes, 1):
        if not attempt(f"swap {number}/{len(changes)}, {change.label}", swapped(base, change)):
            outcome.cause, outcome.exit_code = change, 0
            outcome.verdict = f"cause: {change.label} (the first swap that turns the tests from passing to failing)"
            return outcome
    outcome.verdict = (f"no single swap turns the tests from passing to failing: the failure needs two or more of the "
                       f"{len(changes)} changes together ({', '.join(c.label for c in changes)})")
    return outcome


def pytest_runner(bad_lock: Path, pytest_args: list[str], bundles: list[Path],
                  show: "Callable[[str], None]" = lambda line: None) -> "Callable[[Lockfile], bool]":
    """A run: the lock written beside ``bad_lock`` (so goldens and ``hub-responses/`` resolve as for it), then
    ``python -m pytest --hub-lock`` it with ``pytest_args``; bundles join the mirrors.

    Raises (from the run):
        BisectError: pytest did not run the tests (a usage error, no tests collected): its last lines.
    """
    mirrors = " ".join([settings.read(settings.MIRROR) or "", *(str(b.resolve()) for b in bundles)]).strip()
    env = {**os.environ, **({settings.MIRROR: mirrors} if mirrors else {})}

    def run(lock: Lockfile) -> bool:
        path = bad_lock.parent / f".{bad_lock.name}.bisect-{os.getpid()}"
        path.write_text(lock.dumps(), encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--hub-lock", str(path),
                                   "-q", *pytest_args], env=env, capture_output=True, text=True)
        finally:
            path.unlink(missing_ok=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        for line in tail:
            show(f"    {line}")
        if done.returncode not in (0, 1):
            raise BisectError("pytest to run the tests (exit 0 or 1)", f"exit {done.returncode}: {' | '.join(tail)}",
                                "check the pytest arguments after --; they are passed as they are")
        return done.returncode == 0

    return run
