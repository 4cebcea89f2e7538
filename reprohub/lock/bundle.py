"""``reprohub bundle``: everything a lock pins, as a static, content-addressed folder.

Layout (every name derived from a digest the lock already holds)::

    <bundle>/
      reprohub-bundle.json                       index: which spec / URL each file stands for
      repos/tree-sha256/<tree_sha256>.zip        a repo's files at its pinned commit
      artifacts/sha256/<sha256>                  an artifact's bytes

Nothing needs a reprohub server to read it: a folder, a ``file://`` URL,
``python -m http.server -d <bundle>``, nginx or a bucket all serve it as is
(:mod:`reprohub.lock.mirror` reads it).  The index is for people and for
``reprohub verify --bundle``; loaders find files by digest alone.  A bundle is
deterministic: the same lock gives byte-identical files (repo zips are written
by :func:`~reprohub.fetch.archive.write_tree_zip`, uncompressed, with fixed
metadata).  Goldens are files of the project and are not copied.

Every file is checked against the lock *before* it is written: a repo's cached
tree is re-hashed, an artifact's bytes are hashed as they are copied.

Example:
    >>> from reprohub import Hub
    >>> hub = Hub(hub_dir=tmp)
    >>> repo = hub.resolve("acme/tiny:v1", verbose=False)
    >>> lock = Lockfile(repos={"acme/tiny:v1": RepoPin("acme/tiny:v1", server.api_url, repo.commit, repo.tree_sha256)})
    >>> report = write_bundle(lock, Path(tmp, "bundle"), lambda spec, pin: repo.path, None)
    >>> report.written == [f"repos/tree-sha256/{repo.tree_sha256}.zip"]
    True
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import HashMismatchError, ReprohubError
from ..fetch.archive import tree_digest, write_tree_zip, zip_tree_digest
from ..fetch.download import Downloader
from ..fetch.fsutil import atomic_write_bytes, sha256_file
from .lockfile import ArtifactPin, Lockfile, RepoPin
from .mirror import artifact_item, tree_item

INDEX = "reprohub-bundle.json"
FORMAT = 1


@dataclass
class BundleReport:
    """What :func:`write_bundle` did: bundle-relative paths written, and those already there and intact."""

    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def write_bundle(
    lock: Lockfile,
    folder: Path,
    repo_folder: Callable[[str, RepoPin], Path],
    artifact_file: Callable[[str, ArtifactPin], Path],
) -> BundleReport:
    """Write every repo and artifact ``lock`` pins into ``folder``.

    Args:
        repo_folder: the extracted tree of a pinned repo (the caller fetches it into the cache).
        artifact_file: the cached, verified file of a pinned artifact.

    Raises:
        HashMismatchError: cached content differs from the lock (nothing wrong is written).
    """
    folder = Path(folder)
    report = BundleReport()
    for spec, pin in sorted(lock.repos.items()):
        source = repo_folder(spec, pin)
        found = tree_digest(source)
        if found != pin.tree_sha256:
            raise HashMismatchError(f"tree sha256 {pin.tree_sha256} for {spec} (pinned)",
                                    f"{found} in the cache at {source}",
                                    f"remove it (`reprohub cache rm {pin.commit}`) and bundle again")
        item = tree_item(pin.tree_sha256)
        _place(folder / item, item, report, present=lambda p: zip_tree_digest(p) == pin.tree_sha256,
               write=lambda p: write_tree_zip(source, p))
    for url, pin in sorted(lock.artifacts.items()):
        source = artifact_file(url, pin)
        item = artifact_item(pin.sha256)
        _place(folder / item, item, report, present=lambda p: sha256_file(p) == pin.sha256,
               write=lambda p: Downloader(offline=True).fetch(source.as_uri(), p, expected_sha256=pin.sha256,
                                                              progress=False))
    atomic_write_bytes(folder / INDEX, bundle_index(lock))
    return report


def _place(path: Path, item: str, report: BundleReport, present: Callable[[Path], bool],
           write: Callable[[Path], object]) -> None:
    if path.is_file() and present(path):
        report.kept.append(item)
        return
    write(path)
    report.written.append(item)


def bundle_index(lock: Lockfile) -> bytes:
    """The index of a bundle made from ``lock``: sorted, deterministic JSON."""
    index = {
        "format": FORMAT,
        "repos": {spec: {"commit": pin.commit, "tree_sha256": pin.tree_sha256, "file": tree_item(pin.tree_sha256)}
                  for spec, pin in lock.repos.items()},
        "artifacts": {url: {"sha256": pin.sha256, "size": pin.size, "file": artifact_item(pin.sha256)}
                      for url, pin in lock.artifacts.items()},
    }
    return (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()


def check_bundle(lock: Lockfile, folder: Path) -> list[str]:
    """Problems of a local bundle for ``lock`` (one line each): missing or tampered files. Reads every byte."""
    problems = []
    for spec, pin in sorted(lock.repos.items()):
        path = Path(folder) / tree_item(pin.tree_sha256)
        problems += _bundle_problem(f"repo {spec}", path, pin.tree_sha256, zip_tree_digest)
    for url, pin in sorted(lock.artifacts.items()):
        path = Path(folder) / artifact_item(pin.sha256)
        problems += _bundle_problem(f"artifact {url}", path, pin.sha256, sha256_file)
    return problems


def _bundle_problem(what: str, path: Path, expected: str, digest: Callable[[Path], str]) -> list[str]:
    if not path.is_file():
        return [f"MISSING in bundle {what}: {path} (run `reprohub bundle --lock ... {path.parents[2]}`)"]
    try:
        found = digest(path)
    except (OSError, zipfile.BadZipFile, ReprohubError) as err:  # unreadable is as bad as wrong
        found = f"unreadable ({type(err).__name__}: {err})"
    return [] if found == expected else [f"MISMATCH in bundle {what}: {path} has {found}, lock pins {expected}"]
