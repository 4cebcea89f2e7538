"""Read pinned content back from bundles (``reprohub bundle``), verified against the lock before use.

A mirror is any location holding a bundle's static layout: a folder, a
``file://`` URL, or an ``http(s)://`` base URL served by any static server or
bucket.  Content is asked for by the digest the lock pins, so a mirror cannot
lie undetected:

* an artifact is ``artifacts/sha256/<sha256>``: the downloader hashes it while it
  streams and refuses it before it is renamed into the cache when the digest differs;
* a repo is ``repos/tree-sha256/<tree digest>.zip``: it is extracted into a temporary
  folder, and only renamed into the cache when the digest of the extracted tree
  is the pinned one.

Mirrors are tried in order.  One that lacks an item (404, missing file) falls
through to the next and then to the origin; one that cannot be reached or keeps
failing (5xx) is skipped for the rest of the process with a warning; one that
serves wrong bytes is a :class:`~reprohub.errors.MirrorError` naming the mirror
and both digests, and nothing it sent is kept.  Offline, local mirrors (paths,
``file://``) are still read; HTTP mirrors are not.

Example:
    >>> MirrorSet.parse("https://cache.example.org/hub, http://10.0.0.7:8080").bases
    ['https://cache.example.org/hub', 'http://10.0.0.7:8080']
    >>> bundle = Path(tmp, "with a space"); bundle.mkdir(); _ = (bundle / INDEX).write_text("{}")
    >>> MirrorSet.parse(str(bundle)).bases == [bundle.as_uri()]   # a path that exists is one location
    True
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import ArchiveError, DownloadError, HashMismatchError, LockfileError, MirrorError, OfflineError, SettingError
from ..fetch.download import Downloaded, Downloader
from ..fetch.urls import is_file_url, local_path
from ..fetch.hosts import DEAD_FOR, remembering

if TYPE_CHECKING:
    from ..fetch.archive import ExtractResult
    from .oci import OciBundle

# trees (archive, tree digests) and OCI registries are imported when a bundle is first asked for one: a Hub
# always has a MirrorSet, most never use it

INDEX = "reprohub-bundle.json"  # written last by ``reprohub bundle``: a folder without it holds no bundle
log = logging.getLogger("reprohub")
MISSING_STATUS = (404, 410)


def artifact_item(sha256: str) -> str:
    """The bundle-relative path of an artifact with this digest.

    Example:
        >>> artifact_item("ab" * 32)[:22]
        'artifacts/sha256/ababa'
    """
    return f"artifacts/sha256/{_hex64(sha256)}"


def tree_item(tree_sha256: str) -> str:
    """The bundle-relative path of the zip of a repo tree with this digest (either version, :mod:`reprohub.fetch.tree`)."""
    from ..fetch import tree

    if not tree.is_digest_text(tree_sha256):
        raise LockfileError("a tree digest (v2:<64 hex>, or 64 hex digits)", repr(tree_sha256), "restore the lock entry")
    return tree.item_name(tree_sha256)


def _hex64(digest: str) -> str:
    digest = digest.lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise LockfileError("a sha256 digest (64 hex digits)", repr(digest), "restore the lock entry")
    return digest


def location_url(location: str) -> str:
    """A mirror location as a base URL: paths become ``file://`` URLs, URLs are kept.

    Raises:
        SettingError: a scheme other than file, http, https or oci.
    """
    location = location.strip()
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme in ("http", "https", "file", "oci"):
        return location.rstrip("/")
    if scheme:
        raise SettingError("a mirror as a path, file://, http://, https:// or oci:// URL", repr(location),
                           "fix REPROHUB_MIRROR (or hub_mirror / --hub-mirror)")
    return Path(os.path.abspath(os.path.expanduser(location))).as_uri()


def _checked(base: str) -> str:
    """A mirror base URL, refused where it is a local folder that does not exist or holds no bundle index."""
    if base.startswith("file:"):
        folder = local_path(base)
        if not (folder / INDEX).is_file():
            found = "no such folder" if not folder.exists() else f"a folder without {INDEX} (no bundle)"
            raise SettingError("a mirror (REPROHUB_MIRROR, hub_mirror or --hub-mirror) that is a bundle folder",
                               f"{found}: {folder}", "point it at a folder `reprohub bundle` wrote, or unset it; "
                               "a path with spaces is given alone, or as a file:// URL among several")
    return base


class MirrorSet:
    """Bundle locations tried in order before the origin.

    Args:
        bases: mirror locations (paths or URLs).
        downloader: does the transfers (its ``offline`` flag keeps HTTP mirrors out).
    """

    def __init__(self, bases: Iterable[str], downloader: Downloader | None = None) -> None:
        self.bases = [_checked(location_url(b)) for b in bases if b.strip()]
        self.downloader = downloader or Downloader()
        self._dead: dict[str, float] = {}  # base -> until when it is skipped (a failed mirror, for a while)
        self._oci: dict[str, OciBundle] = {}  # oci:// base -> its manifest's files (read once)
        self._warned: set[str] = set()

    @classmethod
    def parse(cls, value: "str | Iterable[str] | None", downloader: Downloader | None = None) -> "MirrorSet":
        """Mirrors from a setting's text or a list of locations.  Text that names an existing path is that one
        location (``/data/with a space/bundle``); other text is split on commas and whitespace (several
        locations; write a path holding a space or comma among several as a ``file://`` URL, ``%20``).

        Raises:
            SettingError: a local location that does not exist or holds no bundle (named, at once).
        """
        if not (value is None or isinstance(value, str)):
            return cls(value, downloader)
        text = (value or "").strip()
        one = text and "://" not in text and os.path.exists(os.path.expanduser(text))
        pieces = [text] if one else [p for p in re.split(r"[\s,]+", text) if p]
        try:
            return cls(pieces, downloader)
        except SettingError as err:
            if len(pieces) > 1:  # name what was read, as the user wrote it
                err = SettingError(err.expected, f"{err.found}, one of {len(pieces)} locations read from {text!r} "
                                   "(separated by spaces or commas)", err.fix)
            raise err from None

    def __bool__(self) -> bool:
        return bool(self.bases)

    def __repr__(self) -> str:
        return f"MirrorSet({self.bases!r})"

    def fetch_artifact(self, sha256: str, dst: Path, progress: bool = False, sync: bool = True) -> Downloaded | None:
        """The artifact with digest ``sha256`` from the first mirror that has it, written to ``dst``; None if none has it.

        ``sync=False`` where the caller's record carries the boot id (:mod:`reprohub.fetch.durability`).

        Raises:
            MirrorError: a mirror served bytes with another digest (``dst`` is untouched).
        """
        item = artifact_item(sha256)
        return self._first(item, lambda url, headers: self.downloader.fetch(
            url, dst, expected_sha256=sha256, progress=progress, sync=sync, headers=headers))

    def fetch_tree(self, tree_sha256: str, dest: Path, progress: bool = False) -> "ExtractResult | None":
        """Extract the repo tree with this digest into ``dest`` (renamed into place only if it verifies); None if no mirror has it.

        Raises:
            MirrorError: a mirror's zip extracts to another tree (nothing is left at ``dest``).
        """
        from ..fetch import tree
        from ..fetch.archive import extract_into_place
        from ..fetch.fsutil import SpillFile

        item = tree_item(tree_sha256)
        if not tree_sha256.startswith(tree.V2_PREFIX):
            if tree_sha256 not in self._warned:
                self._warned.add(tree_sha256)
                log.warning("the lock pins a repo by a version-1 tree digest (%s...), which two different trees can "
                            "share: no mirror is trusted for it, the origin is asked. Re-record the lock "
                            "(pytest --hub-lock hub.lock --hub-update) to pin version-2 digests.", tree_sha256[:12])
            return None

        def fetch_and_extract(url: str, headers: dict) -> "ExtractResult":
            with SpillFile(dest) as archive:  # read once and extracted: in memory unless large
                archive.source = f"the bundle zip {url}"
                self.downloader.fetch_into(url, archive, progress=progress, headers=headers)
                try:
                    return extract_into_place(archive, dest, strip_top=False,
                                              check=lambda result: _check_tree(result, tree_sha256))
                except ArchiveError as err:  # not a zip (an HTML page), or an unsafe one: wrong bytes all the same
                    raise HashMismatchError(f"tree sha256 {tree_sha256}",
                                            f"an archive that cannot be used ({err.found})") from err

        return self._first(item, fetch_and_extract)

    def _first(self, item: str, get: Callable[[str, dict], object]):
        for base in self.bases:
            if time.monotonic() < self._dead.get(base, 0.0) or (self.downloader.offline and not is_file_url(base)):
                continue
            try:
                url = self._item_url(base, item)
                if url is None:
                    continue  # an OCI bundle whose manifest names no such file
                return get(url, self._oci[base].auth.headers() if base in self._oci else {})
            except HashMismatchError as err:
                raise MirrorError(f"{err.expected} from the mirror {base}", err.found,
                                  "the mirror's copy is damaged or was tampered with: rebuild the bundle with "
                                  "`reprohub bundle`, or remove the mirror from REPROHUB_MIRROR") from None
            except OfflineError:
                continue
            except DownloadError as err:
                if err.status in MISSING_STATUS:
                    log.info("mirror %s has no %s; trying the next source", base, item)
                    continue
                if remembering():  # a prefetch's failure is only its own
                    log.warning("mirror %s failed (%s); not asking it again for %.0f s", base, err.found, DEAD_FOR)
                    self._dead[base] = time.monotonic() + DEAD_FOR
        return None


    def _item_url(self, base: str, item: str) -> "str | None":
        """Where ``base`` serves the bundle file ``item``: beside it, or (``oci://``) the blob its manifest names."""
        from .oci import OciBundle, is_oci, parse_reference

        if not is_oci(base):
            return f"{base}/{item}"
        if base not in self._oci:
            self._oci[base] = OciBundle(parse_reference(base), self.downloader)
        return self._oci[base].blob_url(item)


def _check_tree(result: "ExtractResult", expected: str) -> None:
    if not result.digests.matches(expected):
        raise HashMismatchError(f"tree sha256 {expected}", f"tree sha256 {result.tree_sha256}")
