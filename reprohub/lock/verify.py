"""Re-hash what a lockfile pins: extracted repo trees, cached artifacts, golden files.

Example:
    >>> from reprohub.cache.layout import get_dir
    >>> verify_lock(Lockfile(), Path(tmp), CacheLayout(get_dir()))   # an empty lock: nothing to check
    ([], 0)
"""

from __future__ import annotations

from pathlib import Path

from ..fetch.treefiles import extra_files, tree_digest
from ..fetch.fsutil import sha256_file
from .bundle import check_bundle
from .beside import response_body_at_hand
from .lockfile import Lockfile
from ..cache.layout import CacheLayout, tree_paths
from ..refs import RepoRef, parse_ref
from ..sources import GIT_PREFIX, git_source_key, git_spec_parts
from ..sources.github import CONTENT_KEY


def verify_lock(lock: Lockfile, lock_dir: Path, layout: CacheLayout,
                bundle: Path | None = None) -> tuple[list[str], int]:
    """Problems found (one line each) and how many entries were checked; reads every byte.

    With ``bundle``, repos and artifacts are checked in that bundle folder instead of the cache.
    """
    if bundle is not None:
        return _verify_bundle(lock, lock_dir, bundle)
    problems = []
    for spec, pin in sorted(lock.repos.items()):
        folder = cached_tree(layout, spec, pin.host, pin.commit)
        problems += _compare(f"repo {spec}", folder, pin.tree_sha256,
                             (lambda p, pin=pin: tree_digest(p, tree_paths(p)).as_pinned(pin.tree_sha256))
                             if folder.is_dir() else None)
    for url, pin in sorted(lock.artifacts.items()):
        path = layout.artifact_path(url)
        problems += _compare(f"artifact {url}", path, pin.sha256, sha256_file if path.is_file() else None)
    for pin in sorted((pin for pin in lock.requests.values() if pin.size), key=lambda pin: pin.key):
        path = response_body_at_hand(pin, layout, lock_dir)
        problems += _compare(f"request {pin.key}", path or layout.response_body(pin.sha256), pin.sha256,
                             sha256_file if path else None)
    return problems + _golden_problems(lock, lock_dir), _count(lock)


def _count(lock: Lockfile) -> int:
    return len(lock.repos) + len(lock.artifacts) + len(lock.goldens) + len(lock.requests)


def _verify_bundle(lock: Lockfile, lock_dir: Path, bundle: Path) -> tuple[list[str], int]:
    problems = check_bundle(lock, bundle) + _golden_problems(lock, lock_dir)
    return problems, _count(lock)


def _golden_problems(lock: Lockfile, lock_dir: Path) -> list[str]:
    problems = []
    for key, pin in sorted(lock.goldens.items()):
        path = lock_dir / pin.file
        problems += _compare(f"golden {key}", path, pin.sha256, sha256_file if path.is_file() else None)
    return problems


def _compare(what: str, path: Path, expected: str, digest) -> list[str]:
    if digest is None:
        fill = "run the locked tests once" if what.startswith("request") else "run `reprohub fetch --lock ...`"
        return [f"MISSING {what}: {path} ({fill})"]
    found = digest(path)
    return [] if found == expected else [f"MISMATCH {what}: {path} has sha256 {found}, lock pins {expected}"]


def written_by_code(lock: Lockfile, layout: CacheLayout) -> list[str]:
    """One line per cached repo tree holding files its code wrote (a download into its own folder): not a
    problem, since the tree digest covers what was extracted, but named so nobody wonders.

    Example:
        >>> written_by_code(Lockfile(), CacheLayout(tmp))
        []
    """
    lines = []
    for spec, pin in sorted(lock.repos.items()):
        folder = cached_tree(layout, spec, pin.host, pin.commit)
        paths = tree_paths(folder) if folder.is_dir() else None
        extra = extra_files(folder, paths) if paths is not None else []
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            lines.append(f"note: repo {spec}: {len(extra)} files its code wrote into its folder, not part of the "
                         f"pinned tree: {shown}")
    return lines


def cached_tree(layout: CacheLayout, spec: str, host: str, commit: str) -> Path:
    """Where the extracted tree of ``spec`` at ``commit`` is cached (it may not be there)."""
    return layout.repo_dir(*_cache_place(spec, host), commit)


def changed_files(old: Path, new: Path) -> list[str]:
    """What differs between two extracted trees, one file a line: ``M path``, ``A path`` or ``D path``
    (compiled ``__pycache__`` files are no part of a tree).

    Example:
        >>> a, b = Path(tmp, "a"), Path(tmp, "b"); a.mkdir(); b.mkdir()
        >>> _ = (a / "x.py").write_text("1"); _ = (b / "x.py").write_text("2"); _ = (b / "y.py").write_text("")
        >>> changed_files(a, b)
        ['M x.py', 'A y.py']
    """
    def files(root: Path) -> dict[str, Path]:
        return {p.relative_to(root).as_posix(): p for p in root.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}

    before, after = files(old), files(new)
    found = []
    for rel in sorted(set(before) | set(after)):
        if rel not in after:
            found.append(f"D {rel}")
        elif rel not in before:
            found.append(f"A {rel}")
        elif before[rel].stat().st_size != after[rel].stat().st_size or sha256_file(before[rel]) != sha256_file(after[rel]):
            found.append(f"M {rel}")
    return found


def _cache_place(spec: str, host: str) -> tuple[str, RepoRef]:
    if spec.startswith(GIT_PREFIX):
        return git_source_key(host), git_spec_parts(spec)[1]
    return CONTENT_KEY, parse_ref(spec)
