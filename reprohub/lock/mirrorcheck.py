"""``reprohub mirror check LOCATION --lock hub.lock``: is a mirror complete for a lock, before a fleet relies on it?

For a bundle folder (a path or ``file://``), an ``http(s)://`` bundle or an ``oci://`` one: every file the lock's pins need is
there with the right size -- a ``stat`` or a ``HEAD``, never a download -- and, with ``--deep``, has the right
bytes (artifacts and request bodies re-hashed, repo zips' tree digests recomputed).  Over HTTP it also says
whether the host serves ``Range`` (a resumable download) and catches a host that answers 200 for everything
(a catch-all page, a login wall): it asks for a file no bundle can hold, and an HTML answer of the wrong size
is named as a page, not the file.

Example:
    >>> from reprohub.lock.lockfile import ArtifactPin, Lockfile
    >>> lock = Lockfile(artifacts={"https://h/w.pt": ArtifactPin("https://h/w.pt", "a" * 64, 3)})
    >>> [item.path for item in items_of(lock)]
    ['artifacts/sha256/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DownloadError, ReprohubError
from ..fetch.fsutil import sha256_file
from ..fetch.urls import local_path
from .lockfile import Lockfile
from .mirror import INDEX, artifact_item, location_url, tree_item
from .oci import OciBundle, is_oci, parse_reference

NOWHERE = "artifacts/sha256/" + "0" * 64  # no bundle holds the file of an all-zero digest


@dataclass(frozen=True)
class Item:
    """One file a lock needs from a bundle: its path, what it stands for, its size (``None``: a repo zip, whose size
    the lock does not pin) and the digest its bytes must have."""

    path: str
    what: str
    size: "int | None"
    digest: str


@dataclass
class MirrorReport:
    """What was found: a problem line per item that is missing or wrong, how many were checked, and (HTTP)
    whether the host serves ``Range``."""

    location: str
    checked: int = 0
    problems: list = field(default_factory=list)
    ranges: "bool | None" = None
    notes: list = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems


def items_of(lock: Lockfile) -> list[Item]:
    """Every file a bundle for ``lock`` holds: each repo's zip, each artifact and request body (once per digest)."""
    found = {tree_item(pin.tree_sha256): Item(tree_item(pin.tree_sha256), f"repo {spec}@{pin.commit[:12]}", None,
                                              pin.tree_sha256) for spec, pin in sorted(lock.repos.items())}
    for url, pin in sorted(lock.artifacts.items()):
        found.setdefault(artifact_item(pin.sha256), Item(artifact_item(pin.sha256), f"weights {url}", pin.size,
                                                         pin.sha256))
    for key, pin in sorted(lock.requests.items()):
        if pin.size:
            found.setdefault(artifact_item(pin.sha256), Item(artifact_item(pin.sha256), f"request body {key}",
                                                             pin.size, pin.sha256))
    return list(found.values())


def check_mirror(location: str, lock: Lockfile, deep: bool = False, downloader=None) -> MirrorReport:
    """Check ``location`` (a bundle folder, ``file://`` or ``http(s)://`` URL) for everything ``lock`` pins."""
    base = location_url(location)
    report = MirrorReport(base)
    items = items_of(lock)
    if base.startswith("file:"):
        _check_folder(local_path(base), items, deep, report)
    else:
        from ..fetch.download import Downloader

        downloader = downloader or Downloader()
        if is_oci(base):  # a bundle path is the blob the manifest names
            bundle = OciBundle(parse_reference(base), downloader)
            _check_http(base, items, deep, downloader, report, bundle.blob_url)
        else:
            _check_http(base, items, deep, downloader, report, lambda path: f"{base}/{path}")
    report.checked = len(items)
    return report


def _check_folder(folder: Path, items: list[Item], deep: bool, report: MirrorReport) -> None:
    if not (folder / INDEX).is_file():
        report.problems.append(f"{INDEX}: missing ({folder} is no bundle folder `reprohub bundle` finished)")
    for item in items:
        path = folder / item.path
        if not path.is_file():
            report.problems.append(f"{item.path} ({item.what}): missing")
        elif item.size is not None and path.stat().st_size != item.size:
            report.problems.append(f"{item.path} ({item.what}): {path.stat().st_size} bytes, {item.size} pinned")
        elif deep:
            _check_bytes(path, item, report)


def _check_bytes(path: Path, item: Item, report: MirrorReport) -> None:
    """``--deep``: the bytes themselves (an artifact's sha256, a repo zip's tree digest)."""
    from ..fetch.archive import zip_tree_digest

    try:
        good = zip_tree_digest(path).matches(item.digest) if item.size is None else sha256_file(path) == item.digest
    except ReprohubError as err:
        good = False
        report.notes.append(f"{item.path}: {err.found}")
    if not good:
        report.problems.append(f"{item.path} ({item.what}): its bytes do not have the pinned digest")


def _check_http(base: str, items: list[Item], deep: bool, downloader, report: MirrorReport, url_of) -> None:
    """``url_of(bundle path)``: where the host serves it (``None``: an OCI manifest that names no such file)."""
    index = _head(downloader, url_of(INDEX))
    if index[0] != 200:
        report.problems.append(f"{INDEX}: HTTP {index[0]} (no bundle index at {base})")
    nowhere = _head(downloader, url_of(NOWHERE))
    if nowhere[0] == 200:
        report.notes.append(f"the host answers 200 for a file no bundle holds ({NOWHERE[:30]}...): a catch-all "
                            f"page{' (' + nowhere[2] + ')' if nowhere[2] else ''}, so only sizes and digests tell")
    for item in items:
        status, size, kind = _head(downloader, url_of(item.path))
        if status != 200:
            report.problems.append(f"{item.path} ({item.what}): HTTP {status}")
        elif item.size is not None and size is not None and size != item.size:
            page = "; an HTML page, not the file" if "html" in kind else ""
            report.problems.append(f"{item.path} ({item.what}): {size} bytes, {item.size} pinned{page}")
        elif deep:
            with tempfile.TemporaryDirectory(prefix="reprohub-mirror-check-") as tmp:
                try:
                    downloader.fetch(url_of(item.path), Path(tmp) / "item", progress=False)
                except DownloadError as err:
                    report.problems.append(f"{item.path} ({item.what}): {err.found}")
                    continue
                _check_bytes(Path(tmp) / "item", item, report)
    probe = next((item for item in items if item.size and url_of(item.path)), None)
    if probe is not None:
        response = downloader.request("GET", url_of(probe.path), {"Range": "bytes=0-0"}, stream=True)
        report.ranges = response.status_code == 206
        response.close()


def _head(downloader, url: "str | None") -> "tuple[int, int | None, str]":
    """(status, Content-Length, Content-Type) of a HEAD, redirects followed (404 for a file an OCI manifest lacks)."""
    if url is None:
        return 404, None, ""
    response = downloader.request("HEAD", url)
    length = response.headers.get("Content-Length")
    return (response.status_code, int(length) if length and length.isdigit() else None,
            response.headers.get("Content-Type", "").lower())


def lines(report: MirrorReport) -> list[str]:
    """The report for people: each problem and note, then the verdict."""
    ranges = {True: "; it serves Range (downloads resume)", False: "; it does not serve Range (an interrupted "
              "download starts over)", None: ""}[report.ranges]
    verdict = (f"{report.location}: complete, {report.checked} files{ranges}" if report.complete else
               f"{report.location}: INCOMPLETE, {len(report.problems)} of {report.checked} files missing or wrong"
               f"{ranges}")
    return [*report.problems, *(f"note: {note}" for note in report.notes), verdict]

