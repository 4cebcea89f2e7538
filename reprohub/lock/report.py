"""The plugin's end-of-session summary, as plain lines (the plugin only prints them).

Example output::

    repos: 1 checked, 0 recorded, 0 changed, 0 unused
    artifacts: 1 checked, 0 recorded, 0 changed, 0 unused
    goldens: 2 checked, 0 recorded, 0 changed, 0 unused
    refresh acme/tiny:main: 1f0e3dad -> 9a3c22b1; tests: test_x.py::test_a failed; goldens changed: acme/tiny/tiny_mlp
"""

from __future__ import annotations

from ..cache.layout import CacheLayout
from ..redact import capped
from .lockfile import OPTIONAL_TABLES, SINGULAR, TABLES
from .session import LockSession
from .verify import cached_tree, changed_files

MAX_FILES_SHOWN = 20


def summary_lines(session: LockSession, outcomes: dict[str, str], deselected: int, written: bool | None,
                  strict_unused: bool, update: bool, refresh: bool, write_error: str | None = None,
                  layout: "CacheLayout | None" = None, prune: bool = False, selection: str = "") -> list[str]:
    """Counts per table, changes, unused entries, the refresh report (with ``layout``, the files that changed
    between a moved ref's old and new commit, where both trees are cached), and what happened to the lock.
    ``selection``: the paths that selected part of the suite (unused entries are judged on whole runs only,
    as with ``-k``)."""
    changes = session.changes()
    unused = session.unused()
    lines = []
    failed = any(o == "failed" for o in outcomes.values())
    for table in TABLES:
        locked = getattr(session.lock, table)
        # what this run met: what it recorded, and every locked entry a test asked for (a check mode's
        # unreachable URL, a golden that failed, an environment a matched golden names)
        seen = set(getattr(session.recorded, table)) | (session.touched[table] & set(locked))
        if table == "environments":
            seen |= {session.lock.goldens[k].environment for k in session.touched["goldens"]
                     if k in session.lock.goldens} & set(locked)
        if table in OPTIONAL_TABLES and not seen and not locked:
            continue  # the rare tables are shown only where they have entries
        new = [c for c in changes if c.table == table and c.old is None]
        changed = [c.key for c in changes if c.table == table and c.old is not None]
        checking = table == "goldens" and not (refresh or update)  # while recording, a moved golden is changed
        failed_here = sorted(set(session.failed_goldens) & seen) if checking else []
        if table == "repos":  # asked for, but its load never got as far as the files: not checked
            failed_here = sorted(seen - set(session.recorded.repos))
        if table == "goldens" and refresh:  # an output that moved is a changed golden, recorded or not
            changed += sorted(set(session.failed_goldens) - set(changed))
        checked = len(seen - {c.key for c in new} - set(changed) - set(failed_here))
        not_used = ("unused not counted (part of the suite ran)" if deselected or selection else
                    f"{len(unused[table])} not reached" if failed and unused[table] else f"{len(unused[table])} unused")
        failures = f", {len(failed_here)} failed" if failed_here else ""
        lines.append(f"{table}: {checked} checked{failures}, {len(new)} recorded, {len(changed)} changed, {not_used}")
    reviewed = {key for key, review in session.reviews.items() if review["outcome"] in ("updated", "accepted")}
    for table in TABLES:  # a re-recorded golden is told once, by how it moved (below), not by its digests
        lines += capped([_change_line(session, c) for c in changes if c.table == table
                         and not (table == "goldens" and c.old is not None and c.key in reviewed)],
                        f"new or changed {table} (the lock's diff shows them all)")
    lines += [f"{line} (its origin could not serve it; verified against the lock)"
              for _, line in sorted(session.provenance.items())]
    if refresh:
        lines.extend(_refresh_lines(session, outcomes, layout))
    for key, note in sorted(session.notes.items()):
        lines.append(f"  golden {key}: {note}")
    for key, review in sorted(session.reviews.items()):
        if review["outcome"] == "updated":  # what moved, not only that the digest did
            moved = "; ".join(f"{leaf['key']}: {leaf['summary']}" for leaf in review["leaves"])
            env = f"; environment: {'; '.join(review['environment'])}" if review["environment"] else ""
            lines.append(f"  updated golden {key}: {review['summary']} ({moved}){env}")
    for key, summary in sorted(session.accepted.items()):
        lines.append(f"accepted golden {key}: {summary}")
    for conflict in session.conflicts:
        lines.append(f"  ERROR: {conflict}")
    if deselected or selection:
        if any(unused.values()):
            which = f"{deselected} tests were deselected" if deselected else f"a selection of paths ran ({selection})"
            lines.append(f"  ({which}: unused entries are reported for full runs only)")
    else:
        word = "ERROR" if strict_unused else "warning"
        for table in TABLES:
            if failed:  # a failing test may have stopped before it asked for the entry
                lines += capped([f"  not reached: {SINGULAR[table]} {key} (a test failed first; unused entries are "
                                 "judged on green runs)" for key in unused[table]], f"{table} not reached")
            elif prune and written is not None:  # this run dropped them
                lines += capped([f"  pruned unused {SINGULAR[table]} {key}" for key in unused[table]],
                                f"unused {table} pruned")
            else:
                lines += capped([f"  {word}: unused {SINGULAR[table]} {key} (no test of this run asked for it; drop "
                                 "such entries with --hub-update --hub-prune)" for key in unused[table]],
                                f"unused {table}")
    lines.append(_lock_line(session, written, update, refresh, outcomes, write_error))
    return lines


