"""``reprohub bundle``: everything a lock pins, as a static, content-addressed folder.

Layout (every name derived from a digest the lock already holds)::

    <bundle>/
      reprohub-bundle.json                       index: which spec / URL each file stands for
      repos/tree-v2/<hex>.zip                    a repo's files at its pinned commit (tree digest v2:<hex>;
                                                 repos/tree-sha256/<hex>.zip for a version-1 digest)
      artifacts/sha256/<sha256>                  an artifact's bytes, or the body of a pinned request

Nothing needs a reprohub server to read it: a folder, a ``file://`` URL,
``python -m http.server -d <bundle>``, nginx or a bucket all serve it as is
(:mod:`reprohub.lock.mirror` reads it).  The index is for people and for
``reprohub verify --bundle``; loaders find files by digest alone.  A bundle is
deterministic: the same lock gives byte-identical files (repo zips are written
by :func:`~reprohub.fetch.treefiles.write_tree_zip`, uncompressed, with fixed
metadata).  Goldens are files of the project and are not copied.

Every file is checked against the lock *before* any is written: each repo's cached tree is
re-hashed and each artifact's cached file located first, and the bytes of each artifact are hashed
again as they are copied.  A bundle is written completely or not at all: if anything fails, the
files this call wrote are removed again, and the index, written last, is only ever complete.

Example:
    >>> from reprohub import Hub
    >>> hub = Hub(hub_dir=tmp)
    >>> repo = hub.resolve("acme/tiny:v1", verbose=False)
    >>> lock = Lockfile(repos={"acme/tiny:v1": RepoPin("acme/tiny:v1", server.api_url, repo.commit, repo.tree_sha256)})
    >>> report = write_bundle(lock, Path(tmp, "bundle"), lambda spec, pin: repo.path, None)
    >>> report.written == [f"repos/tree-v2/{repo.tree_sha256.removeprefix('v2:')}.zip"]
    True
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..cache.layout import tree_paths
from ..errors import HashMismatchError, LockfileError, ReprohubError
from ..fetch import tree
from ..fetch.archive import zip_tree_digest
from ..fetch.treefiles import tree_digest, write_tree_zip
from ..fetch.download import Downloader
from ..fetch.fsutil import atomic_write_bytes, sha256_file
from .lockfile import ArtifactPin, Lockfile, RepoPin, RequestPin
from .mirror import INDEX, artifact_item, tree_item

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
    response_file: "Callable[[RequestPin], Path] | None" = None,
) -> BundleReport:
    """Write every repo, artifact and request body ``lock`` pins into ``folder``.

    Args:
        repo_folder: the extracted tree of a pinned repo (the caller fetches it into the cache).
        artifact_file: the cached, verified file of a pinned artifact.
        response_file: where the body of a pinned request is (:mod:`reprohub.lock.hermetic`); required
            when the lock pins requests with a body.

    Raises:
        HashMismatchError: cached content differs from the lock (nothing wrong is written).
    """
    folder = Path(folder)
    report = BundleReport()
    plan = []  # (item, already there and intact?, write): everything checked before anything is written
    for spec, pin in sorted(lock.repos.items()):
        if not pin.tree_sha256.startswith(tree.V2_PREFIX):
            raise LockfileError(f"a version-2 tree digest (v2:...) for {spec}: mirrors trust only those",
                                f"the version-1 digest {pin.tree_sha256[:16]}..., which two different trees can share",
                                "re-record the lock (pytest --hub-lock hub.lock --hub-update upgrades every repo it "
                                "loads), then bundle again")
        source = repo_folder(spec, pin)
        paths = tree_paths(source)  # what was extracted; files the repo's code wrote there are not bundled
        found = tree_digest(source, paths)
        if not found.matches(pin.tree_sha256):
            raise HashMismatchError(f"tree sha256 {pin.tree_sha256} for {spec} (pinned)",
                                    f"{found.as_pinned(pin.tree_sha256)} in the cache at {source}",
                                    f"remove it (`reprohub cache rm {pin.commit}`) and bundle again; if the "
                                    "lock was edited, restore it from version control")
        plan.append((tree_item(pin.tree_sha256), lambda p, pin=pin: zip_tree_digest(p).matches(pin.tree_sha256),
                     lambda p, source=source, paths=paths: write_tree_zip(source, p, paths)))
    files = {pin.sha256: artifact_file(url, pin) for url, pin in sorted(lock.artifacts.items())}
    files.update({pin.sha256: response_file(pin) for pin in _bodies(lock) if pin.sha256 not in files})
    for sha256, source in files.items():  # one file per digest (an artifact that a request fetched too)
        plan.append((artifact_item(sha256), lambda p, sha256=sha256: sha256_file(p) == sha256,
                     lambda p, source=source, sha256=sha256: Downloader(offline=True).fetch(
                         source.as_uri(), p, expected_sha256=sha256, progress=False)))
    try:
        for item, present, write in plan:
            _place(folder / item, item, report, present, write)
        atomic_write_bytes(folder / INDEX, bundle_index(lock))
    except BaseException:
        for item in report.written:  # not half a bundle: what this call added goes again
            (folder / item).unlink(missing_ok=True)
        raise
    return report


def _bodies(lock: Lockfile) -> list[RequestPin]:
    """The pinned requests that have a body to bundle (a HEAD or a redirect has none)."""
    return [pin for _, pin in sorted(lock.requests.items()) if pin.size]


def _place(path: Path, item: str, report: BundleReport, present: Callable[[Path], bool],
           write: Callable[[Path], object]) -> None:
    try:
        intact = path.is_file() and present(path)
    except ReprohubError:  # a damaged earlier copy is rewritten
        intact = False
    if intact:
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
    if lock.requests:  # an older bundle's index stays byte for byte what it was
        index["requests"] = {pin.key: {"sha256": pin.sha256, "size": pin.size, "status": pin.status,
                                       "file": artifact_item(pin.sha256)} for pin in _bodies(lock)}
    return (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()


def check_bundle(lock: Lockfile, folder: Path) -> list[str]:
    """Problems of a local bundle for ``lock`` (one line each): missing or tampered files. Reads every byte."""
    problems = []
    for spec, pin in sorted(lock.repos.items()):
        path = Path(folder) / tree_item(pin.tree_sha256)
        problems += _bundle_problem(f"repo {spec}", path, pin.tree_sha256,
                                    lambda p, pin=pin: zip_tree_digest(p).as_pinned(pin.tree_sha256))
    for url, pin in sorted(lock.artifacts.items()):
        path = Path(folder) / artifact_item(pin.sha256)
        problems += _bundle_problem(f"artifact {url}", path, pin.sha256, sha256_file)
    for pin in _bodies(lock):
        path = Path(folder) / artifact_item(pin.sha256)
        problems += _bundle_problem(f"request {pin.key}", path, pin.sha256, sha256_file)
    return problems


def _bundle_problem(what: str, path: Path, expected: str, digest: Callable[[Path], str]) -> list[str]:
    if not path.is_file():
        return [f"MISSING in bundle {what}: {path} (run `reprohub bundle --lock ... {path.parents[2]}`)"]
    try:
        found = digest(path)
    except (OSError, zipfile.BadZipFile, ReprohubError) as err:  # unreadable is as bad as wrong
        found = f"unreadable ({type(err).__name__}: {err})"
    return [] if found == expected else [f"MISMATCH in bundle {what}: {path} has {found}, lock pins {expected}"]
