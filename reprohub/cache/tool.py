"""``reprohub cache ls|rm|prune``: see and clean what the cache holds.

Example::

    reprohub cache ls
    reprohub cache rm acme/tiny                    # every cached commit of a repo
    reprohub cache rm https://host/w.pt            # one artifact
    reprohub cache prune --lock hub.lock           # leftovers, and whatever the lock does not pin
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..fetch.fsutil import read_record, remove_tree
from ..fetch.partial import is_stale, remove_unheld
from .layout import MANIFEST_FIELDS, SIDECAR_SUFFIX, CacheLayout
from .store import read_file_record, sidecar_path

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


def cached_repos(layout: CacheLayout) -> list[dict]:
    """Every extracted commit: its manifest plus ``repo`` (owner/name) and ``path``."""
    found = []
    for manifest in sorted((layout.internal / "repos").glob("*/*/*/*.json")):
        data = read_record(manifest, MANIFEST_FIELDS) or {}
        data.update(repo=f"{manifest.parent.parent.name}/{manifest.parent.name}", path=manifest.with_suffix(""))
        found.append(data)
    return found


def cached_artifacts(layout: CacheLayout) -> list[dict]:
    """Every cached artifact with a record (an attribute of the file, or a sidecar: cache/store.py), plus ``path``."""
    found = []
    for path in sorted(layout.checkpoints.glob("*/*")):
        if path.name.startswith(".") or path.name.endswith((SIDECAR_SUFFIX, ".lock")) or not path.is_file():
            continue
        record = read_file_record(path)
        if record is not None or sidecar_path(path).exists():  # a damaged sidecar still names its file
            found.append({**(record or {}), "path": path})
    return found


def leftovers(layout: CacheLayout) -> list[Path]:
    """Partial files and folders of interrupted downloads and extractions whose writer is gone."""
    found = {p for pattern in ("*.incomplete", "*.incomplete.json", ".*.zip", ".*.tmp")
             for p in layout.root.rglob(pattern)}
    return sorted(p for p in found if os.path.lexists(p) and is_stale(p))


def run(action: str, names: list[str], layout: CacheLayout,
        keep: "tuple[set[str], set[str]] | None" = None, as_json: bool = False) -> int:
    """Carry out one ``reprohub cache`` action, printing what it did.

    ``keep``, for prune: the (commits, artifact URLs) a lock pins; everything else cached goes too.
    ``as_json``, for ls: one JSON object (``hub_dir``, ``repos``, ``artifacts``) instead of lines.
    """
    if action == "ls":
        return _list_entries(layout, as_json)
    if action == "rm":
        if not names:
            print("error: name what to remove: owner/repo, a commit or an artifact URL (`reprohub cache ls` "
                  "lists them)", file=sys.stderr)
            return EXIT_USAGE
        missing = []
        for name in names:
            matched = _matching(layout, [name])
            for path in matched:
                _remove_entry(path)
                print(f"removed {path}")
            if not matched:
                missing.append(name)
                print(f"no cached entry matches {name!r} (`reprohub cache ls` lists them)", file=sys.stderr)
        return EXIT_MISMATCH if missing else EXIT_OK
    doomed = [path for path in leftovers(layout) if remove_unheld(path)]  # each under its download's lock
    if keep is not None:
        commits, urls = keep
        unused = [r["path"] for r in cached_repos(layout) if r.get("commit") not in commits]
        unused += [a["path"] for a in cached_artifacts(layout) if a.get("url") not in urls]
        for path in unused:
            _remove_entry(path)
        doomed += unused
    for path in doomed:
        print(f"removed {path}")
    print(f"{len(doomed)} {'entry' if len(doomed) == 1 else 'entries'} removed from {layout.root}")
    return EXIT_OK


def _list_entries(layout: CacheLayout, as_json: bool) -> int:
    repos, artifacts = cached_repos(layout), cached_artifacts(layout)
    if as_json:
        plain = [{k: str(v) if isinstance(v, Path) else v for k, v in entry.items()} for entry in repos + artifacts]
        print(json.dumps({"hub_dir": str(layout.root), "repos": plain[:len(repos)], "artifacts": plain[len(repos):]},
                         sort_keys=True))
        return EXIT_OK
    print(f"hub dir {layout.root}: {len(repos)} repo{'s' * (len(repos) != 1)}, "
          f"{len(artifacts)} artifact{'s' * (len(artifacts) != 1)}")
    for repo in repos:
        files = repo.get("files", "?")
        print(f"repo     {repo['repo']} @ {repo.get('commit', '?')}  {files} file{'s' * (files != 1)}  "
              f"{repo.get('bytes', 0):>12,} bytes  from {repo.get('host', '?')}")
    for art in artifacts:
        print(f"artifact {art.get('url', '?')}  {art.get('size', 0):>12,} bytes  sha256 {art.get('sha256', '?')}")
    return EXIT_OK


def _matching(layout: CacheLayout, names: list[str]) -> list[Path]:
    paths = []
    for repo in cached_repos(layout):
        if repo["repo"] in names or repo.get("commit") in names:
            paths.append(repo["path"])
    for art in cached_artifacts(layout):
        if art.get("url") in names:
            paths.append(art["path"])
    return paths


def _remove_entry(path: Path) -> None:
    """Remove a cached repo folder or artifact file with its manifest, sidecar and lock file."""
    remove_tree(path)
    for suffix in (".json", SIDECAR_SUFFIX, ".lock"):
        remove_tree(Path(f"{path}{suffix}"))