def _change_line(session: LockSession, change) -> str:
    asked = _asked_at(session, change)
    if change.old is None:
        note = f": {change.new['error']} (check runs expect the same failure)" if change.table == "unreachable" else ""
        if change.table == "requests":
            note = f": HTTP {change.new['status']}, {change.new['size']} bytes"
        return f"  new {SINGULAR[change.table]} {change.key}{note}{asked}"
    diff = ", ".join(f"{k} {_shown(change.old.get(k))} -> {_shown(change.new[k])}" for k in change.new
                     if change.old.get(k) != change.new[k])
    return f"  changed {SINGULAR[change.table]} {change.key}: {diff}{asked}"


def _shown(value) -> str:
    """A lock value as a reviewer reads it: a list as its items, not a Python tuple's repr.

    Example:
        >>> _shown(("https://h/v1.pt",)), _shown(()), _shown(3)
        ('[https://h/v1.pt]', '[]', '3')
    """
    return f"[{', '.join(map(str, value))}]" if isinstance(value, (list, tuple)) else str(value)


def _asked_at(session: LockSession, change) -> str:
    """Where the code that made a recorded request stands (a few ``file:line``), for review."""
    callers = sorted(session.callers.get(change.key, ())) if change.table == "requests" else []
    if not callers:
        return ""
    shown = ", ".join(callers[:3]) + (f" and {len(callers) - 3} more" if len(callers) > 3 else "")
    return f" (asked at {shown})"


def _refresh_lines(session: LockSession, outcomes: dict[str, str], layout: "CacheLayout | None") -> list[str]:
    lines = []
    for spec, pin in sorted(session.recorded.repos.items()):
        old = session.lock.repos.get(spec)
        old_commit = old.commit[:12] if old else "(not locked)"
        moved = "unchanged" if old and old.commit == pin.commit else f"{old_commit} -> {pin.commit[:12]}"
        tests = sorted(session.usage["repos"].get(spec, ()))
        states = ", ".join(f"{t} {outcomes.get(t, 'not run')}" for t in tests) or "none"
        lines.append(f"refresh {spec}: {moved}; tests: {states}")
        if old and old.commit != pin.commit and layout is not None:
            lines.extend(_files_between(layout, spec, old, pin))
    if session.failed_goldens:
        lines.append(f"refresh goldens changed: {', '.join(sorted(session.failed_goldens))}")
    else:
        lines.append("refresh goldens changed: none")
    return lines


def _files_between(layout: CacheLayout, spec: str, old, new) -> list[str]:
    """The files that changed between a ref's old and new commit, where both trees are in the cache."""
    before, after = (cached_tree(layout, spec, pin.host, pin.commit) for pin in (old, new))
    if not (before.is_dir() and after.is_dir()):
        return [f"  files changed: not known here (the tree of {old.commit[:12]} is not in this cache)"]
    changed = changed_files(before, after)
    shown = ", ".join(changed[:MAX_FILES_SHOWN]) + (f" and {len(changed) - MAX_FILES_SHOWN} more"
                                                    if len(changed) > MAX_FILES_SHOWN else "")
    return [f"  files changed: {shown or 'none (the same files at another commit)'}"]


def _lock_line(session: LockSession, written: bool | None, update: bool, refresh: bool,
               outcomes: dict[str, str], write_error: str | None = None) -> str:
    if not update:
        mode = ("refresh mode only reports; --hub-accept writes the new commits" if refresh else "check mode")
        return f"lock {session.shown_path}: not modified ({mode})"
    if written is None:
        failed = sum(1 for o in outcomes.values() if o == "failed")
        why = (write_error or (f"{failed} test{'s' if failed != 1 else ''} failed" + (" after refresh" if refresh else "")
                               if failed else "golden conflicts"))
        return f"lock {session.shown_path}: NOT written, {why} (a lock is only written from a green run)"
    return f"lock {session.shown_path}: {'written' if written else 'unchanged'}"
